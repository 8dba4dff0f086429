//! The availability check's reading of the agent's own signals, against real PostgreSQL: a site
//! whose latest inventory lists no reader (after it had one) is `reader_unplugged`, a national
//! probe that says down is `national_unreachable`, a qualification terminal whose health says
//! silent is `terminal_not_answering` until it answers again, and a session that ended is
//! `agent_down`.

use central_store::scope::SiteScope;
use std::time::Duration;

use central_store::{self as store, Store};
use e2e::TestDb;
use onshi_domain::availability::SessionEnd;
use onshi_domain::events::{
    EventBody, FleetEvent, Inventory, LinkChange, LinkState, LinkTarget, ReaderChange, ReaderState,
    StreamId,
};
use onshi_domain::hours::OpeningHours;
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;
use uuid::Uuid;

fn event(site: &SiteCode, sequence: u64, body: EventBody) -> FleetEvent {
    let mut event =
        FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), sequence)).unwrap();
    event.body = body;
    event
}

fn reader(state: ReaderState) -> ReaderChange {
    ReaderChange {
        reader_name: "Virtual PCD 00 00".into(),
        state,
        detail: None,
        cards_read: 0,
        errors: 0,
        last_error: None,
    }
}

fn inventory(readers: Vec<ReaderChange>) -> Inventory {
    Inventory {
        taken_at: OffsetDateTime::now_utc(),
        readers,
        certificates: Vec::new(),
        terminal_ids: Vec::new(),
    }
}

async fn state(store: &Store, site: &SiteCode) -> (String, bool) {
    store
        .check_availability(OffsetDateTime::now_utc(), Duration::from_secs(90))
        .await
        .unwrap();
    let verdict = store
        .availability(Some(site), &SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    (verdict.state, verdict.alerting)
}

#[tokio::test]
async fn the_agent_s_own_signals_name_what_is_wrong_at_the_site() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
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
    let site = SiteCode::parse(&e2e::site_code("131000051")).unwrap();
    let stream = StreamId(Uuid::now_v7());
    let session = Uuid::now_v7();
    store
        .open_stream(&site, stream, "0.1.0", "0", 0)
        .await
        .unwrap();
    store.session_opened(&site, stream, session).await.unwrap();

    // No reader was ever seen: nothing is missing.
    store
        .record_inventory(&site, stream, &inventory(Vec::new()))
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));

    // It had one, and the latest inventory lists none present: unplugged.
    let plugged = EventBody::ReaderChange(reader(ReaderState::PresentEmpty));
    store
        .ingest_batch(&site, stream, &[event(&site, 1, plugged)])
        .await
        .unwrap();
    store
        .record_inventory(
            &site,
            stream,
            &inventory(vec![reader(ReaderState::Removed)]),
        )
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("reader_unplugged".into(), true)
    );
    store
        .record_inventory(
            &site,
            stream,
            &inventory(vec![reader(ReaderState::CardPresent)]),
        )
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));

    // The agent's national probe says down.
    let down = EventBody::LinkChange(LinkChange {
        target: LinkTarget::Onshi,
        state: LinkState::Down,
        detail: Some("2 failed probes".into()),
        rtt_ms: None,
        line_type: None,
    });
    store
        .ingest_batch(&site, stream, &[event(&site, 2, down)])
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("national_unreachable".into(), true)
    );

    // The session ended with a close: the agent is down. A stale session's end changes nothing
    // once a newer one holds the site.
    store
        .session_ended(&site, session, SessionEnd::Prompt)
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("agent_down".into(), true));
    let newer = Uuid::now_v7();
    store.session_opened(&site, stream, newer).await.unwrap();
    store
        .session_ended(&site, session, SessionEnd::Silent)
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("national_unreachable".into(), true)
    );
}

fn terminal_health(state: LinkState, detail: &str) -> EventBody {
    EventBody::LinkChange(LinkChange {
        target: LinkTarget::Terminal,
        state,
        detail: Some(detail.into()),
        rtt_ms: None,
        line_type: None,
    })
}

/// A site in terminal mode: no national probe, the qualification terminal's health instead.
#[tokio::test]
async fn a_silent_qualification_terminal_is_its_own_state_and_recovers() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
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
    let site = SiteCode::parse(&e2e::site_code("131000052")).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "0.1.0", "0", 0)
        .await
        .unwrap();
    store
        .session_opened(&site, stream, Uuid::now_v7())
        .await
        .unwrap();
    let started = OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let at = |sequence: u64, body: EventBody| {
        let mut e = event(&site, sequence, body);
        e.occurred_at = started + time::Duration::seconds(sequence as i64);
        e
    };
    let thresholds = store::AlertThresholds {
        gap: Duration::from_secs(3600),
        divergence: Duration::from_secs(3600),
        unavailable: Duration::ZERO,
    };
    let unavailable = |store: Store| async move {
        store.check_alerts(thresholds).await.unwrap();
        store
            .alerts(&central_store::AlertState::UNRESOLVED, 100, &SiteScope::All)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.kind == "site_unavailable")
            .collect::<Vec<_>>()
    };

    // The terminal answers.
    store
        .ingest_batch(
            &site,
            stream,
            &[at(
                1,
                terminal_health(LinkState::Up, "qualification terminal answered"),
            )],
        )
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));
    assert!(unavailable(store.clone()).await.is_empty());

    // Slow is not silent.
    store
        .ingest_batch(
            &site,
            stream,
            &[at(
                2,
                terminal_health(LinkState::Degraded, "qualification terminal slow"),
            )],
        )
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));

    // Silent: its own state, its own label and alert text (not "national unreachable").
    store
        .ingest_batch(
            &site,
            stream,
            &[at(
                3,
                terminal_health(LinkState::Down, "qualification terminal silent"),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("terminal_not_answering".into(), true)
    );
    let verdict = store
        .availability(Some(&site), &SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(verdict.underlying, "terminal_not_answering");
    assert_eq!(
        verdict.label,
        "資格確認端末が応答しません / terminal not answering"
    );
    assert!(
        verdict.detail.contains("資格確認端末が応答しません"),
        "{}",
        verdict.detail
    );
    assert!(verdict.detail.contains("terminal PC"), "{}", verdict.detail);
    let alerts = unavailable(store.clone()).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].detail.contains("terminal not answering"),
        "{}",
        alerts[0].detail
    );

    // Closed hours: reported as closed, the silence underneath, the alert resolved.
    let never_open: OpeningHours =
        serde_json::from_str(r#"{"weekly": {}, "closed_on_national_holidays": true}"#).unwrap();
    store
        .set_opening_hours(Some(&site), &never_open, "ops@chain")
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("closed".into(), false));
    let verdict = store
        .availability(Some(&site), &SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(verdict.underlying, "terminal_not_answering");
    assert!(unavailable(store.clone()).await.is_empty());
    store
        .set_opening_hours(Some(&site), &always_open, "ops@chain")
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("terminal_not_answering".into(), true)
    );

    // The terminal answers again: online, the alert resolved.
    store
        .ingest_batch(
            &site,
            stream,
            &[at(
                4,
                terminal_health(LinkState::Up, "qualification terminal answered"),
            )],
        )
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));
    assert!(unavailable(store.clone()).await.is_empty());

    // The site changes mode: the latest report on its way to the national system counts, so
    // a silence left behind in terminal mode does not outlive the switch to direct mode.
    store
        .ingest_batch(
            &site,
            stream,
            &[at(
                5,
                terminal_health(LinkState::Down, "qualification terminal silent"),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("terminal_not_answering".into(), true)
    );
    let probe = |state| {
        EventBody::LinkChange(LinkChange {
            target: LinkTarget::Onshi,
            state,
            detail: None,
            rtt_ms: Some(20),
            line_type: None,
        })
    };
    store
        .ingest_batch(&site, stream, &[at(6, probe(LinkState::Up))])
        .await
        .unwrap();
    assert_eq!(state(&store, &site).await, ("online".into(), false));
    store
        .ingest_batch(&site, stream, &[at(7, probe(LinkState::Down))])
        .await
        .unwrap();
    assert_eq!(
        state(&store, &site).await,
        ("national_unreachable".into(), true)
    );
}
