//! Per-stream status and the alerts derived from it.
//!
//! Four conditions are watched per agent stream:
//! - `sequence_gap`: central holds events beyond a hole (highest received > contiguous): an
//!   event the agent sent never arrived, and acks are stuck below it;
//! - `produced_received_divergence`: the agent reported (hello, heartbeat) a sequence central has
//!   not received: events wait at the site (link down, agent stuck, backlog);
//! - `chain_break`: the chain verifier found stored events that do not follow from the site's
//!   hash chain (`chain.rs`); opened at once, and it stays: a break is evidence;
//! - `access_violation`: a view the agent allowed fails central's re-check
//!   (`access_recheck.rs`); opened at once, and it stays;
//! - `site_unavailable`: an open site is not online (agent down, link down, qualification
//!   terminal not answering, national system unreachable, reader unplugged:
//!   `availability.rs`); resolved when it is back or closes.
//!
//! Each check records a condition when it is first observed (a pending row), opens it once it has
//! held longer than its threshold, and resolves it when it clears; a condition that clears
//! before its threshold leaves nothing behind. The unique index `alerts_one_unresolved` is the
//! dedup rule, so checks from several replicas (serialised by an advisory lock anyway) cannot
//! open one condition twice. The checker only reads `agent_streams`, never locks its rows: ingest
//! holds them during writes.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::scope::SiteScope;
use super::{Store, StoreError};

/// Names the alert checker among PostgreSQL advisory locks.
const ALERT_LOCK: i64 = 0x6f6e_7368_6941_6c72; // "onshiAlr"

#[derive(Debug, Clone, Copy)]
pub struct AlertThresholds {
    /// How long a gap may persist before it is an alert.
    pub gap: Duration,
    /// How long produced and received may differ before it is an alert.
    pub divergence: Duration,
    /// How long an open site may be unavailable before it is an alert.
    pub unavailable: Duration,
}

/// What one check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCheck {
    pub opened: u64,
    pub resolved: u64,
}

/// An alert, the one shape every interface lists and acknowledges.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub site_code: String,
    pub stream_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub detail: String,
    /// When and by whom (a login) it was acknowledged.
    #[serde(with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    pub acknowledged_by: Option<String>,
}

/// The columns [`Alert::from_row`] reads.
pub(crate) const ALERT_COLUMNS: &str = "id, kind, site_code, stream_id, observed_at, opened_at,
                                        resolved_at, detail, acknowledged_at, acknowledged_by";

impl Alert {
    /// A row of [`ALERT_COLUMNS`], read by name.
    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Alert {
        Alert {
            id: r.get("id"),
            kind: r.get("kind"),
            site_code: r.get("site_code"),
            stream_id: r.get("stream_id"),
            observed_at: r.get("observed_at"),
            opened_at: r.get("opened_at"),
            resolved_at: r.get("resolved_at"),
            detail: r.get("detail"),
            acknowledged_at: r.get("acknowledged_at"),
            acknowledged_by: r.get("acknowledged_by"),
        }
    }
}

/// Which alerts the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Open and nobody has acknowledged it.
    Open,
    /// Open and acknowledged.
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Resolved,
    ];
    /// Open, acknowledged or not: what the API and `central alerts` list by default.
    pub const UNRESOLVED: [AlertState; 2] = [AlertState::Open, AlertState::Acknowledged];

    pub fn parse(text: &str) -> Option<AlertState> {
        AlertState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    fn condition(self) -> &'static str {
        match self {
            AlertState::Open => "resolved_at IS NULL AND acknowledged_at IS NULL",
            AlertState::Acknowledged => "resolved_at IS NULL AND acknowledged_at IS NOT NULL",
            AlertState::Resolved => "resolved_at IS NOT NULL",
        }
    }
}

/// What acknowledging an alert did.
#[derive(Debug, Clone)]
pub enum Acknowledgement {
    Done(Alert),
    /// No such alert in the principal's scope.
    NotFound,
    /// It is already acknowledged, resolved or not open yet; unchanged.
    NotOpen(Alert),
}

/// Where one agent stream stands.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub site_code: String,
    pub stream_id: Uuid,
    pub agent_version: String,
    /// The highest sequence the agent reported having written (hello, heartbeat).
    pub produced: i64,
    /// The highest sequence central has received.
    pub highest_received: i64,
    /// Central holds every event 1..contiguous; acks never pass it.
    pub contiguous: i64,
    /// produced - contiguous: events the site still holds for central.
    pub lag: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

/// The conditions, as SQL over `agent_streams s`, with their alert detail.
const CONDITIONS: &str = "
    SELECT 'sequence_gap' AS kind, s.site_code, s.stream_id,
           format('events up to sequence %s are all here, but %s arrived: sequences %s.. are missing',
                  s.contiguous_sequence, s.highest_received_sequence, s.contiguous_sequence + 1) AS detail
    FROM agent_streams s WHERE s.highest_received_sequence > s.contiguous_sequence
    UNION ALL
    SELECT 'produced_received_divergence', s.site_code, s.stream_id,
           format('the agent reported sequence %s produced; central received up to %s',
                  s.last_produced_sequence, s.highest_received_sequence)
    FROM agent_streams s WHERE s.last_produced_sequence > s.highest_received_sequence
    UNION ALL
    SELECT 'chain_break', v.site_code, v.stream_id, v.break_detail
    FROM chain_verification v WHERE v.break_detail IS NOT NULL
    UNION ALL
    SELECT 'access_violation', a.site_code, a.stream_id,
           format('%s views allowed at the site fail central''s re-check; the latest: sequence %s, %s',
                  count(*), (array_agg(a.sequence ORDER BY a.found_at DESC, a.sequence DESC))[1],
                  (array_agg(a.detail ORDER BY a.found_at DESC, a.sequence DESC))[1])
    FROM access_violations a GROUP BY a.site_code, a.stream_id
    UNION ALL
    SELECT 'site_unavailable', v.site_code, v.stream_id, v.detail
    FROM site_availability v WHERE v.alerting";

impl Store {
    /// Every agent stream central knows, by site.
    pub async fn stream_statuses(
        &self,
        scope: &SiteScope,
    ) -> Result<Vec<StreamStatus>, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let rows = client
            .query(
                &format!(
                    "SELECT site_code, stream_id, agent_version, last_produced_sequence,
                            highest_received_sequence, contiguous_sequence, first_seen_at,
                            last_seen_at
                     FROM agent_streams WHERE {}
                     ORDER BY site_code, first_seen_at, stream_id",
                    SiteScope::sql("site_code", 1, 2)
                ),
                &[&prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let produced: i64 = r.get(3);
                let contiguous: i64 = r.get(5);
                StreamStatus {
                    site_code: r.get(0),
                    stream_id: r.get(1),
                    agent_version: r.get(2),
                    produced,
                    highest_received: r.get(4),
                    contiguous,
                    lag: (produced - contiguous).max(0),
                    first_seen_at: r.get(6),
                    last_seen_at: r.get(7),
                }
            })
            .collect())
    }

    /// One pass of the alert checker (see the module documentation).
    pub async fn check_alerts(
        &self,
        thresholds: AlertThresholds,
    ) -> Result<AlertCheck, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(ALERT_LOCK).await? {
            // Another replica is checking right now; its result is as good as ours.
            return Ok(AlertCheck::default());
        }
        // Conditions that hold: record when first seen, keep the detail current.
        tx.execute(
            &format!(
                "INSERT INTO alerts (kind, site_code, stream_id, detail)
                 SELECT kind, site_code, stream_id, detail FROM ({CONDITIONS}) c
                 ON CONFLICT (kind, site_code, stream_id) WHERE resolved_at IS NULL
                 DO UPDATE SET detail = EXCLUDED.detail"
            ),
            &[],
        )
        .await?;
        // Conditions that cleared: resolve open alerts, forget pending ones.
        let cleared = format!(
            "resolved_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM ({CONDITIONS}) c
                 WHERE c.kind = alerts.kind AND c.site_code = alerts.site_code
                   AND c.stream_id = alerts.stream_id)"
        );
        let resolved = tx
            .execute(
                &format!(
                    "UPDATE alerts SET resolved_at = now() WHERE opened_at IS NOT NULL AND {cleared}"
                ),
                &[],
            )
            .await?;
        tx.execute(
            &format!("DELETE FROM alerts WHERE opened_at IS NULL AND {cleared}"),
            &[],
        )
        .await?;
        // Conditions that held long enough: open them.
        let opened = tx
            .execute(
                "UPDATE alerts SET opened_at = now()
                 WHERE opened_at IS NULL AND resolved_at IS NULL
                   AND observed_at <= now() - CASE kind
                       WHEN 'sequence_gap' THEN $1::float8
                       WHEN 'chain_break' THEN 0
                       WHEN 'access_violation' THEN 0
                       WHEN 'site_unavailable' THEN $3::float8
                       ELSE $2::float8 END * interval '1 second'",
                &[
                    &thresholds.gap.as_secs_f64(),
                    &thresholds.divergence.as_secs_f64(),
                    &thresholds.unavailable.as_secs_f64(),
                ],
            )
            .await?;
        tx.commit().await?;
        if opened > 0 || resolved > 0 {
            tracing::info!(opened, resolved, "alerts changed");
        }
        Ok(AlertCheck { opened, resolved })
    }

    /// Opened alerts in `scope` in any of `states`, newest first, at most `limit`: the one
    /// listing of alerts (the JSON API, the dashboard's tabs and `central alerts`).
    pub async fn alerts(
        &self,
        states: &[AlertState],
        limit: i64,
        scope: &SiteScope,
    ) -> Result<Vec<Alert>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let in_states = states
            .iter()
            .map(|s| format!("({})", s.condition()))
            .collect::<Vec<_>>()
            .join(" OR ");
        let rows = client
            .query(
                &format!(
                    "SELECT {ALERT_COLUMNS}
                     FROM alerts
                     WHERE opened_at IS NOT NULL AND ({in_states}) AND {}
                     ORDER BY opened_at DESC, id DESC LIMIT $1",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&limit, &prefectures, &sites],
            )
            .await?;
        Ok(rows.iter().map(Alert::from_row).collect())
    }

    /// Marks open alert `id` acknowledged by `login`, if it is in `scope` and nobody has yet;
    /// audited (as `actor`) in the same transaction.
    pub async fn acknowledge_alert(
        &self,
        id: i64,
        scope: &SiteScope,
        login: &str,
        actor: &str,
    ) -> Result<Acknowledgement, StoreError> {
        let mut client = self.conn().await?;
        let (prefectures, sites) = scope.params();
        let tx = client.transaction().await?;
        let updated = tx
            .query_opt(
                &format!(
                    "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $4
                     WHERE id = $3 AND opened_at IS NOT NULL AND resolved_at IS NULL
                       AND acknowledged_at IS NULL AND {}
                     RETURNING {ALERT_COLUMNS}",
                    SiteScope::sql("site_code", 1, 2)
                ),
                &[&prefectures, &sites, &id, &login],
            )
            .await?;
        let Some(row) = updated else {
            let current = tx
                .query_opt(
                    &format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts
                         WHERE id = $3 AND opened_at IS NOT NULL AND {}",
                        SiteScope::sql("site_code", 1, 2)
                    ),
                    &[&prefectures, &sites, &id],
                )
                .await?;
            return Ok(match current {
                Some(row) => Acknowledgement::NotOpen(Alert::from_row(&row)),
                None => Acknowledgement::NotFound,
            });
        };
        let alert = Alert::from_row(&row);
        super::audit_admin(
            &tx,
            Some(&alert.site_code),
            &format!(
                "alert {} ({}) of site {} acknowledged by {actor}",
                alert.id, alert.kind, alert.site_code
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Acknowledgement::Done(alert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_states_round_trip() {
        for state in AlertState::ALL {
            assert_eq!(AlertState::parse(state.as_str()), Some(state));
        }
        assert_eq!(AlertState::parse("closed"), None);
    }
}
