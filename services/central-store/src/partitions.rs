//! Monthly partitions of `events`, created ahead of time.
//!
//! Months are UTC calendar months. `ensure_partitions` creates the month of `now` and the next
//! `months_ahead`; it runs at start and periodically (see `app`). Several replicas may run it at
//! once: the work happens under a transaction-scoped advisory lock and only creates what is
//! missing. Rows that reached `events_default` for a month (a site clock running far ahead) are
//! moved into the month's partition when it is created, since PostgreSQL refuses to create a
//! partition whose range the default partition already holds rows for. Both are done by the
//! schema owner's `onshi_ensure_month_partition` (migration 0006): the application role owns
//! nothing and may not delete events.

use time::{Date, Month, OffsetDateTime};

use super::{Store, StoreError};

/// Names central's partition maintenance among PostgreSQL advisory locks.
const PARTITION_LOCK: i64 = 0x6f6e_7368_6950_6172; // "onshiPar"

/// The first day of the month `months` after the month of `date`.
fn month_start(date: Date, months: u32) -> Date {
    let index = date.year() * 12 + (date.month() as i32 - 1) + months as i32;
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8).expect("1..=12");
    Date::from_calendar_date(index.div_euclid(12), month, 1).expect("the first of a month")
}

/// The partition holding the month starting at `start`.
pub(crate) fn partition_name(start: Date) -> String {
    format!("events_{:04}_{:02}", start.year(), start.month() as u8)
}

impl Store {
    /// Creates the partitions of the month of `now` and of the `months_ahead` months after it,
    /// where missing; returns the names of those created now.
    pub async fn ensure_partitions(
        &self,
        now: OffsetDateTime,
        months_ahead: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await?;
        let today = now.to_offset(time::UtcOffset::UTC).date();
        let mut created = Vec::new();
        for ahead in 0..=months_ahead {
            let start = month_start(today, ahead);
            // The schema owner's function (migration 0006): the application role may not
            // create partitions of `events` itself, nor move rows between them.
            let made: bool = tx
                .query_one("SELECT onshi_ensure_month_partition($1)", &[&start])
                .await?
                .get(0);
            if made {
                created.push(partition_name(start));
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    /// The partitions of `events` with their row counts (estimates are not enough for tests,
    /// and the count is only run by operators and tests).
    pub async fn partitions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass ORDER BY 1",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            // The name comes from the catalog and is quoted as an identifier.
            let count: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\"")),
                    &[],
                )
                .await?
                .get(0);
            out.push((name, count));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn months_roll_over_the_year() {
        assert_eq!(month_start(date!(2026 - 11 - 21), 0), date!(2026 - 11 - 01));
        assert_eq!(month_start(date!(2026 - 11 - 21), 2), date!(2027 - 01 - 01));
        assert_eq!(month_start(date!(2026 - 12 - 31), 1), date!(2027 - 01 - 01));
        assert_eq!(
            month_start(date!(2026 - 01 - 01), 25),
            date!(2028 - 02 - 01)
        );
        assert_eq!(partition_name(date!(2027 - 01 - 01)), "events_2027_01");
    }
}
