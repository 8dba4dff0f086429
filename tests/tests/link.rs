//! The closed-network link: probes of the national system and central recorded as link
//! changes (on change only), and lookups that fail fast, with the fall-back message, when the
//! national system cannot be reached — against real processes and onshi-sim's outage knob.

use std::time::{Duration, Instant};

use e2e::{
    AgentSite, Pki, TestDb, eventually, https_endpoint, signal, sim_people, site_code,
    start_central, start_sim, start_sim_with, stored_lookups,
};

async fn link_changes(db: &TestDb) -> anyhow::Result<Vec<serde_json::Value>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT body::text FROM events WHERE kind = 'link_change' ORDER BY sequence",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(serde_json::from_str(&r.get::<_, String>(0))?))
        .collect()
}

fn states(changes: &[serde_json::Value], target: &str) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c["target"] == target)
        .map(|c| c["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn link_states_are_recorded_per_target_on_change_only() -> anyhow::Result<()> {
    let site = site_code("341071236");
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
    agent_site.append_config(
        "[link]\nline_type = \"ipsec_ike\"\nprobe_interval_ms = 200\nprobe_timeout_ms = 400\n\
         degraded_rtt_ms = 3000\ndown_after = 2",
    )?;
    let _agent = agent_site.start().await?;

    eventually("both links reported up", || async {
        let changes = link_changes(&db).await.ok()?;
        (states(&changes, "onshi").first().map(String::as_str) == Some("up")
            && states(&changes, "central").first().map(String::as_str) == Some("up"))
        .then_some(())
    })
    .await;

    // The national system goes dark: degraded after one failed probe, down after two.
    signal(&sim, "USR1").await?;
    eventually("the national link reported down", || async {
        let changes = link_changes(&db).await.ok()?;
        states(&changes, "onshi")
            .contains(&"down".to_string())
            .then_some(())
    })
    .await;
    // And back.
    signal(&sim, "USR2").await?;
    let changes = eventually("the national link reported up again", || async {
        let changes = link_changes(&db).await.ok()?;
        (states(&changes, "onshi").last().map(String::as_str) == Some("up")
            && states(&changes, "onshi").len() > 1)
            .then_some(changes)
    })
    .await;

    let onshi = states(&changes, "onshi");
    assert_eq!(onshi, ["up", "degraded", "down", "up"], "{changes:?}");
    // Central was never affected, and is reported once.
    assert_eq!(states(&changes, "central"), ["up"], "{changes:?}");
    for change in &changes {
        let expected = if change["target"] == "onshi" {
            serde_json::json!("ipsec_ike")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(change["line_type"], expected, "{change}");
    }
    let down = changes
        .iter()
        .find(|c| c["state"] == "down")
        .expect("a down change");
    assert!(
        down["detail"]
            .as_str()
            .is_some_and(|d| d.contains("failed probe")),
        "{down}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_when_the_national_system_is_unreachable_fails_within_the_timeout_and_is_recorded()
-> anyhow::Result<()> {
    let site = site_code("341071236");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    // A black hole: connections are accepted, nothing is ever answered.
    let sim = start_sim_with(&pki, &["--outage"]).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent_site.edit_config("timeout_ms = 5000", "timeout_ms = 1000")?;
    let agent = agent_site.start().await?;
    let person = sim_people("valid", 1).await?.remove(0);

    let started = Instant::now();
    let output = agent_site.lookup(&person).await?;
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "unreachable", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("保険証で確認してください")),
        "the clerk is told to check the physical card: {reply}"
    );
    // Bounded by the configured timeout (1 s), plus the CLI's own start-up.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(6),
        "took {took:?}"
    );

    // A closed port (the line is down at the router): refused at once, same answer.
    agent.kill().await?;
    agent_site.edit_config(&https_endpoint(&sim, "https"), "https://127.0.0.1:9")?;
    let _agent = agent_site.start().await?;
    let output = agent_site.lookup(&person).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "unreachable", "{reply}");

    // Both failures are in the audit trail.
    let stored = eventually("two unreachable lookups in central", || async {
        let stored = stored_lookups(&db).await.ok()?;
        (stored.len() == 2).then_some(stored)
    })
    .await;
    for event in &stored {
        assert_eq!(event["outcome"], "unreachable", "{event}");
        assert_eq!(event["source"], "counter", "{event}");
    }
    Ok(())
}
