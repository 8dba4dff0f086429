//! The JSON API (versioned under `/api/v1`): thin handlers that parse what was sent, call the
//! store or a `central_core::service` function, and answer JSON. `crate::routes` declares them.
//!
//! Served over TLS 1.3, on the mTLS listener to operators (a client certificate from the chain
//! CA naming `urn:onshi-fleet:operator:<name>`; an agent's certificate is refused here) and on
//! the web listener to people and programs with an account (session cookie or API token).
//! `central_core::auth` resolves who asks; `crate::routes` says what each route needs; site scope is
//! checked on every `{site_code}` and applied inside listing queries.

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use onshi_domain::site::SiteCode;
use serde::Deserialize;

use crate::error::HttpError;
use crate::extract::{Path, Query};
use crate::state::ApiState;
use central_core::auth::Principal;
use central_core::error::ServiceError;
use central_core::service;
use central_core::service::audit::{AuditParams, AuditSearch, Format};
use central_store::audit::ChainVerdict;
use central_store::migrate::{self, SchemaStatus};
use central_store::{
    Alert, AlertState, CertificateAlert, CertificateRow, SiteSummary, Store, StoredEvent,
    StoredInventory, StreamStatus,
};

pub(crate) async fn list_sites(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<SiteSummary>>, HttpError> {
    Ok(Json(store.sites(&principal.scope).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<i64>,
}

pub(crate) async fn list_site_events(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<StoredEvent>>, HttpError> {
    let site = site_of(&site_code)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest("limit must be between 1 and 1000".into()).into());
    }
    let mut events = store.events_for_site(&site, limit).await?;
    for event in &mut events {
        central_core::auth::without_identifiers(&principal, &mut event.body);
    }
    Ok(Json(events))
}

/// What the site's agents last said they see: readers, certificates, terminals.
pub(crate) async fn site_inventory(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Vec<StoredInventory>>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.inventories(&site).await?))
}

/// Whether the site's stored events still follow its hash chains (the whole history; the
/// same verdict as `central verify --site`).
pub(crate) async fn site_verification(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<ChainVerdict>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.verify_period(Some(&site), None, None).await?))
}

/// Every agent stream: produced (as the agent reported), highest received, contiguous.
pub(crate) async fn list_agents(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<StreamStatus>>, HttpError> {
    Ok(Json(store.stream_statuses(&principal.scope).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AlertsQuery {
    /// Include resolved alerts.
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

/// Open alerts, newest first (`?all=true`: resolved ones too).
pub(crate) async fn list_alerts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AlertsQuery>,
) -> Result<Json<Vec<Alert>>, HttpError> {
    let states: &[AlertState] = if query.all {
        &AlertState::ALL
    } else {
        &AlertState::UNRESOLVED
    };
    Ok(Json(
        service::alerts::list(&store, &principal.scope, states, query.limit.unwrap_or(100)).await?,
    ))
}

/// `POST /api/v1/alerts/{id}/acknowledge`: the acknowledged alert (the dashboard's form calls
/// the same `service::alerts::acknowledge`).
pub(crate) async fn acknowledge_alert(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Alert>, HttpError> {
    Ok(Json(
        service::alerts::acknowledge(&store, &principal, &id).await?,
    ))
}

/// Rollouts, newest first, with their sites (wave, state) in the caller's scope and every
/// transition.
pub(crate) async fn list_rollouts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<central_store::rollouts::RolloutView>>, HttpError> {
    Ok(Json(
        service::rollouts::list(&store, &principal.scope).await?,
    ))
}

pub(crate) async fn one_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<central_store::rollouts::RolloutView>, HttpError> {
    Ok(Json(
        service::rollouts::one(&store, &principal.scope, id).await?,
    ))
}

/// Starts a rollout: `{"target_version": "0.2.0", "waves": [{"share": 5}, {"share": 25},
/// {"share": 100}], "gates": {...}, "window": "outside_opening_hours", "on_gate_failure":
/// "pause", "soak_secs": 3600, "apply_timeout_secs": 86400}`.
pub(crate) async fn start_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<
    (
        axum::http::StatusCode,
        Json<central_store::rollouts::RolloutView>,
    ),
    HttpError,
> {
    let new: central_store::rollouts::NewRollout = json_body(
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
    let view = service::rollouts::one(&store, &principal.scope, id).await?;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

/// `POST /api/v1/rollouts/{id}/pause | resume | rollback`.
pub(crate) async fn act_on_rollout(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<central_store::rollouts::RolloutView>, HttpError> {
    service::rollouts::act(&store, id, &action, &principal.audit_name()).await?;
    one_rollout(State(store), Extension(principal), Path(id)).await
}

/// Every site's availability: online, closed, agent down, link down, qualification terminal
/// not answering, national system unreachable, reader unplugged; whether it is alerting (open
/// and not online).
pub(crate) async fn list_availability(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<central_store::availability::SiteAvailability>>, HttpError> {
    Ok(Json(store.availability(None, &principal.scope).await?))
}

/// One site's availability; 404 before central has classified it (no agent seen yet).
pub(crate) async fn site_availability(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<central_store::availability::SiteAvailability>, HttpError> {
    let site = site_of(&site_code)?;
    store
        .availability(Some(&site), &central_core::auth::SiteScope::All)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "central has not classified site {site} yet: no agent of it has connected"
            ))
            .into()
        })
}

/// The opening hours that apply to a site and where they come from (site, chain, built_in).
pub(crate) async fn site_opening_hours(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<central_store::availability::EffectiveHours>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(store.opening_hours(&site).await?))
}

const HOURS_SHAPE: &str = "opening hours are {\"weekly\": {\"mon\": [\"09:00-18:00\"], ...}, \"closed_on_national_holidays\": true, \"closed_dates\": [\"YYYY-MM-DD\"], \"open_dates\": {\"YYYY-MM-DD\": [\"10:00-16:00\"]}}";

/// Sets the chain default opening hours (sites without their own follow it).
pub(crate) async fn put_chain_opening_hours(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<onshi_domain::hours::OpeningHours>, HttpError> {
    let hours: onshi_domain::hours::OpeningHours = json_body(&body, HOURS_SHAPE)?;
    store
        .set_opening_hours(None, &hours, &principal.audit_name())
        .await?;
    Ok(Json(hours))
}

/// Sets one site's own opening hours.
pub(crate) async fn put_site_opening_hours(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<central_store::availability::EffectiveHours>, HttpError> {
    let site = site_of(&site_code)?;
    let hours: onshi_domain::hours::OpeningHours = json_body(&body, HOURS_SHAPE)?;
    store
        .set_opening_hours(Some(&site), &hours, &principal.audit_name())
        .await?;
    Ok(Json(store.opening_hours(&site).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CertificatesQuery {
    expiring_within_days: Option<i64>,
    site: Option<String>,
}

/// The certificates sites hold now, soonest expiry first, with days to expiry and (terminal
/// certificates) the renewal lead time left.
pub(crate) async fn list_certificates(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<CertificatesQuery>,
) -> Result<Json<Vec<CertificateRow>>, HttpError> {
    if let Some(days) = query.expiring_within_days
        && !(0..=36_500).contains(&days)
    {
        return Err(ServiceError::BadRequest(
            "expiring_within_days must be between 0 and 36500".into(),
        )
        .into());
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
pub(crate) async fn list_certificate_alerts(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<CertificateAlert>>, HttpError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest("limit must be between 1 and 1000".into()).into());
    }
    Ok(Json(
        store.certificate_alerts(limit, &principal.scope).await?,
    ))
}

pub(crate) async fn schema(State(store): State<Store>) -> Result<Json<SchemaStatus>, HttpError> {
    Ok(Json(migrate::status(store.pool()).await?))
}

// ------------------------------------------------------------------------------- audit

/// Events in one page of the JSON audit search (the default and the most `limit` may ask):
/// a search is read page by page, never held whole in memory.
pub(crate) const AUDIT_JSON_PAGE: i64 = 1000;

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(message.into())
}

/// The audit search (`service::audit`: the same search, period and rows as the dashboard's
/// `/audit`). JSON comes a page at a time (at most [`AUDIT_JSON_PAGE`] events; a full page
/// links the next with `Link: <…>; rel="next"`), and every page is audited like an export: it
/// hands out who looked up whom. `format=csv` is the whole search, streamed.
pub(crate) async fn audit_events(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: axum::http::Uri,
    Query(params): Query<AuditParams>,
) -> Result<Response, HttpError> {
    use axum::response::IntoResponse;
    let search = AuditSearch::try_from(params)?;
    let key = state.patient_key.as_deref();
    if search.format == Format::Csv {
        principal.require(central_core::auth::Permission::ExportAudit)?;
        if search.query.limit.is_some() {
            return Err(bad(
                "limit applies to JSON pages; a CSV export is always the whole search (narrow                  it with the period, a site or other filters)",
            ).into());
        }
        let rows =
            service::audit::export_csv(&state.store, &principal, &search.query(key, None)?).await?;
        return Ok((
            [
                (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    "attachment; filename=\"onshi-audit.csv\"",
                ),
            ],
            axum::body::Body::from_stream(rows),
        )
            .into_response());
    }
    let limit = search.query.limit.unwrap_or(AUDIT_JSON_PAGE);
    if limit > AUDIT_JSON_PAGE {
        return Err(bad(format!(
            "limit {limit}: the JSON search answers at most {AUDIT_JSON_PAGE} events a page; \
             follow the Link: rel=\"next\" header for the rest (or ask for format=csv)"
        ))
        .into());
    }
    let query = search.query(key, Some(limit))?;
    let events = service::audit::search(&state.store, &principal, &query).await?;
    state
        .store
        .record_export(
            &format!(
                "audit search JSON page of {} events ({}{})",
                events.len(),
                central_core::audit_report::describe_query(&query),
                query
                    .after
                    .as_ref()
                    .map(|a| format!(", after {a}"))
                    .unwrap_or_default()
            ),
            &principal.audit_name(),
        )
        .await?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last())
        .flatten()
        .map(|last| {
            let cursor = central_store::audit_search::AuditCursor::after(last);
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

/// The printable report of a period (with `month`, the monthly summary an auditor files): the
/// same report as the dashboard's `/audit/report`.
pub(crate) async fn audit_report(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
) -> Result<Response, HttpError> {
    use axum::response::IntoResponse;
    let search = AuditSearch::try_from(params)?;
    let query = search.query(state.patient_key.as_deref(), None)?;
    let html = service::audit::report(&state.store, &principal, &search, &query).await?;
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
pub(crate) async fn site_access_rules(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Option<onshi_domain::access::AccessRules>>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .access_rules(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

/// Replaces the site's staff roster (`[{"id": "D1", "role": "doctor"}, ...]`); its agent has
/// it within a heartbeat.
pub(crate) async fn put_site_staff(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, HttpError> {
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
pub(crate) async fn open_disaster_window(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<onshi_domain::access::DisasterWindow>, HttpError> {
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

pub(crate) async fn list_revocations(
    State(store): State<Store>,
) -> Result<Json<Vec<central_store::revocations::Revocation>>, HttpError> {
    Ok(Json(store.revocations().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    sha256_fingerprint: String,
    reason: String,
}

/// Revokes a certificate (`{"sha256_fingerprint", "reason"}`): refused at the next handshake
/// by this replica at once, by the others within seconds; audited with the operator.
pub(crate) async fn revoke_certificate(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, HttpError> {
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
pub(crate) struct RevokeSiteRequest {
    reason: String,
    /// Certificates of the site starting before this time are refused; default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    issued_before: Option<time::OffsetDateTime>,
}

/// Revokes a whole site (`{"reason", "issued_before"?}`): every agent certificate of the site
/// whose validity starts before `issued_before` (default now), those a stolen key minted
/// included, is refused at the next handshake and ends its open session; audited.
pub(crate) async fn revoke_site(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, HttpError> {
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
pub(crate) async fn site_adoption(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Option<central_store::adoption::AdoptionView>>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .adoption(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdoptionPlan {
    planned_start: String,
    #[serde(default)]
    new_site: bool,
}

/// Sets the planned start (`{"planned_start": "2027-04-01", "new_site": false}`).
pub(crate) async fn put_site_adoption(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Option<central_store::adoption::AdoptionView>>, HttpError> {
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
pub(crate) struct StepDone {
    done_on: String,
    evidence: String,
}

/// Marks a step done (`{"done_on": "2026-12-01", "evidence": "application no. 123"}`).
pub(crate) async fn put_adoption_step(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((site_code, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Option<central_store::adoption::AdoptionView>>, HttpError> {
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
pub(crate) struct SubsidyQuery {
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
pub(crate) async fn subsidy(
    Query(query): Query<SubsidyQuery>,
) -> Result<Json<onshi_domain::adoption::Subsidy>, HttpError> {
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
            ))
            .into());
        }
    };
    let applied = day("reader_applied_on", &query.reader_applied_on)?;
    let accelerated = applied <= time::macros::date!(2021 - 03 - 31);
    onshi_domain::adoption::subsidy(class, query.cost, accelerated)
        .map(Json)
        .map_err(|e| bad(e.to_string()).into())
}

/// The per-prefecture adoption table (institutions, card reader applied, production connected,
/// operating, rates) for the chain's sites.
pub(crate) async fn prefecture_table(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<onshi_domain::adoption::PrefectureRow>>, HttpError> {
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
pub(crate) struct GraceFiling {
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
pub(crate) async fn site_grace_notifications(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Vec<central_store::grace::GraceView>>, HttpError> {
    let site = site_of(&site_code)?;
    Ok(Json(
        store
            .grace_notifications(&site, time::OffsetDateTime::now_utc())
            .await?,
    ))
}

/// Files a grace notification (`{"category": 2, "filed_on": "2023-03-01",
/// "line_available_on": "2023-08-31"}`): 201 with its deadline and status; audited.
pub(crate) async fn file_grace_notification(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<
    (
        axum::http::StatusCode,
        Json<central_store::grace::GraceView>,
    ),
    HttpError,
> {
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
pub(crate) struct GraceEnding {
    ended_on: String,
}

/// Ends a grace notification (`{"ended_on": "2023-06-30"}`): the system is ready, the line in
/// use, the works over, the site closed, the difficulty resolved. Once; audited.
pub(crate) async fn end_grace_notification(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path((site_code, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<central_store::grace::GraceView>, HttpError> {
    use central_store::grace::GraceEnd;
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
        )).into()),
        GraceEnd::AlreadyEnded { on, by } => Err(bad(format!(
            "grace notification {id} was already ended on {on} by {by}; file a new one if a grace applies again"
        )).into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GraceListQuery {
    /// active | overdue | ended; without it, the open ones (active and overdue).
    status: Option<String>,
}

/// Across the chain: grace notifications by status today, soonest deadline first.
pub(crate) async fn chain_grace_notifications(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<GraceListQuery>,
) -> Result<Json<Vec<central_store::grace::GraceView>>, HttpError> {
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
pub(crate) struct SiteName {
    name: String,
}

/// Names a site in the directory (`{"name": "さくら薬局 新宿店"}`); audited.
pub(crate) async fn put_site(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(site_code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, HttpError> {
    let site = site_of(&site_code)?;
    let named: SiteName = json_body(&body, "a site is {\"name\"}")?;
    store
        .put_site_name(&site, &named.name, &principal.audit_name())
        .await?;
    Ok(Json(
        serde_json::json!({ "site_code": site.as_str(), "name": named.name.trim() }),
    ))
}

/// This API's OpenAPI 3.1 document (checked against real answers by tests/it/openapi.rs).
pub(crate) async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

/// The site list as the dashboard filters it, a page at a time (50 per page, by code):
/// `?prefecture=13&kind=pharmacy&status=online&rollout=applied&q=新宿&page=2`.
pub(crate) async fn search_sites(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<crate::web::sites::Params>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let filter = params.filter().map_err(bad)?;
    let found = store.site_page(&principal.scope, &filter).await?;
    Ok(Json(serde_json::json!({
        "matches": found.matches,
        "page": filter.page.max(1),
        "per_page": central_store::dashboard::SITES_PER_PAGE,
        "rows": found.rows,
    })))
}

/// Who the caller is: login, role, scope (`null`: the whole chain) and how they signed in.
pub(crate) async fn me(Extension(principal): Extension<Principal>) -> Json<serde_json::Value> {
    let scope = match &principal.scope {
        central_core::auth::SiteScope::All => serde_json::Value::Null,
        central_core::auth::SiteScope::Area { prefectures, sites } => {
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
fn account_of(principal: &Principal) -> Result<&str, HttpError> {
    if principal.credential == central_core::auth::Credential::Certificate {
        return Err(bad(
            "operators authenticate with their certificate; API tokens belong to accounts",
        )
        .into());
    }
    Ok(&principal.name)
}

pub(crate) async fn list_tokens(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<central_store::accounts::ApiTokenSummary>>, HttpError> {
    Ok(Json(store.api_tokens(account_of(&principal)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    label: String,
    #[serde(default = "default_token_days")]
    days: i64,
}

fn default_token_days() -> i64 {
    90
}

/// Issues an API token acting as the caller (`{"label": "nightly export", "days": 90}`): 201
/// with the token, shown this once.
pub(crate) async fn create_token(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), HttpError> {
    let login = account_of(&principal)?;
    // A token is for automation; minting more would let one leaked token outlive its own
    // expiry and revocation. Tokens are made by a signed-in person (or the CLI).
    if principal.credential == central_core::auth::Credential::ApiToken {
        return Err(ServiceError::Forbidden(
            "APIトークンでは新しいトークンを作れません。サインインして作成してください / an API \
             token cannot make API tokens; sign in to make one"
                .into(),
        )
        .into());
    }
    let new: NewToken = json_body(&body, "a token is {\"label\", \"days\": 1-366}")?;
    let (id, token) = central_core::auth::accounts::issue_token(
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
pub(crate) async fn revoke_token(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<axum::http::StatusCode, HttpError> {
    let owner = if principal.may(central_core::auth::Permission::Administer) {
        None
    } else {
        Some(account_of(&principal)?)
    };
    store
        .revoke_api_token(id, owner, &principal.audit_name())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

pub(crate) async fn list_accounts(
    State(store): State<Store>,
) -> Result<Json<Vec<central_store::accounts::AccountSummary>>, HttpError> {
    Ok(Json(store.accounts().await?))
}

/// Makes an account (`{"login", "display_name", "role", "prefectures", "sites",
/// "password"}`): 201; audited. The password never leaves this request.
pub(crate) async fn create_account(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), HttpError> {
    let spec: central_core::auth::accounts::AccountSpec = json_body(
        &body,
        "an account is {\"login\", \"display_name\", \"role\", \"prefectures\", \"sites\", \"password\"}",
    )?;
    central_core::auth::accounts::create_account(&store, &spec, &principal.audit_name()).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serde_json::json!({ "login": spec.login.trim().to_lowercase(), "role": spec.role })),
    ))
}

/// Changes an account (`{"role"?, "prefectures"?, "sites"?, "disabled"?, "password"?}`):
/// demote or promote it, disable or enable it, reset its password (its sessions end and its
/// API tokens are revoked). Audited.
pub(crate) async fn change_account(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(login): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, HttpError> {
    let update: central_core::auth::accounts::AccountUpdate = json_body(
        &body,
        "an account change is {\"role\"?, \"prefectures\"?, \"sites\"?, \"disabled\"?, \"password\"?}",
    )?;
    central_core::auth::accounts::change_account(&store, &login, &update, &principal.audit_name())
        .await?;
    Ok(Json(
        serde_json::json!({ "login": login.trim().to_lowercase() }),
    ))
}

// ------------------------------------------------------------------------------- retention

/// The retention policy (months per event kind, `*` for the rest).
pub(crate) async fn retention_policy(
    State(store): State<Store>,
) -> Result<Json<Vec<central_store::retention::RetentionRule>>, HttpError> {
    Ok(Json(store.retention_policy().await?))
}

/// Sets one kind's retention (`{"kind": "link_change", "months": 13}`); months partitioned
/// from now on follow it. Not below the kind's floor (migration 0018); audited by the
/// owner's function that makes the change.
pub(crate) async fn put_retention(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Vec<central_store::retention::RetentionRule>>, HttpError> {
    let rule: central_store::retention::RetentionRule = json_body(
        &body,
        "a retention rule is {\"kind\": \"link_change\" (or \"*\"), \"months\": the kind's floor (60, or 13 for equipment and link kinds) to 1200}",
    )?;
    store.set_retention(&rule, &principal.audit_name()).await?;
    Ok(Json(store.retention_policy().await?))
}

// ------------------------------------------------------------------------------- notifications

pub(crate) async fn list_endpoints(
    State(store): State<Store>,
) -> Result<Json<Vec<central_store::notifications::Endpoint>>, HttpError> {
    Ok(Json(store.notification_endpoints().await?))
}

/// Makes a notification endpoint (`central_core::notify::endpoint::SHAPE`): 201 with the endpoint and,
/// for a webhook, its signing secret, shown this once; audited.
pub(crate) async fn create_endpoint(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), HttpError> {
    use central_core::notify::endpoint;
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
pub(crate) async fn put_endpoint(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<central_store::notifications::Endpoint>, HttpError> {
    use central_core::notify::endpoint;
    let request: endpoint::EndpointRequest = json_body(&body, endpoint::SHAPE)?;
    Ok(Json(
        endpoint::update(&store, id, &request, &principal).await?,
    ))
}

/// Queues a test delivery to the endpoint: 202 with the notification's id.
pub(crate) async fn test_endpoint(
    State(store): State<Store>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), HttpError> {
    let notification = central_core::notify::endpoint::test(&store, id, &principal).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({ "notification_id": notification })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryParams {
    endpoint: Option<i64>,
    limit: Option<i64>,
}

/// The delivery log, newest first: `?endpoint=3&limit=100` (limit 1-1000, default 100).
pub(crate) async fn list_deliveries(
    State(store): State<Store>,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<Vec<central_store::notifications::Delivery>>, HttpError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!("limit {limit}: expected 1 to 1000")).into());
    }
    Ok(Json(
        store
            .notification_deliveries(params.endpoint, limit)
            .await?,
    ))
}
