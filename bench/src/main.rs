//! `fleet-bench`: how fast central ingests, compared with raw PostgreSQL, and what an agent
//! connection costs it.
//!
//! - `ingest`: central runs as a process (so its figures are its own) against a fresh database
//!   on `DATABASE_URL`; N simulated agents, each with its own dev-PKI certificate, stream
//!   synthetic lookup events over mTLS gRPC. Then, in the same run and database, the identical
//!   rows are written with raw binary COPY into an identical table (same columns, keys, indexes
//!   and partitions), and through COPY into a staging table plus `INSERT .. ON CONFLICT`. Last,
//!   the agents send at half the measured rate (or at the fractions `--latency-at` gives) and
//!   the ack latency is measured.
//! - `pages`: seeds 3,000 sites at two sizes of history and times every dashboard page as a
//!   signed-in browser would, cold after a start and warm, at both sizes (`pages.rs`).
//! - `terminal`: counter lookups through the qualification terminal's folders against direct
//!   mode, both through real agents, onshi-sim and central (`terminal.rs`).
//! - `connections`: holds many concurrent agent sessions with heartbeats and reports central's
//!   resident memory per connection (from /proc/<pid>/status).
//! - `fleet` (not a benchmark): the demo's simulated chain, many sites over the real uplink
//!   (`fleet.rs`).
//!
//! Everything is bounded in count and time and stays on loopback. Build in release mode with
//! central beside it: `cargo build --release -p central -p fleet-bench` (`make bench` does).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use e2e::pg::{Bouncer, PoolMode};
use e2e::{Pki, Running, TestDb};
use proto::fleet::v1 as pb;
use proto::fleet::v1::fleet_uplink_client::FleetUplinkClient;
use tokio::sync::{Barrier, Semaphore, mpsc};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "fleet-bench",
    about = "onshi-fleet benchmarks (needs DATABASE_URL)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Ingest throughput against raw COPY, then ack latency at half that rate (or others).
    Ingest {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Events in the throughput run, spread over the agents.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per batch in the throughput run.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Unacknowledged batches an agent keeps in flight.
        #[arg(long, default_value_t = 2)]
        window: usize,
        /// How central writes new rows: copy or unnest.
        #[arg(long, default_value = "copy")]
        write_method: String,
        /// Seconds of the ack latency run (0 skips it).
        #[arg(long, default_value_t = 10)]
        latency_secs: u64,
        /// Events per batch in the ack latency run (a site sends few events at a time).
        #[arg(long, default_value_t = 50)]
        latency_batch: usize,
        /// Rates of the ack latency runs, as fractions of the measured maximum, one run each in
        /// this order (for example `0.2,0.3,0.4,0.5` to see where the tail starts to grow).
        #[arg(long, value_delimiter = ',', default_value = "0.5")]
        latency_at: Vec<f64>,
        /// Also run the throughput phase with central behind PgBouncer in transaction mode
        /// (Debian's `pgbouncer`), on a database of its own, in the same run.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        pgbouncer: bool,
    },
    /// A real edge agent draining a backlog from its outbox, against the bench's own client
    /// streaming the same number of events (the outbox's cost).
    Drain {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
    },
    /// Every dashboard page over 3,000 sites at two sizes of history in one run: the first
    /// request after a start and p95 per page at both, and the growth between them.
    Pages {
        #[arg(long, default_value_t = 3_000)]
        sites: usize,
        /// Days of history at the smaller size.
        #[arg(long, default_value_t = 30)]
        small_days: u32,
        /// Days of history at the larger size.
        #[arg(long, default_value_t = 360)]
        large_days: u32,
        /// Events per site and day of history before the last two days.
        #[arg(long, default_value_t = 4)]
        per_site_day: u32,
        /// Events per site in the last two days (both sizes).
        #[arg(long, default_value_t = 180)]
        recent_per_site: u32,
        /// Timed requests per page.
        #[arg(long, default_value_t = 40)]
        requests: usize,
    },
    /// Counter lookups through the qualification terminal's folders (onshi-sim terminal at
    /// 0 ms) against direct mode (HTTPS to onshi-sim): the file round trip's overhead.
    Terminal {
        /// Lookups per mode.
        #[arg(long, default_value_t = 500)]
        lookups: usize,
        /// Seconds of measuring at most (it stops with what it has).
        #[arg(long, default_value_t = 180)]
        max_secs: u64,
        /// The terminal agent's settle_ms (default: the agent's default).
        #[arg(long)]
        settle_ms: Option<u64>,
        /// The terminal agent's rescan_ms (default: the agent's default).
        #[arg(long)]
        rescan_ms: Option<u64>,
    },
    /// A simulated chain for the demo (not a benchmark): many sites over the real uplink, each
    /// with its own certificate, a day of history, then live until stopped (`fleet.rs`).
    Fleet {
        /// Central's gRPC endpoint.
        #[arg(long, default_value = "https://127.0.0.1:7443")]
        grpc: String,
        /// Central's HTTPS API (operator certificate) address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        api: String,
        /// The dev PKI folder (`central pki init --out`).
        #[arg(long)]
        pki: PathBuf,
        /// The operator certificate of the PKI that names the sites through the API.
        #[arg(long, default_value = "demo")]
        operator: String,
        /// Where each site's stream state is kept between runs.
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 200)]
        sites: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Send each site's day, then stop.
        #[arg(long)]
        once: bool,
        /// Open the whole chain around the clock (demo: availability shows at any hour).
        #[arg(long)]
        always_open: bool,
        /// A name for a site that is not simulated, `CODE=NAME` (repeat).
        #[arg(long = "name", value_parser = parse_name)]
        names: Vec<(String, String)>,
    },
    /// Concurrent agent sessions with heartbeats; central's memory per connection.
    Connections {
        #[arg(long, default_value_t = 5_000)]
        connections: usize,
        /// Distinct agent certificates (sessions reuse them with distinct stream ids).
        #[arg(long, default_value_t = 20)]
        certs: usize,
        #[arg(long, default_value_t = 5)]
        heartbeat_secs: u64,
        /// Seconds to hold every session open once all are connected.
        #[arg(long, default_value_t = 20)]
        hold_secs: u64,
    },
}

fn parse_name(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(code, name)| (code.trim().to_string(), name.trim().to_string()))
        .filter(|(code, name)| !code.is_empty() && !name.is_empty())
        .ok_or_else(|| format!("{text:?} is not CODE=NAME"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.mode {
            Mode::Ingest {
                agents,
                events,
                batch,
                window,
                write_method,
                latency_secs,
                latency_batch,
                latency_at,
                pgbouncer,
            } => {
                if let Some(bad) = latency_at.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
                    bail!("--latency-at takes fractions of the maximum rate in (0, 1], got {bad}");
                }
                let options = IngestOptions {
                    agents,
                    events,
                    batch: batch.clamp(1, central_ingest::ingest::MAX_BATCH_EVENTS),
                    window: window.max(1),
                    write_method,
                    latency: Duration::from_secs(latency_secs),
                    latency_batch: latency_batch.max(1),
                    latency_at,
                    pgbouncer,
                };
                tokio::time::timeout(Duration::from_secs(900), ingest(options))
                    .await
                    .context("the ingest benchmark took more than 15 minutes")?
            }
            Mode::Pages {
                sites,
                small_days,
                large_days,
                per_site_day,
                recent_per_site,
                requests,
            } => {
                let options = pages::Options {
                    sites: sites.max(8),
                    history_days: (small_days, large_days),
                    per_site_day: per_site_day.max(1),
                    recent_per_site,
                    requests: requests.max(5),
                };
                tokio::time::timeout(Duration::from_secs(2 * 3600), pages::run(options))
                    .await
                    .context("the pages benchmark took more than two hours")?
            }
            Mode::Fleet {
                grpc,
                api,
                pki,
                operator,
                state,
                sites,
                seed,
                once,
                always_open,
                names,
            } => {
                fleet::run(fleet::Options {
                    grpc,
                    api,
                    pki,
                    operator,
                    state,
                    sites: sites.clamp(1, 5_000),
                    seed,
                    once,
                    names,
                    always_open,
                })
                .await
            }
            Mode::Drain { events } => {
                tokio::time::timeout(Duration::from_secs(600), drain::run(events.max(1)))
                    .await
                    .context("the drain benchmark took more than 10 minutes")?
            }
            Mode::Terminal {
                lookups,
                max_secs,
                settle_ms,
                rescan_ms,
            } => {
                let options = terminal::Options {
                    lookups: lookups.max(1),
                    budget: Duration::from_secs(max_secs),
                    settle_ms,
                    rescan_ms,
                };
                tokio::time::timeout(Duration::from_secs(max_secs + 120), terminal::run(options))
                    .await
                    .context("the terminal benchmark overran its budget by two minutes")?
            }
            Mode::Connections {
                connections,
                certs,
                heartbeat_secs,
                hold_secs,
            } => tokio::time::timeout(
                Duration::from_secs(600),
                connections_bench(
                    connections,
                    certs.max(1),
                    Duration::from_secs(heartbeat_secs.max(1)),
                    Duration::from_secs(hold_secs),
                ),
            )
            .await
            .context("the connections benchmark took more than 10 minutes")?,
        }
    })
}

mod cpu_times;
mod drain;
mod fleet;
mod pages;
mod storage_probe;
mod terminal;

// ------------------------------------------------------------------------------- central

/// The central binary next to this one (both built by `cargo build --release`).
pub(crate) fn central_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("central");
    if !path.exists() {
        bail!(
            "{} is missing: build it with this benchmark, `cargo build --release -p central -p fleet-bench` (`make bench` does)",
            path.display()
        );
    }
    Ok(path)
}

/// Central connected to `db` itself, so told nothing pools its connections (ingest keeps its
/// statements prepared, as a direct deployment does).
pub(crate) async fn start_central(
    pki: &Pki,
    db: &TestDb,
    extra: &[&str],
) -> anyhow::Result<Running> {
    let direct = [&["--database-pooler", "none"][..], extra].concat();
    start_central_at(pki, db, &db.app_login().await?, &direct).await
}

/// Central serving through `app_url` (a login role of `db` in `onshi_app`, directly or through
/// a pooler), migrating with the owner's URL.
pub(crate) async fn start_central_at(
    pki: &Pki,
    db: &TestDb,
    app_url: &str,
    extra: &[&str],
) -> anyhow::Result<Running> {
    let (cert, key) = pki.paths.central();
    let mut command = tokio::process::Command::new(central_binary()?);
    command
        .arg("serve")
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(pki.paths.chain_ca())
        .arg("--agent-ca")
        .arg(pki.paths.agent_ca().0)
        // Throughput is the point here: no per-site limit.
        .args(["--events-per-second", "0"])
        .args(extra)
        // As in production: central's own login role, migrations with the owner's URL.
        .env("DATABASE_URL", app_url)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn");
    e2e::spawn_ready(command).await
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

pub(crate) fn sites(count: usize) -> Vec<String> {
    // Tokyo (13), medical fee table (1), then a serial; the harness adds the check digit.
    (0..count)
        .map(|i| e2e::site_code(&format!("131{:06}", i + 1)))
        .collect()
}

// ------------------------------------------------------------------------------- agents

/// A valid lookup event as the harness builds it (so it follows the protocol as it grows), with a
/// patient reference of a keyed hash's shape (64 lowercase hex) and no patient behind it.
pub(crate) fn synthetic_event(site: &str, sequence: u64) -> pb::Event {
    let mut event = e2e::uplink::lookup_event(site, sequence);
    if let Some(pb::event::Body::Lookup(lookup)) = event.body.as_mut() {
        lookup.patient_ref = keyed_hash_like(&event.event_id);
        lookup.latency_ms = 120;
    }
    event
}

/// 64 lowercase hex digits as random as a real keyed hash's: SHA-256 of the event id. Deriving
/// the reference from the time-ordered id itself would make every insert into the patient index
/// land at its right edge, which real references never do (README, "Ingest").
fn keyed_hash_like(event_id: &[u8]) -> String {
    fleet_tls::identity::hex(ring::digest::digest(&ring::digest::SHA256, event_id).as_ref())
}

fn batch_message(events: Vec<pb::Event>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::EventBatch { events })),
    }
}

pub(crate) struct AgentSession {
    to_central: mpsc::Sender<pb::AgentMessage>,
    from_central: tonic::Streaming<pb::CentralMessage>,
}

pub(crate) async fn open_session(
    endpoint: &str,
    tls: Arc<rustls::ClientConfig>,
    site: &str,
    stream: Uuid,
    window: usize,
) -> anyhow::Result<AgentSession> {
    let channel = fleet_tls::connect::grpc_channel(endpoint, tls)?;
    let (to_central, outbound) = mpsc::channel(window + 1);
    to_central.send(e2e::uplink::hello(site, stream)).await?;
    let mut from_central = FleetUplinkClient::new(channel)
        .session(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    match from_central.message().await? {
        Some(pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Welcome(_)),
        }) => Ok(AgentSession {
            to_central,
            from_central,
        }),
        other => bail!("expected a welcome, got {other:?}"),
    }
}

async fn next_ack(from_central: &mut tonic::Streaming<pb::CentralMessage>) -> anyhow::Result<u64> {
    match from_central.message().await? {
        Some(pb::CentralMessage {
            kind: Some(pb::central_message::Kind::Ack(ack)),
        }) => Ok(ack.up_to_sequence),
        other => bail!("expected an ack, got {other:?}"),
    }
}

impl AgentSession {
    /// Sends `batches` keeping at most `window` unacknowledged, optionally one batch per
    /// `pace`; returns each batch's ack latency, taken when the ack arrives (acks are read
    /// while sending goes on).
    pub(crate) async fn stream(
        &mut self,
        batches: Vec<Vec<pb::Event>>,
        window: usize,
        pace: Option<Duration>,
    ) -> anyhow::Result<Vec<Duration>> {
        let AgentSession {
            to_central,
            from_central,
        } = self;
        let total = batches.len();
        let permits = Semaphore::new(window);
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        let sender = async {
            let mut next = tokio::time::Instant::now();
            for batch in batches {
                permits.acquire().await?.forget();
                if let Some(pace) = pace {
                    tokio::time::sleep_until(next).await;
                    next += pace;
                }
                let last = batch.last().map_or(0, |e| e.sequence);
                sent_tx.send((last, Instant::now()))?;
                to_central.send(batch_message(batch)).await?;
            }
            anyhow::Ok(())
        };
        let reader = async {
            let mut latencies = Vec::with_capacity(total);
            let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
            let mut acked = 0;
            while latencies.len() < total {
                let up_to = next_ack(from_central).await?;
                if up_to < acked {
                    bail!("acks went backwards: {up_to} after {acked}");
                }
                acked = up_to;
                while let Ok(sent) = sent_rx.try_recv() {
                    in_flight.push_back(sent);
                }
                let before = latencies.len();
                while in_flight.front().is_some_and(|(last, _)| *last <= acked) {
                    let (_, sent) = in_flight.pop_front().expect("checked above");
                    latencies.push(sent.elapsed());
                }
                permits.add_permits(latencies.len() - before);
            }
            anyhow::Ok(latencies)
        };
        let (sent, latencies) = tokio::join!(sender, reader);
        sent?;
        latencies
    }
}

// ------------------------------------------------------------------------------- ingest

#[derive(Debug)]
struct IngestOptions {
    agents: usize,
    events: usize,
    batch: usize,
    window: usize,
    write_method: String,
    latency: Duration,
    latency_batch: usize,
    latency_at: Vec<f64>,
    pgbouncer: bool,
}

async fn ingest(options: IngestOptions) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let sites = sites(options.agents);
    eprintln!("issuing {} agent certificates...", sites.len());
    let pki = Pki::new(&sites.iter().map(String::as_str).collect::<Vec<_>>())?;
    // The sessions say nothing while the raw COPY baseline runs (minutes with `--events` in
    // the millions), longer than central lets a silent agent keep its session.
    let write_method = [
        "--write-method",
        options.write_method.as_str(),
        "--silence-secs",
        "3600",
    ];
    let central = start_central(&pki, &db, &write_method).await?;
    let cpu_before = cpu_times::CpuTimes::now();
    let (central_rate, total, mut sessions) =
        throughput(&central, &db, &pki, &sites, &options).await?;
    // The maximum, and so the half rate, moves with the CPU the host lends the machine.
    let throughput_cpu = cpu_times::shares_since(cpu_before);
    // Each stream's events of the throughput phase: sequences 1 to this.
    let per_stream = options.events / options.agents.max(1);
    // The ack latency right after the throughput phase it takes its rate from, once a
    // checkpoint has written back what that phase left in PostgreSQL's buffers, and before the
    // raw COPY baseline, so that it does not run on the baseline's leftovers (three copies of
    // the rows, written and dropped; README, "Ingest", fourth and fifth sessions).
    let client = db.client().await?;
    client.batch_execute("CHECKPOINT").await?;
    // The storage probe's file goes beside PostgreSQL's data directory, on its file system.
    let data_directory: String = client.query_one("SHOW data_directory", &[]).await?.get(0);
    let probe_dir = Path::new(&data_directory)
        .parent()
        .unwrap_or(Path::new(&data_directory))
        .to_path_buf();
    drop(client);
    let mut latency = Vec::new();
    if !options.latency.is_zero() {
        // Each run continues the streams where the one before stopped.
        let mut next_sequence = per_stream as u64 + 1;
        for fraction in &options.latency_at {
            let (run, sent) = latency_run(
                &mut sessions,
                central_rate * fraction,
                next_sequence,
                &options,
                &probe_dir,
            )
            .await?;
            next_sequence += sent;
            latency.push(serde_json::json!({ "fraction_of_max": fraction, "run": run }));
        }
    }

    // The same phase with central's connections through PgBouncer in transaction mode, on a
    // database of its own (so the direct run's rows stay the raw COPY's input).
    let pooled_rate = if options.pgbouncer {
        let pooled_db = TestDb::create().await?;
        let bouncer = Bouncer::in_front_of(&pooled_db.url, PoolMode::Transaction).await?;
        let app_url = bouncer.route(&pooled_db.app_login().await?);
        let pooled_central = start_central_at(
            &pki,
            &pooled_db,
            &app_url,
            &[&write_method[..], &["--database-pooler", "transaction"]].concat(),
        )
        .await?;
        let (rate, _, pooled_sessions) =
            throughput(&pooled_central, &pooled_db, &pki, &sites, &options).await?;
        drop(pooled_sessions);
        Some(rate)
    } else {
        None
    };
    let raw = raw_copy(&db, per_stream as i64).await?;
    // The ratio is against the faster of one and two COPY streams.
    let copy_rate = raw.copy.max(raw.copy_parallel);

    // The figures depend on it (README, "Ingest"): say under which it was measured.
    let max_wal_size: String = db
        .client()
        .await?
        .query_one("SHOW max_wal_size", &[])
        .await?
        .get(0);
    let ratio = central_rate / copy_rate;
    println!(
        "{}",
        serde_json::json!({
            "mode": "ingest",
            "agents": options.agents,
            "events": total,
            "batch": options.batch,
            "window": options.window,
            "write_method": options.write_method,
            "central_events_per_sec": central_rate.round(),
            "raw_copy_events_per_sec": raw.copy.round(),
            "raw_copy_2_streams_events_per_sec": raw.copy_parallel.round(),
            "staging_copy_insert_events_per_sec": raw.staged.round(),
            "ratio_central_to_copy": (ratio * 1000.0).round() / 1000.0,
            "ack_latency": latency,
            "postgres_max_wal_size": max_wal_size,
            "throughput_machine_cpu": throughput_cpu,
            "central_via_pgbouncer_transaction_events_per_sec": pooled_rate.map(f64::round),
            "ratio_pgbouncer_to_direct": pooled_rate.map(|p| (p / central_rate * 1000.0).round() / 1000.0),
        })
    );
    if let Some(pooled) = pooled_rate {
        eprintln!(
            "central behind PgBouncer (transaction mode) {pooled:.0} events/s: {:.3} of direct",
            pooled / central_rate
        );
    }
    eprintln!(
        "central {central_rate:.0} events/s; raw COPY {:.0} events/s (2 streams: {:.0}); \
         ratio {ratio:.3}; COPY to staging + INSERT ON CONFLICT {:.0} events/s",
        raw.copy, raw.copy_parallel, raw.staged
    );
    drop(sessions);
    drop(central);
    Ok(())
}

/// The throughput phase: every agent streams its share of `options.events` to `central` at
/// once; returns events per second, the number sent, and the sessions (open for the latency
/// run). Fails unless central stored exactly what was sent.
async fn throughput(
    central: &Running,
    db: &TestDb,
    pki: &Pki,
    sites: &[String],
    options: &IngestOptions,
) -> anyhow::Result<(f64, usize, Vec<(String, AgentSession)>)> {
    let endpoint = format!("https://{}", central.field("grpc"));
    let per_agent = options.events / options.agents.max(1);
    let total = per_agent * options.agents;

    // Sessions open and events built before the clock starts.
    eprintln!(
        "{} agents x {per_agent} events, batches of {}, window {}...",
        options.agents, options.batch, options.window
    );
    let start = Arc::new(Barrier::new(options.agents + 1));
    let mut tasks = Vec::new();
    for site in sites {
        let tls = e2e::uplink::agent_tls(pki, site)?;
        let (endpoint, site, start) = (endpoint.clone(), site.clone(), start.clone());
        let (batch, window) = (options.batch, options.window);
        tasks.push(tokio::spawn(async move {
            let stream = Uuid::now_v7();
            let events: Vec<pb::Event> = (1..=per_agent as u64)
                .map(|s| synthetic_event(&site, s))
                .collect();
            let batches: Vec<Vec<pb::Event>> =
                events.chunks(batch).map(<[pb::Event]>::to_vec).collect();
            let session = open_session(&endpoint, tls, &site, stream, window).await;
            start.wait().await;
            let mut session = session?;
            session.stream(batches, window, None).await?;
            anyhow::Ok((site, session))
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await??);
    }
    let elapsed = began.elapsed();
    let rate = total as f64 / elapsed.as_secs_f64();
    eprintln!("central: {total} events in {elapsed:.2?}");

    let client = db.client().await?;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    if stored != total as i64 {
        bail!("central stored {stored} events, the agents sent {total}");
    }
    Ok((rate, total, sessions))
}

type Row = (
    Uuid,
    String,
    Uuid,
    i64,
    String,
    time::OffsetDateTime,
    String,
    serde_json::Value,
);

/// Writes the rows central stored in the throughput phase (the first `per_stream` of each
/// stream) again, with raw binary COPY into an identical table, and via a staging table;
/// returns the rates in rows per second.
async fn raw_copy(db: &TestDb, per_stream: i64) -> anyhow::Result<RawRates> {
    let mut client = db.client().await?;
    let rows: Vec<Row> = client
        .query(
            "SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at, kind, body
             FROM events WHERE sequence <= $1",
            &[&per_stream],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect();
    // Same columns, keys, indexes and partitions as `events`.
    let bounds: Vec<(String, String)> = client
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for table in ["bench_copy", "bench_staged"] {
        let mut ddl = format!(
            "CREATE TABLE {table} (LIKE events INCLUDING ALL) PARTITION BY RANGE (occurred_at);"
        );
        for (name, bound) in &bounds {
            ddl.push_str(&format!(
                "CREATE TABLE {table}_{name} PARTITION OF {table} {bound};"
            ));
        }
        client.batch_execute(&ddl).await?;
    }
    client.batch_execute("CHECKPOINT").await?;

    let began = Instant::now();
    let tx = client.transaction().await?;
    copy_rows(&tx, "bench_copy", &rows).await?;
    tx.commit().await?;
    let copy_rate = rows.len() as f64 / began.elapsed().as_secs_f64();

    // Central writes with two transactions in flight (its default writers); so does this one,
    // each COPY on its own connection with half of the rows.
    client
        .batch_execute("TRUNCATE bench_copy; CHECKPOINT")
        .await?;
    let rows = Arc::new(rows);
    let began = Instant::now();
    let mut halves = Vec::new();
    for half in 0..2usize {
        let (rows, url) = (rows.clone(), db.url.clone());
        halves.push(tokio::spawn(async move {
            let mut client = e2e::connect(&url).await?;
            let tx = client.transaction().await?;
            let mid = rows.len() / 2;
            let part = if half == 0 {
                &rows[..mid]
            } else {
                &rows[mid..]
            };
            copy_rows(&tx, "bench_copy", part).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }));
    }
    for half in halves {
        half.await??;
    }
    let parallel_rate = rows.len() as f64 / began.elapsed().as_secs_f64();

    client.batch_execute("CHECKPOINT").await?;
    let began = Instant::now();
    let tx = client.transaction().await?;
    tx.batch_execute("CREATE TEMP TABLE staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DROP")
        .await?;
    copy_rows(&tx, "staging", &rows).await?;
    tx.batch_execute(
        "INSERT INTO bench_staged (event_id, site_code, stream_id, sequence, terminal_id,
                                   occurred_at, kind, body)
         SELECT event_id, site_code, stream_id, sequence, terminal_id, occurred_at, kind, body
         FROM staging ON CONFLICT DO NOTHING",
    )
    .await?;
    tx.commit().await?;
    let staged_rate = rows.len() as f64 / began.elapsed().as_secs_f64();
    // The baseline's three copies of the rows go with it (the ack latency ran before).
    client
        .batch_execute("DROP TABLE bench_copy, bench_staged")
        .await?;
    Ok(RawRates {
        copy: copy_rate,
        copy_parallel: parallel_rate,
        staged: staged_rate,
    })
}

#[derive(Debug, Clone, Copy)]
struct RawRates {
    /// One COPY in one transaction.
    copy: f64,
    /// Two COPYs in two transactions at once.
    copy_parallel: f64,
    /// COPY into a temporary staging table, then INSERT .. SELECT .. ON CONFLICT DO NOTHING.
    staged: f64,
}

async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    rows: &[Row],
) -> anyhow::Result<()> {
    let sink = tx
        .copy_in(&format!(
            "COPY {table} (event_id, site_code, stream_id, sequence, terminal_id, occurred_at, \
             kind, body) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let types = [
        Type::UUID,
        Type::TEXT,
        Type::UUID,
        Type::INT8,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::JSONB,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for row in rows {
        let values: [&(dyn ToSql + Sync); 8] = [
            &row.0, &row.1, &row.2, &row.3, &row.4, &row.5, &row.6, &row.7,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.as_mut().finish().await?;
    Ok(())
}

/// Every agent sends small batches at an even pace so that all together send `rate` events per
/// second, its sequences from `first`; returns ack latency percentiles and how many events each
/// agent sent. The sessions stay open for the next run.
async fn latency_run(
    sessions: &mut Vec<(String, AgentSession)>,
    rate: f64,
    first: u64,
    options: &IngestOptions,
    probe_dir: &Path,
) -> anyhow::Result<(serde_json::Value, u64)> {
    let agents = sessions.len();
    let per_agent_rate = rate / agents as f64;
    let pace = Duration::from_secs_f64(options.latency_batch as f64 / per_agent_rate);
    let batches_per_agent = (options.latency.as_secs_f64() / pace.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    eprintln!(
        "ack latency at {rate:.0} events/s: {agents} agents, a batch of {} every {pace:.2?}...",
        options.latency_batch
    );
    // Every agent builds its batches before any sends: building is CPU work without an await,
    // and while it runs the runtime fires no timers, so offsets slept during it would all end
    // together and the agents would send in lockstep (every site at the same phase of the pace).
    let built = Arc::new(Barrier::new(agents + 1));
    let start = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
    let mut tasks = Vec::new();
    for (site, mut session) in sessions.drain(..) {
        let batch = options.latency_batch;
        let (built, start) = (built.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let batches: Vec<Vec<pb::Event>> = (0..batches_per_agent)
                .map(|b| {
                    let from = first + (b * batch) as u64;
                    (from..from + batch as u64)
                        .map(|s| synthetic_event(&site, s))
                        .collect()
                })
                .collect();
            built.wait().await;
            // One start for all; each agent begins at its own point of the first pace, as
            // independent sites would.
            let start = *start.get_or_init(tokio::time::Instant::now);
            tokio::time::sleep_until(start + pace.mul_f64(rand_fraction(&site))).await;
            let latencies = session.stream(batches, 8, Some(pace)).await?;
            anyhow::Ok((site, session, latencies))
        }));
    }
    built.wait().await;
    let began = Instant::now();
    let probe = storage_probe::StorageProbe::start(probe_dir);
    let cpu_before = cpu_times::CpuTimes::now();
    let mut all = Vec::new();
    for task in tasks {
        let (site, session, latencies) = task.await??;
        sessions.push((site, session));
        all.extend(latencies);
    }
    let cpu = cpu_times::shares_since(cpu_before);
    let storage = match probe {
        Ok(probe) => probe.finish(),
        Err(error) => serde_json::json!({
            "not_run": format!("{}: {error}", probe_dir.display())
        }),
    };
    let achieved = (all.len() * options.latency_batch) as f64 / began.elapsed().as_secs_f64();
    all.sort();
    let (p50, p99) = (pages::percentile(&all, 0.50), pages::percentile(&all, 0.99));
    eprintln!(
        "ack latency p50 {p50:.2?}, p99 {p99:.2?} over {} batches; meanwhile the storage's flushes {storage} and the machine's CPU {cpu}",
        all.len()
    );
    let run = serde_json::json!({
        "target_events_per_sec": rate.round(),
        "achieved_events_per_sec": achieved.round(),
        "batch": options.latency_batch,
        "batches": all.len(),
        "p50_ms": (p50.as_secs_f64() * 1e5).round() / 100.0,
        "p99_ms": (p99.as_secs_f64() * 1e5).round() / 100.0,
        "storage_fsync": storage,
        "machine_cpu": cpu,
    });
    Ok((run, (batches_per_agent * options.latency_batch) as u64))
}

/// A stable fraction in [0, 1) from a site code, to spread agents' start times.
fn rand_fraction(site: &str) -> f64 {
    let hash = site.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % 10_000) as f64 / 10_000.0
}

// ------------------------------------------------------------------------------- connections

async fn connections_bench(
    connections: usize,
    certs: usize,
    heartbeat: Duration,
    hold: Duration,
) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let sites = sites(certs);
    let pki = Pki::new(&sites.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut central = start_central(&pki, &db, &[]).await?;
    let pid = central.child.id().context("central exited")?;
    let endpoint = format!("https://{}", central.field("grpc"));
    let tls: Vec<_> = sites
        .iter()
        .map(|s| e2e::uplink::agent_tls(&pki, s))
        .collect::<Result<_, _>>()?;

    // Warm central up with one session so that the baseline holds its one-off allocations.
    let warm = open_session(&endpoint, tls[0].clone(), &sites[0], Uuid::now_v7(), 1).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(pid)?;
    eprintln!("central RSS before: {baseline} KiB; opening {connections} sessions...");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connecting = Arc::new(Semaphore::new(64));
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(connections.max(1));
    let began = Instant::now();
    for i in 0..connections {
        let (endpoint, site, tls) = (
            endpoint.clone(),
            sites[i % sites.len()].clone(),
            tls[i % tls.len()].clone(),
        );
        let (connecting, ready, mut stop) = (connecting.clone(), ready_tx.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let permit = connecting.acquire_owned().await;
            let session = open_session(&endpoint, tls, &site, Uuid::now_v7(), 1).await;
            drop(permit);
            let session = match session {
                Ok(s) => {
                    let _ = ready.send(Ok(())).await;
                    s
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
            };
            let mut tick = tokio::time::interval(heartbeat);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {
                        let beat = pb::AgentMessage {
                            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                                sent_at: Some(proto::convert::timestamp(time::OffsetDateTime::now_utc())),
                                last_produced_sequence: 0,
                                outbox_depth: 0,
                            })),
                        };
                        if session.to_central.send(beat).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..connections {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => bail!("a session failed to open: {e:#}"),
            None => bail!("session tasks ended early"),
        }
    }
    eprintln!(
        "{connections} sessions open after {:.1?}; holding {hold:?} with heartbeats every {heartbeat:?}...",
        began.elapsed()
    );
    tokio::time::sleep(hold).await;
    let held = rss_kib(pid)?;
    let alive = central.child.try_wait()?.is_none();
    if !alive {
        bail!("central exited while holding {connections} sessions");
    }
    let per_connection = (held.saturating_sub(baseline)) as f64 * 1024.0 / connections as f64;
    println!(
        "{}",
        serde_json::json!({
            "mode": "connections",
            "connections": connections,
            "certificates": certs,
            "heartbeat_secs": heartbeat.as_secs(),
            "central_rss_before_kib": baseline,
            "central_rss_holding_kib": held,
            "central_bytes_per_connection": per_connection.round(),
            "central_alive": alive,
        })
    );
    eprintln!(
        "central RSS {baseline} KiB -> {held} KiB: {:.1} KiB per connection",
        per_connection / 1024.0
    );
    let _ = stop_tx.send(true);
    Ok(())
}
