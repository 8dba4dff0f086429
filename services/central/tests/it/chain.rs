//! The sites' hash chains against real PostgreSQL: the verifier that follows ingest, and the
//! audit check (`central verify`) that finds events altered, deleted or moved after storage.

use central_store::scope::SiteScope;
use std::time::Duration;

use central_store::{AlertThresholds, Store};
use e2e::TestDb;
use onshi_domain::chain::{ChainHash, Finding};
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use uuid::Uuid;

/// Events 1..=n of one stream, linked as an agent's outbox links them.
fn chained(site: &str, n: u64) -> Vec<FleetEvent> {
    let mut head = ChainHash::GENESIS;
    (1..=n)
        .map(|s| {
            let mut event = FleetEvent::try_from(e2e::uplink::lookup_event(site, s)).unwrap();
            let link = proto::chain::link(&head, &event);
            event.chain_hash = Some(link);
            head = link;
            event
        })
        .collect()
}

struct Fixture {
    db: TestDb,
    store: Store,
    site: SiteCode,
    stream: StreamId,
}

async fn fixture(n: u64) -> Fixture {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let code = e2e::site_code("341071236");
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", n)
        .await
        .unwrap();
    let outcome = store
        .ingest_batch(&site, stream, &chained(&code, n))
        .await
        .unwrap();
    assert_eq!(outcome.contiguous, n);
    Fixture {
        db,
        store,
        site,
        stream,
    }
}

impl Fixture {
    /// As the application role cannot: the test stands for someone with direct access.
    async fn tamper(&self, sql: &str) {
        let client = self.db.client().await.unwrap();
        let changed = client
            .execute(sql, &[&self.stream.0])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(changed > 0, "{sql} changed nothing");
    }

    /// What central's maintenance does: walk the chain, then seal today's head.
    async fn seal_today(&self, key: &central_store::sealing::SealKey) {
        self.store.verify_chains(1_000).await.unwrap();
        self.store
            .seal_streams(key, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    }

    async fn findings(&self) -> Vec<Finding> {
        let verdict = self
            .store
            .verify_period(Some(&self.site), None, None)
            .await
            .unwrap();
        assert_eq!(verdict.streams.len(), 1, "{verdict:?}");
        assert_eq!(
            verdict.intact,
            !verdict.streams[0].findings.iter().any(Finding::is_break)
        );
        verdict.streams[0].findings.clone()
    }
}

/// Central's maintenance walks a page of each stream per pass and rests after it: a stream
/// longer than a page is walked over several passes, each event once, and no link is missed at
/// the pages' seams.
#[tokio::test]
async fn the_background_verifier_walks_a_long_stream_a_page_per_pass() {
    let pace = central_store::VerifierPace::BACKGROUND;
    let f = fixture(2 * pace.page as u64 + 7).await;
    let mut walked = Vec::new();
    loop {
        let check = f.store.verify_chains_paced(1_000_000, pace).await.unwrap();
        assert_eq!(check.breaks, 0, "no break at a page's seam");
        if check.events == 0 {
            break;
        }
        walked.push(check.events);
    }
    assert_eq!(walked, [pace.page as u64, pace.page as u64, 7]);
}

/// A resting pass holds no transaction (and so no lock and no snapshot that would keep
/// PostgreSQL from pruning what ingest updates): another replica's pass walks on meanwhile,
/// from where the resting one stopped.
#[tokio::test]
async fn a_resting_verifier_pass_leaves_the_chain_to_another_replica() {
    let f = fixture(1_000).await;
    // Rests 99 times what a page took: long enough for the other pass to run whole.
    let pace = central_store::VerifierPace {
        page: 500,
        share: 0.01,
    };
    let resting = tokio::spawn({
        let store = f.store.clone();
        async move { store.verify_chains_paced(1_000_000, pace).await.unwrap() }
    });
    let client = f.db.client().await.unwrap();
    let through = || async {
        client
            .query_opt(
                "SELECT (walk->>'through')::bigint FROM chain_verification WHERE stream_id = $1",
                &[&f.stream.0],
            )
            .await
            .unwrap()
            .map_or(0, |row| row.get::<_, i64>(0))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while through().await < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first page was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = f.store.verify_chains(1_000_000).await.unwrap();
    assert_eq!(
        (other.events, other.breaks),
        (500, 0),
        "the other replica walked on"
    );
    // A pass held in one transaction shows its first page only once it has ended.
    assert!(
        !resting.is_finished(),
        "the first page became visible only when its pass ended"
    );
    let first = resting.await.unwrap();
    assert_eq!((first.events, first.breaks), (500, 0));
    assert_eq!(through().await, 1_000);
}

#[tokio::test]
async fn an_intact_chain_verifies_and_the_verifier_raises_no_alert() {
    let f = fixture(20).await;
    let verdict = f
        .store
        .verify_period(Some(&f.site), None, None)
        .await
        .unwrap();
    assert!(verdict.intact, "{}", verdict.describe());
    assert_eq!(verdict.events, 20);
    assert!(verdict.describe().starts_with("INTACT"));
    let check = f.store.verify_chains(1_000).await.unwrap();
    assert_eq!((check.events, check.breaks), (20, 0));
    // Walked once: the next pass has nothing new.
    assert_eq!(f.store.verify_chains(1_000).await.unwrap().events, 0);
    let eager = AlertThresholds {
        gap: Duration::ZERO,
        divergence: Duration::ZERO,
        unavailable: Duration::ZERO,
    };
    f.store.check_alerts(eager).await.unwrap();
    assert!(
        f.store
            .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_modified_event_is_found_at_its_sequence() {
    let f = fixture(10).await;
    f.tamper(
        "UPDATE events SET body = jsonb_set(body, '{outcome}', '\"invalid\"')
         WHERE stream_id = $1 AND sequence = 4",
    )
    .await;
    assert_eq!(f.findings().await, vec![Finding::Broken { sequence: 4 }]);
    // A changed column is found as well as a changed body.
    f.tamper("UPDATE events SET terminal_id = 'T99' WHERE stream_id = $1 AND sequence = 7")
        .await;
    assert_eq!(
        f.findings().await,
        vec![
            Finding::Broken { sequence: 4 },
            Finding::Broken { sequence: 7 }
        ]
    );
}

#[tokio::test]
async fn a_deleted_event_is_found_in_the_middle_and_at_the_end() {
    let f = fixture(10).await;
    f.tamper("DELETE FROM events WHERE stream_id = $1 AND sequence = 5")
        .await;
    assert_eq!(
        f.findings().await,
        vec![Finding::Missing { first: 5, last: 5 }]
    );
    f.tamper("DELETE FROM events WHERE stream_id = $1 AND sequence >= 9")
        .await;
    assert_eq!(
        f.findings().await,
        vec![
            Finding::Missing { first: 5, last: 5 },
            Finding::Missing { first: 9, last: 10 }
        ]
    );
}

#[tokio::test]
async fn reordered_events_are_found() {
    let f = fixture(10).await;
    // Swap the stream positions of events 3 and 6.
    f.tamper(
        "UPDATE events SET sequence = CASE sequence WHEN 3 THEN 6 ELSE 3 END
         WHERE stream_id = $1 AND sequence IN (3, 6)",
    )
    .await;
    let findings = f.findings().await;
    assert!(
        findings.contains(&Finding::Broken { sequence: 3 }),
        "{findings:?}"
    );
    assert!(
        findings.contains(&Finding::Broken { sequence: 6 }),
        "{findings:?}"
    );
    // A forged hash moves the break to the next event, never hides it.
    f.tamper("UPDATE events SET chain_hash = NULL WHERE stream_id = $1 AND sequence = 8")
        .await;
    assert!(
        f.findings()
            .await
            .contains(&Finding::HashRemoved { sequence: 8 })
    );
}

#[tokio::test]
async fn the_verifier_raises_a_chain_break_alert_naming_site_and_sequence() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let code = e2e::site_code("134012345");
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", 6)
        .await
        .unwrap();
    // An agent (forged or faulty) sends event 3 with a hash that does not follow from 2.
    let mut events = chained(&code, 6);
    events[2].chain_hash = Some(ChainHash::GENESIS);
    store.ingest_batch(&site, stream, &events).await.unwrap();
    let check = store.verify_chains(1_000).await.unwrap();
    assert_eq!(
        check.breaks, 2,
        "3 breaks its link, and 4 follows the stored hash of 3"
    );
    let patient = AlertThresholds {
        gap: Duration::from_secs(3600),
        divergence: Duration::from_secs(3600),
        unavailable: Duration::from_secs(3600),
    };
    store.check_alerts(patient).await.unwrap();
    let open = store
        .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(
        open.len(),
        1,
        "opened at once, whatever the thresholds: {open:?}"
    );
    assert_eq!(open[0].kind, "chain_break");
    assert_eq!(open[0].site_code, code);
    assert!(open[0].detail.contains("sequence 4"), "{}", open[0].detail);
    // A break is evidence: later checks keep it open.
    store.check_alerts(patient).await.unwrap();
    assert_eq!(
        store
            .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_period_starting_mid_stream_is_anchored_and_says_so() {
    let f = fixture(10).await;
    // Move events 1..=5 to the previous year, so the period holds 6..=10 only.
    f.tamper(
        "UPDATE events SET occurred_at = occurred_at - interval '1 year'
         WHERE stream_id = $1 AND sequence <= 5",
    )
    .await;
    let from = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let verdict = f
        .store
        .verify_period(Some(&f.site), Some(from), None)
        .await
        .unwrap();
    assert_eq!(verdict.events, 5);
    assert_eq!(verdict.streams[0].anchored_at, Some(6));
    assert!(verdict.describe().contains("taken as given"));
    // The moved events changed: the whole history shows it.
    let all = f.findings().await;
    assert_eq!(all.len(), 5, "{all:?}");
}

// ------------------------------------------------------------------------------- seals

fn seal_key(dir: &tempfile::TempDir) -> central_store::sealing::SealKey {
    central_store::sealing::SealKey::create(&dir.path().join("seal.key")).unwrap()
}

/// Re-links events `from..` of the stream from the stored hash before `from`: what someone who
/// can write the database does to make an edit pass the chain check.
async fn rewrite_tail(f: &Fixture, from: i64) {
    let client = f.db.client().await.unwrap();
    let rows = client
        .query(
            "SELECT sequence, event_id, terminal_id, occurred_at, body, chain_hash FROM events
             WHERE stream_id = $1 ORDER BY sequence",
            &[&f.stream.0],
        )
        .await
        .unwrap();
    let mut head = ChainHash::GENESIS;
    for row in rows {
        let sequence: i64 = row.get(0);
        let stored = ChainHash::from_slice(&row.get::<_, Vec<u8>>(5)).unwrap();
        if sequence < from {
            head = stored;
            continue;
        }
        let event = FleetEvent {
            id: onshi_domain::events::EventId::from_uuid(row.get(1)).unwrap(),
            site: f.site.clone(),
            terminal: onshi_domain::site::TerminalId::parse(&row.get::<_, String>(2)).unwrap(),
            occurred_at: row.get(3),
            sequence: sequence as u64,
            body: serde_json::from_value(row.get(4)).unwrap(),
            chain_hash: None,
        };
        head = proto::chain::link(&head, &event);
        client
            .execute(
                "UPDATE events SET chain_hash = $1 WHERE stream_id = $2 AND sequence = $3",
                &[&head.as_bytes().as_slice(), &f.stream.0, &sequence],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_daily_seal_is_made_once_and_verifies() {
    let f = fixture(10).await;
    let dir = tempfile::tempdir().unwrap();
    let key = seal_key(&dir);
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        f.store.seal_streams(&key, now).await.unwrap(),
        0,
        "nothing verified yet"
    );
    f.store.verify_chains(1_000).await.unwrap();
    assert_eq!(f.store.seal_streams(&key, now).await.unwrap(), 1);
    assert_eq!(
        f.store.seal_streams(&key, now).await.unwrap(),
        0,
        "once a day"
    );
    let verdict = f
        .store
        .verify_period(Some(&f.site), None, None)
        .await
        .unwrap();
    assert!(verdict.intact, "{}", verdict.describe());
    assert_eq!(verdict.streams[0].seals, 1);
    assert_eq!(verdict.seal_keys, vec![key.public_hex()]);
    let seals = f.store.seals(f.site.as_str(), f.stream.0).await.unwrap();
    assert_eq!(seals[0].seal.through_sequence, 10);
}

#[tokio::test]
async fn a_rewritten_tail_passes_the_chain_but_not_the_seal() {
    let f = fixture(10).await;
    let dir = tempfile::tempdir().unwrap();
    let key = seal_key(&dir);
    f.seal_today(&key).await;
    f.tamper(
        "UPDATE events SET body = jsonb_set(body, '{outcome}', '\"invalid\"')
         WHERE stream_id = $1 AND sequence = 6",
    )
    .await;
    rewrite_tail(&f, 6).await;
    let findings = f.findings().await;
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        matches!(&findings[0], Finding::Seal { sequence: 10, problem, .. } if problem.contains("rewritten")),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_forged_or_removed_seal_is_found() {
    let f = fixture(5).await;
    let dir = tempfile::tempdir().unwrap();
    let key = seal_key(&dir);
    let today = time::OffsetDateTime::now_utc();
    f.store.verify_chains(1_000).await.unwrap();
    f.store.seal_streams(&key, today).await.unwrap();
    // More events, and the next day's seal.
    let more: Vec<_> = {
        let mut all = chained(f.site.as_str(), 8);
        // The fixture's events 1..=5 have other ids: link 6..=8 to the stored head of 5.
        let client = f.db.client().await.unwrap();
        let head: Vec<u8> = client
            .query_one(
                "SELECT chain_hash FROM events WHERE stream_id = $1 AND sequence = 5",
                &[&f.stream.0],
            )
            .await
            .unwrap()
            .get(0);
        let mut head = ChainHash::from_slice(&head).unwrap();
        all.drain(..5);
        for event in &mut all {
            let link = proto::chain::link(&head, event);
            event.chain_hash = Some(link);
            head = link;
        }
        all
    };
    f.store
        .ingest_batch(&f.site, f.stream, &more)
        .await
        .unwrap();
    f.store.verify_chains(1_000).await.unwrap();
    let tomorrow = today + time::Duration::days(1);
    assert_eq!(f.store.seal_streams(&key, tomorrow).await.unwrap(), 1);
    assert!(f.findings().await.is_empty());

    // A signature that is not central's.
    f.tamper(
        "UPDATE seals SET signature = set_byte(signature, 0, get_byte(signature, 0) # 1)
         WHERE stream_id = $1 AND through_sequence = 8",
    )
    .await;
    let findings = f.findings().await;
    assert!(
        findings
            .iter()
            .any(|x| matches!(x, Finding::Seal { sequence: 8, problem, .. } if problem.contains("signature"))),
        "{findings:?}"
    );
    // The first day's seal removed: the second no longer follows.
    f.tamper("DELETE FROM seals WHERE stream_id = $1 AND through_sequence = 5")
        .await;
    let findings = f.findings().await;
    assert!(
        findings
            .iter()
            .any(|x| matches!(x, Finding::Seal { sequence: 8, problem, .. } if problem.contains("previous seal"))),
        "{findings:?}"
    );
}

// ------------------------------------------------------------------------------- bundles

#[tokio::test]
async fn an_exported_bundle_verifies_offline_and_any_tampering_fails() {
    let f = fixture(12).await;
    let dir = tempfile::tempdir().unwrap();
    let key = seal_key(&dir);
    f.seal_today(&key).await;
    let bundle = f
        .store
        .export_bundle(
            &f.site,
            (None, None),
            "auditor-1",
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    // The export is itself audited, naming who exported what.
    let audited: String =
        f.db.client()
            .await
            .unwrap()
            .query_one(
                "SELECT detail FROM security_events WHERE kind = 'audit_export'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert!(
        audited.contains("auditor-1") && audited.contains("12 events"),
        "{audited}"
    );

    // Written and read back, it verifies by itself.
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let verdict = central_store::audit::Bundle::parse(&bytes)
        .unwrap()
        .verify();
    assert!(verdict.intact, "{}", verdict.describe());
    assert_eq!((verdict.events, verdict.streams[0].seals), (12, 1));
    assert_eq!(verdict.seal_keys, vec![key.public_hex()]);

    let tampered = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        edit(&mut json);
        let bundle =
            central_store::audit::Bundle::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        bundle.verify()
    };
    // An event's outcome changed.
    let verdict = tampered(&|j| j["streams"][0]["events"][3]["body"]["outcome"] = "invalid".into());
    assert!(!verdict.intact);
    assert_eq!(
        verdict.streams[0].findings,
        vec![Finding::Broken { sequence: 4 }]
    );
    // An event removed.
    let verdict = tampered(&|j| {
        j["streams"][0]["events"].as_array_mut().unwrap().remove(5);
    });
    assert_eq!(
        verdict.streams[0].findings,
        vec![Finding::Missing { first: 6, last: 6 }]
    );
    // The last events dropped: the seal no longer finds its event.
    let verdict = tampered(&|j| {
        j["streams"][0]["events"]
            .as_array_mut()
            .unwrap()
            .truncate(10);
    });
    assert!(!verdict.intact, "{}", verdict.describe());
    // A seal that names another head.
    let verdict = tampered(&|j| {
        j["streams"][0]["seals"][0]["seal"]["through_sequence"] = 11.into();
    });
    assert!(!verdict.intact, "{}", verdict.describe());
    // Not a bundle at all.
    assert!(central_store::audit::Bundle::parse(b"{\"format\":\"something else\"}").is_err());
}
