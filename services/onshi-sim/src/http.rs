//! The HTTP adapter: the axum router served over TLS by [`crate::app`].
//!
//! - `POST /oqs/OQSsiquc01`: an `OQSsiquc01req` file in the body (UTF-8 or Shift_JIS, as its
//!   XML declaration says), the `OQSsiquc01res` file back, in the request's encoding, as
//!   `application/xml`. The institution asking is read from the terminal's client certificate
//!   ([`PeerCertificates`], put there by `fleet_tls::listen::serve_https`).
//! - `GET /healthz`: `ok`.
//!
//! Statuses: 200 for every answer about a person (also "no match" and the per-person
//! maintenance error), 400 for a request file that cannot be read, 403 for a terminal asking
//! for another institution, 413 beyond [`BODY_LIMIT`]; each error body is a result file with
//! `SegmentOfResult` 9 and a `SIM-` code (see [`crate::errors`]), except when the certificate
//! names no institution at all (plain text, as there is nothing to put in the file's
//! `MedicalInstitutionCode`).
//!
//! The real endpoint's URL and transport framing are not public (UNCONFIRMED); this path is
//! the simulator's convention.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_tls::identity::{leaf, terminal_of};
use fleet_tls::listen::PeerCertificates;
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{QualificationConfirmationRequest, ReadWarning, XmlEncoding};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};

use crate::errors::SimErrorCode;
use crate::faults::{FaultSettings, Faults, injected_answer};
use crate::service::{Answer, HeaderEcho, Service, refusal};

/// The path of the single eligibility inquiry.
pub const OQS_SIQUC01_PATH: &str = "/oqs/OQSsiquc01";
/// The largest request body accepted (1 MiB), as the XML codec's own limit.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
struct AppState {
    service: Arc<Service>,
    latency: Duration,
    faults: Arc<Faults>,
}

/// The simulator's routes. `latency` delays every eligibility answer (a knob for testing
/// timeouts and progress displays), not the health check.
pub fn router(service: Arc<Service>, latency: Duration) -> Router {
    router_with_faults(service, latency, Arc::new(Faults::default()))
}

/// [`router`] with the fault knobs of [`crate::faults`]: an outage holds every route (the
/// health check too), injected errors replace eligibility answers, and `GET`/`POST
/// /admin/faults` read and change the knobs.
pub fn router_with_faults(service: Arc<Service>, latency: Duration, faults: Arc<Faults>) -> Router {
    Router::new()
        .route(OQS_SIQUC01_PATH, post(siquc01))
        .route("/healthz", get(healthz))
        .route("/admin/faults", get(get_faults).post(set_faults))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(AppState {
            service,
            latency,
            faults,
        })
}

async fn healthz(State(state): State<AppState>) -> Response {
    if !state.faults.pass_outage().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    "ok".into_response()
}

async fn get_faults(State(state): State<AppState>) -> Response {
    axum::Json(state.faults.current()).into_response()
}

async fn set_faults(
    State(state): State<AppState>,
    axum::Json(change): axum::Json<FaultSettings>,
) -> Response {
    match state.faults.apply(&change) {
        Ok(()) => axum::Json(state.faults.current()).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

/// Now as a Japan Standard Time (UTC+9) wall-clock value, to the second.
pub fn now_jst() -> PrimitiveDateTime {
    let now = OffsetDateTime::now_utc().to_offset(time::macros::offset!(+9));
    let time = now.time().replace_nanosecond(0).unwrap_or(now.time());
    PrimitiveDateTime::new(now.date(), time)
}

#[tracing::instrument(
    name = "OQSsiquc01",
    skip_all,
    fields(institution, terminal, encoding, segment, validity, error)
)]
async fn siquc01(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificates>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !state.faults.pass_outage().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let span = tracing::Span::current();
    let institution = match caller(peer.as_ref().map(|Extension(p)| p)) {
        Ok((institution, terminal)) => {
            span.record("institution", institution.as_str());
            span.record("terminal", terminal.as_str());
            institution
        }
        Err(detail) => {
            let error = SimErrorCode::CertificateNamesNoTerminal;
            tracing::warn!(%detail, code = error.code(), "request refused");
            let text = format!("{} {} ({detail})\n", error.code(), error.message_en());
            return (StatusCode::FORBIDDEN, text).into_response();
        }
    };
    let now = now_jst();
    let (answer, encoding) = match body {
        Err(rejection) => {
            let error = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                SimErrorCode::RequestTooLarge
            } else {
                SimErrorCode::RequestUnreadable
            };
            let detail = rejection.body_text();
            let answer = refusal(
                &institution,
                &HeaderEcho::default(),
                error,
                Some(&detail),
                now,
                XmlEncoding::Utf8,
            );
            (answer, XmlEncoding::Utf8)
        }
        Ok(bytes) => {
            let encoding = declared_encoding(&bytes);
            let answer = match QualificationConfirmationRequest::read_xml(&bytes) {
                Ok(read) => match state.faults.injected_error() {
                    Some(error) => injected_answer(&read.value, error, now, encoding),
                    None => {
                        log_read_warnings("OQSsiquc01req", &read.warnings);
                        state
                            .service
                            .confirm(&institution, &read.value, now, encoding)
                    }
                },
                Err(e) => refusal(
                    &institution,
                    &scan_header(&bytes, encoding),
                    SimErrorCode::for_xml_error(&e),
                    Some(&e.to_string()),
                    now,
                    encoding,
                ),
            };
            (answer, encoding)
        }
    };
    record_outcome(&span, &answer, encoding);
    respond(&answer, encoding)
}

/// Logs what the reader tolerated in a request file: element paths and codes, never a value
/// of the patient (a [`ReadWarning`] carries none).
pub(crate) fn log_read_warnings(kind: &'static str, warnings: &[ReadWarning]) {
    for w in warnings {
        tracing::warn!(file = kind, path = %w.path, warning = %w.kind, "request read with tolerance");
    }
}

/// The institution and terminal named by the client certificate.
pub(crate) fn caller(
    peer: Option<&PeerCertificates>,
) -> Result<(MedicalInstitutionCode, String), String> {
    let chain = peer.map(|p| p.0.as_slice());
    let der = leaf(chain).map_err(|e| e.to_string())?;
    let (code, terminal) = terminal_of(der).map_err(|e| e.to_string())?;
    let institution = MedicalInstitutionCode::parse(&code).map_err(|e| e.to_string())?;
    Ok((institution, terminal))
}

/// Logs the outcome with codes only: never a name or a number of the patient.
fn record_outcome(span: &tracing::Span, answer: &Answer, encoding: XmlEncoding) {
    let result = &answer.result;
    span.record(
        "encoding",
        match encoding {
            XmlEncoding::Utf8 => "UTF-8",
            XmlEncoding::ShiftJis => "Shift_JIS",
        },
    );
    span.record("segment", result.header.segment_of_result.code());
    if let Some(v) = result.body.qualification_validity {
        span.record("validity", v.code());
    }
    match answer.error {
        Some(error) => {
            span.record("error", error.code());
            tracing::info!(status = answer.http_status(), "answered with an error");
        }
        None => tracing::info!("answered"),
    }
}

fn respond(answer: &Answer, encoding: XmlEncoding) -> Response {
    let status =
        StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match encoding {
        XmlEncoding::Utf8 => "application/xml; charset=UTF-8",
        XmlEncoding::ShiftJis => "application/xml; charset=Shift_JIS",
    };
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        answer.result.to_xml(encoding),
    )
        .into_response()
}

/// Labels of Shift_JIS (Windows-31J) in XML declarations, lower case; the same set the
/// domain codec accepts.
const SHIFT_JIS_LABELS: &[&str] = &[
    "shift_jis",
    "shift-jis",
    "sjis",
    "windows-31j",
    "cp932",
    "ms932",
    "x-sjis",
];

/// The encoding a request declares, to answer in kind: Shift_JIS when its XML declaration
/// names it, UTF-8 otherwise (also when the declaration cannot be read).
pub fn declared_encoding(bytes: &[u8]) -> XmlEncoding {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if !bytes.starts_with(b"<?xml") {
        return XmlEncoding::Utf8;
    }
    let head = &bytes[..bytes.len().min(256)];
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return XmlEncoding::Utf8;
    };
    let declaration = String::from_utf8_lossy(&head[..end]);
    let Some((_, rest)) = declaration.split_once("encoding") else {
        return XmlEncoding::Utf8;
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix('=') else {
        return XmlEncoding::Utf8;
    };
    let rest = rest.trim_start();
    let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return XmlEncoding::Utf8;
    };
    let label = rest[1..].split(quote).next().unwrap_or_default();
    if SHIFT_JIS_LABELS.contains(&label.to_ascii_lowercase().as_str()) {
        XmlEncoding::ShiftJis
    } else {
        XmlEncoding::Utf8
    }
}

fn parse_yyyymmdd(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = s[0..4].parse().ok()?;
    let month = Month::try_from(s[4..6].parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year, month, s[6..8].parse().ok()?).ok()
}

/// Best effort: the header fields of a request that could not be parsed, to echo them.
pub fn scan_header(bytes: &[u8], encoding: XmlEncoding) -> HeaderEcho {
    let text = match encoding {
        XmlEncoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        XmlEncoding::ShiftJis => encoding_rs::SHIFT_JIS
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    };
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&close)?;
        let value = text[start..start + len].trim();
        let plain = !value.is_empty()
            && value.chars().count() <= 64
            && !value.contains(['<', '&'])
            && !value.chars().any(char::is_control)
            && !value.contains('\u{FFFD}');
        plain.then(|| value.to_string())
    };
    HeaderEcho {
        qualification_confirmation_date: element("QualificationConfirmationDate")
            .and_then(|d| parse_yyyymmdd(&d)),
        arbitrary_file_identifier: element("ArbitraryFileIdentifier"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn declared_encodings() {
        let sjis = XmlEncoding::ShiftJis;
        let utf8 = XmlEncoding::Utf8;
        assert_eq!(
            declared_encoding(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><XmlMsg/>"),
            sjis
        );
        assert_eq!(
            declared_encoding(b"<?xml version='1.0' encoding = 'windows-31j' ?>"),
            sjis
        );
        assert_eq!(
            declared_encoding(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            utf8
        );
        assert_eq!(declared_encoding(b"<?xml version=\"1.0\"?>"), utf8);
        assert_eq!(declared_encoding(b"<XmlMsg/>"), utf8);
        assert_eq!(
            declared_encoding(b"\xEF\xBB\xBF<?xml encoding=\"SJIS\"?>"),
            sjis
        );
        assert_eq!(declared_encoding(b"<?xml encoding=\"Shift_JIS"), utf8);
        assert_eq!(declared_encoding(b""), utf8);
    }

    #[test]
    fn header_scan_echoes_what_it_can() {
        let xml = "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><XmlMsg><MessageHeader>\
                   <QualificationConfirmationDate>20260401</QualificationConfirmationDate>\
                   <ArbitraryFileIdentifier>受付0001</ArbitraryFileIdentifier>\
                   <MedicalInstitutionCode>bad</MedicalInstitutionCode>";
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(xml);
        let echo = scan_header(&bytes, XmlEncoding::ShiftJis);
        assert_eq!(
            echo.qualification_confirmation_date,
            Some(date!(2026 - 04 - 01))
        );
        assert_eq!(echo.arbitrary_file_identifier.as_deref(), Some("受付0001"));

        let echo = scan_header(
            b"<QualificationConfirmationDate>20261301</QualificationConfirmationDate>\
              <ArbitraryFileIdentifier>a&amp;b</ArbitraryFileIdentifier>",
            XmlEncoding::Utf8,
        );
        assert_eq!(echo, HeaderEcho::default());
        assert_eq!(
            scan_header(b"\xff\xfe", XmlEncoding::Utf8),
            HeaderEcho::default()
        );
    }

    proptest::proptest! {
        #[test]
        fn untrusted_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let encoding = declared_encoding(&bytes);
            let _ = scan_header(&bytes, encoding);
            let _ = scan_header(&bytes, XmlEncoding::ShiftJis);
        }

        #[test]
        fn header_like_text_never_panics(text in "(<\\?xml encoding=.{0,12}\\?>)?(<ArbitraryFileIdentifier>|</ArbitraryFileIdentifier>|.){0,60}") {
            let _ = declared_encoding(text.as_bytes());
            let _ = scan_header(text.as_bytes(), XmlEncoding::Utf8);
        }
    }

    #[test]
    fn now_is_japan_time() {
        let utc = OffsetDateTime::now_utc();
        let jst = now_jst();
        let diff = jst.assume_utc() - utc;
        assert!(
            (diff - time::Duration::hours(9)).abs() < time::Duration::minutes(1),
            "{diff}"
        );
        assert_eq!(jst.nanosecond(), 0);
    }
}
