//! `central serve`: the service's settings from flags and environment, then
//! `Application::build` and `run_until_stopped`; and the Prometheus scrape listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use central::app::{Application, Settings, Tuning};
use central_core::maintenance::MaintenanceConfig;
use central_ingest::writer::WriterConfig;
use central_store::{self as store, AlertThresholds, DatabaseUrl, Pooler, WriteMethod};
use clap::Args;

use super::DbArgs;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[arg(long, env = "CENTRAL_GRPC_LISTEN", default_value = "127.0.0.1:7443")]
    pub(crate) grpc_listen: SocketAddr,
    #[arg(long, env = "CENTRAL_HTTP_LISTEN", default_value = "127.0.0.1:8443")]
    pub(crate) http_listen: SocketAddr,
    /// Serve the dashboard (and the API for accounts: sign-in or API token) on HTTPS without
    /// client certificates at this address; off by default.
    #[arg(long, env = "CENTRAL_WEB_LISTEN")]
    pub(crate) web_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on plain HTTP at this address (`GET /metrics`); off by default.
    /// No TLS and no authentication: keep it on loopback or a scrape-only network.
    #[arg(long, env = "CENTRAL_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) tls: super::TlsFiles,
    /// The agent sub-CA that issues agent certificates: the agent listener takes only these.
    #[arg(long, env = "CENTRAL_AGENT_CA")]
    pub(crate) agent_ca: PathBuf,
    /// What stands between central and DATABASE_URL: `transaction` (a pooler in transaction
    /// mode, such as PgBouncer's `pool_mode = transaction`, may be: no statement outlives its
    /// transaction), `none` (PostgreSQL itself) or `session` (a pooler in session mode). With
    /// `none` or `session`, ingest keeps its statements prepared on its connections, and
    /// PostgreSQL spends about a sixth less CPU on small groups; behind a transaction pooler
    /// that would fail ("prepared statement does not exist"), hence the default.
    #[arg(
        long,
        env = "CENTRAL_DATABASE_POOLER",
        default_value = "transaction",
        value_parser = ["transaction", "session", "none"]
    )]
    pub(crate) database_pooler: String,
    #[arg(long, env = "CENTRAL_DB_POOL_SIZE", default_value_t = 16)]
    pub(crate) db_pool_size: usize,
    /// A read replica's PostgreSQL URL (central's login role there; never printed): the
    /// dashboard's pages, the JSON API's listings and the auditor's search read it, and say how
    /// old their data is once it lags. Ingest, acks and every write stay on DATABASE_URL.
    #[arg(long, env = "CENTRAL_READ_DATABASE_URL", hide_env_values = true)]
    pub(crate) read_database_url: Option<String>,
    /// From how many seconds behind the replica the pages say how old their data is.
    #[arg(long, env = "CENTRAL_REPLICA_LAG_WARNING_SECS", default_value_t = 5)]
    pub(crate) replica_lag_warning_secs: u64,
    /// Do not migrate at start (when a separate job runs `central migrate` as the schema
    /// owner); central then checks the schema is current.
    #[arg(long, env = "CENTRAL_NO_MIGRATE")]
    pub(crate) no_migrate: bool,
    /// The schema owner's PostgreSQL URL, used only to migrate at start (never printed);
    /// DATABASE_URL is then central's own role, a member of onshi_app.
    #[arg(long, env = "CENTRAL_MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub(crate) migrate_database_url: Option<String>,
    /// DEVELOPMENT ONLY: serve even when DATABASE_URL's role owns the schema or is a superuser
    /// (central refuses to otherwise: the audit trail is not append-only for the owner). A
    /// warning says so at every start.
    #[arg(long, env = "CENTRAL_ALLOW_SCHEMA_OWNER")]
    pub(crate) allow_schema_owner: bool,
    /// Refuse to serve unless PostgreSQL commits synchronously to a standby
    /// (synchronous_standby_names set, synchronous_commit on/remote_write/remote_apply): an ack
    /// then survives a failover.
    #[arg(long, env = "CENTRAL_REQUIRE_SYNCHRONOUS_STANDBY")]
    pub(crate) require_synchronous_standby: bool,
    /// The key that signs each stream's daily seal (`central seal-key init`); without one,
    /// chains are verified but not sealed.
    #[arg(long, env = "CENTRAL_SEAL_KEY")]
    pub(crate) seal_key: Option<PathBuf>,
    /// The chain's patient hash key (hex, the agents' patient_hash_key_file), so auditors can
    /// search by insurance card details; never logged.
    #[arg(long, env = "CENTRAL_PATIENT_KEY")]
    pub(crate) patient_key: Option<PathBuf>,
    /// The agent sub-CA's private key: central then signs agents' certificate renewals (sent
    /// over their authenticated stream) for the agent's own site; without it renewals are
    /// refused. Never the chain CA's key: that one signs operators.
    #[arg(long, env = "CENTRAL_AGENT_CA_KEY")]
    pub(crate) agent_ca_key: Option<PathBuf>,
    /// The certificate of that CA (default: --agent-ca).
    #[arg(long, env = "CENTRAL_AGENT_CA_CERT")]
    pub(crate) agent_ca_cert: Option<PathBuf>,
    /// Days a renewed agent certificate is valid; agents renew when a third of it is left.
    #[arg(long, env = "CENTRAL_AGENT_CERT_DAYS", default_value_t = 30)]
    pub(crate) agent_cert_days: i64,
    /// Events per second per site; above it central delays acks (0: no limit).
    #[arg(long, env = "CENTRAL_EVENTS_PER_SECOND", default_value_t = 5_000)]
    pub(crate) events_per_second: u32,
    /// Events a site may send at once before the per-second limit applies.
    #[arg(long, env = "CENTRAL_EVENTS_BURST", default_value_t = 50_000)]
    pub(crate) events_burst: u32,
    /// Seconds a session waits for its commit before it ends with UNAVAILABLE.
    #[arg(long, env = "CENTRAL_WRITE_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) write_timeout_secs: u64,
    /// Group-commit writer tasks (transactions in flight at once).
    #[arg(long, env = "CENTRAL_WRITERS", default_value_t = 2)]
    pub(crate) writers: usize,
    /// Seconds a sequence gap may persist before it opens an alert.
    #[arg(long, env = "CENTRAL_GAP_ALERT_SECS", default_value_t = 300)]
    pub(crate) gap_alert_secs: u64,
    /// Seconds produced and received may differ before it opens an alert.
    #[arg(long, env = "CENTRAL_DIVERGENCE_ALERT_SECS", default_value_t = 900)]
    pub(crate) divergence_alert_secs: u64,
    /// Seconds an open site may be unavailable (agent or link down, national system
    /// unreachable, reader unplugged) before it opens an alert.
    #[arg(long, env = "CENTRAL_UNAVAILABLE_ALERT_SECS", default_value_t = 120)]
    pub(crate) unavailable_alert_secs: u64,
    /// Seconds a session may say nothing (agents send a heartbeat every 30 s) before central
    /// ends it and counts the site's closed-network link as down.
    #[arg(long, env = "CENTRAL_SILENCE_SECS", default_value_t = 90)]
    pub(crate) silence_secs: u64,
    /// Seconds between alert checks.
    #[arg(long, env = "CENTRAL_ALERT_CHECK_SECS", default_value_t = 30)]
    pub(crate) alert_check_secs: u64,
    /// Sign-in passwords checked at once (argon2id takes 19 MiB each); more attempts at the
    /// same moment are answered 429 with Retry-After. Default: the number of cores.
    #[arg(long, env = "CENTRAL_SIGN_IN_CHECKS")]
    pub(crate) sign_in_checks: Option<usize>,
    /// Logins and addresses the sign-in limiter remembers at most; when full, the least
    /// recently used ones that are not locked out are forgotten first.
    #[arg(long, env = "CENTRAL_SIGN_IN_KEYS", default_value_t = central_core::auth::rate_limit::MAX_KEYS)]
    pub(crate) sign_in_keys: usize,
    /// Agent sessions one site may hold open on this replica at once (an agent holds one; a
    /// restarting agent briefly two).
    #[arg(long, env = "CENTRAL_SESSIONS_PER_SITE", default_value_t = central_ingest::ingest::DEFAULT_SESSIONS_PER_SITE)]
    pub(crate) sessions_per_site: usize,
    /// How old an information view must be before central re-checks it (longer than the write
    /// timeout, so no view can still commit behind the re-check's position).
    #[arg(long, env = "CENTRAL_RECHECK_SETTLE_SECS", default_value_t = 60)]
    pub(crate) recheck_settle_secs: u64,
    /// Certificate expiry alert thresholds, in days before expiry (each raised once).
    #[arg(
        long,
        env = "CENTRAL_CERTIFICATE_ALERT_DAYS",
        default_value = "90,60,30,15,7,0"
    )]
    pub(crate) certificate_alert_days: store::CertificateAlertDays,
    /// The key that seals webhook secrets in the database (a file of 64 hex characters, e.g.
    /// `openssl rand -hex 32`; the same file on every replica). Without it, no webhooks.
    #[arg(long, env = "CENTRAL_NOTIFICATION_KEY_FILE")]
    pub(crate) notification_key_file: Option<PathBuf>,
    /// The dashboard's public address (e.g. https://central.example.jp), for the links in
    /// notifications.
    #[arg(long, env = "CENTRAL_DASHBOARD_URL")]
    pub(crate) dashboard_url: Option<String>,
    /// The CAs HTTPS webhook receivers are verified with (PEM, e.g.
    /// /etc/ssl/certs/ca-certificates.crt); without, only http:// receivers are reached.
    #[arg(long, env = "CENTRAL_WEBHOOK_CA")]
    pub(crate) webhook_ca: Option<PathBuf>,
    /// The mail server for mail endpoints (SMTP with STARTTLS required).
    #[arg(long, env = "CENTRAL_SMTP_HOST")]
    pub(crate) smtp_host: Option<String>,
    #[arg(long, env = "CENTRAL_SMTP_PORT", default_value_t = 587)]
    pub(crate) smtp_port: u16,
    /// The sender of notification mail.
    #[arg(
        long,
        env = "CENTRAL_SMTP_FROM",
        default_value = "onshi-fleet@localhost"
    )]
    pub(crate) smtp_from: String,
    #[arg(long, env = "CENTRAL_SMTP_USERNAME")]
    pub(crate) smtp_username: Option<String>,
    /// A file whose first line is the SMTP password (never printed).
    #[arg(long, env = "CENTRAL_SMTP_PASSWORD_FILE")]
    pub(crate) smtp_password_file: Option<PathBuf>,
    /// The CAs the mail server's certificate is verified with (PEM); default: the system's.
    #[arg(long, env = "CENTRAL_SMTP_CA")]
    pub(crate) smtp_ca: Option<PathBuf>,
    /// Seconds one delivery (connect to answer) may take.
    #[arg(long, env = "CENTRAL_NOTIFY_TIMEOUT_SECS", default_value_t = 15)]
    pub(crate) notify_timeout_secs: u64,
    /// Seconds before the first retry of a failed delivery; each retry doubles it.
    #[arg(long, env = "CENTRAL_NOTIFY_RETRY_SECS", default_value_t = 5)]
    pub(crate) notify_retry_secs: u64,
    /// The longest wait between retries, in seconds.
    #[arg(long, env = "CENTRAL_NOTIFY_RETRY_MAX_SECS", default_value_t = 600)]
    pub(crate) notify_retry_max_secs: u64,
    /// Seconds between the worker's looks for due notifications (and at held ones).
    #[arg(long, env = "CENTRAL_NOTIFY_POLL_SECS", default_value_t = 2)]
    pub(crate) notify_poll_secs: u64,
    /// Seconds between looks at a notification quiet hours hold (is its site open yet?).
    #[arg(long, env = "CENTRAL_NOTIFY_HOLD_RECHECK_SECS", default_value_t = 60)]
    pub(crate) notify_hold_recheck_secs: u64,
    /// How new rows are written: copy (binary COPY) or unnest; for measurements only.
    #[arg(
        long,
        env = "CENTRAL_WRITE_METHOD",
        default_value = "copy",
        hide = true
    )]
    pub(crate) write_method: String,
}

pub(crate) async fn run(
    args: ServeArgs,
    prometheus: Option<fleet_telemetry::prometheus::PrometheusText>,
) -> anyhow::Result<()> {
    let metrics = match (args.metrics_listen, prometheus) {
        (Some(addr), Some(text)) => Some(serve_metrics(addr, text).await?),
        _ => None,
    };
    let settings = Settings {
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        web_listen: args.web_listen,
        tls_cert: args.tls.tls_cert,
        tls_key: args.tls.tls_key,
        client_ca: args.tls.client_ca.clone(),
        agent_ca: args.agent_ca.clone(),
        database_url: DatabaseUrl::new(args.db.database_url),
        database_pooler: match args.database_pooler.as_str() {
            "transaction" => Pooler::Transaction,
            "none" | "session" => Pooler::None,
            other => {
                anyhow::bail!("--database-pooler {other}: expected transaction, session or none")
            }
        },
        read_database_url: args.read_database_url.map(DatabaseUrl::new),
        replica_lag_warning: Duration::from_secs(args.replica_lag_warning_secs),
        db_pool_size: args.db_pool_size,
        migrate_on_start: !args.no_migrate,
        migrate_database_url: args.migrate_database_url.map(DatabaseUrl::new),
        allow_schema_owner: args.allow_schema_owner,
        require_synchronous_standby: args.require_synchronous_standby,
        seal_key: args.seal_key,
        patient_key: args.patient_key,
        renewal: args
            .agent_ca_key
            .map(|ca_key| central_ingest::renewal::RenewalSettings {
                ca_cert: args.agent_ca_cert.unwrap_or_else(|| args.agent_ca.clone()),
                ca_key,
                lifetime: time::Duration::days(args.agent_cert_days),
            }),
        notify: central_core::notify::NotifySettings {
            key_file: args.notification_key_file,
            smtp: args
                .smtp_host
                .map(|host| central_core::notify::mail::SmtpSettings {
                    host,
                    port: args.smtp_port,
                    from: args.smtp_from,
                    username: args.smtp_username,
                    password_file: args.smtp_password_file,
                    ca: args.smtp_ca,
                }),
            webhook_ca: args.webhook_ca,
            dashboard_url: args.dashboard_url,
            worker: central_core::notify::worker::WorkerConfig {
                poll: Duration::from_secs(args.notify_poll_secs.max(1)),
                total_timeout: Duration::from_secs(args.notify_timeout_secs.max(1)),
                connect_timeout: Duration::from_secs(args.notify_timeout_secs.clamp(1, 5)),
                retry_base: Duration::from_secs(args.notify_retry_secs.max(1)),
                retry_max: Duration::from_secs(args.notify_retry_max_secs.max(1)),
                hold_recheck: Duration::from_secs(args.notify_hold_recheck_secs.max(1)),
                ..Default::default()
            },
        },
        tuning: Tuning {
            writer: WriterConfig {
                writers: args.writers,
                ..WriterConfig::default()
            },
            write_timeout: Duration::from_secs(args.write_timeout_secs),
            events_per_second: args.events_per_second,
            events_burst: args.events_burst,
            maintenance: MaintenanceConfig {
                alert_interval: Duration::from_secs(args.alert_check_secs.max(1)),
                recheck_settle: Duration::from_secs(args.recheck_settle_secs),
                thresholds: AlertThresholds {
                    gap: Duration::from_secs(args.gap_alert_secs),
                    divergence: Duration::from_secs(args.divergence_alert_secs),
                    unavailable: Duration::from_secs(args.unavailable_alert_secs),
                },
                silence: Duration::from_secs(args.silence_secs.max(1)),
                certificate_alert_days: args.certificate_alert_days,
                ..MaintenanceConfig::default()
            },
            sessions_per_site: args.sessions_per_site.max(1),
            sign_in_checks: args
                .sign_in_checks
                .unwrap_or_else(|| Tuning::default().sign_in_checks)
                .max(1),
            sign_in_keys: args.sign_in_keys.max(16),
            write_method: match args.write_method.as_str() {
                "copy" => WriteMethod::Copy,
                "unnest" => WriteMethod::Unnest,
                other => anyhow::bail!("--write-method {other}: expected copy or unnest"),
            },
            ..Tuning::default()
        },
    };
    let app = Application::build(&settings).await?;
    // One line on stdout that scripts and tests read to learn the bound ports.
    let mut ready = serde_json::json!({
        "grpc": app.grpc_addr().to_string(),
        "http": app.http_addr().to_string(),
        "synchronous_standby": app.durability().synchronous(),
    });
    if let Some(metrics) = metrics {
        ready["metrics"] = metrics.to_string().into();
    }
    if let Some(web) = app.web_addr() {
        ready["web"] = web.to_string().into();
    }
    let stop = fleet_telemetry::stop::stop_signal().context("installing the stop signals")?;
    println!("{ready}");
    tracing::info!(grpc = %app.grpc_addr(), http = %app.http_addr(), "central listening");
    app.run_until_stopped(stop).await
}

/// The Prometheus scrape endpoint: `GET /metrics` on plain HTTP, the last rendering of the
/// metrics (refreshed every OTEL_METRIC_EXPORT_INTERVAL, 15 s by default). Returns the bound
/// address (port 0 works).
async fn serve_metrics(
    addr: SocketAddr,
    text: fleet_telemetry::prometheus::PrometheusText,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the Prometheus endpoint is plain HTTP without authentication on a non-loopback address");
    }
    central_http::metrics::serve(listener, move || text.render());
    Ok(bound)
}
