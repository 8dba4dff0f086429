//! Notifications: alerts that reach people (issue 19).
//!
//! Endpoints (a webhook URL or a mail address) with their routes are rows chain IT manages
//! through the API and the dashboard (`store::notifications`, checked by [`endpoint`]); the
//! triggers of migration 0021 queue one row per matching endpoint in the transaction that
//! opens, resolves or escalates an alert; the [`worker`] of every replica delivers them
//! ([`webhook`], [`mail`]) with retries, in its own tasks and its own small pool, never in the
//! way of ingest. What a notification says is [`Message`], one reading for both channels.

pub mod endpoint;
pub mod key;
pub mod mail;
pub mod webhook;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use central_store::notifications::Due;

/// How central notifies (every field is a `serve` option, see `main.rs`).
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// The key that seals webhook secrets (64 hex characters).
    pub key_file: Option<PathBuf>,
    /// The mail server; without it mail endpoints wait (their deliveries say why).
    pub smtp: Option<mail::SmtpSettings>,
    /// The CAs HTTPS webhook receivers are verified with (e.g. the system bundle).
    pub webhook_ca: Option<PathBuf>,
    /// The dashboard's public address, for the links in notifications.
    pub dashboard_url: Option<String>,
    pub worker: worker::WorkerConfig,
}

impl NotifySettings {
    /// Reads the key file, if one was given.
    pub fn key(&self) -> anyhow::Result<Option<Arc<key::NotificationKey>>> {
        self.key_file
            .as_deref()
            .map(|path| key::NotificationKey::load(path).map(Arc::new))
            .transpose()
    }

    /// The worker, with its own `store` (a small pool of its own).
    pub fn notifier(
        &self,
        store: central_store::Store,
        key: Option<Arc<key::NotificationKey>>,
    ) -> anyhow::Result<worker::Notifier> {
        let roots = match &self.webhook_ca {
            Some(path) => fleet_tls::config::load_certificates(path)
                .with_context(|| format!("--webhook-ca {}", path.display()))?,
            None => Vec::new(),
        };
        let config = self.worker;
        let webhook =
            webhook::WebhookClient::new(&roots, config.connect_timeout, config.total_timeout)?;
        let mailer = self
            .smtp
            .as_ref()
            .map(|smtp| mail::Mailer::new(smtp, config.total_timeout))
            .transpose()?;
        Ok(worker::Notifier {
            store,
            key,
            webhook,
            mailer,
            dashboard_url: self.dashboard_url.clone(),
            config,
        })
    }
}

/// Kinds that must wake someone: quiet hours never hold them.
pub const URGENT_KINDS: &[&str] = &["chain_break", "access_violation"];

/// The kinds a route may name: the alerts' and the certificates' expiry notices.
pub const KINDS: &[&str] = &[
    "sequence_gap",
    "produced_received_divergence",
    "chain_break",
    "access_violation",
    "site_unavailable",
    "certificate_expiry",
];

/// The webhook body's schema version; a change that removes or retypes a field makes a new one.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// What one notification says, the same for every channel (the webhook's JSON body).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub schema_version: u32,
    /// The notification's id: a receiver that sees one twice (at least once) drops the repeat.
    pub notification_id: i64,
    /// opened, resolved, escalated (a nearer certificate threshold) or test.
    pub event: String,
    /// alert, certificate or test.
    pub source: String,
    pub alert_id: Option<i64>,
    pub kind: String,
    pub site_code: String,
    pub prefecture: String,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub opened_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// Where the dashboard shows it (`--dashboard-url`), or null without one.
    pub dashboard_url: Option<String>,
}

impl Message {
    pub fn new(due: &Due, dashboard: Option<&str>) -> Self {
        let page = match due.source.as_str() {
            "certificate" => "certificates".to_string(),
            "test" => "notifications".to_string(),
            _ => format!("sites/{}", due.site_code),
        };
        Message {
            schema_version: SCHEMA_VERSION,
            notification_id: due.id,
            event: due.event.clone(),
            source: due.source.clone(),
            alert_id: due.alert_id,
            kind: due.kind.clone(),
            site_code: due.site_code.clone(),
            prefecture: due.site_code.chars().take(2).collect(),
            detail: due.detail.clone(),
            occurred_at: due.occurred_at,
            opened_at: due.opened_at,
            resolved_at: due.resolved_at,
            dashboard_url: dashboard.map(|base| format!("{}/{page}", base.trim_end_matches('/'))),
        }
    }
}

/// A kind as people read it: Japanese, English.
pub fn kind_label(kind: &str) -> (&str, &str) {
    match kind {
        "sequence_gap" => ("イベントの欠番", "sequence gap"),
        "produced_received_divergence" => ("未送信のイベント", "events waiting at the site"),
        "chain_break" => ("ハッシュチェーンの断絶", "chain break"),
        "access_violation" => ("閲覧ルール違反", "access violation"),
        "site_unavailable" => ("施設が利用できない", "site unavailable"),
        "certificate_expiry" => ("証明書の期限", "certificate expiry"),
        "test" => ("テスト", "test"),
        other => (other, other),
    }
}

/// An event as people read it: Japanese, English.
pub fn event_label(event: &str) -> (&str, &str) {
    match event {
        "opened" => ("発生", "opened"),
        "resolved" => ("解決", "resolved"),
        "escalated" => ("期限が近づきました", "escalated"),
        "test" => ("テスト配信", "test"),
        other => (other, other),
    }
}
