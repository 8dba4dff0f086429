//! Fault injection: whatever fails between a site and PostgreSQL, every event the agent recorded
//! reaches central exactly once. Each test compares event ids (what the counter was shown, what
//! the outbox held) with what PostgreSQL holds, not just counts. Every loop is bounded.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use e2e::pg::OwnCluster;
use e2e::proxy::Proxy;
use e2e::{
    AgentSettings, AgentSite, Pki, SimPerson, TestDb, eventually, https_endpoint, sim_people,
    site_code, start_central, start_sim,
};
use edge_agent::config::AgentConfig;
use edge_agent::outbox::Outbox;
use tokio::process::Command;

fn clinic() -> String {
    site_code("341071236")
}

/// What every fault test starts with: one site's PKI, central on its own database, onshi-sim,
/// and the site's agent configured to reach central directly or through a test-controlled proxy.
struct Stack {
    site: String,
    pki: Pki,
    central: e2e::Running,
    _sim: e2e::Running,
    proxy: Option<Proxy>,
    agent_site: AgentSite,
}

/// How the agent reaches central.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Proxied,
}

impl Stack {
    async fn start(db: &TestDb, route: Route, settings: AgentSettings) -> anyhow::Result<Self> {
        let site = clinic();
        let pki = Pki::new(&[&site])?;
        let central = start_central(&pki, db).await?;
        let sim = start_sim(&pki).await?;
        let (proxy, central_endpoint) = match route {
            Route::Direct => (None, https_endpoint(&central, "grpc")),
            Route::Proxied => {
                let proxy = Proxy::start(central.field("grpc").parse()?).await?;
                let endpoint = format!("https://{}", proxy.addr());
                (Some(proxy), endpoint)
            }
        };
        let agent_site = AgentSite::with_settings(
            &pki,
            &site,
            &central_endpoint,
            &https_endpoint(&sim, "https"),
            AgentSettings {
                reconnect_max_ms: settings.reconnect_max_ms.or(Some(300)),
                ..settings
            },
        )?;
        Ok(Self {
            site,
            pki,
            central,
            _sim: sim,
            proxy,
            agent_site,
        })
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("started with Route::Proxied")
    }

    fn central_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(self.central.field("grpc").parse()?)
    }
}

/// A tiny deterministic generator for fault timings; the seed is printed so a failure replays.
struct Dice(u64);

impl Dice {
    fn from_env() -> Self {
        let seed = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("fault timings: FAULT_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Runs `people` through `edge-agent lookup`, `parallel` at a time; returns the event ids of
/// the answers the counter was shown (lookups cut short by a fault simply have none).
async fn burst(site: &AgentSite, people: &[SimPerson], parallel: usize) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for chunk in people.chunks(parallel) {
        let runs = chunk.iter().map(|p| site.lookup(p));
        for output in futures_util::future::join_all(runs).await {
            let Ok(output) = output else { continue };
            if !output.status.success() {
                continue;
            }
            if let Ok(reply) = serde_json::from_slice::<serde_json::Value>(&output.stdout)
                && let Some(id) = reply["event_id"].as_str()
            {
                shown.insert(id.to_string());
            }
        }
    }
    shown
}

async fn central_ids(url: &str, site: &str) -> anyhow::Result<Vec<String>> {
    let rows = e2e::connect(url)
        .await?
        .query(
            "SELECT event_id::text FROM events WHERE site_code = $1 ORDER BY sequence",
            &[&site],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The ids of the events an agent's outbox holds (the agent stopped).
async fn outbox_ids(config: &Path) -> anyhow::Result<BTreeSet<String>> {
    let config = AgentConfig::load(config, &HashMap::new())?;
    let outbox = Outbox::open(&config.outbox_path(), config.outbox_options())?;
    Ok(outbox
        .pending(0, usize::MAX, usize::MAX)
        .await?
        .into_iter()
        .map(|p| uuid::Uuid::from_slice(&p.event.event_id).map(|u| u.to_string()))
        .collect::<Result<_, _>>()?)
}

/// Waits until the running agent's outbox is empty and central acknowledged all it produced.
async fn drained(site: &AgentSite) -> u64 {
    eventually("the agent's outbox to drain to central", || async {
        let s = site.status().await.ok()?;
        let produced = s["last_produced_sequence"].as_u64()?;
        (s["outbox_depth"] == 0 && s["last_acked_sequence"].as_u64()? == produced)
            .then_some(produced)
    })
    .await
}

/// Central holds exactly sequences 1..=produced of the site, each once, and every id in
/// `must_hold`.
async fn assert_exactly_once(
    db: &TestDb,
    site: &str,
    produced: u64,
    must_hold: &BTreeSet<String>,
) -> anyhow::Result<()> {
    assert_exactly_once_at(&db.url, site, produced, must_hold).await
}

/// [`assert_exactly_once`] in the database at `url` (e.g. a promoted standby's).
async fn assert_exactly_once_at(
    url: &str,
    site: &str,
    produced: u64,
    must_hold: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let client = e2e::connect(url).await?;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT sequence), max(sequence)
             FROM events WHERE site_code = $1",
            &[&site],
        )
        .await?;
    let (count, ids, sequences, max): (i64, i64, i64, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        count as u64, produced,
        "one stored event per sequence the agent produced"
    );
    assert_eq!((ids, sequences), (count, count), "no duplicates");
    assert_eq!(max.unwrap_or(0) as u64, produced, "no hole: 1..=produced");
    let stored: BTreeSet<String> = central_ids(url, site).await?.into_iter().collect();
    let lost: Vec<_> = must_hold.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "events recorded at the site but not in central: {lost:?}"
    );
    // And they are the site's own record, in order: its hash chain holds across whatever failed.
    let (intact, verdict) = e2e::central_verify_at(url, site).await?;
    assert!(intact, "the site's hash chain is broken: {verdict}");
    assert_eq!(verdict["events"].as_u64(), Some(produced), "{verdict}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_agent_during_bursts_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let stack = Stack::start(&db, Route::Direct, AgentSettings::default()).await?;
    let (site, agent_site) = (&stack.site, &stack.agent_site);
    let people = sim_people("any", 12).await?;
    let mut dice = Dice::from_env();
    let mut recorded = BTreeSet::new();

    for round in 0..6 {
        let mut agent = agent_site.start().await?;
        // A burst of 12 CLI lookups takes 100-300 ms on a quiet machine and longer on a busy
        // one, so kills in this window land before, inside and after it.
        let kill_after = Duration::from_millis(dice.below(400));
        let lookups = burst(agent_site, &people, 3);
        tokio::pin!(lookups);
        let shown_before_kill = tokio::select! {
            shown = &mut lookups => shown,
            _ = tokio::time::sleep(kill_after) => BTreeSet::new(),
        };
        agent.child.start_kill()?; // SIGKILL
        agent.child.wait().await?;
        let shown = if shown_before_kill.is_empty() {
            lookups.await
        } else {
            shown_before_kill
        };
        // Whatever the counter was shown, and whatever the outbox still holds, was recorded.
        recorded.extend(shown);
        recorded.extend(outbox_ids(&agent_site.config).await?);
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} recorded so far",
            recorded.len()
        );
    }

    // A last burst that is not killed: however busy the machine was, something was recorded.
    let _agent = agent_site.start().await?;
    recorded.extend(burst(agent_site, &people, 3).await);
    let produced = drained(agent_site).await;
    assert!(produced > 0, "the bursts recorded something");
    assert_exactly_once(&db, site, produced, &recorded).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_cut_longer_than_the_backoff_cap_loses_nothing() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let stack = Stack::start(&db, Route::Proxied, AgentSettings::default()).await?;
    let (site, agent_site, proxy) = (&stack.site, &stack.agent_site, stack.proxy());
    let _agent = agent_site.start().await?;
    let people = sim_people("any", 10).await?;

    let mut shown = burst(agent_site, &people[..4], 2).await;
    proxy.cut();
    // The counter keeps working while central is unreachable; events wait in the outbox.
    shown.extend(burst(agent_site, &people[4..], 2).await);
    eventually("the agent to notice the cut", || async {
        let s = agent_site.status().await.ok()?;
        (s["central_link"] != "connected" && s["outbox_depth"].as_u64()? > 0).then_some(())
    })
    .await;
    // Longer than the backoff cap: several reconnects fail before the link returns.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    proxy.restore(stack.central_addr()?);

    let produced = drained(agent_site).await;
    assert_eq!(
        shown.len() as u64,
        produced,
        "every lookup was answered and recorded"
    );
    assert_exactly_once(&db, site, produced, &shown).await
}

#[tokio::test(flavor = "multi_thread")]
async fn central_killed_and_restarted_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut stack = Stack::start(&db, Route::Proxied, AgentSettings::default()).await?;
    let _agent = stack.agent_site.start().await?;
    let people = sim_people("any", 12).await?;

    let mut shown = burst(&stack.agent_site, &people[..4], 2).await;
    stack.central.child.start_kill()?;
    stack.central.child.wait().await?;
    shown.extend(burst(&stack.agent_site, &people[4..8], 2).await);
    stack.central = start_central(&stack.pki, &db).await?;
    stack.proxy().restore(stack.central_addr()?);
    shown.extend(burst(&stack.agent_site, &people[8..], 2).await);

    let produced = drained(&stack.agent_site).await;
    assert_eq!(shown.len() as u64, produced);
    assert_exactly_once(&db, &stack.site, produced, &shown).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_and_restarted_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let cluster = OwnCluster::start().await?;
    let db = TestDb::create_in(&cluster.url).await?;
    let stack = Stack::start(&db, Route::Direct, AgentSettings::default()).await?;
    let (site, agent_site) = (&stack.site, &stack.agent_site);
    let _agent = agent_site.start().await?;
    let people = sim_people("any", 12).await?;

    let mut shown = burst(agent_site, &people[..4], 2).await;
    cluster.stop().await?;
    shown.extend(burst(agent_site, &people[4..8], 2).await);
    cluster.restart().await?;
    shown.extend(burst(agent_site, &people[8..], 2).await);

    let produced = drained(agent_site).await;
    assert_eq!(shown.len() as u64, produced);
    assert_exactly_once(&db, site, produced, &shown).await
}

/// Mounts a small tmpfs (the test runs as root under `make test`; anything else fails here
/// saying so).
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()?;
        anyhow::ensure!(
            status.success(),
            "this test mounts a small tmpfs to fill the outbox's filesystem and needs root \
             (CAP_SYS_ADMIN); run it as `make test` does, as root"
        );
        Ok(Self { dir })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_on_a_full_filesystem_fails_closed_then_recovers() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let fs = SmallFilesystem::mount("1m")?;
    let stack = Stack::start(
        &db,
        Route::Proxied,
        AgentSettings {
            data_dir: Some(fs.dir.path().join("data")),
            ..Default::default()
        },
    )
    .await?;
    let (site, agent_site, proxy) = (&stack.site, &stack.agent_site, stack.proxy());
    proxy.cut(); // central unreachable: events pile up in the outbox
    let _agent = agent_site.start().await?;
    let person = sim_people("valid", 1).await?.remove(0);

    let mut shown = BTreeSet::new();
    let refusal = 'fill: loop {
        assert!(shown.len() < 20_000, "the filesystem never filled up");
        let runs = (0..4).map(|_| agent_site.lookup(&person));
        for output in futures_util::future::join_all(runs).await {
            let output = output?;
            if !output.status.success() {
                break 'fill String::from_utf8_lossy(&output.stderr).to_string();
            }
            let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            shown.insert(reply["event_id"].as_str().unwrap_or_default().to_string());
        }
    };
    assert!(
        refusal.contains("nothing was recorded"),
        "the clerk is told the lookup was not recorded: {refusal}"
    );
    // Failing closed changed nothing: the count of recorded events stands.
    let status = agent_site.status().await?;
    let produced_when_full = status["last_produced_sequence"].as_u64().unwrap_or(0);

    proxy.restore(stack.central_addr()?);
    drained(agent_site).await;
    let output = agent_site.lookup(&person).await?;
    assert!(
        output.status.success(),
        "lookups work again once central took the events: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    shown.insert(reply["event_id"].as_str().unwrap_or_default().to_string());

    let produced = drained(agent_site).await;
    assert!(produced > produced_when_full);
    assert_exactly_once(&db, site, produced, &shown).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reordered_and_replayed_batches_are_stored_once_and_acked_only_when_contiguous()
-> anyhow::Result<()> {
    use e2e::uplink::{Session, agent_tls, lookup_event};
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let endpoint = https_endpoint(&central, "grpc");
    let stream = uuid::Uuid::now_v7();
    let events: Vec<_> = (1..=6).map(|s| lookup_event(&site, s)).collect();
    let mut session = Session::open(&endpoint, agent_tls(&pki, &site)?, &site, stream).await?;

    // The second half first: stored, but the ack cannot pass the hole at 1..=3.
    let ack = session.send_batch(events[3..].to_vec()).await?;
    assert_eq!((ack.up_to_sequence, ack.stored), (0, 3));
    // Then the first half, then all of it again: the ack jumps to 6, nothing is stored twice.
    let ack = session.send_batch(events[..3].to_vec()).await?;
    assert_eq!((ack.up_to_sequence, ack.stored), (6, 3));
    let ack = session.send_batch(events.clone()).await?;
    assert_eq!((ack.up_to_sequence, ack.stored, ack.duplicates), (6, 0, 6));

    let stored: BTreeSet<String> = central_ids(&db.url, &site).await?.into_iter().collect();
    let sent: BTreeSet<String> = events
        .iter()
        .map(|e| uuid::Uuid::from_slice(&e.event_id).map(|u| u.to_string()))
        .collect::<Result<_, _>>()?;
    assert_eq!(stored, sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_verify_reports_a_damaged_record_and_repair_replaces_it_with_a_loss()
-> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let sim = start_sim(&pki).await?;
    // Central is unreachable: the lookups stay in the outbox.
    let agent_site = AgentSite::new(
        &pki,
        &site,
        "https://127.0.0.1:1",
        &https_endpoint(&sim, "https"),
    )?;
    let agent = agent_site.start().await?;
    for person in sim_people("valid", 3).await? {
        let output = agent_site.lookup(&person).await?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let verify = |repair: bool| {
        let config = agent_site.config.clone();
        async move {
            let mut command = Command::new(e2e::bin("edge-agent"));
            command
                .arg("--config")
                .arg(&config)
                .args(["outbox", "verify", "--json"]);
            if repair {
                command.arg("--repair");
            }
            let output = command.output().await?;
            let report: serde_json::Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&output.stderr)))?;
            anyhow::Ok((output.status.code(), report))
        }
    };
    // With the agent running, verify reads and --repair is refused with the reason.
    assert_eq!(verify(false).await?.0, Some(0));
    let refused = Command::new(e2e::bin("edge-agent"))
        .arg("--config")
        .arg(&agent_site.config)
        .args(["outbox", "verify", "--repair"])
        .output()
        .await?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it before --repair"));
    agent.kill().await?;

    // Record 2's sealed payload damaged on disk.
    let config = AgentConfig::load(&agent_site.config, &HashMap::new())?;
    let db = rusqlite::Connection::open(config.outbox_path())?;
    db.execute(
        "UPDATE events SET payload = substr(payload, 1, 20) || x'00' WHERE sequence = 2",
        [],
    )?;
    drop(db);
    let (code, report) = verify(false).await?;
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["damaged"], serde_json::json!([2]), "{report}");
    assert_eq!(report["repaired"], false);
    let (code, report) = verify(true).await?;
    assert_eq!(
        (code, &report["repaired"]),
        (Some(3), &serde_json::json!(true)),
        "{report}"
    );
    let (code, report) = verify(false).await?;
    assert_eq!(code, Some(0), "clean after the repair: {report}");
    assert_eq!(
        report["records"], 3,
        "the loss event took record 2's place: {report}"
    );
    Ok(())
}

/// How the primary tells the standby about commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replication {
    /// `synchronous_standby_names = '*'`: a commit returns once the standby has its WAL.
    Synchronous,
    /// PostgreSQL's default: the standby follows as fast as it can, the primary does not wait.
    Asynchronous,
}

/// A primary and its streaming standby, central on both through one multi-host URL
/// (`target_session_attrs=read-write`), two sites' agents recording lookups. The standby is down
/// for a while as the agents keep recording, the primary's machine dies (SIGKILL of the
/// postmaster), and the standby, back, is promoted; no operator touches central or the agents. Returns how many events the agents had been acknowledged that the new primary
/// does not hold, after checking what must hold in each mode.
async fn fail_over_mid_stream(replication: Replication) -> anyhow::Result<u64> {
    let primary = OwnCluster::start().await?;
    let standby = OwnCluster::standby_of(&primary).await?;
    let admin = primary.client("postgres").await?;
    if replication == Replication::Synchronous {
        admin
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await?;
        admin.batch_execute("SELECT pg_reload_conf()").await?;
    }
    let expected_state = match replication {
        Replication::Synchronous => "sync",
        Replication::Asynchronous => "async",
    };
    eventually("the standby to stream from the primary", || async {
        admin
            .query_opt(
                "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = $1",
                &[&expected_state],
            )
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    let db = TestDb::create_in(&primary.url).await?;
    let primary_host = format!("127.0.0.1:{}", primary.port);
    let both_hosts = format!("{primary_host},127.0.0.1:{}", standby.port);
    let central_url = format!(
        "{}?target_session_attrs=read-write",
        db.app_login().await?.replace(&primary_host, &both_hosts)
    );
    let sites = [site_code("341071236"), site_code("341071237")];
    let pki = Pki::new(&[&sites[0], &sites[1]])?;
    if replication == Replication::Asynchronous {
        let mut strict = e2e::central_serve(&pki, &["--require-synchronous-standby"]);
        strict.env("DATABASE_URL", &central_url);
        assert!(
            e2e::spawn_ready(strict).await.is_err(),
            "central told to require a synchronous standby refuses to serve without one"
        );
    }
    let mut serve = e2e::central_serve(&pki, &[]);
    serve
        .env("DATABASE_URL", &central_url)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url);
    let central = e2e::spawn_ready(serve).await?;
    assert_eq!(
        central.ready["synchronous_standby"],
        replication == Replication::Synchronous,
        "central says at start whether an ack is on two servers: {}",
        central.ready
    );
    let sim = start_sim(&pki).await?;
    let mut agents = Vec::new();
    let mut running = Vec::new();
    for site in &sites {
        let agent = AgentSite::with_settings(
            &pki,
            site,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
            AgentSettings {
                reconnect_max_ms: Some(300),
                ..Default::default()
            },
        )?;
        running.push(agent.start().await?);
        agents.push(agent);
    }
    let people = sim_people("any", 14).await?;
    let mut shown = vec![BTreeSet::new(), BTreeSet::new()];
    let mut acked_before_freeze = Vec::new();
    for (agent, shown) in agents.iter().zip(&mut shown) {
        shown.extend(burst(agent, &people[..4], 2).await);
        acked_before_freeze.push(drained(agent).await);
    }

    // The standby is down for a while (stopped: a paused WAL receiver would still find the
    // primary's WAL in its socket buffer); the counters keep working.
    standby.stop().await?;
    for (agent, shown) in agents.iter().zip(&mut shown) {
        shown.extend(burst(agent, &people[4..9], 2).await);
    }
    // Asynchronous: central commits on the primary alone and acks; this returns at once.
    // Synchronous: no commit returns, so no ack can come; the wait is bounded, since what is
    // awaited is an absence.
    let all_acked = async {
        for agent in &agents {
            drained(agent).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), all_acked).await;
    let mut acked_at_kill = Vec::new();
    for agent in &agents {
        let status = agent.status().await?;
        acked_at_kill.push(status["last_acked_sequence"].as_u64().unwrap_or(0));
    }
    if replication == Replication::Synchronous {
        assert_eq!(
            acked_at_kill, acked_before_freeze,
            "nothing is acknowledged while the synchronous standby cannot confirm"
        );
    }

    // The primary's machine dies; the standby comes back with what it had and is promoted.
    primary.kill().await?;
    standby.restart().await?;
    standby.promote().await?;

    let promoted = standby.client(&db.name).await?;
    let mut lost = 0;
    for (site, acked) in sites.iter().zip(&acked_at_kill) {
        let held: i64 = promoted
            .query_one(
                "SELECT count(DISTINCT sequence) FROM events
                 WHERE site_code = $1 AND sequence <= $2",
                &[site, &(*acked as i64)],
            )
            .await?
            .get(0);
        lost += acked - held as u64;
    }
    if replication == Replication::Asynchronous {
        return Ok(lost);
    }

    // Central and the agents carry on against the promoted standby by themselves.
    for (agent, shown) in agents.iter().zip(&mut shown) {
        shown.extend(burst(agent, &people[9..], 2).await);
    }
    let promoted_url = format!("postgres://postgres@127.0.0.1:{}/{}", standby.port, db.name);
    for ((agent, site), shown) in agents.iter().zip(&sites).zip(&shown) {
        let produced = drained(agent).await;
        assert_eq!(shown.len() as u64, produced, "every lookup was answered");
        assert_exactly_once_at(&promoted_url, site, produced, shown).await?;
    }
    drop(running);
    Ok(lost)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_event() -> anyhow::Result<()> {
    let lost = fail_over_mid_stream(Replication::Synchronous).await?;
    assert_eq!(lost, 0, "acknowledged events missing after the failover");
    Ok(())
}

/// Why the synchronous setting matters: the same failover with PostgreSQL's default
/// asynchronous replication loses what was acknowledged while the standby lagged.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_to_an_asynchronous_standby_can_lose_acknowledged_events() -> anyhow::Result<()>
{
    let lost = fail_over_mid_stream(Replication::Asynchronous).await?;
    eprintln!(
        "asynchronous replication: {lost} acknowledged events are not on the promoted standby"
    );
    assert!(
        lost > 0,
        "the events acknowledged while the standby was down were on the old primary alone"
    );
    Ok(())
}

/// The pages and the auditor's search read a replica (`--read-database-url`) while ingest
/// writes to the primary; when the replica stops replaying, every page says how old its data
/// is, and stops saying so once it caught up.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_reads_a_replica_and_says_when_its_data_is_old() -> anyhow::Result<()> {
    let primary = OwnCluster::start().await?;
    let standby = OwnCluster::standby_of(&primary).await?;
    let db = TestDb::create_in(&primary.url).await?;
    let app_url = db.app_login().await?;
    let replica_url = app_url.replace(
        &format!("127.0.0.1:{}", primary.port),
        &format!("127.0.0.1:{}", standby.port),
    );
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let mut serve = e2e::central_serve(
        &pki,
        &[
            "--web-listen",
            "127.0.0.1:0",
            "--replica-lag-warning-secs",
            "1",
        ],
    );
    serve
        .env("DATABASE_URL", &app_url)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url)
        .env("CENTRAL_READ_DATABASE_URL", &replica_url);
    let central = e2e::spawn_ready(serve).await?;
    let password = "a long enough password for the test";
    let mut add = Command::new(e2e::bin("central"));
    add.args(["account", "add", "--login", "chain-it", "--name", "本部IT"])
        .args(["--role", "chain_admin", "--by", "test"])
        .env("DATABASE_URL", &db.url)
        .stdin(std::process::Stdio::piped());
    let mut adding = add.spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = adding.stdin.take().expect("piped stdin");
        stdin.write_all(format!("{password}\n").as_bytes()).await?;
    }
    anyhow::ensure!(adding.wait().await?.success(), "central account add failed");
    let web = e2e::http::WebSession::sign_in(
        &pki.paths.chain_ca(),
        &central.field("web"),
        "chain-it",
        password,
    )
    .await?;

    let sim = start_sim(&pki).await?;
    let agent = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let _agent = agent.start().await?;
    let people = sim_people("valid", 8).await?;
    let first = burst(&agent, &people[..4], 2).await;
    drained(&agent).await;
    let audit = format!("/audit?site={site}");
    let count_on_page = |body: &[u8]| -> Option<usize> {
        let text = String::from_utf8_lossy(body);
        let (_, rest) = text.split_once("id=\"result-count\">")?;
        rest.split('<').next()?.trim().parse().ok()
    };
    eventually(
        "the auditor's search on the replica to show the lookups",
        || async {
            let (status, _, body) = web.get(&audit).await.ok()?;
            (status == 200 && count_on_page(&body)? == first.len()).then_some(())
        },
    )
    .await;
    let (status, _, body) = web.get(&format!("/sites/{site}")).await?;
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&body).contains("replica-lag"));

    // The replica stops replaying; the primary keeps taking the site's events.
    let replica_admin = standby.client("postgres").await?;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await?;
    let second = burst(&agent, &people[4..], 2).await;
    drained(&agent).await;
    let stale = eventually(
        "every page to say how old the replica's data is",
        || async {
            let (_, _, body) = web.get(&audit).await.ok()?;
            String::from_utf8_lossy(&body)
                .contains("id=\"replica-lag\"")
                .then_some(body)
        },
    )
    .await;
    assert!(
        String::from_utf8_lossy(&stale).contains("秒前のものです"),
        "in Japanese first"
    );
    assert_eq!(
        count_on_page(&stale),
        Some(first.len()),
        "the search shows what the replica has"
    );

    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await?;
    eventually("the replica to catch up and the notice to go", || async {
        let (_, _, body) = web.get(&audit).await.ok()?;
        (!String::from_utf8_lossy(&body).contains("replica-lag")
            && count_on_page(&body)? == first.len() + second.len())
        .then_some(())
    })
    .await;
    Ok(())
}
