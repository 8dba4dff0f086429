//! The certificate inventory end to end: an agent watching a terminal certificate issued with a
//! short validity reports it, central projects it, lists it with its days to expiry and raises
//! the expiry alert for the threshold it has passed.

use e2e::{AgentSite, Pki, TestDb, eventually, https_endpoint, site_code, start_central_with_env};

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lived_terminal_certificate_reaches_central_with_its_days_to_expiry()
-> anyhow::Result<()> {
    let site = site_code("341071236");
    let pki = Pki::new(&[&site])?;
    let (terminal_cert, _) = fleet_tls::devpki::issue_terminal_valid_for(
        pki.paths.root(),
        &site,
        "T01",
        time::Duration::days(20),
    )?;
    let db = TestDb::create().await?;
    let central = start_central_with_env(&pki, &db, &[("CENTRAL_ALERT_CHECK_SECS", "1")]).await?;
    // No national endpoint is needed here: the agent starts without reaching it.
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        "https://127.0.0.1:9",
    )?;
    // Watched as a chain file of its own: the leaf and the common CA it was issued by.
    let chain = agent_site.dir().join("onshi-terminal-chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(&terminal_cert)? + &std::fs::read_to_string(pki.paths.common_ca())?,
    )?;
    agent_site.append_config(&format!(
        "[certificates]\ncheck_interval_secs = 1\n[[certificates.watch]]\npath = \"{}\"\nrole = \"terminal\"\n",
        chain.display()
    ))?;
    let _agent = agent_site.start().await?;

    let (operator_cert, operator_key) = pki.paths.operator("e2e");
    let get = |path: String| {
        let ca = pki.paths.chain_ca();
        let (cert, key) = (operator_cert.clone(), operator_key.clone());
        let addr = central.field("http");
        async move { e2e::http::get_json(&ca, &cert, &key, &addr, &path).await }
    };
    let path = format!("/api/v1/certificates?expiring_within_days=30&site={site}");
    let listed = eventually(
        "central to list the short-lived terminal certificate",
        || {
            let get = &get;
            let path = path.clone();
            async move {
                let (status, body) = get(path).await.ok()?;
                (status == 200 && body.as_array().is_some_and(|a| !a.is_empty())).then_some(body)
            }
        },
    )
    .await;
    let listed = listed.as_array().unwrap();
    assert_eq!(
        listed.len(),
        1,
        "only the terminal certificate expires within 30 days: {listed:?}"
    );
    let terminal = &listed[0];
    assert_eq!(terminal["role"], "terminal");
    assert_eq!(terminal["site_code"], site.as_str());
    assert_eq!(terminal["terminal_id"], "T01");
    assert!(terminal["subject"].as_str().unwrap().contains("terminal"));
    let days = terminal["days_to_expiry"].as_i64().unwrap();
    assert!((19..=20).contains(&days), "days to expiry: {days}");
    assert!(
        terminal["renewal_lead_business_days"].is_i64(),
        "{terminal}"
    );
    assert_eq!(terminal["missing"], false);

    // The whole inventory: the agent's own certificate and the CAs too, sorted by expiry.
    let (status, all) = get(format!("/api/v1/certificates?site={site}")).await?;
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    let roles: Vec<_> = all.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert!(
        roles.contains(&"agent") && roles.contains(&"ca"),
        "{roles:?}"
    );
    assert_eq!(all[0]["sha256_fingerprint"], terminal["sha256_fingerprint"]);

    // The 30-day threshold was raised for it, once.
    let alerts = eventually("the 30-day expiry alert", || {
        let get = &get;
        async move {
            let (_, body) = get("/api/v1/certificates/alerts".into()).await.ok()?;
            body.as_array().filter(|a| !a.is_empty()).cloned()
        }
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["threshold_days"], 30);
    assert!(
        alerts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("renewal lead time left"),
        "{}",
        alerts[0]["detail"]
    );

    // The agent's live inventory (InventorySnapshot) lists the same certificates and its
    // terminal; it follows the scan that recorded them.
    let inventory = eventually("the agent's inventory with its certificates", || {
        let (get, site) = (&get, &site);
        async move {
            let (_, body) = get(format!("/api/v1/sites/{site}/inventory")).await.ok()?;
            let latest = body.as_array()?.first()?.clone();
            (latest["inventory"]["certificates"].as_array()?.len() == all.len()).then_some(latest)
        }
    })
    .await;
    assert_eq!(
        inventory["inventory"]["terminal_ids"],
        serde_json::json!(["T01"]),
        "{inventory}"
    );
    assert!(
        inventory["inventory"]["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["sha256_fingerprint"] == terminal["sha256_fingerprint"]),
        "{inventory}"
    );
    Ok(())
}
