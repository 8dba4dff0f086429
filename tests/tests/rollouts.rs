//! A version rollout through the real stack: central tells the canary's agent its target over
//! the stream, the agent hands it to the site's updater (`update-target.json`), the canary never
//! comes back on that version, the failed-apply gate pauses the rollout before the next wave,
//! and a rollback sends the canary its previous version.

use e2e::http::Operator;
use e2e::{
    AgentSite, Pki, TestDb, eventually, https_endpoint, site_code, start_central_with_env,
    start_sim,
};

fn update_target(site: &AgentSite) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(site.dir().join("data/update-target.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_that_does_not_apply_pauses_the_rollout_and_a_rollback_reaches_it()
-> anyhow::Result<()> {
    let codes = [site_code("131000041"), site_code("271000042")];
    let pki = Pki::new(&[&codes[0], &codes[1]])?;
    let db = TestDb::create().await?;
    let central = start_central_with_env(&pki, &db, &[("CENTRAL_ALERT_CHECK_SECS", "1")]).await?;
    let sim = start_sim(&pki).await?;
    let operator = Operator::new(&pki, &central);
    let mut sites = Vec::new();
    let mut agents = Vec::new();
    for code in &codes {
        let site = AgentSite::new(
            &pki,
            code,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
        )?;
        site.edit_config("[central]\n", "[central]\nheartbeat_secs = 1\n")?;
        agents.push(site.start().await?);
        sites.push(site);
    }
    eventually("both agents known to central", || async {
        let (_, agents) = operator.get("/api/v1/agents").await.ok()?;
        (agents.as_array()?.len() == 2).then_some(())
    })
    .await;

    let (status, rollout) = operator
        .send(
            "POST",
            "/api/v1/rollouts",
            &serde_json::json!({
                "target_version": "9.9.9", "window": "any", "soak_secs": 0,
                "apply_timeout_secs": 2, "waves": [{"share": 50}, {"share": 100}]
            }),
        )
        .await?;
    assert_eq!(status, 201, "{rollout}");
    let id = rollout["id"].as_i64().unwrap();

    let paused = eventually("the rollout paused by its gate", || async {
        let (_, view) = operator.get(&format!("/api/v1/rollouts/{id}")).await.ok()?;
        (view["state"] == "paused").then_some(view)
    })
    .await;
    let reason = paused["transitions"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("did not apply the target in time"),
        "{reason}"
    );
    let site_states: Vec<(String, i64, String)> = paused["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["site_code"].as_str().unwrap().to_string(),
                s["wave"].as_i64().unwrap(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let canary = site_states.iter().position(|s| s.1 == 1).unwrap();
    assert_eq!(site_states[canary].2, "failed", "{site_states:?}");
    assert_eq!(site_states[1 - canary].2, "pending", "{site_states:?}");
    let canary_site = sites
        .iter()
        .find(|s| s.site == site_states[canary].0)
        .unwrap();
    let other_site = sites
        .iter()
        .find(|s| s.site == site_states[1 - canary].0)
        .unwrap();

    // The canary's agent was told its target and handed it to the updater; the next wave never.
    let target = update_target(canary_site).expect("the canary's update-target.json");
    assert_eq!(target["version"], "9.9.9", "{target}");
    assert_eq!(target["rollout_id"], id, "{target}");
    let running = target["running_version"].as_str().unwrap().to_string();
    assert!(
        update_target(other_site).is_none(),
        "wave 2 was never targeted"
    );

    // Rolled back: the canary is told to return to what it ran, within a heartbeat.
    let (status, view) = operator
        .send(
            "POST",
            &format!("/api/v1/rollouts/{id}/rollback"),
            &serde_json::Value::Null,
        )
        .await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "rolled_back", "{view}");
    eventually(
        "the previous version handed to the canary's updater",
        || async {
            let target = update_target(canary_site)?;
            (target["version"] == running.as_str()).then_some(())
        },
    )
    .await;
    let (status, error) = operator
        .send(
            "POST",
            &format!("/api/v1/rollouts/{id}/resume"),
            &serde_json::Value::Null,
        )
        .await?;
    assert_eq!(
        status, 400,
        "a rolled back rollout does not resume: {error}"
    );
    Ok(())
}
