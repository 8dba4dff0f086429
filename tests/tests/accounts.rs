//! Accounts made and managed through the real central (issue 15, Low items).

use e2e::http::Operator;
use e2e::{Pki, TestDb, start_central};

/// An area manager's prefecture typed with full-width digits (１３, as a Japanese keyboard
/// gives it) is stored as 13: stored as typed, it would match no site and the manager would
/// see nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_area_prefecture_typed_full_width_is_stored_as_its_code() -> anyhow::Result<()> {
    let pki = Pki::new(&[])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let operator = Operator::new(&pki, &central);
    let (status, answer) = operator
        .send(
            "POST",
            "/api/v1/accounts",
            &serde_json::json!({
                "login": "tokyo-area", "display_name": "東京 エリア", "role": "area_manager",
                "prefectures": ["１３", " 14 "], "sites": [],
                "password": "correct horse battery staple"
            }),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let (status, accounts) = operator.get("/api/v1/accounts").await?;
    assert_eq!(status, 200, "{accounts}");
    let account = accounts
        .as_array()
        .and_then(|all| all.iter().find(|a| a["login"] == "tokyo-area"))
        .expect("the account is listed");
    assert_eq!(
        account["scope_prefectures"],
        serde_json::json!(["13", "14"]),
        "{account}"
    );
    Ok(())
}

/// A viewer reads the fleet pages without the people in them: a lookup's patient reference
/// and staff id are taken out of the site's events, in the JSON API and on the site page,
/// while a chain administrator sees them.
#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_events_without_patient_references_or_staff_ids() -> anyhow::Result<()> {
    use e2e::uplink::{Session, agent_tls, lookup_event};
    use proto::fleet::v1 as pb;

    let site = e2e::site_code("131011007");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = e2e::start_central_with(&pki, &db, &["--web-listen", "127.0.0.1:0"], &[]).await?;
    let (patient, staff) = ("ab".repeat(32), "STAFF-4711");
    let mut event = lookup_event(&site, 1);
    if let Some(pb::event::Body::Lookup(lookup)) = event.body.as_mut() {
        lookup.staff_id = staff.into();
        lookup.patient_ref = patient.clone();
    }
    let mut agent = Session::open(
        &e2e::https_endpoint(&central, "grpc"),
        agent_tls(&pki, &site)?,
        &site,
        uuid::Uuid::now_v7(),
    )
    .await?;
    agent.send_batch(vec![event]).await?;
    e2e::await_events(&db, &site, "lookup", 1).await;

    let operator = Operator::new(&pki, &central);
    let (status, answer) = operator
        .send(
            "POST",
            "/api/v1/accounts",
            &serde_json::json!({
                "login": "miru", "display_name": "見る 人", "role": "viewer",
                "prefectures": [], "sites": [], "password": "correct horse battery staple"
            }),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let events = format!("/api/v1/sites/{site}/events");
    let (status, admin_view) = operator.get(&events).await?;
    assert_eq!(status, 200, "{admin_view}");
    assert_eq!(admin_view[0]["body"]["staff_id"], staff, "{admin_view}");
    assert_eq!(admin_view[0]["body"]["patient_ref"], patient.as_str());

    let viewer = e2e::http::WebSession::sign_in(
        &pki.paths.chain_ca(),
        &central.field("web"),
        "miru",
        "correct horse battery staple",
    )
    .await?;
    let (status, _, body) = viewer.get(&events).await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let viewer_view: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(
        viewer_view[0]["body"]["outcome"],
        admin_view[0]["body"]["outcome"]
    );
    assert!(
        viewer_view[0]["body"].get("staff_id").is_none(),
        "{viewer_view}"
    );
    assert!(
        viewer_view[0]["body"].get("patient_ref").is_none(),
        "{viewer_view}"
    );
    let (status, _, page) = viewer.get(&format!("/sites/{site}")).await?;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("data-kind=\"lookup\""),
        "the lookup is listed"
    );
    assert!(!page.contains(staff), "no staff id on the site page");
    assert!(
        !page.contains(&patient[..12]),
        "no patient reference on the site page"
    );
    Ok(())
}
