//! The business code tables (業務コード) of the Onshi interface, as Rust enums.
//!
//! The numbers in the comments (002, 003, …) are the code-table ids of the interface
//! specification (`OQSCD002` …), so a reader can match them with the vendor documents. Each enum
//! has `code()` (the exact string found in the XML), `from_code()`, `label_ja()` (the label the
//! counter staff know) and `ALL`. They serialize as their code string, so events and logs carry
//! the same value as the files.
//!
//! Codes whose meaning we could not confirm from public sources are marked UNCONFIRMED.

use std::fmt;

/// A code string that is not in its table.
///
/// Kept short on purpose: it is shown to operators and written to logs, and a code is never
/// personal data, but a corrupt file could put anything in the element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}: unknown code {code:?}; expected one of {expected}")]
pub struct UnknownCode {
    /// The table's name, e.g. "QualificationValidity (OQSCD006)".
    pub table: &'static str,
    /// The offending code, cut to 16 characters.
    pub code: String,
    /// The codes the table knows, for the message.
    pub expected: &'static str,
}

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $name:ident, $table:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value of the table, in code order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The code as it appears in the XML files.
            pub fn code(self) -> &'static str {
                match self {
                    $( Self::$variant => $code, )+
                }
            }

            /// The value for `code`, or `None` when the table has no such code.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $( $code => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The Japanese label used at the counter.
            pub fn label_ja(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = UnknownCode;

            fn try_from(code: &str) -> Result<Self, UnknownCode> {
                Self::from_code(code).ok_or_else(|| UnknownCode {
                    table: $table,
                    code: code.chars().take(16).collect(),
                    expected: $expected,
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::try_from(code.as_ref()).map_err(serde::de::Error::custom)
            }
        }
    };
}

code_table! {
    /// 002 照会区分: how the person was identified for this result.
    ReferenceClassification, "ReferenceClassification (OQSCD002)", "1, 2" {
        /// 1: My Number card on the card reader.
        MyNumberCard = "1" => "マイナンバーカード",
        /// 2: numbers typed from an insurance card or 資格確認書.
        InsuranceCard = "2" => "被保険者証情報",
    }
}

code_table! {
    /// 003 処理結果区分: the outcome of the whole file (not of one person).
    SegmentOfResult, "SegmentOfResult (OQSCD003)", "1, 2, 9" {
        /// 1: finished normally; per-person outcomes are in the body.
        Normal = "1" => "正常終了",
        /// 2: still being processed.
        InProgress = "2" => "処理中",
        /// 9: the request failed as a whole; `ErrorCode` and `ErrorMessage` say why.
        AbnormalEnd = "9" => "異常終了",
    }
}

code_table! {
    /// 004 処理結果状況: the outcome for one person.
    ProcessingResultStatus, "ProcessingResultStatus (OQSCD004)", "1, 2" {
        /// 1: normal.
        Normal = "1" => "正常終了",
        /// 2: error; `ProcessingResultCode` and `ProcessingResultMessage` say why.
        Error = "2" => "エラー",
    }
}

code_table! {
    /// 006 資格有効性: whether the person is insured.
    QualificationValidity, "QualificationValidity (OQSCD006)", "1–6" {
        /// 1: valid.
        Valid = "1" => "有効",
        /// 2: invalid.
        Invalid = "2" => "無効",
        /// 3: invalid, a newer qualification exists.
        InvalidNewerExists = "3" => "無効（新しい資格あり）",
        /// 4: no matching qualification.
        NoMatch = "4" => "該当資格なし",
        /// 5: several qualifications match.
        MultipleMatches = "5" => "複数該当",
        /// 6: valid but unregistered (medical aid only).
        ValidUnregistered = "6" => "有効（未登録）",
    }
}

impl QualificationValidity {
    /// True for the two codes under which the patient may be treated as insured (1 and 6).
    pub fn is_valid(self) -> bool {
        matches!(self, Self::Valid | Self::ValidUnregistered)
    }
}

code_table! {
    /// 007 性別 (`Sex1`, `Sex2`).
    Sex, "Sex (OQSCD007)", "1, 2, 3" {
        /// 1: male.
        Male = "1" => "男",
        /// 2: female.
        Female = "2" => "女",
        /// 3: not set.
        NotSet = "3" => "未設定",
    }
}

code_table! {
    /// 008 資格喪失事由: why a qualification ended.
    ReasonOfLoss, "ReasonOfLoss (OQSCD008)", "01, 02, 03, 99" {
        /// 01: death.
        Death = "01" => "死亡",
        /// 02: public assistance (生活保護) started.
        PublicAssistanceStarted = "02" => "生活保護受給開始",
        /// 03: another medical insurance was acquired.
        OtherInsuranceAcquired = "03" => "医療保険等の資格取得",
        /// 99: other.
        Other = "99" => "その他",
    }
}

code_table! {
    /// 009 本人・家族の別.
    PersonalFamilyClassification, "PersonalFamilyClassification (OQSCD009)", "1, 2" {
        /// 1: the insured person (本人).
        Insured = "1" => "本人",
        /// 2: a dependent family member (家族).
        Family = "2" => "家族",
    }
}

code_table! {
    /// 010 被保険者証区分: which kind of card or certificate the qualification is.
    InsuredCardClassification, "InsuredCardClassification (OQSCD010)", "01–07, A1" {
        /// 01: insurance card (general).
        General = "01" => "被保険者証（一般）",
        /// 02: insurance card (retired).
        Retired = "02" => "被保険者証（退職）",
        /// 03: short-term insurance card (general).
        ShortTermGeneral = "03" => "短期被保険者証（一般）",
        /// 04: short-term insurance card (retired).
        ShortTermRetired = "04" => "短期被保険者証（退職）",
        /// 05: UNCONFIRMED. Our domain notes list the code without a label; one public
        /// open-source implementation labels it 被保険者資格証明書 (certificate of
        /// qualification), which is what we show until the specification confirms it.
        QualificationCertificate = "05" => "被保険者資格証明書",
        /// 06: special retired insurance card.
        SpecialRetired = "06" => "特例退職被保険者証",
        /// 07: self-defence forces medical card (no information can be retrieved for it).
        SelfDefenseForcesMedicalCard = "07" => "自衛官診療証",
        /// A1: medical aid (医療扶助).
        MedicalAid = "A1" => "医療扶助",
    }
}

code_table! {
    /// 011 限度額適用認定証区分: the kind of copay-limit certificate.
    ///
    /// Not used as a field type: the XML keeps the raw code so that a new code from the
    /// national system cannot make a whole result unreadable. Interpret it with `from_code`.
    LimitCertificateKind, "LimitApplicationCertificateClassification (OQSCD011)", "01, 02, 03" {
        /// 01: 限度額適用認定証.
        LimitApplication = "01" => "限度額適用認定証",
        /// 02: 限度額適用・標準負担額減額認定証.
        LimitApplicationAndStandardReduction = "02" => "限度額適用・標準負担額減額認定証",
        /// 03: 標準負担額減額認定証.
        StandardReduction = "03" => "標準負担額減額認定証",
    }
}

code_table! {
    /// 012 限度額適用認定証適用区分: the copay-limit bracket.
    ///
    /// Not used as a field type, for the same reason as [`LimitCertificateKind`].
    LimitBracket, "LimitApplicationCertificateClassificationFlag (OQSCD012)", "A01–A06, B01–B10" {
        /// A01: ア.
        A01 = "A01" => "ア",
        /// A02: イ.
        A02 = "A02" => "イ",
        /// A03: ウ.
        A03 = "A03" => "ウ",
        /// A04: エ.
        A04 = "A04" => "エ",
        /// A05: オ.
        A05 = "A05" => "オ",
        /// A06: オ（境）.
        A06 = "A06" => "オ（境）",
        /// B01: 現役並みⅢ.
        B01 = "B01" => "現役並みⅢ",
        /// B02: 現役並みⅡ.
        B02 = "B02" => "現役並みⅡ",
        /// B03: 現役並みⅠ.
        B03 = "B03" => "現役並みⅠ",
        /// B04: 一般.
        B04 = "B04" => "一般",
        /// B05: 低所得Ⅱ.
        B05 = "B05" => "低所得Ⅱ",
        /// B06: 低所得Ⅰ.
        B06 = "B06" => "低所得Ⅰ",
        /// B07: 低所得Ⅰ（老福）.
        B07 = "B07" => "低所得Ⅰ（老福）",
        /// B08: 低所得Ⅰ（境）.
        B08 = "B08" => "低所得Ⅰ（境）",
        /// B09: 一般Ⅱ.
        B09 = "B09" => "一般Ⅱ",
        /// B10: 一般Ⅰ.
        B10 = "B10" => "一般Ⅰ",
    }
}

code_table! {
    /// 013 特定疾病療養受療証認定疾病区分.
    ///
    /// Not used as a field type, for the same reason as [`LimitCertificateKind`].
    SpecificDiseaseCategory, "SpecificDiseasesDiseaseCategory (OQSCD013)", "1, 2, 3" {
        /// 1: chronic renal failure requiring dialysis.
        Dialysis = "1" => "人工透析を必要とする慢性腎不全",
        /// 2: congenital coagulation factor disorder (factor VIII, IX).
        CongenitalCoagulationDisorder = "2" => "先天性血液凝固因子障害",
        /// 3: HIV infection caused by blood coagulation factor products.
        HivFromBloodProducts = "3" => "血液凝固因子製剤の投与に起因するHIV感染症",
    }
}

code_table! {
    /// 016 同意フラグ: the state of a consent given on the card reader.
    ConsentStatus, "consent flag (OQSCD016)", "0, 1, 2, 3" {
        /// 0: no consent.
        NotGiven = "0" => "同意なし",
        /// 1: consent given.
        Given = "1" => "同意あり",
        /// 2: consent expired.
        Expired = "2" => "同意有効期限切れ",
        /// 3: consent hard to obtain (emergency care).
        HardToObtain = "3" => "同意取得困難",
    }
}

code_table! {
    /// 017 処方箋発行形態: the prescription form the patient chose.
    PrescriptionIssueSelect, "PrescriptionIssueSelect (OQSCD017)", "1, 2" {
        /// 1: electronic prescription.
        Electronic = "1" => "電子処方箋",
        /// 2: paper prescription.
        Paper = "2" => "紙の処方箋",
    }
}

code_table! {
    /// 文字コード識別: the character set the terminal says it used.
    ///
    /// UNCONFIRMED: most sources give 0 = UTF-8, 1 = Shift_JIS; one gives 1/2. We follow the
    /// majority. The XML reader never trusts this field to decode a file: the XML declaration
    /// decides (see [`crate::xml`]), so a wrong guess here only mislabels, it cannot garble.
    CharacterCodeIdentifier, "CharacterCodeIdentifier", "0, 1" {
        /// 0: UTF-8.
        Utf8 = "0" => "UTF-8",
        /// 1: Shift_JIS.
        ShiftJis = "1" => "Shift_JIS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! check_table {
        ($t:ty) => {
            for v in <$t>::ALL {
                assert_eq!(<$t>::from_code(v.code()), Some(*v));
                assert_eq!(<$t>::try_from(v.code()), Ok(*v));
                assert!(!v.label_ja().is_empty());
                assert_eq!(v.to_string(), v.code());
                let json = format!("\"{}\"", v.code());
                assert_eq!(serde_json::to_string(v).unwrap(), json);
                assert_eq!(serde_json::from_str::<$t>(&json).unwrap(), *v);
            }
            assert_eq!(<$t>::from_code("x"), None);
            assert!(<$t>::try_from("").is_err());
            assert!(serde_json::from_str::<$t>("\"zz\"").is_err());
        };
    }

    #[test]
    fn every_table_round_trips() {
        check_table!(ReferenceClassification);
        check_table!(SegmentOfResult);
        check_table!(ProcessingResultStatus);
        check_table!(QualificationValidity);
        check_table!(Sex);
        check_table!(ReasonOfLoss);
        check_table!(PersonalFamilyClassification);
        check_table!(InsuredCardClassification);
        check_table!(LimitCertificateKind);
        check_table!(LimitBracket);
        check_table!(SpecificDiseaseCategory);
        check_table!(ConsentStatus);
        check_table!(PrescriptionIssueSelect);
        check_table!(CharacterCodeIdentifier);
    }

    #[test]
    fn documented_codes() {
        assert_eq!(
            SegmentOfResult::from_code("9"),
            Some(SegmentOfResult::AbnormalEnd)
        );
        assert_eq!(SegmentOfResult::from_code("3"), None);
        assert_eq!(ReasonOfLoss::from_code("1"), None, "codes are two digits");
        assert_eq!(
            InsuredCardClassification::from_code("A1"),
            Some(InsuredCardClassification::MedicalAid)
        );
        assert_eq!(
            ConsentStatus::from_code("3"),
            Some(ConsentStatus::HardToObtain)
        );
        assert_eq!(CharacterCodeIdentifier::ShiftJis.code(), "1");
        assert_eq!(LimitBracket::ALL.len(), 16);
    }

    #[test]
    fn validity() {
        let valid: Vec<_> = QualificationValidity::ALL
            .iter()
            .filter(|v| v.is_valid())
            .map(|v| v.code())
            .collect();
        assert_eq!(valid, ["1", "6"]);
    }

    #[test]
    fn unknown_code_message_is_short_and_specific() {
        let long = "9".repeat(1000);
        let err = Sex::try_from(long.as_str()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("Sex (OQSCD007): unknown code"), "{msg}");
        assert!(msg.len() < 120, "{msg}");
    }
}
