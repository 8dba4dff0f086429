//! How old the data on the pages is, when they read a replica (`--read-database-url`): every
//! page says so once the replica is further behind than the warning threshold. A follower task
//! (started by `app` only with a replica) measures the lag every second; pages read the last
//! measurement, so a page never waits on it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use maud::{Markup, html};

use central_store::Store;

/// The last measured lag in milliseconds; negative: no replica, or not measured.
static LAG_MS: AtomicI64 = AtomicI64::new(-1);
/// From how far behind the pages say so.
static WARN_AFTER_MS: AtomicI64 = AtomicI64::new(5_000);

/// The notice every page shows while the replica is behind; nothing otherwise.
pub(crate) fn banner() -> Markup {
    let lag = LAG_MS.load(Ordering::Relaxed);
    let warn = WARN_AFTER_MS.load(Ordering::Relaxed);
    html! {
        @if lag >= 0 && lag > warn {
            @let seconds = lag / 1000;
            p.notice #replica-lag role="status" {
                "表示中のデータは約" (seconds) "秒前のものです（読み取り用レプリカの遅れ）。"
                span.en { " The data shown is about " (seconds) " s old (the read replica is behind)." }
            }
        }
    }
}

/// Measures the replica's lag every second until `stop`; pages warn past `warn_after`.
pub async fn follow(store: Store, warn_after: Duration, stop: impl Future<Output = ()>) {
    WARN_AFTER_MS.store(warn_after.as_millis() as i64, Ordering::Relaxed);
    let follow = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let lag = match store.replica_lag().await {
                Ok(Some(lag)) => lag.as_millis() as i64,
                Ok(None) => -1,
                Err(error) => {
                    tracing::warn!(%error, "cannot measure the read replica's lag");
                    continue;
                }
            };
            LAG_MS.store(lag, Ordering::Relaxed);
        }
    };
    tokio::select! {
        () = stop => {}
        () = follow => {}
    }
}
