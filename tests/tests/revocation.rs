//! Revocations and renewals that hold against what a stolen certificate or key already has
//! (issue 15): an open HTTP/2 connection of a revoked operator certificate (item 7); renewals
//! a stolen agent key asks for, certificates it minted before a site was revoked, and which CA
//! each listener takes (item 6). All against the real central process.

use e2e::http::{OperatorConnection, send_json};
use e2e::uplink::{Session, agent_tls, lookup_event, refused_at_handshake, tls_from_pem};
use e2e::{
    Pki, TestDb, eventually, https_endpoint, site_code, start_central, start_central_with_env,
};
use fleet_tls::renewal;

/// An operator's tooling keeps one HTTP/2 connection open; the certificate is revoked (by
/// another operator) while it is open. The next request on that same connection is refused
/// with `certificate_revoked`, the refusal is audited, and central closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_revoked_while_its_http2_connection_is_open_is_refused_there_and_the_connection_closed()
-> anyhow::Result<()> {
    let site = site_code("131011001");
    let pki = Pki::with_operators(&[&site], &["e2e", "admin"])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let addr = central.field("http");

    let mut stolen = OperatorConnection::open(&pki, &addr, "e2e").await?;
    let (status, answer) = stolen.get("/api/v1/revocations").await?;
    assert_eq!(
        status, 200,
        "before its revocation the certificate works: {answer}"
    );

    let (cert, key) = pki.paths.operator("admin");
    let leaf = fleet_tls::config::load_certificates(&pki.paths.operator("e2e").0)?.remove(0);
    let fingerprint = onshi_domain::hex::encode(&fleet_tls::deny::fingerprint(&leaf));
    let (status, answer) = send_json(
        &pki.paths.chain_ca(),
        &cert,
        &key,
        &addr,
        "POST",
        "/api/v1/revocations",
        &serde_json::json!({ "sha256_fingerprint": fingerprint, "reason": "laptop stolen" }),
    )
    .await?;
    assert_eq!(status, 200, "{answer}");

    let (status, answer) = stolen.get("/api/v1/revocations").await?;
    assert_eq!(
        status, 401,
        "the same connection, after the revocation: {answer}"
    );
    assert_eq!(answer["code"], "certificate_revoked", "{answer}");
    stolen.closed().await?;

    let client = db.client().await?;
    eventually("the refusal on the open connection is audited", || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT count(*) FROM security_events WHERE kind = 'revoked_certificate_refused'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) > 0).then_some(())
        }
    })
    .await;

    // A new connection with it is refused at the handshake, as before.
    let refused = match OperatorConnection::open(&pki, &addr, "e2e").await {
        Err(_) => true,
        Ok(mut again) => again.get("/api/v1/revocations").await.is_err(),
    };
    assert!(
        refused,
        "a new connection with the revoked certificate is refused"
    );
    Ok(())
}

async fn central_that_renews(pki: &Pki, db: &TestDb) -> anyhow::Result<e2e::Running> {
    let ca_key = pki.paths.agent_ca().1;
    start_central_with_env(
        pki,
        db,
        &[("CENTRAL_AGENT_CA_KEY", ca_key.to_str().unwrap())],
    )
    .await
}

/// A session of `site` presenting `tls`, on a new stream.
async fn session(
    central: &e2e::Running,
    tls: std::sync::Arc<rustls::ClientConfig>,
    site: &str,
) -> Result<Session, tonic::Status> {
    Session::open(
        &https_endpoint(central, "grpc"),
        tls,
        site,
        uuid::Uuid::now_v7(),
    )
    .await
}

/// Someone who stole an agent's key asks central for certificates (item 6). A fresh
/// certificate is not renewed at all; one inside its renewal window is renewed once, and the
/// same certificate is never renewed a second time, on this session or a new one; and the
/// certificate it got is fresh, so it renews nothing either. Each refusal is audited.
#[tokio::test(flavor = "multi_thread")]
async fn a_stolen_agent_key_renews_only_inside_the_window_and_once_per_certificate()
-> anyhow::Result<()> {
    let site = site_code("131011002");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = central_that_renews(&pki, &db).await?;

    // The dev certificate is fresh (a year): not due, nothing signed.
    let mut fresh = session(&central, agent_tls(&pki, &site)?, &site).await?;
    let answer = fresh.renew(renewal::request(&site)?.csr_der).await?;
    assert!(
        answer.certificate_chain_pem.is_empty(),
        "a fresh certificate was renewed"
    );
    assert!(answer.refused.contains("not yet due"), "{}", answer.refused);

    // Inside the window: renewed once.
    e2e::issue_due_agent_certificate(&pki, &site)?;
    let mut due = session(&central, agent_tls(&pki, &site)?, &site).await?;
    let request = renewal::request(&site)?;
    let answer = due.renew(request.csr_der.clone()).await?;
    assert!(answer.refused.is_empty(), "{}", answer.refused);
    let minted = answer.certificate_chain_pem;

    // The same certificate again, on a new session: refused.
    let mut again = session(&central, agent_tls(&pki, &site)?, &site).await?;
    let answer = again.renew(renewal::request(&site)?.csr_der).await?;
    assert!(answer.certificate_chain_pem.is_empty(), "renewed twice");
    assert!(
        answer.refused.contains("renewed before"),
        "{}",
        answer.refused
    );

    // The certificate it got is fresh: it renews nothing.
    let mut next = session(
        &central,
        tls_from_pem(&pki, &minted, &request.key_pem)?,
        &site,
    )
    .await?;
    let answer = next.renew(renewal::request(&site)?.csr_der).await?;
    assert!(
        answer.certificate_chain_pem.is_empty(),
        "the minted certificate renewed"
    );
    assert!(answer.refused.contains("not yet due"), "{}", answer.refused);

    let client = db.client().await?;
    let issued: i64 = client
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'certificate_issued'",
            &[],
        )
        .await?
        .get(0);
    let refused: i64 = client
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'certificate_renewal_refused'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        (issued, refused),
        (1, 3),
        "one issued, three refusals audited"
    );
    Ok(())
}

/// The operator learns the agent key was stolen after the thief renewed it. Revoking the one
/// certificate they know would leave the minted one working; revoking the site (every
/// certificate of the site issued before a time) refuses both, ends the open session, and a
/// certificate issued afterwards works. The CLI does the same for another site, applied by
/// the running central within its refresh.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_site_refuses_every_certificate_issued_before_the_time_the_minted_ones_too()
-> anyhow::Result<()> {
    let (site, other) = (site_code("131011003"), site_code("131011004"));
    let pki = Pki::new(&[&site, &other])?;
    let db = TestDb::create().await?;
    let central = central_that_renews(&pki, &db).await?;
    let operator = e2e::http::Operator::new(&pki, &central);

    e2e::issue_due_agent_certificate(&pki, &site)?;
    let mut stolen = session(&central, agent_tls(&pki, &site)?, &site).await?;
    let request = renewal::request(&site)?;
    let answer = stolen.renew(request.csr_der.clone()).await?;
    assert!(answer.refused.is_empty(), "{}", answer.refused);
    let minted = tls_from_pem(&pki, &answer.certificate_chain_pem, &request.key_pem)?;
    let mut open = session(&central, agent_tls(&pki, &site)?, &site).await?;
    assert!(open.send_batch(vec![lookup_event(&site, 1)]).await.is_ok());

    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::seconds(60);
    let at = cutoff.format(&time::format_description::well_known::Rfc3339)?;
    let (status, answer) = operator
        .send(
            "POST",
            &format!("/api/v1/sites/{site}/revocation"),
            &serde_json::json!({ "reason": "agent key stolen", "issued_before": at }),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = operator
        .send(
            "POST",
            &format!("/api/v1/sites/{site}/revocation"),
            &serde_json::json!({ "reason": " " }),
        )
        .await?;
    assert_eq!(status, 400, "a revocation needs a reason: {answer}");

    let ended = open
        .send_batch(vec![lookup_event(&site, 2)])
        .await
        .expect_err("the open session of a revoked site ends");
    assert_eq!(ended.code(), tonic::Code::PermissionDenied, "{ended}");
    assert!(
        session(&central, agent_tls(&pki, &site)?, &site)
            .await
            .is_err(),
        "the certificate the operator knew is refused"
    );
    assert!(
        session(&central, minted, &site).await.is_err(),
        "the certificate the thief minted is refused too"
    );
    let now = time::OffsetDateTime::now_utc();
    fleet_tls::devpki::issue_agent_between(
        pki.paths.root(),
        &site,
        cutoff + time::Duration::seconds(1),
        now + time::Duration::days(30),
    )?;
    session(&central, agent_tls(&pki, &site)?, &site)
        .await
        .expect("a certificate issued after the revocation works");

    let audited: i64 = db
        .client()
        .await?
        .query_one(
            "SELECT count(*) FROM security_events
             WHERE kind = 'admin_action' AND peer_site_code = $1 AND detail LIKE '%agent key stolen%'",
            &[&site],
        )
        .await?
        .get(0);
    assert_eq!(audited, 1, "the revocation is audited");

    // The CLI, for the other site: the running central applies it at its next refresh.
    session(&central, agent_tls(&pki, &other)?, &other).await?;
    let output = tokio::process::Command::new(e2e::bin("central"))
        .args([
            "revoke-site",
            "--site",
            &other,
            "--reason",
            "terminal stolen",
        ])
        .env("DATABASE_URL", db.app_login().await?)
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pki = &pki;
    let central = &central;
    let other = &other;
    eventually("the CLI's revocation refuses the site", || async move {
        session(central, agent_tls(pki, other).ok()?, other)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    Ok(())
}

/// Agents' certificates come from the agent sub-CA, operators' from the chain CA itself: an
/// operator certificate minted with the agent CA's key (which central holds online) is refused
/// at the operator listener's handshake, so is an agent's; an operator's is refused at the
/// agent listener's handshake. The genuine ones are taken where they belong.
#[tokio::test(flavor = "multi_thread")]
async fn each_listener_takes_only_its_own_ca() -> anyhow::Result<()> {
    let site = site_code("131011005");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let (http, grpc) = (central.field("http"), central.field("grpc"));
    let root = pki.paths.root();

    // An operator certificate from the agent CA, presented with the agent CA as intermediate.
    let (forged, forged_key) = fleet_tls::devpki::issue_client_with(
        root,
        "agent-ca",
        "urn:onshi-fleet:operator:mallory",
        "mallory",
    )?;
    let chain =
        std::fs::read_to_string(&forged)? + &std::fs::read_to_string(pki.paths.agent_ca().0)?;
    std::fs::write(&forged, chain)?;
    assert!(
        refused_at_handshake(&pki, &http, &forged, &forged_key).await?,
        "an operator certificate from the agent CA is refused by the operator listener"
    );
    let (agent, agent_key) = pki.paths.agent(&site);
    assert!(
        refused_at_handshake(&pki, &http, &agent, &agent_key).await?,
        "an agent certificate is refused by the operator listener"
    );
    let (operator, operator_key) = pki.paths.operator("e2e");
    assert!(
        refused_at_handshake(&pki, &grpc, &operator, &operator_key).await?,
        "an operator certificate is refused by the agent listener"
    );

    assert!(!refused_at_handshake(&pki, &http, &operator, &operator_key).await?);
    assert!(!refused_at_handshake(&pki, &grpc, &agent, &agent_key).await?);
    Ok(())
}
