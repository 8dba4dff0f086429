//! The one table of routes: method, path, what the route needs, and its handler, for the JSON
//! API and the dashboard alike. Everything else is derived from it: the router
//! ([`router_with`]), the permission check every request passes ([`require_route_permission`])
//! and the OpenAPI test (every `/api/` route of [`table`] is an operation of `openapi.json`,
//! and every operation there is a route here).
//!
//! A route names what it needs in the table itself, so a new route cannot be added without
//! deciding it; a method the table does not list on a path (a `DELETE` on a page) needs chain
//! administration, so it is closed rather than open.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};

use crate::error::HttpError;
use crate::state::ApiState;
use crate::{api, web};
use central_core::auth::{Permission, Principal};
use central_core::error::ServiceError;
use central_store::Store;

/// What a request must bring to reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the sign-in page and its stylesheet.
    Public,
    /// A principal, whatever its role: who they are, their own API tokens, sign-out, and the
    /// start page (which sends each role where it works).
    SignedIn,
    /// A principal whose role grants this.
    Needs(Permission),
}

/// One row of the table.
pub struct Route {
    pub method: Method,
    /// The router's template, e.g. `/api/v1/sites/{site_code}/events`.
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<ApiState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

/// A row whose handler answers `method` only.
fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("the table's methods are standard");
    Route {
        method,
        path,
        access,
        handler: axum::routing::on(filter, handler),
    }
}

/// Every route central serves over HTTP.
pub fn table() -> Vec<Route> {
    use Access::{Needs, Public, SignedIn};
    use Method as M;
    use Permission::{ActOnSite, Administer, ExportAudit, ExportFleet, ViewAudit, ViewFleet};
    vec![
        // ------------------------------------------------------------------- JSON API: fleet
        route(M::GET, "/api/v1/sites", Needs(ViewFleet), api::list_sites),
        route(
            M::GET,
            "/api/v1/sites/search",
            Needs(ViewFleet),
            api::search_sites,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}",
            Needs(Administer),
            api::put_site,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/events",
            Needs(ViewFleet),
            api::list_site_events,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/inventory",
            Needs(ViewFleet),
            api::site_inventory,
        ),
        route(M::GET, "/api/v1/agents", Needs(ViewFleet), api::list_agents),
        route(M::GET, "/api/v1/alerts", Needs(ViewFleet), api::list_alerts),
        route(
            M::POST,
            "/api/v1/alerts/{id}/acknowledge",
            Needs(ActOnSite),
            api::acknowledge_alert,
        ),
        route(
            M::GET,
            "/api/v1/rollouts",
            Needs(ViewFleet),
            api::list_rollouts,
        ),
        route(
            M::POST,
            "/api/v1/rollouts",
            Needs(Administer),
            api::start_rollout,
        ),
        route(
            M::GET,
            "/api/v1/rollouts/{id}",
            Needs(ViewFleet),
            api::one_rollout,
        ),
        route(
            M::POST,
            "/api/v1/rollouts/{id}/{action}",
            Needs(Administer),
            api::act_on_rollout,
        ),
        route(
            M::GET,
            "/api/v1/availability",
            Needs(ViewFleet),
            api::list_availability,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/availability",
            Needs(ViewFleet),
            api::site_availability,
        ),
        route(
            M::PUT,
            "/api/v1/opening-hours",
            Needs(Administer),
            api::put_chain_opening_hours,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/opening-hours",
            Needs(ViewFleet),
            api::site_opening_hours,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}/opening-hours",
            Needs(ActOnSite),
            api::put_site_opening_hours,
        ),
        route(
            M::GET,
            "/api/v1/certificates",
            Needs(ViewFleet),
            api::list_certificates,
        ),
        route(
            M::GET,
            "/api/v1/certificates/alerts",
            Needs(ViewFleet),
            api::list_certificate_alerts,
        ),
        route(M::GET, "/api/v1/schema", Needs(ViewFleet), api::schema),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/access-rules",
            Needs(ViewFleet),
            api::site_access_rules,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}/staff",
            Needs(Administer),
            api::put_site_staff,
        ),
        route(
            M::POST,
            "/api/v1/disaster-windows",
            Needs(Administer),
            api::open_disaster_window,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/adoption",
            Needs(ViewFleet),
            api::site_adoption,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}/adoption",
            Needs(ActOnSite),
            api::put_site_adoption,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}/adoption/steps/{step}",
            Needs(ActOnSite),
            api::put_adoption_step,
        ),
        route(
            M::GET,
            "/api/v1/adoption/subsidy",
            Needs(ViewFleet),
            api::subsidy,
        ),
        route(
            M::GET,
            "/api/v1/adoption/prefectures",
            Needs(ViewFleet),
            api::prefecture_table,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/grace-notifications",
            Needs(ViewFleet),
            api::site_grace_notifications,
        ),
        route(
            M::POST,
            "/api/v1/sites/{site_code}/grace-notifications",
            Needs(ActOnSite),
            api::file_grace_notification,
        ),
        route(
            M::PUT,
            "/api/v1/sites/{site_code}/grace-notifications/{id}/end",
            Needs(ActOnSite),
            api::end_grace_notification,
        ),
        route(
            M::GET,
            "/api/v1/grace-notifications",
            Needs(ViewFleet),
            api::chain_grace_notifications,
        ),
        // ------------------------------------------------------------------- JSON API: audit
        route(
            M::GET,
            "/api/v1/audit/events",
            Needs(ViewAudit),
            api::audit_events,
        ),
        route(
            M::GET,
            "/api/v1/audit/report",
            Needs(ExportAudit),
            api::audit_report,
        ),
        route(
            M::GET,
            "/api/v1/sites/{site_code}/verification",
            Needs(ViewAudit),
            api::site_verification,
        ),
        route(
            M::GET,
            "/api/v1/audit/retention",
            Needs(ViewAudit),
            api::retention_policy,
        ),
        route(
            M::PUT,
            "/api/v1/audit/retention",
            Needs(Administer),
            api::put_retention,
        ),
        // ------------------------------------------------------------------- JSON API: chain administration
        route(
            M::GET,
            "/api/v1/revocations",
            Needs(Administer),
            api::list_revocations,
        ),
        route(
            M::POST,
            "/api/v1/revocations",
            Needs(Administer),
            api::revoke_certificate,
        ),
        route(
            M::POST,
            "/api/v1/sites/{site_code}/revocation",
            Needs(Administer),
            api::revoke_site,
        ),
        route(
            M::GET,
            "/api/v1/accounts",
            Needs(Administer),
            api::list_accounts,
        ),
        route(
            M::POST,
            "/api/v1/accounts",
            Needs(Administer),
            api::create_account,
        ),
        route(
            M::PATCH,
            "/api/v1/accounts/{login}",
            Needs(Administer),
            api::change_account,
        ),
        route(
            M::GET,
            "/api/v1/notifications/endpoints",
            Needs(Administer),
            api::list_endpoints,
        ),
        route(
            M::POST,
            "/api/v1/notifications/endpoints",
            Needs(Administer),
            api::create_endpoint,
        ),
        route(
            M::PUT,
            "/api/v1/notifications/endpoints/{id}",
            Needs(Administer),
            api::put_endpoint,
        ),
        route(
            M::POST,
            "/api/v1/notifications/endpoints/{id}/test",
            Needs(Administer),
            api::test_endpoint,
        ),
        route(
            M::GET,
            "/api/v1/notifications/deliveries",
            Needs(Administer),
            api::list_deliveries,
        ),
        // ------------------------------------------------------------------- JSON API: anyone signed in
        route(M::GET, "/api/v1/me", SignedIn, api::me),
        route(M::GET, "/api/v1/openapi.json", SignedIn, api::openapi),
        route(M::GET, "/api/v1/tokens", SignedIn, api::list_tokens),
        route(M::POST, "/api/v1/tokens", SignedIn, api::create_token),
        route(
            M::DELETE,
            "/api/v1/tokens/{id}",
            SignedIn,
            api::revoke_token,
        ),
        // ------------------------------------------------------------------- dashboard
        route(M::GET, "/login", Public, web::login::page),
        Route {
            method: M::POST,
            path: "/login",
            access: Public,
            // The sign-in form is read up to a few KiB.
            handler: axum::routing::post(web::login::submit).layer(
                axum::extract::DefaultBodyLimit::max(web::login::FORM_LIMIT_BYTES),
            ),
        },
        route(M::GET, "/static/app.css", Public, web::login::stylesheet),
        route(M::POST, "/logout", SignedIn, web::login::logout),
        Route {
            method: M::GET,
            path: "/",
            access: SignedIn,
            handler: web::overview::route(),
        },
        route(M::GET, "/sites", Needs(ViewFleet), web::sites::list_handler),
        route(
            M::GET,
            "/sites/{site_code}",
            Needs(ViewFleet),
            web::sites::detail_handler,
        ),
        route(M::GET, "/account", SignedIn, web::account::page_handler),
        route(
            M::POST,
            "/account/tokens",
            SignedIn,
            web::account::make_token,
        ),
        route(
            M::POST,
            "/account/tokens/{id}/revoke",
            SignedIn,
            web::account::revoke_token,
        ),
        route(
            M::GET,
            "/alerts",
            Needs(ViewFleet),
            web::alerts::list_handler,
        ),
        route(
            M::POST,
            "/alerts/{id}/acknowledge",
            Needs(ActOnSite),
            web::alerts::acknowledge_form,
        ),
        route(
            M::GET,
            "/certificates",
            Needs(ViewFleet),
            web::certificates::page_handler,
        ),
        route(
            M::GET,
            "/certificates.csv",
            Needs(ExportFleet),
            web::certificates::csv_handler,
        ),
        route(M::GET, "/rollout", Needs(ViewFleet), web::rollout::overview),
        route(M::POST, "/rollouts", Needs(Administer), web::rollout::start),
        route(
            M::GET,
            "/rollouts/{id}",
            Needs(ViewFleet),
            web::rollout::detail,
        ),
        route(
            M::POST,
            "/rollouts/{id}/{action}",
            Needs(Administer),
            web::rollout::act,
        ),
        route(M::GET, "/audit", Needs(ViewAudit), web::audit::page_handler),
        route(
            M::GET,
            "/audit/export.csv",
            Needs(ExportAudit),
            web::audit::export_csv,
        ),
        route(
            M::GET,
            "/audit/report",
            Needs(ExportAudit),
            web::audit::report,
        ),
        route(
            M::GET,
            "/notifications",
            Needs(Administer),
            web::notifications::page_handler,
        ),
        route(
            M::POST,
            "/notifications",
            Needs(Administer),
            web::notifications::create_form,
        ),
        route(
            M::GET,
            "/notifications/{id}",
            Needs(Administer),
            web::notifications::edit_page,
        ),
        route(
            M::POST,
            "/notifications/{id}",
            Needs(Administer),
            web::notifications::edit_form,
        ),
        route(
            M::POST,
            "/notifications/{id}/{action}",
            Needs(Administer),
            web::notifications::act_form,
        ),
    ]
}

/// What `method` on `path` (the router's template) needs: the table's word, a `HEAD` as its
/// `GET`, and chain administration for a method the table does not list there.
pub fn access(method: &Method, path: &str) -> Access {
    static ACCESS: OnceLock<HashMap<(Method, &'static str), Access>> = OnceLock::new();
    let table = ACCESS.get_or_init(|| {
        table()
            .into_iter()
            .map(|r| ((r.method, r.path), r.access))
            .collect()
    });
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    table
        .get(&(method.clone(), path))
        .copied()
        .unwrap_or(Access::Needs(Permission::Administer))
}

/// A route layer: the principal's role must grant what [`access`] says.
pub(crate) async fn require_route_permission(
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if let Access::Needs(permission) = access(request.method(), matched.as_str()) {
        request
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| ServiceError::Unauthenticated("no principal on the request".into()))?
            .require(permission)?;
    }
    Ok(next.run(request).await)
}

/// The API and the dashboard with only a store (tests, tools).
pub fn router(store: Store) -> Router {
    router_with(ApiState::new(store))
}

/// The API and the dashboard: every route but the public ones needs a principal, what the
/// table names for it, and any `{site_code}` in scope.
pub fn router_with(state: ApiState) -> Router {
    use crate::middleware::{authenticate, require_site_in_scope};
    let (mut public, mut protected) = (Router::new(), Router::new());
    for r in table() {
        if r.access == Access::Public {
            public = public.route(r.path, r.handler);
        } else {
            protected = protected.route(r.path, r.handler);
        }
    }
    let protected = protected
        .route_layer(axum::middleware::from_fn(require_site_in_scope))
        .route_layer(axum::middleware::from_fn(require_route_permission))
        .layer(axum::middleware::from_fn_with_state(
            state.store.clone(),
            authenticate,
        ));
    Router::new()
        .merge(public)
        .merge(protected)
        .layer(axum::middleware::map_response(web::security_headers))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_exports_need_what_the_table_says() {
        use Permission::*;
        let (get, put) = (Method::GET, Method::PUT);
        let needs = |m: &Method, p: &str| access(m, p);
        assert_eq!(
            needs(&get, "/api/v1/sites/{site_code}/events"),
            Access::Needs(ViewFleet)
        );
        assert_eq!(
            needs(&Method::HEAD, "/api/v1/audit/events"),
            Access::Needs(ViewAudit)
        );
        assert_eq!(
            needs(&get, "/api/v1/audit/report"),
            Access::Needs(ExportAudit)
        );
        assert_eq!(needs(&get, "/certificates.csv"), Access::Needs(ExportFleet));
        assert_eq!(
            needs(&put, "/api/v1/sites/{site_code}/adoption"),
            Access::Needs(ActOnSite)
        );
        assert_eq!(needs(&Method::POST, "/api/v1/tokens"), Access::SignedIn);
        assert_eq!(needs(&get, "/api/v1/accounts"), Access::Needs(Administer));
        assert_eq!(needs(&get, "/login"), Access::Public);
    }

    #[test]
    fn an_unlisted_method_or_path_needs_chain_administration() {
        let admin = Access::Needs(Permission::Administer);
        assert_eq!(access(&Method::POST, "/api/v1/something-new"), admin);
        assert_eq!(
            access(&Method::DELETE, "/api/v1/sites/{site_code}/events"),
            admin
        );
    }

    #[test]
    fn each_method_and_path_is_in_the_table_once() {
        let mut seen = std::collections::HashSet::new();
        for r in table() {
            assert!(seen.insert((r.method.clone(), r.path)), "twice: {r:?}");
        }
    }
}
