//! Stream bookkeeping and the read side of events. The write side is `ingest.rs`.

use onshi_domain::events::{Inventory, StreamId};
use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::scope::SiteScope;
use super::{Store, StoreError, seq};

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

impl StoredEvent {
    /// A row of `SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at,
    /// received_at, kind, body`.
    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Self {
        StoredEvent {
            event_id: r.get(0),
            site_code: r.get(1),
            stream_id: r.get(2),
            sequence: r.get(3),
            terminal_id: r.get(4),
            occurred_at: r.get(5),
            received_at: r.get(6),
            kind: r.get(7),
            body: r.get(8),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteSummary {
    pub site_code: String,
    /// The name chain IT gave it (`PUT /api/v1/sites/{site_code}`), if any.
    pub name: Option<String>,
    /// Events central holds in an unbroken run from each of the site's streams (the sum of
    /// their contiguous sequences: read from the stream rows, never counted over `events`).
    pub events: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub agent_version: Option<String>,
}

/// An agent stream's latest inventory.
#[derive(Debug, Clone, Serialize)]
pub struct StoredInventory {
    pub site_code: String,
    pub stream_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub inventory: Inventory,
}

impl Store {
    /// Keeps `inventory` as the stream's latest (an older snapshot never replaces a newer one).
    pub async fn record_inventory(
        &self,
        site: &SiteCode,
        stream: StreamId,
        inventory: &Inventory,
    ) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO agent_inventory (site_code, stream_id, taken_at, inventory)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (site_code, stream_id) DO UPDATE SET
                     taken_at = EXCLUDED.taken_at, inventory = EXCLUDED.inventory,
                     received_at = now()
                 WHERE agent_inventory.taken_at <= EXCLUDED.taken_at",
                &[
                    &site.as_str(),
                    &stream.0,
                    &inventory.taken_at,
                    &tokio_postgres::types::Json(inventory),
                ],
            )
            .await?;
        Ok(())
    }

    /// The latest inventory of each of `site`'s streams, newest first.
    pub async fn inventories(&self, site: &SiteCode) -> Result<Vec<StoredInventory>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT site_code, stream_id, received_at, inventory FROM agent_inventory
                 WHERE site_code = $1 ORDER BY taken_at DESC",
                &[&site.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let tokio_postgres::types::Json(inventory) = r.get(3);
                Ok(StoredInventory {
                    site_code: r.get(0),
                    stream_id: r.get(1),
                    received_at: r.get(2),
                    inventory,
                })
            })
            .collect()
    }

    /// Whether PostgreSQL answers a query (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.conn().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    /// Registers (or refreshes) an agent's stream at hello; returns the contiguous sequence.
    pub async fn open_stream(
        &self,
        site: &SiteCode,
        stream: StreamId,
        agent_version: &str,
        config_hash: &str,
        last_produced: u64,
    ) -> Result<u64, StoreError> {
        let client = self.conn().await?;
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
        let client = self.conn().await?;
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

    pub async fn record_security_event(
        &self,
        kind: &str,
        peer_site: Option<&str>,
        claimed_site: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let client = self.conn().await?;
        client
            .execute(
                "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
                 VALUES ($1, $2, $3, $4)",
                &[&kind, &peer_site, &claimed_site, &detail],
            )
            .await?;
        Ok(())
    }

    /// Records an export (what, and who made it) as an `audit_export` security event; callers
    /// write it before handing the export out, so an export that cannot be recorded fails.
    pub async fn record_export(&self, what: &str, by: &str) -> Result<(), StoreError> {
        self.record_security_event(
            "audit_export",
            None,
            None,
            &format!("{what} exported by {by}"),
        )
        .await
    }

    /// The most recent events of a site, newest first.
    pub async fn events_for_site(
        &self,
        site: &SiteCode,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.read_conn().await?;
        let rows = client
            .query(
                "SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at,
                        received_at, kind, body
                 FROM events WHERE site_code = $1
                 ORDER BY occurred_at DESC, sequence DESC LIMIT $2",
                &[&site.as_str(), &limit],
            )
            .await?;
        Ok(rows.iter().map(StoredEvent::from_row).collect())
    }

    /// Every site of the chain in `scope`: those with an agent, a planned adoption or a name
    /// in the directory, by code; the latest event from the summaries ingest keeps.
    pub async fn sites(&self, scope: &SiteScope) -> Result<Vec<SiteSummary>, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let rows = client
            .query(
                &format!(
                    "WITH known AS (
                         SELECT site_code FROM agent_streams
                         UNION SELECT site_code FROM site_adoption
                         UNION SELECT site_code FROM sites),
                     streams AS (
                         SELECT site_code, sum(contiguous_sequence)::bigint AS events,
                                max(last_seen_at) AS last_seen_at,
                                (array_agg(agent_version ORDER BY last_seen_at DESC))[1]
                                    AS agent_version
                         FROM agent_streams GROUP BY site_code)
                     SELECT k.site_code, d.name, coalesce(s.events, 0), m.last_event_at,
                            s.last_seen_at, s.agent_version
                     FROM known k
                     LEFT JOIN streams s USING (site_code)
                     LEFT JOIN sites d USING (site_code)
                     LEFT JOIN site_summaries m USING (site_code)
                     WHERE {}
                     ORDER BY k.site_code",
                    SiteScope::sql("k.site_code", 1, 2)
                ),
                &[&prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SiteSummary {
                site_code: r.get(0),
                name: r.get(1),
                events: r.get(2),
                last_event_at: r.get(3),
                last_seen_at: r.get(4),
                agent_version: r.get(5),
            })
            .collect())
    }
}
