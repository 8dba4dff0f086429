//! Agent certificates renew themselves over the uplink: central signs a CSR with the agent CA,
//! the agent swaps certificates while lookups go on, and no event is lost or stored twice.

use e2e::http::Operator;
use e2e::{
    AgentSite, Pki, TestDb, central_verify, eventually, https_endpoint, sim_people, site_code,
    start_central_with_env, start_sim,
};
use fleet_tls::identity::CertificateSummary;

const LOOKUPS: usize = 12;

fn agent_certificate(pki: &Pki, site: &str) -> CertificateSummary {
    let der = fleet_tls::config::load_certificates(&pki.paths.agent(site).0)
        .expect("the agent certificate")
        .remove(0);
    CertificateSummary::from_der(&der).expect("a readable certificate")
}

async fn security_events(db: &TestDb, kind: &str) -> Vec<String> {
    let Ok(client) = db.client().await else {
        return Vec::new();
    };
    client
        .query(
            "SELECT detail FROM security_events WHERE kind = $1 ORDER BY id",
            &[&kind],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

async fn lookup_ok(site: &AgentSite, person: &e2e::SimPerson) {
    let output = site.lookup(person).await.expect("the lookup CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_certificate_is_renewed_over_the_stream_without_losing_an_event() -> anyhow::Result<()>
{
    let site = site_code("131000011");
    let pki = Pki::new(&[&site])?;
    // A certificate with two days left of twelve, and an agent that renews a week ahead: due
    // at once, and inside central's window (a third of the lifetime left).
    e2e::issue_due_agent_certificate(&pki, &site)?;
    let before = agent_certificate(&pki, &site);
    let db = TestDb::create().await?;
    let ca_key = pki.paths.agent_ca().1;
    let central = start_central_with_env(
        &pki,
        &db,
        &[
            ("CENTRAL_AGENT_CA_KEY", ca_key.to_str().unwrap()),
            ("CENTRAL_AGENT_CERT_DAYS", "30"),
        ],
    )
    .await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent_site.edit_config("[central]\n", "[central]\nrenew_before_days = 7\n")?;
    let people = sim_people("valid", LOOKUPS).await?;
    let agent = agent_site.start().await?;

    // Lookups go on while the agent renews and reconnects.
    for person in &people {
        lookup_ok(&agent_site, person).await;
    }
    let issued = eventually("the renewal in the audit trail", || async {
        let issued = security_events(&db, "certificate_issued").await;
        (!issued.is_empty()).then_some(issued)
    })
    .await;
    assert_eq!(issued.len(), 1, "one renewal: {issued:?}");
    let after = eventually("the renewed certificate on disk", || async {
        let now = agent_certificate(&pki, &site);
        (now.serial_hex != before.serial_hex).then_some(now)
    })
    .await;
    assert!(issued[0].contains(&after.serial_hex), "{issued:?}");
    let left = after.not_after - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::days(29),
        "the lifetime central gives: {left}"
    );
    assert_eq!(
        fleet_tls::identity::site_of(
            &fleet_tls::config::load_certificates(&pki.paths.agent(&site).0)?[0]
        )?,
        site
    );

    // Every lookup reached central once, in an unbroken chain.
    let stored = e2e::await_events(&db, &site, "lookup", LOOKUPS).await;
    assert_eq!(stored.len(), LOOKUPS, "stored once each");
    eventually("the outbox drained", || async {
        let status = agent_site.status().await.ok()?;
        (status["outbox_depth"] == 0 && status["central_link"] == "connected").then_some(())
    })
    .await;
    let (intact, verdict) = central_verify(&db, &site).await?;
    assert!(intact, "{verdict}");

    // The agent now holds the new certificate alone: with the old one revoked, a restarted
    // agent still connects and delivers.
    let operator = Operator::new(&pki, &central);
    let (status, answer) = operator
        .send(
            "POST",
            "/api/v1/revocations",
            &serde_json::json!({
                "sha256_fingerprint": before.sha256_fingerprint,
                "reason": "superseded by the renewed certificate"
            }),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    agent.kill().await?;
    let _agent = agent_site.start().await?;
    let extra = sim_people("valid", LOOKUPS + 1).await?;
    lookup_ok(&agent_site, &extra[LOOKUPS]).await;
    e2e::await_events(&db, &site, "lookup", LOOKUPS + 1).await;
    assert!(
        security_events(&db, "revoked_certificate_refused")
            .await
            .is_empty(),
        "the renewed agent never presented the revoked certificate"
    );
    assert_eq!(
        security_events(&db, "certificate_issued").await.len(),
        1,
        "a fresh certificate is not renewed again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_central_without_the_ca_key_refuses_renewals_and_the_agent_carries_on()
-> anyhow::Result<()> {
    let site = site_code("271000012");
    let pki = Pki::new(&[&site])?;
    e2e::issue_due_agent_certificate(&pki, &site)?;
    let before = agent_certificate(&pki, &site);
    let db = TestDb::create().await?;
    let central = start_central_with_env(&pki, &db, &[]).await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent_site.edit_config("[central]\n", "[central]\nrenew_before_days = 7\n")?;
    let _agent = agent_site.start().await?;
    let refused = eventually("the refusal in the audit trail", || async {
        let refused = security_events(&db, "certificate_renewal_refused").await;
        (!refused.is_empty()).then_some(refused)
    })
    .await;
    assert!(refused[0].contains("--agent-ca-key"), "{refused:?}");
    let person = sim_people("valid", 1).await?.remove(0);
    lookup_ok(&agent_site, &person).await;
    e2e::await_events(&db, &site, "lookup", 1).await;
    assert_eq!(agent_certificate(&pki, &site), before, "nothing changed");
    Ok(())
}
