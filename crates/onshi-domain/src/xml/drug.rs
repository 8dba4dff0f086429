//! Drug information (薬剤情報): the request `YZKsiquc01req` and its result `YZKsiquc01res`,
//! in the shapes of `shared/domain/onshi.md` §3 and `shared/onshi-corpus/YZKsiquc01*.xml`.
//!
//! Request: the shared header ([`InfoRequestHeader`]); a body of `StartDate` / `EndDate`
//! (`yyyyMM`), `FileCategory` (1–4, [`FileCategory`]), `PrDiInfClassification` and
//! `MedicalTreatmentFlag` ([`InfoRequestFlags`]).
//!
//! Result: `ResultCode` / `MessageContents` ([`InfoOutcome`]) and `QuaInf` in the header;
//! in the body, one `MeTrMonthInf` per institution and month, each with
//! `DiDateInfs/DiDateInf` (a day: `DiDate`, `PrDate`, and its `DrugInfs/DrugInf` and
//! `MeTrInfs/MeTrInf`), then `CzDiInf/CzDiMonthInf` (dispensing) and `ShPrInf/ShPrMonthInf`.
//! The three lists have the same shape under different names ([`ListNames`]).
//!
//! Certain (corpus): `MeTrMonthInf` directly in `MessageBody`; `DrugInfs` inside `DiDateInf`;
//! the `Cz…` names `CzDiOrg`, `CzDiMonth`, `CzDiDateInfs/CzDiDateInf/CzDiDate`,
//! `CzDrugInfs/CzDrugInf`, `CzDrugN`, `CzQua1`, `CzUnit`, `CzTimes`.
//! UNCONFIRMED: the other `Cz…` names and every `Sh…` name below each container (built by
//! analogy), the content of `MeTrInf` (kept as name/text pairs), and whether `DrugInfs` can
//! also sit directly in the month (the notes can be read that way: such drugs are read into
//! [`MedicationMonth::drugs`]). Lists are read nested or flat ([`Node::list`]); a date or
//! month that cannot be read is absent with a warning ([`DrugInfoResult::read_xml`]).

use time::Date;

use super::info::{
    BODY, HEADER, InfoOutcome, InfoPatient, InfoRequestFlags, InfoRequestHeader, Parts,
    PatientNames, ROOT, YearMonth, code, read_root, req_file_category, req_month, result_month,
};
use super::read::{Doc, Node, Warned};
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
    pub flags: InfoRequestFlags,
}

/// One drug (`DrugInf`; `CzDrugInf`, `ShDrugInf`). Every value as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrugEntry {
    /// `DrugC`: the drug's code.
    pub drug_code: Option<String>,
    /// `DrugN`: its name.
    pub drug_name: Option<String>,
    /// `IngreN`: its ingredient.
    pub ingredient_name: Option<String>,
    /// `Qua1`: the quantity (per day or per use).
    pub quantity: Option<String>,
    /// `Unit`.
    pub unit: Option<String>,
    /// `UsageN`: the directions.
    pub usage: Option<String>,
    /// `SpInst`: a special instruction.
    pub special_instruction: Option<String>,
    /// `Times`: days supplied or number of uses.
    pub times: Option<String>,
    /// `MeTrIdCl`: a classification code (meaning not public).
    pub treatment_class: Option<String>,
}

/// One `MeTrInf` (medical treatment): its content is not public, so its leaves are kept as
/// (element name, text) in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreatmentEntry {
    pub fields: Vec<(String, String)>,
}

/// A day (`DiDateInf`; `CzDiDateInf`, `ShDiDateInf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MedicationDay {
    /// `DiDate`: the day of treatment or dispensing.
    pub date: Option<Date>,
    /// `PrDate`: the day of the prescription.
    pub prescription_date: Option<Date>,
    pub drugs: Vec<DrugEntry>,
    pub treatments: Vec<TreatmentEntry>,
}

/// An institution's month (`MeTrMonthInf`; `CzDiMonthInf`, `ShPrMonthInf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MedicationMonth {
    /// `DiOrg`: the kind of source (code, meaning not public).
    pub organization: Option<String>,
    /// `MeTrDiHCd`: the institution's code, as written (not checked: a history must not be
    /// lost to one code we would judge wrong).
    pub institution_code: Option<String>,
    /// `MeTrDiHNm`: the institution's name.
    pub institution_name: Option<String>,
    /// `MeTrMonth`.
    pub month: Option<YearMonth>,
    /// `InOut`: inpatient/outpatient code (meaning not public).
    pub in_out: Option<String>,
    pub days: Vec<MedicationDay>,
    /// Drugs found directly in the month rather than in a day (UNCONFIRMED placement).
    pub drugs: Vec<DrugEntry>,
    /// Treatments found directly in the month (UNCONFIRMED placement).
    pub treatments: Vec<TreatmentEntry>,
}

/// 薬剤情報照会結果 (`YZKsiquc01res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugInfoResult {
    pub outcome: InfoOutcome,
    /// `QuaInf`.
    pub patient: Option<InfoPatient>,
    /// `MeTrMonthInf`: from medical (and dispensing) claims, per institution and month.
    pub months: Vec<MedicationMonth>,
    /// `CzDiInf/CzDiMonthInf`: dispensing (調剤).
    pub dispensing: Vec<MedicationMonth>,
    /// `ShPrInf/ShPrMonthInf`: prescriptions (処方; UNCONFIRMED element names inside).
    pub prescriptions: Vec<MedicationMonth>,
}

impl DrugInfoResult {
    /// A result with nothing but its outcome (a refusal).
    pub fn refused(outcome: InfoOutcome) -> Self {
        DrugInfoResult {
            outcome,
            patient: None,
            months: Vec::new(),
            dispensing: Vec::new(),
            prescriptions: Vec::new(),
        }
    }
}

const QUA_INF: PatientNames = PatientNames {
    block: "QuaInf",
    name: "Name",
    kana: "KanaName",
    birth: "Birth",
    gender: "AdmGendCode",
};

/// The names of one of the three month lists.
struct ListNames {
    /// The container of the months (`None`: the months sit in `MessageBody`).
    list: Option<&'static str>,
    month_inf: &'static str,
    org: &'static str,
    institution_code: &'static str,
    institution_name: &'static str,
    month: &'static str,
    in_out: &'static str,
    days: &'static str,
    day: &'static str,
    date: &'static str,
    prescription_date: &'static str,
    drugs: &'static str,
    drug: &'static str,
    drug_code: &'static str,
    drug_name: &'static str,
    ingredient: &'static str,
    quantity: &'static str,
    unit: &'static str,
    usage: &'static str,
    special_instruction: &'static str,
    times: &'static str,
    treatment_class: &'static str,
    treatments: &'static str,
    treatment: &'static str,
}

const MEDICAL: ListNames = ListNames {
    list: None,
    month_inf: "MeTrMonthInf",
    org: "DiOrg",
    institution_code: "MeTrDiHCd",
    institution_name: "MeTrDiHNm",
    month: "MeTrMonth",
    in_out: "InOut",
    days: "DiDateInfs",
    day: "DiDateInf",
    date: "DiDate",
    prescription_date: "PrDate",
    drugs: "DrugInfs",
    drug: "DrugInf",
    drug_code: "DrugC",
    drug_name: "DrugN",
    ingredient: "IngreN",
    quantity: "Qua1",
    unit: "Unit",
    usage: "UsageN",
    special_instruction: "SpInst",
    times: "Times",
    treatment_class: "MeTrIdCl",
    treatments: "MeTrInfs",
    treatment: "MeTrInf",
};

/// Certain: `CzDiInf`, `CzDiMonthInf`, `CzDiOrg`, `CzDiMonth`, `CzDiDateInfs`,
/// `CzDiDateInf`, `CzDiDate`, `CzDrugInfs`, `CzDrugInf`, `CzDrugN`, `CzQua1`, `CzUnit`,
/// `CzTimes`. The rest by analogy (UNCONFIRMED).
const DISPENSING: ListNames = ListNames {
    list: Some("CzDiInf"),
    month_inf: "CzDiMonthInf",
    org: "CzDiOrg",
    institution_code: "CzDiHCd",
    institution_name: "CzDiHNm",
    month: "CzDiMonth",
    in_out: "CzInOut",
    days: "CzDiDateInfs",
    day: "CzDiDateInf",
    date: "CzDiDate",
    prescription_date: "CzPrDate",
    drugs: "CzDrugInfs",
    drug: "CzDrugInf",
    drug_code: "CzDrugC",
    drug_name: "CzDrugN",
    ingredient: "CzIngreN",
    quantity: "CzQua1",
    unit: "CzUnit",
    usage: "CzUsageN",
    special_instruction: "CzSpInst",
    times: "CzTimes",
    treatment_class: "CzMeTrIdCl",
    treatments: "CzMeTrInfs",
    treatment: "CzMeTrInf",
};

/// Certain: `ShPrInf`, `ShPrMonthInf`. The rest mirrors the `Cz…` names (UNCONFIRMED).
const PRESCRIPTIONS: ListNames = ListNames {
    list: Some("ShPrInf"),
    month_inf: "ShPrMonthInf",
    org: "ShDiOrg",
    institution_code: "ShDiHCd",
    institution_name: "ShDiHNm",
    month: "ShDiMonth",
    in_out: "ShInOut",
    days: "ShDiDateInfs",
    day: "ShDiDateInf",
    date: "ShDiDate",
    prescription_date: "ShPrDate",
    drugs: "ShDrugInfs",
    drug: "ShDrugInf",
    drug_code: "ShDrugC",
    drug_name: "ShDrugN",
    ingredient: "ShIngreN",
    quantity: "ShQua1",
    unit: "ShUnit",
    usage: "ShUsageN",
    special_instruction: "ShSpInst",
    times: "ShTimes",
    treatment_class: "ShMeTrIdCl",
    treatments: "ShMeTrInfs",
    treatment: "ShMeTrInf",
};

impl DrugInfoRequest {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        self.header.write(&mut out);
        out.open(BODY);
        out.leaf("StartDate", &self.start_month.to_string());
        out.leaf("EndDate", &self.end_month.to_string());
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
        Ok(DrugInfoRequest {
            header,
            start_month: req_month(&body, "StartDate")?,
            end_month: req_month(&body, "EndDate")?,
            file_category: req_file_category(&body)?,
            flags: InfoRequestFlags::read(&body)?,
        })
    }
}

impl DrugInfoResult {
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        self.outcome.write(&mut out);
        if let Some(p) = &self.patient {
            p.write(&mut out, &QUA_INF);
        }
        out.close(HEADER);
        out.open(BODY);
        write_list(&mut out, &MEDICAL, &self.months);
        write_list(&mut out, &DISPENSING, &self.dispensing);
        write_list(&mut out, &PRESCRIPTIONS, &self.prescriptions);
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
        let mut result = DrugInfoResult {
            patient: InfoPatient::read(&parts, &QUA_INF)?,
            ..DrugInfoResult::refused(InfoOutcome::read(&parts)?)
        };
        if let Some(body) = &body {
            result.months = read_list(body, &MEDICAL)?;
            result.dispensing = read_list(body, &DISPENSING)?;
            result.prescriptions = read_list(body, &PRESCRIPTIONS)?;
        }
        Ok(doc.finish(result))
    }
}

fn write_list(out: &mut Out, n: &ListNames, months: &[MedicationMonth]) {
    if months.is_empty() {
        return;
    }
    if let Some(list) = n.list {
        out.open(list);
    }
    for m in months {
        out.open(n.month_inf);
        out.opt(n.org, m.organization.as_deref());
        out.opt(n.institution_code, m.institution_code.as_deref());
        out.opt(n.institution_name, m.institution_name.as_deref());
        out.opt(n.month, m.month.map(|m| m.to_string()).as_deref());
        out.opt(n.in_out, m.in_out.as_deref());
        if !m.days.is_empty() {
            out.open(n.days);
            for d in &m.days {
                out.open(n.day);
                out.opt_date(n.date, d.date);
                out.opt_date(n.prescription_date, d.prescription_date);
                write_drugs(out, n, &d.drugs);
                write_treatments(out, n, &d.treatments);
                out.close(n.day);
            }
            out.close(n.days);
        }
        write_drugs(out, n, &m.drugs);
        write_treatments(out, n, &m.treatments);
        out.close(n.month_inf);
    }
    if let Some(list) = n.list {
        out.close(list);
    }
}

fn write_drugs(out: &mut Out, n: &ListNames, drugs: &[DrugEntry]) {
    if drugs.is_empty() {
        return;
    }
    out.open(n.drugs);
    for x in drugs {
        out.open(n.drug);
        out.opt(n.drug_code, x.drug_code.as_deref());
        out.opt(n.drug_name, x.drug_name.as_deref());
        out.opt(n.ingredient, x.ingredient_name.as_deref());
        out.opt(n.quantity, x.quantity.as_deref());
        out.opt(n.unit, x.unit.as_deref());
        out.opt(n.usage, x.usage.as_deref());
        out.opt(n.special_instruction, x.special_instruction.as_deref());
        out.opt(n.times, x.times.as_deref());
        out.opt(n.treatment_class, x.treatment_class.as_deref());
        out.close(n.drug);
    }
    out.close(n.drugs);
}

fn write_treatments(out: &mut Out, n: &ListNames, treatments: &[TreatmentEntry]) {
    if treatments.is_empty() {
        return;
    }
    out.open(n.treatments);
    for t in treatments {
        out.open(n.treatment);
        for (name, value) in &t.fields {
            out.leaf(name, value);
        }
        out.close(n.treatment);
    }
    out.close(n.treatments);
}

fn read_list(body: &Node<'_>, n: &ListNames) -> Result<Vec<MedicationMonth>, XmlError> {
    let mut out = Vec::new();
    match n.list {
        Some(list) => {
            for item in body.list(list, n.month_inf) {
                out.push(read_month(&item.node(body), n)?);
            }
        }
        None => {
            for m in body.children(n.month_inf) {
                out.push(read_month(&m, n)?);
            }
        }
    }
    Ok(out)
}

fn read_month(m: &Node<'_>, n: &ListNames) -> Result<MedicationMonth, XmlError> {
    let mut days = Vec::new();
    for item in m.list(n.days, n.day) {
        let d = item.node(m);
        days.push(MedicationDay {
            date: d.opt_date(n.date)?,
            prescription_date: d.opt_date(n.prescription_date)?,
            drugs: read_drugs(&d, n)?,
            treatments: read_treatments(&d, n),
        });
    }
    Ok(MedicationMonth {
        organization: code(m, n.org)?,
        institution_code: code(m, n.institution_code)?,
        institution_name: m.opt_string(n.institution_name)?,
        month: result_month(m, n.month)?,
        in_out: code(m, n.in_out)?,
        days,
        drugs: read_drugs(m, n)?,
        treatments: read_treatments(m, n),
    })
}

fn read_drugs(parent: &Node<'_>, n: &ListNames) -> Result<Vec<DrugEntry>, XmlError> {
    let mut out = Vec::new();
    for item in parent.list(n.drugs, n.drug) {
        let x = item.node(parent);
        out.push(DrugEntry {
            drug_code: code(&x, n.drug_code)?,
            drug_name: x.opt_string(n.drug_name)?,
            ingredient_name: x.opt_string(n.ingredient)?,
            quantity: x.opt_string(n.quantity)?,
            unit: x.opt_string(n.unit)?,
            usage: x.opt_string(n.usage)?,
            special_instruction: x.opt_string(n.special_instruction)?,
            times: x.opt_string(n.times)?,
            treatment_class: code(&x, n.treatment_class)?,
        });
    }
    Ok(out)
}

fn read_treatments(parent: &Node<'_>, n: &ListNames) -> Vec<TreatmentEntry> {
    parent
        .list(n.treatments, n.treatment)
        .iter()
        .map(|item| TreatmentEntry {
            fields: item.node(parent).leaves(),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::{
        InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
        MedicalInstitutionCode,
    };
    use crate::xml::ResultCode;
    use proptest::prelude::*;
    use time::macros::date;

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

    fn request() -> DrugInfoRequest {
        DrugInfoRequest {
            header: header(),
            start_month: YearMonth::parse("202304").unwrap(),
            end_month: YearMonth::parse("202604").unwrap(),
            file_category: FileCategory::FULL_XML,
            flags: InfoRequestFlags::as_clients_send(),
        }
    }

    pub(crate) fn sample_result() -> DrugInfoResult {
        let amlodipine = DrugEntry {
            drug_code: Some("620000001".into()),
            drug_name: Some("アムロジピン錠５ｍｇ".into()),
            ingredient_name: Some("アムロジピンベシル酸塩".into()),
            quantity: Some("1".into()),
            unit: Some("錠".into()),
            usage: Some("1日1回朝食後".into()),
            special_instruction: Some("粉砕 & 一包化".into()),
            times: Some("28".into()),
            treatment_class: Some("1".into()),
        };
        DrugInfoResult {
            outcome: InfoOutcome::success(),
            patient: Some(InfoPatient {
                name: Some("見本　花子".into()),
                kana_name: Some("ﾐﾎﾝ ﾊﾅｺ".into()),
                birth: Some(date!(1980 - 01 - 01)),
                gender_code: Some("2".into()),
            }),
            months: vec![MedicationMonth {
                organization: Some("1".into()),
                institution_code: Some("3410712362".into()),
                institution_name: Some("みどりクリニック <本院>".into()),
                month: YearMonth::parse("202603"),
                in_out: Some("1".into()),
                days: vec![MedicationDay {
                    date: Some(date!(2026 - 03 - 14)),
                    prescription_date: Some(date!(2026 - 03 - 14)),
                    drugs: vec![amlodipine.clone()],
                    treatments: vec![TreatmentEntry {
                        fields: vec![("MeTrN".into(), "再診料".into())],
                    }],
                }],
                ..MedicationMonth::default()
            }],
            dispensing: vec![MedicationMonth {
                organization: Some("1".into()),
                month: YearMonth::parse("202603"),
                days: vec![MedicationDay {
                    date: Some(date!(2026 - 03 - 14)),
                    drugs: vec![DrugEntry {
                        drug_name: amlodipine.drug_name.clone(),
                        quantity: Some("1".into()),
                        unit: Some("錠".into()),
                        times: Some("28".into()),
                        ..DrugEntry::default()
                    }],
                    ..MedicationDay::default()
                }],
                ..MedicationMonth::default()
            }],
            prescriptions: Vec::new(),
        }
    }

    #[test]
    fn requests_round_trip_in_both_encodings() {
        let request = request();
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let xml = request.to_xml(enc);
            assert_eq!(DrugInfoRequest::from_xml(&xml).unwrap(), request);
        }
        let text = String::from_utf8(request.to_xml(XmlEncoding::Utf8)).unwrap();
        for expected in [
            "<InsurerNumber>  138156</InsurerNumber>",
            "<StartDate>202304</StartDate>",
            "<FileCategory>4</FileCategory>",
            "<PrDiInfClassification>1</PrDiInfClassification>",
            "<MedicalTreatmentFlag>1</MedicalTreatmentFlag>",
            "<InsuredPersonIdentificationNumber>1234</InsuredPersonIdentificationNumber>",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        // Every category of 1–4 reads; the flags are optional.
        for code in ["1", "2", "3"] {
            let other = text
                .replace("<FileCategory>4", &format!("<FileCategory>{code}"))
                .replace("<MedicalTreatmentFlag>1</MedicalTreatmentFlag>", "");
            let read = DrugInfoRequest::from_xml(other.as_bytes()).unwrap();
            assert_eq!(read.file_category.code(), code);
            assert_eq!(read.flags.medical_treatment_flag, None);
        }
    }

    #[test]
    fn results_round_trip_in_both_encodings() {
        let result = sample_result();
        for enc in [XmlEncoding::Utf8, XmlEncoding::ShiftJis] {
            let xml = result.to_xml(enc);
            assert_eq!(DrugInfoResult::from_xml(&xml).unwrap(), result);
        }
        // A refusal without a body reads too.
        let refused = DrugInfoResult::refused(InfoOutcome {
            result_code: ResultCode::Other("SIM-E0401".into()),
            message_contents: Some("同意がありません / no consent".into()),
        });
        let xml = refused.to_xml(XmlEncoding::Utf8);
        assert_eq!(DrugInfoResult::from_xml(&xml).unwrap(), refused);
    }

    #[test]
    fn lists_read_nested_or_flat_and_unknown_elements_are_ignored() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<XmlMsg><MessageHeader><QuaInf><Name>A</Name><Unknown>x</Unknown></QuaInf></MessageHeader>
<MessageBody>
  <ResultCode>1</ResultCode>
  <NewThing><Deep>1</Deep></NewThing>
  <MeTrMonthInf><MeTrMonth>202512</MeTrMonth><InOut>9</InOut>
    <DiDateInf><DiDate>20251203</DiDate><DrugInf><DrugN>a</DrugN></DrugInf></DiDateInf>
    <DiDateInfs><DiDateInf><DiDate>20251204</DiDate>
      <DrugInfs><DrugInf><DrugN>b</DrugN></DrugInf></DrugInfs>
      <DrugInfs><DrugInf><DrugN>c</DrugN><DrugN>c</DrugN></DrugInf></DrugInfs>
    </DiDateInf></DiDateInfs>
    <DrugInfs><DrugInf><DrugN>month-level</DrugN></DrugInf></DrugInfs>
  </MeTrMonthInf>
  <CzDiMonthInf><CzDiMonth>202512</CzDiMonth></CzDiMonthInf>
  <CzDiInf><CzDiMonthInf><CzDiMonth>202511</CzDiMonth></CzDiMonthInf></CzDiInf>
  <CzDiInf><CzDiMonthInf><CzDiMonth>202510</CzDiMonth></CzDiMonthInf></CzDiInf>
</MessageBody></XmlMsg>"#;
        let read = DrugInfoResult::read_xml(xml.as_bytes()).unwrap();
        let warned: Vec<String> = read.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            warned.iter().any(|w| w.contains("MessageBody/NewThing")),
            "{warned:?}"
        );
        assert!(
            warned.iter().any(|w| w.contains("QuaInf/Unknown")),
            "{warned:?}"
        );
        let r = read.value;
        assert!(r.outcome.result_code.is_success());
        assert_eq!(r.patient.unwrap().name.as_deref(), Some("A"));
        let m = &r.months[0];
        assert_eq!(m.in_out.as_deref(), Some("9"), "unknown codes are kept");
        let names: Vec<_> = m
            .days
            .iter()
            .flat_map(|d| d.drugs.iter())
            .map(|x| x.drug_name.as_deref().unwrap())
            .collect();
        // Nested days first, then flat ones; a repeated equal leaf is read once.
        assert_eq!(names, ["b", "c", "a"]);
        assert_eq!(m.drugs[0].drug_name.as_deref(), Some("month-level"));
        let months: Vec<_> = r
            .dispensing
            .iter()
            .map(|m| m.month.unwrap().to_string())
            .collect();
        assert_eq!(months, ["202511", "202510", "202512"]);
    }

    #[test]
    fn bad_values_name_their_element() {
        let text = String::from_utf8(request().to_xml(XmlEncoding::Utf8)).unwrap();
        let bad = text.replace("<StartDate>202304", "<StartDate>202313");
        assert!(matches!(
            DrugInfoRequest::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidValue { path, .. }) if path.ends_with("MessageBody/StartDate")
        ));
        let bad = text.replace("<FileCategory>4", "<FileCategory>7");
        assert!(matches!(
            DrugInfoRequest::from_xml(bad.as_bytes()),
            Err(XmlError::InvalidValue { reason, .. }) if reason.contains("1 to 4")
        ));
        let missing = text.replace("<EndDate>202604</EndDate>", "");
        assert!(matches!(
            DrugInfoRequest::from_xml(missing.as_bytes()),
            Err(XmlError::MissingElement { .. })
        ));
        // In a result, an unreadable date is absent with a warning naming it.
        let result = String::from_utf8(sample_result().to_xml(XmlEncoding::Utf8)).unwrap();
        let bad = result.replacen("<DiDate>20260314", "<DiDate>20260332", 1);
        let read = DrugInfoResult::read_xml(bad.as_bytes()).unwrap();
        assert_eq!(read.value.months[0].days[0].date, None);
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        assert!(
            read.warnings[0]
                .path
                .ends_with("MeTrMonthInf/DiDateInfs/DiDateInf/DiDate"),
            "{:?}",
            read.warnings
        );
        // Two different values where one is expected have no safe reading.
        let twice = result.replace(
            "<DrugN>アムロジピン錠５ｍｇ</DrugN>",
            "<DrugN>アムロジピン錠５ｍｇ</DrugN><DrugN>別の薬</DrugN>",
        );
        assert!(matches!(
            DrugInfoResult::from_xml(twice.as_bytes()),
            Err(XmlError::InvalidValue { .. })
        ));
        let no_code = result.replace("<ResultCode>1</ResultCode>", "");
        assert!(matches!(
            DrugInfoResult::from_xml(no_code.as_bytes()),
            Err(XmlError::MissingElement { .. })
        ));
    }

    /// Text that survives a round trip: not blank (blank leaves read as absent).
    pub(crate) fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zA-Z0-9ｱ-ﾝあ-んア-ン亜-腕&<>' ]{0,10}[a-z0-9ア-ン]")
    }

    fn day() -> impl Strategy<Value = Option<Date>> {
        proptest::option::of((1950i32..2030, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| {
            Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap()
        }))
    }

    fn drug() -> impl Strategy<Value = DrugEntry> {
        (
            (text(), text(), text(), text(), text()),
            (text(), text(), text(), text()),
        )
            .prop_map(|((a, b, c, d, e), (f, g, h, i))| DrugEntry {
                drug_code: a.map(|s| s.trim().to_owned()),
                drug_name: b,
                ingredient_name: c,
                quantity: d,
                unit: e,
                usage: f,
                special_instruction: g,
                times: h,
                treatment_class: i.map(|s| s.trim().to_owned()),
            })
    }

    fn treatment() -> impl Strategy<Value = TreatmentEntry> {
        proptest::collection::vec(("[A-Z][a-zA-Z]{0,6}", "[a-z0-9ア-ン]{1,6}"), 0..3)
            .prop_map(|fields| TreatmentEntry { fields })
    }

    fn month() -> impl Strategy<Value = MedicationMonth> {
        (
            (
                text(),
                text(),
                text(),
                proptest::option::of(190001u32..203012),
            ),
            proptest::collection::vec(
                (
                    day(),
                    day(),
                    proptest::collection::vec(drug(), 0..3),
                    proptest::collection::vec(treatment(), 0..2),
                ),
                0..3,
            ),
            proptest::collection::vec(drug(), 0..2),
        )
            .prop_map(|((org, code, name, month), days, drugs)| MedicationMonth {
                organization: org.map(|s| s.trim().to_owned()),
                institution_code: code.map(|s| s.trim().to_owned()),
                institution_name: name,
                month: month.and_then(|m| YearMonth::parse(&m.to_string())),
                in_out: None,
                days: days
                    .into_iter()
                    .map(
                        |(date, prescription_date, drugs, treatments)| MedicationDay {
                            date,
                            prescription_date,
                            drugs,
                            treatments,
                        },
                    )
                    .collect(),
                drugs,
                treatments: Vec::new(),
            })
    }

    proptest! {
        #[test]
        fn written_results_read_back_equal(
            months in proptest::collection::vec(month(), 0..3),
            dispensing in proptest::collection::vec(month(), 0..2),
            prescriptions in proptest::collection::vec(month(), 0..2),
            name in text(),
            birth in day(),
            code in "[0-9A-Z-]{1,9}",
            message in text(),
            shift_jis in any::<bool>(),
        ) {
            let result = DrugInfoResult {
                outcome: InfoOutcome { result_code: ResultCode::from_code(&code), message_contents: message },
                patient: Some(InfoPatient { name, kana_name: None, birth, gender_code: Some("1".into()) }),
                months,
                dispensing,
                prescriptions,
            };
            let enc = if shift_jis { XmlEncoding::ShiftJis } else { XmlEncoding::Utf8 };
            prop_assert_eq!(DrugInfoResult::from_xml(&result.to_xml(enc)).unwrap(), result);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
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
