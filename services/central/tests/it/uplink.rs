//! Central in-process (port 0, real PostgreSQL, real mTLS) for what needs its settings changed:
//! limits, alert thresholds, a database that goes away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use central::app::{Application, Settings, Tuning};
use central_store::{AlertThresholds, DatabaseUrl, Pooler};
use e2e::uplink::{Session, agent_tls, lookup_event};
use e2e::{Pki, TestDb, eventually, site_code};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use uuid::Uuid;

struct Central {
    grpc: String,
    http: String,
    _stop: oneshot::Sender<()>,
}

async fn start_central(pki: &Pki, database_url: &str, tuning: Tuning) -> Central {
    let (cert, key) = pki.paths.central();
    let settings = Settings {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        web_listen: None,
        http_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: cert,
        tls_key: key,
        client_ca: pki.paths.chain_ca(),
        agent_ca: pki.paths.agent_ca().0,
        database_url: DatabaseUrl::new(database_url),
        // Nothing pools between this central and PostgreSQL: the proxy forwards connections.
        database_pooler: Pooler::None,
        read_database_url: None,
        replica_lag_warning: std::time::Duration::from_secs(5),
        db_pool_size: 4,
        migrate_on_start: true,
        migrate_database_url: None,
        // These tests are about the uplink through a proxy in front of the harness's superuser
        // URL; serving as the application role is the harness's and tests/roles.rs's business.
        allow_schema_owner: true,
        require_synchronous_standby: false,
        seal_key: None,
        patient_key: None,
        renewal: None,
        notify: central_core::notify::NotifySettings::default(),
        tuning,
    };
    let app = Application::build(&settings)
        .await
        .expect("central starts against the test database");
    let grpc = format!("https://{}", app.grpc_addr());
    let http = app.http_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Central {
        grpc,
        http,
        _stop: stop,
    }
}

fn clinic() -> String {
    site_code("341071236")
}

async fn stored(db: &TestDb) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Connections stay open but no byte goes through: PostgreSQL "hangs".
    Stalled,
    /// Every connection is closed and new ones are refused.
    Down,
}

/// A TCP proxy in front of PostgreSQL that the test can stall, cut and restore.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    link: tokio::sync::watch::Sender<Link>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (link, _) = tokio::sync::watch::channel(Link::Up);
        let (flag, links) = (up.clone(), link.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let mut link = links.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                            changed = link.changed() => if changed.is_err() { return },
                        }
                        // Stalled: hold both sockets without reading until the link changes.
                        while *link.borrow_and_update() == Link::Stalled {
                            if link.changed().await.is_err() {
                                return;
                            }
                        }
                        if *link.borrow() == Link::Down {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, up, link }
    }

    fn set(&self, state: Link) {
        self.up.store(state != Link::Down, Ordering::SeqCst);
        self.link.send_replace(state);
    }
}

fn database_target(url: &str) -> (SocketAddr, String) {
    // postgres://user@host:port/name[?query]: the harness's URLs always name host and port.
    let rest = url.split_once('@').expect("a user in DATABASE_URL").1;
    let (hostport, path) = rest.split_once('/').expect("a database name");
    (
        hostport.parse().expect("DATABASE_URL names 127.0.0.1:port"),
        format!("{}@{{}}/{path}", url.split_once('@').unwrap().0),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn when_postgresql_goes_away_nothing_uncommitted_is_acked_and_the_resend_is_stored_once() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let (target, template) = database_target(&db.url);
    let proxy = Proxy::start(target).await;
    let tuning = Tuning {
        write_timeout: Duration::from_secs(5),
        ..Tuning::default()
    };
    let central = start_central(
        &pki,
        &template.replace("{}", &proxy.addr.to_string()),
        tuning,
    )
    .await;
    let stream = Uuid::now_v7();
    let tls = agent_tls(&pki, &site).unwrap();

    let mut session = Session::open(&central.grpc, tls.clone(), &site, stream)
        .await
        .unwrap();
    let ack = session
        .send_batch((1..=3).map(|s| lookup_event(&site, s)).collect())
        .await
        .unwrap();
    assert_eq!(ack.up_to_sequence, 3);

    proxy.set(Link::Down);
    let second: Vec<_> = (4..=6).map(|s| lookup_event(&site, s)).collect();
    let refused = session
        .send_batch(second.clone())
        .await
        .expect_err("no ack without a database");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    assert_eq!(stored(&db).await, 3, "the unacked batch was not committed");
    let refused = Session::open(&central.grpc, tls.clone(), &site, stream)
        .await
        .expect_err("a hello needs the database too");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    proxy.set(Link::Up);
    let mut again = eventually("central to reach PostgreSQL again", || {
        let tls = tls.clone();
        let (endpoint, site) = (central.grpc.clone(), site.clone());
        async move { Session::open(&endpoint, tls, &site, stream).await.ok() }
    })
    .await;
    assert_eq!(again.welcome.resume_after_sequence, 3);
    let ack = again.send_batch(second).await.unwrap();
    assert_eq!((ack.up_to_sequence, ack.stored), (6, 3));
    assert_eq!(stored(&db).await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_above_its_events_per_second_is_throttled_not_refused() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let tuning = Tuning {
        events_per_second: 200,
        events_burst: 100,
        ..Tuning::default()
    };
    let central = start_central(&pki, &db.url, tuning).await;
    let mut session = Session::open(
        &central.grpc,
        agent_tls(&pki, &site).unwrap(),
        &site,
        Uuid::now_v7(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    for batch in 0..3u64 {
        let ack = session
            .send_batch(
                (1..=100)
                    .map(|s| lookup_event(&site, batch * 100 + s))
                    .collect(),
            )
            .await
            .expect("a throttled batch is still acked");
        assert_eq!(ack.up_to_sequence, (batch + 1) * 100);
    }
    // 100 events of burst, then 200 more at 200 per second.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "300 events at 200/s with a burst of 100 took only {elapsed:?}"
    );
    assert_eq!(stored(&db).await, 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_is_refused_with_resource_exhausted_and_a_hint() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let central = start_central(&pki, &db.url, Tuning::default()).await;
    let mut session = Session::open(
        &central.grpc,
        agent_tls(&pki, &site).unwrap(),
        &site,
        Uuid::now_v7(),
    )
    .await
    .unwrap();
    let mut event = lookup_event(&site, 1);
    if let Some(proto::fleet::v1::event::Body::Lookup(lookup)) = event.body.as_mut() {
        lookup.error_code = "x".repeat(5 * 1024 * 1024);
    }
    let refused = session
        .send_batch(vec![event])
        .await
        .expect_err("a 5 MiB message is over the limit");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(
        refused.message().contains("send smaller batches"),
        "{}",
        refused.message()
    );
    assert_eq!(stored(&db).await, 0);

    // A batch over the event count limit is refused too, with the limit in the message.
    let mut session = Session::open(
        &central.grpc,
        agent_tls(&pki, &site).unwrap(),
        &site,
        Uuid::now_v7(),
    )
    .await
    .unwrap();
    let refused = session
        .send_batch((1..=1001).map(|s| lookup_event(&site, s)).collect())
        .await
        .expect_err("1001 events are over the batch limit");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(
        refused.message().contains("at most 1000"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_each_agents_stream_and_the_alerts_it_raises() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let tuning = Tuning {
        maintenance: central_core::maintenance::MaintenanceConfig {
            alert_interval: Duration::from_millis(100),
            thresholds: AlertThresholds {
                gap: Duration::from_millis(300),
                divergence: Duration::from_secs(3600),
                unavailable: Duration::from_secs(3600),
            },
            ..Default::default()
        },
        ..Tuning::default()
    };
    let central = start_central(&pki, &db.url, tuning).await;
    let stream = Uuid::now_v7();
    let mut session = Session::open(
        &central.grpc,
        agent_tls(&pki, &site).unwrap(),
        &site,
        stream,
    )
    .await
    .unwrap();
    // 3 never arrives.
    session
        .send_batch(vec![lookup_event(&site, 1), lookup_event(&site, 2)])
        .await
        .unwrap();
    let ack = session
        .send_batch(vec![lookup_event(&site, 4)])
        .await
        .unwrap();
    assert_eq!(ack.up_to_sequence, 2);

    let ca = pki.paths.chain_ca();
    let (cert, key) = pki.paths.operator("e2e");
    let (status, agents) = e2e::http::get_json(&ca, &cert, &key, &central.http, "/api/v1/agents")
        .await
        .unwrap();
    assert_eq!(status, 200, "{agents}");
    let agent = &agents[0];
    assert_eq!(agent["site_code"], site.as_str(), "{agents}");
    assert_eq!(agent["stream_id"], stream.to_string(), "{agents}");
    assert_eq!(
        (&agent["highest_received"], &agent["contiguous"]),
        (&serde_json::json!(4), &serde_json::json!(2)),
        "{agents}"
    );

    let alerts = eventually("the gap to open an alert", || {
        let (ca, cert, key, http) = (ca.clone(), cert.clone(), key.clone(), central.http.clone());
        async move {
            let (_, alerts) = e2e::http::get_json(&ca, &cert, &key, &http, "/api/v1/alerts")
                .await
                .ok()?;
            (alerts.as_array()?.len() == 1).then_some(alerts)
        }
    })
    .await;
    assert_eq!(alerts[0]["kind"], "sequence_gap", "{alerts}");
    assert_eq!(alerts[0]["site_code"], site.as_str(), "{alerts}");

    // The missing event arrives: the alert resolves.
    session
        .send_batch(vec![lookup_event(&site, 3)])
        .await
        .unwrap();
    eventually("the gap alert to resolve", || {
        let (ca, cert, key, http) = (ca.clone(), cert.clone(), key.clone(), central.http.clone());
        async move {
            let (_, alerts) = e2e::http::get_json(&ca, &cert, &key, &http, "/api/v1/alerts")
                .await
                .ok()?;
            alerts.as_array()?.is_empty().then_some(())
        }
    })
    .await;

    // Agents' certificates do not open the operator API: refused at the handshake.
    let (cert, key) = pki.paths.agent(&site);
    assert!(
        e2e::http::get_json(&ca, &cert, &key, &central.http, "/api/v1/agents")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_postgresql_hangs_the_session_ends_unavailable_after_the_write_timeout() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let (target, template) = database_target(&db.url);
    let proxy = Proxy::start(target).await;
    let tuning = Tuning {
        write_timeout: Duration::from_secs(1),
        ..Tuning::default()
    };
    let central = start_central(
        &pki,
        &template.replace("{}", &proxy.addr.to_string()),
        tuning,
    )
    .await;
    let stream = Uuid::now_v7();
    let tls = agent_tls(&pki, &site).unwrap();
    let mut session = Session::open(&central.grpc, tls.clone(), &site, stream)
        .await
        .unwrap();
    session
        .send_batch(vec![lookup_event(&site, 1)])
        .await
        .unwrap();

    proxy.set(Link::Stalled);
    let second = vec![lookup_event(&site, 2), lookup_event(&site, 3)];
    let started = Instant::now();
    let refused = session
        .send_batch(second.clone())
        .await
        .expect_err("no ack while PostgreSQL hangs");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // PostgreSQL answers again; the write that was cut off may now commit late. The agent's
    // resend is then a duplicate: stored once either way.
    proxy.set(Link::Up);
    let mut again = eventually("central to reach PostgreSQL again", || {
        let tls = tls.clone();
        let (endpoint, site) = (central.grpc.clone(), site.clone());
        async move { Session::open(&endpoint, tls, &site, stream).await.ok() }
    })
    .await;
    let ack = again.send_batch(second).await.unwrap();
    assert_eq!(ack.up_to_sequence, 3);
    assert_eq!(ack.stored + ack.duplicates, 2);
    assert_eq!(stored(&db).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_postgresql_and_liveness_does_not() {
    use central::health::{Probe, check};
    use tonic_health::pb::health_check_response::ServingStatus;
    let pki = Pki::new(&[]).unwrap();
    let db = TestDb::create().await.unwrap();
    let (target, template) = database_target(&db.url);
    let proxy = Proxy::start(target).await;
    let tuning = Tuning {
        readiness_interval: Duration::from_millis(100),
        ..Tuning::default()
    };
    let central = start_central(
        &pki,
        &template.replace("{}", &proxy.addr.to_string()),
        tuning,
    )
    .await;
    let addr: SocketAddr = central.grpc.trim_start_matches("https://").parse().unwrap();
    let (cert, key) = pki.paths.central();
    let ca = pki.paths.chain_ca();
    let status = |probe| {
        let (cert, key, ca) = (cert.clone(), key.clone(), ca.clone());
        async move {
            check(
                probe,
                addr,
                "localhost",
                &cert,
                &key,
                &ca,
                Duration::from_secs(2),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(status(Probe::Readiness).await, ServingStatus::Serving);

    proxy.set(Link::Down);
    eventually(
        "readiness to report NOT_SERVING without PostgreSQL",
        || async { (status(Probe::Readiness).await == ServingStatus::NotServing).then_some(()) },
    )
    .await;
    assert_eq!(
        status(Probe::Liveness).await,
        ServingStatus::Serving,
        "a missing database is no reason to restart central"
    );

    proxy.set(Link::Up);
    eventually("readiness to come back with PostgreSQL", || async {
        (status(Probe::Readiness).await == ServingStatus::Serving).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn central_asks_for_an_inventory_it_lacks_and_keeps_the_latest() {
    use proto::fleet::v1 as pb;
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let central = start_central(&pki, &db.url, Tuning::default()).await;
    let tls = agent_tls(&pki, &site).unwrap();
    let mut session = Session::open(&central.grpc, tls, &site, Uuid::now_v7())
        .await
        .unwrap();

    // An agent that sent no inventory is asked for one at its heartbeat.
    session
        .to_central
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat::default())),
        })
        .await
        .unwrap();
    let asked = session.from_central.message().await.unwrap();
    assert!(
        matches!(
            &asked,
            Some(pb::CentralMessage {
                kind: Some(pb::central_message::Kind::Directive(pb::Directive {
                    kind: Some(pb::directive::Kind::RequestInventory(_)),
                    ..
                }))
            })
        ),
        "{asked:?}"
    );

    // The answer is kept as the stream's latest inventory.
    let snapshot = |terminal: &str| pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Inventory(pb::InventorySnapshot {
            taken_at: Some(proto::convert::timestamp(time::OffsetDateTime::now_utc())),
            readers: vec![pb::ReaderChange {
                reader_name: "Reader A".into(),
                state: pb::ReaderState::PresentEmpty as i32,
                ..Default::default()
            }],
            certificates: Vec::new(),
            terminal_ids: vec![terminal.into()],
        })),
    };
    session.to_central.send(snapshot("T01")).await.unwrap();
    let stored = eventually("the inventory at central", || async {
        let client = db.client().await.ok()?;
        client
            .query_opt(
                "SELECT inventory->'readers'->0->>'reader_name' FROM agent_inventory
                 WHERE site_code = $1",
                &[&site],
            )
            .await
            .ok()?
            .map(|r| r.get::<_, String>(0))
    })
    .await;
    assert_eq!(stored, "Reader A");

    // A malformed inventory ends the session with a clear error and changes nothing.
    session
        .to_central
        .send(snapshot("not a terminal id!"))
        .await
        .unwrap();
    let refused = session
        .from_central
        .message()
        .await
        .expect_err("a bad inventory is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("terminal_ids"), "{refused}");
}

/// Issue 15, item 11: one compromised agent key cannot open unlimited sessions, nor claim a
/// sequence no outbox can hold (two such claims once made every overview that saw the site
/// fail with "bigint out of range").
#[tokio::test(flavor = "multi_thread")]
async fn a_site_holds_a_few_sessions_and_cannot_claim_an_impossible_backlog() {
    let site = clinic();
    let pki = Pki::new(&[&site]).unwrap();
    let db = TestDb::create().await.unwrap();
    let tuning = Tuning {
        sessions_per_site: 2,
        ..Tuning::default()
    };
    let central = start_central(&pki, &db.url, tuning).await;
    let open = || async {
        Session::open(
            &central.grpc,
            agent_tls(&pki, &site).unwrap(),
            &site,
            Uuid::now_v7(),
        )
        .await
    };
    let first = open().await.unwrap();
    let _second = open().await.unwrap();
    let refused = open().await.expect_err("a third session is over the limit");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("2 sessions"), "{refused}");

    // A session that ends gives its place back (central notices the close asynchronously:
    // bounded retries, no fixed sleep).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let _third = loop {
        match open().await {
            Ok(session) => break session,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(error) => panic!("no place freed after a session ended: {error}"),
        }
    };

    // A hello claiming a sequence near i64::MAX is refused, and nothing is stored of it.
    let mut lie = e2e::uplink::hello(&site, Uuid::now_v7());
    if let Some(proto::fleet::v1::agent_message::Kind::Hello(hello)) = lie.kind.as_mut() {
        hello.last_produced_sequence = i64::MAX as u64 - 1;
    }
    drop(_third);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match Session::open_saying(&central.grpc, agent_tls(&pki, &site).unwrap(), lie.clone())
            .await
        {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted && Instant::now() < deadline =>
            {
                tokio::task::yield_now().await
            }
            Err(status) => break status,
            Ok(_) => panic!("an impossible sequence was welcomed"),
        }
    };
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(
        refused.message().contains("beyond any agent's outbox"),
        "{refused}"
    );

    // Even claims already stored (before this check existed) cannot break the overview's sums.
    let pool = central_store::connect(&DatabaseUrl::new(&db.url), 2).unwrap();
    let store = central_store::Store::new(pool);
    let code = onshi_domain::site::SiteCode::parse(&site).unwrap();
    for _ in 0..2 {
        store
            .open_stream(
                &code,
                onshi_domain::events::StreamId(Uuid::now_v7()),
                "x",
                "0",
                u64::MAX,
            )
            .await
            .unwrap();
    }
    store
        .overview(
            &central_store::scope::SiteScope::All,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("the overview adds up claims of i64::MAX without overflowing");
}
