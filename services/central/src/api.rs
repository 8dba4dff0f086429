//! The JSON API (versioned under `/api/v1`).
//!
//! Served over TLS 1.3 with a client certificate from the chain CA that names an operator
//! (`urn:onshi-fleet:operator:<name>`); an agent's certificate, although from the same CA, is
//! refused here. Browser sign-in comes with the dashboard.

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use fleet_tls::listen::PeerCertificates;
use onshi_domain::site::SiteCode;
use serde::Deserialize;

use crate::audit::ChainVerdict;
use crate::error::ServiceError;
use crate::store::migrate::{self, SchemaStatus};
use crate::store::{
    Alert, CertificateAlert, CertificateRow, SiteSummary, Store, StoredEvent, StoredInventory,
    StreamStatus,
};

pub fn router(store: Store) -> Router {
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
        .route("/api/v1/certificates", get(list_certificates))
        .route("/api/v1/certificates/alerts", get(list_certificate_alerts))
        .route("/api/v1/schema", get(schema))
        .layer(axum::middleware::from_fn(require_operator))
        .with_state(store)
}

/// Only operator certificates reach the API.
async fn require_operator(
    Extension(peer): Extension<PeerCertificates>,
    request: Request,
    next: Next,
) -> Result<Response, ServiceError> {
    let leaf = peer
        .leaf()
        .ok_or_else(|| ServiceError::Forbidden("a client certificate is required".into()))?;
    let operator = fleet_tls::identity::operator_of(leaf)
        .map_err(|e| ServiceError::Forbidden(format!("this API is for operators: {e}")))?;
    tracing::debug!(%operator, path = %request.uri().path(), "api request");
    Ok(next.run(request).await)
}

async fn list_sites(State(store): State<Store>) -> Result<Json<Vec<SiteSummary>>, ServiceError> {
    Ok(Json(store.sites().await?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<i64>,
}

async fn list_site_events(
    State(store): State<Store>,
    Path(site_code): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<StoredEvent>>, ServiceError> {
    let site = SiteCode::parse(&site_code)
        .map_err(|e| ServiceError::BadRequest(format!("site code: {e}")))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(Json(store.events_for_site(&site, limit).await?))
}

/// What the site's agents last said they see: readers, certificates, terminals.
async fn site_inventory(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<Vec<StoredInventory>>, ServiceError> {
    let site = SiteCode::parse(&site_code)
        .map_err(|e| ServiceError::BadRequest(format!("site code: {e}")))?;
    Ok(Json(store.inventories(&site).await?))
}

/// Whether the site's stored events still follow its hash chains (the whole history; the
/// same verdict as `central verify --site`).
async fn site_verification(
    State(store): State<Store>,
    Path(site_code): Path<String>,
) -> Result<Json<ChainVerdict>, ServiceError> {
    let site = SiteCode::parse(&site_code)
        .map_err(|e| ServiceError::BadRequest(format!("site code: {e}")))?;
    Ok(Json(store.verify_period(Some(&site), None, None).await?))
}

/// Every agent stream: produced (as the agent reported), highest received, contiguous.
async fn list_agents(State(store): State<Store>) -> Result<Json<Vec<StreamStatus>>, ServiceError> {
    Ok(Json(store.stream_statuses().await?))
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
    Query(query): Query<AlertsQuery>,
) -> Result<Json<Vec<Alert>>, ServiceError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(Json(store.alerts(query.all, limit).await?))
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
            )
            .await?,
    ))
}

/// Certificate expiry alerts, newest first.
async fn list_certificate_alerts(
    State(store): State<Store>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<CertificateAlert>>, ServiceError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(Json(store.certificate_alerts(limit).await?))
}

async fn schema(State(store): State<Store>) -> Result<Json<SchemaStatus>, ServiceError> {
    Ok(Json(migrate::status(store.pool()).await?))
}
