//! Agent version rollouts against real PostgreSQL: waves, the window, gates on the lookups the
//! wave's sites really stored, pause on a failed gate, operator actions and rollback.
//!
//! An agent reports a version by saying hello with it (`open_stream`, what ingest calls); the
//! controller is driven with explicit times so that a soak of an hour takes no time.

use central_store::Store;
use central_store::rollouts::{Action, NewRollout};
use e2e::TestDb;
use onshi_domain::events::{EventBody, FleetEvent, LookupOutcome, StreamId};
use onshi_domain::hours::OpeningHours;
use onshi_domain::site::SiteCode;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

struct Chain {
    _db: TestDb,
    store: Store,
    sites: Vec<(SiteCode, StreamId)>,
}

async fn chain(codes: &[&str]) -> Chain {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    store
        .ensure_partitions(OffsetDateTime::now_utc() - Duration::days(1), 1)
        .await
        .unwrap();
    let mut sites = Vec::new();
    for code in codes {
        let site = SiteCode::parse(&e2e::site_code(code)).unwrap();
        let stream = StreamId(Uuid::now_v7());
        store
            .open_stream(&site, stream, "0.1.0", "0", 0)
            .await
            .unwrap();
        sites.push((site, stream));
    }
    Chain {
        _db: db,
        store,
        sites,
    }
}

impl Chain {
    /// `count` lookups of site `i` at `at`, with `outcome`, after what the stream holds.
    async fn lookups(
        &self,
        i: usize,
        first: u64,
        count: u64,
        at: OffsetDateTime,
        outcome: LookupOutcome,
    ) {
        let (site, stream) = &self.sites[i];
        let events: Vec<FleetEvent> = (first..first + count)
            .map(|sequence| {
                let mut event =
                    FleetEvent::try_from(e2e::uplink::lookup_event(site.as_str(), sequence))
                        .unwrap();
                event.occurred_at = at;
                if let EventBody::Lookup(lookup) = &mut event.body {
                    lookup.outcome = outcome;
                }
                event
            })
            .collect();
        self.store
            .ingest_batch(site, *stream, &events)
            .await
            .unwrap();
    }

    /// Site `i`'s agent says hello with `version`.
    async fn hello(&self, i: usize, version: &str, produced: u64) {
        let (site, stream) = &self.sites[i];
        self.store
            .open_stream(site, *stream, version, "0", produced)
            .await
            .unwrap();
    }
}

fn rollout(json: &str) -> NewRollout {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn a_canary_that_hurts_lookups_pauses_the_rollout_and_the_next_wave_waits() {
    let chain = chain(&["131000021", "131000022", "131000023"]).await;
    let store = &chain.store;
    let t = OffsetDateTime::now_utc() - Duration::hours(3);
    let canary = chain.sites[0].0.to_string();
    let new = rollout(&format!(
        r#"{{"target_version": "0.2.0", "window": "any", "soak_secs": 3600,
            "waves": [{{"sites": ["{canary}"]}}, {{"share": 100}}]}}"#
    ));
    let id = store.create_rollout(&new, "ops@chain", t).await.unwrap();
    // One rollout at a time.
    let again = store
        .create_rollout(&new, "ops@chain", t)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("still running"), "{again}");

    // Before the wave the canary's lookups were fine.
    chain
        .lookups(0, 1, 30, t - Duration::minutes(30), LookupOutcome::Valid)
        .await;
    store.step_rollouts(t + Duration::minutes(1)).await.unwrap();
    let (target_id, version) = store
        .update_target(&chain.sites[0].0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((target_id, version.as_str()), (id, "0.2.0"));
    assert_eq!(
        store.update_target(&chain.sites[1].0).await.unwrap(),
        None,
        "wave 2 waits"
    );

    // The canary comes back on 0.2.0, and its lookups start failing.
    chain.hello(0, "0.2.0", 30).await;
    store.step_rollouts(t + Duration::minutes(2)).await.unwrap();
    chain
        .lookups(0, 31, 30, t + Duration::minutes(30), LookupOutcome::Error)
        .await;
    // Not yet soaked: nothing decided.
    store
        .step_rollouts(t + Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(
        store
            .rollouts(Some(id), &central_store::scope::SiteScope::All)
            .await
            .unwrap()[0]
            .state,
        "running"
    );
    store
        .step_rollouts(t + Duration::minutes(63))
        .await
        .unwrap();

    let view = store
        .rollouts(Some(id), &central_store::scope::SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(view.state, "paused");
    let paused = view.transitions.last().unwrap();
    assert_eq!((paused.to_state.as_str(), paused.wave), ("paused", 1));
    assert!(
        paused
            .reason
            .contains("lookup success rate fell from 100.0 % to 0.0 %"),
        "{}",
        paused.reason
    );
    assert_eq!(paused.actor, "controller");
    let states: Vec<(&str, i32, &str)> = view
        .sites
        .iter()
        .map(|s| (s.site_code.as_str(), s.wave, s.state.as_str()))
        .collect();
    assert_eq!(states[0], (canary.as_str(), 1, "applied"));
    assert!(
        states[1..]
            .iter()
            .all(|(_, wave, state)| *wave == 2 && *state == "pending")
    );
    // Paused means paused: later passes target nobody.
    store
        .step_rollouts(t + Duration::minutes(90))
        .await
        .unwrap();
    assert_eq!(store.update_target(&chain.sites[1].0).await.unwrap(), None);

    // The operator rolls back: the canary is told its previous version; all of it recorded.
    let error = store
        .act_on_rollout(id, Action::Pause, "ops@chain")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("is paused"), "{error}");
    store
        .act_on_rollout(id, Action::Rollback, "ops@chain")
        .await
        .unwrap();
    let (_, version) = store
        .update_target(&chain.sites[0].0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, "0.1.0");
    let view = store
        .rollouts(Some(id), &central_store::scope::SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(view.state, "rolled_back");
    let trail: Vec<(&str, &str)> = view
        .transitions
        .iter()
        .map(|t| (t.to_state.as_str(), t.actor.as_str()))
        .collect();
    assert_eq!(
        trail,
        [
            ("running", "ops@chain"),
            ("paused", "controller"),
            ("rolled_back", "ops@chain")
        ]
    );
}

#[tokio::test]
async fn healthy_waves_advance_outside_opening_hours_until_the_rollout_completes() {
    let chain = chain(&["131000031", "131000032", "131000033", "131000034"]).await;
    let store = &chain.store;
    let t = OffsetDateTime::now_utc() - Duration::hours(5);
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
    let new = rollout(
        r#"{"target_version": "0.2.0", "soak_secs": 600,
            "waves": [{"share": 25}, {"share": 100}]}"#,
    );
    let id = store.create_rollout(&new, "ops@chain", t).await.unwrap();
    for i in 0..4 {
        chain
            .lookups(i, 1, 25, t - Duration::minutes(5), LookupOutcome::Valid)
            .await;
    }
    // Open all the time: the window never comes, nobody is targeted.
    store.step_rollouts(t + Duration::minutes(1)).await.unwrap();
    let view = store
        .rollouts(Some(id), &central_store::scope::SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert!(
        view.sites.iter().all(|s| s.state == "pending"),
        "{:?}",
        view.sites
    );
    // Closed all the time: the window is now.
    let closed: OpeningHours = serde_json::from_str(r#"{"weekly": {}}"#).unwrap();
    store
        .set_opening_hours(None, &closed, "ops@chain")
        .await
        .unwrap();

    let mut at = t + Duration::minutes(2);
    for wave in 1..=2 {
        store.step_rollouts(at).await.unwrap();
        let view = store
            .rollouts(Some(id), &central_store::scope::SiteScope::All)
            .await
            .unwrap()
            .remove(0);
        let targeted: Vec<usize> = view
            .sites
            .iter()
            .filter(|s| s.wave == wave)
            .map(|s| {
                chain
                    .sites
                    .iter()
                    .position(|(c, _)| c.as_str() == s.site_code)
                    .unwrap()
            })
            .collect();
        assert_eq!(targeted.len(), if wave == 1 { 1 } else { 3 }, "wave {wave}");
        for &i in &targeted {
            chain.hello(i, "0.2.0", 25).await;
            chain
                .lookups(i, 26, 25, at + Duration::minutes(1), LookupOutcome::Valid)
                .await;
        }
        store
            .step_rollouts(at + Duration::seconds(10))
            .await
            .unwrap(); // applied
        store
            .step_rollouts(at + Duration::seconds(20))
            .await
            .unwrap(); // wave done
        at += Duration::minutes(15);
        store.step_rollouts(at).await.unwrap(); // soaked: gates
        at += Duration::minutes(1);
    }
    let view = store
        .rollouts(Some(id), &central_store::scope::SiteScope::All)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(view.state, "completed", "{:?}", view.transitions);
    assert!(view.sites.iter().all(|s| s.state == "applied"));
    let reasons: Vec<&str> = view.transitions.iter().map(|t| t.reason.as_str()).collect();
    assert!(reasons[1].starts_with("wave 1 passed"), "{reasons:?}");
    assert!(reasons[2].starts_with("wave 2 passed"), "{reasons:?}");
}
