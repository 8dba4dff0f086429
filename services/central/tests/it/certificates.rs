//! The certificate inventory against real PostgreSQL: projection of inventory events, full
//! snapshots retiring what they no longer list, and expiry alerts raised once per threshold as
//! time passes ("now" is injected; nothing sleeps).

use central_store::scope::SiteScope;
use central_store::{CertificateAlertDays, Store};
use e2e::TestDb;
use onshi_domain::events::{
    CertificateInfo, CertificateInventory, EventBody, EventId, FleetEvent, StreamId,
};
use onshi_domain::site::{SiteCode, TerminalId};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn cert(role: &str, name: &str, not_after: OffsetDateTime) -> CertificateInfo {
    CertificateInfo {
        role: role.into(),
        subject: format!("CN={name}"),
        issuer: "CN=test CA".into(),
        serial_hex: "01".into(),
        sha256_fingerprint: format!("{name:0>64}"),
        not_before: not_after - Duration::days(1000),
        not_after,
        key_type: "EC".into(),
        key_bits: 256,
        source: format!("/etc/{name}.pem"),
    }
}

/// Records inventories as one agent stream would, in order, `occurred_at` one minute apart.
struct Site {
    code: SiteCode,
    stream: StreamId,
    next: u64,
    at: OffsetDateTime,
}

impl Site {
    async fn open(store: &Store, first_nine: &str, at: OffsetDateTime) -> Self {
        let code = SiteCode::parse(&e2e::site_code(first_nine)).unwrap();
        let stream = StreamId(Uuid::now_v7());
        store
            .open_stream(&code, stream, "test", "0", 0)
            .await
            .unwrap();
        Self {
            code,
            stream,
            next: 1,
            at,
        }
    }

    async fn report(&mut self, store: &Store, certificates: Vec<CertificateInfo>, full: bool) {
        let event = FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
            site: self.code.clone(),
            terminal: TerminalId::parse("T01").unwrap(),
            occurred_at: self.at,
            sequence: self.next,
            chain_hash: None,
            body: EventBody::CertificateInventory(CertificateInventory {
                certificates,
                full_snapshot: full,
            }),
        };
        self.next += 1;
        self.at += Duration::minutes(1);
        store
            .ingest_batch(&self.code, self.stream, &[event])
            .await
            .unwrap();
    }
}

fn now() -> OffsetDateTime {
    // Whole seconds: PostgreSQL keeps microseconds.
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

#[tokio::test]
async fn thresholds_fire_once_each_as_time_passes() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let start = now();
    let mut site = Site::open(&store, "341071236", start).await;
    let expiry = start + Duration::days(100) + Duration::hours(12);
    site.report(&store, vec![cert("terminal", "t01", expiry)], true)
        .await;
    let days = CertificateAlertDays::default();

    let check = store.check_certificates(start, days).await.unwrap();
    assert_eq!(
        (check.projected, check.raised),
        (1, 0),
        "100 days left: none yet"
    );
    let listed = store
        .certificates(start, None, None, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].days_to_expiry, 100);
    assert!(listed[0].renewal_lead_business_days.unwrap() > 0);

    // Walk the clock day by day to well past expiry: each threshold fires exactly once.
    let mut fired = Vec::new();
    for day in 0..=110 {
        let at = start + Duration::days(day);
        let raised = store.raise_certificate_alerts(at, days).await.unwrap();
        if raised > 0 {
            assert_eq!(raised, 1, "day {day}");
            fired.push(day);
        }
        // Checking again at the same moment raises nothing.
        assert_eq!(store.raise_certificate_alerts(at, days).await.unwrap(), 0);
    }
    assert_eq!(fired, [10, 40, 70, 85, 93, 100]);
    let alerts = store
        .certificate_alerts(100, &SiteScope::All)
        .await
        .unwrap();
    let mut thresholds: Vec<i32> = alerts.iter().map(|a| a.threshold_days).collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [0, 7, 15, 30, 60, 90]);
    let at_30 = alerts.iter().find(|a| a.threshold_days == 30).unwrap();
    assert!(
        at_30.detail.contains("expires in 30 days"),
        "{}",
        at_30.detail
    );
    assert!(
        at_30.detail.contains("renewal lead time left") && at_30.detail.contains("ASSUMED"),
        "{}",
        at_30.detail
    );
    assert_eq!(at_30.site_code, site.code.to_string());
    let at_7 = alerts.iter().find(|a| a.threshold_days == 7).unwrap();
    assert!(at_7.detail.contains("act now"), "{}", at_7.detail);

    // Reported again (next day's snapshot) and re-projected: no alert repeats.
    site.report(&store, vec![cert("terminal", "t01", expiry)], true)
        .await;
    let check = store
        .check_certificates(start + Duration::days(110), days)
        .await
        .unwrap();
    assert_eq!((check.projected, check.raised), (1, 0));
    // The history holds both events.
    assert_eq!(
        count(&db, "SELECT count(*) FROM certificate_inventory_history").await,
        2
    );
}

#[tokio::test]
async fn a_full_snapshot_retires_a_removed_certificate_and_a_change_event_does_not() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let start = now();
    let mut site = Site::open(&store, "341071236", start).await;
    let far = start + Duration::days(900);
    let days = CertificateAlertDays::default();
    site.report(
        &store,
        vec![cert("terminal", "old", far), cert("ca", "ca", far)],
        true,
    )
    .await;
    store.check_certificates(start, days).await.unwrap();
    assert_eq!(
        store
            .certificates(start, None, None, &SiteScope::All)
            .await
            .unwrap()
            .len(),
        2
    );

    // A changed file: the new certificate is added, nothing retired yet.
    site.report(&store, vec![cert("terminal", "new", far)], false)
        .await;
    store.check_certificates(start, days).await.unwrap();
    assert_eq!(
        store
            .certificates(start, None, None, &SiteScope::All)
            .await
            .unwrap()
            .len(),
        3
    );

    // The next full snapshot no longer lists "old": retired.
    let mut missing_ca = cert("ca", "ca", far);
    missing_ca.source = "missing:/etc/ca.pem".into();
    site.report(&store, vec![cert("terminal", "new", far), missing_ca], true)
        .await;
    store.check_certificates(start, days).await.unwrap();
    let listed = store
        .certificates(start, None, None, &SiteScope::All)
        .await
        .unwrap();
    let subjects: Vec<_> = listed.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(!subjects.contains(&"CN=old"), "{subjects:?}");
    let ca = listed.iter().find(|c| c.role == "ca").unwrap();
    assert!(
        ca.missing,
        "a certificate whose file is gone is marked missing"
    );
    assert_eq!(ca.renewal_lead_business_days, None);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM certificates WHERE retired_at IS NOT NULL"
        )
        .await,
        1
    );
    // Filters: by site and by expiry.
    assert_eq!(
        store
            .certificates(start, Some(30), None, &SiteScope::All)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .certificates(start, None, Some("1310000000"), &SiteScope::All)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .certificates(start, None, Some(&site.code.to_string()), &SiteScope::All)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn an_expiring_ca_raises_one_alert_for_every_site_holding_it() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let start = now();
    let ca_expiry = start + Duration::days(20) + Duration::hours(1);
    let leaf_expiry = start + Duration::days(800);
    for first_nine in ["341071236", "131071236"] {
        let mut site = Site::open(&store, first_nine, start).await;
        site.report(
            &store,
            vec![
                cert("terminal", &format!("leaf{first_nine}"), leaf_expiry),
                cert("ca", "issuing-ca", ca_expiry),
            ],
            true,
        )
        .await;
    }
    let check = store
        .check_certificates(start, CertificateAlertDays::default())
        .await
        .unwrap();
    assert_eq!((check.projected, check.raised), (2, 1));
    let alerts = store.certificate_alerts(10, &SiteScope::All).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].threshold_days, 30);
    assert_eq!(alerts[0].role, "ca");
    assert!(
        alerts[0].detail.contains("CA certificate")
            && alerts[0].detail.contains("expires in 20 days")
            && alerts[0].detail.contains("stop validating"),
        "{}",
        alerts[0].detail
    );
    // Sorted by expiry: the CA (held by both sites) comes first.
    let listed = store
        .certificates(start, None, None, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].role, "ca");
    assert_eq!(listed[1].role, "ca");
    assert!(listed.windows(2).all(|w| w[0].not_after <= w[1].not_after));
    // Custom thresholds: 25 days is reached too, once.
    let custom: CertificateAlertDays = "25,5".parse().unwrap();
    assert_eq!(
        store.raise_certificate_alerts(start, custom).await.unwrap(),
        1
    );
    assert_eq!(
        store.raise_certificate_alerts(start, custom).await.unwrap(),
        0
    );
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}
