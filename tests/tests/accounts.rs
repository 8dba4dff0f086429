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
