//! Drug and checkup information: `POST /oqs/YZKsiquc01` (an `YZKsiquc01req` file in, the
//! `YZKsiquc01res` file back) and `POST /oqs/TKKsiquc01` (checkups), in the request's encoding;
//! and the disaster-window knobs `GET`/`POST`/`DELETE /admin/disaster-windows`
//! ([`crate::disaster`]).
//!
//! A request is answered only when the terminal certificate's institution is the request's
//! (else `SIM-E0102`), exactly one insured person matches the header's numbers (else
//! `SIM-E0402`), the file category is XML (else `SIM-E0403`) and either that person gave a
//! consent for the category on the card reader within 24 hours ([`crate::consent`]) or a
//! disaster window is open for the institution's prefecture (else `SIM-E0401`). Answers have
//! the real shapes (`ResultCode` 1, `QuaInf` / `QualificationsInfo`, the histories of
//! [`crate::histories`]); refusals are result files whose `ResultCode` is the `SIM-` code
//! (the real failure codes are not public; anything but 1 is a failure) and whose
//! `MessageContents` says why in Japanese, then English. Drug requests are answered for the
//! months asked, within 3 years; checkups for 5 years. The file category must be an XML one
//! (2 or 4, [`FileCategory::is_xml`]).
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
use onshi_domain::events::InfoCategory;
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, FileCategory,
    InfoOutcome, InfoPatient, InfoRequestHeader, ResultCode, XmlEncoding, YearMonth,
};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::consent::{Consents, PersonKey};
use crate::disaster::{DisasterWindows, OpenWindow};
use crate::errors::SimErrorCode;
use crate::faults::Faults;
use crate::histories::{DRUG_RETENTION_MONTHS, Histories};
use crate::http::{declared_encoding, now_jst};
use crate::population::Person;
use crate::service::Service;

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
        if !file_category.is_xml() {
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

    /// Answers a drug request at `now` (JST wall clock) / `now_utc`. The encoding is the
    /// caller's concern: the answer is the same in both.
    pub fn drug(
        &self,
        institution: &MedicalInstitutionCode,
        request: &DrugInfoRequest,
        now: PrimitiveDateTime,
        now_utc: OffsetDateTime,
    ) -> InfoAnswer<DrugInfoResult> {
        match self.admit(
            institution,
            &request.header,
            InfoCategory::Drug,
            request.file_category,
            now_utc,
        ) {
            Err((error, detail)) => InfoAnswer {
                result: DrugInfoResult::refused(refusal(error, &detail)),
                error: Some(error),
            },
            Ok((person, _window)) => {
                let today = now.date();
                let oldest = YearMonth::of(today).minus_months(DRUG_RETENTION_MONTHS - 1);
                let history = self.histories.drugs(
                    &PersonKey::of(person),
                    request.start_month.max(oldest),
                    request.end_month,
                    today,
                    institution.prefecture(),
                );
                InfoAnswer {
                    result: DrugInfoResult {
                        outcome: InfoOutcome::success(),
                        patient: Some(patient(person)),
                        months: history.months,
                        dispensing: history.dispensing,
                        prescriptions: Vec::new(),
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
    ) -> InfoAnswer<CheckupInfoResult> {
        match self.admit(
            institution,
            &request.header,
            InfoCategory::Checkup,
            request.file_category,
            now_utc,
        ) {
            Err((error, detail)) => InfoAnswer {
                result: CheckupInfoResult::refused(refusal(error, &detail)),
                error: Some(error),
            },
            Ok((person, _window)) => {
                let mut checkups =
                    self.histories
                        .checkups(&PersonKey::of(person), person, now.date());
                checkups.retain(|c| {
                    let month = c.date().map(YearMonth::of);
                    request.start_month.is_none_or(|m| month >= Some(m))
                        && request.end_month.is_none_or(|m| month <= Some(m))
                });
                InfoAnswer {
                    result: CheckupInfoResult {
                        outcome: InfoOutcome::success(),
                        patient: Some(patient(person)),
                        checkups,
                    },
                    error: None,
                }
            }
        }
    }
}

/// The patient block (`QuaInf` / `QualificationsInfo`) for `person`.
fn patient(person: &Person) -> InfoPatient {
    InfoPatient {
        name: Some(person.name.clone()),
        kana_name: Some(person.name_kana.clone()),
        birth: Some(person.birthdate.date()),
        gender_code: Some(person.sex.code().to_string()),
    }
}

/// A refusal: the `SIM-` code as `ResultCode`, the reason in Japanese then English (and what
/// exactly was wrong, when there is something to add) as `MessageContents`.
pub fn refusal(error: SimErrorCode, detail: &str) -> InfoOutcome {
    InfoOutcome {
        result_code: ResultCode::Other(error.code().to_string()),
        message_contents: Some(format!(
            "{} / {}",
            error.message_with(Some(detail)),
            error.message_en()
        )),
    }
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
        (refusal(error, &e.to_string()), error)
    };
    let (status, xml, error) = match category {
        InfoCategory::Drug => match DrugInfoRequest::from_xml(body) {
            Ok(request) => {
                let a = route.drug(&institution, &request, now, now_utc);
                (
                    a.error.map_or(200, SimErrorCode::http_status),
                    a.result.to_xml(encoding),
                    a.error,
                )
            }
            Err(e) => {
                let (outcome, error) = unreadable(e);
                let result = DrugInfoResult::refused(outcome);
                (error.http_status(), result.to_xml(encoding), Some(error))
            }
        },
        _ => match CheckupInfoRequest::from_xml(body) {
            Ok(request) => {
                let a = route.checkup(&institution, &request, now, now_utc);
                (
                    a.error.map_or(200, SimErrorCode::http_status),
                    a.result.to_xml(encoding),
                    a.error,
                )
            }
            Err(e) => {
                let (outcome, error) = unreadable(e);
                let result = CheckupInfoResult::refused(outcome);
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
    use onshi_domain::xml::InfoRequestFlags;
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
            file_category: FileCategory::FULL_XML,
            flags: InfoRequestFlags::as_clients_send(),
        }
    }

    #[test]
    fn views_need_a_live_consent_or_a_window_for_the_prefecture() {
        let r = route();
        let p = r.service.population().people()[0].clone();
        let ask = |r: &InfoRoute, at: OffsetDateTime| r.drug(&clinic(), &drug_request(&p), NOW, at);
        let refused = ask(&r, now_utc());
        assert_eq!(refused.error, Some(SimErrorCode::InfoNotConsented));
        assert_eq!(
            refused.result.outcome.result_code,
            ResultCode::Other("SIM-E0401".into())
        );
        let message = refused.result.outcome.message_contents.clone().unwrap();
        assert!(
            message.starts_with("患者の同意") && message.contains(" / no live consent"),
            "Japanese, then English: {message}"
        );
        assert_eq!(refused.result.patient, None, "nothing about the patient");

        r.consents.record(
            PersonKey::of(&p),
            ConsentRecord {
                consented_at: now_utc() - time::Duration::hours(2),
                categories: vec![InfoCategory::Drug],
            },
        );
        let allowed = ask(&r, now_utc());
        assert_eq!(allowed.error, None);
        assert!(allowed.result.outcome.result_code.is_success());
        assert_eq!(
            allowed.result.patient.as_ref().unwrap().name.as_deref(),
            Some(p.name.as_str())
        );
        assert!(
            allowed
                .result
                .months
                .iter()
                .all(|m| m.month >= YearMonth::parse("202305"))
        );
        // Clinics in the asking site's prefecture (Hiroshima, 34).
        assert!(
            allowed.result.months.iter().all(|m| m
                .institution_code
                .as_deref()
                .unwrap()
                .starts_with("341"))
        );
        // The consent was for drugs only, and lasts 24 hours.
        let checkup = r.checkup(
            &clinic(),
            &CheckupInfoRequest {
                header: header_for(&p),
                start_month: None,
                end_month: None,
                file_category: FileCategory::XML,
                flags: InfoRequestFlags::as_clients_send(),
            },
            NOW,
            now_utc(),
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
        let other = MedicalInstitutionCode::parse("0110112489").unwrap();
        let a = r.drug(&other, &drug_request(&p), NOW, now_utc());
        assert_eq!(a.error, Some(SimErrorCode::InstitutionMismatch));
        let mut nobody = drug_request(&p);
        nobody.header.insured_person_identification_number =
            onshi_domain::ids::InsuredIdentificationNumber::parse("99999999").unwrap();
        let a = r.drug(&clinic(), &nobody, NOW, now_utc());
        assert_eq!(a.error, Some(SimErrorCode::InfoPersonUnknown));
        for pdf_category in [FileCategory::PDF, FileCategory::FULL_PDF] {
            let mut pdf = drug_request(&p);
            pdf.file_category = pdf_category;
            let a = r.drug(&clinic(), &pdf, NOW, now_utc());
            assert_eq!(a.error, Some(SimErrorCode::InfoPdfNotSupported));
        }
    }

    /// The corpus's element paths, as a set (the order of siblings is the codec's concern,
    /// checked against the corpus in `onshi-domain`'s `corpus_info` test).
    fn corpus_paths(name: &str) -> std::collections::BTreeSet<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/onshi-corpus")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} cannot be read ({e}): shared/onshi-corpus/ must be beside the checkout",
                path.display()
            )
        });
        onshi_domain::xml::element_paths(&bytes)
            .unwrap()
            .into_iter()
            .collect()
    }

    fn paths(xml: &[u8]) -> std::collections::BTreeSet<String> {
        onshi_domain::xml::element_paths(xml)
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn answers_place_elements_as_the_corpus_does() {
        let r = route();
        let people = r.service.population().people().to_vec();
        let everyone = |category| {
            for p in &people {
                r.consents.record(
                    PersonKey::of(p),
                    ConsentRecord {
                        consented_at: now_utc(),
                        categories: vec![category],
                    },
                );
            }
        };
        everyone(InfoCategory::Drug);
        let drug = people
            .iter()
            .map(|p| r.drug(&clinic(), &drug_request(p), NOW, now_utc()).result)
            .find(|d| !d.months.is_empty() && !d.dispensing.is_empty())
            .expect("someone has a drug history");
        assert_eq!(
            paths(&drug.to_xml(XmlEncoding::ShiftJis)),
            corpus_paths("YZKsiquc01res_drug.xml")
        );
        everyone(InfoCategory::Checkup);
        let checkup = people
            .iter()
            .map(|p| {
                let request = CheckupInfoRequest {
                    header: header_for(p),
                    start_month: None,
                    end_month: None,
                    file_category: FileCategory::XML,
                    flags: InfoRequestFlags::as_clients_send(),
                };
                r.checkup(&clinic(), &request, NOW, now_utc()).result
            })
            .find(|c| !c.checkups.is_empty())
            .expect("someone has checkups");
        let mut expected = corpus_paths("TKKsiquc01res_checkup.xml");
        // Coded results carry the name of their value (domain notes §3; not in the corpus).
        expected.insert(
            "XmlMsg/MessageBody/SpecificHealthCheckupInfo/HealthCheckupResultAndQuestionInfos/HealthCheckupResultAndQuestionInfo/DataValueName".into(),
        );
        assert_eq!(paths(&checkup.to_xml(XmlEncoding::ShiftJis)), expected);
        // A refusal: the outcome where the corpus has ResultCode, and nothing else.
        let refused = DrugInfoResult::refused(refusal(SimErrorCode::InfoNotConsented, ""));
        let written = paths(&refused.to_xml(XmlEncoding::Utf8));
        let corpus = corpus_paths("YZKsiquc01res_drug.xml");
        for p in &written {
            assert!(
                corpus.contains(p) || p == "XmlMsg/MessageHeader/MessageContents",
                "{p}"
            );
        }
    }
}
