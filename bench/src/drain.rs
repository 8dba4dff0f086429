//! `drain`: a real edge agent with a backlog in its outbox (central was unreachable for a while)
//! reconnects and drains it. The baseline, in the same run and against the same central, is the
//! bench's own client streaming the same number of events with the agent's batch size and window:
//! the ratio is what reading, opening and decoding sealed outbox records costs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::{AgentSite, Pki, TestDb};
use edge_agent::config::AgentConfig;
use edge_agent::outbox::Outbox;
use onshi_domain::events::FleetEvent;
use uuid::Uuid;

use crate::{open_session, sites, start_central, synthetic_event};

/// What the agent's uplink uses (edge-agent/src/uplink.rs).
const AGENT_BATCH: usize = 500;
const AGENT_WINDOW: usize = 4;
/// Events per outbox transaction while filling the backlog.
const FILL_CHUNK: u64 = 5_000;

pub(crate) async fn run(events: u64) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let sites = sites(2);
    let pki = Pki::new(&sites.iter().map(String::as_str).collect::<Vec<_>>())?;
    let central = start_central(&pki, &db, &[]).await?;
    let endpoint = format!("https://{}", central.field("grpc"));

    // The agent's backlog, written through the outbox library as the agent would have.
    let site = AgentSite::new(&pki, &sites[0], &endpoint, "https://127.0.0.1:9")?;
    let config = AgentConfig::load(&site.config, &HashMap::new())?;
    let outbox = Outbox::open(&config.outbox_path(), config.outbox_options())?;
    eprintln!("filling the outbox with {events} events...");
    let mut written = 0;
    while written < events {
        let chunk = FILL_CHUNK.min(events - written);
        let code = sites[0].clone();
        written = outbox
            .append_many(chunk, move |sequence| {
                FleetEvent::try_from(synthetic_event(&code, sequence))
                    .expect("synthetic events are valid")
            })
            .await?;
    }
    drop(outbox);

    let agent_binary = crate::central_binary()?.with_file_name("edge-agent");
    if !agent_binary.exists() {
        bail!(
            "{} is missing: `cargo build --release -p edge-agent -p central -p fleet-bench` (`make bench` does)",
            agent_binary.display()
        );
    }
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&agent_binary);
    command
        .arg("--config")
        .arg(&site.config)
        .arg("run")
        .env("RUST_LOG", "warn");
    let _agent = e2e::spawn_ready(command).await?;
    let client = db.client().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored: i64 = client
            .query_one(
                "SELECT count(*) FROM events WHERE site_code = $1",
                &[&sites[0]],
            )
            .await?
            .get(0);
        if stored as u64 >= events {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent drained only {stored} of {events} events in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agent_secs = started.elapsed().as_secs_f64();

    // The baseline: the same number of events from the bench's own client, same batch and window.
    let batches: Vec<Vec<_>> = (1..=events)
        .map(|sequence| synthetic_event(&sites[1], sequence))
        .collect::<Vec<_>>()
        .chunks(AGENT_BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let tls = e2e::uplink::agent_tls(&pki, &sites[1])?;
    let mut session = open_session(&endpoint, tls, &sites[1], Uuid::now_v7(), AGENT_WINDOW)
        .await
        .context("opening the baseline session")?;
    let started = Instant::now();
    session.stream(batches, AGENT_WINDOW, None).await?;
    let direct_secs = started.elapsed().as_secs_f64();

    let agent_rate = events as f64 / agent_secs;
    let direct_rate = events as f64 / direct_secs;
    println!("drain: {events} events buffered at one agent");
    println!(
        "  edge-agent draining its outbox   {agent_rate:>10.0} events/s ({agent_secs:.2} s, including start-up)"
    );
    println!(
        "  bench client, same batches       {direct_rate:>10.0} events/s ({direct_secs:.2} s)"
    );
    println!(
        "  ratio                            {:>10.2}",
        agent_rate / direct_rate
    );
    Ok(())
}
