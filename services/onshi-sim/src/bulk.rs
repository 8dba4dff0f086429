//! The two-step batch inquiry (一括照会): `POST /oqs/OQSmuquc01` takes an `OQSmuquc01req` with
//! up to [`MAX_ROWS`] searches and answers a `ReceptionNumber`; `POST /oqs/OQSmuquc02` takes an
//! `OQSmuquc02req` with that number and answers `SegmentOfResult` 2 (in progress) until the
//! batch is "ready" (the batch delay, `--batch-delay-ms`), then the `BulkResult`.
//!
//! Rules:
//! - as for single requests, the request's institution must be the terminal certificate's
//!   (`SIM-E0102`, 403), and an unreadable file is refused with the same `SIM-E000x` codes;
//! - 1 to [`MAX_ROWS`] searches, else `SIM-E0501` (413) for the whole batch;
//! - every row is answered with the single confirmation's rules ([`Service::confirm`]); a row
//!   that cannot be read is an error unit (`ProcessingResultStatus` 2 with the `SIM-E000x` code),
//!   never a failed batch;
//! - reception numbers are 20 random digits, unique among the batches kept; a number that is
//!   unknown, expired or another institution's gets `SegmentOfResult` 9 with `SIM-E0502`
//!   (the three cases look the same, so another institution's numbers cannot be probed);
//! - results are kept in memory for [`KEEP_FOR`] after they are ready, at most [`MAX_KEPT`]
//!   batches at a time (beyond, `SIM-E0503` until some expire); they can be fetched again
//!   until they expire;
//! - an outage ([`crate::faults`]) holds these routes too; an injected error refuses the batch.
//!
//! The logic ([`BulkRoute::submit`], [`BulkRoute::fetch`]) takes the clock as arguments, so
//! tests see "in progress" then "ready" without sleeping. Logs carry counts and codes only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fleet_tls::listen::PeerCertificates;
use onshi_domain::codes::{ProcessingResultStatus, SegmentOfResult};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    BulkConfirmUnit, BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultHeader,
    BulkResultRequest, QualificationConfirmationRequest, XmlEncoding, XmlError,
};
use ring::rand::SecureRandom;
use time::PrimitiveDateTime;

use crate::errors::SimErrorCode;
use crate::faults::Faults;
use crate::http::{caller, declared_encoding, log_read_warnings, now_jst, scan_header};
use crate::service::{Service, character_code};

pub const MUQUC01_PATH: &str = "/oqs/OQSmuquc01";
pub const MUQUC02_PATH: &str = "/oqs/OQSmuquc02";
/// The most searches one batch inquiry may carry.
pub const MAX_ROWS: usize = 1_000;
/// The most batches kept at once (ready or not, until they expire).
pub const MAX_KEPT: usize = 256;
/// How long a batch's results are kept once ready.
pub const KEEP_FOR: Duration = Duration::from_secs(60 * 60);
/// The default time from acceptance to "ready": short, but long enough to be seen.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(200);
/// The largest request body accepted: a thousand searches are about 400 KB.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// An answer and the error it reports, if any (the HTTP status comes from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkAnswer<T> {
    pub result: T,
    pub error: Option<SimErrorCode>,
}

impl<T> BulkAnswer<T> {
    pub fn http_status(&self) -> u16 {
        self.error.map_or(200, SimErrorCode::http_status)
    }
}

#[derive(Debug)]
struct Kept {
    institution: MedicalInstitutionCode,
    ready_at: Instant,
    result: BulkResult,
}

impl Kept {
    fn expired(&self, at: Instant) -> bool {
        at >= self.ready_at + KEEP_FOR
    }
}

/// The batch inquiry service: the single confirmation's rules, a store of batches, the delay.
#[derive(Debug)]
pub struct BulkRoute {
    service: Arc<Service>,
    faults: Arc<Faults>,
    delay: Mutex<Duration>,
    kept: Mutex<HashMap<String, Kept>>,
}

impl BulkRoute {
    pub fn new(service: Arc<Service>, faults: Arc<Faults>) -> Self {
        Self {
            service,
            faults,
            delay: Mutex::new(DEFAULT_BATCH_DELAY),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the time from acceptance to "ready" for batches accepted from now on.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    pub fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(MUQUC01_PATH, post(muquc01))
            .route(MUQUC02_PATH, post(muquc02))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self)
    }

    /// Answers a batch inquiry (`bytes`, an `OQSmuquc01req`) from a terminal of `institution`,
    /// at `now` (JST wall clock) and `at` (the store's clock).
    pub fn submit(
        &self,
        institution: &MedicalInstitutionCode,
        bytes: &[u8],
        now: PrimitiveDateTime,
        at: Instant,
    ) -> BulkAnswer<BulkInquiryAccepted> {
        let encoding = declared_encoding(bytes);
        let refuse = |institution: &MedicalInstitutionCode,
                      file_id: Option<String>,
                      error: SimErrorCode,
                      detail: &str| BulkAnswer {
            result: BulkInquiryAccepted {
                process_execution_time: now,
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: file_id,
                reception_number: None,
                reception_date_time: None,
                segment_of_result: SegmentOfResult::AbnormalEnd,
                error_code: Some(error.code().to_string()),
                error_message: Some(error.message_with(Some(detail))),
                character_code_identifier: character_code(encoding),
            },
            error: Some(error),
        };
        let request = match BulkInquiryRequest::read_xml_rows(bytes) {
            Ok(read) => {
                log_read_warnings("OQSmuquc01req", &read.warnings);
                read.value
            }
            Err(e) => {
                let echo = scan_header(bytes, encoding);
                return refuse(
                    institution,
                    echo.arbitrary_file_identifier,
                    SimErrorCode::for_xml_error(&e),
                    &e.to_string(),
                );
            }
        };
        let header = &request.header;
        let file_id = header.arbitrary_file_identifier.clone();
        if &header.medical_institution_code != institution {
            let detail = format!(
                "certificate {institution}, request {}",
                header.medical_institution_code
            );
            return refuse(
                &header.medical_institution_code,
                file_id,
                SimErrorCode::InstitutionMismatch,
                &detail,
            );
        }
        let rows = request.rows.len();
        if rows == 0 || rows > MAX_ROWS {
            return refuse(
                institution,
                file_id,
                SimErrorCode::BulkRowCount,
                &format!("{rows} rows, at most {MAX_ROWS}"),
            );
        }
        if let Some(error) = self.faults.injected_error() {
            return refuse(
                institution,
                file_id,
                error,
                "injected by the simulator's fault knob",
            );
        }

        let units: Vec<BulkConfirmUnit> = request
            .rows
            .into_iter()
            .map(|row| match row {
                Ok(search) => {
                    let single = QualificationConfirmationRequest {
                        header: header.clone(),
                        search,
                    };
                    let answer = self.service.confirm(institution, &single, now, encoding);
                    BulkConfirmUnit::from_result_body(answer.result.body)
                        .unwrap_or_else(|| unreadable_row(None))
                }
                Err(e) => unreadable_row(Some(&e)),
            })
            .collect();
        let mut result = BulkResult {
            header: BulkResultHeader {
                process_execution_time: now,
                qualification_confirmation_date: Some(header.qualification_confirmation_date),
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: file_id.clone(),
                reception_number: None,
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                number_of_processing_result: None,
                number_of_normal_processing: None,
                number_of_error: None,
                character_code_identifier: character_code(encoding),
            },
            units,
        };
        result.set_counts();

        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, k| !k.expired(at));
        if kept.len() >= MAX_KEPT {
            return refuse(
                institution,
                file_id,
                SimErrorCode::BulkStoreFull,
                &format!("{MAX_KEPT} batches kept"),
            );
        }
        let number = loop {
            let candidate = reception_number();
            if !kept.contains_key(&candidate) {
                break candidate;
            }
        };
        result.header.reception_number = Some(number.clone());
        kept.insert(
            number.clone(),
            Kept {
                institution: institution.clone(),
                ready_at: at + self.delay(),
                result,
            },
        );
        BulkAnswer {
            result: BulkInquiryAccepted {
                process_execution_time: now,
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: file_id,
                reception_number: Some(number),
                reception_date_time: Some(now),
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                character_code_identifier: character_code(encoding),
            },
            error: None,
        }
    }

    /// Answers a results request (`bytes`, an `OQSmuquc02req`) from a terminal of
    /// `institution`: in progress, the results, or an abnormal end.
    pub fn fetch(
        &self,
        institution: &MedicalInstitutionCode,
        bytes: &[u8],
        now: PrimitiveDateTime,
        at: Instant,
    ) -> BulkAnswer<BulkResult> {
        let encoding = declared_encoding(bytes);
        let answer = |institution: &MedicalInstitutionCode,
                      request: Option<&BulkResultRequest>,
                      segment: SegmentOfResult,
                      error: Option<(SimErrorCode, String)>| BulkAnswer {
            result: BulkResult {
                header: BulkResultHeader {
                    process_execution_time: now,
                    qualification_confirmation_date: None,
                    medical_institution_code: institution.clone(),
                    arbitrary_file_identifier: request
                        .and_then(|r| r.arbitrary_file_identifier.clone()),
                    reception_number: request.map(|r| r.reception_number.clone()),
                    segment_of_result: segment,
                    error_code: error.as_ref().map(|(e, _)| e.code().to_string()),
                    error_message: error.as_ref().map(|(e, d)| e.message_with(Some(d))),
                    number_of_processing_result: None,
                    number_of_normal_processing: None,
                    number_of_error: None,
                    character_code_identifier: character_code(encoding),
                },
                units: Vec::new(),
            },
            error: error.map(|(e, _)| e),
        };
        let request = match BulkResultRequest::read_xml(bytes) {
            Ok(read) => {
                log_read_warnings("OQSmuquc02req", &read.warnings);
                read.value
            }
            Err(e) => {
                return answer(
                    institution,
                    None,
                    SegmentOfResult::AbnormalEnd,
                    Some((SimErrorCode::for_xml_error(&e), e.to_string())),
                );
            }
        };
        if &request.medical_institution_code != institution {
            let detail = format!(
                "certificate {institution}, request {}",
                request.medical_institution_code
            );
            return answer(
                &request.medical_institution_code,
                Some(&request),
                SegmentOfResult::AbnormalEnd,
                Some((SimErrorCode::InstitutionMismatch, detail)),
            );
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, k| !k.expired(at));
        let batch = kept
            .get(&request.reception_number)
            .filter(|k| &k.institution == institution);
        match batch {
            None => answer(
                institution,
                Some(&request),
                SegmentOfResult::AbnormalEnd,
                Some((SimErrorCode::BulkReceptionUnknown, String::new())),
            ),
            Some(k) if at < k.ready_at => {
                let mut waiting = answer(
                    institution,
                    Some(&request),
                    SegmentOfResult::InProgress,
                    None,
                );
                waiting.result.header.qualification_confirmation_date =
                    k.result.header.qualification_confirmation_date;
                waiting
            }
            Some(k) => {
                let mut result = k.result.clone();
                result.header.character_code_identifier = character_code(encoding);
                BulkAnswer {
                    result,
                    error: None,
                }
            }
        }
    }

    /// Batches kept now (ready or not), expired ones excluded.
    pub fn kept(&self, at: Instant) -> usize {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, k| !k.expired(at));
        kept.len()
    }
}

/// The error unit for a row the national side could not read.
fn unreadable_row(error: Option<&XmlError>) -> BulkConfirmUnit {
    let code = error.map_or(SimErrorCode::RequestUnreadable, SimErrorCode::for_xml_error);
    let detail = error.map(|e| e.to_string());
    BulkConfirmUnit {
        search_info: None,
        processing_result_status: ProcessingResultStatus::Error,
        processing_result_code: Some(code.code().to_string()),
        processing_result_message: Some(code.message_with(detail.as_deref())),
        qualification_validity: None,
        results: Vec::new(),
        reference_number: None,
    }
}

/// 20 random decimal digits.
fn reception_number() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator is available");
    let n = u128::from_le_bytes(bytes) % 10u128.pow(20);
    format!("{n:020}")
}

/// The institution of the terminal certificate, or the refusal (plain text: there is no
/// institution to put in a file).
fn caller_or_refuse(
    peer: Option<&PeerCertificates>,
) -> Result<MedicalInstitutionCode, Box<Response>> {
    caller(peer).map(|(i, _)| i).map_err(|detail| {
        let error = SimErrorCode::CertificateNamesNoTerminal;
        tracing::warn!(%detail, code = error.code(), "batch request refused");
        let text = format!("{} {} ({detail})\n", error.code(), error.message_en());
        Box::new((StatusCode::FORBIDDEN, text).into_response())
    })
}

fn xml_response(status: u16, encoding: XmlEncoding, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match encoding {
        XmlEncoding::Utf8 => "application/xml; charset=UTF-8",
        XmlEncoding::ShiftJis => "application/xml; charset=Shift_JIS",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A body that could not be taken (too large, or broken off): its code.
fn rejected(rejection: &BytesRejection) -> SimErrorCode {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        SimErrorCode::RequestTooLarge
    } else {
        SimErrorCode::RequestUnreadable
    }
}

#[tracing::instrument(name = "OQSmuquc01", skip_all, fields(rows, segment, error))]
async fn muquc01(
    State(route): State<Arc<BulkRoute>>,
    peer: Option<Extension<PeerCertificates>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !route.faults.pass_outage().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let institution = match caller_or_refuse(peer.as_ref().map(|Extension(p)| p)) {
        Ok(institution) => institution,
        Err(response) => return *response,
    };
    let now = now_jst();
    let (answer, encoding) = match body {
        Ok(bytes) => (
            route.submit(&institution, &bytes, now, Instant::now()),
            declared_encoding(&bytes),
        ),
        Err(rejection) => {
            let error = rejected(&rejection);
            let answer = BulkAnswer {
                result: BulkInquiryAccepted {
                    process_execution_time: now,
                    medical_institution_code: institution,
                    arbitrary_file_identifier: None,
                    reception_number: None,
                    reception_date_time: None,
                    segment_of_result: SegmentOfResult::AbnormalEnd,
                    error_code: Some(error.code().to_string()),
                    error_message: Some(error.message_with(Some(&rejection.body_text()))),
                    character_code_identifier: character_code(XmlEncoding::Utf8),
                },
                error: Some(error),
            };
            (answer, XmlEncoding::Utf8)
        }
    };
    let span = tracing::Span::current();
    span.record("segment", answer.result.segment_of_result.code());
    match answer.error {
        Some(error) => {
            span.record("error", error.code());
            tracing::info!(status = answer.http_status(), "batch refused");
        }
        None => tracing::info!("batch accepted"),
    }
    xml_response(
        answer.http_status(),
        encoding,
        answer.result.to_xml(encoding),
    )
}

#[tracing::instrument(
    name = "OQSmuquc02",
    skip_all,
    fields(segment, units, normal, errors, error)
)]
async fn muquc02(
    State(route): State<Arc<BulkRoute>>,
    peer: Option<Extension<PeerCertificates>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !route.faults.pass_outage().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let institution = match caller_or_refuse(peer.as_ref().map(|Extension(p)| p)) {
        Ok(institution) => institution,
        Err(response) => return *response,
    };
    let now = now_jst();
    let (answer, encoding) = match body {
        Ok(bytes) => (
            route.fetch(&institution, &bytes, now, Instant::now()),
            declared_encoding(&bytes),
        ),
        Err(rejection) => {
            let error = rejected(&rejection);
            // An empty request answers the refusal in the shape of a results file.
            let mut answer = route.fetch(&institution, b"", now, Instant::now());
            answer.result.header.error_code = Some(error.code().to_string());
            answer.result.header.error_message =
                Some(error.message_with(Some(&rejection.body_text())));
            answer.error = Some(error);
            (answer, XmlEncoding::Utf8)
        }
    };
    let span = tracing::Span::current();
    let h = &answer.result.header;
    span.record("segment", h.segment_of_result.code());
    if let Some(n) = h.number_of_processing_result {
        span.record("units", n);
    }
    if let Some(n) = h.number_of_normal_processing {
        span.record("normal", n);
    }
    if let Some(n) = h.number_of_error {
        span.record("errors", n);
    }
    match answer.error {
        Some(error) => {
            span.record("error", error.code());
            tracing::info!(status = answer.http_status(), "batch results refused");
        }
        None => tracing::debug!("batch results answered"),
    }
    xml_response(
        answer.http_status(),
        encoding,
        answer.result.to_xml(encoding),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Population;
    use onshi_domain::codes::QualificationValidity;
    use onshi_domain::xml::{QualificationConfirmSearchInfo, RequestHeader};
    use time::macros::{date, datetime};

    const NOW: PrimitiveDateTime = datetime!(2026-04-01 10:15:30);

    fn institution() -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse("3410712362").unwrap()
    }

    fn other_institution() -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse("1340123455").unwrap()
    }

    fn route() -> BulkRoute {
        let service = Arc::new(Service::new(Arc::new(Population::generate(42, 1000))));
        BulkRoute::new(service, Arc::new(Faults::default()))
    }

    fn searches(route: &BulkRoute, n: usize) -> Vec<QualificationConfirmSearchInfo> {
        route
            .service
            .population()
            .people()
            .iter()
            .cycle()
            .take(n)
            .enumerate()
            .map(|(i, p)| QualificationConfirmSearchInfo {
                insurer_number: p.insurer_number.clone(),
                insured_card_symbol: p.symbol.clone(),
                insured_identification_number: p.number.clone(),
                insured_branch_number: p.branch.clone(),
                birthdate: p.birthdate.clone(),
                limit_application_certificate_related_cons_flg: false,
                arbitrary_identifier: Some(i.to_string()),
            })
            .collect()
    }

    fn inquiry(
        institution: &MedicalInstitutionCode,
        searches: Vec<QualificationConfirmSearchInfo>,
        encoding: XmlEncoding,
    ) -> Vec<u8> {
        BulkInquiryRequest {
            header: RequestHeader {
                qualification_confirmation_date: date!(2026 - 04 - 01),
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: Some("batch-1".into()),
            },
            searches,
        }
        .to_xml(encoding)
    }

    fn ask(institution: &MedicalInstitutionCode, number: &str) -> Vec<u8> {
        BulkResultRequest {
            medical_institution_code: institution.clone(),
            reception_number: number.into(),
            arbitrary_file_identifier: None,
        }
        .to_xml(XmlEncoding::Utf8)
    }

    fn accepted(route: &BulkRoute, rows: usize, at: Instant) -> String {
        let answer = route.submit(
            &institution(),
            &inquiry(&institution(), searches(route, rows), XmlEncoding::Utf8),
            NOW,
            at,
        );
        assert_eq!(answer.error, None, "{:?}", answer.result);
        assert_eq!(answer.result.segment_of_result, SegmentOfResult::Normal);
        answer.result.reception_number.unwrap()
    }

    #[test]
    fn in_progress_then_ready_with_every_row_answered_as_a_single_confirmation() {
        let route = route();
        route.set_delay(Duration::from_secs(5));
        let t0 = Instant::now();
        let bytes = inquiry(&institution(), searches(&route, 5), XmlEncoding::ShiftJis);
        let answer = route.submit(&institution(), &bytes, NOW, t0);
        assert_eq!(answer.http_status(), 200);
        // The acceptance reads back as a file, in the request's encoding.
        let xml = answer.result.to_xml(XmlEncoding::ShiftJis);
        let read = BulkInquiryAccepted::from_xml(&xml).unwrap();
        let number = read.reception_number.unwrap();
        assert_eq!(number.len(), 20);
        assert!(number.bytes().all(|b| b.is_ascii_digit()));

        let waiting = route.fetch(&institution(), &ask(&institution(), &number), NOW, t0);
        assert_eq!(waiting.error, None);
        assert_eq!(
            waiting.result.header.segment_of_result,
            SegmentOfResult::InProgress
        );
        assert!(waiting.result.units.is_empty());
        let xml = waiting.result.to_xml(XmlEncoding::Utf8);
        assert_eq!(BulkResult::from_xml(&xml).unwrap(), waiting.result);

        let later = t0 + Duration::from_secs(5);
        let ready = route.fetch(&institution(), &ask(&institution(), &number), NOW, later);
        assert_eq!(ready.error, None);
        let result = ready.result;
        assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
        assert_eq!(result.header.reception_number.as_deref(), Some(&*number));
        assert_eq!(result.units.len(), 5);
        assert_eq!(result.header.number_of_processing_result, Some(5));
        // The same answers as single confirmations.
        for (i, unit) in result.units.iter().enumerate() {
            let search = unit.search_info.clone().unwrap();
            assert_eq!(search.arbitrary_identifier, Some(i.to_string()));
            let single = route.service.confirm(
                &institution(),
                &QualificationConfirmationRequest {
                    header: RequestHeader {
                        qualification_confirmation_date: date!(2026 - 04 - 01),
                        medical_institution_code: institution(),
                        arbitrary_file_identifier: Some("batch-1".into()),
                    },
                    search,
                },
                NOW,
                XmlEncoding::Utf8,
            );
            assert_eq!(
                Some(unit.clone()),
                BulkConfirmUnit::from_result_body(single.result.body)
            );
        }
        // The written result reads back, counts checked.
        let xml = result.to_xml(XmlEncoding::Utf8);
        assert_eq!(BulkResult::from_xml(&xml).unwrap(), result);
        // It can be fetched again until it expires.
        let again = route.fetch(&institution(), &ask(&institution(), &number), NOW, later);
        assert_eq!(again.result.units.len(), 5);
        let expired = later + KEEP_FOR;
        let gone = route.fetch(&institution(), &ask(&institution(), &number), NOW, expired);
        assert_eq!(gone.error, Some(SimErrorCode::BulkReceptionUnknown));
        assert_eq!(route.kept(expired), 0);
    }

    /// A file of `shared/onshi-corpus`; a missing corpus fails with the path it looked for.
    fn corpus(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/onshi-corpus")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "the conformance corpus file {} cannot be read: {e}",
                path.display()
            )
        })
    }

    /// Where a file puts its elements down to the children of header and body.
    fn placement(bytes: &[u8]) -> std::collections::BTreeSet<String> {
        onshi_domain::xml::element_paths(bytes)
            .unwrap()
            .into_iter()
            .filter(|p| p.matches('/').count() <= 2)
            .collect()
    }

    #[test]
    fn answers_place_their_elements_as_the_corpus() {
        let route = route();
        route.set_delay(Duration::ZERO);
        let t0 = Instant::now();
        let bytes = inquiry(&institution(), searches(&route, 3), XmlEncoding::Utf8);
        // What the agent sends reads here; what we answer is shaped like the corpus's answer.
        assert_eq!(
            placement(&bytes),
            placement(&corpus("OQSmuquc01req_batch.xml"))
        );
        let answer = route.submit(&institution(), &bytes, NOW, t0);
        let xml = answer.result.to_xml(XmlEncoding::Utf8);
        assert_eq!(
            onshi_domain::xml::element_paths(&xml).unwrap(),
            onshi_domain::xml::element_paths(&corpus("OQSmuquc01res_reception.xml")).unwrap(),
            "{}",
            String::from_utf8_lossy(&xml)
        );
        assert_eq!(answer.result.reception_date_time, Some(NOW));
        let number = answer.result.reception_number.unwrap();

        let fetch = ask(&institution(), &number);
        assert_eq!(
            onshi_domain::xml::element_paths(&fetch).unwrap(),
            onshi_domain::xml::element_paths(&corpus("OQSmuquc02req_fetch.xml")).unwrap()
        );
        let ready = route.fetch(&institution(), &fetch, NOW, t0);
        assert_eq!(ready.error, None);
        let xml = ready.result.to_xml(XmlEncoding::Utf8);
        assert_eq!(
            placement(&xml),
            placement(&corpus("OQSmuquc02res_results.xml"))
        );
    }

    #[test]
    fn a_fetch_in_the_old_shape_is_still_answered() {
        let route = route();
        route.set_delay(Duration::ZERO);
        let t0 = Instant::now();
        let number = accepted(&route, 2, t0);
        let old = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader>\
             <MedicalInstitutionCode>{}</MedicalInstitutionCode>\
             <ReceptionNumber>{number}</ReceptionNumber></MessageHeader>\
             <MessageBody/></XmlMsg>",
            institution()
        );
        let ready = route.fetch(&institution(), old.as_bytes(), NOW, t0);
        assert_eq!(ready.error, None);
        assert_eq!(ready.result.units.len(), 2);
    }

    #[test]
    fn a_bad_row_is_an_error_unit_not_a_failed_batch() {
        let route = route();
        route.set_delay(Duration::ZERO);
        let mut rows = searches(&route, 3);
        rows[1].insurer_number =
            onshi_domain::ids::InsurerNumber::parse(crate::service::MAINTENANCE_INSURER).unwrap();
        let text = String::from_utf8(inquiry(&institution(), rows, XmlEncoding::Utf8)).unwrap();
        // Row 3 has an impossible birth date: unreadable, answered as an error unit.
        let at = text.rfind("<Birthdate>").unwrap() + "<Birthdate>".len();
        let bad = format!("{}19991399{}", &text[..at], &text[at + 8..]);
        let t0 = Instant::now();
        let answer = route.submit(&institution(), bad.as_bytes(), NOW, t0);
        let number = answer.result.reception_number.unwrap();
        let result = route
            .fetch(&institution(), &ask(&institution(), &number), NOW, t0)
            .result;
        assert_eq!(result.units.len(), 3);
        assert_eq!(
            result.units[0].processing_result_status,
            ProcessingResultStatus::Normal
        );
        assert!(result.units[0].qualification_validity.is_some());
        let maintenance = &result.units[1];
        assert_eq!(
            maintenance.processing_result_status,
            ProcessingResultStatus::Error
        );
        assert_eq!(
            maintenance.processing_result_code.as_deref(),
            Some(SimErrorCode::InsurerUnderMaintenance.code())
        );
        let unreadable = &result.units[2];
        assert_eq!(unreadable.search_info, None);
        assert_eq!(
            unreadable.processing_result_code.as_deref(),
            Some(SimErrorCode::InvalidValue.code())
        );
        assert_eq!(result.header.number_of_normal_processing, Some(1));
        assert_eq!(result.header.number_of_error, Some(2));
    }

    #[test]
    fn unknown_reception_numbers_are_an_abnormal_end() {
        let route = route();
        let t0 = Instant::now();
        let answer = route.fetch(
            &institution(),
            &ask(&institution(), "00000000000000000000"),
            NOW,
            t0,
        );
        assert_eq!(answer.error, Some(SimErrorCode::BulkReceptionUnknown));
        assert_eq!(answer.http_status(), 400);
        let h = &answer.result.header;
        assert_eq!(h.segment_of_result, SegmentOfResult::AbnormalEnd);
        assert_eq!(h.error_code.as_deref(), Some("SIM-E0502"));
        let xml = answer.result.to_xml(XmlEncoding::Utf8);
        assert_eq!(BulkResult::from_xml(&xml).unwrap(), answer.result);
        // An unreadable request is refused like a single one.
        let answer = route.fetch(&institution(), b"<XmlMsg>", NOW, t0);
        assert_eq!(answer.error, Some(SimErrorCode::RequestUnreadable));
    }

    #[test]
    fn another_institutions_batch_is_not_found_and_a_mismatch_is_refused() {
        let route = route();
        route.set_delay(Duration::ZERO);
        let t0 = Instant::now();
        let number = accepted(&route, 2, t0);
        let other = other_institution();
        // Another institution asking for this number, with its own certificate.
        let answer = route.fetch(&other, &ask(&other, &number), NOW, t0);
        assert_eq!(answer.error, Some(SimErrorCode::BulkReceptionUnknown));
        assert!(answer.result.units.is_empty());
        // A request naming an institution that is not the certificate's.
        let answer = route.fetch(&other, &ask(&institution(), &number), NOW, t0);
        assert_eq!(answer.error, Some(SimErrorCode::InstitutionMismatch));
        assert_eq!(answer.http_status(), 403);
        let answer = route.submit(
            &other,
            &inquiry(&institution(), searches(&route, 1), XmlEncoding::Utf8),
            NOW,
            t0,
        );
        assert_eq!(answer.error, Some(SimErrorCode::InstitutionMismatch));
        assert_eq!(answer.result.reception_number, None);
        // The owner still gets it.
        let mine = route.fetch(&institution(), &ask(&institution(), &number), NOW, t0);
        assert_eq!(mine.result.units.len(), 2);
    }

    #[test]
    fn rows_are_capped() {
        let route = route();
        let t0 = Instant::now();
        let bytes = inquiry(
            &institution(),
            searches(&route, MAX_ROWS + 1),
            XmlEncoding::Utf8,
        );
        let answer = route.submit(&institution(), &bytes, NOW, t0);
        assert_eq!(answer.error, Some(SimErrorCode::BulkRowCount));
        assert_eq!(answer.http_status(), 413);
        assert_eq!(
            answer.result.segment_of_result,
            SegmentOfResult::AbnormalEnd
        );
        assert_eq!(answer.result.error_code.as_deref(), Some("SIM-E0501"));
        let empty = inquiry(&institution(), Vec::new(), XmlEncoding::Utf8);
        let answer = route.submit(&institution(), &empty, NOW, t0);
        assert_eq!(answer.error, Some(SimErrorCode::BulkRowCount));
        // Exactly the cap is accepted, and the result fits the codec's batch limits.
        route.set_delay(Duration::ZERO);
        let number = accepted(&route, MAX_ROWS, t0);
        let result = route
            .fetch(&institution(), &ask(&institution(), &number), NOW, t0)
            .result;
        assert_eq!(result.units.len(), MAX_ROWS);
        let xml = result.to_xml(XmlEncoding::Utf8);
        assert_eq!(BulkResult::from_xml(&xml).unwrap().units.len(), MAX_ROWS);
        assert!(
            result
                .units
                .iter()
                .any(|u| u.qualification_validity == Some(QualificationValidity::Valid))
        );
    }

    #[test]
    fn the_store_is_bounded_and_numbers_are_unique() {
        let route = route();
        let t0 = Instant::now();
        let mut numbers = std::collections::HashSet::new();
        for _ in 0..MAX_KEPT {
            assert!(numbers.insert(accepted(&route, 1, t0)));
        }
        let bytes = inquiry(&institution(), searches(&route, 1), XmlEncoding::Utf8);
        let full = route.submit(&institution(), &bytes, NOW, t0);
        assert_eq!(full.error, Some(SimErrorCode::BulkStoreFull));
        // Once they expire there is room again.
        let later = t0 + route.delay() + KEEP_FOR;
        assert_eq!(route.submit(&institution(), &bytes, NOW, later).error, None);
        assert_eq!(route.kept(later), 1);
    }
}
