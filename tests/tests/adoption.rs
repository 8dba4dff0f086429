//! A site's adoption checklist through the real stack: chain IT sets the planned start and marks
//! steps done through the API; the steps the agent can prove (national link up, the first
//! production lookup) advance by themselves with their evidence.

use e2e::{
    AgentSite, Pki, TestDb, eventually, https_endpoint, sim_people, site_code, start_central,
    start_sim,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_checklist_has_business_day_deadlines_and_agent_proven_steps() -> anyhow::Result<()> {
    let site = site_code("131000007");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim(&pki).await?;
    let (cert, key) = pki.paths.operator("e2e");
    let (ca, addr) = (pki.paths.chain_ca(), central.field("http"));
    let call = |method: &'static str, path: String, body: serde_json::Value| {
        let (ca, cert, key, addr) = (ca.clone(), cert.clone(), key.clone(), addr.clone());
        async move {
            if method == "GET" {
                e2e::http::get_json(&ca, &cert, &key, &addr, &path).await
            } else {
                e2e::http::send_json(&ca, &cert, &key, &addr, method, &path, &body).await
            }
        }
    };
    let adoption = format!("/api/v1/sites/{site}/adoption");
    let (status, none) = call("GET", adoption.clone(), serde_json::Value::Null).await?;
    assert_eq!(
        (status, none),
        (200, serde_json::Value::Null),
        "no plan yet"
    );

    // A start half a year ahead: on track, every deadline a business day before it.
    let start = time::OffsetDateTime::now_utc().date() + time::Duration::days(180);
    let (status, view) = call(
        "PUT",
        adoption.clone(),
        serde_json::json!({ "planned_start": start.to_string() }),
    )
    .await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "on_track", "{view}");
    let steps = view["steps"].as_array().unwrap();
    assert!(steps.len() >= 10, "{view}");
    for step in steps {
        let deadline = time::Date::parse(
            step["deadline"].as_str().unwrap(),
            time::macros::format_description!("[year]-[month]-[day]"),
        )?;
        assert!(
            onshi_domain::calendar::is_business_day(deadline)?,
            "{} falls on a business day",
            step["deadline"]
        );
    }
    // A step done by chain IT, with its evidence; a bad one is refused with the reason.
    let (status, view) = call(
        "PUT",
        format!("{adoption}/steps/usage_application"),
        serde_json::json!({ "done_on": "2026-12-01", "evidence": "portal application 0042" }),
    )
    .await?;
    assert_eq!(status, 200, "{view}");
    let usage = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "usage_application")
        .unwrap()
        .clone();
    assert_eq!(usage["evidence"], "portal application 0042");
    assert_eq!(usage["by_agent"], false);
    let (status, error) = call(
        "PUT",
        format!("{adoption}/steps/dance_party"),
        serde_json::json!({ "done_on": "2026-12-01", "evidence": "x" }),
    )
    .await?;
    assert_eq!(status, 400, "{error}");

    // The agent's link probe and its first valid lookup prove two steps by themselves.
    let agent = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent.append_config("[link]\nline_type = \"ip_vpn\"\nprobe_interval_ms = 200\n")?;
    let _agent = agent.start().await?;
    let person = sim_people("valid", 1).await?.remove(0);
    assert!(agent.lookup(&person).await?.status.success());
    let view = eventually("the agent-proven steps", || {
        let call = &call;
        let adoption = adoption.clone();
        async move {
            let (_, view) = call("GET", adoption, serde_json::Value::Null).await.ok()?;
            (view["status"] == "live").then_some(view)
        }
    })
    .await;
    let by_agent: Vec<&str> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["by_agent"] == true)
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(by_agent.contains(&"start_date_entry"), "{view}");
    assert!(by_agent.contains(&"network_line"), "{view}");

    // The per-prefecture table: one Tokyo site, connected and operating.
    let (status, table) = call(
        "GET",
        "/api/v1/adoption/prefectures".into(),
        serde_json::Value::Null,
    )
    .await?;
    assert_eq!(status, 200, "{table}");
    let tokyo = table
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefecture"] == "13")
        .cloned()
        .unwrap_or_default();
    assert_eq!(tokyo["institutions"], 1, "{table}");
    assert_eq!(
        (
            &tokyo["production_connected"],
            &tokyo["operating"],
            &tokyo["operating_rate"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(100)
        ),
        "{table}"
    );

    // The subsidy calculator, against the domain doc's figures.
    let subsidy = |q: &str| {
        call(
            "GET",
            format!("/api/v1/adoption/subsidy?{q}"),
            serde_json::Value::Null,
        )
    };
    let (status, hospital) =
        subsidy("facility=hospital&readers=1&cost=3000000&reader_applied_on=2022-05-01").await?;
    assert_eq!(status, 200, "{hospital}");
    assert_eq!(
        (
            hospital["cost_cap"].as_u64(),
            hospital["amount"].as_u64(),
            hospital["free_readers"].as_u64()
        ),
        (Some(2_101_000), Some(1_050_000), Some(3))
    );
    let (_, clinic) =
        subsidy("facility=clinic_or_pharmacy&cost=500000&reader_applied_on=2022-05-01").await?;
    assert_eq!(
        clinic["amount"].as_u64(),
        Some(321_000),
        "3/4 of the 429,000 cap, to the thousand"
    );
    let (_, early) =
        subsidy("facility=clinic_or_pharmacy&cost=400000&reader_applied_on=2021-03-01").await?;
    assert_eq!(
        early["amount"].as_u64(),
        Some(400_000),
        "the accelerated plan pays the cost"
    );
    let (status, error) = subsidy("facility=hospital&cost=1&reader_applied_on=2022-05-01").await?;
    assert_eq!(status, 400, "{error}");
    Ok(())
}
