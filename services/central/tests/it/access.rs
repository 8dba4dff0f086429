//! Central's re-check of the views agents allowed, against real PostgreSQL: a view the policy
//! or the consents central holds do not allow raises an access_violation alert.

use central_store::scope::SiteScope;
use std::time::Duration;

use central_store::AlertThresholds;
use e2e::TestDb;
use onshi_domain::events::{
    Consent, ConsentChoice, EventBody, FleetEvent, InfoCategory, InfoView, StreamId,
};
use onshi_domain::patient::PatientRef;
use onshi_domain::site::SiteCode;
use uuid::Uuid;

fn event(site: &str, sequence: u64, body: EventBody) -> FleetEvent {
    let mut event = FleetEvent::try_from(e2e::uplink::lookup_event(site, sequence)).unwrap();
    event.body = body;
    event
}

fn patient(n: u8) -> PatientRef {
    PatientRef::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn view(patient: PatientRef, role: &str, window: Option<&str>, allowed: bool) -> EventBody {
    EventBody::InfoView(InfoView {
        patient_ref: patient,
        category: InfoCategory::Drug,
        allowed,
        refusal_reason: (!allowed).then(|| "not_consented".into()),
        staff_id: Some("S1".into()),
        staff_role: Some(role.into()),
        policy_version: Some("jp-2020-11".into()),
        disaster_window_id: window.map(str::to_string),
        source: None,
    })
}

#[tokio::test]
async fn views_the_policy_or_central_s_consents_do_not_allow_raise_an_alert() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let code = e2e::site_code("131000001"); // Tokyo, medical fee table
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", 6)
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let consent = EventBody::Consent(Consent {
        patient_ref: patient(1),
        consented_at: now - time::Duration::minutes(5),
        available_until: now + time::Duration::hours(23),
        limit_info: ConsentChoice::None,
        drug: ConsentChoice::Given,
        checkup: ConsentChoice::None,
        diagnosis: ConsentChoice::None,
        surgery: ConsentChoice::None,
    });
    let mut events = vec![
        event(&code, 1, consent),
        event(&code, 2, view(patient(1), "doctor", None, true)), // consented: fine
        event(&code, 3, view(patient(1), "clerk", None, true)),  // a clerk: violation
        event(&code, 4, view(patient(2), "doctor", None, true)), // no consent: violation
        event(&code, 5, view(patient(2), "doctor", None, false)), // refused: nothing shown
        event(&code, 6, view(patient(2), "doctor", Some("w-tokyo"), true)), // window: fine
    ];
    events[0].occurred_at = now - time::Duration::minutes(5);
    store.ingest_batch(&site, stream, &events).await.unwrap();

    let pass = store.recheck_views(100, Duration::ZERO).await.unwrap();
    assert_eq!((pass.views, pass.violations), (5, 2));
    assert_eq!(
        store
            .recheck_views(100, Duration::ZERO)
            .await
            .unwrap()
            .views,
        0,
        "each view is checked once"
    );
    let codes: Vec<(i64, String)> = db
        .client()
        .await
        .unwrap()
        .query(
            "SELECT sequence, code FROM access_violations ORDER BY sequence",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        codes,
        vec![
            (3, "role_not_permitted".to_string()),
            (4, "no_consent_at_central".to_string())
        ]
    );
    let patient_alerts = AlertThresholds {
        gap: Duration::from_secs(3600),
        divergence: Duration::from_secs(3600),
        unavailable: Duration::from_secs(3600),
    };
    store.check_alerts(patient_alerts).await.unwrap();
    let open = store
        .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].kind, "access_violation");
    assert_eq!(open[0].site_code, code);
    assert!(open[0].detail.starts_with("2 views"), "{}", open[0].detail);
}
