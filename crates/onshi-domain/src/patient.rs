//! Pseudonymous patient references.
//!
//! Central must be able to answer "who looked at this patient's data?" without the fleet ever
//! sending insurance numbers off site. Sites therefore send a [`PatientRef`]: a keyed hash
//! (HMAC-SHA-256) of the insurance card identifiers under a fleet secret, the
//! [`PatientHashKey`]. At audit time central computes the same hash from the numbers the
//! auditor enters and searches for it. Without the key, a reference cannot be reversed by
//! trying every insurance number.
//!
//! # Canonical input (version `onshi-fleet/patient/v1`)
//!
//! The HMAC input must be byte-for-byte the same wherever it is computed, and two different
//! cards must never produce the same input. It is built from the *parsed* identifiers (so
//! padding and full-width digits are already normalized, see [`crate::ids`]) as:
//!
//! ```text
//! input   = lp("onshi-fleet/patient/v1")
//!           || lp(insurer)           canonical digits: 6 (NHI, no padding) or 8
//!           || opt(symbol)           normalized 記号, if the card has one
//!           || lp(number)            normalized 番号
//!           || opt(branch)           2-digit 枝番, if the card has one
//! lp(x)   = 4-byte big-endian length of x in bytes || UTF-8 bytes of x
//! opt(x)  = 0x00                     when absent
//!         | 0x01 || lp(x)            when present
//! ```
//!
//! The length prefixes make the encoding unambiguous (no separator can be forged by a value),
//! and the presence byte keeps "no symbol" apart from any symbol. The version tag lets a later
//! scheme coexist: a changed encoding gets a new tag, never a silent change of this one. The
//! key is the raw bytes of the fleet secret; the output is the 32-byte tag as 64 lowercase hex
//! characters.

use std::fmt;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::ids::{
    InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsurerNumber,
};

/// The version tag at the start of every HMAC input; see the module documentation.
pub const PATIENT_REF_VERSION: &str = "onshi-fleet/patient/v1";

/// The version tag of [`PatientRef::for_named_person`]'s input.
pub const NAMED_PERSON_REF_VERSION: &str = "onshi-fleet/named-person/v1";

/// The shortest key accepted, in bytes: the output size of SHA-256, as RFC 2104 recommends.
pub const MIN_KEY_BYTES: usize = 32;

/// The fleet secret for patient references. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct PatientHashKey {
    key: hmac::Key,
}

/// A key shorter than [`MIN_KEY_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the patient hash key is {got} bytes; it must be at least {MIN_KEY_BYTES} random bytes — generate a new one"
)]
pub struct KeyTooShort {
    pub got: usize,
}

impl PatientHashKey {
    /// Wraps `bytes` (at least 32, from a secure random source) as the HMAC key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyTooShort> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort { got: bytes.len() });
        }
        Ok(PatientHashKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }
}

/// A key file's text that is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("the patient hash key must be written as lowercase hex characters only")]
    NotHex,
    #[error(transparent)]
    TooShort(#[from] KeyTooShort),
}

impl PatientHashKey {
    /// The key as a key file holds it: lowercase hex (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyTextError> {
        let bytes = crate::hex::decode(text.trim()).ok_or(KeyTextError::NotHex)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

impl fmt::Debug for PatientHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientHashKey(<redacted>)")
    }
}

/// A pseudonymous patient reference: 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatientRef(String);

/// A string that is not a patient reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a patient reference: expected 64 lowercase hex characters, got {got_chars} characters"
)]
pub struct InvalidPatientRef {
    /// How many characters the rejected string had (the string itself is not repeated).
    pub got_chars: usize,
}

impl PatientRef {
    /// The reference of the insurance card identified by these fields.
    pub fn for_insurance_card(
        key: &PatientHashKey,
        insurer: &InsurerNumber,
        symbol: Option<&InsuredCardSymbol>,
        number: &InsuredIdentificationNumber,
        branch: Option<&InsuredBranchNumber>,
    ) -> PatientRef {
        let input = canonical_input(
            insurer.as_str(),
            symbol.map(InsuredCardSymbol::as_str),
            number.as_str(),
            branch.map(InsuredBranchNumber::as_str),
        );
        let tag = hmac::sign(&key.key, &input);
        PatientRef(crate::hex::encode(tag.as_ref()))
    }

    /// The reference of a patient an information result (drug, checkup) names by itself, when
    /// its request was never seen (tap mode: the terminal took it first): the name (kana as
    /// written, else the name), birth date (`yyyyMMdd`) and sex code the result carries. Its
    /// own version tag keeps it from ever equalling a card's reference: it does not join the
    /// patient's other events, it only counts the view as someone's. `None` parts are kept
    /// apart from empty ones.
    pub fn for_named_person(
        key: &PatientHashKey,
        name: Option<&str>,
        birth: Option<&str>,
        sex: Option<&str>,
    ) -> PatientRef {
        let mut input = Vec::with_capacity(128);
        push_lp(&mut input, NAMED_PERSON_REF_VERSION);
        push_opt(&mut input, name);
        push_opt(&mut input, birth);
        push_opt(&mut input, sex);
        let tag = hmac::sign(&key.key, &input);
        PatientRef(crate::hex::encode(tag.as_ref()))
    }

    /// Accepts exactly 64 lowercase hex characters (what [`PatientRef::for_insurance_card`]
    /// produces); uppercase is refused so that one patient has one spelling.
    pub fn parse(s: &str) -> Result<Self, InvalidPatientRef> {
        if s.len() == 64 && s.bytes().all(|b| HEX.contains(&b)) {
            Ok(PatientRef(s.to_owned()))
        } else {
            Err(InvalidPatientRef {
                got_chars: s.chars().count(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_lp(out: &mut Vec<u8>, s: &str) {
    // Identifiers are at most 20 characters, so the length always fits in 4 bytes.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0x00),
        Some(s) => {
            out.push(0x01);
            push_lp(out, s);
        }
    }
}

/// The HMAC input of the module documentation.
fn canonical_input(
    insurer: &str,
    symbol: Option<&str>,
    number: &str,
    branch: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push_lp(&mut out, PATIENT_REF_VERSION);
    push_lp(&mut out, insurer);
    push_opt(&mut out, symbol);
    push_lp(&mut out, number);
    push_opt(&mut out, branch);
    out
}

impl fmt::Display for PatientRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PatientRef {
    type Error = InvalidPatientRef;

    fn try_from(s: String) -> Result<Self, InvalidPatientRef> {
        PatientRef::parse(&s)
    }
}

impl From<PatientRef> for String {
    fn from(r: PatientRef) -> String {
        r.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_named_person_never_shares_a_card_reference() {
        let key = PatientHashKey::from_hex(&"ab".repeat(32)).unwrap();
        let a = PatientRef::for_named_person(&key, Some("ﾔﾏﾀﾞ ﾀﾛｳ"), Some("19800101"), Some("1"));
        assert_eq!(
            a,
            PatientRef::for_named_person(&key, Some("ﾔﾏﾀﾞ ﾀﾛｳ"), Some("19800101"), Some("1"))
        );
        assert_ne!(
            a,
            PatientRef::for_named_person(&key, Some("ﾔﾏﾀﾞ ﾀﾛｳ"), Some("19800102"), Some("1"))
        );
        assert_ne!(
            PatientRef::for_named_person(&key, None, Some("19800101"), None),
            PatientRef::for_named_person(&key, Some(""), Some("19800101"), None)
        );
        assert!(PatientRef::parse(a.as_str()).is_ok());
    }

    use super::*;

    fn key() -> PatientHashKey {
        let bytes: Vec<u8> = (0u8..32).collect();
        PatientHashKey::from_bytes(&bytes).unwrap()
    }

    struct Card {
        insurer: InsurerNumber,
        symbol: Option<InsuredCardSymbol>,
        number: InsuredIdentificationNumber,
        branch: Option<InsuredBranchNumber>,
    }

    impl Card {
        fn new(insurer: &str, symbol: Option<&str>, number: &str, branch: Option<&str>) -> Card {
            Card {
                insurer: InsurerNumber::parse(insurer).unwrap(),
                symbol: symbol.map(|s| InsuredCardSymbol::parse(s).unwrap()),
                number: InsuredIdentificationNumber::parse(number).unwrap(),
                branch: branch.map(|s| InsuredBranchNumber::parse(s).unwrap()),
            }
        }

        fn reference(&self, key: &PatientHashKey) -> PatientRef {
            PatientRef::for_insurance_card(
                key,
                &self.insurer,
                self.symbol.as_ref(),
                &self.number,
                self.branch.as_ref(),
            )
        }
    }

    #[test]
    fn known_answer() {
        // Computed independently with Python:
        // hmac.new(bytes(range(32)), input, hashlib.sha256).hexdigest(), where input is the
        // canonical encoding of the module documentation.
        let card = Card::new("06139158", Some("記号1"), "1234", Some("01"));
        assert_eq!(
            canonical_input("06139158", Some("記号1"), "1234", Some("01")),
            [
                &[0, 0, 0, 22][..],
                b"onshi-fleet/patient/v1",
                &[0, 0, 0, 8],
                b"06139158",
                &[1, 0, 0, 0, 7],
                "記号1".as_bytes(),
                &[0, 0, 0, 4],
                b"1234",
                &[1, 0, 0, 0, 2],
                b"01",
            ]
            .concat()
        );
        assert_eq!(card.reference(&key()).as_str(), KNOWN_ANSWER);
        let nhi = Card::new("  138156", None, "4260", None);
        assert_eq!(nhi.reference(&key()).as_str(), KNOWN_ANSWER_NHI);
    }

    const KNOWN_ANSWER: &str = "a0aa789a711d47774c0150cb42addbf38827087dd2fd638a8acfbcc05783225a";
    const KNOWN_ANSWER_NHI: &str =
        "b8ae897d9ef797cbf444409882f844ecb59d7c495ff4564196709d4689c262da";

    #[test]
    fn same_card_same_reference_whatever_the_typing() {
        let a = Card::new("138156", Some("12-34"), "4260", Some("1"));
        let b = Card::new("  138156", Some("１２－３４"), "４２６０", Some("01"));
        assert_eq!(a.reference(&key()), b.reference(&key()));
    }

    #[test]
    fn any_field_change_gives_another_reference() {
        let base = Card::new("06139158", Some("12"), "34", Some("01"));
        let variants = [
            Card::new("138156", Some("12"), "34", Some("01")),
            Card::new("06139158", None, "34", Some("01")),
            Card::new("06139158", Some("123"), "34", Some("01")),
            Card::new("06139158", Some("12"), "35", Some("01")),
            Card::new("06139158", Some("12"), "34", Some("02")),
            Card::new("06139158", Some("12"), "34", None),
            // Moving characters between fields must not collide.
            Card::new("06139158", Some("1"), "234", Some("01")),
            Card::new("06139158", None, "1234", Some("01")),
        ];
        let r = base.reference(&key());
        let mut seen = vec![r.clone()];
        for v in &variants {
            let other = v.reference(&key());
            assert!(!seen.contains(&other), "collision for a changed field");
            seen.push(other);
        }
        let other_key = PatientHashKey::from_bytes(&[7u8; 32]).unwrap();
        assert_ne!(base.reference(&other_key), r);
    }

    #[test]
    fn key_rules() {
        assert_eq!(
            PatientHashKey::from_bytes(&[0u8; 31]).unwrap_err(),
            KeyTooShort { got: 31 }
        );
        let k = PatientHashKey::from_bytes(&[0xAB; 64]).unwrap();
        let debug = format!("{k:?}");
        assert_eq!(debug, "PatientHashKey(<redacted>)");
    }

    #[test]
    fn parse_and_serde() {
        let r = Card::new("138156", None, "1", None).reference(&key());
        assert_eq!(r.as_str().len(), 64);
        assert_eq!(PatientRef::parse(r.as_str()).unwrap(), r);
        assert!(PatientRef::parse(&r.as_str().to_uppercase()).is_err());
        assert!(PatientRef::parse(&r.as_str()[..63]).is_err());
        assert!(PatientRef::parse("g".repeat(64).as_str()).is_err());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, format!("\"{r}\""));
        assert_eq!(serde_json::from_str::<PatientRef>(&json).unwrap(), r);
        assert!(serde_json::from_str::<PatientRef>("\"abc\"").is_err());
    }
}
