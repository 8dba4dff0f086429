//! Specific health checkup results (特定健診情報): the request `TKKsiquc01req` and its result
//! `TKKsiquc01res`, in the shapes of `shared/domain/onshi.md` §3 and
//! `shared/onshi-corpus/TKKsiquc01*.xml`.
//!
//! Request: the shared header ([`InfoRequestHeader`]); a body of `FileCategory` (1 PDF, 2 XML)
//! and the two codes real clients also send ([`InfoRequestFlags`]). `StartDate` / `EndDate`
//! are read and written when present (UNCONFIRMED for checkups: the corpus request has none,
//! and the agent sends none).
//!
//! Result: `ResultCode` / `MessageContents` ([`InfoOutcome`]) and `QualificationsInfo` in the
//! header; in the body, one `SpecificHealthCheckupInfo` per checkup (`EffectiveTime`) with
//! `HealthCheckupResultAndQuestionInfos/HealthCheckupResultAndQuestionInfo` items (`ItemCode`,
//! `ItemName`, `DataType`, `DataValue`, `Unit`, `Oid`, `DataValueName`). Items are read nested
//! or flat; unknown elements are warnings ([`CheckupInfoResult::read_xml`]), never refusals.

use time::Date;

use super::info::{
    BODY, HEADER, InfoOutcome, InfoPatient, InfoRequestFlags, InfoRequestHeader, Parts,
    PatientNames, ROOT, YearMonth, code, opt_month, read_root, req_file_category,
};
use super::read::{Doc, Node, Warned};
use super::write::Out;
use super::{FileCategory, XmlEncoding, XmlError, XmlLimits};
use crate::ids::parse_yyyymmdd;

/// 特定健診情報照会要求 (`TKKsiquc01req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckupInfoRequest {
    pub header: InfoRequestHeader,
    pub start_month: Option<YearMonth>,
    pub end_month: Option<YearMonth>,
    pub file_category: FileCategory,
    pub flags: InfoRequestFlags,
}

/// One result or question (`HealthCheckupResultAndQuestionInfo`). Every value as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckupItem {
    /// `ItemCode` (e.g. 9N001000000000001, height).
    pub item_code: Option<String>,
    /// `ItemName`.
    pub item_name: Option<String>,
    /// `DataType` (e.g. PQ, a physical quantity).
    pub data_type: Option<String>,
    /// `DataValue`: a number, or a code whose name is `data_value_name`.
    pub data_value: Option<String>,
    /// `Unit`.
    pub unit: Option<String>,
    /// `Oid`: the code system of the item.
    pub oid: Option<String>,
    /// `DataValueName`: the name of a coded value.
    pub data_value_name: Option<String>,
}

/// One checkup (`SpecificHealthCheckupInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkup {
    /// `EffectiveTime`, as written (`yyyyMMdd` in the corpus; see [`Checkup::date`]).
    pub effective_time: Option<String>,
    pub items: Vec<CheckupItem>,
}

impl Checkup {
    /// The day of the checkup: the first 8 digits of `EffectiveTime`, when they are a date.
    pub fn date(&self) -> Option<Date> {
        let t = self.effective_time.as_deref()?.trim();
        parse_yyyymmdd(t.get(..8)?)
    }
}

/// 特定健診情報照会結果 (`TKKsiquc01res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckupInfoResult {
    pub outcome: InfoOutcome,
    /// `QualificationsInfo`.
    pub patient: Option<InfoPatient>,
    /// Empty on a refusal or when there is no checkup on record.
    pub checkups: Vec<Checkup>,
}

impl CheckupInfoResult {
    /// A result with nothing but its outcome (a refusal).
    pub fn refused(outcome: InfoOutcome) -> Self {
        CheckupInfoResult {
            outcome,
            patient: None,
            checkups: Vec::new(),
        }
    }
}

const QUALIFICATIONS_INFO: PatientNames = PatientNames {
    block: "QualificationsInfo",
    name: "Name",
    kana: "KanasName",
    birth: "Birthday",
    gender: "AdministrativeGenderCode",
};

const CHECKUP: &str = "SpecificHealthCheckupInfo";
const ITEMS: &str = "HealthCheckupResultAndQuestionInfos";
const ITEM: &str = "HealthCheckupResultAndQuestionInfo";

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
        self.flags.write(&mut out);
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
            flags: InfoRequestFlags::read(&body)?,
        })
    }
}

impl CheckupInfoResult {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        self.outcome.write(&mut out);
        if let Some(p) = &self.patient {
            p.write(&mut out, &QUALIFICATIONS_INFO);
        }
        out.close(HEADER);
        out.open(BODY);
        for checkup in &self.checkups {
            out.open(CHECKUP);
            out.opt("EffectiveTime", checkup.effective_time.as_deref());
            if !checkup.items.is_empty() {
                out.open(ITEMS);
                for item in &checkup.items {
                    out.open(ITEM);
                    out.opt("ItemCode", item.item_code.as_deref());
                    out.opt("ItemName", item.item_name.as_deref());
                    out.opt("DataType", item.data_type.as_deref());
                    out.opt("DataValue", item.data_value.as_deref());
                    out.opt("Unit", item.unit.as_deref());
                    out.opt("Oid", item.oid.as_deref());
                    out.opt("DataValueName", item.data_value_name.as_deref());
                    out.close(ITEM);
                }
                out.close(ITEMS);
            }
            out.close(CHECKUP);
        }
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
        let header = root.envelope(HEADER)?;
        let body = root.opt_envelope(BODY)?;
        let parts = Parts {
            header: &header,
            body: body.as_ref(),
            root: &root,
        };
        let outcome = InfoOutcome::read(&parts)?;
        let patient = InfoPatient::read(&parts, &QUALIFICATIONS_INFO)?;
        let mut checkups = Vec::new();
        if let Some(body) = &body {
            for c in body.children(CHECKUP) {
                let mut items = Vec::new();
                for item in c.list(ITEMS, ITEM) {
                    let i = item.node(&c);
                    items.push(CheckupItem {
                        item_code: code(&i, "ItemCode")?,
                        item_name: i.opt_string("ItemName")?,
                        data_type: code(&i, "DataType")?,
                        data_value: i.opt_string("DataValue")?,
                        unit: i.opt_string("Unit")?,
                        oid: code(&i, "Oid")?,
                        data_value_name: i.opt_string("DataValueName")?,
                    });
                }
                checkups.push(Checkup {
                    effective_time: code(&c, "EffectiveTime")?,
                    items,
                });
            }
        }
        Ok(doc.finish(CheckupInfoResult {
            outcome,
            patient,
            checkups,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode};
    use crate::xml::ResultCode;
    use crate::xml::drug::tests::text;
    use proptest::prelude::*;
    use time::macros::date;

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
        CheckupInfoResult {
            outcome: InfoOutcome::success(),
            patient: Some(InfoPatient {
                name: Some("見本　太郎".into()),
                kana_name: Some("ﾐﾎﾝ ﾀﾛｳ".into()),
                birth: Some(date!(1960 - 02 - 29)),
                gender_code: Some("1".into()),
            }),
            checkups: vec![Checkup {
                effective_time: Some("20250612".into()),
                items: vec![
                    CheckupItem {
                        item_code: Some("9N001000000000001".into()),
                        item_name: Some("身長".into()),
                        data_type: Some("PQ".into()),
                        data_value: Some("168.2".into()),
                        unit: Some("cm".into()),
                        oid: Some("1.2.392.200119.6.1005".into()),
                        data_value_name: None,
                    },
                    CheckupItem {
                        item_code: Some("3D046000001906202".into()),
                        item_name: Some("HbA1c（NGSP）".into()),
                        data_value: Some("5.6".into()),
                        unit: Some("%".into()),
                        ..CheckupItem::default()
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
            file_category: FileCategory::XML,
            flags: InfoRequestFlags::as_clients_send(),
        };
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            assert_eq!(
                CheckupInfoRequest::from_xml(&request.to_xml(enc)).unwrap(),
                request
            );
        }
        request.start_month = YearMonth::parse("202104");
        request.end_month = YearMonth::parse("202604");
        request.file_category = FileCategory::PDF;
        request.flags = InfoRequestFlags::default();
        assert_eq!(
            CheckupInfoRequest::from_xml(&request.to_xml(XmlEncoding::Utf8)).unwrap(),
            request
        );
    }

    #[test]
    fn results_round_trip_in_both_encodings() {
        let result = sample_result();
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let xml = result.to_xml(enc);
            assert_eq!(CheckupInfoResult::from_xml(&xml).unwrap(), result);
        }
        assert_eq!(result.checkups[0].date(), Some(date!(2025 - 06 - 12)));
        let refused = CheckupInfoResult::refused(InfoOutcome {
            result_code: ResultCode::Other("9".into()),
            message_contents: Some("x".into()),
        });
        assert_eq!(
            CheckupInfoResult::from_xml(&refused.to_xml(XmlEncoding::Utf8)).unwrap(),
            refused
        );
        let text = String::from_utf8(result.to_xml(XmlEncoding::Utf8)).unwrap();
        let bad = text.replace("<Birthday>19600229", "<Birthday>19610229");
        let read = CheckupInfoResult::read_xml(bad.as_bytes()).unwrap();
        assert_eq!(read.value.patient.unwrap().birth, None);
        assert!(
            read.warnings[0]
                .path
                .ends_with("QualificationsInfo/Birthday"),
            "{:?}",
            read.warnings
        );
    }

    #[test]
    fn items_read_flat_and_result_code_in_the_body() {
        let xml = r#"<XmlMsg><MessageHeader/><MessageBody>
<SpecificHealthCheckupInfo><EffectiveTime>20240501093000</EffectiveTime>
<HealthCheckupResultAndQuestionInfo><ItemCode>X</ItemCode></HealthCheckupResultAndQuestionInfo>
</SpecificHealthCheckupInfo><ResultCode>2</ResultCode><MessageContents>m</MessageContents>
</MessageBody></XmlMsg>"#;
        let r = CheckupInfoResult::from_xml(xml.as_bytes()).unwrap();
        assert_eq!(r.outcome.result_code, ResultCode::Other("2".into()));
        assert_eq!(r.outcome.message_contents.as_deref(), Some("m"));
        assert_eq!(r.checkups[0].items[0].item_code.as_deref(), Some("X"));
        assert_eq!(r.checkups[0].date(), Some(date!(2024 - 05 - 01)));
        assert_eq!(r.patient, None);
    }

    fn item() -> impl Strategy<Value = CheckupItem> {
        ((text(), text(), text(), text()), (text(), text(), text())).prop_map(
            |((code, name, data_type, value), (unit, oid, value_name))| CheckupItem {
                item_code: code.map(|s| s.trim().to_owned()),
                item_name: name,
                data_type: data_type.map(|s| s.trim().to_owned()),
                data_value: value,
                unit,
                oid: oid.map(|s| s.trim().to_owned()),
                data_value_name: value_name,
            },
        )
    }

    proptest! {
        #[test]
        fn written_results_read_back_equal(
            checkups in proptest::collection::vec(
                (proptest::option::of("[0-9]{8}"), proptest::collection::vec(item(), 0..4)), 0..4),
            name in text(),
            kana in text(),
            shift_jis in any::<bool>(),
        ) {
            let result = CheckupInfoResult {
                outcome: InfoOutcome::success(),
                patient: Some(InfoPatient { name, kana_name: kana, birth: None, gender_code: None }),
                checkups: checkups
                    .into_iter()
                    .map(|(effective_time, items)| Checkup { effective_time, items })
                    .collect(),
            };
            let enc = if shift_jis { XmlEncoding::ShiftJis } else { XmlEncoding::Utf8 };
            prop_assert_eq!(CheckupInfoResult::from_xml(&result.to_xml(enc)).unwrap(), result);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
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
