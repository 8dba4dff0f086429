//! `virtual-card`: issue a virtual My Number card, or put one on a vpcd reader.
//!
//! `virtual-card run` is controlled through stdin, one command per line:
//! `insert` (connect to vpcd: the card is on the reader), `remove` (close the socket: the card
//! is off), `quit` (remove and exit; end of input does the same). It answers on stdout with one
//! JSON line per event: `{"ready":true}` at start, `{"inserted":true}`, and
//! `{"removed":true,"reason":"command"|"pulled"|"closed"}` (pulled: `--pull-after N` made the card
//! leave mid-read; closed: vpcd closed the socket, e.g. pcscd stopped).

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use virtual_card::applet::{Applet, Kind};
use virtual_card::issue::{CardDir, IssueSpec, cached_key, generate_key, issue};
use virtual_card::vpcd::{Ended, OnReader};

#[derive(Debug, Parser)]
#[command(
    name = "virtual-card",
    version,
    about = "A virtual My Number card for vpcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A My Number card (needs --card).
    MyNumber,
    /// A card without the JPKI application.
    Unknown,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue a card: RSA-2048 key, certificate from the dev PKI's test J-LIS CA, PIN.
    Issue {
        /// The dev PKI folder (with jlis-ca.pem and jlis-ca.key).
        #[arg(long)]
        pki: PathBuf,
        /// Index of the card holder in onshi-sim's population.
        #[arg(long)]
        holder: usize,
        #[arg(long, default_value = "1234")]
        pin: String,
        /// Issue an already expired certificate.
        #[arg(long)]
        expired: bool,
        /// Reuse (or create) the key at this path instead of generating one.
        #[arg(long)]
        key_cache: Option<PathBuf>,
        /// The card's folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Put the card on a vpcd reader, controlled through stdin (insert / remove / quit).
    Run {
        #[arg(long, value_enum, default_value_t = Mode::MyNumber)]
        mode: Mode,
        /// The card's folder (from `issue`).
        #[arg(long)]
        card: Option<PathBuf>,
        /// vpcd reader: 0 (port 35963) or 1 (port 35964).
        #[arg(long, default_value_t = 0)]
        reader: usize,
        /// vpcd port (overrides --reader).
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Leave the reader when the N-th command APDU of an insertion arrives.
        #[arg(long)]
        pull_after: Option<usize>,
        /// Insert at start, without waiting for an `insert` command.
        #[arg(long)]
        inserted: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Issue {
            pki,
            holder,
            pin,
            expired,
            key_cache,
            out,
        } => {
            let key = match key_cache {
                Some(path) => cached_key(&path)?,
                None => generate_key()?,
            };
            let spec = IssueSpec {
                pki,
                holder,
                pin,
                expired,
            };
            let card = issue(&out, &spec, &key)?;
            println!(
                "{}",
                serde_json::json!({ "issued": card.0, "holder": holder, "expired": expired })
            );
            Ok(())
        }
        Command::Run {
            mode,
            card,
            reader,
            port,
            host,
            pull_after,
            inserted,
        } => {
            let applet = match mode {
                Mode::MyNumber => {
                    let dir = card.context("--card is needed for a My Number card")?;
                    CardDir(dir).load()?
                }
                Mode::Unknown => Applet::new(Kind::Unknown, None),
            };
            let port = match port {
                Some(p) => p,
                None => *virtual_card::VPCD_PORTS
                    .get(reader)
                    .context("--reader is 0 or 1")?,
            };
            run(applet, SocketAddr::new(host, port), pull_after, inserted)
        }
    }
}

fn say(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn run(
    applet: Applet,
    addr: SocketAddr,
    pull_after: Option<usize>,
    inserted: bool,
) -> anyhow::Result<()> {
    let applet = Arc::new(Mutex::new(applet));
    let mut current: Option<OnReader> = None;
    say(serde_json::json!({ "ready": true, "vpcd": addr.to_string() }));

    let insert = |current: &mut Option<OnReader>| -> anyhow::Result<()> {
        if current.as_ref().is_some_and(|on| !on.is_finished()) {
            say(serde_json::json!({ "inserted": true, "already": true }));
            return Ok(());
        }
        let on = OnReader::insert(
            addr,
            applet.clone(),
            pull_after,
            Duration::from_secs(15),
            |ended| match ended {
                Ended::Closed { .. } => {
                    say(serde_json::json!({ "removed": true, "reason": "closed" }))
                }
                Ended::Pulled(n) => {
                    say(serde_json::json!({ "removed": true, "reason": "pulled", "after": n }))
                }
                Ended::Failed(e) => say(
                    serde_json::json!({ "removed": true, "reason": "error", "error": e.to_string() }),
                ),
            },
        )
        .with_context(|| format!("connecting to vpcd at {addr} (is pcscd running?)"))?;
        *current = Some(on);
        say(serde_json::json!({ "inserted": true }));
        Ok(())
    };
    let remove = |current: &mut Option<OnReader>| {
        if let Some(on) = current.take() {
            on.remove();
        }
        say(serde_json::json!({ "removed": true, "reason": "command" }));
    };

    if inserted {
        insert(&mut current)?;
    }
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        match line.trim() {
            "insert" => {
                if let Err(e) = insert(&mut current) {
                    say(serde_json::json!({ "error": format!("{e:#}") }));
                }
            }
            "remove" => remove(&mut current),
            "quit" => break,
            "" => {}
            other => say(serde_json::json!({ "error": format!("unknown command {other:?}") })),
        }
    }
    if current.is_some() {
        remove(&mut current);
    }
    Ok(())
}
