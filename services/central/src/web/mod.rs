//! The chain IT dashboard: server-rendered HTML pages (Japanese first, English second), no
//! front-end build. Pages read the same store functions as the JSON API, with the principal's
//! site scope applied in the queries.

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
    body: Vec<u8>,
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
        body,
    )
        .into_response()
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
