//! `central`'s subcommands: the command line (`Cli`), and what each subcommand does, one
//! module per group. `main.rs` only wires the runtime and telemetry around [`run`].

mod account;
mod audit;
mod health;
mod pki;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use central_store::scope::SiteScope;
use central_store::{self as store, DatabaseUrl, Store};
use clap::{Args, Parser, Subcommand};
use onshi_domain::site::SiteCode;

pub(crate) use account::AccountCommand;
pub(crate) use audit::SealKeyCommand;
pub(crate) use health::HealthArgs;
pub(crate) use pki::PkiCommand;
pub(crate) use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(name = "central", version, about = "onshi-fleet central service")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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

/// central's own certificate and key, and the chain CA: what `serve` presents and trusts for
/// operators, and what `health` presents to ask it.
#[derive(Debug, Args)]
pub(crate) struct TlsFiles {
    /// central's own certificate (issued for clientAuth too, which `health` presents).
    #[arg(long, env = "CENTRAL_TLS_CERT")]
    pub(crate) tls_cert: PathBuf,
    /// Its private key.
    #[arg(long, env = "CENTRAL_TLS_KEY")]
    pub(crate) tls_key: PathBuf,
    /// The chain CA that issued operator certificates (itself: nothing under a sub-CA is
    /// taken on the operator listener).
    #[arg(long, env = "CENTRAL_CLIENT_CA")]
    pub(crate) client_ca: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// PostgreSQL connection URL (never printed).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: String,
}

pub(crate) async fn run(
    command: Command,
    prometheus: Option<fleet_telemetry::prometheus::PrometheusText>,
) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(*args, prometheus).await,
        Command::Migrate(db) => {
            let applied = store::migrate::migrate(open_store(&db)?.pool()).await?;
            println!("{}", serde_json::json!({ "applied": applied }));
            Ok(())
        }
        Command::Schema(db) => print_json(&store::migrate::status(open_store(&db)?.pool()).await?),
        Command::Sites(db) => print_json(&open_store(&db)?.sites(&SiteScope::All).await?),
        Command::Agents(db) => {
            print_json(&open_store(&db)?.stream_statuses(&SiteScope::All).await?)
        }
        Command::Alerts { db, all, limit } => {
            let states: &[store::AlertState] = if all {
                &store::AlertState::ALL
            } else {
                &store::AlertState::UNRESOLVED
            };
            let store = open_store(&db)?;
            print_json(
                &central_core::service::alerts::list(&store, &SiteScope::All, states, limit)
                    .await?,
            )
        }
        Command::Certificates {
            db,
            expiring_within_days,
            site,
            alerts,
        } => {
            let store = open_store(&db)?;
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
            print_json(&open_store(&db)?.events_for_site(&site, limit).await?)
        }
        Command::Verify {
            db,
            site,
            from,
            to,
            json,
        } => audit::verify(&db, site, from, to, json).await,
        Command::Export {
            db,
            site,
            from,
            to,
            out,
            by,
        } => audit::export(&db, &site, from, to, &out, &by).await,
        Command::VerifyBundle {
            bundle,
            public_key,
            json,
        } => audit::verify_bundle(&bundle, public_key, json),
        Command::Health(args) => health::check(args).await,
        Command::Account(command) => account::run(command).await,
        Command::RevokeSite {
            db,
            site,
            reason,
            issued_before,
            by,
        } => revoke_site(&db, &site, &reason, issued_before, &by).await,
        Command::Pki(command) => pki::run(command),
        Command::SealKey(command) => audit::seal_key(command),
        Command::Seal { db, seal_key } => audit::seal(&db, &seal_key).await,
    }
}

/// The store of a one-shot command: a pool of two connections.
pub(crate) fn open_store(db: &DbArgs) -> anyhow::Result<Store> {
    Ok(Store::new(store::connect(
        &DatabaseUrl::new(&db.database_url),
        2,
    )?))
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Revokes every agent certificate of `site` issued before `issued_before` (default now).
async fn revoke_site(
    db: &DbArgs,
    site: &str,
    reason: &str,
    issued_before: Option<String>,
    by: &str,
) -> anyhow::Result<()> {
    let site = onshi_domain::site::SiteCode::parse(site)
        .map_err(|e| anyhow::anyhow!("--site {site:?}: {e}"))?;
    let before = match issued_before {
        Some(text) => {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--issued-before {text:?}: expected an RFC 3339 time"))?
        }
        None => time::OffsetDateTime::now_utc(),
    };
    open_store(db)?
        .revoke_site(
            &site,
            before,
            reason,
            &format!("{by} (central revoke-site)"),
        )
        .await?;
    eprintln!("site {site}: agent certificates issued before {before} are revoked");
    Ok(())
}
