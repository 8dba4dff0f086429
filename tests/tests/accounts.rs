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
    let viewer = operator
        .signed_in_account(&central, "miru", "viewer")
        .await?;
    let events = format!("/api/v1/sites/{site}/events");
    let (status, admin_view) = operator.get(&events).await?;
    assert_eq!(status, 200, "{admin_view}");
    assert_eq!(admin_view[0]["body"]["staff_id"], staff, "{admin_view}");
    assert_eq!(admin_view[0]["body"]["patient_ref"], patient.as_str());

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

/// `central account token`: the token it prints (once, on standard output).
async fn token_for(db: &TestDb, login: &str) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(e2e::bin("central"))
        .args(["account", "token", "--login", login, "--label", "e2e"])
        .env("DATABASE_URL", db.app_login().await?)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// `central account set` with `args`, the password (if any) on standard input.
async fn account_set(db: &TestDb, args: &[&str], password: Option<&str>) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(e2e::bin("central"))
        .args(["account", "set"])
        .args(args)
        .env("DATABASE_URL", db.app_login().await?)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    if let Some(password) = password {
        stdin.write_all(format!("{password}\n").as_bytes()).await?;
    }
    drop(stdin);
    let output = child.wait_with_output().await?;
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// An account that turns out to be misused is dealt with at once, through the API or the CLI,
/// each change audited: disabled (its token and sign-in stop working; enabled again, they
/// work), demoted (its token loses what the role gave), its password reset (the old password
/// and every token made with it stop working). And a token cannot mint more tokens.
#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_disabled_demoted_and_reset_and_a_token_mints_no_token() -> anyhow::Result<()>
{
    use e2e::http::{WebSession, with_token};

    let pki = Pki::new(&[])?;
    let db = TestDb::create().await?;
    let central = e2e::start_central_with(&pki, &db, &["--web-listen", "127.0.0.1:0"], &[]).await?;
    let (ca, web) = (pki.paths.chain_ca(), central.field("web"));
    let operator = Operator::new(&pki, &central);
    let password = "correct horse battery staple";
    let (status, answer) = operator
        .send(
            "POST",
            "/api/v1/accounts",
            &serde_json::json!({
                "login": "boss", "display_name": "管理 者", "role": "chain_admin",
                "prefectures": [], "sites": [], "password": password
            }),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let token = token_for(&db, "boss").await?;
    let call = |method: &'static str, path: &'static str, body: Option<serde_json::Value>| {
        let (ca, web, token) = (ca.clone(), web.clone(), token.clone());
        async move { with_token(&ca, &web, &token, method, path, body.as_ref()).await }
    };
    let (status, accounts) = call("GET", "/api/v1/accounts", None).await?;
    assert_eq!(status, 200, "a chain administrator's token: {accounts}");

    // A token cannot make tokens.
    let (status, refused) = call(
        "POST",
        "/api/v1/tokens",
        Some(serde_json::json!({ "label": "more", "days": 366 })),
    )
    .await?;
    assert_eq!(status, 403, "{refused}");

    // Disabled through the API: its token and its password stop working; enabled, they work.
    let (status, answer) = operator
        .send(
            "PATCH",
            "/api/v1/accounts/boss",
            &serde_json::json!({ "disabled": true }),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(call("GET", "/api/v1/me", None).await?.0, 401);
    assert!(
        WebSession::sign_in(&ca, &web, "boss", password)
            .await
            .is_err()
    );
    let (status, answer) = operator
        .send(
            "PATCH",
            "/api/v1/accounts/boss",
            &serde_json::json!({ "disabled": false }),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(call("GET", "/api/v1/me", None).await?.0, 200);

    // Demoted through the CLI: the token keeps only a viewer's rights.
    account_set(&db, &["--login", "boss", "--role", "viewer"], None).await?;
    let (status, answer) = call("GET", "/api/v1/accounts", None).await?;
    assert_eq!(status, 403, "a viewer's token lists no accounts: {answer}");
    assert_eq!(call("GET", "/api/v1/sites", None).await?.0, 200);

    // Password reset through the CLI: the old password and the token stop working.
    let new_password = "another horse battery staple";
    account_set(
        &db,
        &["--login", "boss", "--password-stdin"],
        Some(new_password),
    )
    .await?;
    assert_eq!(
        call("GET", "/api/v1/me", None).await?.0,
        401,
        "the token is revoked"
    );
    assert!(
        WebSession::sign_in(&ca, &web, "boss", password)
            .await
            .is_err()
    );
    WebSession::sign_in(&ca, &web, "boss", new_password).await?;

    // Refusals: an account that does not exist, nothing to change, a weak password.
    for (path, body) in [
        (
            "/api/v1/accounts/nobody",
            serde_json::json!({ "disabled": true }),
        ),
        ("/api/v1/accounts/boss", serde_json::json!({})),
        (
            "/api/v1/accounts/boss",
            serde_json::json!({ "password": "short" }),
        ),
    ] {
        let (status, answer) = operator.send("PATCH", path, &body).await?;
        assert_eq!(status, 400, "{path} {body}: {answer}");
    }

    let audited: Vec<String> = db
        .client()
        .await?
        .query(
            "SELECT detail FROM security_events WHERE kind = 'admin_action' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for change in [
        "disabled account boss",
        "enabled account boss",
        "set the role of account boss to viewer",
        "reset the password of account boss",
    ] {
        assert!(
            audited.iter().any(|d| d.contains(change)),
            "{change}: {audited:#?}"
        );
    }
    Ok(())
}
