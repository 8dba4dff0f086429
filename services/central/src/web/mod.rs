//! The chain IT dashboard: server-rendered HTML pages (Japanese first, English second), no
//! front-end build. Pages read the same store functions as the JSON API, with the principal's
//! site scope applied in the queries.

mod account;
pub(crate) mod alerts;
mod audit;
mod certificates;
pub mod charts;
pub mod form;
pub mod format;
pub mod freshness;
pub mod layout;
mod login;
mod notifications;
mod overview;
mod rollout;
pub(crate) mod sites;

use axum::Router;
use axum::routing::{get, post};

use crate::api::ApiState;

/// A CSV download named `<prefix>-YYYYMMDD.csv` (the Tokyo day of `now`), never cached.
pub(crate) fn csv_download(
    prefix: &str,
    now: time::OffsetDateTime,
    body: impl Into<axum::body::Body>,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let day = format::tokyo_day(now);
    let disposition = format!(
        "attachment; filename=\"{prefix}-{:04}{:02}{:02}.csv\"",
        day.year(),
        u8::from(day.month()),
        day.day()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body.into(),
    )
        .into_response()
}

/// What a browser must not do with central's pages, on every answer: run any script or load
/// anything from elsewhere (the pages have no script; the printable report has its own inline
/// style), be framed by another site (clickjacking of the dashboard's buttons), send central's
/// URLs (audit searches name sites and staff) to other sites as referrers (`same-origin`, not
/// `no-referrer`: under that, browsers send `Origin: null` with the page's own forms, and the
/// sign-in's origin check refuses them), or reach central over plain HTTP again.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Adds [`SECURITY_HEADERS`] to a response (those a handler set itself are kept).
pub(crate) async fn security_headers(
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert(axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Routes reachable without signing in: the sign-in page (its form read up to a few KiB) and
/// the stylesheet.
pub fn public() -> Router<ApiState> {
    Router::new()
        .route(
            "/login",
            get(login::page)
                .post(login::submit)
                .layer(axum::extract::DefaultBodyLimit::max(
                    login::FORM_LIMIT_BYTES,
                )),
        )
        .route("/static/app.css", get(login::stylesheet))
}

/// The dashboard's pages; `api::router_with` puts them behind authentication.
pub fn pages() -> Router<ApiState> {
    Router::new()
        .route("/logout", post(login::logout))
        .route("/", overview::route())
        .route("/sites", get(sites::list_handler))
        .route("/sites/{site_code}", get(sites::detail_handler))
        .route("/account", get(account::page_handler))
        .route("/account/tokens", post(account::make_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/alerts", get(alerts::list_handler))
        .route("/alerts/{id}/acknowledge", post(alerts::acknowledge_form))
        .route("/certificates", get(certificates::page_handler))
        .route("/certificates.csv", get(certificates::csv_handler))
        .route("/rollout", get(rollout::overview))
        .route("/rollouts", post(rollout::start))
        .route("/rollouts/{id}", get(rollout::detail))
        .route("/rollouts/{id}/{action}", post(rollout::act))
        .route("/audit", get(audit::page_handler))
        .route("/audit/export.csv", get(audit::export_csv))
        .route("/audit/report", get(audit::report))
        .route(
            "/notifications",
            get(notifications::page_handler).post(notifications::create_form),
        )
        .route(
            "/notifications/{id}",
            get(notifications::edit_page).post(notifications::edit_form),
        )
        .route(
            "/notifications/{id}/{action}",
            post(notifications::act_form),
        )
}
