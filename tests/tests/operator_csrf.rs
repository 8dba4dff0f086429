//! Issue 15, item 9, against the real central process: a browser that holds an operator
//! certificate presents it to every page it visits, so another site's page could make it write
//! to central. Writes under a certificate must be declared JSON (which no cross-site form or
//! simple `fetch` can send without a CORS preflight), and the dashboard's forms are refused
//! under a certificate.

use e2e::{Pki, TestDb, site_code, start_central};

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_form_cannot_write_through_an_operators_browser() -> anyhow::Result<()> {
    let site = site_code("131000031");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let operator = e2e::http::Operator::new(&pki, &central);

    // The attack: a text/plain "form" whose body is JSON, creating a chain administrator.
    let account = br#"{"login": "mallory", "display_name": "x", "role": "chain_admin", "password": "correct horse battery staple 1"}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = operator
            .send_as("POST", "/api/v1/accounts", content_type, account)
            .await?;
        assert_eq!(
            status,
            415,
            "{content_type}: {}",
            String::from_utf8_lossy(&body)
        );
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("application/json"), "{text}");
    }
    // A write without a body (pausing a rollout, acknowledging an alert) too.
    let (status, _) = operator
        .send_as("POST", "/api/v1/alerts/1/acknowledge", "text/plain", b"")
        .await?;
    assert_eq!(status, 415);
    // The dashboard's own forms need a session.
    let (status, body) = operator
        .send_as(
            "POST",
            "/rollouts",
            "application/x-www-form-urlencoded",
            b"target_version=9.9.9&waves=100&window=any&on_gate_failure=pause",
        )
        .await?;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    let (status, accounts) = operator.get("/api/v1/accounts").await?;
    assert_eq!(status, 200);
    assert!(!accounts.to_string().contains("mallory"), "{accounts}");

    // The operator's own JSON request still works.
    let (status, created) = operator
        .send(
            "POST",
            "/api/v1/accounts",
            &serde_json::from_slice(account)?,
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    Ok(())
}
