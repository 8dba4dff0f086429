//! `central verify`, `export`, `verify-bundle`, `seal` and `seal-key`: the audit trail's
//! checks and bundles from the command line, with the same code as the running service.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use onshi_domain::site::SiteCode;

use super::{DbArgs, open_store, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum SealKeyCommand {
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

/// Verifies a period of the stored chains and prints the verdict.
pub(crate) async fn verify(
    db: &DbArgs,
    site: Option<String>,
    from: Option<String>,
    to: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let site = site
        .map(|s| SiteCode::parse(&s))
        .transpose()
        .context("--site")?;
    let (from, to) = tokyo_period(from.as_deref(), to.as_deref())?;
    let verdict = open_store(db)?
        .verify_period(site.as_ref(), from, to)
        .await?;
    print_verdict(&verdict, json)
}

/// Writes a site's audit bundle to `out`; the export is audited.
pub(crate) async fn export(
    db: &DbArgs,
    site: &str,
    from: Option<String>,
    to: Option<String>,
    out: &Path,
    by: &str,
) -> anyhow::Result<()> {
    let site = SiteCode::parse(site).context("--site")?;
    let (from, to) = tokyo_period(from.as_deref(), to.as_deref())?;
    let bundle = open_store(db)?
        .export_bundle(&site, (from, to), by, time::OffsetDateTime::now_utc())
        .await?;
    std::fs::write(out, serde_json::to_vec_pretty(&bundle)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let events: usize = bundle.streams.iter().map(|s| s.events.len()).sum();
    eprintln!(
        "audit bundle of {events} events written to {}",
        out.display()
    );
    Ok(())
}

/// Verifies a bundle offline; with `public_key`, seals signed by any other key break it.
pub(crate) fn verify_bundle(
    bundle: &Path,
    public_key: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let bundle = central_store::audit::Bundle::parse(&bytes)?;
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

/// `seal-key init` and `seal-key public`.
pub(crate) fn seal_key(command: SealKeyCommand) -> anyhow::Result<()> {
    match command {
        SealKeyCommand::Init { out } => {
            let key = central_store::sealing::SealKey::create(&out)?;
            println!("{}", key.public_hex());
            eprintln!(
                "seal key written to {} (owner-only); the line above is its public key",
                out.display()
            );
            Ok(())
        }
        SealKeyCommand::Public { key } => {
            println!(
                "{}",
                central_store::sealing::SealKey::load(&key)?.public_hex()
            );
            Ok(())
        }
    }
}

/// Catches the chain verifier up, then seals every stream it walked beyond its last seal.
pub(crate) async fn seal(db: &DbArgs, seal_key: &Path) -> anyhow::Result<()> {
    let key = central_store::sealing::SealKey::load(seal_key)?;
    let store = open_store(db)?;
    // Catch the verifier up first: a seal names what it has walked.
    while store.verify_chains(1_000_000).await?.events > 0 {}
    let made = store
        .seal_streams(&key, time::OffsetDateTime::now_utc())
        .await?;
    println!("{made}");
    Ok(())
}

/// Prints a verification verdict (JSON, or for a person) and exits 1 when it is broken.
fn print_verdict(verdict: &central_store::audit::ChainVerdict, json: bool) -> anyhow::Result<()> {
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
