//! Event ingest and the per-stream bookkeeping that acks rest on.

use std::collections::HashSet;

use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};

/// What one committed batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events that were new.
    pub stored: u32,
    /// Events central already had (same id): a resend after a lost ack.
    pub duplicates: u32,
    /// Events refused because their stream position is taken by a different event id.
    pub conflicts: u32,
    /// Highest n such that central holds every event 1..n of the stream.
    pub contiguous: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub site_code: String,
    pub stream_id: Uuid,
    pub sequence: i64,
    pub terminal_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub kind: String,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteSummary {
    pub site_code: String,
    pub events: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub agent_version: Option<String>,
}

/// How many stored sequences one contiguity walk reads at most; the rest is picked up by the
/// next batch. Batches arrive in order, so a walk normally reads just the batch itself.
const CONTIGUITY_WINDOW: i64 = 100_000;

fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// Registers (or refreshes) an agent's stream at hello; returns the contiguous sequence.
    pub async fn open_stream(
        &self,
        site: &SiteCode,
        stream: StreamId,
        agent_version: &str,
        config_hash: &str,
        last_produced: u64,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO agent_streams
                     (site_code, stream_id, agent_version, config_hash, last_produced_sequence)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (site_code, stream_id) DO UPDATE SET
                     agent_version = EXCLUDED.agent_version,
                     config_hash = EXCLUDED.config_hash,
                     last_produced_sequence = GREATEST(agent_streams.last_produced_sequence,
                                                       EXCLUDED.last_produced_sequence),
                     last_seen_at = now()
                 RETURNING contiguous_sequence",
                &[
                    &site.as_str(),
                    &stream.0,
                    &agent_version,
                    &config_hash,
                    &seq(last_produced),
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    pub async fn record_heartbeat(
        &self,
        site: &SiteCode,
        stream: StreamId,
        last_produced: u64,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE agent_streams SET
                     last_produced_sequence = GREATEST(last_produced_sequence, $3),
                     last_seen_at = now()
                 WHERE site_code = $1 AND stream_id = $2",
                &[&site.as_str(), &stream.0, &seq(last_produced)],
            )
            .await?;
        Ok(())
    }

    /// Stores a batch in one transaction: new events are inserted, known ids are counted as
    /// duplicates, and the stream's contiguous sequence advances. Nothing is acked before this
    /// returns, so a crash at any point loses nothing the agent still holds.
    pub async fn ingest_batch(
        &self,
        site: &SiteCode,
        stream: StreamId,
        events: &[FleetEvent],
    ) -> Result<BatchOutcome, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Serialises sessions of the same stream (an old one still draining after a reconnect).
        let contiguous: i64 = tx
            .query_one(
                "SELECT contiguous_sequence FROM agent_streams
                 WHERE site_code = $1 AND stream_id = $2 FOR UPDATE",
                &[&site.as_str(), &stream.0],
            )
            .await?
            .get(0);

        let mut ids = Vec::with_capacity(events.len());
        let mut sites = Vec::with_capacity(events.len());
        let mut streams = Vec::with_capacity(events.len());
        let mut sequences = Vec::with_capacity(events.len());
        let mut terminals = Vec::with_capacity(events.len());
        let mut times = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            ids.push(event.id.as_uuid());
            sites.push(event.site.as_str());
            streams.push(stream.0);
            sequences.push(seq(event.sequence));
            terminals.push(event.terminal.as_str());
            times.push(event.occurred_at);
            kinds.push(event.body.kind());
            bodies.push(serde_json::to_value(&event.body).expect("event bodies serialise"));
        }
        let inserted: HashSet<Uuid> = tx
            .query(
                "INSERT INTO events
                     (event_id, site_code, stream_id, sequence, terminal_id, occurred_at, kind, body)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[],
                                      $5::text[], $6::timestamptz[], $7::text[], $8::jsonb[])
                 ON CONFLICT DO NOTHING
                 RETURNING event_id",
                &[
                    &ids, &sites, &streams, &sequences, &terminals, &times, &kinds, &bodies,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();

        let not_inserted: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !inserted.contains(id))
            .collect();
        let known: HashSet<Uuid> = if not_inserted.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "SELECT event_id FROM events WHERE event_id = ANY($1)",
                &[&not_inserted],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let conflicts: Vec<&FleetEvent> = events
            .iter()
            .filter(|e| !inserted.contains(&e.id.as_uuid()) && !known.contains(&e.id.as_uuid()))
            .collect();
        for event in &conflicts {
            tx.execute(
                "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
                 VALUES ('conflicting_sequence', $1, $1, $2)",
                &[
                    &site.as_str(),
                    &format!(
                        "stream {} sequence {} already holds another event; event {} refused",
                        stream.0, event.sequence, event.id
                    ),
                ],
            )
            .await?;
        }

        let contiguous = advance_contiguous(&tx, site, stream, contiguous).await?;
        let highest = sequences.iter().copied().max().unwrap_or(0);
        tx.execute(
            "UPDATE agent_streams SET
                 contiguous_sequence = $3,
                 highest_received_sequence = GREATEST(highest_received_sequence, $4),
                 last_seen_at = now()
             WHERE site_code = $1 AND stream_id = $2",
            &[&site.as_str(), &stream.0, &contiguous, &highest],
        )
        .await?;
        tx.commit().await?;

        Ok(BatchOutcome {
            stored: inserted.len() as u32,
            duplicates: known.len() as u32,
            conflicts: conflicts.len() as u32,
            contiguous: contiguous as u64,
        })
    }

    pub async fn record_security_event(
        &self,
        kind: &str,
        peer_site: Option<&str>,
        claimed_site: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
                 VALUES ($1, $2, $3, $4)",
                &[&kind, &peer_site, &claimed_site, &detail],
            )
            .await?;
        Ok(())
    }

    /// The most recent events of a site, newest first.
    pub async fn events_for_site(
        &self,
        site: &SiteCode,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at,
                        received_at, kind, body
                 FROM events WHERE site_code = $1
                 ORDER BY occurred_at DESC, sequence DESC LIMIT $2",
                &[&site.as_str(), &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredEvent {
                event_id: r.get(0),
                site_code: r.get(1),
                stream_id: r.get(2),
                sequence: r.get(3),
                terminal_id: r.get(4),
                occurred_at: r.get(5),
                received_at: r.get(6),
                kind: r.get(7),
                body: r.get(8),
            })
            .collect())
    }

    /// Every site central has heard from, with its event count.
    pub async fn sites(&self) -> Result<Vec<SiteSummary>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.site_code,
                        (SELECT count(*) FROM events e WHERE e.site_code = s.site_code),
                        (SELECT max(occurred_at) FROM events e WHERE e.site_code = s.site_code),
                        max(s.last_seen_at),
                        (array_agg(s.agent_version ORDER BY s.last_seen_at DESC))[1]
                 FROM agent_streams s GROUP BY s.site_code ORDER BY s.site_code",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SiteSummary {
                site_code: r.get(0),
                events: r.get(1),
                last_event_at: r.get(2),
                last_seen_at: r.get(3),
                agent_version: r.get(4),
            })
            .collect())
    }
}

/// Walks the stored sequences above `from` and returns the end of the gap-free run.
async fn advance_contiguous(
    tx: &deadpool_postgres::Transaction<'_>,
    site: &SiteCode,
    stream: StreamId,
    from: i64,
) -> Result<i64, StoreError> {
    let rows = tx
        .query(
            "SELECT sequence FROM events
             WHERE site_code = $1 AND stream_id = $2 AND sequence > $3
             ORDER BY sequence LIMIT $4",
            &[&site.as_str(), &stream.0, &from, &CONTIGUITY_WINDOW],
        )
        .await?;
    let mut contiguous = from;
    for row in rows {
        let sequence: i64 = row.get(0);
        if sequence != contiguous + 1 {
            break;
        }
        contiguous = sequence;
    }
    Ok(contiguous)
}
