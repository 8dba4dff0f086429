//! The fleet-wide gauges Prometheus scrapes, read from real PostgreSQL: an open site whose agent
//! stopped is one `agent_down` site and one open `site_unavailable` alert, certificates count
//! within the horizon they expire in, and events the agent produced but central lacks are the
//! backlog. Every alert kind and availability state is a series, zero when nothing is in it.

use std::time::Duration;

use central_store::fleet_gauges::ALERT_KINDS;
use central_store::{AlertThresholds, CertificateAlertDays};
use e2e::TestDb;
use onshi_domain::availability::{SessionEnd, State};
use onshi_domain::events::{
    CertificateInfo, CertificateInventory, EventBody, FleetEvent, StreamId,
};
use onshi_domain::hours::OpeningHours;
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;
use uuid::Uuid;

fn certificate(serial: &str, days_left: i64) -> CertificateInfo {
    let now = OffsetDateTime::now_utc();
    CertificateInfo {
        role: "terminal".into(),
        subject: format!("CN=terminal {serial}"),
        issuer: "CN=onshi CA".into(),
        serial_hex: serial.into(),
        sha256_fingerprint: format!("{serial:0>64}"),
        not_before: now - time::Duration::days(300),
        not_after: now + time::Duration::days(days_left),
        key_type: "rsa".into(),
        key_bits: 2048,
        source: "/etc/onshi/terminal.pem".into(),
    }
}

#[tokio::test]
async fn the_gauges_count_what_the_fleet_holds() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;

    // Nothing yet: every series is there, at zero.
    let empty = store.fleet_gauges().await.unwrap();
    for kind in ALERT_KINDS {
        assert_eq!(empty.open_alerts[kind], 0, "{kind}");
    }
    for state in State::ALL {
        assert_eq!(empty.sites[&(state.as_str().to_string(), true)], 0);
    }
    assert_eq!(empty.certificates_expiring, [0, 0, 0]);
    assert_eq!(empty.backlog_events, 0.0);

    let always_open: OpeningHours = serde_json::from_str(
        r#"{"weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"], "wed": ["00:00-24:00"],
            "thu": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["00:00-24:00"],
            "sun": ["00:00-24:00"]}, "closed_on_national_holidays": false}"#,
    )
    .unwrap();
    store
        .set_opening_hours(None, &always_open, "ops@chain")
        .await
        .unwrap();
    let site = SiteCode::parse(&e2e::site_code("131000061")).unwrap();
    let stream = StreamId(Uuid::now_v7());
    let session = Uuid::now_v7();
    // The agent says it produced 10 events; central receives the first two.
    store
        .open_stream(&site, stream, "0.1.0", "0", 10)
        .await
        .unwrap();
    store.session_opened(&site, stream, session).await.unwrap();
    let mut inventory = FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), 2)).unwrap();
    inventory.body = EventBody::CertificateInventory(CertificateInventory {
        certificates: vec![
            certificate("01", -1),
            certificate("02", 5),
            certificate("03", 20),
            certificate("04", 200),
        ],
        full_snapshot: true,
    });
    let lookup = FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), 1)).unwrap();
    store
        .ingest_batch(&site, stream, &[lookup, inventory])
        .await
        .unwrap();
    store
        .check_certificates(OffsetDateTime::now_utc(), CertificateAlertDays::default())
        .await
        .unwrap();
    // Its agent stops while the site is open.
    store
        .session_ended(&site, session, SessionEnd::Prompt)
        .await
        .unwrap();
    store
        .check_availability(OffsetDateTime::now_utc(), Duration::from_secs(90))
        .await
        .unwrap();
    store
        .check_alerts(AlertThresholds {
            gap: Duration::from_secs(300),
            divergence: Duration::from_secs(900),
            unavailable: Duration::ZERO,
        })
        .await
        .unwrap();

    let gauges = store.fleet_gauges().await.unwrap();
    assert_eq!(
        gauges.sites[&("agent_down".to_string(), true)],
        1,
        "{gauges:?}"
    );
    assert_eq!(gauges.sites[&("online".to_string(), true)], 0);
    assert_eq!(gauges.open_alerts["site_unavailable"], 1, "{gauges:?}");
    assert_eq!(gauges.open_alerts["chain_break"], 0);
    // Expired, within 7 days (expired + 5 days), within 30 (+ 20 days); 200 days is in none.
    assert_eq!(gauges.certificates_expiring, [1, 2, 3]);
    assert_eq!(gauges.backlog_events, 8.0);
}
