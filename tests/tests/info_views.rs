//! Information views without a card (disaster mode, 災害時医療情報閲覧) through the real stack:
//! agents + onshi-sim + central + PostgreSQL. Each view or refusal must reach central as an
//! `InfoView` event with the decision's facts (allowed, reason, staff role, policy version,
//! disaster window).

use e2e::{
    AgentSite, Pki, TestDb, ViewPatient, await_events, https_endpoint, rfc3339_in_hours,
    sim_people, site_code, start_central, start_sim_with,
};

/// `value` percent-encoded for a URL query (card symbols may hold kanji).
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The roster and disaster windows appended to an agent's configuration.
fn roster(staff: &[(&str, &str)], windows: &[(&str, &str, i64, i64)]) -> String {
    let mut text = String::new();
    for (id, role) in staff {
        text.push_str(&format!("[[staff]]\nid = \"{id}\"\nrole = \"{role}\"\n"));
    }
    for (id, prefectures, from_h, until_h) in windows {
        let list = prefectures
            .split(',')
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "[[disaster_windows]]\nid = \"{id}\"\nprefectures = [{list}]\nstarts_at = \"{}\"\nends_at = \"{}\"\n",
            rfc3339_in_hours(*from_h),
            rfc3339_in_hours(*until_h)
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn disaster_windows_decide_views_by_place_time_and_role() -> anyhow::Result<()> {
    let tokyo_open = site_code("131000001");
    let tokyo_past = site_code("131000002");
    let osaka = site_code("271000003");
    let osaka_unknown_to_sim = site_code("271000004");
    let pki = Pki::new(&[&tokyo_open, &tokyo_past, &osaka, &osaka_unknown_to_sim])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    // The national side opened a window for Tokyo (13) only.
    let window = format!("13@{}/{}", rfc3339_in_hours(-24), rfc3339_in_hours(120));
    let sim = start_sim_with(&pki, &["--disaster-window", &window]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let open_window = ("w-tokyo", "13", -24, 120);

    let agent = |site: &str, extra: String| {
        let s = AgentSite::new(
            &pki,
            site,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
        );
        s.and_then(|s| s.append_config(&extra).map(|()| s))
    };
    let a = agent(
        &tokyo_open,
        roster(&[("D1", "doctor"), ("C1", "clerk")], &[open_window]),
    )?;
    let b = agent(
        &tokyo_past,
        roster(&[("D1", "doctor")], &[("w-past", "13", -240, -72)]),
    )?;
    let c = agent(&osaka, roster(&[("D1", "doctor")], &[open_window]))?;
    let d = agent(
        &osaka_unknown_to_sim,
        roster(&[("D1", "doctor")], &[("w-osaka", "27", -24, 120)]),
    )?;
    let _agents = (
        a.start().await?,
        b.start().await?,
        c.start().await?,
        d.start().await?,
    );
    let card = ViewPatient::Card(&person);

    // Inside the window, a doctor sees drugs and checkups.
    let (code, drug, stderr) = a.view("drug", "D1", card).await?;
    assert_eq!(code, Some(0), "{drug} {stderr}");
    assert_eq!(drug["allowed"], true);
    assert_eq!(drug["basis"], "disaster_window");
    assert_eq!(drug["disaster_window_id"], "w-tokyo");
    assert!(
        !drug["drugs"].as_array().unwrap().is_empty(),
        "the simulator has a drug history for this person: {drug}"
    );
    // The real shapes, end to end: the prescribing clinic's month, in the site's prefecture
    // (Tokyo), the drug's code, quantity and directions, and the pharmacy's dispensing.
    let first = &drug["drugs"][0];
    assert_eq!(first["source"], "medical", "{drug}");
    for key in [
        "drug_name",
        "drug_code",
        "ingredient",
        "quantity",
        "usage",
        "institution",
        "date",
    ] {
        assert!(
            first[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {first}"
        );
    }
    assert!(
        first["institution_code"]
            .as_str()
            .is_some_and(|c| c.starts_with("131") && c.len() == 10),
        "{first}"
    );
    assert!(
        first["month"]
            .as_str()
            .is_some_and(|m| first["date"].as_str().unwrap().starts_with(m)),
        "{first}"
    );
    assert!(
        drug["drugs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["source"] == "dispensing"),
        "{drug}"
    );
    let (code, checkup, stderr) = a.view("checkup", "D1", card).await?;
    assert_eq!(code, Some(0), "{checkup} {stderr}");
    assert_eq!(checkup["allowed"], true);
    if let Some(item) = checkup["checkups"].as_array().and_then(|c| c.first()) {
        assert_eq!(item["item_code"], "9N001000000000001", "{checkup}");
        assert_eq!(item["item_name"], "身長");
        assert_eq!(item["unit"], "cm");
        assert_eq!(item["data_type"], "PQ");
        assert!(item["oid"].as_str().is_some_and(|o| !o.is_empty()));
    }
    // A clerk never does, window or not.
    let (code, clerk, _) = a.view("drug", "C1", card).await?;
    assert_eq!(code, Some(3), "{clerk}");
    assert_eq!(clerk["allowed"], false);
    assert_eq!(clerk["refusal_reason"], "role_not_permitted");
    assert!(clerk["drugs"].as_array().unwrap().is_empty());
    let message = clerk["message"].as_str().unwrap();
    assert!(
        message.starts_with("この職種では"),
        "Japanese first: {message}"
    );
    assert!(message.contains("may not view"), "then English: {message}");
    // Someone not on the roster is refused too.
    let (code, stranger, _) = a.view("drug", "X9", card).await?;
    assert_eq!(code, Some(3));
    assert_eq!(stranger["refusal_reason"], "unknown_staff");

    // After the window ended: refused.
    let (code, late, _) = b.view("drug", "D1", card).await?;
    assert_eq!(code, Some(3), "{late}");
    assert_eq!(late["refusal_reason"], "not_consented");
    // Another prefecture than the window's: refused.
    let (code, elsewhere, _) = c.view("drug", "D1", card).await?;
    assert_eq!(code, Some(3), "{elsewhere}");
    assert_eq!(elsewhere["refusal_reason"], "not_consented");
    // The agent believes in a window the national side does not have: the national system
    // refuses, and that refusal is what is recorded.
    let (code, national, _) = d.view("drug", "D1", card).await?;
    assert_eq!(code, Some(3), "{national}");
    assert_eq!(national["refusal_reason"], "national_error:SIM-E0401");

    // Central holds every decision.
    let events = await_events(&db, &tokyo_open, "info_view", 4).await;
    let facts: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["category"].as_str().unwrap_or(""),
                e["allowed"].as_bool().unwrap_or(false),
                e["refusal_reason"].as_str().unwrap_or(""),
                e["staff_role"].as_str().unwrap_or(""),
                e["disaster_window_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            ("drug", true, "", "doctor", "w-tokyo"),
            ("checkup", true, "", "doctor", "w-tokyo"),
            ("drug", false, "role_not_permitted", "clerk", ""),
            ("drug", false, "unknown_staff", "", ""),
        ]
    );
    for e in &events {
        assert_eq!(e["policy_version"], "jp-2020-11", "{e}");
        assert!(e["patient_ref"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert_eq!(events[0]["staff_id"], "D1");
    for (site, reason) in [
        (&tokyo_past, "not_consented"),
        (&osaka, "not_consented"),
        (&osaka_unknown_to_sim, "national_error:SIM-E0401"),
    ] {
        let events = await_events(&db, site, "info_view", 1).await;
        assert_eq!(events[0]["allowed"], false, "{site}");
        assert_eq!(events[0]["refusal_reason"], reason, "{site}");
        assert_eq!(events[0]["policy_version"], "jp-2020-11");
    }
    // No insured number in clear at central.
    let all = serde_json::to_string(&events)?;
    assert!(!all.contains(&person.number), "no insured number in clear");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pharmacies_see_checkups_only_under_the_current_policy() -> anyhow::Result<()> {
    let strict = site_code("134000005");
    let current = site_code("134000006");
    let pki = Pki::new(&[&strict, &current])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let window = format!("13@{}/{}", rfc3339_in_hours(-1), rfc3339_in_hours(48));
    let sim = start_sim_with(&pki, &["--disaster-window", &window]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let card = ViewPatient::Card(&person);
    let extra = roster(&[("P1", "pharmacist")], &[("w-13", "13", -1, 48)]);
    let mut running = Vec::new();
    let mut sites = Vec::new();
    for (site, policy) in [(&strict, Some("jp-2020-09")), (&current, None)] {
        let s = AgentSite::new(
            &pki,
            site,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
        )?;
        if let Some(policy) = policy {
            s.edit_config(
                "terminal_id = \"T01\"",
                &format!("terminal_id = \"T01\"\naccess_policy = \"{policy}\""),
            )?;
        }
        s.append_config(&extra)?;
        running.push(s.start().await?);
        sites.push(s);
    }

    // Under the 2020 rule a pharmacist sees drugs but not checkups.
    let (code, drug, stderr) = sites[0].view("drug", "P1", card).await?;
    assert_eq!(code, Some(0), "{drug} {stderr}");
    assert_eq!(drug["policy_version"], "jp-2020-09");
    let (code, checkup, _) = sites[0].view("checkup", "P1", card).await?;
    assert_eq!(code, Some(3), "{checkup}");
    assert_eq!(checkup["refusal_reason"], "role_not_permitted");
    assert!(
        checkup["message"].as_str().unwrap().contains("jp-2020-09"),
        "{checkup}"
    );
    // Under the current rule, checkups too.
    let (code, checkup, stderr) = sites[1].view("checkup", "P1", card).await?;
    assert_eq!(code, Some(0), "{checkup} {stderr}");
    assert_eq!(checkup["allowed"], true);
    assert_eq!(checkup["policy_version"], "jp-2020-11");

    let strict_events = await_events(&db, &strict, "info_view", 2).await;
    assert_eq!(strict_events[0]["allowed"], true);
    assert_eq!(strict_events[1]["category"], "checkup");
    assert_eq!(strict_events[1]["allowed"], false);
    assert_eq!(strict_events[1]["refusal_reason"], "role_not_permitted");
    assert_eq!(strict_events[1]["staff_role"], "pharmacist");
    for e in &strict_events {
        assert_eq!(e["policy_version"], "jp-2020-09");
    }
    let current_events = await_events(&db, &current, "info_view", 1).await;
    assert_eq!(current_events[0]["category"], "checkup");
    assert_eq!(current_events[0]["allowed"], true);
    assert_eq!(current_events[0]["policy_version"], "jp-2020-11");
    assert_eq!(current_events[0]["disaster_window_id"], "w-13");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_finds_views_by_patient_staff_and_window_and_files_the_report()
-> anyhow::Result<()> {
    let site = site_code("131000005");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    // With the chain's patient hash key, central can hash card details at query time.
    let key_file = pki.paths.patient_hash_key().display().to_string();
    // Re-checks views at once (and alerts every second) so the test sees the re-check.
    let central = e2e::start_central_with_env(
        &pki,
        &db,
        &[
            ("CENTRAL_PATIENT_KEY", key_file.as_str()),
            ("CENTRAL_RECHECK_SETTLE_SECS", "0"),
            ("CENTRAL_ALERT_CHECK_SECS", "1"),
        ],
    )
    .await?;
    let window = format!("13@{}/{}", rfc3339_in_hours(-24), rfc3339_in_hours(120));
    let sim = start_sim_with(&pki, &["--disaster-window", &window]).await?;
    let people = sim_people("valid", 2).await?;
    let agent = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent.append_config(&roster(
        &[("D1", "doctor"), ("C1", "clerk")],
        &[("w-tokyo", "13", -24, 120)],
    ))?;
    let _agent = agent.start().await?;
    let (first, second) = (&people[0], &people[1]);
    assert_eq!(
        agent.view("drug", "D1", ViewPatient::Card(first)).await?.0,
        Some(0)
    );
    assert_eq!(
        agent
            .view("checkup", "D1", ViewPatient::Card(second))
            .await?
            .0,
        Some(0)
    );
    assert_eq!(
        agent.view("drug", "C1", ViewPatient::Card(first)).await?.0,
        Some(3)
    );
    await_events(&db, &site, "info_view", 3).await;

    let (cert, key) = pki.paths.operator("e2e");
    let ca = pki.paths.chain_ca();
    let addr = central.field("http");
    let get = |path: String| {
        let (ca, cert, key, addr) = (ca.clone(), cert.clone(), key.clone(), addr.clone());
        async move { e2e::http::get(&ca, &cert, &key, &addr, &path).await }
    };
    let json = |path: String| {
        let get = &get;
        async move {
            let (status, _, body) = get(path).await?;
            anyhow::Ok((status, serde_json::from_slice::<serde_json::Value>(&body)?))
        }
    };

    // By the patient's insurance card details (hashed by central): the two views of the first.
    let card = format!(
        "insurer={}&number={}&symbol={}&branch={}",
        query_value(&first.insurer_number),
        query_value(&first.number),
        query_value(&first.symbol),
        query_value(&first.branch)
    );
    let (status, found) = json(format!("/api/v1/audit/events?site={site}&{card}")).await?;
    assert_eq!(status, 200, "{found}");
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|e| e["kind"] == "info_view"));
    // By staff, by refusal, by window.
    let (_, by_staff) = json(format!("/api/v1/audit/events?site={site}&staff=D1")).await?;
    assert_eq!(by_staff.as_array().unwrap().len(), 2);
    let (_, refused) = json(format!("/api/v1/audit/events?site={site}&result=refused")).await?;
    assert_eq!(refused.as_array().unwrap().len(), 1);
    assert_eq!(refused[0]["body"]["staff_role"], "clerk");
    let (_, in_window) = json(format!(
        "/api/v1/audit/events?site={site}&disaster_window=true"
    ))
    .await?;
    assert_eq!(in_window.as_array().unwrap().len(), 2);
    // A bad request says what is wrong, with a code.
    let (status, error) = json(format!("/api/v1/audit/events?site={site}&consent=teeth")).await?;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("consent"),
        "{error}"
    );
    let (status, error) = json(format!(
        "/api/v1/audit/events?insurer={}",
        query_value(&first.insurer_number)
    ))
    .await?;
    assert_eq!(status, 400, "insurer without number: {error}");

    // CSV for spreadsheets, and the printable monthly summary with the verification verdict.
    let (status, content_type, csv) =
        get(format!("/api/v1/audit/events?site={site}&format=csv")).await?;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let csv = String::from_utf8(csv)?;
    assert_eq!(
        csv.lines().count(),
        1 + 3,
        "a header and three views:\n{csv}"
    );
    let month = time::OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+9))
        .format(time::macros::format_description!("[year]-[month]"))?;
    let (status, content_type, html) =
        get(format!("/api/v1/audit/report?site={site}&month={month}")).await?;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = String::from_utf8(html)?;
    assert!(
        html.contains("監査月報") && html.contains("改ざんなし / INTACT"),
        "{html}"
    );
    assert!(
        html.contains("role_not_permitted") && html.contains("w-tokyo"),
        "{html}"
    );
    // Nothing in clear: no insured number, name or birth date in the exports.
    for person in [first, second] {
        for secret in [&person.number, &person.name, &person.birthdate] {
            assert!(
                !csv.contains(secret.as_str()) && !html.contains(secret.as_str()),
                "{secret}"
            );
        }
    }
    // Each export is in the audit trail, with the operator who made it: the four JSON searches
    // (each hands out who looked up whom, like an export), the CSV and the report.
    let client = db.client().await?;
    let exports: Vec<String> = client
        .query(
            "SELECT detail FROM security_events WHERE kind = 'audit_export' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(exports.len(), 6, "{exports:?}");
    assert_eq!(
        exports
            .iter()
            .filter(|e| e.starts_with("audit search JSON"))
            .count(),
        4,
        "{exports:?}"
    );
    assert!(
        exports.iter().all(|e| e.contains("operator e2e")),
        "{exports:?}"
    );

    // Central re-checked the views the agent allowed (policy, role, window) and found nothing.
    e2e::eventually("central's re-check to pass the views", || async {
        let client = db.client().await.ok()?;
        let checked: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM access_recheck_position)
                        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.kind = 'info_view'
                            AND (e.received_at, e.event_id) > (SELECT received_at, event_id
                                                              FROM access_recheck_position))",
                &[],
            )
            .await
            .ok()?
            .get(0);
        checked.then_some(())
    })
    .await;
    let violations: i64 = client
        .query_one("SELECT count(*) FROM access_violations", &[])
        .await?
        .get(0);
    assert_eq!(violations, 0, "the agent's decisions hold at central");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roster_and_disaster_windows_set_centrally_decide_views_at_the_site()
-> anyhow::Result<()> {
    let site = site_code("131000006");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let window = format!("13@{}/{}", rfc3339_in_hours(-24), rfc3339_in_hours(120));
    let sim = start_sim_with(&pki, &["--disaster-window", &window]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let (cert, key) = pki.paths.operator("e2e");
    let (ca, addr) = (pki.paths.chain_ca(), central.field("http"));
    let send = |method: &'static str, path: String, body: serde_json::Value| {
        let (ca, cert, key, addr) = (ca.clone(), cert.clone(), key.clone(), addr.clone());
        async move { e2e::http::send_json(&ca, &cert, &key, &addr, method, &path, &body).await }
    };

    // Chain IT sets the roster and opens the window; the agent's configuration has neither.
    let roster = serde_json::json!([{"id": "D7", "role": "doctor"}, {"id": "C7", "role": "clerk"}]);
    let (status, answer) = send("PUT", format!("/api/v1/sites/{site}/staff"), roster).await?;
    assert_eq!(status, 200, "{answer}");
    let opened = serde_json::json!({
        "id": "w-central", "prefectures": ["13"],
        "starts_at": rfc3339_in_hours(-24), "ends_at": rfc3339_in_hours(120),
    });
    let (status, answer) = send("POST", "/api/v1/disaster-windows".into(), opened).await?;
    assert_eq!(status, 200, "{answer}");
    // Bad input is refused with the reason, and changes nothing.
    let (status, answer) = send(
        "PUT",
        format!("/api/v1/sites/{site}/staff"),
        serde_json::json!([{"id": "X", "role": "janitor"}]),
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("role"),
        "{answer}"
    );

    let agent = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let kept = agent.dir().join("data").join("access-rules.json");
    let running = agent.start().await?;
    e2e::eventually("the agent to keep central's access rules", || async {
        kept.exists().then_some(())
    })
    .await;
    let card = ViewPatient::Card(&person);
    let (code, view, stderr) = agent.view("drug", "D7", card).await?;
    assert_eq!(code, Some(0), "{view} {stderr}");
    assert_eq!(view["disaster_window_id"], "w-central");
    let (code, view, _) = agent.view("drug", "C7", card).await?;
    assert_eq!(code, Some(3));
    assert_eq!(view["refusal_reason"], "role_not_permitted");

    // D7 leaves the roster: after the agent reconnects it has the new rules, and keeps them.
    let (status, _) = send(
        "PUT",
        format!("/api/v1/sites/{site}/staff"),
        serde_json::json!([{"id": "C7", "role": "clerk"}]),
    )
    .await?;
    assert_eq!(status, 200);
    running.kill().await?;
    let before = std::fs::read_to_string(&kept)?;
    let _running = agent.start().await?;
    e2e::eventually("the new rules at the agent", || async {
        (std::fs::read_to_string(&kept).ok()? != before).then_some(())
    })
    .await;
    let (code, view, _) = agent.view("drug", "D7", card).await?;
    assert_eq!(code, Some(3), "{view}");
    assert_eq!(view["refusal_reason"], "unknown_staff");

    // Every change is in the audit trail, with the operator.
    let changes: i64 = db
        .client()
        .await?
        .query_one(
            "SELECT count(*) FROM security_events
             WHERE kind = 'admin_action' AND detail LIKE '%by operator e2e'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(changes, 3, "two rosters and one window");
    Ok(())
}
