//! The one table of what each route needs, applied by [`require_route_permission`] to every
//! route of the API and the dashboard. A route not named here needs: to read, the fleet view
//! (the audit view under `/audit`); to change anything, chain administration. So a new route
//! is closed until someone decides otherwise here.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::Permission;
use crate::error::ServiceError;

/// Writes an area manager (or chain IT) makes about one site in scope.
const SITE_ACTIONS: &[&str] = &[
    "/api/v1/sites/{site_code}/opening-hours",
    "/api/v1/sites/{site_code}/adoption",
    "/api/v1/sites/{site_code}/adoption/steps/{step}",
    "/api/v1/sites/{site_code}/grace-notifications",
    "/api/v1/sites/{site_code}/grace-notifications/{id}/end",
    "/api/v1/alerts/{id}/acknowledge",
    "/alerts/{id}/acknowledge",
];

/// What any signed-in person may do: see who they are, manage their own API tokens, sign out,
/// and open the start page (which sends each role where it works).
const ANYONE_SIGNED_IN: &[&str] = &[
    "/",
    "/api/v1/me",
    "/api/v1/openapi.json",
    "/api/v1/tokens",
    "/api/v1/tokens/{id}",
    "/account",
    "/account/tokens",
    "/account/tokens/{id}/revoke",
    "/logout",
];

/// Reads only a chain administrator may make.
/// Reads that are chain-wide by nature and for chain administrators only: accounts, and the
/// deny list of revoked certificates (fingerprints and reasons of every site's agents).
/// Notification endpoints and their delivery log: where chain IT's alerts go is chain-wide
/// configuration.
const ADMIN_READS: &[&str] = &[
    "/api/v1/accounts",
    "/api/v1/revocations",
    "/api/v1/notifications/endpoints",
    "/api/v1/notifications/deliveries",
    "/notifications",
    "/notifications/{id}",
];

/// Reads that are exports: CSV and printable reports (each one audited by its handler).
fn is_export(route: &str) -> bool {
    route.ends_with(".csv") || route.ends_with("/report") || route.ends_with("/bundle")
}

fn is_audit(route: &str) -> bool {
    route.starts_with("/api/v1/audit")
        || route == "/audit"
        || route.starts_with("/audit/")
        || route.ends_with("/verification")
}

/// What `method` on `route` (the router's template, e.g. `/api/v1/sites/{site_code}/events`)
/// needs; `None` when being signed in is enough.
pub fn permission_for(method: &Method, route: &str) -> Option<Permission> {
    if ANYONE_SIGNED_IN.contains(&route) {
        return None;
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    if read && ADMIN_READS.contains(&route) {
        return Some(Permission::Administer);
    }
    Some(match (is_audit(route), read) {
        (true, true) if is_export(route) => Permission::ExportAudit,
        (true, true) => Permission::ViewAudit,
        (false, true) if is_export(route) => Permission::ExportFleet,
        (false, true) => Permission::ViewFleet,
        (_, false) if SITE_ACTIONS.contains(&route) => Permission::ActOnSite,
        (_, false) => Permission::Administer,
    })
}

/// A route layer: the principal's role must grant what [`permission_for`] says.
pub async fn require_route_permission(
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Result<Response, ServiceError> {
    if let Some(permission) = permission_for(request.method(), matched.as_str()) {
        request
            .extensions()
            .get::<super::Principal>()
            .ok_or_else(|| ServiceError::Unauthenticated("no principal on the request".into()))?
            .require(permission)?;
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_exports_need_what_their_kind_needs() {
        let get = Method::GET;
        let put = Method::PUT;
        assert_eq!(
            permission_for(&get, "/api/v1/sites/{site_code}/events"),
            Some(Permission::ViewFleet)
        );
        assert_eq!(
            permission_for(&get, "/api/v1/audit/events"),
            Some(Permission::ViewAudit)
        );
        assert_eq!(
            permission_for(&get, "/api/v1/audit/report"),
            Some(Permission::ExportAudit)
        );
        assert_eq!(
            permission_for(&get, "/certificates.csv"),
            Some(Permission::ExportFleet)
        );
        assert_eq!(
            permission_for(&put, "/api/v1/sites/{site_code}/adoption"),
            Some(Permission::ActOnSite)
        );
        assert_eq!(permission_for(&Method::POST, "/api/v1/tokens"), None);
        assert_eq!(
            permission_for(&get, "/api/v1/accounts"),
            Some(Permission::Administer)
        );
    }

    #[test]
    fn an_unlisted_write_needs_chain_administration() {
        assert_eq!(
            permission_for(&Method::POST, "/api/v1/something-new"),
            Some(Permission::Administer)
        );
        assert_eq!(
            permission_for(&Method::DELETE, "/api/v1/sites/{site_code}/events"),
            Some(Permission::Administer)
        );
    }
}
