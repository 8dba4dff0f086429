//! The walking skeleton, end to end: real PostgreSQL, central, onshi-sim and edge agents as
//! processes, real mTLS between them.

use std::sync::Arc;

use e2e::uplink::{Session, agent_tls, lookup_event};
use e2e::{
    AgentSite, Pki, TestDb, eventually, https_endpoint, sim_people, site_code, start_central,
    start_sim,
};
use fleet_tls::config::{ALPN_H2, Identity, client_config, load_certificates};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// A clinic in Hiroshima (the domain doc's example institution code).
fn clinic() -> String {
    site_code("341071236")
}

/// A pharmacy in Tokyo.
fn pharmacy() -> String {
    site_code("134012345")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_reaches_central_exactly_once_for_its_site() -> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let _agent = agent_site.start().await?;
    let person = sim_people("valid", 1).await?.remove(0);

    let output = agent_site.lookup(&person).await?;
    assert!(
        output.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid", "reply: {reply}");
    assert_eq!(reply["sequence"], 1);

    // The agent drops the event only once central has acknowledged it...
    let agent_status = agent_site.status().await?;
    assert!(agent_status["last_produced_sequence"] == 1);
    eventually(
        "the agent's outbox to empty after central's ack",
        || async {
            let s = agent_site.status().await.ok()?;
            (s["outbox_depth"] == 0 && s["last_acked_sequence"] == 1).then_some(())
        },
    )
    .await;

    // ...and central holds it exactly once, for this site.
    let client = db.client().await?;
    let rows = client
        .query("SELECT site_code, kind, body::text FROM events", &[])
        .await?;
    assert_eq!(rows.len(), 1, "exactly one stored event");
    assert_eq!(rows[0].get::<_, String>(0), site);
    assert_eq!(rows[0].get::<_, String>(1), "lookup");
    let body: String = rows[0].get(2);
    let body_json: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(body_json["outcome"], "valid");
    assert_eq!(body_json["route"], "insurance_card");
    // The patient travels as a keyed hash only: none of the card's identifiers is in clear.
    assert_eq!(body_json["patient_ref"].as_str().map(str::len), Some(64));
    assert!(
        !body.contains(&person.number) && !body.contains(&person.birthdate),
        "central must not hold the insured number or birth date in clear: {body}"
    );

    // The stored event is the one the agent chained: `central verify` says so, and says so no
    // more once someone with database access changes it.
    let (intact, verdict) = e2e::central_verify(&db, &site).await?;
    assert!(intact, "{verdict}");

    // An auditor's offline bundle: it verifies with nothing but the CLI, holds no insured
    // number, name or birth date in clear, and fails once edited.
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("bundle.json");
    let export = tokio::process::Command::new(e2e::bin("central"))
        .args(["export", "--site", &site, "--by", "auditor-1", "--out"])
        .arg(&bundle)
        .env("DATABASE_URL", &db.url)
        .output()
        .await?;
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let text = std::fs::read_to_string(&bundle)?;
    for secret in [&person.number, &person.name, &person.birthdate] {
        assert!(
            !text.contains(secret.as_str()),
            "the bundle holds {secret} in clear"
        );
    }
    let verify_bundle = |path: std::path::PathBuf| async move {
        tokio::process::Command::new(e2e::bin("central"))
            .arg("verify-bundle")
            .arg(path)
            .env_remove("DATABASE_URL")
            .output()
            .await
    };
    let offline = verify_bundle(bundle.clone()).await?;
    assert_eq!(
        offline.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );
    assert!(String::from_utf8_lossy(&offline.stdout).starts_with("INTACT"));
    std::fs::write(&bundle, text.replace("\"valid\"", "\"invalid\""))?;
    let offline = verify_bundle(bundle).await?;
    assert_eq!(
        offline.status.code(),
        Some(1),
        "a tampered bundle fails the offline verify"
    );
    assert!(String::from_utf8_lossy(&offline.stdout).starts_with("BROKEN"));
    client
        .execute(
            "UPDATE events SET body = jsonb_set(body, '{outcome}', '\"invalid\"')",
            &[],
        )
        .await?;
    let (intact, verdict) = e2e::central_verify(&db, &site).await?;
    assert!(
        !intact,
        "an altered event must fail verification: {verdict}"
    );
    assert_eq!(
        verdict["streams"][0]["findings"][0]["finding"], "broken",
        "{verdict}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_certificate_for_one_site_cannot_submit_for_another() -> anyhow::Result<()> {
    let (a, b) = (clinic(), pharmacy());
    let pki = Pki::new(&[&a, &b])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let endpoint = https_endpoint(&central, "grpc");
    let tls_a = agent_tls(&pki, &a)?;

    // Saying hello as site B with site A's certificate.
    let refused = Session::open(&endpoint, tls_a.clone(), &b, Uuid::now_v7())
        .await
        .expect_err("a hello for another site is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");

    // A batch whose events name site B, sent on site A's own session; and a mixed batch.
    for events in [
        vec![lookup_event(&b, 1)],
        vec![lookup_event(&a, 1), lookup_event(&b, 2)],
    ] {
        let mut session = Session::open(&endpoint, tls_a.clone(), &a, Uuid::now_v7()).await?;
        let refused = session
            .send_batch(events)
            .await
            .expect_err("a batch naming another site is refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        assert!(refused.message().contains(&b), "{}", refused.message());
    }

    let client = db.client().await?;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    assert_eq!(stored, 0, "nothing of a refused batch is stored");
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM security_events
             WHERE kind = 'foreign_site' AND peer_site_code = $1 AND claimed_site_code = $2",
            &[&a, &b],
        )
        .await?
        .get(0);
    assert_eq!(audited, 3, "each refusal is audited");
    Ok(())
}

/// Speaks just enough HTTP/2 to learn whether the server accepted the TLS session: a server
/// that accepted answers with its SETTINGS frame, one that refused the client certificate
/// answers with a TLS alert.
async fn probe(addr: &str, tls: Arc<rustls::ClientConfig>) -> Result<usize, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("valid name");
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf).await {
        Ok(0) => Err("connection closed".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_a_certificate_or_from_another_ca_are_refused_at_the_handshake()
-> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let addr = central.field("grpc");
    let roots = load_certificates(&pki.paths.chain_ca())?;

    // The probe itself tells acceptance apart: the right certificate is answered.
    assert!(probe(&addr, agent_tls(&pki, &site)?).await.is_ok());

    let no_certificate = client_config(None, &roots, &[ALPN_H2])?;
    let error = probe(&addr, no_certificate)
        .await
        .expect_err("a client without a certificate is refused");
    assert!(error.contains("CertificateRequired"), "{error}");

    let stranger = Pki::new(&[&site])?;
    let (cert, key) = stranger.paths.agent(&site);
    let other_ca = client_config(
        Some(&Identity::from_pem_files(&cert, &key)?),
        &roots,
        &[ALPN_H2],
    )?;
    let error = probe(&addr, other_ca)
        .await
        .expect_err("a certificate from another CA is refused");
    // Both dev CAs carry the same name, so the server finds "its" issuer and the signature
    // check fails (DecryptError); a differently named CA is UnknownCA.
    assert!(
        ["UnknownCA", "BadCertificate", "DecryptError"]
            .iter()
            .any(|alert| error.contains(alert)),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_batch_stores_nothing_new() -> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let endpoint = https_endpoint(&central, "grpc");
    let stream = Uuid::now_v7();
    let events: Vec<_> = (1..=3).map(|s| lookup_event(&site, s)).collect();

    let mut first = Session::open(&endpoint, agent_tls(&pki, &site)?, &site, stream).await?;
    assert_eq!(first.welcome.resume_after_sequence, 0);
    let ack = first.send_batch(events.clone()).await?;
    assert_eq!((ack.up_to_sequence, ack.stored, ack.duplicates), (3, 3, 0));
    drop(first);

    // As after a lost ack: the agent reconnects and sends the same batch again.
    let mut again = Session::open(&endpoint, agent_tls(&pki, &site)?, &site, stream).await?;
    assert_eq!(again.welcome.resume_after_sequence, 3);
    let ack = again.send_batch(events).await?;
    assert_eq!((ack.up_to_sequence, ack.stored, ack.duplicates), (3, 0, 3));

    let stored: i64 = db
        .client()
        .await?
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    assert_eq!(stored, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_insurer_check_digit_is_refused_before_any_network_call() -> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    // Stand-ins for the national system and central that only record whether anyone called.
    let onshi_trap = TcpListener::bind("127.0.0.1:0").await?;
    let central_trap = TcpListener::bind("127.0.0.1:0").await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &format!("https://{}", central_trap.local_addr()?),
        &format!("https://{}", onshi_trap.local_addr()?),
    )?;
    let _agent = agent_site.start().await?;

    let mut person = sim_people("valid", 1).await?.remove(0);
    let last = person.insurer_number.pop().expect("an insurer number");
    let wrong = char::from_digit((last.to_digit(10).expect("a digit") + 1) % 10, 10).unwrap();
    person.insurer_number.push(wrong);

    let output = agent_site.lookup(&person).await?;
    assert_eq!(output.status.code(), Some(2), "refused as bad input");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("check digit"), "{message}");
    assert!(message.contains("保険者番号"), "{message}");

    // Had the agent called out, the connection would already wait in the trap's backlog.
    tokio::select! {
        biased;
        accepted = onshi_trap.accept() => panic!("the agent contacted the national system: {accepted:?}"),
        () = std::future::ready(()) => {}
    }
    let status = agent_site.status().await?;
    assert_eq!(
        status["last_produced_sequence"], 0,
        "no lookup event was recorded"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_api_shows_a_sites_events_to_operators_only() -> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let mut session = Session::open(
        &https_endpoint(&central, "grpc"),
        agent_tls(&pki, &site)?,
        &site,
        Uuid::now_v7(),
    )
    .await?;
    session
        .send_batch((1..=2).map(|s| lookup_event(&site, s)).collect())
        .await?;

    let http = central.field("http");
    let ca = pki.paths.chain_ca();
    let (cert, key) = pki.paths.operator("e2e");
    let path = format!("/api/v1/sites/{site}/events");
    let (status, events) = e2e::http::get_json(&ca, &cert, &key, &http, &path).await?;
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().expect("a list of events");
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["site_code"] == site.as_str()));
    assert_eq!(events[0]["sequence"], 2, "newest first");

    let (status, sites) = e2e::http::get_json(&ca, &cert, &key, &http, "/api/v1/sites").await?;
    assert_eq!(
        (status, sites[0]["events"].as_i64()),
        (200, Some(2)),
        "{sites}"
    );

    // An agent's certificate comes from the same CA but is not an operator's.
    let (cert, key) = pki.paths.agent(&site);
    let (status, error) = e2e::http::get_json(&ca, &cert, &key, &http, &path).await?;
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("forbidden")),
        "{error}"
    );

    let (cert, key) = pki.paths.operator("e2e");
    let (status, error) =
        e2e::http::get_json(&ca, &cert, &key, &http, "/api/v1/sites/12345/events").await?;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("bad_request")),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn central_health_answers_serving_over_mtls_and_fails_clearly_when_down() -> anyhow::Result<()>
{
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let (cert, key) = pki.paths.central();
    let health = |addr: String| {
        let mut command = tokio::process::Command::new(e2e::bin("central"));
        command
            .arg("health")
            .args(["--addr", &addr, "--server-name", "localhost"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--client-ca")
            .arg(pki.paths.chain_ca());
        command
    };

    let output = health(central.field("grpc")).output().await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "SERVING");
    // The test's PostgreSQL has no standby: an ack is on one server only.
    let output = health(central.field("grpc"))
        .arg("--synchronous-standby")
        .output()
        .await?;
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "NOT_SERVING"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?
        .to_string();
    let output = health(closed.clone()).output().await?;
    assert!(!output.status.success(), "a closed port is not healthy");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&closed),
        "the failure names the address: {message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_agent_certificate_is_refused_at_the_handshake_and_audited() -> anyhow::Result<()>
{
    let (site, other) = (clinic(), pharmacy());
    let pki = Pki::new(&[&site, &other])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let endpoint = https_endpoint(&central, "grpc");
    let tls = agent_tls(&pki, &site)?;
    let mut open = Session::open(&endpoint, tls.clone(), &site, Uuid::now_v7())
        .await
        .expect("the agent connects before its revocation");

    // The operator revokes it by the fingerprint the certificate inventory shows.
    let cert = load_certificates(&pki.paths.agent(&site).0)?.remove(0);
    let fingerprint = onshi_domain::hex::encode(&fleet_tls::deny::fingerprint(&cert));
    let (operator_cert, operator_key) = pki.paths.operator("e2e");
    let send = |body: serde_json::Value| {
        let (ca, cert, key) = (
            pki.paths.chain_ca(),
            operator_cert.clone(),
            operator_key.clone(),
        );
        let addr = central.field("http");
        async move {
            e2e::http::send_json(
                &ca,
                &cert,
                &key,
                &addr,
                "POST",
                "/api/v1/revocations",
                &body,
            )
            .await
        }
    };
    let (status, answer) = send(serde_json::json!({
        "sha256_fingerprint": "not-a-fingerprint", "reason": "lost"
    }))
    .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("fingerprint"),
        "{answer}"
    );
    let (status, answer) = send(serde_json::json!({
        "sha256_fingerprint": fingerprint, "reason": "the terminal was stolen"
    }))
    .await?;
    assert_eq!(status, 200, "{answer}");

    // The session it had open ends at its next message...
    let ended = open
        .send_batch(vec![lookup_event(&site, 1)])
        .await
        .expect_err("a revoked agent's open session ends");
    assert_eq!(ended.code(), tonic::Code::PermissionDenied, "{ended}");
    assert!(ended.message().contains("revoked"), "{ended}");
    // ...and a new one is refused at the handshake; another site's agent still connects.
    let refused = Session::open(&endpoint, tls, &site, Uuid::now_v7()).await;
    assert!(refused.is_err(), "a revoked certificate must not connect");
    Session::open(&endpoint, agent_tls(&pki, &other)?, &other, Uuid::now_v7())
        .await
        .expect("other agents are not affected");
    // The revocation and the refusal are in the audit trail.
    let kinds = eventually("the refusal in the audit trail", || async {
        let client = db.client().await.ok()?;
        let kinds: Vec<String> = client
            .query(
                "SELECT kind FROM security_events WHERE detail LIKE '%' || $1 || '%' ORDER BY id",
                &[&fingerprint],
            )
            .await
            .ok()?
            .iter()
            .map(|r| r.get(0))
            .collect();
        (kinds.len() >= 2).then_some(kinds)
    })
    .await;
    assert_eq!(kinds, ["admin_action", "revoked_certificate_refused"]);
    Ok(())
}
