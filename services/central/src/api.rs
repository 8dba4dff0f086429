//! The JSON API (versioned under `/api/v1`), and the one router that serves it with the
//! dashboard's pages.
//!
//! Served over TLS 1.3, on the mTLS listener to operators (a client certificate from the chain
//! CA naming `urn:onshi-fleet:operator:<name>`; an agent's certificate is refused here) and on
//! the web listener to people and programs with an account (session cookie or API token).
//! `crate::auth` resolves who asks; `auth::routes` says what each route needs; site scope is
//! checked on every `{site_code}` and applied inside listing queries.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::SiteCode;
use serde::Deserialize;

use crate::audit::ChainVerdict;
use crate::auth::Principal;
use crate::auth::rate_limit::SignInLimiter;
use crate::error::ServiceError;
use crate::extract::{Path, Query};
use crate::store::migrate::{self, SchemaStatus};
use crate::store::{
    Alert, AuditQuery, CertificateAlert, CertificateRow, SiteSummary, Store, StoredEvent,
    StoredInventory, StreamStatus,
};

/// What the API's handlers share: the store, and the chain's patient hash key when central was
/// given one (auditors then search by insurance card details, hashed at query time).
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    pub patient_key: Option<Arc<PatientHashKey>>,
    /// The handshake's deny list: a revocation made here applies at once in this replica.
    pub deny: fleet_tls::deny::DenyList,
    /// Failed sign-ins, per login and per address.
    pub limiter: SignInLimiter,
    /// Seals the secrets of new webhook endpoints (`--notification-key-file`); without it,
    /// webhooks cannot be made.
    pub notification_key: Option<Arc<crate::notify::key::NotificationKey>>,
}

impl FromRef<ApiState> for Store {
    fn from_ref(state: &ApiState) -> Store {
        state.store.clone()
    }
}

pub fn router(store: Store) -> Router {
    router_with(ApiState {
        store,
        patient_key: None,
        deny: fleet_tls::deny::DenyList::default(),
        limiter: SignInLimiter::default(),
        notification_key: None,
    })
}

/// The API and the dashboard: every route but sign-in needs a principal, the permission
/// `auth::routes` names for it, and any `{site_code}` in scope.
pub fn router_with(state: ApiState) -> Router {
    use crate::auth::middleware::{authenticate, require_site_in_scope};
    use crate::auth::routes::require_route_permission;
    let protected = api_routes()
        .merge(crate::web::pages())
        .route_layer(axum::middleware::from_fn(require_site_in_scope))
        .route_layer(axum::middleware::from_fn(require_route_permission))
        .layer(axum::middleware::from_fn_with_state(
            state.store.clone(),
            authenticate,
        ));
    Router::new()
        .merge(crate::web::public())
        .merge(protected)
        .layer(axum::middleware::map_response(crate::web::security_headers))
        .with_state(state)
}

fn api_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/sites", get(list_sites))
        .route("/api/v1/sites/{site_code}/events", get(list_site_events))
        .route("/api/v1/sites/{site_code}/inventory", get(site_inventory))
        .route(
            "/api/v1/sites/{site_code}/verification",
            get(site_verification),
        )
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/rollouts", get(list_rollouts).post(start_rollout))
        .route("/api/v1/rollouts/{id}", get(one_rollout))
        .route("/api/v1/rollouts/{id}/{action}", post(act_on_rollout))
        .route("/api/v1/availability", get(list_availability))
        .route(
            "/api/v1/sites/{site_code}/availability",
            get(site_availability),
        )
        .route("/api/v1/opening-hours", put(put_chain_opening_hours))
        .route(
            "/api/v1/sites/{site_code}/opening-hours",
            get(site_opening_hours).put(put_site_opening_hours),
        )
        .route("/api/v1/certificates", get(list_certificates))
        .route("/api/v1/certificates/alerts", get(list_certificate_alerts))
        .route("/api/v1/schema", get(schema))
        .route("/api/v1/audit/events", get(audit_events))
        .route(
            "/api/v1/sites/{site_code}/access-rules",
            get(site_access_rules),
        )
        .route("/api/v1/sites/{site_code}/staff", put(put_site_staff))
        .route("/api/v1/disaster-windows", post(open_disaster_window))
        .route(
            "/api/v1/sites/{site_code}/adoption",
            get(site_adoption).put(put_site_adoption),
        )
        .route(
            "/api/v1/sites/{site_code}/adoption/steps/{step}",
            put(put_adoption_step),
        )
        .route("/api/v1/adoption/subsidy", get(subsidy))
        .route("/api/v1/adoption/prefectures", get(prefecture_table))
        .route(
            "/api/v1/sites/{site_code}/grace-notifications",
            get(site_grace_notifications).post(file_grace_notification),
        )
        .route(
            "/api/v1/sites/{site_code}/grace-notifications/{id}/end",
            put(end_grace_notification),
        )
        .route(
            "/api/v1/grace-notifications",
            get(chain_grace_notifications),
        )
        .route(
            "/api/v1/revocations",
            get(list_revocations).post(revoke_certificate),
        )
        .route(
            "/api/v1/sites/{site_code}/revocation",
            axum::routing::post(revoke_site),
        )
        .route("/api/v1/audit/report", get(audit_report))
        .route("/api/v1/sites/{site_code}", axum::routing::put(put_site))
        .route("/api/v1/sites/search", get(search_sites))
        .route(
            "/api/v1/alerts/{id}/acknowledge",
            post(crate::web::alerts::acknowledge_json),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/audit/retention",
            get(retention_policy).put(put_retention),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/v1/accounts", get(list_accounts).post(create_account))
        .route(
            "/api/v1/accounts/{login}",
            axum::routing::patch(change_account),
        )
        .route(
            "/api/v1/notifications/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route("/api/v1/notifications/endpoints/{id}", put(put_endpoint))
        .route(
            "/api/v1/notifications/endpoints/{id}/test",
            post(test_endpoint),
        )
        .route("/api/v1/notifications/deliveries", get(list_deliveries))
}

async fn list_sites(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<SiteSummary>>, ServiceError> {
    Ok(Json(store.sites(&principal.scope).await?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<i64>,
}

async fn list_site_events(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<StoredEvent>>, ServiceError> {
    let site = site_of(&site_code)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let mut events = store.events_for_site(&site, limit).await?;
    for event in &mut events {
        crate::auth::without_identifiers(&principal, &mut event.body);
    }
    Ok(Json(events))
}

/// What the site's agents last said they see: readers, certificates, terminals.
async fn site_inventory(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Vec<StoredInventory>>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.inventories(&site).await?))
}

/// Whether the site's stored events still follow its hash chains (the whole history; the
/// same verdict as `central verify --site`).
async fn site_verification(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<ChainVerdict>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.verify_period(Some(&site), None, None).await?))
}

/// Every agent stream: produced (as the agent reported), highest received, contiguous.
async fn list_agents(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<StreamStatus>>, ServiceError> {
    Ok(Json(store.stream_statuses(&principal.scope).await?))
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    /// Include resolved alerts.
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

/// Open alerts, newest first (`?all=true`: resolved ones too).
async fn list_alerts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AlertsQuery>,
) -> Result<Json<Vec<Alert>>, ServiceError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(Json(
        store.alerts(query.all, limit, &principal.scope).await?,
    ))
}

/// Rollouts, newest first, with their sites (wave, state) and every transition.
async fn list_rollouts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<crate::store::rollouts::RolloutView>>, ServiceError> {
    Ok(Json(store.rollouts(None, &principal.scope).await?))
}

async fn one_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<crate::store::rollouts::RolloutView>, ServiceError> {
    store
        .rollouts(Some(id), &principal.scope)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ServiceError::NotFound(format!("there is no rollout {id}")))
}

/// Starts a rollout: `{"target_version": "0.2.0", "waves": [{"share": 5}, {"share": 25},
/// {"share": 100}], "gates": {...}, "window": "outside_opening_hours", "on_gate_failure":
/// "pause", "soak_secs": 3600, "apply_timeout_secs": 86400}`.
async fn start_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<
    (
        axum::http::StatusCode,
        Json<crate::store::rollouts::RolloutView>,
    ),
    ServiceError,
> {
    let new: crate::store::rollouts::NewRollout = json_body(
        &body,
        "a rollout is {\"target_version\", \"waves\": [{\"share\": 5}, {\"sites\": [...]}, {\"share\": 100}], \"gates\", \"window\", \"on_gate_failure\", \"soak_secs\", \"apply_timeout_secs\"}",
    )?;
    let id = store
        .create_rollout(
            &new,
            &principal.audit_name(),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let view = store
        .rollouts(Some(id), &principal.scope)
        .await?
        .pop()
        .ok_or_else(|| {
            ServiceError::NotFound(format!("rollout {id} vanished after it was created"))
        })?;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

/// `POST /api/v1/rollouts/{id}/pause | resume | rollback`.
async fn act_on_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<crate::store::rollouts::RolloutView>, ServiceError> {
    let action = crate::store::rollouts::Action::parse(&action).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "{action:?} is not an action on a rollout: pause, resume or rollback"
        ))
    })?;
    store
        .act_on_rollout(id, action, &principal.audit_name())
        .await?;
    one_rollout(State(store), Extension(principal), Path(id)).await
}

/// Every site's availability: online, closed, agent down, link down, qualification terminal
/// not answering, national system unreachable, reader unplugged; whether it is alerting (open
/// and not online).
async fn list_availability(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<crate::store::availability::SiteAvailability>>, ServiceError> {
    Ok(Json(store.availability(None, &principal.scope).await?))
}

/// One site's availability; 404 before central has classified it (no agent seen yet).
async fn site_availability(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<crate::store::availability::SiteAvailability>, ServiceError> {
    let site = site_of(&site_code)?;
    store
        .availability(Some(&site), &crate::auth::SiteScope::All)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "central has not classified site {site} yet: no agent of it has connected"
            ))
        })
}

/// The opening hours that apply to a site and where they come from (site, chain, built_in).
async fn site_opening_hours(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<crate::store::availability::EffectiveHours>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.opening_hours(&site).await?))
}

const HOURS_SHAPE: &str = "opening hours are {\"weekly\": {\"mon\": [\"09:00-18:00\"], ...}, \"closed_on_national_holidays\": true, \"closed_dates\": [\"YYYY-MM-DD\"], \"open_dates\": {\"YYYY-MM-DD\": [\"10:00-16:00\"]}}";

/// Sets the chain default opening hours (sites without their own follow it).
async fn put_chain_opening_hours(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<onshi_domain::hours::OpeningHours>, ServiceError> {
    let hours: onshi_domain::hours::OpeningHours = json_body(&body, HOURS_SHAPE)?;
    store
        .set_opening_hours(None, &hours, &principal.audit_name())
        .await?;
    Ok(Json(hours))
}

/// Sets one site's own opening hours.
async fn put_site_opening_hours(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<crate::store::availability::EffectiveHours>, ServiceError> {
    let site = site_of(&site_code)?;
    let hours: onshi_domain::hours::OpeningHours = json_body(&body, HOURS_SHAPE)?;
    store
        .set_opening_hours(Some(&site), &hours, &principal.audit_name())
        .await?;
    Ok(Json(store.opening_hours(&site).await?))
}

#[derive(Debug, Deserialize)]
struct CertificatesQuery {
    expiring_within_days: Option<i64>,
    site: Option<String>,
}

/// The certificates sites hold now, soonest expiry first, with days to expiry and (terminal
/// certificates) the renewal lead time left.
async fn list_certificates(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<CertificatesQuery>,
) -> Result<Json<Vec<CertificateRow>>, ServiceError> {
    if let Some(days) = query.expiring_within_days
        && !(0..=36_500).contains(&days)
    {
        return Err(ServiceError::BadRequest(
            "expiring_within_days must be between 0 and 36500".into(),
        ));
    }
    let site = query
        .site
        .map(|s| SiteCode::parse(&s).map(|s| s.to_string()))
        .transpose()
        .map_err(|e| ServiceError::BadRequest(format!("site code: {e}")))?;
    Ok(Json(
        store
            .certificates(
                time::OffsetDateTime::now_utc(),
                query.expiring_within_days,
                site.as_deref(),
                &principal.scope,
            )
            .await?,
    ))
}

/// Certificate expiry alerts, newest first.
async fn list_certificate_alerts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<CertificateAlert>>, ServiceError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(Json(
        store.certificate_alerts(limit, &principal.scope).await?,
    ))
}

async fn schema(State(store): State<Store>) -> Result<Json<SchemaStatus>, ServiceError> {
    Ok(Json(migrate::status(store.pool()).await?))
}

// ------------------------------------------------------------------------------- audit

/// An auditor's search (`/api/v1/audit/events`) and a report's period (`/api/v1/audit/report`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    site: Option<String>,
    /// RFC 3339 instants, or with `month` (YYYY-MM, Asia/Tokyo) instead.
    from: Option<String>,
    to: Option<String>,
    month: Option<String>,
    /// Comma-separated event kinds.
    kind: Option<String>,
    staff: Option<String>,
    role: Option<String>,
    patient_ref: Option<String>,
    /// The patient by insurance card details (hashed here, with the chain's key).
    insurer: Option<String>,
    symbol: Option<String>,
    number: Option<String>,
    branch: Option<String>,
    result: Option<String>,
    consent: Option<String>,
    disaster_window: Option<bool>,
    limit: Option<i64>,
    /// JSON pages: the cursor of the previous page's `Link: <…>; rel="next"`.
    after: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Events in one page of the JSON audit search (the default and the most `limit` may ask):
/// a search is read page by page, never held whole in memory.
pub const AUDIT_JSON_PAGE: i64 = 1000;

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(message.into())
}

fn instant(name: &str, text: &str) -> Result<time::OffsetDateTime, ServiceError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            bad(format!(
                "{name} {text:?}: expected an RFC 3339 time, e.g. 2026-12-01T00:00:00+09:00"
            ))
        },
    )
}

/// The period of `params`: `month` (a whole Tokyo month) or `from`/`to`.
fn period(
    params: &AuditParams,
) -> Result<(Option<time::OffsetDateTime>, Option<time::OffsetDateTime>), ServiceError> {
    if let Some(month) = &params.month {
        if params.from.is_some() || params.to.is_some() {
            return Err(bad("give either month or from/to, not both"));
        }
        let wrong = || bad(format!("month {month:?}: expected YYYY-MM"));
        let (year, m) = month.split_once('-').ok_or_else(wrong)?;
        let year: i32 = year.parse().map_err(|_| wrong())?;
        let m: u8 = m.parse().map_err(|_| wrong())?;
        let m = time::Month::try_from(m).map_err(|_| wrong())?;
        let start = time::Date::from_calendar_date(year, m, 1).map_err(|_| wrong())?;
        let next = start
            .checked_add(time::Duration::days(31))
            .ok_or_else(wrong)?;
        let end =
            time::Date::from_calendar_date(next.year(), next.month(), 1).map_err(|_| wrong())?;
        let tokyo = time::macros::offset!(+9);
        return Ok((
            Some(start.midnight().assume_offset(tokyo)),
            Some(end.midnight().assume_offset(tokyo)),
        ));
    }
    Ok((
        params
            .from
            .as_deref()
            .map(|t| instant("from", t))
            .transpose()?,
        params.to.as_deref().map(|t| instant("to", t)).transpose()?,
    ))
}

fn audit_query(state: &ApiState, params: &AuditParams) -> Result<AuditQuery, ServiceError> {
    let site = params.site.as_deref().map(site_of).transpose()?;
    let patient = match (&params.patient_ref, &params.insurer, &params.number) {
        (Some(r), None, None) => {
            Some(PatientRef::parse(r).map_err(|e| bad(format!("patient_ref: {e}")))?)
        }
        (None, Some(insurer), Some(number)) => {
            let key = state.patient_key.as_deref().ok_or_else(|| {
                bad("central has no patient hash key (--patient-key): search by patient_ref")
            })?;
            use onshi_domain::ids::{
                InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
            };
            let id = |e: onshi_domain::ids::IdError| bad(e.to_string());
            let present = |s: &Option<String>| {
                s.as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let symbol = present(&params.symbol)
                .map(|s| InsuredCardSymbol::parse(&s))
                .transpose()
                .map_err(id)?;
            let branch = present(&params.branch)
                .map(|s| InsuredBranchNumber::parse(&s))
                .transpose()
                .map_err(id)?;
            Some(PatientRef::for_insurance_card(
                key,
                &InsurerNumber::parse(insurer).map_err(id)?,
                symbol.as_ref(),
                &InsuredIdentificationNumber::parse(number).map_err(id)?,
                branch.as_ref(),
            ))
        }
        (None, None, None) => None,
        _ => {
            return Err(bad(
                "a patient is patient_ref, or insurer and number (with symbol and branch if the card has them)",
            ));
        }
    };
    let (from, to) = period(params)?;
    Ok(AuditQuery {
        site,
        from,
        to,
        kinds: params
            .kind
            .as_deref()
            .map(|k| k.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        staff_id: params.staff.clone(),
        staff_role: params.role.clone(),
        patient,
        result: params.result.clone(),
        consent: params.consent.clone(),
        disaster_window: params.disaster_window,
        limit: params.limit.unwrap_or(AUDIT_JSON_PAGE),
        after: params
            .after
            .as_deref()
            .map(crate::store::audit_search::AuditCursor::parse)
            .transpose()?,
    })
}

/// The audit search. JSON comes a page at a time (at most [`AUDIT_JSON_PAGE`] events; a full
/// page links the next with `Link: <…>; rel="next"`), and every page is audited like an
/// export: it hands out who looked up whom.
async fn audit_events(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: axum::http::Uri,
    Query(params): Query<AuditParams>,
) -> Result<Response, ServiceError> {
    use axum::response::IntoResponse;
    let query = audit_query(&state, &params)?;
    let format = params.format.as_deref().unwrap_or("json");
    if format == "json" && query.limit > AUDIT_JSON_PAGE {
        return Err(bad(format!(
            "limit {}: the JSON search answers at most {AUDIT_JSON_PAGE} events a page; follow \
             the Link: rel=\"next\" header for the rest (or ask for format=csv)",
            query.limit
        )));
    }
    let events = state.store.audit_search(&query).await?;
    match format {
        "json" => {
            state
                .store
                .record_export(
                    &format!(
                        "audit search JSON page of {} events ({}{})",
                        events.len(),
                        crate::audit_report::describe_query(&query),
                        query
                            .after
                            .as_ref()
                            .map(|a| format!(", after {a}"))
                            .unwrap_or_default()
                    ),
                    &principal.audit_name(),
                )
                .await?;
            let next = (events.len() as i64 == query.limit)
                .then(|| events.last())
                .flatten()
                .map(|last| {
                    let cursor = crate::store::audit_search::AuditCursor::after(last);
                    let mut pairs: Vec<&str> = uri
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .filter(|p| !p.is_empty() && !p.starts_with("after="))
                        .collect();
                    let after = format!("after={cursor}");
                    pairs.push(&after);
                    format!("<{}?{}>; rel=\"next\"", uri.path(), pairs.join("&"))
                });
            let mut response = Json(events).into_response();
            if let Some(next) = next
                && let Ok(value) = axum::http::HeaderValue::from_str(&next)
            {
                response
                    .headers_mut()
                    .insert(axum::http::header::LINK, value);
            }
            Ok(response)
        }
        "csv" => {
            principal.require(crate::auth::Permission::ExportAudit)?;
            state
                .store
                .record_export(
                    &format!(
                        "audit search CSV of {} events ({})",
                        events.len(),
                        crate::audit_report::describe_query(&query)
                    ),
                    &principal.audit_name(),
                )
                .await?;
            Ok((
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"onshi-audit.csv\"",
                    ),
                ],
                crate::audit_report::csv(&events),
            )
                .into_response())
        }
        other => Err(bad(format!("format {other:?}: expected json or csv"))),
    }
}

/// The printable report of a period (with `month`, the monthly summary an auditor files).
async fn audit_report(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
) -> Result<Response, ServiceError> {
    use axum::response::IntoResponse;
    let query = audit_query(&state, &params)?;
    let store = &state.store;
    let totals = store
        .audit_totals(query.site.as_ref(), (query.from, query.to))
        .await?;
    let views = |allowed_or_disaster: AuditQuery| async move {
        store.audit_search(&allowed_or_disaster).await
    };
    let base = AuditQuery {
        kinds: vec!["info_view".into()],
        ..query.clone()
    };
    let refusals = views(AuditQuery {
        result: Some("refused".into()),
        ..base.clone()
    })
    .await?;
    let disaster_views = views(AuditQuery {
        disaster_window: Some(true),
        ..base
    })
    .await?;
    let verdict = store
        .verify_period(query.site.as_ref(), query.from, query.to)
        .await?;
    let title = match &params.month {
        Some(month) => format!("オンライン資格確認 監査月報 {month} / monthly audit summary"),
        None => "オンライン資格確認 監査報告 / audit report".to_string(),
    };
    let site = query.site.as_ref().map(|s| s.to_string());
    let html = crate::audit_report::html(&crate::audit_report::ReportInput {
        title,
        site_code: site.as_deref(),
        from: query.from,
        to: query.to,
        generated_at: time::OffsetDateTime::now_utc(),
        generated_by: &principal.audit_name(),
        totals: &totals,
        refusals: &refusals,
        disaster_views: &disaster_views,
        verdict: &verdict,
    });
    store
        .record_export(
            &format!(
                "audit report ({}; verdict {})",
                crate::audit_report::describe_query(&query),
                if verdict.intact { "INTACT" } else { "BROKEN" }
            ),
            &principal.audit_name(),
        )
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response())
}

// ------------------------------------------------------------------------------- access rules

/// A request's JSON body as `T`, or a 400 that shows the expected shape (`shape`) and what
/// was wrong.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("{shape}: {e}")))
}

fn site_of(code: &str) -> Result<SiteCode, ServiceError> {
    SiteCode::parse(code).map_err(|e| bad(format!("site code: {e}")))
}

/// What the site's agent is told (roster and the windows covering its prefecture); `null`
/// while chain IT has set neither and the agent's own configuration applies.
async fn site_access_rules(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Option<onshi_domain::access::AccessRules>>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .access_rules(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

/// Replaces the site's staff roster (`[{"id": "D1", "role": "doctor"}, ...]`); its agent has
/// it within a heartbeat.
async fn put_site_staff(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let site = site_of(&site_code)?;
    let staff: Vec<onshi_domain::access::Staff> = json_body(
        &body,
        "the roster is a JSON list of {\"id\", \"role\"} (role: doctor, dentist, pharmacist, clerk or site_admin)",
    )?;
    store
        .put_roster(&site, &staff, &principal.audit_name())
        .await?;
    Ok(Json(
        serde_json::json!({ "site_code": site.as_str(), "staff": staff.len() }),
    ))
}

/// Opens (or changes) a disaster window (`{"id", "prefectures": ["13"], "starts_at",
/// "ends_at"}`, RFC 3339); the agents of those prefectures have it within a heartbeat.
async fn open_disaster_window(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<onshi_domain::access::DisasterWindow>, ServiceError> {
    let window: onshi_domain::access::DisasterWindow = json_body(
        &body,
        "a disaster window is {\"id\", \"prefectures\": [\"13\"], \"starts_at\", \"ends_at\"} with RFC 3339 times",
    )?;
    store
        .open_disaster_window(&window, &principal.audit_name())
        .await?;
    Ok(Json(window))
}

// ------------------------------------------------------------------------------- revocations

async fn list_revocations(
    State(store): State<Store>,
) -> Result<Json<Vec<crate::store::revocations::Revocation>>, ServiceError> {
    Ok(Json(store.revocations().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    sha256_fingerprint: String,
    reason: String,
}

/// Revokes a certificate (`{"sha256_fingerprint", "reason"}`): refused at the next handshake
/// by this replica at once, by the others within seconds; audited with the operator.
async fn revoke_certificate(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let request: RevokeRequest = json_body(
        &body,
        "a revocation is {\"sha256_fingerprint\", \"reason\"}",
    )?;
    let fingerprint = state
        .store
        .revoke(
            &request.sha256_fingerprint,
            &request.reason,
            &principal.audit_name(),
        )
        .await?;
    state.deny.insert(fingerprint);
    Ok(Json(
        serde_json::json!({ "revoked": onshi_domain::hex::encode(&fingerprint) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeSiteRequest {
    reason: String,
    /// Certificates of the site starting before this time are refused; default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    issued_before: Option<time::OffsetDateTime>,
}

/// Revokes a whole site (`{"reason", "issued_before"?}`): every agent certificate of the site
/// whose validity starts before `issued_before` (default now), those a stolen key minted
/// included, is refused at the next handshake and ends its open session; audited.
async fn revoke_site(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let site = site_of(&site_code)?;
    let request: RevokeSiteRequest = json_body(
        &body,
        "a site revocation is {\"reason\", \"issued_before\"?: RFC 3339 time (default now)}",
    )?;
    let before = request
        .issued_before
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    state
        .store
        .revoke_site(&site, before, &request.reason, &principal.audit_name())
        .await?;
    state.deny.revoke_site(site.as_str(), before);
    Ok(Json(serde_json::json!({
        "site_code": site.as_str(),
        "issued_before": before
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })))
}

// ------------------------------------------------------------------------------- adoption

fn day(name: &str, text: &str) -> Result<time::Date, ServiceError> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| bad(format!("{name} {text:?}: expected a date, YYYY-MM-DD")))
}

/// The site's adoption checklist with deadlines, evidence and status; `null` without a plan.
async fn site_adoption(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Option<crate::store::adoption::AdoptionView>>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .adoption(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptionPlan {
    planned_start: String,
    #[serde(default)]
    new_site: bool,
}

/// Sets the planned start (`{"planned_start": "2027-04-01", "new_site": false}`).
async fn put_site_adoption(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Option<crate::store::adoption::AdoptionView>>, ServiceError> {
    let site = site_of(&site_code)?;
    let plan: AdoptionPlan = json_body(
        &body,
        "a plan is {\"planned_start\": \"YYYY-MM-DD\", \"new_site\"}",
    )?;
    let start = day("planned_start", &plan.planned_start)?;
    store
        .set_adoption_plan(&site, start, plan.new_site, &principal.audit_name())
        .await?;
    Ok(Json(
        store
            .adoption(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDone {
    done_on: String,
    evidence: String,
}

/// Marks a step done (`{"done_on": "2026-12-01", "evidence": "application no. 123"}`).
async fn put_adoption_step(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((site_code, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Option<crate::store::adoption::AdoptionView>>, ServiceError> {
    let site = site_of(&site_code)?;
    let done: StepDone = json_body(
        &body,
        "a done step is {\"done_on\": \"YYYY-MM-DD\", \"evidence\"}",
    )?;
    store
        .set_adoption_step(
            &site,
            &step,
            day("done_on", &done.done_on)?,
            &done.evidence,
            &principal.audit_name(),
        )
        .await?;
    Ok(Json(
        store
            .adoption(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubsidyQuery {
    /// hospital | large_chain_pharmacy | clinic_or_pharmacy
    facility: String,
    /// Card readers (hospitals: 1 to 3).
    readers: Option<u8>,
    /// The actual project cost, yen (tax included).
    cost: u64,
    /// When the card reader was applied for (YYYY-MM-DD): by 2021-03-31 the accelerated plan.
    reader_applied_on: String,
}

/// The subsidy calculator (the domain doc's table): what finance can expect for one site.
async fn subsidy(
    Query(query): Query<SubsidyQuery>,
) -> Result<Json<onshi_domain::adoption::Subsidy>, ServiceError> {
    use onshi_domain::adoption::SubsidyClass;
    let class = match query.facility.as_str() {
        "hospital" => SubsidyClass::Hospital {
            readers: query
                .readers
                .ok_or_else(|| bad("a hospital's subsidy depends on its readers (1 to 3)"))?,
        },
        "large_chain_pharmacy" => SubsidyClass::LargeChainPharmacy,
        "clinic_or_pharmacy" => SubsidyClass::ClinicOrPharmacy,
        other => {
            return Err(bad(format!(
                "facility {other:?}: expected hospital, large_chain_pharmacy or clinic_or_pharmacy"
            )));
        }
    };
    let applied = day("reader_applied_on", &query.reader_applied_on)?;
    let accelerated = applied <= time::macros::date!(2021 - 03 - 31);
    onshi_domain::adoption::subsidy(class, query.cost, accelerated)
        .map(Json)
        .map_err(|e| bad(e.to_string()))
}

/// The per-prefecture adoption table (institutions, card reader applied, production connected,
/// operating, rates) for the chain's sites.
async fn prefecture_table(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<onshi_domain::adoption::PrefectureRow>>, ServiceError> {
    Ok(Json(
        store
            .prefecture_table(time::OffsetDateTime::now_utc(), &principal.scope)
            .await?,
    ))
}

// ------------------------------------------------------------------------------- grace notifications

/// A grace notification (猶予届出) as filed; dates are YYYY-MM-DD. Which fields a category
/// takes is `onshi_domain::grace::GraceNotification`'s table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraceFiling {
    /// 1 to 6, or its name (system_not_ready, no_optical_line, home_visit_only,
    /// renovation_or_temporary_facility, planned_closure, special_difficulty).
    category: onshi_domain::grace::GraceCategory,
    filed_on: String,
    contracted_on: Option<String>,
    line_available_on: Option<String>,
    ends_on: Option<String>,
    review_on: Option<String>,
    evidence: Option<String>,
}

fn optional_day(name: &str, text: &Option<String>) -> Result<Option<time::Date>, ServiceError> {
    text.as_deref().map(|t| day(name, t)).transpose()
}

/// The site's grace notifications, oldest first, each with its deadline and status today.
async fn site_grace_notifications(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Vec<crate::store::grace::GraceView>>, ServiceError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .grace_notifications(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

/// Files a grace notification (`{"category": 2, "filed_on": "2023-03-01",
/// "line_available_on": "2023-08-31"}`): 201 with its deadline and status; audited.
async fn file_grace_notification(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<crate::store::grace::GraceView>), ServiceError> {
    let site = site_of(&site_code)?;
    let filing: GraceFiling = json_body(
        &body,
        "a grace notification is {\"category\": 1-6, \"filed_on\": \"YYYY-MM-DD\"} with its category's \
         contracted_on, line_available_on, ends_on or review_on, and evidence",
    )?;
    let notification = onshi_domain::grace::GraceNotification {
        category: filing.category,
        filed_on: day("filed_on", &filing.filed_on)?,
        contracted_on: optional_day("contracted_on", &filing.contracted_on)?,
        line_available_on: optional_day("line_available_on", &filing.line_available_on)?,
        ends_on: optional_day("ends_on", &filing.ends_on)?,
        review_on: optional_day("review_on", &filing.review_on)?,
        evidence: filing.evidence,
    };
    let view = store
        .file_grace_notification(
            &site,
            &notification,
            &principal.audit_name(),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraceEnding {
    ended_on: String,
}

/// Ends a grace notification (`{"ended_on": "2023-06-30"}`): the system is ready, the line in
/// use, the works over, the site closed, the difficulty resolved. Once; audited.
async fn end_grace_notification(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((site_code, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<crate::store::grace::GraceView>, ServiceError> {
    use crate::store::grace::GraceEnd;
    let site = site_of(&site_code)?;
    let id: i64 = id
        .parse()
        .map_err(|_| bad(format!("grace notification id {id:?}: expected a number")))?;
    let ending: GraceEnding = json_body(&body, "an ending is {\"ended_on\": \"YYYY-MM-DD\"}")?;
    let ended_on = day("ended_on", &ending.ended_on)?;
    match store
        .end_grace_notification(
            &site,
            id,
            ended_on,
            &principal.audit_name(),
            time::OffsetDateTime::now_utc(),
        )
        .await?
    {
        GraceEnd::Ended(view) => Ok(Json(*view)),
        GraceEnd::NotFound => Err(ServiceError::NotFound(format!(
            "猶予届出 {id} はこの施設にありません / site {site} has no grace notification {id}"
        ))),
        GraceEnd::AlreadyEnded { on, by } => Err(bad(format!(
            "grace notification {id} was already ended on {on} by {by}; file a new one if a grace applies again"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraceListQuery {
    /// active | overdue | ended; without it, the open ones (active and overdue).
    status: Option<String>,
}

/// Across the chain: grace notifications by status today, soonest deadline first.
async fn chain_grace_notifications(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<GraceListQuery>,
) -> Result<Json<Vec<crate::store::grace::GraceView>>, ServiceError> {
    let state = query
        .status
        .as_deref()
        .map(str::parse::<onshi_domain::grace::GraceState>)
        .transpose()
        .map_err(bad)?;
    Ok(Json(
        store
            .chain_grace_notifications(state, time::OffsetDateTime::now_utc(), &principal.scope)
            .await?,
    ))
}

// ------------------------------------------------------------------------------- accounts

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteName {
    name: String,
}

/// Names a site in the directory (`{"name": "さくら薬局 新宿店"}`); audited.
async fn put_site(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let site = site_of(&site_code)?;
    let named: SiteName = json_body(&body, "a site is {\"name\"}")?;
    store
        .put_site_name(&site, &named.name, &principal.audit_name())
        .await?;
    Ok(Json(
        serde_json::json!({ "site_code": site.as_str(), "name": named.name.trim() }),
    ))
}

/// This API's OpenAPI 3.1 document (checked against real answers by tests/openapi.rs).
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

/// The site list as the dashboard filters it, a page at a time (50 per page, by code):
/// `?prefecture=13&kind=pharmacy&status=online&rollout=applied&q=新宿&page=2`.
async fn search_sites(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<crate::web::sites::Params>,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let filter = params.filter().map_err(bad)?;
    let found = store.site_page(&principal.scope, &filter).await?;
    Ok(Json(serde_json::json!({
        "matches": found.matches,
        "page": filter.page.max(1),
        "per_page": crate::store::dashboard::SITES_PER_PAGE,
        "rows": found.rows,
    })))
}

/// Who the caller is: login, role, scope (`null`: the whole chain) and how they signed in.
async fn me(Extension(principal): Extension<Principal>) -> Json<serde_json::Value> {
    let scope = match &principal.scope {
        crate::auth::SiteScope::All => serde_json::Value::Null,
        crate::auth::SiteScope::Area { prefectures, sites } => {
            serde_json::json!({ "prefectures": prefectures, "sites": sites })
        }
    };
    Json(serde_json::json!({
        "login": principal.name,
        "display_name": principal.display_name,
        "role": principal.role,
        "scope": scope,
        "credential": principal.credential,
    }))
}

/// API tokens belong to accounts; an operator certificate is its own credential.
fn account_of(principal: &Principal) -> Result<&str, ServiceError> {
    if principal.credential == crate::auth::Credential::Certificate {
        return Err(bad(
            "operators authenticate with their certificate; API tokens belong to accounts",
        ));
    }
    Ok(&principal.name)
}

async fn list_tokens(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<crate::store::accounts::ApiTokenSummary>>, ServiceError> {
    Ok(Json(store.api_tokens(account_of(&principal)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    label: String,
    #[serde(default = "default_token_days")]
    days: i64,
}

fn default_token_days() -> i64 {
    90
}

/// Issues an API token acting as the caller (`{"label": "nightly export", "days": 90}`): 201
/// with the token, shown this once.
async fn create_token(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ServiceError> {
    let login = account_of(&principal)?;
    // A token is for automation; minting more would let one leaked token outlive its own
    // expiry and revocation. Tokens are made by a signed-in person (or the CLI).
    if principal.credential == crate::auth::Credential::ApiToken {
        return Err(ServiceError::Forbidden(
            "APIトークンでは新しいトークンを作れません。サインインして作成してください / an API \
             token cannot make API tokens; sign in to make one"
                .into(),
        ));
    }
    let new: NewToken = json_body(&body, "a token is {\"label\", \"days\": 1-366}")?;
    let (id, token) = crate::auth::accounts::issue_token(
        &store,
        login,
        &new.label,
        new.days,
        &principal.audit_name(),
    )
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(
            serde_json::json!({ "id": id, "label": new.label.trim(), "days": new.days, "token": token }),
        ),
    ))
}

/// Revokes one of the caller's tokens (a chain administrator: anyone's).
async fn revoke_token(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<axum::http::StatusCode, ServiceError> {
    let owner = if principal.may(crate::auth::Permission::Administer) {
        None
    } else {
        Some(account_of(&principal)?)
    };
    store
        .revoke_api_token(id, owner, &principal.audit_name())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn list_accounts(
    State(store): State<Store>,
) -> Result<Json<Vec<crate::store::accounts::AccountSummary>>, ServiceError> {
    Ok(Json(store.accounts().await?))
}

/// Makes an account (`{"login", "display_name", "role", "prefectures", "sites",
/// "password"}`): 201; audited. The password never leaves this request.
async fn create_account(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ServiceError> {
    let spec: crate::auth::accounts::AccountSpec = json_body(
        &body,
        "an account is {\"login\", \"display_name\", \"role\", \"prefectures\", \"sites\", \"password\"}",
    )?;
    crate::auth::accounts::create_account(&store, &spec, &principal.audit_name()).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serde_json::json!({ "login": spec.login.trim().to_lowercase(), "role": spec.role })),
    ))
}

/// Changes an account (`{"role"?, "prefectures"?, "sites"?, "disabled"?, "password"?}`):
/// demote or promote it, disable or enable it, reset its password (its sessions end and its
/// API tokens are revoked). Audited.
async fn change_account(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(login): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let update: crate::auth::accounts::AccountUpdate = json_body(
        &body,
        "an account change is {\"role\"?, \"prefectures\"?, \"sites\"?, \"disabled\"?, \"password\"?}",
    )?;
    crate::auth::accounts::change_account(&store, &login, &update, &principal.audit_name()).await?;
    Ok(Json(
        serde_json::json!({ "login": login.trim().to_lowercase() }),
    ))
}

// ------------------------------------------------------------------------------- retention

/// The retention policy (months per event kind, `*` for the rest).
async fn retention_policy(
    State(store): State<Store>,
) -> Result<Json<Vec<crate::store::retention::RetentionRule>>, ServiceError> {
    Ok(Json(store.retention_policy().await?))
}

/// Sets one kind's retention (`{"kind": "link_change", "months": 13}`); months partitioned
/// from now on follow it. Not below the kind's floor (migration 0018); audited by the
/// owner's function that makes the change.
async fn put_retention(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Vec<crate::store::retention::RetentionRule>>, ServiceError> {
    let rule: crate::store::retention::RetentionRule = json_body(
        &body,
        "a retention rule is {\"kind\": \"link_change\" (or \"*\"), \"months\": the kind's floor (60, or 13 for equipment and link kinds) to 1200}",
    )?;
    store.set_retention(&rule, &principal.audit_name()).await?;
    Ok(Json(store.retention_policy().await?))
}

// ------------------------------------------------------------------------------- notifications

async fn list_endpoints(
    State(store): State<Store>,
) -> Result<Json<Vec<crate::store::notifications::Endpoint>>, ServiceError> {
    Ok(Json(store.notification_endpoints().await?))
}

/// Makes a notification endpoint (`crate::notify::endpoint::SHAPE`): 201 with the endpoint and,
/// for a webhook, its signing secret, shown this once; audited.
async fn create_endpoint(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ServiceError> {
    use crate::notify::endpoint;
    let request: endpoint::EndpointRequest = json_body(&body, endpoint::SHAPE)?;
    let (made, secret) = endpoint::create(
        &state.store,
        state.notification_key.as_deref(),
        &request,
        &principal,
    )
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serde_json::json!({ "endpoint": made, "secret": secret })),
    ))
}

/// Changes an endpoint (the same JSON; its channel stays, its secret is kept); audited.
async fn put_endpoint(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<crate::store::notifications::Endpoint>, ServiceError> {
    use crate::notify::endpoint;
    let request: endpoint::EndpointRequest = json_body(&body, endpoint::SHAPE)?;
    Ok(Json(
        endpoint::update(&store, id, &request, &principal).await?,
    ))
}

/// Queues a test delivery to the endpoint: 202 with the notification's id.
async fn test_endpoint(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ServiceError> {
    let notification = crate::notify::endpoint::test(&store, id, &principal).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({ "notification_id": notification })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryParams {
    endpoint: Option<i64>,
    limit: Option<i64>,
}

/// The delivery log, newest first: `?endpoint=3&limit=100` (limit 1-1000, default 100).
async fn list_deliveries(
    State(store): State<Store>,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<Vec<crate::store::notifications::Delivery>>, ServiceError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit {limit}: expected 1 to 1000")));
    }
    Ok(Json(
        store
            .notification_deliveries(params.endpoint, limit)
            .await?,
    ))
}
