//! Drug information (薬剤情報): the request `YZKsiquc01req` and its result `YZKsiquc01res`.
//!
//! Request: the shared header ([`InfoRequestHeader`]) and a body of `StartDate` / `EndDate`
//! (`yyyyMM`) and `FileCategory` (2 = XML). Result: the shared result header and, in the body,
//! the months and dispensing dates with their drugs (`DrugN` name, `IngreN` ingredient, `Qua1`
//! quantity, `Unit`, `UsageN` directions, `Times` days or times).
//!
//! UNCONFIRMED structure (the leaf names are the real ones, the containers are ours): the
//! request body's leaves sit directly in `MessageBody`; the result body is
//! `DrugInfoList/MonthInfo[]` (`Month` yyyyMM), each with `DateInfo[]` (`Date` yyyyMMdd,
//! optional `InstitutionName`), each with `DrugInfo[]`. Reading is order-independent and
//! ignores elements we do not model, so a richer real file still reads.

use time::Date;

use super::info::{
    BODY, InfoRequestHeader, InfoResultHeader, ROOT, YearMonth, opt_month, read_root,
    req_file_category, req_month,
};
use super::read::Node;
use super::write::Out;
use super::{FileCategory, XmlEncoding, XmlError, XmlLimits};

/// 薬剤情報照会要求 (`YZKsiquc01req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugInfoRequest {
    pub header: InfoRequestHeader,
    /// `StartDate`: the first month asked for.
    pub start_month: YearMonth,
    /// `EndDate`: the last month asked for.
    pub end_month: YearMonth,
    pub file_category: FileCategory,
}

/// One drug dispensed or prescribed on a day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrugEntry {
    /// `DrugN`: the drug's name.
    pub drug_name: Option<String>,
    /// `IngreN`: its ingredient.
    pub ingredient_name: Option<String>,
    /// `Qua1`: the quantity per day or per use, as written.
    pub quantity: Option<String>,
    /// `Unit`.
    pub unit: Option<String>,
    /// `UsageN`: the directions.
    pub usage: Option<String>,
    /// `Times`: days supplied (or number of uses), as written.
    pub times: Option<String>,
}

/// A day with drugs (`DateInfo`, UNCONFIRMED container name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugDay {
    /// `Date`.
    pub date: Date,
    /// `InstitutionName` (UNCONFIRMED): where it was dispensed.
    pub institution_name: Option<String>,
    pub drugs: Vec<DrugEntry>,
}

/// A month with days (`MonthInfo`, UNCONFIRMED container name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugMonth {
    /// `Month`.
    pub month: YearMonth,
    pub days: Vec<DrugDay>,
}

/// 薬剤情報照会結果 (`YZKsiquc01res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugInfoResult {
    pub header: InfoResultHeader,
    /// `StartDate` / `EndDate` echoed (UNCONFIRMED whether the real result echoes them).
    pub start_month: Option<YearMonth>,
    pub end_month: Option<YearMonth>,
    /// Empty when the file ends abnormally or nothing was dispensed in the period.
    pub months: Vec<DrugMonth>,
}

const LIST: &str = "DrugInfoList";
const MONTH: &str = "MonthInfo";
const DAY: &str = "DateInfo";
const DRUG: &str = "DrugInfo";

impl DrugInfoRequest {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        self.header.write(&mut out);
        out.open(BODY);
        out.leaf("StartDate", &self.start_month.to_string());
        out.leaf("EndDate", &self.end_month.to_string());
        out.leaf("FileCategory", self.file_category.code());
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
        Self::from_xml_with_limits(bytes, &XmlLimits::DEFAULT)
    }

    pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        let (root, _) = read_root(bytes, limits)?;
        let root = Node::root(&root);
        let header = InfoRequestHeader::read(&root.req_child(super::info::HEADER)?)?;
        let body = root.req_child(BODY)?;
        Ok(DrugInfoRequest {
            header,
            start_month: req_month(&body, "StartDate")?,
            end_month: req_month(&body, "EndDate")?,
            file_category: req_file_category(&body)?,
        })
    }
}

impl DrugInfoResult {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        self.header.write(&mut out);
        out.open(BODY);
        out.opt(
            "StartDate",
            self.start_month.map(|m| m.to_string()).as_deref(),
        );
        out.opt("EndDate", self.end_month.map(|m| m.to_string()).as_deref());
        if !self.months.is_empty() {
            out.open(LIST);
            for month in &self.months {
                out.open(MONTH);
                out.leaf("Month", &month.month.to_string());
                for day in &month.days {
                    out.open(DAY);
                    out.date("Date", day.date);
                    out.opt("InstitutionName", day.institution_name.as_deref());
                    for drug in &day.drugs {
                        out.open(DRUG);
                        out.opt("DrugN", drug.drug_name.as_deref());
                        out.opt("IngreN", drug.ingredient_name.as_deref());
                        out.opt("Qua1", drug.quantity.as_deref());
                        out.opt("Unit", drug.unit.as_deref());
                        out.opt("UsageN", drug.usage.as_deref());
                        out.opt("Times", drug.times.as_deref());
                        out.close(DRUG);
                    }
                    out.close(DAY);
                }
                out.close(MONTH);
            }
            out.close(LIST);
        }
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
        Self::from_xml_with_limits(bytes, &XmlLimits::DEFAULT)
    }

    pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        let (root, encoding) = read_root(bytes, limits)?;
        let root = Node::root(&root);
        let header = InfoResultHeader::read(&root.req_child(super::info::HEADER)?, encoding)?;
        let mut result = DrugInfoResult {
            header,
            start_month: None,
            end_month: None,
            months: Vec::new(),
        };
        let Some(body) = root.child(BODY)? else {
            return Ok(result);
        };
        result.start_month = opt_month(&body, "StartDate")?;
        result.end_month = opt_month(&body, "EndDate")?;
        if let Some(list) = body.child(LIST)? {
            for m in list.children(MONTH) {
                let mut days = Vec::new();
                for d in m.children(DAY) {
                    let mut drugs = Vec::new();
                    for x in d.children(DRUG) {
                        drugs.push(DrugEntry {
                            drug_name: x.opt_string("DrugN")?,
                            ingredient_name: x.opt_string("IngreN")?,
                            quantity: x.opt_string("Qua1")?,
                            unit: x.opt_string("Unit")?,
                            usage: x.opt_string("UsageN")?,
                            times: x.opt_string("Times")?,
                        });
                    }
                    days.push(DrugDay {
                        date: d.req_text("Date")?.date()?,
                        institution_name: d.opt_string("InstitutionName")?,
                        drugs,
                    });
                }
                result.months.push(DrugMonth {
                    month: req_month(&m, "Month")?,
                    days,
                });
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{CharacterCodeIdentifier, SegmentOfResult};
    use crate::ids::{
        InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
        MedicalInstitutionCode,
    };
    use time::macros::{date, datetime};

    fn header() -> InfoRequestHeader {
        InfoRequestHeader {
            medical_institution_code: MedicalInstitutionCode::parse("3410712362").unwrap(),
            insurer_number: InsurerNumber::parse("138156").unwrap(),
            insurance_card_symbol: Some(InsuredCardSymbol::parse("12").unwrap()),
            insured_person_identification_number: InsuredIdentificationNumber::parse("1234")
                .unwrap(),
            branch_number: Some(InsuredBranchNumber::parse("01").unwrap()),
            arbitrary_file_identifier: Some("2026040100001".into()),
        }
    }

    pub(crate) fn sample_result() -> DrugInfoResult {
        let h = header();
        DrugInfoResult {
            header: InfoResultHeader {
                process_execution_time: datetime!(2026-04-01 10:15:30),
                medical_institution_code: h.medical_institution_code,
                insurer_number: Some(h.insurer_number),
                insurance_card_symbol: h.insurance_card_symbol,
                insured_person_identification_number: Some(h.insured_person_identification_number),
                branch_number: h.branch_number,
                arbitrary_file_identifier: h.arbitrary_file_identifier,
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                character_code_identifier: CharacterCodeIdentifier::Utf8,
            },
            start_month: YearMonth::parse("202304"),
            end_month: YearMonth::parse("202604"),
            months: vec![DrugMonth {
                month: YearMonth::parse("202603").unwrap(),
                days: vec![DrugDay {
                    date: date!(2026 - 03 - 14),
                    institution_name: Some("みどり薬局 & 本店".into()),
                    drugs: vec![
                        DrugEntry {
                            drug_name: Some("アムロジピン錠５ｍｇ".into()),
                            ingredient_name: Some("アムロジピンベシル酸塩".into()),
                            quantity: Some("1".into()),
                            unit: Some("錠".into()),
                            usage: Some("1日1回朝食後".into()),
                            times: Some("28".into()),
                        },
                        DrugEntry {
                            drug_name: Some("ロキソプロフェンＮａ錠６０ｍｇ".into()),
                            ..DrugEntry::default()
                        },
                    ],
                }],
            }],
        }
    }

    #[test]
    fn requests_round_trip_in_both_encodings() {
        let request = DrugInfoRequest {
            header: header(),
            start_month: YearMonth::parse("202304").unwrap(),
            end_month: YearMonth::parse("202604").unwrap(),
            file_category: FileCategory::Xml,
        };
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let xml = request.to_xml(enc);
            assert_eq!(DrugInfoRequest::from_xml(&xml).unwrap(), request);
        }
        let text = String::from_utf8(request.to_xml(XmlEncoding::Utf8)).unwrap();
        assert!(
            text.contains("<InsurerNumber>  138156</InsurerNumber>"),
            "{text}"
        );
        assert!(text.contains("<StartDate>202304</StartDate>"), "{text}");
        assert!(text.contains("<FileCategory>2</FileCategory>"), "{text}");
        assert!(
            text.contains(
                "<InsuredPersonIdentificationNumber>1234</InsuredPersonIdentificationNumber>"
            ),
            "{text}"
        );
    }

    #[test]
    fn results_round_trip_in_both_encodings() {
        let result = sample_result();
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let mut expected = result.clone();
            expected.header.character_code_identifier = match enc {
                XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
                XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
            };
            let xml = expected.to_xml(enc);
            assert_eq!(DrugInfoResult::from_xml(&xml).unwrap(), expected);
        }
        // An abnormal end without a body reads too.
        let mut refused = result;
        refused.header.segment_of_result = SegmentOfResult::AbnormalEnd;
        refused.header.error_code = Some("SIM-E0401".into());
        refused.start_month = None;
        refused.end_month = None;
        refused.months.clear();
        let xml = refused.to_xml(XmlEncoding::Utf8);
        assert_eq!(DrugInfoResult::from_xml(&xml).unwrap(), refused);
    }

    #[test]
    fn bad_values_name_their_element() {
        let request = DrugInfoRequest {
            header: header(),
            start_month: YearMonth::parse("202304").unwrap(),
            end_month: YearMonth::parse("202604").unwrap(),
            file_category: FileCategory::Xml,
        };
        let text = String::from_utf8(request.to_xml(XmlEncoding::Utf8)).unwrap();
        let bad = text.replace("<StartDate>202304", "<StartDate>202313");
        assert!(matches!(
            DrugInfoRequest::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidValue { path, .. }) if path.ends_with("MessageBody/StartDate")
        ));
        let bad = text.replace("<FileCategory>2", "<FileCategory>7");
        assert!(matches!(
            DrugInfoRequest::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidValue { .. })
        ));
        let missing = text.replace("<EndDate>202604</EndDate>", "");
        assert!(matches!(
            DrugInfoRequest::from_xml(missing.as_bytes()),
            Err(XmlError::MissingElement { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = DrugInfoRequest::from_xml(&bytes);
            let _ = DrugInfoResult::from_xml(&bytes);
        }

        #[test]
        fn damaged_results_never_panic(cut in 0usize..2000, junk in "[<>/a-zA-Z0-9&;#]{0,8}") {
            let xml = sample_result().to_xml(XmlEncoding::Utf8);
            let cut = cut.min(xml.len());
            let mut damaged = xml[..cut].to_vec();
            damaged.extend_from_slice(junk.as_bytes());
            damaged.extend_from_slice(&xml[cut..]);
            let _ = DrugInfoResult::from_xml(&damaged);
            let _ = DrugInfoRequest::from_xml(&damaged);
        }
    }
}
