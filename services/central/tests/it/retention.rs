//! Retention per event kind against real PostgreSQL: months are partitioned by kind, expiry
//! drops whole partitions once their period has run out, and verification tells the expired
//! (stubs keep each event's chain link) from the missing, with the seal over them still holding.
//!
//! Expiry reads the database's clock (migration 0018), so the fixture stores events whose
//! `occurred_at` lies months and years back: today's clock expires them, honestly. The
//! application role can neither pass a later time nor rewrite the policy.

use central_store::retention::RetentionRule;
use central_store::{self as store, DatabaseUrl, Store};
use e2e::TestDb;
use onshi_domain::chain::{ChainHash, Finding};
use onshi_domain::events::{EventBody, FleetEvent, LinkChange, LinkState, LinkTarget, StreamId};
use onshi_domain::site::SiteCode;
use time::{Duration, OffsetDateTime};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// One stream's events, linked as an agent links them: `(when, is a link change)` each.
fn chained(site: &str, events: &[(OffsetDateTime, bool)]) -> Vec<FleetEvent> {
    let mut head = ChainHash::GENESIS;
    events
        .iter()
        .enumerate()
        .map(|(i, (at, link_change))| {
            let mut event =
                FleetEvent::try_from(e2e::uplink::lookup_event(site, i as u64 + 1)).unwrap();
            event.occurred_at = *at;
            if *link_change {
                event.body = EventBody::LinkChange(LinkChange {
                    target: LinkTarget::Onshi,
                    state: LinkState::Up,
                    detail: None,
                    rtt_ms: Some(9),
                    line_type: None,
                });
            }
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
    now: OffsetDateTime,
}

/// Sequences 1-4: lookups 70 months ago (past every period); 5-8: lookups and link changes
/// 20 months ago (link changes past their 13 months, lookups within their 60); 9-10: now.
async fn fixture() -> Fixture {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let ancient = now - Duration::days(70 * 31);
    let old = now - Duration::days(20 * 30);
    for month in [ancient, old, now] {
        store.ensure_partitions(month, 0).await.unwrap();
    }
    // A real Hokkaido code of the corpus (prefecture 13 codes follow another check-digit rule).
    let code = "0110112489".to_string();
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    let minute = Duration::minutes(1);
    let plan: Vec<(OffsetDateTime, bool)> = (0..4)
        .map(|i| (ancient + minute * i, false))
        .chain((0..4).map(|i| (old + minute * i, i % 2 == 1)))
        .chain((0..2).map(|i| (now - minute * (2 - i), false)))
        .collect();
    store
        .open_stream(&site, stream, "test", "0", plan.len() as u64)
        .await
        .unwrap();
    let outcome = store
        .ingest_batch(&site, stream, &chained(&code, &plan))
        .await
        .unwrap();
    assert_eq!(outcome.contiguous, 10);
    Fixture {
        db,
        store,
        site,
        now,
    }
}

impl Fixture {
    async fn findings(&self) -> (bool, Vec<Finding>) {
        let verdict = self
            .store
            .verify_period(Some(&self.site), None, None)
            .await
            .unwrap();
        assert_eq!(verdict.streams.len(), 1, "{verdict:?}");
        (verdict.intact, verdict.streams[0].findings.clone())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn months_are_split_by_retention_and_expiry_drops_whole_partitions() {
    let f = fixture().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = central_store::sealing::SealKey::create(&key_dir.path().join("seal.key")).unwrap();
    // The head is sealed before anything expires.
    f.store.verify_chains(1_000).await.unwrap();
    f.store.seal_streams(&key, f.now).await.unwrap();

    let dropped = f.store.expire_events().await.unwrap();
    let names: Vec<(String, i64)> = dropped
        .iter()
        .map(|d| (d.partition.clone(), d.events))
        .collect();
    let ancient = names.iter().filter(|(n, _)| n.ends_with("_r60")).count();
    assert_eq!(
        ancient, 1,
        "the ancient month's default partition: {names:?}"
    );
    assert!(
        names.iter().any(|(n, e)| n.ends_with("_r13") && *e == 2),
        "the old month's link changes: {names:?}"
    );
    assert_eq!(
        names.iter().map(|(_, e)| e).sum::<i64>(),
        6,
        "4 ancient lookups and 2 old link changes: {names:?}"
    );
    assert_eq!(f.count("SELECT count(*) FROM events").await, 4);
    assert_eq!(f.count("SELECT count(*) FROM expired_events").await, 6);
    assert_eq!(
        f.count("SELECT count(*) FROM retention_expiries").await,
        dropped.len() as i64
    );
    // Run again: nothing more has expired.
    assert!(f.store.expire_events().await.unwrap().is_empty());

    let (intact, findings) = f.findings().await;
    assert!(intact, "{findings:?}");
    assert!(
        findings.contains(&Finding::Expired { first: 1, last: 4 }),
        "{findings:?}"
    );
    assert!(findings.contains(&Finding::Expired { first: 6, last: 6 }));
    assert!(findings.contains(&Finding::Expired { first: 8, last: 8 }));
    assert!(!findings.iter().any(|x| matches!(x, Finding::Seal { .. })));

    // An auditor's bundle carries the stubs and verifies offline: expired, not missing, and
    // the seal made before the expiry still holds.
    let bundle = f
        .store
        .export_bundle(&f.site, (None, None), "auditor-1", f.now)
        .await
        .unwrap();
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let verdict = central_store::audit::Bundle::parse(&bytes)
        .unwrap()
        .verify();
    assert!(verdict.intact, "{}", verdict.describe());
    assert_eq!(verdict.streams[0].seals, 1);
    assert!(
        verdict
            .describe()
            .contains("expired under the retention policy"),
        "{}",
        verdict.describe()
    );
}

#[tokio::test]
async fn a_deleted_or_forged_stub_is_not_mistaken_for_an_expired_event() {
    let f = fixture().await;
    f.store.expire_events().await.unwrap();
    let owner = f.db.client().await.unwrap();
    // Someone with the owner's access forges the link an expired event left.
    owner
        .execute(
            "UPDATE expired_events SET chain_hash = decode(repeat('00', 32), 'hex')
             WHERE sequence = 6",
            &[],
        )
        .await
        .unwrap();
    let (intact, findings) = f.findings().await;
    assert!(!intact);
    assert!(
        findings.contains(&Finding::Broken { sequence: 7 }),
        "{findings:?}"
    );
    owner
        .execute("DELETE FROM expired_events WHERE sequence = 8", &[])
        .await
        .unwrap();
    let (_, findings) = f.findings().await;
    assert!(
        findings
            .iter()
            .any(|x| matches!(x, Finding::Missing { first: 8, last: 8 })),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_changed_policy_shapes_the_months_made_after_it() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    store
        .set_retention(
            &RetentionRule {
                kind: "lookup".into(),
                months: 84,
            },
            "test",
        )
        .await
        .unwrap();
    let error = store
        .set_retention(
            &RetentionRule {
                kind: "lookups".into(),
                months: 12,
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not an event kind"), "{error}");
    let later = OffsetDateTime::now_utc() + Duration::days(5 * 365);
    let made = store.ensure_partitions(later, 0).await.unwrap();
    assert_eq!(made.len(), 1);
    let kinds: Vec<String> = db
        .client()
        .await
        .unwrap()
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&made[0]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let name = &made[0];
    assert_eq!(
        kinds,
        vec![
            format!("{name}_r13"),
            format!("{name}_r60"),
            format!("{name}_r84")
        ]
    );
    let policy = store.retention_policy().await.unwrap();
    assert_eq!(policy[0].kind, "*");
    let audited: i64 = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM security_events WHERE detail LIKE '%retention of lookup%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn the_application_role_cannot_turn_expiry_into_erasure() {
    let f = fixture().await;
    let app_url = f.db.app_login().await.unwrap();
    let app = e2e::connect(&app_url).await.unwrap();
    let app_store = Store::new(store::connect(&DatabaseUrl::new(&app_url), 2).unwrap());

    // The attack of issue 15: expire "as of" a far future, which dropped every partition.
    for attack in [
        "SELECT * FROM onshi_expire_events('9999-01-01')",
        "SELECT * FROM onshi_expire_events('9999-01-01'::timestamptz)",
    ] {
        let error = app.query(attack, &[]).await.expect_err(attack);
        assert_eq!(
            error.code(),
            Some(&SqlState::UNDEFINED_FUNCTION),
            "{attack}: {error}"
        );
    }
    assert_eq!(f.count("SELECT count(*) FROM events").await, 10);
    assert_eq!(f.count("SELECT count(*) FROM expired_events").await, 0);

    // Expiry by the database's clock, as the application role, drops only what ran out.
    let dropped = app_store.expire_events().await.unwrap();
    assert_eq!(dropped.iter().map(|d| d.events).sum::<i64>(), 6);
    assert_eq!(f.count("SELECT count(*) FROM events").await, 4);

    // The policy table is the owner's: no direct writes.
    for sql in [
        "UPDATE retention_policy SET months = 1",
        "INSERT INTO retention_policy (kind, months, updated_by) VALUES ('lookup', 1, 'x')",
        "DELETE FROM retention_policy",
        "UPDATE retention_floor SET months = 1",
    ] {
        let error = app.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    // Below the floor is refused with the floor in the message, through the API's path and
    // directly.
    let error = app_store
        .set_retention(
            &RetentionRule {
                kind: "lookup".into(),
                months: 12,
            },
            "admin-1",
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, store::StoreError::BadQuery(_)) && message.contains("60"),
        "{message}"
    );
    assert!(message.contains("保存期間"), "Japanese first: {message}");
    let error = app
        .execute("SELECT onshi_set_retention('link_change', 12, 'x')", &[])
        .await
        .expect_err("below the equipment kinds' floor");
    assert_eq!(error.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    assert_eq!(
        f.count("SELECT count(*) FROM retention_policy WHERE months < 13")
            .await,
        0
    );

    // A valid change goes through, audited with who asked and as which database role.
    app_store
        .set_retention(
            &RetentionRule {
                kind: "lookup".into(),
                months: 72,
            },
            "admin-1",
        )
        .await
        .unwrap();
    let role = app_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(user, _)| user.to_string())
        .unwrap();
    let audited =
        f.db.client()
            .await
            .unwrap()
            .query(
                "SELECT detail FROM security_events
             WHERE kind = 'admin_action' AND detail LIKE '%retention of lookup to 72%'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(audited.len(), 1);
    let detail: String = audited[0].get(0);
    assert!(
        detail.contains("admin-1") && detail.contains(&role),
        "{detail}"
    );
}
