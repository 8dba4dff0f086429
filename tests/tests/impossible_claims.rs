//! Issue 15, item 11, against the real central process: backlogs an agent claimed before central
//! bounded sequences (rows already stored, up to `i64::MAX` each) must not break the views of
//! everyone who sees that site. Two such streams used to overflow the site page's sum of outbox
//! lags (a panic in a debug build, a wrapped negative number in release).

use e2e::http::Operator;
use e2e::uplink::{Session, agent_tls};
use e2e::{Pki, TestDb, site_code, start_central_with};

#[tokio::test(flavor = "multi_thread")]
async fn stored_impossible_backlogs_do_not_break_the_site_page_or_the_overview()
-> anyhow::Result<()> {
    let site = site_code("131000056");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central_with(&pki, &db, &["--web-listen", "127.0.0.1:0"], &[]).await?;
    let endpoint = e2e::https_endpoint(&central, "grpc");
    // Two streams of the site, as two agent installs would have.
    for _ in 0..2 {
        Session::open(
            &endpoint,
            agent_tls(&pki, &site)?,
            &site,
            uuid::Uuid::now_v7(),
        )
        .await?;
    }
    // What an agent could claim before the bound: the largest bigint, on both streams (written
    // as the owner, since central now refuses such a claim at the door).
    let owner = db.client().await?;
    let claimed = owner
        .execute(
            "UPDATE agent_streams SET last_produced_sequence = 9223372036854775807
             WHERE site_code = $1",
            &[&site],
        )
        .await?;
    assert_eq!(claimed, 2);

    let admin = Operator::new(&pki, &central)
        .signed_in_account(&central, "kanri", "chain_admin")
        .await?;
    for page in [format!("/sites/{site}"), "/".to_string()] {
        let (status, _, body) = admin.get(&page).await?;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{page}: {text}");
        // The sum saturates at the largest count, never a negative number.
        assert!(
            text.contains("9,223,372,036,854,775,807"),
            "{page} does not show the saturated backlog"
        );
    }
    Ok(())
}
