//! The chain IT dashboard: server-rendered HTML pages (Japanese first, English second), no
//! front-end build. Pages call the same `central_core::service` functions as the JSON API where both
//! offer a capability, with the principal's site scope applied in the queries; `crate::routes`
//! declares them.

pub(crate) mod account;
pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod certificates;
pub(crate) mod charts;
pub mod format;
pub mod freshness;
pub(crate) mod layout;
pub(crate) mod login;
pub(crate) mod notifications;
pub(crate) mod overview;
pub(crate) mod rollout;
pub(crate) mod sites;

// The pages' forms and links use the one urlencoded helper (`super::form`).
use central_core::form;

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
