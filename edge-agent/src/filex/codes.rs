//! The agent's own error codes for result files it writes itself, when there is no answer from
//! the national system to pass on.
//!
//! Every code starts with `AGT-` so that nobody mistakes it for a national code (nor for the
//! simulator's `SIM-` codes). `AGT-E00xx`: the request file; `AGT-E01xx`: the link and the
//! agent. Receipt computers should branch on `SegmentOfResult` (9 = abnormal end); the codes
//! and messages tell the clerk and the vendor what happened and what to do.

use onshi_domain::calendar::JST;
use onshi_domain::codes::{CharacterCodeIdentifier, ReferenceClassification, SegmentOfResult};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{QualificationConfirmationResult, ResultBody, ResultHeader, XmlEncoding};
use time::{Date, OffsetDateTime, PrimitiveDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentErrorCode {
    /// The request is not a readable request of its kind (XML, encoding, required elements).
    RequestUnreadable,
    /// The request file is larger than the agent accepts.
    RequestTooLarge,
    /// The request names another medical institution than this site.
    WrongInstitution,
    /// A complete request with a field whose value is wrong (a check digit, a date that does
    /// not exist): answered at once, naming the field and the rule, never as "unreadable".
    RequestInvalidField,
    /// The request file could not be read from disk.
    FileUnreadable,
    /// The national system could not be reached (link down, timeout).
    NationalUnreachable,
    /// The national system answered something that is not a result file.
    NationalAnswerUnreadable,
    /// The lookup could not be recorded in the outbox, so its answer is withheld.
    NotRecorded,
}

impl AgentErrorCode {
    pub const ALL: &'static [Self] = &[
        Self::RequestUnreadable,
        Self::RequestTooLarge,
        Self::WrongInstitution,
        Self::RequestInvalidField,
        Self::FileUnreadable,
        Self::NationalUnreachable,
        Self::NationalAnswerUnreadable,
        Self::NotRecorded,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::RequestUnreadable => "AGT-E0001",
            Self::RequestTooLarge => "AGT-E0002",
            Self::WrongInstitution => "AGT-E0003",
            Self::FileUnreadable => "AGT-E0004",
            Self::RequestInvalidField => "AGT-E0005",
            Self::NationalUnreachable => "AGT-E0101",
            Self::NationalAnswerUnreadable => "AGT-E0102",
            Self::NotRecorded => "AGT-E0103",
        }
    }

    /// For the clerk (Japanese, then English), with what to do.
    pub fn message(self) -> &'static str {
        match self {
            Self::RequestUnreadable => {
                "要求ファイルを読み取れません。レセコンの出力形式を確認してください / the request file is not a readable request of its kind (OQSsiquc01req, YZKsiquc01req, …); check the receipt computer's output"
            }
            Self::RequestTooLarge => {
                "要求ファイルが大きすぎます / the request file is larger than the agent accepts (max_request_bytes)"
            }
            Self::WrongInstitution => {
                "要求ファイルの医療機関コードがこの施設のものではありません。レセコンの設定を確認してください / the request names another medical institution than this site; check the receipt computer's settings"
            }
            Self::FileUnreadable => {
                "要求ファイルを開けません / the request file could not be read from disk"
            }
            Self::RequestInvalidField => {
                "要求ファイルの入力内容に誤りがあります。レセコンで入力した番号を確認してください / a value in the request is wrong; check what was entered at the receipt computer"
            }
            Self::NationalUnreachable => {
                "オンライン資格確認システムに接続できません。保険証（資格確認書）で確認してください / the national system cannot be reached: check the patient's physical insurance card"
            }
            Self::NationalAnswerUnreadable => {
                "オンライン資格確認システムの応答を読み取れません。保険証（資格確認書）で確認してください / the national system's answer could not be read: check the patient's physical insurance card"
            }
            Self::NotRecorded => {
                "照会結果を記録できなかったため返せません。保険証で確認し、管理者に連絡してください / the lookup could not be recorded, so its answer is withheld: check the physical card and call the administrator"
            }
        }
    }
}

pub(crate) fn now_jst() -> PrimitiveDateTime {
    let now = OffsetDateTime::now_utc().to_offset(JST);
    let time = now.time().replace_nanosecond(0).unwrap_or(now.time());
    PrimitiveDateTime::new(now.date(), time)
}

/// What is known of the request an error result answers.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub confirmation_date: Option<Date>,
    pub arbitrary_file_identifier: Option<String>,
    /// A batch result request's `ReceptionNumber`.
    pub reception_number: Option<String>,
}

/// A result file that ends abnormally (`SegmentOfResult` 9) with one of the agent's codes.
pub fn error_result(
    institution: &MedicalInstitutionCode,
    echo: &Echo,
    error: AgentErrorCode,
    detail: Option<&str>,
    encoding: XmlEncoding,
) -> Vec<u8> {
    let now = now_jst();
    let message = match detail {
        Some(detail) if !detail.is_empty() => format!("{}（{detail}）", error.message()),
        _ => error.message().to_string(),
    };
    QualificationConfirmationResult {
        header: ResultHeader {
            process_execution_time: now,
            qualification_confirmation_date: echo.confirmation_date.unwrap_or(now.date()),
            medical_institution_code: institution.clone(),
            arbitrary_file_identifier: echo.arbitrary_file_identifier.clone(),
            reference_classification: ReferenceClassification::InsuranceCard,
            segment_of_result: SegmentOfResult::AbnormalEnd,
            error_code: Some(error.code().to_string()),
            error_message: Some(message),
            character_code_identifier: match encoding {
                XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
                XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
            },
        },
        body: ResultBody::default(),
    }
    .to_xml(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_is_consistent_and_results_read_back() {
        let mut seen = HashSet::new();
        for e in AgentErrorCode::ALL {
            assert!(e.code().starts_with("AGT-E") && e.code().len() == 9);
            assert!(seen.insert(e.code()));
            assert!(e.message().contains(" / "));
        }
        let institution = MedicalInstitutionCode::parse("3410712362").unwrap();
        for encoding in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let bytes = error_result(
                &institution,
                &Echo {
                    confirmation_date: None,
                    arbitrary_file_identifier: Some("受付0001".into()),
                    reception_number: None,
                },
                AgentErrorCode::NationalUnreachable,
                Some("timeout"),
                encoding,
            );
            let read = QualificationConfirmationResult::from_xml(&bytes).unwrap();
            assert_eq!(read.header.segment_of_result, SegmentOfResult::AbnormalEnd);
            assert_eq!(read.header.error_code.as_deref(), Some("AGT-E0101"));
            assert_eq!(
                read.header.arbitrary_file_identifier.as_deref(),
                Some("受付0001")
            );
            assert!(read.header.error_message.unwrap().contains("保険証"));
        }
    }
}
