//! The simulator's own error codes.
//!
//! The national system's `ErrorCode` and `ProcessingResultCode` values are not public (only
//! registered vendors get the specification), so onshi-sim defines its own catalogue. Every
//! code starts with `SIM-` so that nobody mistakes it for a real one, and the edge agent must
//! never branch on these codes or their text: it reads `SegmentOfResult` and
//! `ProcessingResultStatus`, which are public code tables, and for drug and checkup results
//! whether `ResultCode` is 1 (there the `SIM-` code itself is the `ResultCode` of a refusal,
//! since the real failure codes are not public either).
//!
//! Numbering: `SIM-E00xx` the request file itself, `SIM-E01xx` who is asking (the terminal
//! certificate), `SIM-E02xx` the insurer's side, `SIM-E03xx` the national system itself (the
//! fault knobs of [`crate::faults`]), `SIM-E04xx` drug and checkup information
//! ([`crate::info`]), `SIM-E05xx` the two-step batch inquiry ([`crate::bulk`]). Each code carries the HTTP status the
//! simulator answers with, so the same failure looks the same in the XML and on the wire.

use onshi_domain::xml::XmlError;

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimErrorCode {
    /// The body is not a readable `OQSsiquc01req` (encoding, well-formedness, root element).
    RequestUnreadable,
    /// A required element of the request is missing.
    RequiredElementMissing,
    /// An element of the request holds an invalid value (check digit, date, code).
    InvalidValue,
    /// The body is larger than the simulator accepts.
    RequestTooLarge,
    /// The client certificate does not name a terminal of a medical institution.
    CertificateNamesNoTerminal,
    /// The request's `MedicalInstitutionCode` is not the institution of the terminal
    /// certificate.
    InstitutionMismatch,
    /// The insurer is under maintenance (see [`crate::service::MAINTENANCE_INSURER`]).
    InsurerUnderMaintenance,
    /// Card route: the card's user-authentication certificate is outside its validity dates.
    CardCertificateExpired,
    /// Card route: the certificate was not issued by the (test) J-LIS CA.
    CardCertificateUntrusted,
    /// Card route: no or a wrong signature over the challenge (or the face was not verified).
    CardSignatureInvalid,
    /// Card route: the challenge is unknown, used, expired or issued to another institution.
    CardChallengeInvalid,
    /// Card route: no insured person is registered for the certificate.
    CardHolderUnknown,
    /// The national system is overloaded (injected by the fault knobs, [`crate::faults`]).
    Overloaded,
    /// Drug or checkup information: no live consent for the category (given on the card
    /// within 24 hours) and no open disaster window for the institution's prefecture.
    InfoNotConsented,
    /// Drug or checkup information: no single insured person matches the numbers.
    InfoPersonUnknown,
    /// Drug or checkup information: only the XML file categories (2 and 4) are simulated.
    InfoPdfNotSupported,
    /// Batch inquiry: more rows than one `OQSmuquc01req` may carry
    /// ([`crate::bulk::MAX_ROWS`]), or none.
    BulkRowCount,
    /// Batch results: the reception number is unknown, expired, or another institution's
    /// (the three are not told apart, so numbers cannot be probed).
    BulkReceptionUnknown,
    /// Batch inquiry: too many batches are kept unfetched ([`crate::bulk::MAX_KEPT`]).
    BulkStoreFull,
}

impl SimErrorCode {
    /// The whole catalogue, in code order.
    pub const ALL: &'static [Self] = &[
        Self::RequestUnreadable,
        Self::RequiredElementMissing,
        Self::InvalidValue,
        Self::RequestTooLarge,
        Self::CertificateNamesNoTerminal,
        Self::InstitutionMismatch,
        Self::InsurerUnderMaintenance,
        Self::CardCertificateExpired,
        Self::CardCertificateUntrusted,
        Self::CardSignatureInvalid,
        Self::CardChallengeInvalid,
        Self::CardHolderUnknown,
        Self::Overloaded,
        Self::InfoNotConsented,
        Self::InfoPersonUnknown,
        Self::InfoPdfNotSupported,
        Self::BulkRowCount,
        Self::BulkReceptionUnknown,
        Self::BulkStoreFull,
    ];

    /// The code written to `ErrorCode` or `ProcessingResultCode`.
    pub fn code(self) -> &'static str {
        match self {
            Self::RequestUnreadable => "SIM-E0001",
            Self::RequiredElementMissing => "SIM-E0002",
            Self::InvalidValue => "SIM-E0003",
            Self::RequestTooLarge => "SIM-E0004",
            Self::CertificateNamesNoTerminal => "SIM-E0101",
            Self::InstitutionMismatch => "SIM-E0102",
            Self::InsurerUnderMaintenance => "SIM-E0201",
            Self::CardCertificateExpired => "SIM-E0103",
            Self::CardCertificateUntrusted => "SIM-E0104",
            Self::CardSignatureInvalid => "SIM-E0105",
            Self::CardChallengeInvalid => "SIM-E0106",
            Self::CardHolderUnknown => "SIM-E0107",
            Self::Overloaded => "SIM-E0301",
            Self::InfoNotConsented => "SIM-E0401",
            Self::InfoPersonUnknown => "SIM-E0402",
            Self::InfoPdfNotSupported => "SIM-E0403",
            Self::BulkRowCount => "SIM-E0501",
            Self::BulkReceptionUnknown => "SIM-E0502",
            Self::BulkStoreFull => "SIM-E0503",
        }
    }

    /// The message for the counter and the vendor, as the national system would word it.
    pub fn message_ja(self) -> &'static str {
        match self {
            Self::RequestUnreadable => {
                "要求電文を読み取れません。XMLの形式と文字コードをご確認ください。"
            }
            Self::RequiredElementMissing => {
                "要求電文に必須項目がありません。レセプトコンピュータの設定をご確認ください。"
            }
            Self::InvalidValue => {
                "要求電文の項目の値が正しくありません。入力内容をご確認ください。"
            }
            Self::RequestTooLarge => "要求電文が大きすぎます（上限1MiB）。",
            Self::CertificateNamesNoTerminal => {
                "端末の電子証明書から医療機関コードと端末を特定できません。電子証明書をご確認ください。"
            }
            Self::InstitutionMismatch => {
                "要求電文の医療機関コードが端末の電子証明書の医療機関コードと一致しません。"
            }
            Self::InsurerUnderMaintenance => {
                "保険者のシステムが保守中のため資格を確認できません。時間をおいて再度照会してください。"
            }
            Self::CardCertificateExpired => {
                "マイナンバーカードの利用者証明用電子証明書の有効期限が切れています。市区町村で更新してください。"
            }
            Self::CardCertificateUntrusted => "マイナンバーカードの電子証明書を確認できません。",
            Self::CardSignatureInvalid => "本人確認（暗証番号または顔認証）を確認できません。",
            Self::CardChallengeInvalid => {
                "本人確認の要求が無効または期限切れです。もう一度カードを読み取ってください。"
            }
            Self::CardHolderUnknown => "このマイナンバーカードに登録された資格情報がありません。",
            Self::Overloaded => {
                "システムが混雑しているため処理できません。時間をおいて再度照会してください。"
            }
            Self::InfoNotConsented => {
                "患者の同意（24時間以内）がなく、災害時の閲覧期間でもないため、情報を提供できません。"
            }
            Self::InfoPersonUnknown => "指定された被保険者番号等に該当する方がいません。",
            Self::InfoPdfNotSupported => {
                "この環境ではXML形式（ファイル種別2・4）のみ提供しています。"
            }
            Self::BulkRowCount => {
                "一括照会の件数が上限（1,000件）を超えているか、0件です。分割して照会してください。"
            }
            Self::BulkReceptionUnknown => {
                "受付番号に該当する一括照会がありません（期限切れまたは他の医療機関の受付番号）。"
            }
            Self::BulkStoreFull => {
                "未取得の一括照会が多すぎます。結果を取得してから再度照会してください。"
            }
        }
    }

    /// The same message in English, for operators and logs.
    pub fn message_en(self) -> &'static str {
        match self {
            Self::RequestUnreadable => {
                "the request is not a readable OQSsiquc01req XML message; check its XML and character encoding"
            }
            Self::RequiredElementMissing => {
                "a required element is missing from the request; check the receipt computer's settings"
            }
            Self::InvalidValue => {
                "an element of the request has an invalid value; check what was entered"
            }
            Self::RequestTooLarge => "the request is larger than 1 MiB",
            Self::CertificateNamesNoTerminal => {
                "the client certificate names no medical institution terminal; check the terminal certificate"
            }
            Self::InstitutionMismatch => {
                "the request's MedicalInstitutionCode is not the institution of the terminal certificate"
            }
            Self::InsurerUnderMaintenance => {
                "the insurer's system is under maintenance; eligibility cannot be confirmed, try again later"
            }
            Self::CardCertificateExpired => {
                "the card's user-authentication certificate is expired (or not yet valid); it is renewed at the municipality"
            }
            Self::CardCertificateUntrusted => {
                "the card's certificate was not issued by the J-LIS CA"
            }
            Self::CardSignatureInvalid => {
                "the identity check failed: no valid signature over the challenge, or no face match"
            }
            Self::CardChallengeInvalid => {
                "the challenge is unknown, already used, expired or for another institution; read the card again"
            }
            Self::CardHolderUnknown => "no qualification is registered for this card",
            Self::Overloaded => "the national system is overloaded; try again later",
            Self::InfoNotConsented => {
                "no live consent for this category (given on the card within 24 hours) and no disaster window open for the institution's prefecture"
            }
            Self::InfoPersonUnknown => "no single insured person matches these numbers",
            Self::InfoPdfNotSupported => {
                "the simulator answers the XML file categories (FileCategory 2 and 4) only"
            }
            Self::BulkRowCount => "a batch inquiry carries 1 to 1,000 searches; split the batch",
            Self::BulkReceptionUnknown => {
                "no batch inquiry has this reception number for this institution (unknown, expired or another institution's)"
            }
            Self::BulkStoreFull => {
                "too many batch inquiries are waiting to be fetched; fetch their results first"
            }
        }
    }

    /// The HTTP status the simulator answers with. A per-person error (the insurer under
    /// maintenance) is a normal file with `ProcessingResultStatus` 2, hence 200.
    pub fn http_status(self) -> u16 {
        match self {
            Self::RequestUnreadable | Self::RequiredElementMissing | Self::InvalidValue => 400,
            Self::RequestTooLarge => 413,
            Self::CertificateNamesNoTerminal | Self::InstitutionMismatch => 403,
            Self::InsurerUnderMaintenance => 200,
            Self::CardCertificateExpired
            | Self::CardCertificateUntrusted
            | Self::CardSignatureInvalid
            | Self::CardHolderUnknown => 403,
            Self::CardChallengeInvalid => 400,
            Self::Overloaded => 503,
            Self::InfoNotConsented => 403,
            Self::InfoPersonUnknown => 200,
            Self::InfoPdfNotSupported => 400,
            Self::BulkRowCount => 413,
            Self::BulkReceptionUnknown => 400,
            Self::BulkStoreFull => 503,
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The code for a request file that could not be read.
    pub fn for_xml_error(error: &XmlError) -> Self {
        match error {
            XmlError::TooLarge { .. } => Self::RequestTooLarge,
            XmlError::MissingElement { .. } => Self::RequiredElementMissing,
            XmlError::InvalidValue { .. } | XmlError::InvalidIdentifier { .. } => {
                Self::InvalidValue
            }
            XmlError::TooDeep
            | XmlError::TooManyElements
            | XmlError::Encoding(_)
            | XmlError::Malformed { .. }
            | XmlError::DoctypeNotAllowed
            | XmlError::UnexpectedRoot { .. } => Self::RequestUnreadable,
        }
    }

    /// `ErrorMessage` / `ProcessingResultMessage`: the Japanese message, then what exactly
    /// was wrong when there is something to add.
    pub fn message_with(self, detail: Option<&str>) -> String {
        match detail {
            Some(detail) if !detail.is_empty() => format!("{}（{detail}）", self.message_ja()),
            _ => self.message_ja().to_string(),
        }
    }
}

impl std::fmt::Display for SimErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.message_en())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_is_consistent() {
        let mut codes = HashSet::new();
        for e in SimErrorCode::ALL {
            assert!(e.code().starts_with("SIM-E"), "{}", e.code());
            assert_eq!(e.code().len(), 9);
            assert!(codes.insert(e.code()), "duplicate {}", e.code());
            assert_eq!(SimErrorCode::from_code(e.code()), Some(*e));
            assert!(!e.message_ja().is_empty() && !e.message_en().is_empty());
            assert!([200, 400, 403, 413, 503].contains(&e.http_status()));
        }
        assert_eq!(SimErrorCode::from_code("E0001"), None);
        assert_eq!(SimErrorCode::InstitutionMismatch.code(), "SIM-E0102");
    }

    #[test]
    fn xml_errors_map_to_codes() {
        let missing = XmlError::MissingElement {
            path: "XmlMsg/MessageBody".into(),
        };
        assert_eq!(
            SimErrorCode::for_xml_error(&missing),
            SimErrorCode::RequiredElementMissing
        );
        let malformed = XmlError::Malformed {
            position: 3,
            detail: "x".into(),
        };
        assert_eq!(
            SimErrorCode::for_xml_error(&malformed),
            SimErrorCode::RequestUnreadable
        );
        assert_eq!(
            SimErrorCode::RequestUnreadable.message_with(Some("at byte 3")),
            format!(
                "{}（at byte 3）",
                SimErrorCode::RequestUnreadable.message_ja()
            )
        );
    }
}
