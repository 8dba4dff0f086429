//! Drug and checkup information: `POST /oqs/YZKsiquc01` (an `YZKsiquc01req` file in, the
//! `YZKsiquc01res` file back) and `POST /oqs/TKKsiquc01` (checkups), in the request's encoding;
//! and the disaster-window knobs `GET`/`POST`/`DELETE /admin/disaster-windows`
//! ([`crate::disaster`]).
//!
//! A request is answered only when the terminal certificate's institution is the request's
//! (else `SIM-E0102`), exactly one insured person matches the header's numbers (else
//! `SIM-E0402`), the file category is XML (else `SIM-E0403`) and either that person gave a
//! consent for the category on the card reader within 24 hours ([`crate::consent`]) or a
//! disaster window is open for the institution's prefecture (else `SIM-E0401`). Refusals are
//! result files with `SegmentOfResult` 9 and the `SIM-` code. Drug requests are answered for
//! the months asked, within 3 years; checkups for 5 years ([`crate::histories`]).
//!
//! The paths follow the simulator's one-POST-per-message convention (UNCONFIRMED, like
//! `OQSsiquc01`). An outage ([`crate::faults`]) holds these routes too.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_tls::identity::{leaf, terminal_of};
use fleet_tls::listen::PeerCertificates;
use onshi_domain::codes::SegmentOfResult;
use onshi_domain::events::InfoCategory;
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, FileCategory,
    InfoRequestHeader, InfoResultHeader, XmlEncoding, YearMonth,
};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::consent::{Consents, PersonKey};
use crate::disaster::{DisasterWindows, OpenWindow};
use crate::errors::SimErrorCode;
use crate::faults::Faults;
use crate::histories::{DRUG_RETENTION_MONTHS, Histories};
use crate::http::{declared_encoding, now_jst};
use crate::population::Person;
use crate::service::{Service, character_code};

pub const YZK_PATH: &str = "/oqs/YZKsiquc01";
pub const TKK_PATH: &str = "/oqs/TKKsiquc01";
pub const DISASTER_ADMIN_PATH: &str = "/admin/disaster-windows";

/// The information service: histories, consents and disaster windows over one population.
#[derive(Debug)]
pub struct InfoRoute {
    service: Arc<Service>,
    histories: Histories,
    consents: Arc<Consents>,
    windows: Arc<DisasterWindows>,
    faults: Arc<Faults>,
}

/// An answer and the error it reports, if any (the HTTP status comes from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoAnswer<T> {
    pub result: T,
    pub error: Option<SimErrorCode>,
}

impl InfoRoute {
    pub fn new(
        service: Arc<Service>,
        consents: Arc<Consents>,
        windows: Arc<DisasterWindows>,
        faults: Arc<Faults>,
    ) -> Self {
        let histories = Histories::new(service.population().seed());
        Self {
            service,
            histories,
            consents,
            windows,
            faults,
        }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(YZK_PATH, post(yzk))
            .route(TKK_PATH, post(tkk))
            .route(
                DISASTER_ADMIN_PATH,
                get(list_windows).post(open_window).delete(clear_windows),
            )
            .with_state(self)
    }

    /// Checks who asks and for whom; the person, or the refusal's code and detail.
    fn admit(
        &self,
        institution: &MedicalInstitutionCode,
        header: &InfoRequestHeader,
        category: InfoCategory,
        file_category: FileCategory,
        now_utc: OffsetDateTime,
    ) -> Result<(&Person, Option<String>), (SimErrorCode, String)> {
        if &header.medical_institution_code != institution {
            return Err((
                SimErrorCode::InstitutionMismatch,
                format!(
                    "certificate {institution}, request {}",
                    header.medical_institution_code
                ),
            ));
        }
        let people: Vec<&Person> = self
            .service
            .population()
            .find(
                &header.insurer_number,
                &header.insured_person_identification_number,
            )
            .filter(|p| {
                header
                    .insurance_card_symbol
                    .as_ref()
                    .is_none_or(|s| p.symbol.as_ref() == Some(s))
            })
            .filter(|p| header.branch_number.as_ref() == p.branch.as_ref())
            .collect();
        let [person] = people.as_slice() else {
            return Err((
                SimErrorCode::InfoPersonUnknown,
                format!("{} people match", people.len()),
            ));
        };
        if file_category != FileCategory::Xml {
            return Err((SimErrorCode::InfoPdfNotSupported, String::new()));
        }
        let key = PersonKey::of(person);
        if self.consents.live(&key, category, now_utc) {
            return Ok((person, None));
        }
        match self.windows.covering(institution.prefecture(), now_utc) {
            Some(window) => Ok((person, Some(window))),
            None => Err((SimErrorCode::InfoNotConsented, String::new())),
        }
    }

    /// Answers a drug request at `now` (JST wall clock) / `now_utc`.
    pub fn drug(
        &self,
        institution: &MedicalInstitutionCode,
        request: &DrugInfoRequest,
        now: PrimitiveDateTime,
        now_utc: OffsetDateTime,
        encoding: XmlEncoding,
    ) -> InfoAnswer<DrugInfoResult> {
        let header = result_header(institution, Some(&request.header), now, encoding);
        match self.admit(
            institution,
            &request.header,
            InfoCategory::Drug,
            request.file_category,
            now_utc,
        ) {
            Err((error, detail)) => InfoAnswer {
                result: DrugInfoResult {
                    header: refused(header, error, &detail),
                    start_month: None,
                    end_month: None,
                    months: Vec::new(),
                },
                error: Some(error),
            },
            Ok((person, _window)) => {
                let today = now.date();
                let oldest = YearMonth::of(today).minus_months(DRUG_RETENTION_MONTHS - 1);
                let months = self.histories.drugs(
                    &PersonKey::of(person),
                    request.start_month.max(oldest),
                    request.end_month,
                    today,
                );
                InfoAnswer {
                    result: DrugInfoResult {
                        header,
                        start_month: Some(request.start_month),
                        end_month: Some(request.end_month),
                        months,
                    },
                    error: None,
                }
            }
        }
    }

    /// Answers a checkup request.
    pub fn checkup(
        &self,
        institution: &MedicalInstitutionCode,
        request: &CheckupInfoRequest,
        now: PrimitiveDateTime,
        now_utc: OffsetDateTime,
        encoding: XmlEncoding,
    ) -> InfoAnswer<CheckupInfoResult> {
        let header = result_header(institution, Some(&request.header), now, encoding);
        match self.admit(
            institution,
            &request.header,
            InfoCategory::Checkup,
            request.file_category,
            now_utc,
        ) {
            Err((error, detail)) => InfoAnswer {
                result: CheckupInfoResult {
                    header: refused(header, error, &detail),
                    checkups: Vec::new(),
                },
                error: Some(error),
            },
            Ok((person, _window)) => {
                let mut checkups =
                    self.histories
                        .checkups(&PersonKey::of(person), person, now.date());
                checkups.retain(|c| {
                    request
                        .start_month
                        .is_none_or(|m| YearMonth::of(c.date) >= m)
                        && request.end_month.is_none_or(|m| YearMonth::of(c.date) <= m)
                });
                InfoAnswer {
                    result: CheckupInfoResult { header, checkups },
                    error: None,
                }
            }
        }
    }
}

fn result_header(
    institution: &MedicalInstitutionCode,
    request: Option<&InfoRequestHeader>,
    now: PrimitiveDateTime,
    encoding: XmlEncoding,
) -> InfoResultHeader {
    InfoResultHeader {
        process_execution_time: now,
        medical_institution_code: request
            .map_or(institution, |r| &r.medical_institution_code)
            .clone(),
        insurer_number: request.map(|r| r.insurer_number.clone()),
        insurance_card_symbol: request.and_then(|r| r.insurance_card_symbol.clone()),
        insured_person_identification_number: request
            .map(|r| r.insured_person_identification_number.clone()),
        branch_number: request.and_then(|r| r.branch_number.clone()),
        arbitrary_file_identifier: request.and_then(|r| r.arbitrary_file_identifier.clone()),
        segment_of_result: SegmentOfResult::Normal,
        error_code: None,
        error_message: None,
        character_code_identifier: character_code(encoding),
    }
}

fn refused(mut header: InfoResultHeader, error: SimErrorCode, detail: &str) -> InfoResultHeader {
    header.segment_of_result = SegmentOfResult::AbnormalEnd;
    header.error_code = Some(error.code().to_string());
    header.error_message = Some(error.message_with(Some(detail)));
    header
}

fn institution_of(peer: Option<&PeerCertificates>) -> Result<MedicalInstitutionCode, String> {
    let der = leaf(peer.map(|p| p.0.as_slice())).map_err(|e| e.to_string())?;
    let (code, _terminal) = terminal_of(der).map_err(|e| e.to_string())?;
    MedicalInstitutionCode::parse(&code).map_err(|e| e.to_string())
}

fn xml_response(status: u16, encoding: XmlEncoding, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match encoding {
        XmlEncoding::Utf8 => "application/xml; charset=UTF-8",
        XmlEncoding::ShiftJis => "application/xml; charset=Shift_JIS",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn forbidden(detail: String) -> Response {
    let error = SimErrorCode::CertificateNamesNoTerminal;
    let text = format!("{} {} ({detail})\n", error.code(), error.message_en());
    (StatusCode::FORBIDDEN, text).into_response()
}

/// The common handler shape: outage, caller, parse, answer; codes only in the log.
async fn handle(
    route: &InfoRoute,
    peer: Option<Extension<PeerCertificates>>,
    body: &Bytes,
    category: InfoCategory,
) -> Response {
    if !route.faults.pass_outage().await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let institution = match institution_of(peer.as_ref().map(|Extension(p)| p)) {
        Ok(i) => i,
        Err(detail) => return forbidden(detail),
    };
    let encoding = declared_encoding(body);
    let now = now_jst();
    let now_utc = OffsetDateTime::now_utc();
    let unreadable = |e: onshi_domain::xml::XmlError| {
        let error = SimErrorCode::for_xml_error(&e);
        let header = refused(
            result_header(&institution, None, now, encoding),
            error,
            &e.to_string(),
        );
        (header, error)
    };
    let (status, xml, error) = match category {
        InfoCategory::Drug => match DrugInfoRequest::from_xml(body) {
            Ok(request) => {
                let a = route.drug(&institution, &request, now, now_utc, encoding);
                (
                    a.error.map_or(200, SimErrorCode::http_status),
                    a.result.to_xml(encoding),
                    a.error,
                )
            }
            Err(e) => {
                let (header, error) = unreadable(e);
                let result = DrugInfoResult {
                    header,
                    start_month: None,
                    end_month: None,
                    months: Vec::new(),
                };
                (error.http_status(), result.to_xml(encoding), Some(error))
            }
        },
        _ => match CheckupInfoRequest::from_xml(body) {
            Ok(request) => {
                let a = route.checkup(&institution, &request, now, now_utc, encoding);
                (
                    a.error.map_or(200, SimErrorCode::http_status),
                    a.result.to_xml(encoding),
                    a.error,
                )
            }
            Err(e) => {
                let (header, error) = unreadable(e);
                let result = CheckupInfoResult {
                    header,
                    checkups: Vec::new(),
                };
                (error.http_status(), result.to_xml(encoding), Some(error))
            }
        },
    };
    tracing::info!(
        institution = institution.as_str(),
        category = ?category,
        error = error.map(SimErrorCode::code),
        "information request answered"
    );
    xml_response(status, encoding, xml)
}

async fn yzk(
    State(route): State<Arc<InfoRoute>>,
    peer: Option<Extension<PeerCertificates>>,
    body: Bytes,
) -> Response {
    handle(&route, peer, &body, InfoCategory::Drug).await
}

async fn tkk(
    State(route): State<Arc<InfoRoute>>,
    peer: Option<Extension<PeerCertificates>>,
    body: Bytes,
) -> Response {
    handle(&route, peer, &body, InfoCategory::Checkup).await
}

async fn list_windows(State(route): State<Arc<InfoRoute>>) -> Response {
    axum::Json(route.windows.list()).into_response()
}

async fn open_window(
    State(route): State<Arc<InfoRoute>>,
    axum::Json(window): axum::Json<OpenWindow>,
) -> Response {
    match route.windows.open(window) {
        Ok(opened) => {
            tracing::info!(id = %opened.id, prefectures = opened.prefectures.len(), "disaster window opened");
            axum::Json(opened).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

async fn clear_windows(State(route): State<Arc<InfoRoute>>) -> Response {
    route.windows.clear();
    tracing::info!("disaster windows closed");
    axum::Json(route.windows.list()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Population;
    use onshi_domain::access::ConsentRecord;
    use time::macros::{datetime, offset};

    const NOW: PrimitiveDateTime = datetime!(2026-04-01 10:00:00);

    fn now_utc() -> OffsetDateTime {
        NOW.assume_offset(offset!(+9))
    }

    fn route() -> InfoRoute {
        let service = Arc::new(Service::new(Arc::new(Population::generate(42, 100))));
        InfoRoute::new(
            service,
            Arc::default(),
            Arc::default(),
            Arc::new(Faults::default()),
        )
    }

    fn clinic() -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse("3410712362").unwrap()
    }

    fn header_for(p: &Person) -> InfoRequestHeader {
        InfoRequestHeader {
            medical_institution_code: clinic(),
            insurer_number: p.insurer_number.clone(),
            insurance_card_symbol: p.symbol.clone(),
            insured_person_identification_number: p.number.clone(),
            branch_number: p.branch.clone(),
            arbitrary_file_identifier: Some("v-1".into()),
        }
    }

    fn drug_request(p: &Person) -> DrugInfoRequest {
        DrugInfoRequest {
            header: header_for(p),
            start_month: YearMonth::parse("202001").unwrap(),
            end_month: YearMonth::parse("202604").unwrap(),
            file_category: FileCategory::Xml,
        }
    }

    #[test]
    fn views_need_a_live_consent_or_a_window_for_the_prefecture() {
        let r = route();
        let p = r.service.population().people()[0].clone();
        let ask = |r: &InfoRoute, at: OffsetDateTime| {
            r.drug(&clinic(), &drug_request(&p), NOW, at, XmlEncoding::Utf8)
        };
        let refused = ask(&r, now_utc());
        assert_eq!(refused.error, Some(SimErrorCode::InfoNotConsented));
        assert_eq!(
            refused.result.header.segment_of_result,
            SegmentOfResult::AbnormalEnd
        );
        assert_eq!(
            refused.result.header.error_code.as_deref(),
            Some("SIM-E0401")
        );

        r.consents.record(
            PersonKey::of(&p),
            ConsentRecord {
                consented_at: now_utc() - time::Duration::hours(2),
                categories: vec![InfoCategory::Drug],
            },
        );
        let allowed = ask(&r, now_utc());
        assert_eq!(allowed.error, None);
        assert_eq!(
            allowed.result.header.segment_of_result,
            SegmentOfResult::Normal
        );
        assert!(
            allowed
                .result
                .months
                .iter()
                .all(|m| m.month >= YearMonth::parse("202305").unwrap())
        );
        // The consent was for drugs only, and lasts 24 hours.
        let checkup = r.checkup(
            &clinic(),
            &CheckupInfoRequest {
                header: header_for(&p),
                start_month: None,
                end_month: None,
                file_category: FileCategory::Xml,
            },
            NOW,
            now_utc(),
            XmlEncoding::Utf8,
        );
        assert_eq!(checkup.error, Some(SimErrorCode::InfoNotConsented));
        let later = ask(&r, now_utc() + time::Duration::hours(22));
        assert_eq!(later.error, Some(SimErrorCode::InfoNotConsented));

        // A disaster window for Hiroshima (34, the clinic's prefecture) opens it; Tokyo's does not.
        let window = |pref: &str| OpenWindow {
            id: Some(format!("w-{pref}")),
            prefectures: vec![onshi_domain::ids::Prefecture::parse(pref).unwrap()],
            starts_at: now_utc() - time::Duration::days(1),
            ends_at: now_utc() + time::Duration::days(6),
        };
        r.windows.open(window("13")).unwrap();
        assert_eq!(
            ask(&r, now_utc() + time::Duration::hours(22)).error,
            Some(SimErrorCode::InfoNotConsented)
        );
        r.windows.open(window("34")).unwrap();
        assert_eq!(ask(&r, now_utc() + time::Duration::hours(22)).error, None);
    }

    #[test]
    fn other_institutions_unknown_people_and_pdf_are_refused() {
        let r = route();
        let p = r.service.population().people()[1].clone();
        let other = MedicalInstitutionCode::parse("1340123455").unwrap();
        let a = r.drug(&other, &drug_request(&p), NOW, now_utc(), XmlEncoding::Utf8);
        assert_eq!(a.error, Some(SimErrorCode::InstitutionMismatch));
        let mut nobody = drug_request(&p);
        nobody.header.insured_person_identification_number =
            onshi_domain::ids::InsuredIdentificationNumber::parse("99999999").unwrap();
        let a = r.drug(&clinic(), &nobody, NOW, now_utc(), XmlEncoding::Utf8);
        assert_eq!(a.error, Some(SimErrorCode::InfoPersonUnknown));
        let mut pdf = drug_request(&p);
        pdf.file_category = FileCategory::Pdf;
        let a = r.drug(&clinic(), &pdf, NOW, now_utc(), XmlEncoding::Utf8);
        assert_eq!(a.error, Some(SimErrorCode::InfoPdfNotSupported));
    }
}
