//! What the drug (`YZKsiquc01`) and checkup (`TKKsiquc01`) messages share: the request header
//! that names the patient by insurance numbers, the result header, `yyyyMM` months and the
//! `FileCategory` code.
//!
//! The element names are the real ones (`shared/domain/onshi.md` §3). Where the public sources
//! stop, the structure is our assumption, marked **UNCONFIRMED** at each place: the result
//! header is modelled on the eligibility result's header, and the request header carries the
//! patient's identifiers as the domain document lists them.

use time::{Month, PrimitiveDateTime};

use super::read::Node;
use super::tree::{self, Element};
use super::write::Out;
use super::{XmlEncoding, XmlError, XmlLimits, charset, shown};
use crate::codes::{CharacterCodeIdentifier, SegmentOfResult};
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

/// `FileCategory`: the form of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileCategory {
    /// 1: a PDF for printing.
    Pdf,
    /// 2: XML, for systems.
    Xml,
}

impl FileCategory {
    pub fn code(self) -> &'static str {
        match self {
            FileCategory::Pdf => "1",
            FileCategory::Xml => "2",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "1" => Some(FileCategory::Pdf),
            "2" => Some(FileCategory::Xml),
            _ => None,
        }
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

/// `MessageHeader` of a drug or checkup result. UNCONFIRMED: modelled on the eligibility
/// result's header (`ProcessExecutionTime`, `MedicalInstitutionCode`,
/// `ArbitraryFileIdentifier`, `SegmentOfResult`, `ErrorCode`, `ErrorMessage`,
/// `CharacterCodeIdentifier`), plus the patient's numbers echoed as in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoResultHeader {
    pub process_execution_time: PrimitiveDateTime,
    pub medical_institution_code: MedicalInstitutionCode,
    pub insurer_number: Option<InsurerNumber>,
    pub insurance_card_symbol: Option<InsuredCardSymbol>,
    pub insured_person_identification_number: Option<InsuredIdentificationNumber>,
    pub branch_number: Option<InsuredBranchNumber>,
    pub arbitrary_file_identifier: Option<String>,
    pub segment_of_result: SegmentOfResult,
    /// Only when `segment_of_result` is not normal; never branch on its text.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub character_code_identifier: CharacterCodeIdentifier,
}

impl InfoResultHeader {
    pub(crate) fn write(&self, out: &mut Out) {
        out.open(HEADER);
        out.datetime("ProcessExecutionTime", self.process_execution_time);
        out.leaf(
            "MedicalInstitutionCode",
            self.medical_institution_code.as_str(),
        );
        let insurer = self
            .insurer_number
            .as_ref()
            .map(InsurerNumber::to_file_field);
        out.opt("InsurerNumber", insurer.as_deref());
        out.opt(
            "InsuranceCardSymbol",
            self.insurance_card_symbol
                .as_ref()
                .map(InsuredCardSymbol::as_str),
        );
        out.opt(
            "InsuredPersonIdentificationNumber",
            self.insured_person_identification_number
                .as_ref()
                .map(InsuredIdentificationNumber::as_str),
        );
        out.opt(
            "BranchNumber",
            self.branch_number.as_ref().map(InsuredBranchNumber::as_str),
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
    }

    pub(crate) fn read(h: &Node<'_>, encoding: XmlEncoding) -> Result<Self, XmlError> {
        Ok(InfoResultHeader {
            process_execution_time: h.req_text("ProcessExecutionTime")?.datetime()?,
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            insurer_number: h.opt_id("InsurerNumber", InsurerNumber::parse)?,
            insurance_card_symbol: h.opt_id("InsuranceCardSymbol", InsuredCardSymbol::parse)?,
            insured_person_identification_number: h.opt_id(
                "InsuredPersonIdentificationNumber",
                InsuredIdentificationNumber::parse,
            )?,
            branch_number: h.opt_id("BranchNumber", InsuredBranchNumber::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
            segment_of_result: h.req_text("SegmentOfResult")?.code()?,
            error_code: h.opt_string("ErrorCode")?,
            error_message: h.opt_string("ErrorMessage")?,
            character_code_identifier: h.opt_code("CharacterCodeIdentifier")?.unwrap_or(
                match encoding {
                    XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
                    XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
                },
            ),
        })
    }
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
    FileCategory::from_code(leaf.raw.trim())
        .ok_or_else(|| leaf.invalid("unknown code; expected 1 (PDF) or 2 (XML)"))
}

/// Bytes → checked root element `XmlMsg`, and the encoding the file was decoded with.
pub(crate) fn read_root(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<(Element, XmlEncoding), XmlError> {
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
        assert_eq!(FileCategory::from_code("2"), Some(FileCategory::Xml));
        assert_eq!(FileCategory::from_code("3"), None);
    }
}
