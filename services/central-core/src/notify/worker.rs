//! The delivery worker: claims due notifications (`Store::claim_notifications`), delivers them
//! a bounded number at a time, and records each outcome; a failure is retried with exponential
//! backoff, for as long as it takes (at least once). Every replica runs one; the rows decide
//! who sends what. It has its own small connection pool and its own task, so a slow receiver
//! costs ingest nothing.

use std::sync::Arc;
use std::time::Duration;

use super::key::NotificationKey;
use super::mail::Mailer;
use super::webhook::WebhookClient;
use super::{Message, URGENT_KINDS};
use central_store::Store;
use central_store::notifications::{Claim, Due};

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// How often the worker looks for due rows when there were none.
    pub poll: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// One delivery, from connecting to the answer.
    pub total_timeout: Duration,
    /// The first retry's wait; each later one doubles, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How soon a notification held by quiet hours is looked at again.
    pub hold_recheck: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            batch: 32,
            concurrency: 8,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            hold_recheck: Duration::from_secs(60),
        }
    }
}

impl WorkerConfig {
    /// The wait after the `attempts`-th failure.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.retry_max)
    }
}

/// What delivering needs.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub store: Store,
    pub key: Option<Arc<NotificationKey>>,
    pub webhook: WebhookClient,
    pub mailer: Option<Mailer>,
    pub dashboard_url: Option<String>,
    pub config: WorkerConfig,
}

impl Notifier {
    /// Delivers until `stop` completes. Deliveries run as tasks of their own, at most
    /// `concurrency` at once; the worker claims only as many rows as it has free slots, so a
    /// slow receiver holds at most those slots and never a connection of ingest's pool.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let this = Arc::new(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(this.config.concurrency.max(1)));
        tokio::pin!(stop);
        loop {
            // Wait for one free slot, then take what is free now.
            let first = tokio::select! {
                () = &mut stop => return,
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            };
            let free = 1 + slots.available_permits();
            let claimed = this
                .store
                .claim_notifications(
                    time::OffsetDateTime::now_utc(),
                    Claim {
                        limit: i64::try_from(free).unwrap_or(1).min(this.config.batch),
                        // A claim outlives the delivery, so no other replica sends it meanwhile.
                        lease: this.config.total_timeout * 2 + Duration::from_secs(5),
                        hold_recheck: this.config.hold_recheck,
                        urgent: URGENT_KINDS,
                    },
                )
                .await;
            let wait = match claimed {
                Ok(claimed) if !claimed.due.is_empty() || claimed.held > 0 => {
                    let mut permit = Some(first);
                    for due in claimed.due {
                        let permit = match permit.take() {
                            Some(permit) => permit,
                            None => slots.clone().acquire_owned().await.expect("never closed"),
                        };
                        let this = this.clone();
                        tokio::spawn(async move {
                            this.deliver(due).await;
                            drop(permit);
                        });
                    }
                    // More may be due now (rows behind those quiet hours set aside).
                    continue;
                }
                Ok(_) => this.config.poll,
                Err(error) => {
                    tracing::warn!(%error, "cannot claim notifications; trying again");
                    this.config.poll
                }
            };
            drop(first);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn deliver(&self, due: Due) {
        let outcome = self.send(&due).await;
        match &outcome {
            Ok(()) => tracing::info!(
                notification = due.id,
                endpoint = due.endpoint_id,
                kind = %due.kind,
                event = %due.event,
                "notification delivered"
            ),
            Err(error) => tracing::warn!(
                notification = due.id,
                endpoint = due.endpoint_id,
                attempts = due.attempts,
                %error,
                "notification not delivered; it will be retried"
            ),
        }
        let retry_in = self.config.backoff(due.attempts);
        if let Err(error) = self.store.record_delivery(due.id, outcome, retry_in).await {
            // The claim expires and the row is tried again: at least once.
            tracing::warn!(notification = due.id, %error, "cannot record a delivery");
        }
    }

    async fn send(&self, due: &Due) -> Result<(), String> {
        let message = Message::new(due, self.dashboard_url.as_deref());
        match due.channel.as_str() {
            "webhook" => {
                let key = self.key.as_ref().ok_or(
                    "central has no notification key (--notification-key-file) to open the \
                     webhook's secret",
                )?;
                let sealed = due
                    .secret_sealed
                    .as_deref()
                    .ok_or("the webhook has no secret")?;
                let secret = key.open(sealed)?;
                let body = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
                let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
                self.webhook
                    .send(&due.target, &secret, timestamp, body)
                    .await
            }
            "mail" => {
                let mailer = self.mailer.as_ref().ok_or(
                    "central has no mail server (--smtp-host); the mail waits until it has one",
                )?;
                mailer.send(&due.target, &message).await
            }
            other => Err(format!("unknown channel {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let config = WorkerConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..WorkerConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| config.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }
}
