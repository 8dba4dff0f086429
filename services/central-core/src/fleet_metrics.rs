//! Fleet-wide gauges for Prometheus, refreshed by the maintenance loop
//! ([`central_store::fleet_gauges`]) and read at each metrics collection:
//!
//! - `central_alerts_open{kind}`: opened, unresolved alerts;
//! - `central_sites{state,open}`: sites by availability state (`online`, `agent_down`,
//!   `terminal_not_answering`, …) and whether they are open now;
//! - `central_certificates_expiring{within_days}`: current certificates expiring within 0 (already
//!   expired), 7 and 30 days;
//! - `central_ingest_backlog_events`: events agents produced that central does not hold yet;
//! - `central_db_synchronous_standby`: 1 when PostgreSQL commits synchronously to a standby (an
//!   ack survives a failover), 0 when an ack is on the primary alone;
//! - `central_db_replica_lag_seconds`: how far the read replica the pages and listings read
//!   (`--read-database-url`) is behind the primary; 0 without one.
//!
//! Every replica exports the same fleet-wide values (they come from the database), so rules
//! aggregate them with `max`, never `sum`. Labels are kinds and states, never a site, patient or
//! staff identifier. The helm chart's PrometheusRule and Grafana dashboard are written against
//! these names; `tests/tests/telemetry.rs` checks that they are exported.

use std::sync::{LazyLock, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;

use central_store::fleet_gauges::{CERTIFICATE_HORIZONS_DAYS, FleetGauges};

static LATEST: Mutex<Option<FleetGauges>> = Mutex::new(None);

/// Replaces the values the gauges report; registers them on first use (after the binary
/// installed its meter provider, or not: then it is a no-op).
pub(crate) fn publish(gauges: FleetGauges) {
    LazyLock::force(&INSTRUMENTS);
    *LATEST.lock().unwrap_or_else(|p| p.into_inner()) = Some(gauges);
}

fn read<T>(f: impl FnOnce(&FleetGauges) -> T) -> Option<T> {
    LATEST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(f)
}

static INSTRUMENTS: LazyLock<[ObservableGauge<f64>; 6]> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("central");
    [
        meter
            .f64_observable_gauge("central_alerts_open")
            .with_description("Opened, unresolved alerts by kind (fleet-wide)")
            .with_callback(|observer| {
                for (kind, n) in read(|g| g.open_alerts.clone()).unwrap_or_default() {
                    observer.observe(n as f64, &[KeyValue::new("kind", kind)]);
                }
            })
            .build(),
        meter
            .f64_observable_gauge("central_sites")
            .with_description("Sites by availability state and whether they are open now")
            .with_callback(|observer| {
                for ((state, open), n) in read(|g| g.sites.clone()).unwrap_or_default() {
                    observer.observe(
                        n as f64,
                        &[
                            KeyValue::new("state", state),
                            KeyValue::new("open", open.to_string()),
                        ],
                    );
                }
            })
            .build(),
        meter
            .f64_observable_gauge("central_certificates_expiring")
            .with_description(
                "Current certificates expiring within the given days (0: already expired)",
            )
            .with_callback(|observer| {
                if let Some(counts) = read(|g| g.certificates_expiring) {
                    for (days, n) in CERTIFICATE_HORIZONS_DAYS.iter().zip(counts) {
                        observer
                            .observe(n as f64, &[KeyValue::new("within_days", days.to_string())]);
                    }
                }
            })
            .build(),
        meter
            .f64_observable_gauge("central_ingest_backlog_events")
            .with_description("Events agents reported producing that central does not hold yet")
            .with_callback(|observer| {
                if let Some(backlog) = read(|g| g.backlog_events) {
                    observer.observe(backlog, &[]);
                }
            })
            .build(),
        meter
            .f64_observable_gauge("central_db_synchronous_standby")
            .with_description(
                "1 when PostgreSQL commits synchronously to a standby (acks survive a failover)",
            )
            .with_callback(|observer| {
                if let Some(Some(synchronous)) = read(|g| g.synchronous_standby) {
                    observer.observe(if synchronous { 1.0 } else { 0.0 }, &[]);
                }
            })
            .build(),
        meter
            .f64_observable_gauge("central_db_replica_lag_seconds")
            .with_description(
                "How far the read replica the pages read is behind the primary (0 without one)",
            )
            .with_unit("s")
            .with_callback(|observer| {
                if let Some(Some(lag)) = read(|g| g.replica_lag_seconds) {
                    observer.observe(lag, &[]);
                }
            })
            .build(),
    ]
});
