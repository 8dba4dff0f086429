//! The national side as the terminal reaches it: every call the terminal makes into the
//! simulator's pure request → result logic ([`crate::service`], [`crate::bulk`],
//! [`crate::info`], [`crate::card`]) and into the shared codec is in this file, so a change
//! of their signatures is fixed here and nowhere else.
//!
//! Answers are in the request's declared encoding. A request that cannot be read is answered
//! in its kind's result shape: eligibility and batch files end abnormally
//! (`SegmentOfResult` 9, a `SIM-` `ErrorCode`, `ErrorMessage` in Japanese then English); drug
//! and checkup files carry their failure the way their codec writes one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    BulkInquiryRequest, BulkResultRequest, CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest,
    DrugInfoResult, QualificationConfirmationRequest, XmlEncoding, XmlError,
};
use time::{OffsetDateTime, PrimitiveDateTime};

use super::files::StoredConsent;
use super::names::Kind;
use crate::bulk::BulkRoute;
use crate::card::{CardReading, ConsentChoices, card_reading, consent_record};
use crate::consent::{Consents, PersonKey};
use crate::disaster::DisasterWindows;
use crate::errors::SimErrorCode;
use crate::faults::Faults;
use crate::http::{declared_encoding, scan_header};
use crate::info::InfoRoute;
use crate::population::Population;
use crate::service::{Service, refusal};

/// A request file as read, ready to be answered.
#[derive(Debug)]
pub enum Request {
    Eligibility(QualificationConfirmationRequest),
    /// The batch route reads its own files; the bytes were checked to be readable.
    Batch(Kind),
    Drug(DrugInfoRequest),
    Checkup(CheckupInfoRequest),
    /// A kind the simulator does not answer from its population.
    Other,
}

/// The national system for one terminal (one institution).
#[derive(Debug)]
pub struct National {
    institution: MedicalInstitutionCode,
    service: Arc<Service>,
    info: InfoRoute,
    bulk: BulkRoute,
    consents: Arc<Consents>,
    windows: Arc<DisasterWindows>,
}

impl National {
    pub fn new(
        institution: MedicalInstitutionCode,
        population: Arc<Population>,
        batch_delay: Duration,
    ) -> Self {
        let service = Arc::new(Service::new(population));
        let consents = Arc::new(Consents::default());
        let windows = Arc::new(DisasterWindows::default());
        // The terminal has its own knobs; the national system's error injection stays off.
        let faults = Arc::new(Faults::default());
        let info = InfoRoute::new(
            service.clone(),
            consents.clone(),
            windows.clone(),
            faults.clone(),
        );
        let bulk = BulkRoute::new(service.clone(), faults);
        bulk.set_delay(batch_delay);
        Self {
            institution,
            service,
            info,
            bulk,
            consents,
            windows,
        }
    }

    pub fn institution(&self) -> &MedicalInstitutionCode {
        &self.institution
    }

    pub fn population(&self) -> &Arc<Population> {
        self.service.population()
    }

    pub fn disaster_windows(&self) -> &Arc<DisasterWindows> {
        &self.windows
    }

    /// Reads a request file of `kind`.
    pub fn read(kind: Kind, bytes: &[u8]) -> Result<Request, XmlError> {
        Ok(match kind {
            Kind::Eligibility => {
                Request::Eligibility(QualificationConfirmationRequest::from_xml(bytes)?)
            }
            Kind::BatchSubmit => {
                BulkInquiryRequest::from_xml_rows(bytes)?;
                Request::Batch(kind)
            }
            Kind::BatchFetch => {
                BulkResultRequest::from_xml(bytes)?;
                Request::Batch(kind)
            }
            Kind::Drug => Request::Drug(DrugInfoRequest::from_xml(bytes)?),
            Kind::Checkup => Request::Checkup(CheckupInfoRequest::from_xml(bytes)?),
            Kind::Other => Request::Other,
        })
    }

    /// The result file for a readable request (`bytes` are the request file as read).
    pub fn answer(
        &self,
        request: &Request,
        bytes: &[u8],
        now: PrimitiveDateTime,
        now_utc: OffsetDateTime,
        at: Instant,
    ) -> Vec<u8> {
        let enc = declared_encoding(bytes);
        let institution = &self.institution;
        match request {
            Request::Eligibility(r) => self
                .service
                .confirm(institution, r, now, enc)
                .result
                .to_xml(enc),
            Request::Batch(Kind::BatchSubmit) => self
                .bulk
                .submit(institution, bytes, now, at)
                .result
                .to_xml(enc),
            Request::Batch(_) => self
                .bulk
                .fetch(institution, bytes, now, at)
                .result
                .to_xml(enc),
            Request::Drug(r) => self
                .info
                .drug(institution, r, now, now_utc, enc)
                .result
                .to_xml(enc),
            Request::Checkup(r) => self
                .info
                .checkup(institution, r, now, now_utc, enc)
                .result
                .to_xml(enc),
            Request::Other => {
                let error = SimErrorCode::RequestUnreadable;
                let detail = "this message kind is not simulated by onshi-sim's terminal";
                refusal(
                    institution,
                    &scan_header(bytes, enc),
                    error,
                    Some(&format!("{}: {detail}", error.message_en())),
                    now,
                    enc,
                )
                .result
                .to_xml(enc)
            }
        }
    }

    /// The result file for a request of `kind` that could not be read.
    pub fn unreadable(
        &self,
        kind: Kind,
        bytes: &[u8],
        error: &XmlError,
        now: PrimitiveDateTime,
        at: Instant,
    ) -> Vec<u8> {
        let enc = declared_encoding(bytes);
        let code = SimErrorCode::for_xml_error(error);
        // Japanese (the catalogue's message), then English with what exactly was wrong.
        let detail = format!("{}: {error}", code.message_en());
        match kind {
            // The batch route answers unreadable files itself, in its own shapes.
            Kind::BatchSubmit => self
                .bulk
                .submit(&self.institution, bytes, now, at)
                .result
                .to_xml(enc),
            Kind::BatchFetch => self
                .bulk
                .fetch(&self.institution, bytes, now, at)
                .result
                .to_xml(enc),
            Kind::Drug => DrugInfoResult {
                header: unreadable_info_header(&self.institution, code, &detail, now, enc),
                start_month: None,
                end_month: None,
                months: Vec::new(),
            }
            .to_xml(enc),
            Kind::Checkup => CheckupInfoResult {
                header: unreadable_info_header(&self.institution, code, &detail, now, enc),
                checkups: Vec::new(),
            }
            .to_xml(enc),
            Kind::Eligibility | Kind::Other => refusal(
                &self.institution,
                &scan_header(bytes, enc),
                code,
                Some(&detail),
                now,
                enc,
            )
            .result
            .to_xml(enc),
        }
    }

    /// Replaces the consents known to the national side with those given on the face reader
    /// (recording is idempotent: the same record twice is one consent).
    pub fn refresh_consents(&self, stored: &[StoredConsent]) {
        let people = self.population().people();
        for consent in stored {
            if let Some(person) = people.get(consent.holder) {
                self.consents
                    .record(PersonKey::of(person), consent.record.clone());
            }
        }
    }

    /// A patient of the population (index `holder`) used the face reader at `now` (JST):
    /// the face result file (UTF-8) and the consent to keep (none when the patient chose
    /// nothing), or `None` for an unknown holder.
    pub fn face_reading(
        &self,
        holder: usize,
        reading_id: &str,
        limit_consent: bool,
        choices: ConsentChoices,
        now: PrimitiveDateTime,
    ) -> Option<(Vec<u8>, Option<StoredConsent>)> {
        let person = self.population().people().get(holder)?;
        let answer = card_reading(
            &self.service,
            &self.institution,
            person,
            &CardReading {
                date: now.date(),
                arbitrary_file_identifier: Some(reading_id.to_string()),
                limit_consent,
                consent: choices,
            },
            now,
        );
        let consent = consent_record(choices, now)
            .filter(|_| answer.error.is_none())
            .map(|record| StoredConsent { holder, record });
        Some((answer.result.to_xml(XmlEncoding::Utf8), consent))
    }
}

/// The header of a drug or checkup result for a request that could not be read (nothing of
/// the request is echoed).
fn unreadable_info_header(
    institution: &MedicalInstitutionCode,
    code: SimErrorCode,
    detail: &str,
    now: PrimitiveDateTime,
    enc: XmlEncoding,
) -> onshi_domain::xml::InfoResultHeader {
    onshi_domain::xml::InfoResultHeader {
        process_execution_time: now,
        medical_institution_code: institution.clone(),
        insurer_number: None,
        insurance_card_symbol: None,
        insured_person_identification_number: None,
        branch_number: None,
        arbitrary_file_identifier: None,
        segment_of_result: onshi_domain::codes::SegmentOfResult::AbnormalEnd,
        error_code: Some(code.code().to_string()),
        error_message: Some(code.message_with(Some(detail))),
        character_code_identifier: crate::service::character_code(enc),
    }
}
