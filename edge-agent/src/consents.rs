//! The consents patients gave on the card reader, kept at the site for their 24 hours.
//!
//! A card lookup whose answer carries consent groups is recorded as a `Consent` event (the
//! durable, audited record, sent to central) and then kept here, so an information view can be
//! decided without asking anyone: [`ConsentStore::get`] gives the patient's latest consent to
//! [`onshi_domain::access::decide`]. Keyed by [`PatientRef`] (the keyed hash): no patient
//! identifier is stored. Its own SQLite file (`<data_dir>/consents.sqlite3`, WAL, fsync on
//! commit), so consents survive an agent restart; a record is deleted 24 hours after its
//! consent ended (kept that long only so a late view is told "expired, use the card again"
//! rather than "no consent").
//!
//! Every method takes the time from the caller, so the 24-hour rule is tested without waiting.

use std::path::Path;
use std::sync::{Arc, Mutex};

use onshi_domain::access::{CONSENT_LIFETIME, ConsentRecord};
use onshi_domain::events::InfoCategory;
use onshi_domain::patient::PatientRef;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum ConsentStoreError {
    #[error("the consent store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the consent store's worker stopped: {0}")]
    Worker(String),
}

/// The site's live consents.
#[derive(Debug, Clone)]
pub struct ConsentStore {
    conn: Arc<Mutex<Connection>>,
}

fn category_name(c: InfoCategory) -> &'static str {
    match c {
        InfoCategory::Drug => "drug",
        InfoCategory::Checkup => "checkup",
        InfoCategory::Diagnosis => "diagnosis",
        InfoCategory::Surgery => "surgery",
    }
}

fn category_of(name: &str) -> Option<InfoCategory> {
    match name {
        "drug" => Some(InfoCategory::Drug),
        "checkup" => Some(InfoCategory::Checkup),
        "diagnosis" => Some(InfoCategory::Diagnosis),
        "surgery" => Some(InfoCategory::Surgery),
        _ => None,
    }
}

impl ConsentStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ConsentStoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS consents (
                 patient_ref TEXT PRIMARY KEY,
                 consented_at INTEGER NOT NULL,
                 categories TEXT NOT NULL
             );",
        )?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, ConsentStoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| ConsentStoreError::Worker(e.to_string()))?
        .map_err(ConsentStoreError::from)
    }

    /// Keeps `record` as `patient`'s consent (replacing an earlier one: a new card reading
    /// states the patient's current choices) and forgets records 24 hours past their end.
    pub async fn put(
        &self,
        patient: &PatientRef,
        record: &ConsentRecord,
        now: OffsetDateTime,
    ) -> Result<(), ConsentStoreError> {
        let patient = patient.as_str().to_string();
        let at = record.consented_at.unix_timestamp();
        let categories = record
            .categories
            .iter()
            .map(|c| category_name(*c))
            .collect::<Vec<_>>()
            .join(",");
        let horizon = (now - CONSENT_LIFETIME * 2i32).unix_timestamp();
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM consents WHERE consented_at <= ?1",
                params![horizon],
            )?;
            conn.execute(
                "INSERT INTO consents (patient_ref, consented_at, categories) VALUES (?1, ?2, ?3)
                 ON CONFLICT (patient_ref) DO UPDATE SET consented_at = ?2, categories = ?3",
                params![patient, at, categories],
            )?;
            Ok(())
        })
        .await
    }

    /// `patient`'s latest consent, live or recently ended (`decide` tells which), if any is
    /// kept at `now`.
    pub async fn get(
        &self,
        patient: &PatientRef,
        now: OffsetDateTime,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        let patient = patient.as_str().to_string();
        let row: Option<(i64, String)> = self
            .with(move |conn| {
                conn.query_row(
                    "SELECT consented_at, categories FROM consents WHERE patient_ref = ?1",
                    params![patient],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await?;
        Ok(row.and_then(|(at, categories)| {
            let consented_at = OffsetDateTime::from_unix_timestamp(at).ok()?;
            (now < consented_at + CONSENT_LIFETIME * 2i32).then(|| ConsentRecord {
                consented_at,
                categories: categories.split(',').filter_map(category_of).collect(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::access::{PolicyVersion, Role, ViewRequest, decide};
    use onshi_domain::ids::Prefecture;
    use onshi_domain::patient::PatientHashKey;
    use onshi_domain::site::SiteKind;
    use time::Duration;
    use time::macros::datetime;

    fn patient(n: &str) -> PatientRef {
        let key = PatientHashKey::from_bytes(&[7u8; 32]).unwrap();
        PatientRef::for_insurance_card(
            &key,
            &onshi_domain::ids::InsurerNumber::parse("138156").unwrap(),
            None,
            &onshi_domain::ids::InsuredIdentificationNumber::parse(n).unwrap(),
            None,
        )
    }

    fn decide_at(
        consent: Option<&ConsentRecord>,
        category: InfoCategory,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        decide(&ViewRequest {
            policy: PolicyVersion::CURRENT,
            site_kind: SiteKind::Pharmacy,
            site_prefecture: Prefecture::parse("27").unwrap(),
            role: Role::Pharmacist,
            category,
            consent,
            disaster_windows: &[],
            now,
        })
        .map(|_| ())
        .map_err(|r| r.code())
    }

    #[tokio::test]
    async fn consents_survive_a_reopen_and_end_after_24_hours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consents.sqlite3");
        let given = datetime!(2026-04-01 10:00 +09:00);
        let record = ConsentRecord {
            consented_at: given,
            categories: vec![InfoCategory::Drug, InfoCategory::Checkup],
        };
        let alice = patient("1001");
        let bob = patient("1002");
        {
            let store = ConsentStore::open(&path).unwrap();
            store.put(&alice, &record, given).await.unwrap();
        }
        // After a restart (a new connection to the same file), the consent is still there.
        let store = ConsentStore::open(&path).unwrap();
        let kept = store
            .get(&alice, given + Duration::hours(23))
            .await
            .unwrap();
        assert_eq!(kept.as_ref(), Some(&record));
        assert_eq!(store.get(&bob, given).await.unwrap(), None);

        // The injected clock: live at 23 h 59 min, expired at 24 h, forgotten at 48 h.
        let just_before = given + Duration::hours(24) - Duration::minutes(1);
        assert_eq!(
            decide_at(kept.as_ref(), InfoCategory::Drug, just_before),
            Ok(())
        );
        assert_eq!(
            decide_at(kept.as_ref(), InfoCategory::Surgery, just_before),
            Err("not_consented")
        );
        let at_24h = given + Duration::hours(24);
        let late = store.get(&alice, at_24h).await.unwrap();
        assert_eq!(
            decide_at(late.as_ref(), InfoCategory::Drug, at_24h),
            Err("consent_expired")
        );
        let at_48h = given + Duration::hours(48);
        assert_eq!(store.get(&alice, at_48h).await.unwrap(), None);

        // A new reading replaces the choices; old rows are purged on write.
        let again = ConsentRecord {
            consented_at: at_48h,
            categories: vec![InfoCategory::Drug],
        };
        store.put(&bob, &again, at_48h).await.unwrap();
        store.put(&alice, &again, at_48h).await.unwrap();
        let now = store.get(&alice, at_48h).await.unwrap().unwrap();
        assert_eq!(now.categories, vec![InfoCategory::Drug]);
    }
}
