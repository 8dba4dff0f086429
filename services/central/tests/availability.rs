//! The availability check's reading of the agent's own signals, against real PostgreSQL: a site
//! whose latest inventory lists no reader (after it had one) is `reader_unplugged`, a national
//! probe that says down is `national_unreachable`, and a session that ended is `agent_down`.

use central::store::scope::SiteScope;
use std::time::Duration;

use central::store::{self, DatabaseUrl, Store, migrate};
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
    let pool = store::connect(&DatabaseUrl::new(&db.url), 4).unwrap();
    migrate::migrate(&pool).await.unwrap();
    let store = Store::new(pool);
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
