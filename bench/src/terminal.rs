//! `terminal`: counter lookups through the qualification terminal's folders against direct mode.
//!
//! Real processes: central (PostgreSQL from `DATABASE_URL`, so both agents stream their events
//! as at a site), `onshi-sim serve` (HTTPS), `onshi-sim terminal` on a temporary folder with
//! 0 ms answer latency, and two `edge-agent`s with the shipped transport defaults (but the
//! real-site `timeout_ms = 30000` for the terminal): one `transport = "terminal"` on that
//! folder, one `transport = "direct"` to onshi-sim. The bench
//! calls each agent's control API in-process (what `edge-agent lookup` calls, without the CLI
//! process), for valid people of the simulator's population, in rounds of one lookup per mode,
//! the order alternating between rounds, so machine noise falls on both. The overhead of the
//! file round trip is the terminal's percentile minus the direct one's.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::{AgentSite, Pki, Running, TestDb};
use proto::agent::v1 as pb;
use proto::agent::v1::local_agent_client::LocalAgentClient;
use tonic::transport::Channel;

use crate::pages::percentile;
use crate::{sites, start_central};

/// The sim terminal's default institution (the corpus clinic); the terminal agent's site.
const CLINIC: &str = "0110112489";
/// Lookups per mode before the clock starts (connections, caches, the first files).
const WARM_UP: usize = 10;

#[derive(Debug)]
pub(crate) struct Options {
    pub lookups: usize,
    /// The measuring stops here, with what it has, if the lookups are not done.
    pub budget: Duration,
    /// The terminal agent's `settle_ms` and `rescan_ms` (None: the agent's defaults).
    pub settle_ms: Option<u64>,
    pub rescan_ms: Option<u64>,
}

struct Agent {
    name: &'static str,
    client: LocalAgentClient<Channel>,
    times: Vec<Duration>,
    /// The agent's own figure: the exchange with the national side (journal and files, or
    /// HTTPS), without the control API and the recording.
    exchange: Vec<Duration>,
    _agent: Running,
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let dir = crate::central_binary()?
        .parent()
        .context("the benchmark's folder")?
        .to_path_buf();
    for name in ["edge-agent", "onshi-sim"] {
        if !dir.join(name).exists() {
            bail!(
                "{} is missing: `cargo build --release -p fleet-bench -p edge-agent -p onshi-sim -p central` (`make bench` does)",
                dir.join(name).display()
            );
        }
    }
    e2e::use_binaries_from(&dir);
    let quiet = [("RUST_LOG", "warn")];

    let db = TestDb::create().await?;
    let direct_site = sites(1).remove(0);
    let pki = Pki::new(&[CLINIC, &direct_site])?;
    let central = start_central(&pki, &db, &[]).await?;
    let central_endpoint = format!("https://{}", central.field("grpc"));
    let sim = e2e::start_sim_with_env(&pki, &quiet).await?;

    let terminal_site = AgentSite::new(&pki, CLINIC, &central_endpoint, "https://127.0.0.1:9")?;
    let folder = terminal_site.dir().join("OQS");
    let _terminal = e2e::start_sim_terminal(&folder, &["--latency-ms", "0"]).await?;
    let knobs: String = [
        ("settle_ms", options.settle_ms),
        ("rescan_ms", options.rescan_ms),
    ]
    .iter()
    .filter_map(|(name, ms)| ms.map(|ms| format!("\n{name} = {ms}")))
    .collect();
    terminal_site.edit_config(
        "timeout_ms = 5000",
        &format!(
            "timeout_ms = 30000\ntransport = \"terminal\"\nfolder = \"{}\"{knobs}",
            folder.display()
        ),
    )?;
    let direct_site = AgentSite::new(
        &pki,
        &direct_site,
        &central_endpoint,
        &e2e::https_endpoint(&sim, "https"),
    )?;

    let mut modes = Vec::new();
    for (name, site) in [("terminal", &terminal_site), ("direct", &direct_site)] {
        let agent = site.start_with_env(&quiet).await?;
        let socket = agent.field("control_socket");
        modes.push(Agent {
            name,
            client: edge_agent::control::connect(socket.as_ref()).await?,
            times: Vec::with_capacity(options.lookups),
            exchange: Vec::with_capacity(options.lookups),
            _agent: agent,
        });
    }
    let people = e2e::sim_people("valid", 200).await?;
    anyhow::ensure!(!people.is_empty(), "the population has no valid people");

    eprintln!(
        "{} lookups per mode after {WARM_UP} warm-ups, alternating rounds...",
        options.lookups
    );
    let began = Instant::now();
    let mut rounds = 0;
    for round in 0..WARM_UP + options.lookups {
        if began.elapsed() > options.budget {
            eprintln!(
                "stopped at the {:?} budget after {rounds} rounds",
                options.budget
            );
            break;
        }
        let person = &people[round % people.len()];
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for m in order {
            let (elapsed, exchange) = lookup(&mut modes[m], person).await?;
            if round >= WARM_UP {
                modes[m].times.push(elapsed);
                modes[m].exchange.push(exchange);
            }
        }
        if round >= WARM_UP {
            rounds += 1;
        }
    }
    anyhow::ensure!(rounds > 0, "no round was measured within the budget");

    use edge_agent::national::settings::{default_rescan_ms, default_settle_ms};
    let settle_ms = options.settle_ms.unwrap_or_else(default_settle_ms);
    let rescan_ms = options.rescan_ms.unwrap_or_else(default_rescan_ms);
    let [t, d] = [0, 1].map(|m| {
        let agent = &mut modes[m];
        [Stats::of(&mut agent.times), Stats::of(&mut agent.exchange)]
    });
    let overhead = Stats {
        p50: t[0].p50 - d[0].p50,
        p99: t[0].p99 - d[0].p99,
        mean: t[0].mean - d[0].mean,
    };
    let ratio = Stats {
        p50: t[0].p50 / d[0].p50,
        p99: t[0].p99 / d[0].p99,
        mean: t[0].mean / d[0].mean,
    };
    println!(
        "terminal: {rounds} counter lookups per mode (control API, valid people), \
         sim terminal at 0 ms, settle_ms = {settle_ms}, rescan_ms = {rescan_ms}"
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8}",
        "", "p50 ms", "p99 ms", "mean ms"
    );
    for (name, s) in [
        ("terminal", &t[0]),
        ("direct", &d[0]),
        ("overhead (terminal - direct)", &overhead),
        ("ratio terminal / direct", &ratio),
        ("agent's exchange only, terminal", &t[1]),
        ("agent's exchange only, direct", &d[1]),
    ] {
        println!("{name:<36} {:>8.1} {:>8.1} {:>8.1}", s.p50, s.p99, s.mean);
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "terminal",
            "lookups_per_mode": rounds,
            "settle_ms": settle_ms,
            "rescan_ms": rescan_ms,
            "terminal_ms": t[0].json(),
            "direct_ms": d[0].json(),
            "overhead_ms": overhead.json(),
            "ratio": ratio.json(),
            "agent_exchange_ms": {"terminal": t[1].json(), "direct": d[1].json()},
        })
    );
    const TARGET_P99_MS: f64 = 50.0;
    if overhead.p99 < TARGET_P99_MS {
        println!("p99 overhead within the {TARGET_P99_MS} ms target");
    } else {
        println!("p99 overhead OVER the {TARGET_P99_MS} ms target");
    }
    Ok(())
}

/// Milliseconds (or a ratio).
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    fn of(times: &mut [Duration]) -> Self {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            p50: ms(percentile(times, 0.5)),
            p99: ms(percentile(times, 0.99)),
            mean: ms(times.iter().sum::<Duration>() / times.len() as u32),
        }
    }

    fn json(&self) -> serde_json::Value {
        let round2 = |v: f64| (v * 100.0).round() / 100.0;
        serde_json::json!({"p50": round2(self.p50), "p99": round2(self.p99), "mean": round2(self.mean)})
    }
}

/// One counter lookup through `mode`'s agent, timed from the request to the answer; anything
/// but "valid" fails the benchmark (it would not be measuring a lookup).
async fn lookup(mode: &mut Agent, person: &e2e::SimPerson) -> anyhow::Result<(Duration, Duration)> {
    let request = pb::InsuranceCardLookupRequest {
        insurer_number: person.insurer_number.clone(),
        insured_card_symbol: person.symbol.clone(),
        insured_identification_number: person.number.clone(),
        insured_branch_number: person.branch.clone(),
        birthdate: person.birthdate.clone(),
        terminal_id: String::new(),
        limit_consent: false,
    };
    let started = Instant::now();
    let reply = mode
        .client
        .lookup_insurance_card(request)
        .await
        .with_context(|| format!("a {} lookup failed", mode.name))?
        .into_inner();
    let elapsed = started.elapsed();
    if reply.outcome != "valid" {
        bail!(
            "a {} lookup answered {:?}: {}",
            mode.name,
            reply.outcome,
            reply.message
        );
    }
    Ok((elapsed, Duration::from_millis(reply.latency_ms.into())))
}
