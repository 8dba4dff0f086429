//! Verifying the sites' hash chains (`onshi_domain::chain`) against what PostgreSQL holds.
//!
//! Two readers of the same rows:
//! - the verifier ([`Store::verify_chains`], run by the maintenance task): follows each stream's
//!   contiguous sequence, walks every event once, keeps its position in `chain_verification`
//!   and turns breaks into a `chain_break` alert naming the site and sequences. It catches what
//!   arrived broken (a forged or faulty agent) and what was altered before it got there;
//! - the audit check ([`Store::verify_period`], `central verify`): walks a whole period again
//!   from the rows as they are now, so an event altered, deleted or moved in PostgreSQL after
//!   the verifier passed is found too.
//!
//! Each event is rebuilt from its row (columns and JSON body) into the domain event, whose
//! canonical encoding (`proto::chain`) must then give the hash the agent linked. A row that
//! cannot even be rebuilt (a body that is no event, an id that is no UUIDv7) was altered.

use std::collections::{BTreeSet, HashMap};

use onshi_domain::chain::{ChainWalk, Finding, merge_ranges};
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::audit::{self, ChainVerdict, EventRecord, StreamVerification, describe, walk_records};

/// Names the chain verifier among PostgreSQL advisory locks.
const CHAIN_LOCK: i64 = 0x6f6e_7368_6943_686e; // "onshiChn"
/// Rows read per query while walking a period (`central verify`).
const PAGE: i64 = 5_000;
/// Findings kept per stream in `chain_verification` (counts are kept in full).
const KEPT_FINDINGS: usize = 100;

/// What one verifier pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainCheck {
    pub events: u64,
    pub breaks: u64,
}

/// How a verifier pass shares PostgreSQL and central's CPU with ingest.
///
/// Walking is read, decode, encode and hash, about 50,000 events a second. A pass over
/// 200,000 events at full speed (the first after a drain) kept central three quarters busy
/// for three to four seconds besides PostgreSQL's reads, and at half ingest's maximum rate it
/// tripled the acks' p99 (README, "Performance"). Beside ingest the verifier therefore walks
/// small pages and rests after each, so that it works a fixed share of the pass's time: acks
/// at the counter cannot wait, the check of a chain can.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifierPace {
    /// Events read per query, i.e. per stream and pass.
    pub page: i64,
    /// The share of the pass's time spent walking, in (0, 1]; after each page the verifier
    /// waits for the rest.
    pub share: f64,
}

impl VerifierPace {
    /// As fast as it goes: the operator's catch-up (`central verify`) and the tests.
    pub const FULL: Self = Self {
        page: PAGE,
        share: 1.0,
    };
    /// Central's maintenance: pages of 500 events (about 10 ms of work each) and a quarter of
    /// the time, about 12,000 events a second, thousands of times a chain's real rate (docs/scale.md).
    pub const BACKGROUND: Self = Self {
        page: 500,
        share: 0.25,
    };

    /// How long to wait after a page that took `busy`.
    fn rest_after(&self, busy: std::time::Duration) -> std::time::Duration {
        if self.share >= 1.0 || self.share <= 0.0 {
            return std::time::Duration::ZERO;
        }
        busy.mul_f64((1.0 - self.share) / self.share)
    }
}

/// A row of [`EVENTS_PAGE`] as the record the checks read.
pub(super) fn record(row: &Row) -> EventRecord {
    EventRecord {
        sequence: row.get(0),
        event_id: row.get(1),
        terminal_id: row.get(2),
        occurred_at: row.get(3),
        body: row.get(4),
        chain_hash: row
            .get::<_, Option<Vec<u8>>>(5)
            .map(|h| onshi_domain::hex::encode(&h)),
        expired: row.get(6),
    }
}

/// Walks one page of rows on a blocking thread and returns the findings and the walk moved on.
/// A page is up to [`PAGE`] events, each decoded from JSON, re-encoded and hashed: tens of
/// milliseconds of CPU that, on an async worker, would hold up every session and group commit
/// scheduled behind it (a catch-up after a drain walks hundreds of thousands of events).
async fn walk_rows(
    site_code: &str,
    rows: Vec<Row>,
    mut walk: ChainWalk,
) -> Result<(Vec<Finding>, ChainWalk), StoreError> {
    let site_code = site_code.to_string();
    let walked = tokio::task::spawn_blocking(move || {
        let records: Vec<EventRecord> = rows.iter().map(record).collect();
        let findings = walk_records(&site_code, &records, &mut walk);
        (findings, walk)
    })
    .await;
    match walked {
        Ok(walked) => Ok(walked),
        // A panic in the walk is a bug: surface it as it would have surfaced inline.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(StoreError::ShuttingDown),
    }
}

/// Events and the stubs of expired ones (`chain_records`, migration 0016), in stream order.
const EVENTS_PAGE: &str = "SELECT sequence, event_id, terminal_id, occurred_at, body, chain_hash,
            expired
     FROM chain_records
     WHERE site_code = $1 AND stream_id = $2 AND sequence > $3 AND sequence <= $4
     ORDER BY sequence LIMIT $5";

impl Store {
    /// One pass of the chain verifier at full speed: every stream whose contiguous run has
    /// grown is walked from where the last pass stopped, at most `max_events` events in all.
    pub async fn verify_chains(&self, max_events: u64) -> Result<ChainCheck, StoreError> {
        self.verify_chains_paced(max_events, VerifierPace::FULL)
            .await
    }

    /// [`Store::verify_chains`] at `pace`: a page of each stream per pass, and a rest after
    /// each page.
    ///
    /// Each page is a transaction of its own, and the rests are outside any. A pass held in one
    /// transaction kept PostgreSQL from pruning the versions that ingest leaves behind in the
    /// rows it updates in every group (the streams' positions, the summaries), so those updates
    /// got slower for as long as the pass lasted.
    pub async fn verify_chains_paced(
        &self,
        max_events: u64,
        pace: VerifierPace,
    ) -> Result<ChainCheck, StoreError> {
        // The streams that have grown; each page reads its stream's position again under the
        // lock, so a stream walked meanwhile (by another replica) is continued, not repeated.
        let streams: Vec<(String, Uuid)> = self
            .conn()
            .await?
            .query(
                "SELECT s.site_code, s.stream_id
                 FROM agent_streams s
                 LEFT JOIN chain_verification v USING (site_code, stream_id)
                 WHERE s.contiguous_sequence > coalesce((v.walk->>'through')::bigint, 0)
                 ORDER BY s.site_code, s.stream_id",
                &[],
            )
            .await?
            .iter()
            .map(|row| (row.get("site_code"), row.get("stream_id")))
            .collect();
        let mut check = ChainCheck::default();
        for (site_code, stream_id) in streams {
            if check.events >= max_events {
                break;
            }
            let started = std::time::Instant::now();
            let limit = pace
                .page
                .min(i64::try_from(max_events - check.events).unwrap_or(i64::MAX));
            let Some(page) = self.verify_page(&site_code, stream_id, limit).await? else {
                break; // another replica is walking
            };
            check.events += page.events;
            check.breaks += page.breaks;
            tokio::time::sleep(pace.rest_after(started.elapsed())).await;
        }
        Ok(check)
    }

    /// Walks up to `limit` events of one stream from where the verifier stopped, and records
    /// how far it got, in one transaction under the verifier's lock; `None` when another
    /// replica holds the lock.
    async fn verify_page(
        &self,
        site_code: &str,
        stream_id: Uuid,
        limit: i64,
    ) -> Result<Option<ChainCheck>, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(CHAIN_LOCK).await? {
            return Ok(None);
        }
        let Some(stream) = tx
            .query_opt(
                "SELECT s.contiguous_sequence, v.walk, v.findings
                 FROM agent_streams s
                 LEFT JOIN chain_verification v USING (site_code, stream_id)
                 WHERE s.site_code = $1 AND s.stream_id = $2",
                &[&site_code, &stream_id],
            )
            .await?
        else {
            return Ok(Some(ChainCheck::default()));
        };
        let contiguous: i64 = stream.get("contiguous_sequence");
        let mut walk: ChainWalk = stream
            .get::<_, Option<serde_json::Value>>("walk")
            .and_then(|w| serde_json::from_value(w).ok())
            .unwrap_or_default();
        let mut kept: Vec<Finding> = stream
            .get::<_, Option<serde_json::Value>>("findings")
            .and_then(|f| serde_json::from_value(f).ok())
            .unwrap_or_default();
        let rows = tx
            .query(
                EVENTS_PAGE,
                &[
                    &site_code,
                    &stream_id,
                    &(walk.through as i64),
                    &contiguous,
                    &limit,
                ],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Some(ChainCheck::default()));
        }
        let walked = rows.len();
        let (mut findings, walked_on) = walk_rows(site_code, rows, walk).await?;
        walk = walked_on;
        if walked < limit as usize && (walk.through as i64) < contiguous {
            // The stream says it holds events up to `contiguous`; rows are gone below it.
            findings.push(Finding::Missing {
                first: walk.through + 1,
                last: contiguous as u64,
            });
            walk.through = contiguous as u64;
            walk.head = None;
        }
        let breaks: Vec<&Finding> = findings.iter().filter(|f| f.is_break()).collect();
        let page = ChainCheck {
            events: walked as u64,
            breaks: breaks.len() as u64,
        };
        let detail = breaks.last().map(|f| describe(f));
        if let Some(detail) = &detail {
            tracing::warn!(site = %site_code, stream = %stream_id, finding = %detail, "hash chain broken");
        }
        kept.extend(findings);
        let kept = merge_ranges(kept);
        let kept = &kept[kept.len().saturating_sub(KEPT_FINDINGS)..];
        tx.execute(
            "INSERT INTO chain_verification
                 (site_code, stream_id, walk, events, breaks, findings, break_detail, verified_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())
             ON CONFLICT (site_code, stream_id) DO UPDATE SET
                 walk = EXCLUDED.walk,
                 events = chain_verification.events + EXCLUDED.events,
                 breaks = chain_verification.breaks + EXCLUDED.breaks,
                 findings = EXCLUDED.findings,
                 break_detail = coalesce(EXCLUDED.break_detail, chain_verification.break_detail),
                 verified_at = now()",
            &[
                &site_code,
                &stream_id,
                &serde_json::to_value(&walk).expect("a walk serialises"),
                &(walked as i64),
                &(page.breaks as i64),
                &serde_json::to_value(kept).expect("findings serialise"),
                &detail,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(page))
    }

    /// Walks every stream of `site` (or of every site) over the events that occurred in
    /// `from..to` (or all of them), from the rows as they are now.
    pub async fn verify_period(
        &self,
        site: Option<&SiteCode>,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<ChainVerdict, StoreError> {
        let client = self.conn().await?;
        let whole = from.is_none() && to.is_none();
        // The sequence range each stream has in the period. For the whole history the range
        // runs to the stream's contiguous sequence, so events deleted at the end are missed too.
        let ranges = client
            .query(
                "SELECT e.site_code, e.stream_id, min(e.sequence), max(e.sequence),
                        max(s.contiguous_sequence)
                 FROM chain_records e
                 LEFT JOIN agent_streams s USING (site_code, stream_id)
                 WHERE ($1::text IS NULL OR e.site_code = $1)
                   AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
                   AND ($3::timestamptz IS NULL OR e.occurred_at < $3)
                 GROUP BY e.site_code, e.stream_id
                 ORDER BY e.site_code, e.stream_id",
                &[&site.map(SiteCode::as_str), &from, &to],
            )
            .await?;
        let mut streams = Vec::new();
        let mut seal_keys = BTreeSet::new();
        for range in ranges {
            let site_code: String = range.get(0);
            let stream_id: Uuid = range.get(1);
            let first: i64 = range.get(2);
            let mut last: i64 = range.get(3);
            let contiguous: Option<i64> = range.get(4);
            let (mut walk, anchored_at) = if whole || first <= 1 {
                (ChainWalk::default(), None)
            } else {
                // Mid-stream: the first event's link cannot be checked without its predecessor.
                (
                    ChainWalk::anchored_after(first as u64 - 1),
                    Some(first as u64),
                )
            };
            if whole {
                last = last.max(contiguous.unwrap_or(0));
            }
            let mut findings = Vec::new();
            let mut events = 0u64;
            loop {
                let rows = client
                    .query(
                        EVENTS_PAGE,
                        &[&site_code, &stream_id, &(walk.through as i64), &last, &PAGE],
                    )
                    .await?;
                let page = rows.len();
                events += page as u64;
                let (page_findings, walked_on) = walk_rows(&site_code, rows, walk).await?;
                findings.extend(page_findings);
                walk = walked_on;
                if (page as i64) < PAGE {
                    break;
                }
            }
            if (walk.through as i64) < last {
                findings.push(Finding::Missing {
                    first: walk.through + 1,
                    last: last as u64,
                });
            }
            let first_walked = if whole { 1 } else { first as u64 };
            let seals = self
                .check_stream_seals(
                    &site_code,
                    stream_id,
                    (first_walked, last as u64),
                    &mut findings,
                    &mut seal_keys,
                )
                .await?;
            streams.push(StreamVerification::new(
                site_code,
                stream_id,
                (first_walked, last as u64),
                events,
                anchored_at,
                seals,
                findings,
            ));
        }
        Ok(ChainVerdict::new(
            site.map(|s| s.to_string()),
            (from, to),
            streams,
            seal_keys,
        ))
    }

    /// [`audit::check_seals`] for one stream, with the chain hashes of the sealed events read
    /// in one query.
    async fn check_stream_seals(
        &self,
        site_code: &str,
        stream: Uuid,
        (first, last): (u64, u64),
        findings: &mut Vec<Finding>,
        keys: &mut BTreeSet<String>,
    ) -> Result<u64, StoreError> {
        let seals = self.seals(site_code, stream).await?;
        let sealed: Vec<i64> = seals
            .iter()
            .map(|s| s.seal.through_sequence as i64)
            .collect();
        let held: HashMap<i64, Option<String>> = self
            .conn()
            .await?
            .query(
                "SELECT sequence, chain_hash FROM chain_records
                 WHERE site_code = $1 AND stream_id = $2 AND sequence = ANY($3)",
                &[&site_code, &stream, &sealed],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, Option<Vec<u8>>>(1)
                        .map(|h| onshi_domain::hex::encode(&h)),
                )
            })
            .collect();
        Ok(audit::check_seals(
            &seals,
            first,
            last,
            |sequence| held.get(&(sequence as i64)).cloned(),
            findings,
            keys,
        ))
    }
}

impl Store {
    /// The audit bundle of `site` over `from..to` (or all time): for each stream, its events
    /// from the first that occurred in the period to the last (so the chain is whole between
    /// them), and every seal of the stream (the seal chain is checked from its start). The
    /// export is recorded as a security event naming `exported_by`.
    pub async fn export_bundle(
        &self,
        site: &SiteCode,
        (from, to): (Option<OffsetDateTime>, Option<OffsetDateTime>),
        exported_by: &str,
        now: OffsetDateTime,
    ) -> Result<audit::Bundle, StoreError> {
        let client = self.conn().await?;
        let ranges = client
            .query(
                "SELECT stream_id, min(sequence), max(sequence) FROM chain_records
                 WHERE site_code = $1
                   AND ($2::timestamptz IS NULL OR occurred_at >= $2)
                   AND ($3::timestamptz IS NULL OR occurred_at < $3)
                 GROUP BY stream_id ORDER BY stream_id",
                &[&site.as_str(), &from, &to],
            )
            .await?;
        let mut streams = Vec::with_capacity(ranges.len());
        for range in ranges {
            let stream_id: Uuid = range.get(0);
            let (first, last): (i64, i64) = (range.get(1), range.get(2));
            let from_start = (from.is_none() && to.is_none()) || first <= 1;
            let start = if from_start { 0 } else { first - 1 };
            let events = client
                .query(
                    "SELECT sequence, event_id, terminal_id, occurred_at, body, chain_hash,
                            expired
                     FROM chain_records
                     WHERE site_code = $1 AND stream_id = $2 AND sequence > $3 AND sequence <= $4
                     ORDER BY sequence",
                    &[&site.as_str(), &stream_id, &start, &last],
                )
                .await?
                .iter()
                .map(record)
                .collect();
            streams.push(audit::BundleStream {
                stream_id,
                from_start,
                events,
                seals: self.seals(site.as_str(), stream_id).await?,
            });
        }
        let bundle = audit::Bundle {
            format: audit::BUNDLE_FORMAT.to_string(),
            site_code: site.to_string(),
            from,
            to,
            exported_at: now,
            exported_by: exported_by.to_string(),
            streams,
        };
        let events: usize = bundle.streams.iter().map(|s| s.events.len()).sum();
        self.record_security_event(
            "audit_export",
            Some(site.as_str()),
            None,
            &format!(
                "audit bundle of {events} events of site {site} ({} to {}) exported by {exported_by}",
                from.map_or("the start".to_string(), |t| t.to_string()),
                to.map_or("now".to_string(), |t| t.to_string()),
            ),
        )
        .await?;
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_background_pace_rests_three_times_what_a_page_took() {
        let rest = VerifierPace::BACKGROUND.rest_after(Duration::from_millis(10));
        assert_eq!(rest, Duration::from_millis(30));
    }

    #[test]
    fn full_speed_never_rests() {
        assert_eq!(
            VerifierPace::FULL.rest_after(Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}
