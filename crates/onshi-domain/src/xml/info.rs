//! What the drug (`YZKsiquc01`) and checkup (`TKKsiquc01`) messages share: the request header
//! that names the patient by insurance numbers, the request's codes (`FileCategory`,
//! `PrDiInfClassification`, `MedicalTreatmentFlag`), the result's outcome (`ResultCode`,
//! `MessageContents`, never `SegmentOfResult`), the patient block, `yyyyMM` months, and the
//! tolerant cursor results are read with.
//!
//! The shapes are those of `shared/domain/onshi.md` §3 and `shared/onshi-corpus/`; what the
//! sources leave open is marked **UNCONFIRMED** where it is decided.
//!
//! Requests are read strictly (they name a patient: identifiers must be right); results are
//! read with the tolerant reader ([`super::read::Doc`]): unknown elements, unknown code values
//! and unreadable dates never refuse a file, they are warnings ([`super::Warned`]); lists are
//! read nested or flat ([`Node::list`]); codes whose tables are not public are kept as written.

use time::{Date, Month};

use super::read::Node;
use super::tree::{self, Element};
use super::write::Out;
use super::{XmlError, XmlLimits, charset, shown};
use crate::ids::{
    InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
    MedicalInstitutionCode,
};

pub(crate) const ROOT: &str = "XmlMsg";
pub(crate) const HEADER: &str = "MessageHeader";
pub(crate) const BODY: &str = "MessageBody";

/// A month written `yyyyMM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: Month,
}

impl YearMonth {
    /// `None` for a year outside 1900–9999.
    pub fn new(year: i32, month: Month) -> Option<Self> {
        (1900..=9999)
            .contains(&year)
            .then_some(YearMonth { year, month })
    }

    /// The month of `date`.
    pub fn of(date: time::Date) -> Self {
        YearMonth {
            year: date.year().clamp(1900, 9999),
            month: date.month(),
        }
    }

    /// `yyyyMM`: six ASCII digits, month 01–12.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let month = Month::try_from(s[4..6].parse::<u8>().ok()?).ok()?;
        Self::new(s[0..4].parse().ok()?, month)
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> Month {
        self.month
    }

    /// `months` months earlier (or later when negative).
    pub fn minus_months(self, months: i32) -> Self {
        let index = self.year * 12 + i32::from(u8::from(self.month)) - 1 - months;
        let year = index.div_euclid(12).clamp(1900, 9999);
        let month = Month::try_from((index.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
        YearMonth { year, month }
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}{:02}", self.year, u8::from(self.month))
    }
}

/// `FileCategory`: what the answer is, as a code 1–4 kept as written.
///
/// Drug requests take 1–4, checkup requests 1 (PDF) or 2 (XML). Clinic software sends 4 by
/// default and reads XML from the answer; the rule "even = XML, odd = PDF" is inferred from
/// that and from 1/2 of the checkup request (UNCONFIRMED), and it lives here only
/// ([`FileCategory::is_xml`]). That 3/4 carry more than 1/2 (for instance the dispensing
/// entries) is our assumption, also UNCONFIRMED; the agent asks for 4 because it needs XML and
/// 4 is the XML category that includes the most under that reading, and it is what real
/// clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileCategory(u8);

impl FileCategory {
    /// 1: PDF.
    pub const PDF: FileCategory = FileCategory(1);
    /// 2: XML.
    pub const XML: FileCategory = FileCategory(2);
    /// 3: PDF, the fuller variant (drug requests; inferred).
    pub const FULL_PDF: FileCategory = FileCategory(3);
    /// 4: XML, the fuller variant (drug requests; what clinic software sends by default).
    pub const FULL_XML: FileCategory = FileCategory(4);

    pub fn code(self) -> &'static str {
        match self.0 {
            1 => "1",
            2 => "2",
            3 => "3",
            _ => "4",
        }
    }

    /// `1`–`4`; anything else is `None`.
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "1" => Some(Self::PDF),
            "2" => Some(Self::XML),
            "3" => Some(Self::FULL_PDF),
            "4" => Some(Self::FULL_XML),
            _ => None,
        }
    }

    /// Whether the answer is XML (even codes; UNCONFIRMED inference, see the type's docs).
    pub fn is_xml(self) -> bool {
        self.0.is_multiple_of(2)
    }
}

/// `MessageHeader` of a drug or checkup request: the institution and the patient's insurance
/// numbers (these messages have their own element names for them, unlike `OQSsiquc01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequestHeader {
    /// `MedicalInstitutionCode`.
    pub medical_institution_code: MedicalInstitutionCode,
    /// `InsurerNumber` (written in the 8-character file form).
    pub insurer_number: InsurerNumber,
    /// `InsuranceCardSymbol`.
    pub insurance_card_symbol: Option<InsuredCardSymbol>,
    /// `InsuredPersonIdentificationNumber`.
    pub insured_person_identification_number: InsuredIdentificationNumber,
    /// `BranchNumber`.
    pub branch_number: Option<InsuredBranchNumber>,
    /// `ArbitraryFileIdentifier`: echoed in the result.
    pub arbitrary_file_identifier: Option<String>,
}

impl InfoRequestHeader {
    pub(crate) fn write(&self, out: &mut Out) {
        out.open(HEADER);
        out.leaf(
            "MedicalInstitutionCode",
            self.medical_institution_code.as_str(),
        );
        out.leaf("InsurerNumber", &self.insurer_number.to_file_field());
        out.opt(
            "InsuranceCardSymbol",
            self.insurance_card_symbol
                .as_ref()
                .map(InsuredCardSymbol::as_str),
        );
        out.leaf(
            "InsuredPersonIdentificationNumber",
            self.insured_person_identification_number.as_str(),
        );
        out.opt(
            "BranchNumber",
            self.branch_number.as_ref().map(InsuredBranchNumber::as_str),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            self.arbitrary_file_identifier.as_deref(),
        );
        out.close(HEADER);
    }

    pub(crate) fn read(h: &Node<'_>) -> Result<Self, XmlError> {
        Ok(InfoRequestHeader {
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            insurer_number: h.req_text("InsurerNumber")?.id(InsurerNumber::parse)?,
            insurance_card_symbol: h.opt_id("InsuranceCardSymbol", InsuredCardSymbol::parse)?,
            insured_person_identification_number: h
                .req_text("InsuredPersonIdentificationNumber")?
                .id(InsuredIdentificationNumber::parse)?,
            branch_number: h.opt_id("BranchNumber", InsuredBranchNumber::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
        })
    }
}

/// The request body's codes besides `FileCategory`, kept as written: their meanings are not
/// public. Real clients send `PrDiInfClassification` 1 and `MedicalTreatmentFlag` 1 (1/2/3),
/// in drug and checkup requests alike (corpus `YZKsiquc01req_…`, `TKKsiquc01req_…`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoRequestFlags {
    /// `PrDiInfClassification`.
    pub pr_di_inf_classification: Option<String>,
    /// `MedicalTreatmentFlag` (1, 2 or 3 in the sources).
    pub medical_treatment_flag: Option<String>,
}

impl InfoRequestFlags {
    /// What clinic software sends.
    pub fn as_clients_send() -> Self {
        InfoRequestFlags {
            pr_di_inf_classification: Some("1".into()),
            medical_treatment_flag: Some("1".into()),
        }
    }

    pub(crate) fn write(&self, out: &mut Out) {
        out.opt(
            "PrDiInfClassification",
            self.pr_di_inf_classification.as_deref(),
        );
        out.opt(
            "MedicalTreatmentFlag",
            self.medical_treatment_flag.as_deref(),
        );
    }

    pub(crate) fn read(body: &Node<'_>) -> Result<Self, XmlError> {
        Ok(InfoRequestFlags {
            pr_di_inf_classification: body
                .opt_string("PrDiInfClassification")?
                .map(|s| s.trim().to_owned()),
            medical_treatment_flag: body
                .opt_string("MedicalTreatmentFlag")?
                .map(|s| s.trim().to_owned()),
        })
    }
}

/// `ResultCode` of a drug or checkup result: `1` is success; any other value is kept as
/// written (the failure codes are not public; the simulator writes its `SIM-` codes here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultCode {
    Success,
    Other(String),
}

impl ResultCode {
    pub fn code(&self) -> &str {
        match self {
            ResultCode::Success => "1",
            ResultCode::Other(s) => s,
        }
    }

    pub fn from_code(s: &str) -> Self {
        match s.trim() {
            "1" => ResultCode::Success,
            other => ResultCode::Other(other.to_owned()),
        }
    }

    pub fn is_success(&self) -> bool {
        *self == ResultCode::Success
    }
}

/// How a drug or checkup result ended: `ResultCode` and `MessageContents`.
///
/// Their parent is not public (the client the corpus follows reads them anywhere): the reader
/// takes them from `MessageHeader`, else `MessageBody`, else the root; the writer puts them
/// first in `MessageHeader`, where the corpus has `ResultCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoOutcome {
    pub result_code: ResultCode,
    /// Why it failed (or any remark), as written.
    pub message_contents: Option<String>,
}

impl InfoOutcome {
    pub fn success() -> Self {
        InfoOutcome {
            result_code: ResultCode::Success,
            message_contents: None,
        }
    }

    pub(crate) fn write(&self, out: &mut Out) {
        out.leaf("ResultCode", self.result_code.code());
        out.opt("MessageContents", self.message_contents.as_deref());
    }

    /// A file without any `ResultCode` is refused: nobody can tell whether it succeeded.
    pub(crate) fn read(parts: &Parts<'_, '_>) -> Result<Self, XmlError> {
        let result_code = parts
            .text("ResultCode")?
            .map(|code| ResultCode::from_code(&code))
            .ok_or_else(|| XmlError::MissingElement {
                path: format!("{ROOT}/{HEADER}/ResultCode"),
            })?;
        Ok(InfoOutcome {
            result_code,
            message_contents: parts.text("MessageContents")?,
        })
    }
}

/// The three places a result's outcome and patient block may sit, in the order they are
/// looked in: `MessageHeader` (where the corpus has them), `MessageBody`, the root.
pub(crate) struct Parts<'n, 'a> {
    pub(crate) header: &'n Node<'a>,
    pub(crate) body: Option<&'n Node<'a>>,
    pub(crate) root: &'n Node<'a>,
}

impl<'n, 'a> Parts<'n, 'a> {
    fn in_order(&self) -> impl Iterator<Item = &'n Node<'a>> {
        [Some(self.header), self.body, Some(self.root)]
            .into_iter()
            .flatten()
    }

    /// The first non-empty leaf `name` found in the three places.
    fn text(&self, name: &str) -> Result<Option<String>, XmlError> {
        for part in self.in_order() {
            if let Some(text) = part.opt_string(name)? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }
}

/// The patient as a drug or checkup result names them: `QuaInf` (`Name`, `KanaName`, `Birth`,
/// `AdmGendCode`) in drug results, `QualificationsInfo` (`Name`, `KanasName`, `Birthday`,
/// `AdministrativeGenderCode`) in checkup results. The gender code is kept as written (its
/// table is not public for these messages).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoPatient {
    pub name: Option<String>,
    /// Half-width kana, as written.
    pub kana_name: Option<String>,
    pub birth: Option<Date>,
    pub gender_code: Option<String>,
}

/// The element names of one of the two patient blocks.
pub(crate) struct PatientNames {
    pub(crate) block: &'static str,
    pub(crate) name: &'static str,
    pub(crate) kana: &'static str,
    pub(crate) birth: &'static str,
    pub(crate) gender: &'static str,
}

impl InfoPatient {
    pub(crate) fn write(&self, out: &mut Out, n: &PatientNames) {
        out.open(n.block);
        out.opt(n.name, self.name.as_deref());
        out.opt(n.kana, self.kana_name.as_deref());
        out.opt_date(n.birth, self.birth);
        out.opt(n.gender, self.gender_code.as_deref());
        out.close(n.block);
    }

    /// The block in the header (where the corpus has it), else in the body or the root.
    pub(crate) fn read(parts: &Parts<'_, '_>, n: &PatientNames) -> Result<Option<Self>, XmlError> {
        for part in parts.in_order() {
            if let Some(b) = part.child(n.block)? {
                return Ok(Some(InfoPatient {
                    name: b.opt_string(n.name)?,
                    kana_name: b.opt_string(n.kana)?,
                    birth: b.opt_date(n.birth)?,
                    gender_code: code(&b, n.gender)?,
                }));
            }
        }
        Ok(None)
    }
}

/// A code whose table is not public: the leaf trimmed, kept whatever its value.
pub(crate) fn code(node: &Node<'_>, name: &str) -> Result<Option<String>, XmlError> {
    Ok(node.opt_string(name)?.map(|s| s.trim().to_owned()))
}

/// An optional `yyyyMM` leaf of a result: a value that is not one is read as absent, with a
/// warning.
pub(crate) fn result_month(node: &Node<'_>, name: &str) -> Result<Option<YearMonth>, XmlError> {
    Ok(node
        .opt_checked(name, |s| YearMonth::parse(s).is_some(), "a month yyyyMM")?
        .and_then(|s| YearMonth::parse(&s)))
}

/// Reads a `yyyyMM` leaf.
pub(crate) fn req_month(node: &Node<'_>, name: &str) -> Result<YearMonth, XmlError> {
    let leaf = node.req_text(name)?;
    YearMonth::parse(leaf.raw.trim()).ok_or_else(|| leaf.invalid("expected a month written yyyyMM"))
}

pub(crate) fn opt_month(node: &Node<'_>, name: &str) -> Result<Option<YearMonth>, XmlError> {
    match node.text(name)? {
        None => Ok(None),
        Some(leaf) => YearMonth::parse(leaf.raw.trim())
            .map(Some)
            .ok_or_else(|| leaf.invalid("expected a month written yyyyMM")),
    }
}

pub(crate) fn req_file_category(node: &Node<'_>) -> Result<FileCategory, XmlError> {
    let leaf = node.req_text("FileCategory")?;
    FileCategory::from_code(leaf.raw.trim()).ok_or_else(|| {
        leaf.invalid("unknown code; expected 1 to 4 (even: XML, odd: PDF; checkups 1 or 2)")
    })
}

/// Bytes → checked root element `XmlMsg`, and the encoding the file was decoded with.
pub(crate) fn read_root(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<(Element, super::XmlEncoding), XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let decoded = charset::decode(bytes)?;
    let root = tree::parse(&decoded.text, limits, decoded.offset)?;
    if Node::root(&root).name() != ROOT {
        return Err(XmlError::UnexpectedRoot {
            found: shown(&root.name),
        });
    }
    Ok((root, decoded.encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m = YearMonth::parse("202604").unwrap();
        assert_eq!(m.to_string(), "202604");
        assert_eq!(m.minus_months(4).to_string(), "202512");
        assert_eq!(m.minus_months(36).to_string(), "202304");
        assert_eq!(m.minus_months(-9).to_string(), "202701");
        for bad in ["202613", "202600", "20261", "2026-1", "abcdef", "2026040"] {
            assert_eq!(YearMonth::parse(bad), None, "{bad}");
        }
        assert_eq!(FileCategory::from_code("2"), Some(FileCategory::XML));
        assert_eq!(FileCategory::from_code("4"), Some(FileCategory::FULL_XML));
        assert_eq!(FileCategory::from_code("5"), None);
        assert_eq!(FileCategory::from_code("0"), None);
        for (code, xml) in [("1", false), ("2", true), ("3", false), ("4", true)] {
            let c = FileCategory::from_code(code).unwrap();
            assert_eq!(c.code(), code);
            assert_eq!(c.is_xml(), xml, "{code}");
        }
        assert_eq!(ResultCode::from_code(" 1 "), ResultCode::Success);
        assert_eq!(
            ResultCode::from_code("SIM-E0401"),
            ResultCode::Other("SIM-E0401".into())
        );
    }
}
