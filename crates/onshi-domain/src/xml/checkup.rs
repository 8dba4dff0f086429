//! Specific health checkup results (特定健診情報): the request `TKKsiquc01req` and its result
//! `TKKsiquc01res`.
//!
//! Request: the shared header ([`InfoRequestHeader`]) and a body with `FileCategory`
//! (2 = XML) and optionally `StartDate` / `EndDate` (`yyyyMM`; UNCONFIRMED whether the checkup
//! request has a period: the domain document names one for drugs only). Result: the shared
//! result header and the checkups with their items (`ItemCode`, `ItemName`, `DataValue`,
//! `Unit`).
//!
//! UNCONFIRMED structure (the leaf names are the real ones, the containers are ours): the
//! result body is `CheckupInfoList/CheckupInfo[]` (`Date` yyyyMMdd, the day of the checkup;
//! optional `InstitutionName`), each with `ItemInfo[]`.

use time::Date;

use super::info::{
    BODY, HEADER, InfoRequestHeader, InfoResultHeader, ROOT, YearMonth, opt_month, read_root,
    req_file_category,
};
use super::read::Node;
use super::write::Out;
use super::{FileCategory, XmlEncoding, XmlError, XmlLimits};

/// 特定健診情報照会要求 (`TKKsiquc01req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckupInfoRequest {
    pub header: InfoRequestHeader,
    pub start_month: Option<YearMonth>,
    pub end_month: Option<YearMonth>,
    pub file_category: FileCategory,
}

/// One item of a checkup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckupItem {
    /// `ItemCode`: the item's code (JLAC10-style in the simulator).
    pub item_code: Option<String>,
    /// `ItemName`.
    pub item_name: Option<String>,
    /// `DataValue`, as written (numbers or codes).
    pub data_value: Option<String>,
    /// `Unit`.
    pub unit: Option<String>,
}

/// One checkup (`CheckupInfo`, UNCONFIRMED container name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkup {
    /// `Date`: the day of the checkup.
    pub date: Date,
    /// `InstitutionName` (UNCONFIRMED).
    pub institution_name: Option<String>,
    pub items: Vec<CheckupItem>,
}

/// 特定健診情報照会結果 (`TKKsiquc01res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckupInfoResult {
    pub header: InfoResultHeader,
    /// Empty when the file ends abnormally or there is no checkup on record.
    pub checkups: Vec<Checkup>,
}

const LIST: &str = "CheckupInfoList";
const CHECKUP: &str = "CheckupInfo";
const ITEM: &str = "ItemInfo";

impl CheckupInfoRequest {
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
        let header = InfoRequestHeader::read(&root.req_child(HEADER)?)?;
        let body = root.req_child(BODY)?;
        Ok(CheckupInfoRequest {
            header,
            start_month: opt_month(&body, "StartDate")?,
            end_month: opt_month(&body, "EndDate")?,
            file_category: req_file_category(&body)?,
        })
    }
}

impl CheckupInfoResult {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        self.header.write(&mut out);
        out.open(BODY);
        if !self.checkups.is_empty() {
            out.open(LIST);
            for checkup in &self.checkups {
                out.open(CHECKUP);
                out.date("Date", checkup.date);
                out.opt("InstitutionName", checkup.institution_name.as_deref());
                for item in &checkup.items {
                    out.open(ITEM);
                    out.opt("ItemCode", item.item_code.as_deref());
                    out.opt("ItemName", item.item_name.as_deref());
                    out.opt("DataValue", item.data_value.as_deref());
                    out.opt("Unit", item.unit.as_deref());
                    out.close(ITEM);
                }
                out.close(CHECKUP);
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
        let header = InfoResultHeader::read(&root.req_child(HEADER)?, encoding)?;
        let mut checkups = Vec::new();
        if let Some(body) = root.child(BODY)?
            && let Some(list) = body.child(LIST)?
        {
            for c in list.children(CHECKUP) {
                let mut items = Vec::new();
                for i in c.children(ITEM) {
                    items.push(CheckupItem {
                        item_code: i.opt_string("ItemCode")?,
                        item_name: i.opt_string("ItemName")?,
                        data_value: i.opt_string("DataValue")?,
                        unit: i.opt_string("Unit")?,
                    });
                }
                checkups.push(Checkup {
                    date: c.req_text("Date")?.date()?,
                    institution_name: c.opt_string("InstitutionName")?,
                    items,
                });
            }
        }
        Ok(CheckupInfoResult { header, checkups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{CharacterCodeIdentifier, SegmentOfResult};
    use crate::ids::{InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode};
    use time::macros::{date, datetime};

    fn header() -> InfoRequestHeader {
        InfoRequestHeader {
            medical_institution_code: MedicalInstitutionCode::parse("3410712362").unwrap(),
            insurer_number: InsurerNumber::parse("39131156").unwrap(),
            insurance_card_symbol: None,
            insured_person_identification_number: InsuredIdentificationNumber::parse("77").unwrap(),
            branch_number: None,
            arbitrary_file_identifier: None,
        }
    }

    fn sample_result() -> CheckupInfoResult {
        let h = header();
        CheckupInfoResult {
            header: InfoResultHeader {
                process_execution_time: datetime!(2026-04-01 10:15:30),
                medical_institution_code: h.medical_institution_code,
                insurer_number: Some(h.insurer_number),
                insurance_card_symbol: None,
                insured_person_identification_number: Some(h.insured_person_identification_number),
                branch_number: None,
                arbitrary_file_identifier: Some("x<&>y".into()),
                segment_of_result: SegmentOfResult::Normal,
                error_code: None,
                error_message: None,
                character_code_identifier: CharacterCodeIdentifier::Utf8,
            },
            checkups: vec![Checkup {
                date: date!(2025 - 06 - 12),
                institution_name: None,
                items: vec![
                    CheckupItem {
                        item_code: Some("9N001000000000001".into()),
                        item_name: Some("身長".into()),
                        data_value: Some("168.2".into()),
                        unit: Some("cm".into()),
                    },
                    CheckupItem {
                        item_code: Some("3D046000001906202".into()),
                        item_name: Some("HbA1c（NGSP）".into()),
                        data_value: Some("5.6".into()),
                        unit: Some("%".into()),
                    },
                ],
            }],
        }
    }

    #[test]
    fn requests_round_trip_with_and_without_a_period() {
        let mut request = CheckupInfoRequest {
            header: header(),
            start_month: None,
            end_month: None,
            file_category: FileCategory::Xml,
        };
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            assert_eq!(
                CheckupInfoRequest::from_xml(&request.to_xml(enc)).unwrap(),
                request
            );
        }
        request.start_month = YearMonth::parse("202104");
        request.end_month = YearMonth::parse("202604");
        request.file_category = FileCategory::Pdf;
        assert_eq!(
            CheckupInfoRequest::from_xml(&request.to_xml(XmlEncoding::Utf8)).unwrap(),
            request
        );
    }

    #[test]
    fn results_round_trip_in_both_encodings() {
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let mut result = sample_result();
            result.header.character_code_identifier = match enc {
                XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
                XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
            };
            let xml = result.to_xml(enc);
            assert_eq!(CheckupInfoResult::from_xml(&xml).unwrap(), result);
        }
        let text = String::from_utf8(sample_result().to_xml(XmlEncoding::Utf8)).unwrap();
        assert!(
            text.contains("<ItemCode>9N001000000000001</ItemCode>"),
            "{text}"
        );
        assert!(text.contains("<DataValue>168.2</DataValue>"), "{text}");
        let bad = text.replace("<Date>20250612", "<Date>20251312");
        assert!(matches!(
            CheckupInfoResult::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidValue { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = CheckupInfoRequest::from_xml(&bytes);
            let _ = CheckupInfoResult::from_xml(&bytes);
        }

        #[test]
        fn damaged_results_never_panic(cut in 0usize..2000, junk in "[<>/a-zA-Z0-9&;#]{0,8}") {
            let xml = sample_result().to_xml(XmlEncoding::ShiftJis);
            let cut = cut.min(xml.len());
            let mut damaged = xml[..cut].to_vec();
            damaged.extend_from_slice(junk.as_bytes());
            damaged.extend_from_slice(&xml[cut..]);
            let _ = CheckupInfoResult::from_xml(&damaged);
            let _ = CheckupInfoRequest::from_xml(&damaged);
        }
    }
}
