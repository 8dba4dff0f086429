//! Sites and terminals as the fleet names them.
//!
//! A site is named by its 10-digit medical institution code (医療機関等コード), the code the
//! national system knows it by; a new site uses its reception number (受付番号), which has the
//! same form and becomes its code. So the code in an agent's certificate, in its events and in
//! its Onshi requests is one and the same value.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{FeeTable, IdError, MedicalInstitutionCode, Prefecture};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteCode(String);

impl SiteCode {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        MedicalInstitutionCode::parse(s).map(|code| Self(code.as_str().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn institution_code(&self) -> MedicalInstitutionCode {
        MedicalInstitutionCode::parse(&self.0).expect("a SiteCode is a valid institution code")
    }

    pub fn prefecture(&self) -> Prefecture {
        self.institution_code().prefecture()
    }
}

impl fmt::Display for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SiteCode {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<SiteCode> for String {
    fn from(code: SiteCode) -> String {
        code.0
    }
}

/// What kind of place a site is; decides which information its staff may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    Hospital,
    Clinic,
    DentalClinic,
    Pharmacy,
}

impl SiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Hospital => "hospital",
            SiteKind::Clinic => "clinic",
            SiteKind::DentalClinic => "dental_clinic",
            SiteKind::Pharmacy => "pharmacy",
        }
    }

    /// Whether a site of this kind can hold an institution code of `table`. A hospital or clinic
    /// may also hold a dental code (one site, two codes), a pharmacy only a pharmacy code.
    pub fn accepts_fee_table(self, table: FeeTable) -> bool {
        match self {
            SiteKind::Hospital | SiteKind::Clinic => {
                matches!(table, FeeTable::Medical | FeeTable::Dental)
            }
            SiteKind::DentalClinic => table == FeeTable::Dental,
            SiteKind::Pharmacy => table == FeeTable::Pharmacy,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "terminal id {0:?} is not valid: use 1 to 32 letters, digits, '-' or '_' (for example \"T01\")"
)]
pub struct BadTerminalId(pub String);

/// A qualification terminal or counter at a site, as the site's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TerminalId(String);

impl TerminalId {
    pub fn parse(s: &str) -> Result<Self, BadTerminalId> {
        let ok = (1..=32).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadTerminalId(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TerminalId {
    type Error = BadTerminalId;
    fn try_from(s: String) -> Result<Self, BadTerminalId> {
        Self::parse(&s)
    }
}

impl From<TerminalId> for String {
    fn from(id: TerminalId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_code_is_a_checked_institution_code() {
        let code = SiteCode::parse("3410712362").unwrap();
        assert_eq!(code.prefecture().code(), 34);
        assert!(SiteCode::parse("3410712363").is_err());
        assert!(SiteCode::parse("341071236").is_err());
    }

    #[test]
    fn pharmacies_hold_only_pharmacy_codes() {
        assert!(SiteKind::Pharmacy.accepts_fee_table(FeeTable::Pharmacy));
        assert!(!SiteKind::Pharmacy.accepts_fee_table(FeeTable::Medical));
        assert!(SiteKind::Hospital.accepts_fee_table(FeeTable::Dental));
    }

    #[test]
    fn terminal_ids_are_short_and_plain() {
        assert!(TerminalId::parse("T01").is_ok());
        assert!(TerminalId::parse("").is_err());
        assert!(TerminalId::parse("../etc").is_err());
        assert!(TerminalId::parse(&"x".repeat(33)).is_err());
    }
}
