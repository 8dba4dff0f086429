//! The store against real PostgreSQL: migrations, idempotent ingest, and the contiguous
//! sequence that acks rest on.

use central::store::{self, DatabaseUrl, Store, migrate};
use e2e::TestDb;
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use uuid::Uuid;

async fn store(db: &TestDb) -> Store {
    let pool = store::connect(&DatabaseUrl::new(&db.url), 4).unwrap();
    migrate::migrate(&pool).await.unwrap();
    Store::new(pool)
}

fn events(site: &str, sequences: &[u64]) -> Vec<FleetEvent> {
    sequences
        .iter()
        .map(|&s| FleetEvent::try_from(e2e::uplink::lookup_event(site, s)).unwrap())
        .collect()
}

#[tokio::test]
async fn migrations_apply_once_and_report_where_the_database_stands() {
    let db = TestDb::create().await.unwrap();
    let pool = store::connect(&DatabaseUrl::new(&db.url), 2).unwrap();
    let before = migrate::status(&pool).await.unwrap();
    assert_eq!(before.current_version, 0);
    let applied = migrate::migrate(&pool).await.unwrap();
    assert_eq!(applied, (1..=before.latest_version).collect::<Vec<_>>());
    assert!(
        migrate::migrate(&pool).await.unwrap().is_empty(),
        "a second run applies nothing"
    );
    let after = migrate::status(&pool).await.unwrap();
    assert_eq!(after.current_version, after.latest_version);
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = TestDb::create().await.unwrap();
    let pool = store::connect(&DatabaseUrl::new(&db.url), 2).unwrap();
    migrate::migrate(&pool).await.unwrap();
    db.client()
        .await
        .unwrap()
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let error = migrate::migrate(&pool).await.unwrap_err();
    assert!(
        matches!(error, store::StoreError::MigrationEdited { version: 1, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn the_contiguous_sequence_never_passes_a_gap() {
    let db = TestDb::create().await.unwrap();
    let store = store(&db).await;
    let site_code = e2e::site_code("341071236");
    let site = SiteCode::parse(&site_code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", 5)
        .await
        .unwrap();

    let outcome = store
        .ingest_batch(&site, stream, &events(&site_code, &[1, 2]))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.contiguous), (2, 2));
    // 3 is missing: 4 and 5 are stored but the contiguous run, and so the ack, stays at 2.
    let outcome = store
        .ingest_batch(&site, stream, &events(&site_code, &[4, 5]))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.contiguous), (2, 2));
    let outcome = store
        .ingest_batch(&site, stream, &events(&site_code, &[3]))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.contiguous), (1, 5));
    // A later hello learns where central stands.
    assert_eq!(
        store
            .open_stream(&site, stream, "test", "0", 5)
            .await
            .unwrap(),
        5
    );
}

#[tokio::test]
async fn a_different_event_at_a_taken_sequence_is_refused_and_audited() {
    let db = TestDb::create().await.unwrap();
    let store = store(&db).await;
    let site_code = e2e::site_code("341071236");
    let site = SiteCode::parse(&site_code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", 1)
        .await
        .unwrap();
    store
        .ingest_batch(&site, stream, &events(&site_code, &[1]))
        .await
        .unwrap();

    let outcome = store
        .ingest_batch(&site, stream, &events(&site_code, &[1]))
        .await
        .unwrap();
    assert_eq!(
        (outcome.stored, outcome.duplicates, outcome.conflicts),
        (0, 0, 1)
    );
    let client = db.client().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'conflicting_sequence'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}
