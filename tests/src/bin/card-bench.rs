//! `card-bench`: card-on-reader → result latency of the My Number card route through the real
//! stack (pcscd + vpcd + virtual card + edge-agent + onshi-sim with zero added latency + central),
//! then the agent's idle CPU and memory.
//!
//! ```text
//! scripts/with-pg.sh cargo run -p e2e --bin card-bench -- [INSERTIONS] [IDLE_SECONDS]
//! ```
//!
//! For each insertion it measures: `detect` (the card connects to vpcd → pcscd reports it
//! present; pcscd polls the vpcd driver), `lookup` (the clerk's `edge-agent card-lookup` →
//! the answer printed, PIN route: select, certificate, PIN, challenge, signature, confirmation,
//! event fsynced), `agent` (the same, as the agent measures it, without the CLI process) and
//! `total` (card on the reader → result). Needs `make build` (or the binaries built) and
//! DATABASE_URL.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::pcsc::{
    CardMode, Pcsc, READERS, VirtualCard, card_lookup, enable_cards, issue_card,
    start_sim_with_cards, wait_card_present,
};
use e2e::{AgentSite, Pki, TestDb, https_endpoint, site_code, start_central};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<8} median {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   (n={})",
        percentile(&values, 50.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(f64::NAN),
        values.len()
    );
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').context("/proc/pid/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3; utime 14 and stime 15 (1-based) → indices 11 and 12.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let insertions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let idle_secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);

    let _pcsc = Pcsc::acquire().await?;
    let site = site_code("274012345");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim_with_cards(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    enable_cards(&agent_site.config, &[])?;
    let agent = agent_site.start().await?;
    let agent_pid = agent.child.id().context("the agent's pid")?;
    let dir = tempfile::tempdir()?;
    let issued = issue_card(&pki, &dir.path().join("card"), 0, "4321", false).await?;
    let mut card = VirtualCard::start(Some(&issued), CardMode::MyNumber, 0, None).await?;

    // One warm-up lookup (TLS session to onshi-sim, first outbox write).
    card.insert().await?;
    card_lookup(&agent_site.config, READERS[0], Some("4321")).await?;
    card.remove().await?;

    let (mut detect, mut lookup, mut agent_ms, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..insertions {
        let inserted = Instant::now();
        card.insert_only().await?;
        wait_card_present(0).await?;
        let seen = Instant::now();
        let (status, reply, stderr) =
            card_lookup(&agent_site.config, READERS[0], Some("4321")).await?;
        let done = Instant::now();
        anyhow::ensure!(
            status.success() && reply["card_check"] == "ok",
            "lookup failed: {stderr} {reply}"
        );
        detect.push((seen - inserted).as_secs_f64() * 1e3);
        lookup.push((done - seen).as_secs_f64() * 1e3);
        agent_ms.push(reply["latency_ms"].as_f64().unwrap_or(f64::NAN));
        total.push((done - inserted).as_secs_f64() * 1e3);
        card.remove().await?;
    }
    println!("card-bench: {insertions} insertions, PIN route, onshi-sim with 0 ms added latency");
    summary("detect", detect);
    summary("lookup", lookup);
    summary("agent", agent_ms);
    summary("total", total);

    // Idle: no card, no lookups; the reader thread waits in SCardGetStatusChange.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hz = clock_ticks_per_second();
    let before = cpu_ticks(agent_pid)?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = cpu_ticks(agent_pid)?;
    let cpu_percent = (after - before) as f64 / hz as f64 / idle_secs as f64 * 100.0;
    println!(
        "idle     cpu {cpu_percent:.2} % over {idle_secs} s ({} ticks at {hz} Hz)   rss {:.1} MiB",
        after - before,
        rss_kib(agent_pid)? as f64 / 1024.0
    );
    card.quit().await?;
    Ok(())
}
