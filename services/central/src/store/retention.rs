//! Retention per event kind (migration 0016): the policy chain IT sets, and the expiry pass
//! that drops whole partitions once their period has run out, leaving each event's chain link
//! behind as a stub so verification tells expired from missing.
//!
//! A changed policy shapes the months partitioned after the change (the kind partitions of a
//! month are made with it); months already made keep the periods they were made with.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, audit_admin};

/// Names the expiry pass among PostgreSQL advisory locks.
const RETENTION_LOCK: i64 = 0x6f6e_7368_6952_7474; // "onshiRtt"

/// One line of the policy: an event kind (or `*` for every kind not listed) and its months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub kind: String,
    pub months: i32,
}

/// A partition the expiry pass dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub partition: String,
    pub month_start: time::Date,
    pub months: i32,
    pub events: i64,
}

/// The event kinds central stores, and `*`.
const KINDS: [&str; 10] = [
    "*",
    "lookup",
    "consent",
    "info_view",
    "reader_change",
    "link_change",
    "certificate_inventory",
    "card_check",
    "loss",
    "outbox_pressure",
];

impl Store {
    pub async fn retention_policy(&self) -> Result<Vec<RetentionRule>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT kind, months FROM retention_policy ORDER BY kind = '*' DESC, kind",
                &[],
            )
            .await?
            .iter()
            .map(|r| RetentionRule {
                kind: r.get(0),
                months: r.get(1),
            })
            .collect())
    }

    /// Sets one kind's period (months made from now on follow it); audited.
    pub async fn set_retention(&self, rule: &RetentionRule, by: &str) -> Result<(), StoreError> {
        if !KINDS.contains(&rule.kind.as_str()) {
            return Err(StoreError::BadQuery(format!(
                "{:?} is not an event kind: one of {}",
                rule.kind,
                KINDS.join(", ")
            )));
        }
        if !(1..=1200).contains(&rule.months) {
            return Err(StoreError::BadQuery(
                "a retention period is 1 to 1200 months".into(),
            ));
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO retention_policy (kind, months, updated_by) VALUES ($1, $2, $3)
             ON CONFLICT (kind) DO UPDATE SET months = EXCLUDED.months,
                 updated_by = EXCLUDED.updated_by, updated_at = now()",
            &[&rule.kind, &rule.months, &by],
        )
        .await?;
        audit_admin(
            &tx,
            None,
            &format!(
                "{by} set the retention of {} to {} months (months partitioned from now on)",
                rule.kind, rule.months
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops every partition whose retention ran out by `now` (stubs kept); one replica at a
    /// time. What was dropped is also in `retention_expiries`.
    pub async fn expire_events(&self, now: OffsetDateTime) -> Result<Vec<Expired>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
            .await?
            .get(0);
        if !locked {
            return Ok(Vec::new());
        }
        let dropped = tx
            .query("SELECT * FROM onshi_expire_events($1)", &[&now])
            .await?
            .iter()
            .map(|r| Expired {
                partition: r.get(0),
                month_start: r.get(1),
                months: r.get(2),
                events: r.get(3),
            })
            .collect::<Vec<_>>();
        tx.commit().await?;
        Ok(dropped)
    }
}
