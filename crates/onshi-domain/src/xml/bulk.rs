//! The two-step batch inquiry (一括照会): `OQSmuquc01req` sends many searches and is answered
//! with a `ReceptionNumber`; `OQSmuquc02req` asks for the results by that number and is
//! answered "in progress" (`SegmentOfResult` 2) until they are ready, then with one
//! `BulkConfirmUnit` per search.
//!
//! The shapes follow the corpus (`shared/onshi-corpus/OQSmuquc0*`, rebuilt from independent
//! clinic software; `shared/domain/onshi.md` §3):
//!
//! - `OQSmuquc01req`: the single request's header (`QualificationConfirmationDate`,
//!   `MedicalInstitutionCode`, `ArbitraryFileIdentifier`) and a `MessageBody` holding the
//!   `QualificationConfirmSearchInfo` elements directly, repeated, in order;
//! - its answer ([`BulkInquiryAccepted`]): a result-like header (`ProcessExecutionTime`,
//!   `MedicalInstitutionCode`, `ArbitraryFileIdentifier`, `SegmentOfResult` (assumed by the
//!   corpus), `CharacterCodeIdentifier`) and, in the **body**, `ReceptionNumber` and
//!   `ReceptionDateTime` (absent when the file ends abnormally);
//! - `OQSmuquc02req`: a header of `MedicalInstitutionCode` (and our optional
//!   `ArbitraryFileIdentifier`), and `ReceptionNumber` in the **body**;
//! - its answer ([`BulkResult`]): a result header plus `ReceptionNumber`,
//!   `NumberOfProcessingResult`, `NumberOfNormalProcessing`, `NumberOfError`, and a
//!   `MessageBody` holding the `BulkConfirmUnit` elements directly. A unit carries the echo of
//!   its search, the per-person status, code, message and validity, its
//!   `ResultOfQualificationConfirmation` elements (directly, or inside a `ResultList` as in the
//!   single result: both are read) and `ReferenceNumber`.
//!
//! An earlier version of this codec (and perhaps other software) put `ReceptionNumber` of the
//! two middle messages in the header: the readers still accept it there, with a
//! [`super::WarningKind::Misplaced`] warning; the writers never put it there.
//!
//! Reading reuses the single message's readers and writers for the search and the
//! qualification, so a person reads the same whichever way they were asked. The counts are
//! checked against the units when reading: a result whose header disagrees with its body is
//! refused rather than half-trusted. Results "may arrive zipped" (UNCONFIRMED framing): the
//! codec reads the XML; unpacking is the transport's business.
//!
//! Batches are larger than single messages, so these readers default to [`XmlLimits::BULK`].

use time::{Date, PrimitiveDateTime};

use super::qualification::{
    BODY, HEADER, RESULT, RESULT_LIST, ROOT, SEARCH_INFO, character_code_of,
};
use super::read::{Doc, Node, Warned};
use super::write::Out;
use super::{
    QualificationConfirmSearchInfo, QualificationConfirmationResult, RequestHeader, ResultBody,
    ResultHeader, ResultOfQualificationConfirmation, XmlEncoding, XmlError, XmlLimits, shown,
};
use crate::codes::{
    CharacterCodeIdentifier, ProcessingResultStatus, QualificationValidity,
    ReferenceClassification, SegmentOfResult,
};
use crate::ids::MedicalInstitutionCode;

const UNIT: &str = "BulkConfirmUnit";
const RECEPTION_NUMBER: &str = "ReceptionNumber";
const RECEPTION_DATE_TIME: &str = "ReceptionDateTime";

impl XmlLimits {
    /// Limits for batch messages: room for a few thousand people with every optional element
    /// (a person's result is about 40 elements and 2 KB), still bounded.
    pub const BULK: XmlLimits = XmlLimits {
        max_bytes: 16 * 1024 * 1024,
        max_depth: 32,
        max_elements: 250_000,
    };
}

// ---------------------------------------------------------------------------------------------
// Step 1: the batch inquiry and its acceptance
// ---------------------------------------------------------------------------------------------

/// 一括照会要求 (`OQSmuquc01req`): many people, by insurance card numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkInquiryRequest {
    pub header: RequestHeader,
    /// The searches, in order. `ArbitraryIdentifier` is the way to tell the results apart.
    pub searches: Vec<QualificationConfirmSearchInfo>,
}

/// A batch inquiry read row by row ([`BulkInquiryRequest::from_xml_rows`]): a row that cannot
/// be read is an error for that row only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkInquiryRows {
    pub header: RequestHeader,
    pub rows: Vec<Result<QualificationConfirmSearchInfo, XmlError>>,
}

/// The answer to `OQSmuquc01req`: the batch was accepted under `ReceptionNumber`, or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkInquiryAccepted {
    pub process_execution_time: PrimitiveDateTime,
    pub medical_institution_code: MedicalInstitutionCode,
    /// Echo of the request's `ArbitraryFileIdentifier`.
    pub arbitrary_file_identifier: Option<String>,
    /// In the body. Present (required when reading) when `segment_of_result` is normal.
    pub reception_number: Option<String>,
    /// `ReceptionDateTime`, in the body: when the national side accepted the batch.
    pub reception_date_time: Option<PrimitiveDateTime>,
    pub segment_of_result: SegmentOfResult,
    /// Only when `segment_of_result` is not normal; never branch on the text.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub character_code_identifier: CharacterCodeIdentifier,
}

fn write_request_header(header: &RequestHeader, out: &mut Out) {
    out.open(HEADER);
    out.date(
        "QualificationConfirmationDate",
        header.qualification_confirmation_date,
    );
    out.leaf(
        "MedicalInstitutionCode",
        header.medical_institution_code.as_str(),
    );
    out.opt(
        "ArbitraryFileIdentifier",
        header.arbitrary_file_identifier.as_deref(),
    );
    out.close(HEADER);
}

impl BulkInquiryRequest {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        write_request_header(&self.header, &mut out);
        out.open(BODY);
        for search in &self.searches {
            search.write(&mut out);
        }
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    /// Reads a batch inquiry with [`XmlLimits::BULK`]; any unreadable row fails the whole file.
    /// Warnings are dropped (see [`Self::read_xml_rows`]).
    pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
        Self::from_xml_with_limits(bytes, &XmlLimits::BULK)
    }

    pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        let rows = Self::read_xml_rows_with_limits(bytes, limits)?.value;
        Ok(BulkInquiryRequest {
            header: rows.header,
            searches: rows.rows.into_iter().collect::<Result<_, _>>()?,
        })
    }

    /// Reads the file (envelope and header must be sound) but each row on its own, for the
    /// national side, which answers a bad row with an error unit rather than refusing the
    /// batch. Warnings are dropped (see [`Self::read_xml_rows`]).
    pub fn from_xml_rows(bytes: &[u8]) -> Result<BulkInquiryRows, XmlError> {
        Self::read_xml_rows(bytes).map(Warned::into_value)
    }

    /// As [`Self::from_xml_rows`], with what was tolerated.
    pub fn read_xml_rows(bytes: &[u8]) -> Result<Warned<BulkInquiryRows>, XmlError> {
        Self::read_xml_rows_with_limits(bytes, &XmlLimits::BULK)
    }

    pub fn read_xml_rows_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<BulkInquiryRows>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let header = RequestHeader::read(&root.envelope(HEADER)?)?;
        let body = root.envelope(BODY)?;
        let rows = body
            .children(SEARCH_INFO)
            .map(|s| {
                QualificationConfirmSearchInfo::read(&s).inspect_err(|_| {
                    // The row is answered with its error; its other elements are not unknown.
                    s.skip();
                })
            })
            .collect();
        Ok(doc.finish(BulkInquiryRows { header, rows }))
    }
}

impl BulkInquiryAccepted {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        out.datetime("ProcessExecutionTime", self.process_execution_time);
        out.leaf(
            "MedicalInstitutionCode",
            self.medical_institution_code.as_str(),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            self.arbitrary_file_identifier.as_deref(),
        );
        out.leaf("SegmentOfResult", self.segment_of_result.code());
        out.opt("ErrorCode", self.error_code.as_deref());
        out.opt("ErrorMessage", self.error_message.as_deref());
        out.leaf(
            "CharacterCodeIdentifier",
            self.character_code_identifier.code(),
        );
        out.close(HEADER);
        out.open(BODY);
        out.opt(RECEPTION_NUMBER, self.reception_number.as_deref());
        out.opt_datetime(RECEPTION_DATE_TIME, self.reception_date_time);
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    reading_shorthands!(XmlLimits::DEFAULT);

    pub fn read_xml_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<Self>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let h = root.envelope(HEADER)?;
        let body = root.opt_envelope(BODY)?;
        let segment_of_result: SegmentOfResult = h.req_text("SegmentOfResult")?.code()?;
        let reception_number = body_reception_number(
            body.as_ref(),
            &h,
            segment_of_result == SegmentOfResult::Normal,
        )?;
        let reception_date_time = match &body {
            Some(b) => b.opt_datetime(RECEPTION_DATE_TIME)?,
            None => None,
        };
        let value = BulkInquiryAccepted {
            process_execution_time: h.req_text("ProcessExecutionTime")?.datetime()?,
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
            reception_number,
            reception_date_time,
            segment_of_result,
            error_code: h.opt_string("ErrorCode")?,
            error_message: h.opt_string("ErrorMessage")?,
            character_code_identifier: h
                .opt_code("CharacterCodeIdentifier")?
                .unwrap_or(character_code_of(doc.encoding())),
        };
        Ok(doc.finish(value))
    }
}

/// The reception number of `OQSmuquc01res` / `OQSmuquc02req`: in the body; in the header
/// (the old placement) with a warning. Required when `required`; an error when both places
/// hold different numbers.
fn body_reception_number(
    body: Option<&Node<'_>>,
    header: &Node<'_>,
    required: bool,
) -> Result<Option<String>, XmlError> {
    let in_body = match body {
        Some(b) => opt_reception_number(b)?,
        None => None,
    };
    let in_header = opt_reception_number(header)?;
    match (in_body, in_header) {
        (Some(b), Some(h)) if b != h => Err(XmlError::InvalidValue {
            path: format!("{ROOT}/{HEADER}/{RECEPTION_NUMBER}"),
            value: shown(&h),
            reason: format!("the body's {RECEPTION_NUMBER} is {}", shown(&b)),
        }),
        (Some(b), in_header) => {
            if in_header.is_some() {
                header.misplaced(RECEPTION_NUMBER, "in MessageBody")?;
            }
            Ok(Some(b))
        }
        (None, Some(h)) => {
            header.misplaced(RECEPTION_NUMBER, "in MessageBody")?;
            Ok(Some(h))
        }
        (None, None) if required => Err(XmlError::MissingElement {
            path: format!("{ROOT}/{BODY}/{RECEPTION_NUMBER}"),
        }),
        (None, None) => Ok(None),
    }
}

/// A reception number, if present: printable, at most 64 characters (its real format is not
/// public; the simulator's and the corpus's are 20 digits).
fn opt_reception_number(n: &Node<'_>) -> Result<Option<String>, XmlError> {
    let Some(leaf) = n.text(RECEPTION_NUMBER)? else {
        return Ok(None);
    };
    let value = leaf.raw.trim();
    if value.chars().count() > 64 || value.chars().any(char::is_control) {
        return Err(leaf.invalid("expected a reception number of at most 64 printable characters"));
    }
    Ok(Some(value.to_owned()))
}

/// A required reception number (the header of `OQSmuquc02res`).
fn reception_number(h: &Node<'_>) -> Result<String, XmlError> {
    opt_reception_number(h)?.ok_or_else(|| XmlError::MissingElement {
        path: format!("{}/{RECEPTION_NUMBER}", h.path()),
    })
}

// ---------------------------------------------------------------------------------------------
// Step 2: the results
// ---------------------------------------------------------------------------------------------

/// 一括照会結果取得要求 (`OQSmuquc02req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkResultRequest {
    pub medical_institution_code: MedicalInstitutionCode,
    pub reception_number: String,
    pub arbitrary_file_identifier: Option<String>,
}

/// 一括照会結果 (`OQSmuquc02res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkResult {
    pub header: BulkResultHeader,
    /// One per search of the batch; empty while in progress or after an abnormal end.
    pub units: Vec<BulkConfirmUnit>,
}

/// `MessageHeader` of a batch result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkResultHeader {
    pub process_execution_time: PrimitiveDateTime,
    /// The batch inquiry's date, when known (absent for an unknown reception number).
    pub qualification_confirmation_date: Option<Date>,
    pub medical_institution_code: MedicalInstitutionCode,
    pub arbitrary_file_identifier: Option<String>,
    pub reception_number: Option<String>,
    /// 1 normal (the units follow), 2 still in progress (ask again), 9 abnormal end.
    pub segment_of_result: SegmentOfResult,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `NumberOfProcessingResult`: the units in the body. Required when normal.
    pub number_of_processing_result: Option<u32>,
    /// `NumberOfNormalProcessing`: units with `ProcessingResultStatus` 1.
    pub number_of_normal_processing: Option<u32>,
    /// `NumberOfError`: units with `ProcessingResultStatus` 2.
    pub number_of_error: Option<u32>,
    pub character_code_identifier: CharacterCodeIdentifier,
}

/// `BulkConfirmUnit`: the answer for one search of the batch, as the single result's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkConfirmUnit {
    /// Echo of the search (with its `ArbitraryIdentifier`); absent for a row the national side
    /// could not read.
    pub search_info: Option<QualificationConfirmSearchInfo>,
    pub processing_result_status: ProcessingResultStatus,
    /// Not public; never branch on its text.
    pub processing_result_code: Option<String>,
    pub processing_result_message: Option<String>,
    pub qualification_validity: Option<QualificationValidity>,
    pub results: Vec<ResultOfQualificationConfirmation>,
    pub reference_number: Option<String>,
}

impl BulkResultRequest {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        out.leaf(
            "MedicalInstitutionCode",
            self.medical_institution_code.as_str(),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            self.arbitrary_file_identifier.as_deref(),
        );
        out.close(HEADER);
        out.open(BODY);
        out.leaf(RECEPTION_NUMBER, &self.reception_number);
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    reading_shorthands!(XmlLimits::DEFAULT);

    pub fn read_xml_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<Self>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let h = root.envelope(HEADER)?;
        let body = root.opt_envelope(BODY)?;
        let reception_number = body_reception_number(body.as_ref(), &h, true)?
            .expect("a required reception number is present");
        let value = BulkResultRequest {
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            reception_number,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
        };
        Ok(doc.finish(value))
    }
}

fn opt_count(h: &Node<'_>, name: &str) -> Result<Option<u32>, XmlError> {
    h.text(name)?
        .map(|leaf| {
            let v = leaf.raw.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(leaf.invalid("expected a count (up to 9 digits)"));
            }
            v.parse::<u32>()
                .map_err(|_| leaf.invalid("expected a count (up to 9 digits)"))
        })
        .transpose()
}

fn count_mismatch(name: &str, value: u32, reason: String) -> XmlError {
    XmlError::InvalidValue {
        path: format!("{ROOT}/{HEADER}/{name}"),
        value: shown(&value.to_string()),
        reason,
    }
}

impl BulkResultHeader {
    /// Checks the counts against the units; every disagreement is refused.
    fn check_counts(&self, units: &[BulkConfirmUnit]) -> Result<(), XmlError> {
        let normal = units
            .iter()
            .filter(|u| u.processing_result_status == ProcessingResultStatus::Normal)
            .count();
        let errors = units.len() - normal;
        let total = match self.number_of_processing_result {
            Some(total) => total,
            None if self.segment_of_result == SegmentOfResult::Normal => {
                return Err(XmlError::MissingElement {
                    path: format!("{ROOT}/{HEADER}/NumberOfProcessingResult"),
                });
            }
            None if units.is_empty() => return Ok(()),
            None => {
                return Err(XmlError::MissingElement {
                    path: format!("{ROOT}/{HEADER}/NumberOfProcessingResult"),
                });
            }
        };
        if total as usize != units.len() {
            return Err(count_mismatch(
                "NumberOfProcessingResult",
                total,
                format!(
                    "the body has {} {UNIT} entries; a result whose count disagrees with its body may have lost people",
                    units.len()
                ),
            ));
        }
        if let Some(n) = self.number_of_normal_processing
            && n as usize != normal
        {
            return Err(count_mismatch(
                "NumberOfNormalProcessing",
                n,
                format!("{normal} {UNIT} entries have ProcessingResultStatus 1"),
            ));
        }
        if let Some(n) = self.number_of_error
            && n as usize != errors
        {
            return Err(count_mismatch(
                "NumberOfError",
                n,
                format!("{errors} {UNIT} entries have ProcessingResultStatus 2"),
            ));
        }
        Ok(())
    }
}

impl BulkConfirmUnit {
    fn read(n: &Node<'_>) -> Result<Self, XmlError> {
        let mut results = Vec::new();
        for item in n.list(RESULT_LIST, RESULT) {
            results.push(ResultOfQualificationConfirmation::read(&item.node(n))?);
        }
        Ok(BulkConfirmUnit {
            search_info: n
                .child(SEARCH_INFO)?
                .map(|s| QualificationConfirmSearchInfo::read(&s))
                .transpose()?,
            // The per-person outcome has no safe default: an unknown one is refused.
            processing_result_status: n.req_text("ProcessingResultStatus")?.code()?,
            processing_result_code: n.opt_string("ProcessingResultCode")?,
            processing_result_message: n.opt_string("ProcessingResultMessage")?,
            qualification_validity: n.opt_code("QualificationValidity")?,
            results,
            reference_number: n.opt_string("ReferenceNumber")?,
        })
    }

    fn write(&self, out: &mut Out) {
        out.open(UNIT);
        if let Some(s) = &self.search_info {
            s.write(out);
        }
        out.leaf(
            "ProcessingResultStatus",
            self.processing_result_status.code(),
        );
        out.opt(
            "ProcessingResultCode",
            self.processing_result_code.as_deref(),
        );
        out.opt(
            "ProcessingResultMessage",
            self.processing_result_message.as_deref(),
        );
        out.opt(
            "QualificationValidity",
            self.qualification_validity.map(|c| c.code()),
        );
        for r in &self.results {
            r.write(out);
        }
        out.opt("ReferenceNumber", self.reference_number.as_deref());
        out.close(UNIT);
    }

    /// The unit of a single result's body (for the one-person view of a batch answer).
    pub fn from_result_body(body: ResultBody) -> Option<Self> {
        Some(BulkConfirmUnit {
            processing_result_status: body.processing_result_status?,
            search_info: body.search_info,
            processing_result_code: body.processing_result_code,
            processing_result_message: body.processing_result_message,
            qualification_validity: body.qualification_validity,
            reference_number: body.results.iter().find_map(|r| r.reference_number.clone()),
            results: body.results,
        })
    }
}

impl BulkResult {
    /// Counts the units into the header (`NumberOf…`), as a writer must before sending.
    pub fn set_counts(&mut self) {
        let normal = self
            .units
            .iter()
            .filter(|u| u.processing_result_status == ProcessingResultStatus::Normal)
            .count();
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.header.number_of_processing_result = Some(clamp(self.units.len()));
        self.header.number_of_normal_processing = Some(clamp(normal));
        self.header.number_of_error = Some(clamp(self.units.len() - normal));
    }

    /// The answer for one unit as a single eligibility result (`OQSsiquc01res`), so that a
    /// person answered in a batch is judged and recorded exactly like one asked alone.
    /// `qualification_confirmation_date` is used when the header carries none.
    pub fn single_result(
        &self,
        unit: &BulkConfirmUnit,
        qualification_confirmation_date: Date,
    ) -> QualificationConfirmationResult {
        let h = &self.header;
        QualificationConfirmationResult {
            header: ResultHeader {
                process_execution_time: h.process_execution_time,
                qualification_confirmation_date: h
                    .qualification_confirmation_date
                    .unwrap_or(qualification_confirmation_date),
                medical_institution_code: h.medical_institution_code.clone(),
                arbitrary_file_identifier: h.arbitrary_file_identifier.clone(),
                reference_classification: ReferenceClassification::InsuranceCard,
                segment_of_result: h.segment_of_result,
                error_code: h.error_code.clone(),
                error_message: h.error_message.clone(),
                character_code_identifier: h.character_code_identifier,
            },
            body: ResultBody {
                processing_result_status: Some(unit.processing_result_status),
                processing_result_code: unit.processing_result_code.clone(),
                processing_result_message: unit.processing_result_message.clone(),
                qualification_validity: unit.qualification_validity,
                search_info: unit.search_info.clone(),
                prescription_issue_select: None,
                results: unit.results.clone(),
            },
        }
    }

    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let h = &self.header;
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        out.datetime("ProcessExecutionTime", h.process_execution_time);
        out.opt_date(
            "QualificationConfirmationDate",
            h.qualification_confirmation_date,
        );
        out.leaf(
            "MedicalInstitutionCode",
            h.medical_institution_code.as_str(),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            h.arbitrary_file_identifier.as_deref(),
        );
        out.opt(RECEPTION_NUMBER, h.reception_number.as_deref());
        out.leaf("SegmentOfResult", h.segment_of_result.code());
        out.opt("ErrorCode", h.error_code.as_deref());
        out.opt("ErrorMessage", h.error_message.as_deref());
        let count = |n: Option<u32>| n.map(|n| n.to_string());
        out.opt(
            "NumberOfProcessingResult",
            count(h.number_of_processing_result).as_deref(),
        );
        out.opt(
            "NumberOfNormalProcessing",
            count(h.number_of_normal_processing).as_deref(),
        );
        out.opt("NumberOfError", count(h.number_of_error).as_deref());
        out.leaf(
            "CharacterCodeIdentifier",
            h.character_code_identifier.code(),
        );
        out.close(HEADER);
        out.open(BODY);
        for unit in &self.units {
            unit.write(&mut out);
        }
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    reading_shorthands!(XmlLimits::BULK);

    pub fn read_xml_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<Self>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let h = root.envelope(HEADER)?;
        let segment_of_result: SegmentOfResult = h.req_text("SegmentOfResult")?.code()?;
        let header = BulkResultHeader {
            process_execution_time: h.req_text("ProcessExecutionTime")?.datetime()?,
            qualification_confirmation_date: h
                .text("QualificationConfirmationDate")?
                .map(|l| l.date())
                .transpose()?,
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
            reception_number: if segment_of_result == SegmentOfResult::AbnormalEnd {
                opt_reception_number(&h)?
            } else {
                Some(reception_number(&h)?)
            },
            segment_of_result,
            error_code: h.opt_string("ErrorCode")?,
            error_message: h.opt_string("ErrorMessage")?,
            number_of_processing_result: opt_count(&h, "NumberOfProcessingResult")?,
            number_of_normal_processing: opt_count(&h, "NumberOfNormalProcessing")?,
            number_of_error: opt_count(&h, "NumberOfError")?,
            character_code_identifier: h
                .opt_code("CharacterCodeIdentifier")?
                .unwrap_or(character_code_of(doc.encoding())),
        };
        let mut units = Vec::new();
        if let Some(body) = root.opt_envelope(BODY)? {
            for u in body.children(UNIT) {
                units.push(BulkConfirmUnit::read(&u)?);
            }
        }
        header.check_counts(&units)?;
        Ok(doc.finish(BulkResult { header, units }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Sex;
    use crate::ids::{
        BirthDate, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber,
        InsurerNumber,
    };
    use time::macros::{date, datetime};

    fn institution() -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse("3410712362").unwrap()
    }

    fn search(number: &str, tag: &str) -> QualificationConfirmSearchInfo {
        QualificationConfirmSearchInfo {
            insurer_number: InsurerNumber::parse("138156").unwrap(),
            insured_card_symbol: Some(InsuredCardSymbol::parse("記号12").unwrap()),
            insured_identification_number: InsuredIdentificationNumber::parse(number).unwrap(),
            insured_branch_number: Some(InsuredBranchNumber::parse("01").unwrap()),
            birthdate: BirthDate::parse("19800102").unwrap(),
            limit_application_certificate_related_cons_flg: true,
            arbitrary_identifier: Some(tag.into()),
        }
    }

    fn request() -> BulkInquiryRequest {
        BulkInquiryRequest {
            header: RequestHeader {
                qualification_confirmation_date: date!(2026 - 04 - 01),
                medical_institution_code: institution(),
                arbitrary_file_identifier: Some("batch-0001".into()),
            },
            searches: vec![search("1234", "0"), search("5678", "1"), search("9", "2")],
        }
    }

    pub(crate) fn sample_result() -> BulkResult {
        let person = ResultOfQualificationConfirmation {
            insurer_number: Some(InsurerNumber::parse("138156").unwrap()),
            name: Some("山田　太郎 & 花子".into()),
            name_kana: Some("ﾔﾏﾀﾞ ﾀﾛｳ".into()),
            sex1: Some(Sex::Male),
            insured_partial_contribution_ratio: Some("030".into()),
            reference_number: Some("REF-1".into()),
            ..ResultOfQualificationConfirmation::default()
        };
        let mut result = BulkResult {
            header: BulkResultHeader {
                process_execution_time: datetime!(2026-04-01 10:15:30),
                qualification_confirmation_date: Some(date!(2026 - 04 - 01)),
                medical_institution_code: institution(),
                arbitrary_file_identifier: Some("batch-0001".into()),
                reception_number: Some("48213077521904431667".into()),
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                number_of_processing_result: None,
                number_of_normal_processing: None,
                number_of_error: None,
                character_code_identifier: CharacterCodeIdentifier::Utf8,
            },
            units: vec![
                BulkConfirmUnit {
                    search_info: Some(search("1234", "0")),
                    processing_result_status: ProcessingResultStatus::Normal,
                    processing_result_code: None,
                    processing_result_message: None,
                    qualification_validity: Some(QualificationValidity::Valid),
                    results: vec![person],
                    reference_number: Some("REF-1".into()),
                },
                BulkConfirmUnit {
                    search_info: Some(search("5678", "1")),
                    processing_result_status: ProcessingResultStatus::Normal,
                    processing_result_code: None,
                    processing_result_message: None,
                    qualification_validity: Some(QualificationValidity::NoMatch),
                    results: Vec::new(),
                    reference_number: None,
                },
                BulkConfirmUnit {
                    search_info: None,
                    processing_result_status: ProcessingResultStatus::Error,
                    processing_result_code: Some("SIM-E0003".into()),
                    processing_result_message: Some("値が正しくありません".into()),
                    qualification_validity: None,
                    results: Vec::new(),
                    reference_number: None,
                },
            ],
        };
        result.set_counts();
        result
    }

    fn with_encoding<T>(
        enc: XmlEncoding,
        mut value: T,
        set: impl Fn(&mut T, CharacterCodeIdentifier),
    ) -> T {
        set(&mut value, character_code_of(enc));
        value
    }

    #[test]
    fn requests_round_trip_in_both_encodings() {
        let request = request();
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let xml = request.to_xml(enc);
            assert_eq!(BulkInquiryRequest::from_xml(&xml).unwrap(), request);
            let rows = BulkInquiryRequest::from_xml_rows(&xml).unwrap();
            assert_eq!(rows.rows.len(), 3);
            assert!(rows.rows.iter().all(Result::is_ok));
        }
        let text = String::from_utf8(request.to_xml(XmlEncoding::Utf8)).unwrap();
        assert_eq!(text.matches("<QualificationConfirmSearchInfo>").count(), 3);
        assert!(
            text.contains("<InsurerNumber>  138156</InsurerNumber>"),
            "{text}"
        );

        let ask = BulkResultRequest {
            medical_institution_code: institution(),
            reception_number: "48213077521904431667".into(),
            arbitrary_file_identifier: None,
        };
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            assert_eq!(BulkResultRequest::from_xml(&ask.to_xml(enc)).unwrap(), ask);
        }
        let missing = String::from_utf8(ask.to_xml(XmlEncoding::Utf8))
            .unwrap()
            .replace(
                "<ReceptionNumber>48213077521904431667</ReceptionNumber>",
                "",
            );
        assert!(matches!(
            BulkResultRequest::from_xml(missing.as_bytes()),
            Err(XmlError::MissingElement { path }) if path.ends_with("ReceptionNumber")
        ));
    }

    #[test]
    fn a_bad_row_fails_only_itself_when_read_by_rows() {
        let text = String::from_utf8(request().to_xml(XmlEncoding::Utf8)).unwrap();
        let bad = text.replacen("<Birthdate>19800102", "<Birthdate>19801302", 1);
        assert!(matches!(
            BulkInquiryRequest::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidIdentifier { path, .. })
                if path == "XmlMsg/MessageBody/QualificationConfirmSearchInfo[1]/Birthdate"
        ));
        let rows = BulkInquiryRequest::from_xml_rows(bad.as_bytes()).unwrap();
        assert!(rows.rows[0].is_err());
        assert!(rows.rows[1].is_ok() && rows.rows[2].is_ok());
    }

    #[test]
    fn acceptances_round_trip_and_need_a_reception_number_when_normal() {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let accepted = BulkInquiryAccepted {
                process_execution_time: datetime!(2026-04-01 10:15:30),
                medical_institution_code: institution(),
                arbitrary_file_identifier: Some("batch-0001".into()),
                reception_number: Some("48213077521904431667".into()),
                reception_date_time: Some(datetime!(2026-04-01 10:15:30)),
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                character_code_identifier: character_code_of(enc),
            };
            let xml = accepted.to_xml(enc);
            assert_eq!(BulkInquiryAccepted::from_xml(&xml).unwrap(), accepted);

            let refused = BulkInquiryAccepted {
                reception_number: None,
                reception_date_time: None,
                segment_of_result: SegmentOfResult::AbnormalEnd,
                error_code: Some("SIM-E0005".into()),
                error_message: Some("行が多すぎます".into()),
                ..accepted.clone()
            };
            assert_eq!(
                BulkInquiryAccepted::from_xml(&refused.to_xml(enc)).unwrap(),
                refused
            );
            let broken = BulkInquiryAccepted {
                reception_number: None,
                ..accepted
            };
            assert!(matches!(
                BulkInquiryAccepted::from_xml(&broken.to_xml(enc)),
                Err(XmlError::MissingElement { path }) if path.ends_with("ReceptionNumber")
            ));
        }
    }

    #[test]
    fn results_round_trip_in_both_encodings() {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let expected = with_encoding(enc, sample_result(), |r, c| {
                r.header.character_code_identifier = c
            });
            let xml = expected.to_xml(enc);
            assert_eq!(BulkResult::from_xml(&xml).unwrap(), expected);
        }
        // In progress: no counts, no units.
        let mut waiting = sample_result();
        waiting.header.segment_of_result = SegmentOfResult::InProgress;
        waiting.units.clear();
        waiting.header.number_of_processing_result = None;
        waiting.header.number_of_normal_processing = None;
        waiting.header.number_of_error = None;
        let xml = waiting.to_xml(XmlEncoding::ShiftJis);
        let mut expected = waiting.clone();
        expected.header.character_code_identifier = CharacterCodeIdentifier::Utf8;
        assert_eq!(BulkResult::from_xml(&xml).unwrap(), expected);
        // Abnormal end without a reception number.
        let mut refused = waiting;
        refused.header.segment_of_result = SegmentOfResult::AbnormalEnd;
        refused.header.reception_number = None;
        refused.header.error_code = Some("SIM-E0501".into());
        let xml = refused.to_xml(XmlEncoding::Utf8);
        assert_eq!(BulkResult::from_xml(&xml).unwrap(), refused);
    }

    #[test]
    fn results_inside_a_result_list_read_too() {
        let text = String::from_utf8(sample_result().to_xml(XmlEncoding::Utf8)).unwrap();
        let listed = text
            .replacen(
                "<ResultOfQualificationConfirmation>",
                "<ResultList><ResultOfQualificationConfirmation>",
                1,
            )
            .replacen(
                "</ResultOfQualificationConfirmation>",
                "</ResultOfQualificationConfirmation></ResultList>",
                1,
            );
        let read = BulkResult::from_xml(listed.as_bytes()).unwrap();
        assert_eq!(read, sample_result());
    }

    #[test]
    fn counts_must_agree_with_the_body() {
        let text = String::from_utf8(sample_result().to_xml(XmlEncoding::Utf8)).unwrap();
        let more = text.replace(
            "<NumberOfProcessingResult>3<",
            "<NumberOfProcessingResult>4<",
        );
        let error = BulkResult::from_xml(more.as_bytes()).unwrap_err();
        assert!(
            matches!(&error, XmlError::InvalidValue { path, value, .. }
                if path == "XmlMsg/MessageHeader/NumberOfProcessingResult" && value == "4"),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the body has 3 BulkConfirmUnit entries")
        );

        let normal = text.replace(
            "<NumberOfNormalProcessing>2<",
            "<NumberOfNormalProcessing>3<",
        );
        assert!(matches!(
            BulkResult::from_xml(normal.as_bytes()),
            Err(XmlError::InvalidValue { path, .. }) if path.ends_with("NumberOfNormalProcessing")
        ));
        let errors = text.replace("<NumberOfError>1<", "<NumberOfError>0<");
        assert!(matches!(
            BulkResult::from_xml(errors.as_bytes()),
            Err(XmlError::InvalidValue { path, .. }) if path.ends_with("NumberOfError")
        ));
        let missing = text.replace("<NumberOfProcessingResult>3</NumberOfProcessingResult>", "");
        assert!(matches!(
            BulkResult::from_xml(missing.as_bytes()),
            Err(XmlError::MissingElement { path }) if path.ends_with("NumberOfProcessingResult")
        ));
        let garbled = text.replace(
            "<NumberOfProcessingResult>3<",
            "<NumberOfProcessingResult>-3<",
        );
        assert!(matches!(
            BulkResult::from_xml(garbled.as_bytes()),
            Err(XmlError::InvalidValue { .. })
        ));
    }

    #[test]
    fn a_unit_reads_as_a_single_result() {
        let result = sample_result();
        let single = result.single_result(&result.units[0], date!(2026 - 01 - 01));
        assert_eq!(
            single.header.qualification_confirmation_date,
            date!(2026 - 04 - 01)
        );
        assert_eq!(
            single.body.qualification_validity,
            Some(QualificationValidity::Valid)
        );
        let xml = single.to_xml(XmlEncoding::Utf8);
        let back = QualificationConfirmationResult::from_xml(&xml).unwrap();
        assert_eq!(back, single);
        let unit = BulkConfirmUnit::from_result_body(back.body).unwrap();
        assert_eq!(unit, result.units[0]);
    }

    #[test]
    fn the_default_limits_hold_a_thousand_people() {
        let mut result = sample_result();
        let unit = result.units[0].clone();
        result.units = vec![unit; 1000];
        result.set_counts();
        let xml = result.to_xml(XmlEncoding::Utf8);
        assert!(xml.len() < XmlLimits::BULK.max_bytes);
        assert_eq!(BulkResult::from_xml(&xml).unwrap().units.len(), 1000);
        let tight = XmlLimits {
            max_bytes: 1024,
            ..XmlLimits::BULK
        };
        assert_eq!(
            BulkResult::from_xml_with_limits(&xml, &tight),
            Err(XmlError::TooLarge { limit: 1024 })
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = BulkInquiryRequest::from_xml(&bytes);
            let _ = BulkInquiryRequest::from_xml_rows(&bytes);
            let _ = BulkInquiryAccepted::from_xml(&bytes);
            let _ = BulkResultRequest::from_xml(&bytes);
            let _ = BulkResult::from_xml(&bytes);
        }

        #[test]
        fn damaged_results_never_panic(cut in 0usize..4000, junk in "[<>/a-zA-Z0-9&;#]{0,8}") {
            let xml = sample_result().to_xml(XmlEncoding::Utf8);
            let cut = cut.min(xml.len());
            let mut damaged = xml[..cut].to_vec();
            damaged.extend_from_slice(junk.as_bytes());
            damaged.extend_from_slice(&xml[cut..]);
            let _ = BulkResult::from_xml(&damaged);
            let _ = BulkInquiryRequest::from_xml_rows(&damaged);
        }
    }
}
