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

use onshi_domain::chain::{ChainHash, ChainStep, ChainWalk, Finding, merge_ranges};
use onshi_domain::events::{EventBody, EventId, FleetEvent};
use onshi_domain::site::{SiteCode, TerminalId};
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

/// Names the chain verifier among PostgreSQL advisory locks.
const CHAIN_LOCK: i64 = 0x6f6e_7368_6943_686e; // "onshiChn"
/// Rows read per query while walking.
const PAGE: i64 = 5_000;
/// Findings kept per stream in `chain_verification` (counts are kept in full).
const KEPT_FINDINGS: usize = 100;

/// What one verifier pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainCheck {
    pub events: u64,
    pub breaks: u64,
}

/// One stream's part of an audit check.
#[derive(Debug, Clone, Serialize)]
pub struct StreamVerification {
    pub site_code: String,
    pub stream_id: Uuid,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub events: u64,
    /// Set when the period starts mid-stream: the link of this first event was taken as given
    /// (only a walk from the stream's start proves it).
    pub anchored_at: Option<u64>,
    /// Daily seals checked against the events (their signature, head and chain).
    pub seals: u64,
    pub findings: Vec<Finding>,
    pub intact: bool,
}

/// The verdict of an audit check over a period.
#[derive(Debug, Clone, Serialize)]
pub struct ChainVerdict {
    pub site_code: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub events: u64,
    pub streams: Vec<StreamVerification>,
    /// The public keys (hex) that signed the seals checked: compare them with central's
    /// published seal key.
    pub seal_keys: Vec<String>,
    pub intact: bool,
}

impl ChainVerdict {
    /// The verdict for a person: one line, then one line per finding.
    pub fn describe(&self) -> String {
        let scope = self
            .site_code
            .as_deref()
            .map_or("all sites".to_string(), |s| format!("site {s}"));
        let mut out = if self.intact {
            let seals: u64 = self.streams.iter().map(|s| s.seals).sum();
            format!(
                "INTACT: {scope}, {} events in {} streams follow their hash chains; {seals} daily \
                 seals agree\n",
                self.events,
                self.streams.len()
            )
        } else {
            let broken = self.streams.iter().filter(|s| !s.intact).count();
            format!(
                "BROKEN: {scope}, {broken} of {} streams have events that are not what the site \
                 recorded\n",
                self.streams.len()
            )
        };
        for key in &self.seal_keys {
            out.push_str(&format!("  seals signed by key {key}\n"));
        }
        for stream in &self.streams {
            for finding in &stream.findings {
                out.push_str(&format!(
                    "  site {} stream {}: {}\n",
                    stream.site_code,
                    stream.stream_id,
                    describe(finding)
                ));
            }
            if let Some(at) = stream.anchored_at {
                out.push_str(&format!(
                    "  site {} stream {}: the period starts at sequence {at}; its own link is \
                     taken as given\n",
                    stream.site_code, stream.stream_id
                ));
            }
        }
        out
    }
}

/// One finding, for a person.
pub fn describe(finding: &Finding) -> String {
    match finding {
        Finding::Broken { sequence } => format!(
            "sequence {sequence} does not follow from the one before it (an event altered, \
             replaced or moved)"
        ),
        Finding::Missing { first, last } if first == last => {
            format!("sequence {first} is missing")
        }
        Finding::Missing { first, last } => format!("sequences {first}..{last} are missing"),
        Finding::HashRemoved { sequence } => {
            format!("sequence {sequence} has lost its chain hash")
        }
        Finding::DeclaredLoss { sequence } => format!(
            "sequence {sequence} is a loss the site declared (a record it could not read back)"
        ),
        Finding::Unchained { first, last } => format!(
            "sequences {first}..{last} were recorded before the agent chained its events \
             (present, not provable)"
        ),
        Finding::Seal {
            day,
            sequence,
            problem,
        } => format!("the seal of {day} (sequence {sequence}): {problem}"),
    }
}

/// A stored row as the domain event the agent recorded, or `None` if it cannot be one.
fn event_from_row(site_code: &str, row: &Row) -> Option<FleetEvent> {
    let sequence: i64 = row.get(0);
    let id: Uuid = row.get(1);
    let terminal: String = row.get(2);
    let occurred_at: OffsetDateTime = row.get(3);
    let body: serde_json::Value = row.get(4);
    let chain_hash: Option<Vec<u8>> = row.get(5);
    Some(FleetEvent {
        id: EventId::from_uuid(id).ok()?,
        site: SiteCode::parse(site_code).ok()?,
        terminal: TerminalId::parse(&terminal).ok()?,
        occurred_at,
        sequence: u64::try_from(sequence).ok()?,
        chain_hash: match chain_hash {
            Some(bytes) => Some(ChainHash::from_slice(&bytes).ok()?),
            None => None,
        },
        body: serde_json::from_value::<EventBody>(body).ok()?,
    })
}

/// Walks the rows (in sequence order) and returns the findings.
fn walk_rows(site_code: &str, rows: &[Row], walk: &mut ChainWalk) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in rows {
        let sequence = row.get::<_, i64>(0).max(0) as u64;
        match event_from_row(site_code, row) {
            Some(event) => {
                let canonical = proto::chain::canonical(&event);
                findings.extend(walk.step(ChainStep {
                    sequence,
                    is_loss: matches!(event.body, EventBody::Loss(_)),
                    stored: event.chain_hash.as_ref(),
                    canonical: &canonical,
                }));
            }
            // Not even an event any more: a break, and the next link is unknown.
            None => findings.extend(walk.step_unreadable(sequence)),
        }
    }
    findings
}

const EVENTS_PAGE: &str = "SELECT sequence, event_id, terminal_id, occurred_at, body, chain_hash
     FROM events
     WHERE site_code = $1 AND stream_id = $2 AND sequence > $3 AND sequence <= $4
     ORDER BY sequence LIMIT $5";

impl Store {
    /// One pass of the chain verifier: every stream whose contiguous run has grown is walked
    /// from where the last pass stopped, at most `max_events` events in all.
    pub async fn verify_chains(&self, max_events: u64) -> Result<ChainCheck, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&CHAIN_LOCK])
            .await?
            .get(0);
        if !locked {
            return Ok(ChainCheck::default()); // another replica is walking
        }
        let streams = tx
            .query(
                "SELECT s.site_code, s.stream_id, s.contiguous_sequence, v.walk, v.findings
                 FROM agent_streams s
                 LEFT JOIN chain_verification v USING (site_code, stream_id)
                 WHERE s.contiguous_sequence > coalesce((v.walk->>'through')::bigint, 0)
                 ORDER BY s.site_code, s.stream_id",
                &[],
            )
            .await?;
        let mut check = ChainCheck::default();
        for stream in streams {
            if check.events >= max_events {
                break;
            }
            let site_code: String = stream.get(0);
            let stream_id: Uuid = stream.get(1);
            let contiguous: i64 = stream.get(2);
            let mut walk: ChainWalk = stream
                .get::<_, Option<serde_json::Value>>(3)
                .and_then(|w| serde_json::from_value(w).ok())
                .unwrap_or_default();
            let mut kept: Vec<Finding> = stream
                .get::<_, Option<serde_json::Value>>(4)
                .and_then(|f| serde_json::from_value(f).ok())
                .unwrap_or_default();
            let limit = PAGE.min(i64::try_from(max_events - check.events).unwrap_or(i64::MAX));
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
                continue;
            }
            let mut findings = walk_rows(&site_code, &rows, &mut walk);
            if rows.len() < limit as usize && (walk.through as i64) < contiguous {
                // The stream says it holds events up to `contiguous`; rows are gone below it.
                findings.push(Finding::Missing {
                    first: walk.through + 1,
                    last: contiguous as u64,
                });
                walk.through = contiguous as u64;
                walk.head = None;
            }
            let breaks: Vec<&Finding> = findings.iter().filter(|f| f.is_break()).collect();
            check.events += rows.len() as u64;
            check.breaks += breaks.len() as u64;
            let detail = breaks.last().map(|f| describe(f));
            if let Some(detail) = &detail {
                tracing::warn!(site = %site_code, stream = %stream_id, finding = %detail, "hash chain broken");
            }
            let new_breaks = breaks.len() as i64;
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
                    &(rows.len() as i64),
                    &new_breaks,
                    &serde_json::to_value(kept).expect("findings serialise"),
                    &detail,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(check)
    }

    /// Walks every stream of `site` (or of every site) over the events that occurred in
    /// `from..to` (or all of them), from the rows as they are now.
    pub async fn verify_period(
        &self,
        site: Option<&SiteCode>,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<ChainVerdict, StoreError> {
        let client = self.pool.get().await?;
        let whole = from.is_none() && to.is_none();
        // The sequence range each stream has in the period. For the whole history the range
        // runs to the stream's contiguous sequence, so events deleted at the end are missed too.
        let ranges = client
            .query(
                "SELECT e.site_code, e.stream_id, min(e.sequence), max(e.sequence),
                        max(s.contiguous_sequence)
                 FROM events e
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
        let mut seal_keys = std::collections::BTreeSet::new();
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
                let walk = ChainWalk {
                    through: first as u64 - 1,
                    head: None,
                    chained: true,
                };
                (walk, Some(first as u64))
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
                events += rows.len() as u64;
                findings.extend(walk_rows(&site_code, &rows, &mut walk));
                if (rows.len() as i64) < PAGE {
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
                .check_seals(
                    &site_code,
                    stream_id,
                    first_walked,
                    last as u64,
                    &mut findings,
                    &mut seal_keys,
                )
                .await?;
            let findings = merge_ranges(findings);
            let intact = !findings.iter().any(Finding::is_break);
            streams.push(StreamVerification {
                site_code,
                stream_id,
                first_sequence: first_walked,
                last_sequence: last as u64,
                events,
                anchored_at,
                seals,
                findings,
                intact,
            });
        }
        let events = streams.iter().map(|s| s.events).sum();
        let intact = streams.iter().all(|s| s.intact);
        Ok(ChainVerdict {
            site_code: site.map(|s| s.to_string()),
            from,
            to,
            events,
            streams,
            seal_keys: seal_keys.into_iter().collect(),
            intact,
        })
    }

    /// Checks the stream's seals whose sequence lies in `first..=last`: each is signed by the
    /// key it names, follows the stream's previous seal, and names the chain hash the event at
    /// its sequence holds. Returns how many were checked.
    async fn check_seals(
        &self,
        site_code: &str,
        stream: Uuid,
        first: u64,
        last: u64,
        findings: &mut Vec<Finding>,
        keys: &mut std::collections::BTreeSet<String>,
    ) -> Result<u64, StoreError> {
        let seals = self.seals(site_code, stream).await?;
        let client = self.pool.get().await?;
        let mut previous = ChainHash::GENESIS;
        let mut checked = 0;
        for stored in &seals {
            let seal = &stored.seal;
            let mut problem = |what: &str| {
                findings.push(Finding::Seal {
                    day: seal.day.to_string(),
                    sequence: seal.through_sequence,
                    problem: what.to_string(),
                })
            };
            let in_range = (first..=last).contains(&seal.through_sequence);
            if seal.previous != previous && in_range {
                problem(
                    "it does not follow the stream's previous seal (a seal removed or replaced)",
                );
            }
            previous = seal.hash();
            if !in_range {
                continue;
            }
            checked += 1;
            keys.insert(onshi_domain::hex::encode(&stored.public_key));
            if !seal.verify(&stored.public_key, &stored.signature) {
                problem("its signature does not verify");
            }
            let held: Option<Option<Vec<u8>>> = client
                .query_opt(
                    "SELECT chain_hash FROM events
                     WHERE site_code = $1 AND stream_id = $2 AND sequence = $3",
                    &[&site_code, &stream, &(seal.through_sequence as i64)],
                )
                .await?
                .map(|r| r.get(0));
            match held {
                None => problem("the sealed event is gone"),
                Some(hash) if hash.as_deref() != Some(seal.head.as_bytes().as_slice()) => {
                    problem("the event there is not the one sealed (the chain was rewritten)")
                }
                Some(_) => {}
            }
        }
        Ok(checked)
    }
}
