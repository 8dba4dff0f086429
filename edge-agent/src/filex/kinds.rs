//! What the file exchange needs to know of each kind it relays ([`Kind`]): reading a request
//! (well-formed, this site's, its echo), whether an answer reads as that kind's result, and an
//! error result in that kind's own shape when the agent has no answer to pass on (a receipt
//! computer reading a drug result expects `ResultCode`, not `SegmentOfResult`).

use onshi_domain::codes::{CharacterCodeIdentifier, SegmentOfResult};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultHeader, BulkResultRequest,
    CheckupInfoRequest, CheckupInfoResult, DrugInfoRequest, DrugInfoResult, InfoOutcome,
    QualificationConfirmationRequest, QualificationConfirmationResult, ResultCode, XmlEncoding,
    XmlError, XmlLimits,
};

use super::codes::{self, AgentErrorCode, Echo};
pub use crate::exchanges::Kind;

/// What the agent reads of a request before passing it on.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub institution: MedicalInstitutionCode,
    /// What an error result echoes.
    pub echo: Echo,
}

/// The kind of a request file in the request or work folder (a claimed file may carry a
/// numeric suffix after `.xml`).
pub fn of_claimed(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| {
        name.strip_prefix(k.message_id())
            .is_some_and(|rest| rest.starts_with("req_"))
    })
}

/// Reads a request under `max_bytes` (the batch inquiry under the batch limits otherwise): the
/// envelope and header must be sound and name an institution. A batch row the agent cannot
/// read is the national side's to answer (it answers such a row with an error unit).
pub fn read_request(kind: Kind, bytes: &[u8], max_bytes: usize) -> Result<ReadRequest, XmlError> {
    let limits = |base: XmlLimits| XmlLimits { max_bytes, ..base };
    let scanned = super::scan_echo(bytes);
    Ok(match kind {
        Kind::Eligibility => {
            let read = QualificationConfirmationRequest::read_xml_with_limits(
                bytes,
                &limits(XmlLimits::DEFAULT),
            )?;
            crate::judge::log_read_warnings("OQSsiquc01req", &read.warnings);
            let request = read.value;
            ReadRequest {
                echo: Echo {
                    confirmation_date: Some(request.header.qualification_confirmation_date),
                    arbitrary_file_identifier: request.header.arbitrary_file_identifier,
                    reception_number: None,
                },
                institution: request.header.medical_institution_code,
            }
        }
        Kind::BatchSubmit => {
            let read =
                BulkInquiryRequest::read_xml_rows_with_limits(bytes, &limits(XmlLimits::BULK))?;
            crate::judge::log_read_warnings("OQSmuquc01req", &read.warnings);
            let header = read.value.header;
            ReadRequest {
                echo: Echo {
                    confirmation_date: Some(header.qualification_confirmation_date),
                    arbitrary_file_identifier: header.arbitrary_file_identifier,
                    reception_number: None,
                },
                institution: header.medical_institution_code,
            }
        }
        Kind::BatchFetch => {
            let read = BulkResultRequest::read_xml_with_limits(bytes, &limits(XmlLimits::DEFAULT))?;
            crate::judge::log_read_warnings("OQSmuquc02req", &read.warnings);
            let request = read.value;
            ReadRequest {
                echo: Echo {
                    confirmation_date: None,
                    arbitrary_file_identifier: request.arbitrary_file_identifier,
                    reception_number: Some(request.reception_number),
                },
                institution: request.medical_institution_code,
            }
        }
        Kind::Drug => {
            let request =
                DrugInfoRequest::from_xml_with_limits(bytes, &limits(XmlLimits::DEFAULT))?;
            ReadRequest {
                institution: request.header.medical_institution_code,
                echo: scanned,
            }
        }
        Kind::Checkup => {
            let request =
                CheckupInfoRequest::from_xml_with_limits(bytes, &limits(XmlLimits::DEFAULT))?;
            ReadRequest {
                institution: request.header.medical_institution_code,
                echo: scanned,
            }
        }
    })
}

/// Whether `bytes` read as a result of `kind` (passed back as they are when they do). Batch
/// results may come zipped: those are read inside the archive, and passed back zipped for the
/// receipt computer to open.
pub fn result_reads(kind: Kind, bytes: &[u8]) -> bool {
    match kind {
        Kind::Eligibility => QualificationConfirmationResult::from_xml(bytes).is_ok(),
        Kind::BatchSubmit => BulkInquiryAccepted::from_xml(bytes).is_ok(),
        Kind::BatchFetch => crate::exchanges::read_batch_result(bytes).is_ok(),
        Kind::Drug => DrugInfoResult::from_xml(bytes).is_ok(),
        Kind::Checkup => CheckupInfoResult::from_xml(bytes).is_ok(),
    }
}

/// A result of `kind` that ends abnormally with one of the agent's codes (`SegmentOfResult` 9
/// where the kind has it; `ResultCode` set to the code in drug and checkup results), the
/// message in Japanese then English with `detail`.
pub fn error_result(
    kind: Kind,
    institution: &MedicalInstitutionCode,
    echo: &Echo,
    error: AgentErrorCode,
    detail: Option<&str>,
    encoding: XmlEncoding,
) -> Vec<u8> {
    let message = match detail {
        Some(detail) if !detail.is_empty() => format!("{}（{detail}）", error.message()),
        _ => error.message().to_string(),
    };
    let character_code_identifier = match encoding {
        XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
        XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
    };
    let now = codes::now_jst();
    match kind {
        Kind::Eligibility => codes::error_result(institution, echo, error, detail, encoding),
        Kind::BatchSubmit => BulkInquiryAccepted {
            process_execution_time: now,
            medical_institution_code: institution.clone(),
            arbitrary_file_identifier: echo.arbitrary_file_identifier.clone(),
            reception_number: None,
            reception_date_time: None,
            segment_of_result: SegmentOfResult::AbnormalEnd,
            error_code: Some(error.code().to_string()),
            error_message: Some(message),
            character_code_identifier,
        }
        .to_xml(encoding),
        Kind::BatchFetch => BulkResult {
            header: BulkResultHeader {
                process_execution_time: now,
                qualification_confirmation_date: echo.confirmation_date,
                medical_institution_code: institution.clone(),
                arbitrary_file_identifier: echo.arbitrary_file_identifier.clone(),
                reception_number: echo.reception_number.clone(),
                segment_of_result: SegmentOfResult::AbnormalEnd,
                error_code: Some(error.code().to_string()),
                error_message: Some(message),
                number_of_processing_result: None,
                number_of_normal_processing: None,
                number_of_error: None,
                character_code_identifier,
            },
            units: Vec::new(),
        }
        .to_xml(encoding),
        Kind::Drug => DrugInfoResult::refused(InfoOutcome {
            result_code: ResultCode::Other(error.code().to_string()),
            message_contents: Some(message),
        })
        .to_xml(encoding),
        Kind::Checkup => CheckupInfoResult::refused(InfoOutcome {
            result_code: ResultCode::Other(error.code().to_string()),
            message_contents: Some(message),
        })
        .to_xml(encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_names_keep_their_kind() {
        assert_eq!(of_claimed("YZKsiquc01req_0226.xml.1"), Some(Kind::Drug));
        assert_eq!(of_claimed("OQSsiquc01res_1.xml"), None);
    }

    /// Every kind's error result reads back as that kind's result, with the agent's code.
    #[test]
    fn error_results_read_back_in_their_kind_s_shape() {
        let institution = MedicalInstitutionCode::parse("0110112489").unwrap();
        let echo = Echo {
            confirmation_date: None,
            arbitrary_file_identifier: Some("受付1".into()),
            reception_number: Some("20260115000000000123".into()),
        };
        for kind in Kind::ALL {
            for encoding in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
                let bytes = error_result(
                    kind,
                    &institution,
                    &echo,
                    AgentErrorCode::NationalUnreachable,
                    Some("timeout"),
                    encoding,
                );
                assert!(result_reads(kind, &bytes), "{kind:?} {encoding:?}");
                let text = match encoding {
                    XmlEncoding::Utf8 => String::from_utf8(bytes.clone()).unwrap(),
                    XmlEncoding::ShiftJis => encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned(),
                };
                assert!(text.contains("AGT-E0101"), "{kind:?}: {text}");
                assert!(text.contains("保険証"), "{kind:?}: {text}");
            }
        }
        let fetch = BulkResult::from_xml(&error_result(
            Kind::BatchFetch,
            &institution,
            &echo,
            AgentErrorCode::NationalUnreachable,
            None,
            XmlEncoding::Utf8,
        ))
        .unwrap();
        assert_eq!(
            fetch.header.reception_number.as_deref(),
            Some("20260115000000000123")
        );
    }
}
