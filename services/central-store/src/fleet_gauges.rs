//! The fleet as a handful of numbers for Prometheus (`central_core::fleet_metrics`): open alerts by
//! kind, sites by availability state, certificates near expiry, events waiting at sites. One
//! statement over small tables (alerts, site_availability, certificates, agent_streams), never
//! the events table, so it costs the same however long the history is.

use std::collections::BTreeMap;

use super::{Store, StoreError};

/// Every alert kind (the `alerts_kind_check` constraint, migration 0013): each is reported,
/// zero when none is open, so a rule sees a series, not an absence.
pub const ALERT_KINDS: [&str; 5] = [
    "sequence_gap",
    "produced_received_divergence",
    "chain_break",
    "access_violation",
    "site_unavailable",
];

/// Days before `not_after` the certificate gauge counts (0: already expired).
pub const CERTIFICATE_HORIZONS_DAYS: [i32; 3] = [0, 7, 30];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetGauges {
    /// Opened and unresolved alerts by kind (`site_unavailable`, `chain_break`, …).
    pub open_alerts: BTreeMap<String, i64>,
    /// Sites by availability state and whether they are open now.
    pub sites: BTreeMap<(String, bool), i64>,
    /// Current certificates (not retired, still readable) expiring within each horizon of
    /// [`CERTIFICATE_HORIZONS_DAYS`], in that order.
    pub certificates_expiring: [i64; 3],
    /// Events agents reported producing that central does not hold contiguously yet.
    pub backlog_events: f64,
    /// Whether the server commits synchronously to a standby ([`super::durability`]), as this
    /// replica sees it; set by the caller (`None`: not read).
    pub synchronous_standby: Option<bool>,
    /// How far the read replica the pages read is behind the primary, in seconds (0 without a
    /// replica: the pages read the primary); set by the caller (`None`: not read).
    pub replica_lag_seconds: Option<f64>,
}

impl FleetGauges {
    /// Every series at zero: each alert kind, each availability state open and closed.
    fn zero() -> Self {
        let states = onshi_domain::availability::State::ALL;
        Self {
            open_alerts: ALERT_KINDS.iter().map(|k| (k.to_string(), 0)).collect(),
            sites: states
                .iter()
                .flat_map(|s| [true, false].map(|open| ((s.as_str().to_string(), open), 0)))
                .collect(),
            ..Self::default()
        }
    }
}

impl Store {
    pub async fn fleet_gauges(&self) -> Result<FleetGauges, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_one(
                "SELECT
                   (SELECT coalesce(jsonb_object_agg(kind, n), '{}'::jsonb)
                      FROM (SELECT kind, count(*) AS n FROM alerts
                             WHERE opened_at IS NOT NULL AND resolved_at IS NULL
                             GROUP BY kind) open) AS open_alerts,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(state, open_now, n)), '[]'::jsonb)
                      FROM (SELECT state, open_now, count(*) AS n FROM site_availability
                             GROUP BY state, open_now) states) AS sites,
                   (SELECT array_agg((SELECT count(*) FROM certificates
                                       WHERE retired_at IS NULL AND NOT missing
                                         AND not_after < now() + make_interval(days => d))
                                     ORDER BY d)
                      FROM unnest($1::int4[]) AS d) AS certificates_expiring,
                   (SELECT coalesce(sum(greatest(last_produced_sequence - contiguous_sequence, 0)),
                                    0)::float8
                      FROM agent_streams) AS backlog_events",
                &[&CERTIFICATE_HORIZONS_DAYS.to_vec()],
            )
            .await?;
        let open_alerts: serde_json::Value = row.get("open_alerts");
        let sites: serde_json::Value = row.get("sites");
        let expiring: Vec<i64> = row.get("certificates_expiring");
        let mut gauges = FleetGauges::zero();
        for (kind, n) in open_alerts.as_object().into_iter().flatten() {
            gauges
                .open_alerts
                .insert(kind.clone(), n.as_i64().unwrap_or_default());
        }
        for entry in sites.as_array().into_iter().flatten() {
            if let (Some(state), Some(open), Some(n)) = (
                entry.get(0).and_then(|v| v.as_str()),
                entry.get(1).and_then(|v| v.as_bool()),
                entry.get(2).and_then(|v| v.as_i64()),
            ) {
                gauges.sites.insert((state.to_string(), open), n);
            }
        }
        Ok(FleetGauges {
            certificates_expiring: std::array::from_fn(|i| {
                expiring.get(i).copied().unwrap_or_default()
            }),
            backlog_events: row.get("backlog_events"),
            ..gauges
        })
    }
}
