//! Central's periodic work: monthly partitions ahead of time and expiry under the retention policy, the chain verifier (each stream's
//! hash chain as it grows: `store::chain`) and the daily seals of its head (`store::seals`, with
//! a seal key), the re-check of allowed information views (`store::access_recheck`), each
//! site's availability (`store::availability`), the rollout controller (`store::rollouts`), the
//! alert checker, the certificate inventory
//! (projection of inventory events, expiry alerts: `store::certificates`), and the fleet-wide
//! gauges Prometheus scrapes (`crate::fleet_metrics`), the trimming of the notification log
//! (delivered notifications are kept 90 days).
//!
//! Both run in every replica; the store serialises them with advisory locks and they only do
//! what is missing, so running them twice is harmless. A failure (PostgreSQL down) is logged and
//! retried at the next tick; it never stops ingest.

use std::time::Duration;

use central_store::{AlertThresholds, CertificateAlertDays, Store, VerifierPace};

/// How long the delivery log keeps a delivered notification.
const NOTIFICATIONS_KEPT: Duration = Duration::from_secs(90 * 24 * 3600);

/// Views the access re-check reads per pass at most.
const RECHECK_VIEWS_PER_PASS: i64 = 50_000;

/// Events the chain verifier walks per pass at most; at the default interval that is far above
/// any chain's ingest rate, and a backlog (after an upgrade) is caught up over a few passes.
const CHAIN_EVENTS_PER_PASS: u64 = 200_000;

#[derive(Debug, Clone, Copy)]
pub struct MaintenanceConfig {
    /// Monthly partitions kept ready after the current month.
    pub partition_months_ahead: u32,
    pub partition_interval: Duration,
    pub alert_interval: Duration,
    pub thresholds: AlertThresholds,
    /// Certificate expiry alert thresholds (days before expiry); the certificate inventory is
    /// projected and checked at `alert_interval` too.
    pub certificate_alert_days: CertificateAlertDays,
    /// How old a view must be before it is re-checked (longer than the write timeout: see
    /// `Store::recheck_views`).
    pub recheck_settle: Duration,
    /// How long a session may say nothing before central ends it (ingest) and counts the
    /// site's link as down (the availability check): a few agent heartbeats.
    pub silence: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            partition_months_ahead: 2,
            partition_interval: Duration::from_secs(3600),
            alert_interval: Duration::from_secs(30),
            thresholds: AlertThresholds {
                gap: Duration::from_secs(300),
                divergence: Duration::from_secs(900),
                unavailable: Duration::from_secs(120),
            },
            silence: Duration::from_secs(90),
            certificate_alert_days: CertificateAlertDays::default(),
            recheck_settle: Duration::from_secs(60),
        }
    }
}

/// Runs both loops until `stop` completes.
pub async fn run(
    store: Store,
    config: MaintenanceConfig,
    seal_key: Option<std::sync::Arc<central_store::sealing::SealKey>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let partitions = async {
        let mut tick = tokio::time::interval(config.partition_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store
                .ensure_partitions(
                    time::OffsetDateTime::now_utc(),
                    config.partition_months_ahead,
                )
                .await
            {
                Ok(created) if !created.is_empty() => {
                    tracing::info!(?created, "event partitions created")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not create event partitions; retrying later")
                }
            }
            if let Err(error) = store
                .forget_delivered_notifications(NOTIFICATIONS_KEPT)
                .await
            {
                tracing::warn!(%error, "could not trim the notification log; retrying later");
            }
            // The overview's lookups per hour are kept for a window, not for the history.
            if let Err(error) = store
                .prune_lookup_hours(time::OffsetDateTime::now_utc())
                .await
            {
                tracing::warn!(%error, "could not prune the lookups per hour; retrying later");
            }
            // Retention: partitions whose period ran out are dropped, their links kept.
            match store.expire_events().await {
                Ok(dropped) if !dropped.is_empty() => {
                    tracing::info!(?dropped, "expired event partitions dropped")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not expire event partitions; retrying later")
                }
            }
        }
    };
    let alerts = async {
        let mut tick = tokio::time::interval(config.alert_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Before the alert check, so a break found now is an alert in the same pass.
            match store
                .verify_chains_paced(CHAIN_EVENTS_PER_PASS, VerifierPace::BACKGROUND)
                .await
            {
                Ok(check) if check.breaks > 0 => {
                    tracing::warn!(
                        events = check.events,
                        breaks = check.breaks,
                        "hash chain breaks found"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "chain verification failed; retrying later"),
            }
            if let Some(key) = &seal_key
                && let Err(error) = store
                    .seal_streams(key, time::OffsetDateTime::now_utc())
                    .await
            {
                tracing::warn!(%error, "sealing failed; retrying later");
            }
            if let Err(error) = store
                .recheck_views(RECHECK_VIEWS_PER_PASS, config.recheck_settle)
                .await
            {
                tracing::warn!(%error, "the re-check of information views failed; retrying later");
            }
            // Before the alert check, so what it finds is an alert in the same pass.
            if let Err(error) = store
                .check_availability(time::OffsetDateTime::now_utc(), config.silence)
                .await
            {
                tracing::warn!(%error, "the availability check failed; retrying later");
            }
            // After the availability check: the offline gate reads it.
            if let Err(error) = store.step_rollouts(time::OffsetDateTime::now_utc()).await {
                tracing::warn!(%error, "the rollout controller failed; retrying later");
            }
            if let Err(error) = store.check_alerts(config.thresholds).await {
                tracing::warn!(%error, "alert check failed; retrying later");
            }
            if let Err(error) = store
                .check_certificates(
                    time::OffsetDateTime::now_utc(),
                    config.certificate_alert_days,
                )
                .await
            {
                tracing::warn!(%error, "certificate inventory check failed; retrying later");
            }
            // Last, so the gauges show what this pass found.
            match store.fleet_gauges().await {
                Ok(mut gauges) => {
                    gauges.synchronous_standby =
                        store.durability().await.ok().map(|d| d.synchronous());
                    gauges.replica_lag_seconds = store
                        .replica_lag()
                        .await
                        .ok()
                        .map(|lag| lag.map_or(0.0, |lag| lag.as_secs_f64()));
                    crate::fleet_metrics::publish(gauges)
                }
                Err(error) => tracing::warn!(%error, "the fleet gauges could not be read"),
            }
        }
    };
    tokio::select! {
        () = stop => {}
        () = partitions => {}
        () = alerts => {}
    }
}
