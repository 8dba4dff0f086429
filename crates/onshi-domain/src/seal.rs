//! Daily seals: central's signed statement of where a stream's hash chain stood.
//!
//! The hash chain (`chain`) shows that stored events follow one another, but someone who can
//! rewrite a stream's whole tail can recompute every link after the first change. A seal pins
//! the chain down: once a day central signs, per stream, the last sequence its verifier walked
//! and that event's chain hash, together with the hash of the stream's previous seal. A verifier
//! holding central's public key then knows the head at each sealed sequence, so a rewritten
//! tail no longer matches, and the chain of seals outlives the events themselves (retention
//! drops whole partitions; the seals keep the proof that the events existed).
//!
//! Ed25519 (ring). The signed bytes are [`Seal::message`]: a versioned, line-oriented text that
//! names every field, so the same bytes can be rebuilt by any verifier from a stored or exported
//! seal. Signing needs the private key and lives with central; verifying is here.

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::chain::{self, ChainHash};

/// One stream's seal for one day (Asia/Tokyo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub site_code: String,
    pub stream_id: Uuid,
    #[serde(with = "day_format")]
    pub day: Date,
    /// The last sequence sealed: central held and had verified every event up to it.
    pub through_sequence: u64,
    /// The chain hash of the event at `through_sequence`.
    pub head: ChainHash,
    /// [`Seal::hash`] of the stream's previous seal; genesis for the first.
    pub previous: ChainHash,
    #[serde(with = "time::serde::rfc3339")]
    pub sealed_at: OffsetDateTime,
}

impl Seal {
    /// The bytes central signs.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "onshi-fleet seal v1\nsite {}\nstream {}\nday {}\nthrough {}\nhead {}\nprevious {}\n\
             sealed_at {}\n",
            self.site_code,
            self.stream_id,
            self.day,
            self.through_sequence,
            self.head,
            self.previous,
            self.sealed_at.unix_timestamp(),
        )
        .into_bytes()
    }

    /// What the next seal of the stream names as its `previous`.
    pub fn hash(&self) -> ChainHash {
        chain::link(&ChainHash::GENESIS, &self.message())
    }

    /// Whether `signature` is central's (`public_key`, 32 raw Ed25519 bytes) over this seal.
    pub fn verify(&self, public_key: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&self.message(), signature)
            .is_ok()
    }
}

/// A day as `YYYY-MM-DD` in JSON (exports are read by people too).
mod day_format {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;
    use time::macros::format_description;

    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(day: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        let text = day.format(FORMAT).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        Date::parse(&text, FORMAT).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use time::macros::{date, datetime};

    fn seal() -> Seal {
        Seal {
            site_code: "3410712362".into(),
            stream_id: Uuid::from_u128(7),
            day: date!(2026 - 12 - 01),
            through_sequence: 42,
            head: chain::link(&ChainHash::GENESIS, b"event 42"),
            previous: ChainHash::GENESIS,
            sealed_at: datetime!(2026-12-01 15:00 UTC),
        }
    }

    fn key() -> Ed25519KeyPair {
        // A fixed seed: the domain crate has no randomness of its own.
        Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap()
    }

    #[test]
    fn a_signed_seal_verifies_and_any_change_breaks_it() {
        let key = key();
        let public = key.public_key().as_ref().to_vec();
        let seal = seal();
        let signature = key.sign(&seal.message()).as_ref().to_vec();
        assert!(seal.verify(&public, &signature));
        let mut moved = seal.clone();
        moved.through_sequence = 41;
        assert!(!moved.verify(&public, &signature));
        let mut rehead = seal.clone();
        rehead.head = ChainHash::GENESIS;
        assert!(!rehead.verify(&public, &signature));
        let other = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
        assert!(!seal.verify(other.public_key().as_ref(), &signature));
    }

    #[test]
    fn a_seal_round_trips_through_json_with_a_readable_day() {
        let json = serde_json::to_value(seal()).unwrap();
        assert_eq!(json["day"], "2026-12-01");
        let back: Seal = serde_json::from_value(json).unwrap();
        assert_eq!(back, seal());
    }

    #[test]
    fn seals_chain_by_their_hash() {
        let first = seal();
        let mut second = seal();
        second.day = date!(2026 - 12 - 02);
        second.previous = first.hash();
        assert_ne!(first.hash(), second.hash());
        let mut altered = first.clone();
        altered.through_sequence += 1;
        assert_ne!(altered.hash(), second.previous);
    }
}
