//! Consents given on the card reader, per person, as the national side keeps them.
//!
//! A card confirmation that carries the patient's choices records them here with the time of
//! the confirmation; drug and checkup requests are answered only while a consent for that
//! category is live ([`onshi_domain::access::CONSENT_LIFETIME`], 24 hours), unless a disaster
//! window is open ([`crate::disaster`]). A new consent replaces the previous one entirely, as
//! a new card reading does. In memory: a restarted simulator has forgotten every consent.

use std::collections::HashMap;
use std::sync::Mutex;

use onshi_domain::access::ConsentRecord;
use onshi_domain::events::InfoCategory;
use onshi_domain::ids::{InsuredBranchNumber, InsuredIdentificationNumber, InsurerNumber};
use time::OffsetDateTime;

use crate::population::Person;

/// A person as the simulator's consent and history tables know them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersonKey {
    pub insurer_number: InsurerNumber,
    pub number: InsuredIdentificationNumber,
    pub branch: Option<InsuredBranchNumber>,
}

impl PersonKey {
    pub fn of(person: &Person) -> Self {
        PersonKey {
            insurer_number: person.insurer_number.clone(),
            number: person.number.clone(),
            branch: person.branch.clone(),
        }
    }

    /// A stable 64-bit number for the person (FNV-1a of the identifiers), to seed their
    /// histories.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |s: &str| {
            for b in s.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(self.insurer_number.as_str());
        feed(self.number.as_str());
        feed(self.branch.as_ref().map_or("", |b| b.as_str()));
        h
    }
}

/// The live consents.
#[derive(Debug, Default)]
pub struct Consents {
    by_person: Mutex<HashMap<PersonKey, ConsentRecord>>,
}

impl Consents {
    /// Records `record` for `person`, replacing what was there; forgets consents that ended.
    pub fn record(&self, person: PersonKey, record: ConsentRecord) {
        let mut map = self.by_person.lock().unwrap_or_else(|p| p.into_inner());
        let now = record.consented_at;
        map.retain(|_, r| r.available_until() > now);
        map.insert(person, record);
    }

    /// Whether `person` consented to `category` and the consent is live at `now`.
    pub fn live(&self, person: &PersonKey, category: InfoCategory, now: OffsetDateTime) -> bool {
        let map = self.by_person.lock().unwrap_or_else(|p| p.into_inner());
        map.get(person).is_some_and(|r| {
            r.categories.contains(&category) && r.consented_at <= now && now < r.available_until()
        })
    }

    pub fn len(&self) -> usize {
        self.by_person
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    #[test]
    fn consent_is_live_for_its_categories_for_24_hours() {
        let population = crate::population::Population::generate(42, 10);
        let person = PersonKey::of(&population.people()[0]);
        let other = PersonKey::of(&population.people()[5]);
        let at = datetime!(2026-04-01 01:00 UTC);
        let consents = Consents::default();
        consents.record(
            person.clone(),
            ConsentRecord {
                consented_at: at,
                categories: vec![InfoCategory::Drug],
            },
        );
        assert!(consents.live(&person, InfoCategory::Drug, at + Duration::hours(23)));
        assert!(!consents.live(&person, InfoCategory::Drug, at + Duration::hours(24)));
        assert!(!consents.live(&person, InfoCategory::Checkup, at));
        assert!(!consents.live(&other, InfoCategory::Drug, at));
        assert_ne!(person.stable_hash(), other.stable_hash());
        // A new reading replaces the consent.
        consents.record(
            person.clone(),
            ConsentRecord {
                consented_at: at + Duration::hours(1),
                categories: vec![InfoCategory::Checkup],
            },
        );
        assert!(!consents.live(&person, InfoCategory::Drug, at + Duration::hours(2)));
        assert!(consents.live(&person, InfoCategory::Checkup, at + Duration::hours(2)));
    }
}
