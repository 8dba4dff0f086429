//! Retention per event kind (migration 0016): the policy chain IT sets, and the expiry pass
//! that drops whole partitions once their period has run out, leaving each event's chain link
//! behind as a stub so verification tells expired from missing.
//!
//! A changed policy shapes the months partitioned after the change (the kind partitions of a
//! month are made with it); months already made keep the periods they were made with.
//!
//! Both go through the schema owner's functions (migration 0018), never through the tables:
//! `onshi_set_retention` refuses a period below the kind's floor and audits the change, and
//! `onshi_expire_events()` reads the database's clock, so the application role cannot make
//! "expiry" erase what is still within its period.

use serde::Serialize;

use super::{Store, StoreError};

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
        let client = self.conn().await?;
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

    /// Sets one kind's period (months made from now on follow it) through the owner's
    /// `onshi_set_retention`, which refuses a period below the kind's floor and writes the
    /// audit row naming `by` and the database role.
    pub async fn set_retention(&self, rule: &RetentionRule, by: &str) -> Result<(), StoreError> {
        if !KINDS.contains(&rule.kind.as_str()) {
            return Err(StoreError::BadQuery(format!(
                "{:?} is not an event kind: one of {}",
                rule.kind,
                KINDS.join(", ")
            )));
        }
        let client = self.conn().await?;
        client
            .execute(
                "SELECT onshi_set_retention($1, $2, $3)",
                &[&rule.kind, &rule.months, &by],
            )
            .await
            .map_err(refused_as_bad_query)?;
        Ok(())
    }

    /// Drops every partition whose retention ran out by the database's clock (stubs kept); one
    /// replica at a time. What was dropped is also in `retention_expiries`.
    pub async fn expire_events(&self) -> Result<Vec<Expired>, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(RETENTION_LOCK).await? {
            return Ok(Vec::new());
        }
        let dropped = tx
            .query("SELECT * FROM onshi_expire_events()", &[])
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

/// A refusal by `onshi_set_retention` (SQLSTATE 22023) is the asker's mistake, with the floor
/// in its message; anything else stays a database error.
fn refused_as_bad_query(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) if *db.code() == tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE => {
            StoreError::BadQuery(db.message().to_string())
        }
        _ => StoreError::Db(error),
    }
}
