//! Is the site really offline? Central tells apart a national system the site cannot reach, a
//! closed-network link gone silent, an agent that stopped, and a site that is simply closed,
//! and alerts only while the site is open. Real central, agent, onshi-sim and a TCP proxy that
//! stands in for the closed network.

use e2e::http::Operator;
use e2e::proxy::Proxy;
use e2e::{
    AgentSite, Pki, TestDb, eventually, https_endpoint, site_code, start_central_with_env,
    start_sim,
};

const ALWAYS_OPEN: &str = r#"{"weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"],
  "wed": ["00:00-24:00"], "thu": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["00:00-24:00"],
  "sun": ["00:00-24:00"]}, "closed_on_national_holidays": false}"#;

async fn availability(operator: &Operator, site: &str) -> Option<serde_json::Value> {
    let (status, body) = operator
        .get(&format!("/api/v1/sites/{site}/availability"))
        .await
        .ok()?;
    (status == 200).then_some(body)
}

async fn await_state(operator: &Operator, site: &str, state: &str) -> serde_json::Value {
    eventually(&format!("site {site} {state}"), || async {
        availability(operator, site)
            .await
            .filter(|a| a["state"] == state)
    })
    .await
}

async fn unavailable_alerts(operator: &Operator, site: &str) -> Vec<serde_json::Value> {
    let Ok((200, alerts)) = operator.get("/api/v1/alerts?all=true").await else {
        return Vec::new();
    };
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == "site_unavailable" && a["site_code"] == site)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn central_tells_why_a_site_is_offline_and_alerts_only_while_it_is_open() -> anyhow::Result<()>
{
    let site = site_code("131000013");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central_with_env(
        &pki,
        &db,
        &[
            ("CENTRAL_SILENCE_SECS", "2"),
            ("CENTRAL_ALERT_CHECK_SECS", "1"),
            ("CENTRAL_UNAVAILABLE_ALERT_SECS", "0"),
        ],
    )
    .await?;
    let operator = Operator::new(&pki, &central);
    let (status, answer) = operator
        .send(
            "PUT",
            "/api/v1/opening-hours",
            &serde_json::from_str(ALWAYS_OPEN)?,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    // A mistake is named and changes nothing.
    let (status, answer) = operator
        .send(
            "PUT",
            &format!("/api/v1/sites/{site}/opening-hours"),
            &serde_json::json!({"weekly": {"mon": ["18:00-09:00"]}}),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("midnight"),
        "{answer}"
    );
    let (_, hours) = operator
        .get(&format!("/api/v1/sites/{site}/opening-hours"))
        .await?;
    assert_eq!(hours["source"], "chain", "{hours}");

    let sim = start_sim(&pki).await?;
    let grpc: std::net::SocketAddr = central.field("grpc").parse()?;
    let network = Proxy::start(grpc).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &format!("https://{}", network.addr()),
        &https_endpoint(&sim, "https"),
    )?;
    agent_site.edit_config(
        "[central]\n",
        "[central]\nheartbeat_secs = 1\nkeepalive_secs = 1\n",
    )?;
    agent_site.append_config(
        "[link]\nline_type = \"ipsec_ike\"\nprobe_interval_ms = 200\nprobe_timeout_ms = 400\n\
         degraded_rtt_ms = 3000\ndown_after = 2",
    )?;
    let agent = agent_site.start().await?;
    let online = await_state(&operator, &site, "online").await;
    assert_eq!(online["alerting"], false, "{online}");
    assert!(unavailable_alerts(&operator, &site).await.is_empty());

    // The national system goes away: the agent's probe says so, the site is still connected.
    sim.kill().await?;
    let national = await_state(&operator, &site, "national_unreachable").await;
    assert_eq!(national["alerting"], true, "{national}");

    // The closed network goes silent (no FIN, no RST): central hears nothing and says link down.
    network.silence();
    let link = await_state(&operator, &site, "link_down").await;
    assert!(
        link["detail"].as_str().unwrap_or("").contains("閉域網"),
        "{link}"
    );
    let alert = eventually("a site_unavailable alert", || async {
        unavailable_alerts(&operator, &site)
            .await
            .into_iter()
            .find(|a| a["resolved_at"].is_null())
    })
    .await;
    assert!(
        alert["detail"].as_str().unwrap_or("").contains(&site),
        "{alert}"
    );

    // The agent notices too (its pings go unanswered) instead of waiting on a dead connection.
    eventually("the agent sees its link to central down", || async {
        let status = agent_site.status().await.ok()?;
        (status["central_link"] != "connected").then_some(())
    })
    .await;

    // The link comes back and the agent reconnects; then the agent stops: agent down.
    network.restore(grpc);
    await_state(&operator, &site, "national_unreachable").await;
    agent.kill().await?;
    let down = await_state(&operator, &site, "agent_down").await;
    assert_eq!(down["alerting"], true, "{down}");

    // Outside its opening hours the same site is closed, and the alert resolves.
    let (status, answer) = operator
        .send(
            "PUT",
            &format!("/api/v1/sites/{site}/opening-hours"),
            &serde_json::json!({"weekly": {}}),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"], "site", "{answer}");
    let closed = await_state(&operator, &site, "closed").await;
    assert_eq!(closed["underlying"], "agent_down", "{closed}");
    assert_eq!(closed["alerting"], false, "{closed}");
    let alerts = eventually("the alert resolved", || async {
        let alerts = unavailable_alerts(&operator, &site).await;
        alerts
            .iter()
            .all(|a| !a["resolved_at"].is_null())
            .then_some(alerts)
    })
    .await;
    assert_eq!(alerts.len(), 1, "one condition, one alert: {alerts:?}");
    Ok(())
}
