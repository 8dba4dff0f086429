//! Alerts that reach people: real central, real PostgreSQL, a real HTTP receiver (a hyper
//! server in this test) and a real SMTP server (aiosmtpd, STARTTLS with the test PKI). Alerts
//! come from the real paths: a sequence gap sent over the uplink (opened, then resolved when
//! the missing event arrives), a broken hash chain, a site whose agent goes away while it is
//! open. Shown: an alert opened and resolved reaches the webhook (signature verified) and the
//! mailbox; a receiver down for a while (central restarting meanwhile) gets everything
//! afterwards, in order, none twice; a
//! slow receiver does not slow ingest (acks measured with and without it); an endpoint scoped
//! to one prefecture never receives another's alert; quiet hours hold a site_unavailable
//! notice but not a chain break.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::http::Operator;
use e2e::uplink::{Session, agent_tls, lookup_event};
use e2e::{Pki, TestDb, eventually, site_code, start_central_with_env};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use onshi_domain::chain::ChainHash;
use onshi_domain::events::FleetEvent;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use uuid::Uuid;

const ALWAYS_OPEN: &str = r#"{"weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"],
  "wed": ["00:00-24:00"], "thu": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["00:00-24:00"],
  "sun": ["00:00-24:00"]}, "closed_on_national_holidays": false}"#;

// ------------------------------------------------------------------------------- webhook receiver

#[derive(Debug, Clone)]
struct Received {
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    json: Value,
}

#[derive(Debug, Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// How long each answer takes.
    delay: Mutex<Duration>,
    /// Requests being answered right now.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// A webhook receiver on a fixed port: it can go down (listener and connections gone: refused)
/// and come back on the same port.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut receiver = Self {
            addr,
            state: Arc::default(),
            task: None,
        };
        receiver.serve(listener);
        Ok(receiver)
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: every connection ends when the receiver goes down.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(request, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn up(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    state: Arc<ReceiverState>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    use std::sync::atomic::Ordering;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (timestamp, signature) = (header("x-onshi-timestamp"), header("x-signature"));
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.got.lock().unwrap().push(Received {
        timestamp,
        signature,
        body,
        json,
    });
    Ok(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// What a receiver does with the README's recipe: HMAC-SHA-256 of `timestamp.body`, `v1=` hex,
/// and a timestamp no older than five minutes.
fn verifies(secret: &str, received: &Received) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let Some(hex) = received.signature.strip_prefix("v1=") else {
        return false;
    };
    let Some(tag) = onshi_domain::hex::decode(hex) else {
        return false;
    };
    let signed = [received.timestamp.as_bytes(), b".", &received.body].concat();
    let fresh = received
        .timestamp
        .parse::<i64>()
        .is_ok_and(|t| (time::OffsetDateTime::now_utc().unix_timestamp() - t).abs() < 300);
    fresh && ring::hmac::verify(&key, &signed, &tag).is_ok()
}

// ------------------------------------------------------------------------------- mail server

struct MailServer {
    port: u16,
    mail: Arc<Mutex<Vec<Value>>>,
    _child: tokio::process::Child,
}

impl MailServer {
    async fn start(pki: &Pki) -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".local/aiosmtpd/bin/python");
        anyhow::ensure!(
            python.exists(),
            "the SMTP server for this test (aiosmtpd) is not installed at {}: run `make deps`",
            python.display()
        );
        let (cert, key) = pki.paths.central();
        let mut child = tokio::process::Command::new(python)
            .arg(root.join("tests/smtp/receiver.py"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(e2e::patience(), lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the SMTP server exited before it was ready"))?;
        let port = serde_json::from_str::<Value>(&ready)?["port"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no port in {ready}"))? as u16;
        let mail = Arc::new(Mutex::new(Vec::new()));
        let sink = mail.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Ok(Self {
            port,
            mail,
            _child: child,
        })
    }

    fn mail(&self) -> Vec<Value> {
        self.mail.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------------------------- alerts

/// One site's uplink, sending events by sequence (any order, any gaps).
struct Site {
    code: String,
    session: Session,
}

impl Site {
    async fn open(pki: &Pki, central: &e2e::Running, code: &str) -> anyhow::Result<Self> {
        let endpoint = format!("https://{}", central.field("grpc"));
        let session = Session::open(&endpoint, agent_tls(pki, code)?, code, Uuid::now_v7())
            .await
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        Ok(Self {
            code: code.to_string(),
            session,
        })
    }

    async fn send(&mut self, sequences: &[u64]) -> anyhow::Result<()> {
        let events = sequences
            .iter()
            .map(|s| lookup_event(&self.code, *s))
            .collect();
        self.session
            .send_batch(events)
            .await
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        Ok(())
    }

    /// Events 1..=n linked into the stream's hash chain, event `broken` with a link that does
    /// not follow (what a forged or faulty agent sends): the verifier's chain break.
    async fn send_broken_chain(&mut self, n: u64, broken: u64) -> anyhow::Result<()> {
        let mut head = ChainHash::GENESIS;
        let mut events = Vec::new();
        for sequence in 1..=n {
            let mut event = FleetEvent::try_from(lookup_event(&self.code, sequence))?;
            let link = if sequence == broken {
                ChainHash::GENESIS
            } else {
                proto::chain::link(&head, &event)
            };
            event.chain_hash = Some(link);
            head = link;
            events.push(proto::fleet::v1::Event::from(&event));
        }
        self.session
            .send_batch(events)
            .await
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        Ok(())
    }
}

async fn alerts(operator: &Operator) -> Vec<Value> {
    match operator.get("/api/v1/alerts?all=true&limit=1000").await {
        Ok((200, Value::Array(alerts))) => alerts,
        _ => Vec::new(),
    }
}

async fn deliveries(operator: &Operator, endpoint: i64) -> Vec<Value> {
    match operator
        .get(&format!(
            "/api/v1/notifications/deliveries?endpoint={endpoint}&limit=1000"
        ))
        .await
    {
        Ok((200, Value::Array(rows))) => rows,
        other => panic!("the delivery log: {other:?}"),
    }
}

async fn make_endpoint(operator: &Operator, spec: Value) -> anyhow::Result<(i64, Option<String>)> {
    let (status, answer) = operator
        .send("POST", "/api/v1/notifications/endpoints", &spec)
        .await?;
    anyhow::ensure!(status == 201, "{status}: {answer}");
    Ok((
        answer["endpoint"]["id"].as_i64().unwrap(),
        answer["secret"].as_str().map(str::to_string),
    ))
}

/// The (alert_id, event) pairs a webhook receiver got for `kind` at `site`.
fn events_of(got: &[Received], kind: &str, site: &str) -> Vec<(i64, String)> {
    got.iter()
        .filter(|r| r.json["kind"] == kind && r.json["site_code"] == site)
        .map(|r| {
            (
                r.json["alert_id"].as_i64().unwrap_or_default(),
                r.json["event"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Median ack time of `rounds` one-event batches.
async fn ack_median(site: &mut Site, first: u64, rounds: u64) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for sequence in first..first + rounds {
        let started = Instant::now();
        site.send(&[sequence]).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_reach_webhooks_and_mail_signed_in_order_scoped_and_quiet_at_night()
-> anyhow::Result<()> {
    let tokyo = site_code("131000013");
    let osaka = site_code("271000019");
    let kyoto = site_code("261000011");
    let pki = Pki::new(&[&tokyo, &osaka, &kyoto])?;
    let db = TestDb::create().await?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("notification.key");
    std::fs::write(&key_file, "5a".repeat(32))?;
    let mail = MailServer::start(&pki).await?;
    let smtp_port = mail.port.to_string();
    let chain_ca = pki.paths.chain_ca();
    let env = [
        ("CENTRAL_ALERT_CHECK_SECS", "1"),
        ("CENTRAL_GAP_ALERT_SECS", "0"),
        ("CENTRAL_UNAVAILABLE_ALERT_SECS", "0"),
        // The hand-driven sessions send no heartbeats; a dropped one ends at once.
        ("CENTRAL_SILENCE_SECS", "600"),
        ("CENTRAL_NOTIFICATION_KEY_FILE", key_file.to_str().unwrap()),
        ("CENTRAL_SMTP_HOST", "localhost"),
        ("CENTRAL_SMTP_PORT", &smtp_port),
        ("CENTRAL_SMTP_CA", chain_ca.to_str().unwrap()),
        ("CENTRAL_SMTP_FROM", "onshi-fleet@example.jp"),
        ("CENTRAL_DASHBOARD_URL", "https://central.example.jp"),
        ("CENTRAL_NOTIFY_POLL_SECS", "1"),
        ("CENTRAL_NOTIFY_HOLD_RECHECK_SECS", "1"),
        ("CENTRAL_NOTIFY_RETRY_SECS", "1"),
        ("CENTRAL_NOTIFY_RETRY_MAX_SECS", "2"),
        ("CENTRAL_NOTIFY_TIMEOUT_SECS", "10"),
    ];
    let central = start_central_with_env(&pki, &db, &env).await?;
    let operator = Operator::new(&pki, &central);
    let (status, answer) = operator
        .send(
            "PUT",
            "/api/v1/opening-hours",
            &serde_json::from_str(ALWAYS_OPEN)?,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");

    // Chain IT's endpoints: everything by webhook and by mail; an area manager's webhook for
    // Osaka (27) only; a webhook keeping quiet hours for site_unavailable and chain breaks.
    let mut hook = Receiver::start().await?;
    let area = Receiver::start().await?;
    let quiet = Receiver::start().await?;
    let (all_id, secret) = make_endpoint(
        &operator,
        json!({"name": "chain IT", "channel": "webhook", "target": hook.url(), "quiet_hours": false}),
    )
    .await?;
    let secret = secret.expect("a webhook's secret is shown at creation");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (mail_id, none) = make_endpoint(
        &operator,
        json!({"name": "IT mail", "channel": "mail", "target": "it@example.jp", "quiet_hours": false,
               "kinds": ["sequence_gap"]}),
    )
    .await?;
    assert_eq!(none, None, "mail has no secret");
    let (_, area_secret) = make_endpoint(
        &operator,
        json!({"name": "関西エリア", "channel": "webhook", "target": area.url(),
               "prefectures": ["27"], "quiet_hours": false}),
    )
    .await?;
    let (quiet_id, _) = make_endpoint(
        &operator,
        json!({"name": "on call", "channel": "webhook", "target": quiet.url(),
               "kinds": ["site_unavailable", "chain_break"], "sites": [tokyo]}),
    )
    .await?;
    // The secret is never shown again, and a mistake is named and changes nothing.
    let (_, listed) = operator.get("/api/v1/notifications/endpoints").await?;
    assert!(!listed.to_string().contains(&secret), "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
    let (status, refused) = operator
        .send(
            "POST",
            "/api/v1/notifications/endpoints",
            &json!({"name": "x", "channel": "webhook", "target": "ftp://x", "prefectures": ["99"]}),
        )
        .await?;
    assert_eq!(status, 400, "{refused}");
    let (_, still) = operator.get("/api/v1/notifications/endpoints").await?;
    assert_eq!(still, listed);

    // 1. A sequence gap at Tokyo opens, then resolves when the missing event arrives.
    let mut tokyo_site = Site::open(&pki, &central, &tokyo).await?;
    tokyo_site.send(&[1, 3]).await?;
    let gap = eventually("the Tokyo gap alert", || async {
        alerts(&operator)
            .await
            .into_iter()
            .find(|a| a["kind"] == "sequence_gap" && a["site_code"] == tokyo)
    })
    .await;
    let gap_id = gap["id"].as_i64().unwrap();
    tokyo_site.send(&[2]).await?;
    let both = vec![
        (gap_id, "opened".to_string()),
        (gap_id, "resolved".to_string()),
    ];
    eventually("the webhook gets opened and resolved", || async {
        (events_of(&hook.got(), "sequence_gap", &tokyo) == both).then_some(())
    })
    .await;
    for received in hook.got() {
        assert!(verifies(&secret, &received), "signed: {:?}", received.json);
        let mut forged = received.clone();
        forged.body.extend_from_slice(b" ");
        assert!(!verifies(&secret, &forged), "a changed body fails");
    }
    let opened = &hook.got()[0].json;
    assert_eq!(opened["schema_version"], 1, "{opened}");
    assert_eq!(opened["prefecture"], "13", "{opened}");
    assert_eq!(
        opened["dashboard_url"],
        format!("https://central.example.jp/sites/{tokyo}"),
        "{opened}"
    );
    let mails = eventually("two mails", || async {
        let mails = mail.mail();
        (mails.len() >= 2).then_some(mails)
    })
    .await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    for (mail, event) in mails.iter().zip(["発生", "解決"]) {
        assert_eq!(mail["tls"], true, "STARTTLS: {mail}");
        assert_eq!(mail["to"], json!(["it@example.jp"]), "{mail}");
        let subject = mail["subject"].as_str().unwrap();
        assert!(
            subject.starts_with(&format!("[onshi-fleet] {event}: イベントの欠番 {tokyo} / ")),
            "{subject}"
        );
        let body = mail["body"].as_str().unwrap();
        let (ja, en) = (body.find("施設:").unwrap(), body.find("Site:").unwrap());
        assert!(ja < en, "Japanese first: {body}");
    }

    // 2. Osaka's gap reaches the area manager's endpoint; Tokyo's never does.
    let mut osaka_site = Site::open(&pki, &central, &osaka).await?;
    osaka_site.send(&[1, 3]).await?;
    eventually("the area webhook gets Osaka's gap", || async {
        (!events_of(&area.got(), "sequence_gap", &osaka).is_empty()).then_some(())
    })
    .await;
    let area_secret = area_secret.unwrap();
    assert!(area.got().iter().all(|r| verifies(&area_secret, r)));

    // 3. The main receiver goes down; alerts open and resolve meanwhile; when it is back it
    // gets every notification, in order per alert, none twice.
    hook.down().await;
    osaka_site.send(&[2]).await?;
    tokyo_site.send(&[5]).await?;
    let second_gap = eventually("a second Tokyo gap", || async {
        alerts(&operator).await.into_iter().find(|a| {
            a["kind"] == "sequence_gap" && a["site_code"] == tokyo && a["id"] != gap["id"]
        })
    })
    .await;
    tokyo_site.send(&[4]).await?;
    eventually(
        "failed attempts in the delivery log while it is down",
        || async {
            deliveries(&operator, all_id)
                .await
                .into_iter()
                .find(|d| d["status"] == "retrying" && d["attempts"].as_i64() > Some(1))
        },
    )
    .await;
    let log = deliveries(&operator, all_id).await;
    assert!(
        log.iter()
            .filter_map(|d| d["last_error"].as_str())
            .all(|e| !e.contains(&secret)),
        "{log:?}"
    );
    eventually("the second gap resolved", || async {
        alerts(&operator)
            .await
            .into_iter()
            .find(|a| a["id"] == second_gap["id"] && !a["resolved_at"].is_null())
    })
    .await;
    // Central restarts while the receiver is down: what it owes waits in PostgreSQL.
    central.kill().await?;
    let central = start_central_with_env(&pki, &db, &env).await?;
    let operator = Operator::new(&pki, &central);
    let tokyo_site = Site::open(&pki, &central, &tokyo).await?;
    hook.up().await?;
    let second = second_gap["id"].as_i64().unwrap();
    eventually("everything delivered after the outage", || async {
        let rows = deliveries(&operator, all_id).await;
        rows.iter()
            .all(|d| d["status"] == "delivered")
            .then_some(())
            .filter(|()| {
                events_of(&hook.got(), "sequence_gap", &tokyo)
                    .contains(&(second, "resolved".to_string()))
                    && events_of(&hook.got(), "sequence_gap", &osaka).len() == 2
            })
    })
    .await;
    let got = hook.got();
    let ids: Vec<i64> = got
        .iter()
        .map(|r| r.json["notification_id"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "none twice: {ids:?}");
    let mut per_alert: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (alert, event) in events_of(&got, "sequence_gap", &tokyo)
        .into_iter()
        .chain(events_of(&got, "sequence_gap", &osaka))
    {
        per_alert.entry(alert).or_default().push(event);
    }
    assert_eq!(per_alert.len(), 3, "{per_alert:?}");
    for events in per_alert.values() {
        assert_eq!(events, &["opened", "resolved"], "in order: {per_alert:?}");
    }
    let logged: BTreeSet<i64> = deliveries(&operator, all_id)
        .await
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(logged, unique, "every logged notification arrived");
    assert!(
        area.got()
            .iter()
            .all(|r| r.json["prefecture"] == "27" && r.json["site_code"] == osaka),
        "the area manager's endpoint got only Osaka: {:?}",
        area.got().iter().map(|r| &r.json).collect::<Vec<_>>()
    );

    // 4. A slow receiver does not slow ingest: acks measured before and while deliveries to a
    // receiver that takes 3 s per answer are in flight.
    let slow = Receiver::start().await?;
    slow.set_delay(Duration::from_secs(3));
    let (slow_id, _) = make_endpoint(
        &operator,
        json!({"name": "slow", "channel": "webhook", "target": slow.url(), "enabled": false}),
    )
    .await?;
    let mut kyoto_site = Site::open(&pki, &central, &kyoto).await?;
    // Warm up (connections, the stream's row, the writer) before measuring.
    for sequence in 1..=10 {
        kyoto_site.send(&[sequence]).await?;
    }
    let before = ack_median(&mut kyoto_site, 11, 30).await?;
    for _ in 0..24 {
        let (status, answer) = operator
            .send(
                "POST",
                &format!("/api/v1/notifications/endpoints/{slow_id}/test"),
                &json!({}),
            )
            .await?;
        assert_eq!(status, 202, "{answer}");
    }
    eventually("deliveries in flight at the slow receiver", || async {
        (slow
            .state
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 4)
            .then_some(())
    })
    .await;
    let during = ack_median(&mut kyoto_site, 41, 30).await?;
    let still_slow = slow
        .state
        .in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        still_slow > 0,
        "the measurement ran while deliveries waited"
    );
    eprintln!("ingest ack median: {before:?} without, {during:?} with a slow receiver");
    assert!(
        during <= before * 3 + Duration::from_millis(50),
        "ingest slowed by a slow receiver: {before:?} → {during:?}"
    );

    // 5. Quiet hours: Tokyo's agent goes away while Tokyo is open: the on-call webhook hears
    // at once. Tokyo closes: the alert resolves, and that notice is held until it opens again;
    // a chain break while it is closed is sent at once.
    drop(tokyo_site);
    let unavailable = eventually("Tokyo unavailable reaches on call", || async {
        events_of(&quiet.got(), "site_unavailable", &tokyo)
            .first()
            .cloned()
    })
    .await;
    assert_eq!(unavailable.1, "opened");
    let (status, answer) = operator
        .send(
            "PUT",
            &format!("/api/v1/sites/{tokyo}/opening-hours"),
            &json!({"weekly": {}}),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    eventually("the resolved notice held by quiet hours", || async {
        deliveries(&operator, quiet_id)
            .await
            .into_iter()
            .find(|d| d["status"] == "held" && d["kind"] == "site_unavailable")
    })
    .await;
    let mut broken = Site::open(&pki, &central, &tokyo).await?;
    broken.send_broken_chain(4, 3).await?;
    eventually(
        "the chain break reaches on call while Tokyo is closed",
        || async { (!events_of(&quiet.got(), "chain_break", &tokyo).is_empty()).then_some(()) },
    )
    .await;
    assert_eq!(
        events_of(&quiet.got(), "site_unavailable", &tokyo),
        vec![unavailable.clone()],
        "the resolved notice waits while Tokyo is closed"
    );
    let (status, answer) = operator
        .send(
            "PUT",
            &format!("/api/v1/sites/{tokyo}/opening-hours"),
            &serde_json::from_str(ALWAYS_OPEN)?,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    eventually("the held notice delivered once Tokyo opens", || async {
        events_of(&quiet.got(), "site_unavailable", &tokyo)
            .contains(&(unavailable.0, "resolved".to_string()))
            .then_some(())
    })
    .await;
    assert!(
        area.got().iter().all(|r| r.json["site_code"] == osaka),
        "still nothing of Tokyo at the area manager's endpoint"
    );
    // The mail endpoint's log: every notice delivered, as many as mails arrived.
    eventually("every mail delivered and received", || async {
        let log = deliveries(&operator, mail_id).await;
        (log.len() == 6 && log.iter().all(|d| d["status"] == "delivered") && mail.mail().len() == 6)
            .then_some(())
    })
    .await;
    Ok(())
}
