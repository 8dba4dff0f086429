//! `central`: the service, its migrations, the dev PKI and a few operator views.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use central::app::{Application, Settings, Tuning};
use central::maintenance::MaintenanceConfig;
use central::store::scope::SiteScope;
use central::store::{self, AlertThresholds, DatabaseUrl, Store, WriteMethod};
use central::writer::WriterConfig;
use clap::{Args, Parser, Subcommand};
use onshi_domain::site::SiteCode;

#[derive(Debug, Parser)]
#[command(name = "central", version, about = "onshi-fleet central service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the agent uplink (gRPC, mTLS) and the JSON API (HTTPS, mTLS).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DbArgs),
    /// Print where the database schema stands (JSON).
    Schema(DbArgs),
    /// Print the sites central has heard from (JSON).
    Sites(DbArgs),
    /// Print every agent stream: produced, highest received and contiguous sequences (JSON).
    Agents(DbArgs),
    /// Print open alerts, newest first (JSON).
    Alerts {
        #[command(flatten)]
        db: DbArgs,
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Print the certificates sites hold, soonest expiry first, with days to expiry and the
    /// renewal lead time of terminal certificates (JSON); `--alerts`: the expiry alerts instead.
    Certificates {
        #[command(flatten)]
        db: DbArgs,
        /// Only those expiring within this many days (expired ones included).
        #[arg(long)]
        expiring_within_days: Option<i64>,
        #[arg(long)]
        site: Option<String>,
        /// Print the expiry alerts raised, newest first.
        #[arg(long)]
        alerts: bool,
    },
    /// Print the most recent events of one site, newest first (JSON).
    Events {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        site: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Check that the stored events of a period still follow their sites' hash chains: prints
    /// the verdict (INTACT or BROKEN, with each finding), exit 0 when intact, 1 when broken.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// One site (default: every site).
        #[arg(long)]
        site: Option<String>,
        /// First day of the period (YYYY-MM-DD, Asia/Tokyo), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Last day of the period (YYYY-MM-DD, Asia/Tokyo), inclusive.
        #[arg(long)]
        to: Option<String>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a site's self-verifying audit bundle (events, hash chains, seals and the keys that
    /// signed them) for auditors who cannot reach the live system; the export is audited.
    Export {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        site: String,
        /// First day of the period (YYYY-MM-DD, Asia/Tokyo), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Last day of the period (YYYY-MM-DD, Asia/Tokyo), inclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Who exports (recorded with the export); default: the OS user.
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Verify an audit bundle offline (no database, nothing else needed): prints INTACT or
    /// BROKEN with each finding and the seal keys, exit 0 when intact, 1 when broken.
    VerifyBundle {
        bundle: PathBuf,
        /// The seal public key (hex) the seals must be signed with; without it, the keys that
        /// signed them are printed for you to compare with central's published key.
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask a running central's gRPC health service over mTLS (the Kubernetes probe): exit 0
    /// when the uplink is SERVING (PostgreSQL answers), 1 otherwise; `--liveness`: whether the
    /// process answers at all.
    Health(HealthArgs),
    /// Dashboard accounts and API tokens.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Development PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// The seal signing key.
    #[command(subcommand)]
    SealKey(SealKeyCommand),
    /// Revoke a whole site: every agent certificate of the site whose validity starts before
    /// `--issued-before` (default: now) is refused, those a stolen key minted included; the
    /// running replicas apply it within 10 s. Audited.
    RevokeSite {
        #[command(flatten)]
        db: DbArgs,
        /// The site code (10 digits).
        #[arg(long)]
        site: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// RFC 3339 time; certificates starting before it are refused (default: now).
        #[arg(long)]
        issued_before: Option<String>,
        /// Who revokes (recorded in the audit trail); default: the OS user.
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Seal every stream the chain verifier has walked beyond its last seal (what the running
    /// central does once a day), after a verifier pass; prints how many seals were made.
    Seal {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, env = "CENTRAL_SEAL_KEY")]
        seal_key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Make an account. The password is read from standard input (its first line), never from
    /// the command line, where other users and the shell history would see it.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// The name the dashboard shows.
        #[arg(long)]
        name: String,
        /// chain_admin, area_manager, auditor or viewer.
        #[arg(long)]
        role: String,
        /// An area manager's prefecture (two digits; repeat for several).
        #[arg(long = "prefecture")]
        prefectures: Vec<String>,
        /// An area manager's site (repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Who makes it (recorded in the audit trail); default: the OS user.
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Change an account: its role and scope (demote, promote), disable or enable it, or reset
    /// its password (read from standard input; its sessions end and its API tokens are
    /// revoked). Audited.
    Set {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// A new role: chain_admin, area_manager, auditor or viewer.
        #[arg(long)]
        role: Option<String>,
        /// An area manager's prefecture (with --role; repeat for several).
        #[arg(long = "prefecture")]
        prefectures: Vec<String>,
        /// An area manager's site (with --role; repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// The account can no longer sign in; its sessions and tokens stop working.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Read a new password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Print the accounts (JSON; no password hashes).
    List(DbArgs),
    /// Issue an API token acting as an account; the token is printed once, on standard output.
    Token {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// What uses the token (shown in the account's token list).
        #[arg(long)]
        label: String,
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

#[derive(Debug, Subcommand)]
enum SealKeyCommand {
    /// Create a new seal key (owner-only file, never overwritten) and print its public key.
    Init {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of an existing seal key (what auditors compare seals with).
    Public {
        #[arg(long, env = "CENTRAL_SEAL_KEY")]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// Where central's gRPC listener answers (inside a pod: 127.0.0.1 and the gRPC port).
    #[arg(long, env = "CENTRAL_HEALTH_ADDR", default_value = "127.0.0.1:7443")]
    addr: SocketAddr,
    /// The name central's certificate is verified for (one of its DNS names).
    #[arg(long, env = "CENTRAL_HEALTH_SERVER_NAME", default_value = "localhost")]
    server_name: String,
    /// central's own certificate and key (issued for clientAuth too), and the chain CA.
    #[arg(long, env = "CENTRAL_TLS_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "CENTRAL_TLS_KEY")]
    tls_key: PathBuf,
    #[arg(long, env = "CENTRAL_CLIENT_CA")]
    client_ca: PathBuf,
    #[arg(long, default_value_t = 2)]
    timeout_secs: u64,
    /// Ask for liveness (the process answers) instead of readiness (it can store events).
    #[arg(long, conflicts_with = "synchronous_standby")]
    liveness: bool,
    /// Ask whether the database commits synchronously to a standby (an ack survives a
    /// failover): SERVING when it does.
    #[arg(long)]
    synchronous_standby: bool,
}

#[derive(Debug, Args)]
struct DbArgs {
    /// PostgreSQL connection URL (never printed).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    #[arg(long, env = "CENTRAL_GRPC_LISTEN", default_value = "127.0.0.1:7443")]
    grpc_listen: SocketAddr,
    #[arg(long, env = "CENTRAL_HTTP_LISTEN", default_value = "127.0.0.1:8443")]
    http_listen: SocketAddr,
    /// Serve the dashboard (and the API for accounts: sign-in or API token) on HTTPS without
    /// client certificates at this address; off by default.
    #[arg(long, env = "CENTRAL_WEB_LISTEN")]
    web_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on plain HTTP at this address (`GET /metrics`); off by default.
    /// No TLS and no authentication: keep it on loopback or a scrape-only network.
    #[arg(long, env = "CENTRAL_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[arg(long, env = "CENTRAL_TLS_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "CENTRAL_TLS_KEY")]
    tls_key: PathBuf,
    /// The chain CA that issued operator certificates (itself: nothing under a sub-CA is
    /// taken on the operator listener).
    #[arg(long, env = "CENTRAL_CLIENT_CA")]
    client_ca: PathBuf,
    /// The agent sub-CA that issues agent certificates: the agent listener takes only these.
    #[arg(long, env = "CENTRAL_AGENT_CA")]
    agent_ca: PathBuf,
    #[arg(long, env = "CENTRAL_DB_POOL_SIZE", default_value_t = 16)]
    db_pool_size: usize,
    /// A read replica's PostgreSQL URL (central's login role there; never printed): the
    /// dashboard's pages, the JSON API's listings and the auditor's search read it, and say how
    /// old their data is once it lags. Ingest, acks and every write stay on DATABASE_URL.
    #[arg(long, env = "CENTRAL_READ_DATABASE_URL", hide_env_values = true)]
    read_database_url: Option<String>,
    /// From how many seconds behind the replica the pages say how old their data is.
    #[arg(long, env = "CENTRAL_REPLICA_LAG_WARNING_SECS", default_value_t = 5)]
    replica_lag_warning_secs: u64,
    /// Do not migrate at start (when a separate job runs `central migrate` as the schema
    /// owner); central then checks the schema is current.
    #[arg(long, env = "CENTRAL_NO_MIGRATE")]
    no_migrate: bool,
    /// The schema owner's PostgreSQL URL, used only to migrate at start (never printed);
    /// DATABASE_URL is then central's own role, a member of onshi_app.
    #[arg(long, env = "CENTRAL_MIGRATE_DATABASE_URL", hide_env_values = true)]
    migrate_database_url: Option<String>,
    /// DEVELOPMENT ONLY: serve even when DATABASE_URL's role owns the schema or is a superuser
    /// (central refuses to otherwise: the audit trail is not append-only for the owner). A
    /// warning says so at every start.
    #[arg(long, env = "CENTRAL_ALLOW_SCHEMA_OWNER")]
    allow_schema_owner: bool,
    /// Refuse to serve unless PostgreSQL commits synchronously to a standby
    /// (synchronous_standby_names set, synchronous_commit on/remote_write/remote_apply): an ack
    /// then survives a failover.
    #[arg(long, env = "CENTRAL_REQUIRE_SYNCHRONOUS_STANDBY")]
    require_synchronous_standby: bool,
    /// The key that signs each stream's daily seal (`central seal-key init`); without one,
    /// chains are verified but not sealed.
    #[arg(long, env = "CENTRAL_SEAL_KEY")]
    seal_key: Option<PathBuf>,
    /// The chain's patient hash key (hex, the agents' patient_hash_key_file), so auditors can
    /// search by insurance card details; never logged.
    #[arg(long, env = "CENTRAL_PATIENT_KEY")]
    patient_key: Option<PathBuf>,
    /// The agent sub-CA's private key: central then signs agents' certificate renewals (sent
    /// over their authenticated stream) for the agent's own site; without it renewals are
    /// refused. Never the chain CA's key: that one signs operators.
    #[arg(long, env = "CENTRAL_AGENT_CA_KEY")]
    agent_ca_key: Option<PathBuf>,
    /// The certificate of that CA (default: --agent-ca).
    #[arg(long, env = "CENTRAL_AGENT_CA_CERT")]
    agent_ca_cert: Option<PathBuf>,
    /// Days a renewed agent certificate is valid; agents renew when a third of it is left.
    #[arg(long, env = "CENTRAL_AGENT_CERT_DAYS", default_value_t = 30)]
    agent_cert_days: i64,
    /// Events per second per site; above it central delays acks (0: no limit).
    #[arg(long, env = "CENTRAL_EVENTS_PER_SECOND", default_value_t = 5_000)]
    events_per_second: u32,
    /// Events a site may send at once before the per-second limit applies.
    #[arg(long, env = "CENTRAL_EVENTS_BURST", default_value_t = 50_000)]
    events_burst: u32,
    /// Seconds a session waits for its commit before it ends with UNAVAILABLE.
    #[arg(long, env = "CENTRAL_WRITE_TIMEOUT_SECS", default_value_t = 30)]
    write_timeout_secs: u64,
    /// Group-commit writer tasks (transactions in flight at once).
    #[arg(long, env = "CENTRAL_WRITERS", default_value_t = 2)]
    writers: usize,
    /// Seconds a sequence gap may persist before it opens an alert.
    #[arg(long, env = "CENTRAL_GAP_ALERT_SECS", default_value_t = 300)]
    gap_alert_secs: u64,
    /// Seconds produced and received may differ before it opens an alert.
    #[arg(long, env = "CENTRAL_DIVERGENCE_ALERT_SECS", default_value_t = 900)]
    divergence_alert_secs: u64,
    /// Seconds an open site may be unavailable (agent or link down, national system
    /// unreachable, reader unplugged) before it opens an alert.
    #[arg(long, env = "CENTRAL_UNAVAILABLE_ALERT_SECS", default_value_t = 120)]
    unavailable_alert_secs: u64,
    /// Seconds a session may say nothing (agents send a heartbeat every 30 s) before central
    /// ends it and counts the site's closed-network link as down.
    #[arg(long, env = "CENTRAL_SILENCE_SECS", default_value_t = 90)]
    silence_secs: u64,
    /// Seconds between alert checks.
    #[arg(long, env = "CENTRAL_ALERT_CHECK_SECS", default_value_t = 30)]
    alert_check_secs: u64,
    /// Sign-in passwords checked at once (argon2id takes 19 MiB each); more attempts at the
    /// same moment are answered 429 with Retry-After. Default: the number of cores.
    #[arg(long, env = "CENTRAL_SIGN_IN_CHECKS")]
    sign_in_checks: Option<usize>,
    /// Logins and addresses the sign-in limiter remembers at most; when full, the least
    /// recently used ones that are not locked out are forgotten first.
    #[arg(long, env = "CENTRAL_SIGN_IN_KEYS", default_value_t = central::auth::rate_limit::MAX_KEYS)]
    sign_in_keys: usize,
    /// Agent sessions one site may hold open on this replica at once (an agent holds one; a
    /// restarting agent briefly two).
    #[arg(long, env = "CENTRAL_SESSIONS_PER_SITE", default_value_t = central::ingest::DEFAULT_SESSIONS_PER_SITE)]
    sessions_per_site: usize,
    /// How old an information view must be before central re-checks it (longer than the write
    /// timeout, so no view can still commit behind the re-check's position).
    #[arg(long, env = "CENTRAL_RECHECK_SETTLE_SECS", default_value_t = 60)]
    recheck_settle_secs: u64,
    /// Certificate expiry alert thresholds, in days before expiry (each raised once).
    #[arg(
        long,
        env = "CENTRAL_CERTIFICATE_ALERT_DAYS",
        default_value = "90,60,30,15,7,0"
    )]
    certificate_alert_days: store::CertificateAlertDays,
    /// The key that seals webhook secrets in the database (a file of 64 hex characters, e.g.
    /// `openssl rand -hex 32`; the same file on every replica). Without it, no webhooks.
    #[arg(long, env = "CENTRAL_NOTIFICATION_KEY_FILE")]
    notification_key_file: Option<PathBuf>,
    /// The dashboard's public address (e.g. https://central.example.jp), for the links in
    /// notifications.
    #[arg(long, env = "CENTRAL_DASHBOARD_URL")]
    dashboard_url: Option<String>,
    /// The CAs HTTPS webhook receivers are verified with (PEM, e.g.
    /// /etc/ssl/certs/ca-certificates.crt); without, only http:// receivers are reached.
    #[arg(long, env = "CENTRAL_WEBHOOK_CA")]
    webhook_ca: Option<PathBuf>,
    /// The mail server for mail endpoints (SMTP with STARTTLS required).
    #[arg(long, env = "CENTRAL_SMTP_HOST")]
    smtp_host: Option<String>,
    #[arg(long, env = "CENTRAL_SMTP_PORT", default_value_t = 587)]
    smtp_port: u16,
    /// The sender of notification mail.
    #[arg(
        long,
        env = "CENTRAL_SMTP_FROM",
        default_value = "onshi-fleet@localhost"
    )]
    smtp_from: String,
    #[arg(long, env = "CENTRAL_SMTP_USERNAME")]
    smtp_username: Option<String>,
    /// A file whose first line is the SMTP password (never printed).
    #[arg(long, env = "CENTRAL_SMTP_PASSWORD_FILE")]
    smtp_password_file: Option<PathBuf>,
    /// The CAs the mail server's certificate is verified with (PEM); default: the system's.
    #[arg(long, env = "CENTRAL_SMTP_CA")]
    smtp_ca: Option<PathBuf>,
    /// Seconds one delivery (connect to answer) may take.
    #[arg(long, env = "CENTRAL_NOTIFY_TIMEOUT_SECS", default_value_t = 15)]
    notify_timeout_secs: u64,
    /// Seconds before the first retry of a failed delivery; each retry doubles it.
    #[arg(long, env = "CENTRAL_NOTIFY_RETRY_SECS", default_value_t = 5)]
    notify_retry_secs: u64,
    /// The longest wait between retries, in seconds.
    #[arg(long, env = "CENTRAL_NOTIFY_RETRY_MAX_SECS", default_value_t = 600)]
    notify_retry_max_secs: u64,
    /// Seconds between the worker's looks for due notifications (and at held ones).
    #[arg(long, env = "CENTRAL_NOTIFY_POLL_SECS", default_value_t = 2)]
    notify_poll_secs: u64,
    /// Seconds between looks at a notification quiet hours hold (is its site open yet?).
    #[arg(long, env = "CENTRAL_NOTIFY_HOLD_RECHECK_SECS", default_value_t = 60)]
    notify_hold_recheck_secs: u64,
    /// How new rows are written: copy (binary COPY) or unnest; for measurements only.
    #[arg(
        long,
        env = "CENTRAL_WRITE_METHOD",
        default_value = "copy",
        hide = true
    )]
    write_method: String,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a new dev PKI: chain CA, central, agents, operators, test common CA, terminals,
    /// test J-LIS CA. Refuses to overwrite an existing one.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// A site code to issue an agent certificate for (repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// A qualification terminal as INSTITUTION_CODE:TERMINAL_ID (repeatable).
        #[arg(long = "terminal")]
        terminals: Vec<String>,
        /// An operator name for the JSON API (repeatable).
        #[arg(long = "operator")]
        operators: Vec<String>,
    },
    /// Issue an agent certificate for one more site with an existing dev chain CA.
    IssueAgent {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        site: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    if !matches!(cli.command, Command::Serve(_)) {
        // One-shot commands (a probe every few seconds, an operator's query) export nothing:
        // no collector connection to open and flush on exit.
        env.retain(|key, _| !key.starts_with("OTEL_"));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // Inside the runtime: the OTLP exporter's gRPC channel lives on it. The guard flushes on
    // drop, before the runtime goes.
    let options = fleet_telemetry::Options {
        prometheus: matches!(&cli.command, Command::Serve(args) if args.metrics_listen.is_some()),
    };
    let telemetry = {
        let _entered = runtime.enter();
        fleet_telemetry::init_with("central", &env, options)?
    };
    let result = runtime.block_on(run(cli.command, telemetry.prometheus()));
    drop(telemetry);
    result
}

async fn run(
    command: Command,
    prometheus: Option<fleet_telemetry::prometheus::PrometheusText>,
) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(*args, prometheus).await,
        Command::Migrate(db) => {
            let applied = store::migrate::migrate(&pool(&db)?).await?;
            println!("{}", serde_json::json!({ "applied": applied }));
            Ok(())
        }
        Command::Schema(db) => print_json(&store::migrate::status(&pool(&db)?).await?),
        Command::Sites(db) => print_json(&Store::new(pool(&db)?).sites(&SiteScope::All).await?),
        Command::Agents(db) => print_json(
            &Store::new(pool(&db)?)
                .stream_statuses(&SiteScope::All)
                .await?,
        ),
        Command::Alerts { db, all, limit } => print_json(
            &Store::new(pool(&db)?)
                .alerts(all, limit, &SiteScope::All)
                .await?,
        ),
        Command::Certificates {
            db,
            expiring_within_days,
            site,
            alerts,
        } => {
            let store = Store::new(pool(&db)?);
            if alerts {
                print_json(&store.certificate_alerts(1000, &SiteScope::All).await?)
            } else {
                let site = site
                    .map(|s| SiteCode::parse(&s).map(|s| s.to_string()))
                    .transpose()
                    .context("--site")?;
                print_json(
                    &store
                        .certificates(
                            time::OffsetDateTime::now_utc(),
                            expiring_within_days,
                            site.as_deref(),
                            &SiteScope::All,
                        )
                        .await?,
                )
            }
        }
        Command::Events { db, site, limit } => {
            let site = SiteCode::parse(&site).context("--site")?;
            print_json(&Store::new(pool(&db)?).events_for_site(&site, limit).await?)
        }
        Command::Verify {
            db,
            site,
            from,
            to,
            json,
        } => {
            let site = site
                .map(|s| SiteCode::parse(&s))
                .transpose()
                .context("--site")?;
            let (from, to) = tokyo_period(from.as_deref(), to.as_deref())?;
            let verdict = Store::new(pool(&db)?)
                .verify_period(site.as_ref(), from, to)
                .await?;
            print_verdict(&verdict, json)
        }
        Command::Export {
            db,
            site,
            from,
            to,
            out,
            by,
        } => {
            let site = SiteCode::parse(&site).context("--site")?;
            let (from, to) = tokyo_period(from.as_deref(), to.as_deref())?;
            let bundle = Store::new(pool(&db)?)
                .export_bundle(&site, (from, to), &by, time::OffsetDateTime::now_utc())
                .await?;
            std::fs::write(&out, serde_json::to_vec_pretty(&bundle)?)
                .with_context(|| format!("writing {}", out.display()))?;
            let events: usize = bundle.streams.iter().map(|s| s.events.len()).sum();
            eprintln!(
                "audit bundle of {events} events written to {}",
                out.display()
            );
            Ok(())
        }
        Command::VerifyBundle {
            bundle,
            public_key,
            json,
        } => {
            let bytes =
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let bundle = central::audit::Bundle::parse(&bytes)?;
            let mut verdict = bundle.verify();
            if let Some(expected) = public_key {
                let others: Vec<_> = verdict
                    .seal_keys
                    .iter()
                    .filter(|k| **k != expected)
                    .cloned()
                    .collect();
                if !others.is_empty() {
                    verdict.intact = false;
                    eprintln!("seals signed by keys other than the expected one: {others:?}");
                }
            }
            print_verdict(&verdict, json)
        }
        Command::Health(args) => {
            let probe = if args.liveness {
                central::health::Probe::Liveness
            } else if args.synchronous_standby {
                central::health::Probe::SynchronousStandby
            } else {
                central::health::Probe::Readiness
            };
            let status = central::health::check(
                probe,
                args.addr,
                &args.server_name,
                &args.tls_cert,
                &args.tls_key,
                &args.client_ca,
                std::time::Duration::from_secs(args.timeout_secs.max(1)),
            )
            .await?;
            println!("{}", status.as_str_name());
            if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
                Ok(())
            } else {
                anyhow::bail!(
                    "central at {} is not serving: {}",
                    args.addr,
                    status.as_str_name()
                )
            }
        }
        Command::Account(command) => account(command).await,
        Command::RevokeSite {
            db,
            site,
            reason,
            issued_before,
            by,
        } => {
            let site = onshi_domain::site::SiteCode::parse(&site)
                .map_err(|e| anyhow::anyhow!("--site {site:?}: {e}"))?;
            let before = match issued_before {
                Some(text) => time::OffsetDateTime::parse(
                    &text,
                    &time::format_description::well_known::Rfc3339,
                )
                .with_context(|| format!("--issued-before {text:?}: expected an RFC 3339 time"))?,
                None => time::OffsetDateTime::now_utc(),
            };
            Store::new(pool(&db)?)
                .revoke_site(
                    &site,
                    before,
                    &reason,
                    &format!("{by} (central revoke-site)"),
                )
                .await?;
            eprintln!("site {site}: agent certificates issued before {before} are revoked");
            Ok(())
        }
        Command::Pki(command) => pki(command),
        Command::SealKey(SealKeyCommand::Init { out }) => {
            let key = central::sealing::SealKey::create(&out)?;
            println!("{}", key.public_hex());
            eprintln!(
                "seal key written to {} (owner-only); the line above is its public key",
                out.display()
            );
            Ok(())
        }
        Command::SealKey(SealKeyCommand::Public { key }) => {
            println!("{}", central::sealing::SealKey::load(&key)?.public_hex());
            Ok(())
        }
        Command::Seal { db, seal_key } => {
            let key = central::sealing::SealKey::load(&seal_key)?;
            let store = Store::new(pool(&db)?);
            // Catch the verifier up first: a seal names what it has walked.
            while store.verify_chains(1_000_000).await?.events > 0 {}
            let made = store
                .seal_streams(&key, time::OffsetDateTime::now_utc())
                .await?;
            println!("{made}");
            Ok(())
        }
    }
}

fn pool(db: &DbArgs) -> anyhow::Result<deadpool_postgres::Pool> {
    Ok(store::connect(&DatabaseUrl::new(&db.database_url), 2)?)
}

/// Prints a verification verdict (JSON, or for a person) and exits 1 when it is broken.
fn print_verdict(verdict: &central::audit::ChainVerdict, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(verdict)?;
    } else {
        print!("{}", verdict.describe());
    }
    if !verdict.intact {
        std::process::exit(1);
    }
    Ok(())
}

async fn account(command: AccountCommand) -> anyhow::Result<()> {
    use central::auth::accounts::{AccountSpec, create_account, issue_token};
    match command {
        AccountCommand::Add {
            db,
            login,
            name,
            role,
            prefectures,
            sites,
            by,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let spec = AccountSpec {
                login,
                display_name: name,
                role,
                prefectures,
                sites,
                password: password.trim_end_matches(['\r', '\n']).to_string(),
            };
            create_account(
                &Store::new(pool(&db)?),
                &spec,
                &format!("{by} (central account add)"),
            )
            .await?;
            eprintln!("account {} created", spec.login);
            Ok(())
        }
        AccountCommand::Set {
            db,
            login,
            role,
            prefectures,
            sites,
            disable,
            enable,
            password_stdin,
            by,
        } => {
            let password = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .read_line(&mut password)
                    .context("reading the password from standard input")?;
                Some(password.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let update = central::auth::accounts::AccountUpdate {
                role,
                prefectures,
                sites,
                disabled: (disable || enable).then_some(disable),
                password,
            };
            central::auth::accounts::change_account(
                &Store::new(pool(&db)?),
                &login,
                &update,
                &format!("{by} (central account set)"),
            )
            .await?;
            eprintln!("account {login} changed");
            Ok(())
        }
        AccountCommand::List(db) => print_json(&Store::new(pool(&db)?).accounts().await?),
        AccountCommand::Token {
            db,
            login,
            label,
            days,
            by,
        } => {
            let (id, token) = issue_token(
                &Store::new(pool(&db)?),
                &login,
                &label,
                days,
                &format!("{by} (central account token)"),
            )
            .await?;
            eprintln!("API token {id} for {login}, valid {days} days; it is shown only now:");
            println!("{token}");
            Ok(())
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn serve(
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
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        client_ca: args.client_ca.clone(),
        agent_ca: args.agent_ca.clone(),
        database_url: DatabaseUrl::new(args.db.database_url),
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
            .map(|ca_key| central::renewal::RenewalSettings {
                ca_cert: args.agent_ca_cert.unwrap_or_else(|| args.agent_ca.clone()),
                ca_key,
                lifetime: time::Duration::days(args.agent_cert_days),
            }),
        notify: central::notify::NotifySettings {
            key_file: args.notification_key_file,
            smtp: args
                .smtp_host
                .map(|host| central::notify::mail::SmtpSettings {
                    host,
                    port: args.smtp_port,
                    from: args.smtp_from,
                    username: args.smtp_username,
                    password_file: args.smtp_password_file,
                    ca: args.smtp_ca,
                }),
            webhook_ca: args.webhook_ca,
            dashboard_url: args.dashboard_url,
            worker: central::notify::worker::WorkerConfig {
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
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = text.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

fn pki(command: PkiCommand) -> anyhow::Result<()> {
    use fleet_tls::devpki;
    match command {
        PkiCommand::Init {
            out,
            sites,
            terminals,
            operators,
        } => {
            for site in &sites {
                SiteCode::parse(site).with_context(|| format!("--site {site}"))?;
            }
            let terminals = terminals
                .iter()
                .map(|t| {
                    t.split_once(':')
                        .map(|(c, id)| (c.to_string(), id.to_string()))
                        .with_context(|| {
                            format!("--terminal {t}: expected INSTITUTION_CODE:TERMINAL_ID")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = devpki::DevPkiSpec {
                sites,
                operators,
                terminals,
                extra_server_names: Vec::new(),
            };
            devpki::init(&out, &spec)?;
            eprintln!("dev PKI written to {} (keys are owner-only)", out.display());
            Ok(())
        }
        PkiCommand::IssueAgent { dir, site } => {
            SiteCode::parse(&site).with_context(|| format!("--site {site}"))?;
            let (cert, _) = devpki::issue_agent(&dir, &site)?;
            eprintln!("agent certificate written to {}", cert.display());
            Ok(())
        }
    }
}

/// `--from` and `--to` (days, both inclusive) as the instants that bound the period.
fn tokyo_period(
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<(Option<time::OffsetDateTime>, Option<time::OffsetDateTime>)> {
    Ok((
        from.map(|d| tokyo_day_start(d, 0))
            .transpose()
            .context("--from")?,
        to.map(|d| tokyo_day_start(d, 1))
            .transpose()
            .context("--to")?,
    ))
}

/// The start of day `date` (YYYY-MM-DD) plus `days_after` days, in Asia/Tokyo (UTC+9, no DST).
fn tokyo_day_start(date: &str, days_after: i64) -> anyhow::Result<time::OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format)
        .with_context(|| format!("{date:?} is not a date (YYYY-MM-DD)"))?;
    Ok(day
        .midnight()
        .assume_offset(time::macros::offset!(+9))
        .saturating_add(time::Duration::days(days_after)))
}
