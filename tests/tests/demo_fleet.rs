//! The demo's simulated chain (`fleet-bench fleet`, issue 19 item 3) against a real central:
//! what `make demo` shows is true to what the fleet says it sent. Its sites are named through
//! the API, each site's certificates reach the inventory (those it made to expire soon within
//! 30 days), its outages are link history, and one adoption plan is overdue.

use std::time::Duration;

use e2e::http::Operator;
use e2e::{Pki, TestDb, eventually, start_central_with};

#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_chain_reaches_central_as_it_says() -> anyhow::Result<()> {
    let pki = Pki::new(&[])?;
    let db = TestDb::create().await?;
    // Certificates are projected and alerts checked every second, not every 30.
    let central = start_central_with(&pki, &db, &["--alert-check-secs", "1"], &[]).await?;
    let state = tempfile::tempdir()?;
    let mut fleet = tokio::process::Command::new(e2e::bin("fleet-bench"));
    fleet
        .arg("fleet")
        .args(["--grpc", &e2e::https_endpoint(&central, "grpc")])
        .args(["--api", &central.field("http")])
        .arg("--pki")
        .arg(pki.paths.root())
        .args([
            "--operator",
            "e2e",
            "--sites",
            "60",
            "--once",
            "--always-open",
        ])
        .arg("--state")
        .arg(state.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), fleet.output()).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fleet-bench fleet failed: {stderr}"
    );
    let said: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .next()
            .expect("the fleet's summary line"),
    )?;
    let count = |key: &str| {
        said[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} in {said}"))
    };
    assert_eq!(count("sites"), 60, "{said}");
    // The default seed gives 60 sites some of each kind of trouble, so what follows compares
    // something, never two zeros.
    for trouble in ["outage", "expiring_soon", "stopped", "reader_unplugged"] {
        assert!(count(trouble) > 0, "no {trouble} site among 60: {said}");
    }

    let operator = Operator::new(&pki, &central);
    // Every simulated site and every adopting one has a name.
    let (status, sites) = operator.get("/api/v1/sites").await?;
    assert_eq!(status, 200, "{sites}");
    let sites = sites.as_array().expect("a list of sites");
    assert!(sites.len() >= 60, "{} sites at central", sites.len());
    let named = sites.iter().filter(|s| s["name"].is_string()).count();
    assert_eq!(named, sites.len(), "unnamed sites: {sites:?}");

    // The certificates it made to expire soon are those central lists within 30 days.
    let expiring = count("expiring_soon");
    eventually(
        "the simulated certificates in central's inventory",
        || async {
            let (_, all) = operator.get("/api/v1/certificates").await.ok()?;
            (all.as_array()?.len() >= 60).then_some(())
        },
    )
    .await;
    let (status, soon) = operator
        .get("/api/v1/certificates?expiring_within_days=30")
        .await?;
    assert_eq!(status, 200, "{soon}");
    let soon_terminals = soon
        .as_array()
        .expect("a list of certificates")
        .iter()
        .filter(|c| c["role"] == "terminal")
        .count() as i64;
    assert_eq!(soon_terminals, expiring, "{soon}");

    // Outages are link history; one adoption plan is overdue, the others ahead.
    let client = db.client().await?;
    let outage_sites: i64 = client
        .query_one(
            "SELECT count(DISTINCT site_code) FROM events
             WHERE kind = 'link_change' AND body->>'state' = 'down'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(outage_sites, count("outage"), "{said}");
    let (overdue, ahead): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE planned_start < current_date - 60) AS overdue,
                        count(*) FILTER (WHERE planned_start > current_date) AS ahead
                 FROM site_adoption",
                &[],
            )
            .await?;
        (row.get("overdue"), row.get("ahead"))
    };
    assert_eq!((overdue, ahead), (1, 3), "adoption plans");
    Ok(())
}
