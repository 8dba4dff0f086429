//! The store against real PostgreSQL: migrations, idempotent ingest, and the contiguous
//! sequence that acks rest on.

use central_store::scope::SiteScope;
use central_store::{
    self as store, AlertThresholds, BatchWrite, DatabaseUrl, Pooler, Store, migrate,
};
use e2e::TestDb;
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use uuid::Uuid;

fn events(site: &str, sequences: &[u64]) -> Vec<FleetEvent> {
    sequences
        .iter()
        .map(|&s| FleetEvent::try_from(e2e::uplink::lookup_event(site, s)).unwrap())
        .collect()
}

/// One site's stream, opened with `produced` events said to be made: the site's code, the site
/// and the stream.
async fn one_stream(store: &Store, produced: u64) -> (String, SiteCode, StreamId) {
    let code = e2e::site_code("341071236");
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", produced)
        .await
        .unwrap();
    (code, site, stream)
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
    let store = crate::support::migrated_store(&db).await;
    let (site_code, site, stream) = one_stream(&store, 5).await;

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
    let store = crate::support::migrated_store(&db).await;
    let (site_code, site, stream) = one_stream(&store, 1).await;
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

fn event_at(site: &str, sequence: u64, at: time::OffsetDateTime) -> FleetEvent {
    let mut event = FleetEvent::try_from(e2e::uplink::lookup_event(site, sequence)).unwrap();
    event.occurred_at = at;
    event
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

#[tokio::test]
async fn a_group_of_batches_from_several_streams_commits_together_and_resends_are_stored_once() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let (a, b) = (e2e::site_code("341071236"), e2e::site_code("134012345"));
    let (site_a, site_b) = (SiteCode::parse(&a).unwrap(), SiteCode::parse(&b).unwrap());
    let (stream_a, stream_b) = (StreamId(Uuid::now_v7()), StreamId(Uuid::now_v7()));
    for (site, stream) in [(&site_a, stream_a), (&site_b, stream_b)] {
        store
            .open_stream(site, stream, "test", "0", 0)
            .await
            .unwrap();
    }
    let first_a = events(&a, &[1, 2, 3]);
    let group = vec![
        BatchWrite::new(site_a.clone(), stream_a, first_a.clone()).unwrap(),
        BatchWrite::new(site_b.clone(), stream_b, events(&b, &[1, 2])).unwrap(),
        // The same stream again in the same group (an old session still draining).
        BatchWrite::new(site_a.clone(), stream_a, events(&a, &[4, 5])).unwrap(),
    ];
    let outcomes: Vec<_> = store
        .ingest_group(&group)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .map(|o| (o.stored, o.duplicates, o.contiguous))
            .collect::<Vec<_>>(),
        vec![(3, 0, 5), (2, 0, 2), (2, 0, 5)]
    );

    // A resend after a lost ack takes the checked path.
    let outcome = store
        .ingest_batch(&site_a, stream_a, &first_a[1..])
        .await
        .unwrap();
    assert_eq!(
        (outcome.stored, outcome.duplicates, outcome.contiguous),
        (0, 2, 5)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 7);
}

#[tokio::test]
async fn an_event_id_reused_at_a_new_sequence_is_stored_once_without_failing_the_group() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let (code, site, stream) = one_stream(&store, 0).await;
    let first = events(&code, &[1]);
    store.ingest_batch(&site, stream, &first).await.unwrap();
    // A broken agent sends the same event again at sequence 2, beside a good event at 3: the
    // fast path's COPY meets the primary key, and the group is redone on the checked path.
    let mut reused = first[0].clone();
    reused.sequence = 2;
    let batch = vec![reused, events(&code, &[3]).remove(0)];
    let outcome = store.ingest_batch(&site, stream, &batch).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (1, 1));
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 2);
}

/// The backend behind the pool's one connection, whether that connection was outside any
/// transaction (the first statement of a transaction runs at the transaction's start: PostgreSQL's
/// "Current Date/Time"), and how many statements are prepared on it. Sent as a simple query,
/// which is one statement in one message.
async fn pooled_connection(pool: &deadpool_postgres::Pool) -> (String, bool, String) {
    #[allow(clippy::disallowed_methods)]
    let client = pool.get().await.unwrap();
    let messages = client
        .simple_query(
            "SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS outside,
                    (SELECT count(*) FROM pg_prepared_statements) AS prepared",
        )
        .await
        .unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    (
        row.get("pid").unwrap().to_string(),
        row.get("outside") == Some("t"),
        row.get("prepared").unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_group_leaves_its_connection_outside_any_transaction_with_no_statement_prepared() {
    // Ingest sends BEGIN and COMMIT with other statements (store::conn's pipelined
    // transaction), and closes the COPY's statement before COMMIT: a pooled connection must
    // come back as if nothing had run on it, or a transaction-mode pooler would leak
    // statements and the next user would find itself inside someone else's transaction.
    let db = TestDb::create().await.unwrap();
    let pool = store::connect(&DatabaseUrl::new(&db.url), 1).unwrap();
    migrate::migrate(&pool).await.unwrap();
    let store = Store::new(pool.clone());
    let (code, site, stream) = one_stream(&store, 0).await;
    // The fast path, the checked path (a resend), and a group the COPY fails in (an id reused
    // at a new sequence, redone batch by batch).
    let first = events(&code, &[1, 2]);
    store.ingest_batch(&site, stream, &first).await.unwrap();
    store.ingest_batch(&site, stream, &first).await.unwrap();
    let mut reused = first[0].clone();
    reused.sequence = 3;
    store.ingest_batch(&site, stream, &[reused]).await.unwrap();
    // PostgreSQL may not have processed the statement's close yet when a query checks right
    // after the commit; it is sent before the commit, so it has by then.
    let (pid, outside, prepared) = pooled_connection(&pool).await;
    assert!(outside, "the connection came back inside a transaction");
    assert_eq!(
        prepared, "0",
        "a statement was left prepared on the connection"
    );

    // A group that fails between BEGIN and COMMIT (a stream never opened) cannot roll back
    // without waiting: its connection is closed, not pooled.
    let unknown = StreamId(Uuid::now_v7());
    let error = store
        .ingest_batch(&site, unknown, &events(&code, &[1]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not registered"), "{error}");
    let (after, outside, _) = pooled_connection(&pool).await;
    assert_ne!(
        after, pid,
        "the connection left in a transaction was pooled again"
    );
    assert!(outside);
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn with_no_pooler_a_writer_prepares_its_group_statements_once_per_connection() {
    // With nothing pooling transactions (Pooler::None), the six statements of a group (the
    // streams' lock, their positions, three summaries and the COPY) stay prepared on the
    // connection for its life instead of being parsed and planned for every group; anything
    // else, such as the checked path of a resend, still runs unnamed and leaves nothing behind.
    let db = TestDb::create().await.unwrap();
    let pool = store::connect(&DatabaseUrl::new(&db.url), 1).unwrap();
    migrate::migrate(&pool).await.unwrap();
    let store = Store::new(pool.clone()).with_pooler(Pooler::None);
    let (code, site, stream) = one_stream(&store, 0).await;
    store
        .ingest_batch(&site, stream, &events(&code, &[1, 2]))
        .await
        .unwrap();
    let (pid, outside, prepared) = pooled_connection(&pool).await;
    assert!(outside, "the connection came back inside a transaction");
    assert_eq!(prepared, "6", "the group's six statements are kept");

    let more = events(&code, &[3, 4]);
    store.ingest_batch(&site, stream, &more).await.unwrap();
    let resend = store.ingest_batch(&site, stream, &more).await.unwrap();
    assert_eq!(resend.duplicates, 2, "the resend went the checked path");
    let (same, outside, prepared) = pooled_connection(&pool).await;
    assert_eq!(same, pid, "one connection throughout");
    assert!(outside);
    assert_eq!(
        prepared, "6",
        "later groups and the checked path prepared nothing more"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 4);

    // A group that fails between BEGIN and COMMIT still closes its connection; the next one
    // prepares the six again on its own.
    let unknown = StreamId(Uuid::now_v7());
    store
        .ingest_batch(&site, unknown, &events(&code, &[1]))
        .await
        .unwrap_err();
    store
        .ingest_batch(&site, stream, &events(&code, &[5]))
        .await
        .unwrap();
    let (after, outside, prepared) = pooled_connection(&pool).await;
    assert_ne!(
        after, pid,
        "the connection left in a transaction was pooled again"
    );
    assert!(outside);
    assert_eq!(prepared, "6");
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 5);
}

#[tokio::test]
async fn partitions_are_made_ahead_and_an_event_of_any_date_is_stored() {
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let now = time::OffsetDateTime::now_utc();
    store.ensure_partitions(now, 2).await.unwrap();
    let names: Vec<String> = store
        .partitions()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let this_month = format!("events_{:04}_{:02}", now.year(), now.month() as u8);
    assert!(names.contains(&this_month), "{names:?}");
    assert!(names.contains(&"events_default".to_string()), "{names:?}");
    assert_eq!(
        names.len(),
        4,
        "this month, two ahead and the default: {names:?}"
    );
    assert!(
        store.ensure_partitions(now, 2).await.unwrap().is_empty(),
        "a second run creates nothing"
    );

    let (code, site, stream) = one_stream(&store, 0).await;
    let future = time::macros::datetime!(2099-01-15 09:00 UTC);
    let past = time::macros::datetime!(1999-12-31 23:59 UTC);
    let batch = vec![
        event_at(&code, 1, now),
        event_at(&code, 2, future),
        event_at(&code, 3, past),
    ];
    let outcome = store.ingest_batch(&site, stream, &batch).await.unwrap();
    assert_eq!((outcome.stored, outcome.contiguous), (3, 3));
    assert_eq!(count(&db, "SELECT count(*) FROM events_default").await, 2);

    // When January 2099 comes within reach, its stranded row moves into its own partition.
    let created = store.ensure_partitions(future, 0).await.unwrap();
    assert_eq!(created, vec!["events_2099_01".to_string()]);
    assert_eq!(count(&db, "SELECT count(*) FROM events_2099_01").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM events_default").await, 1);
    // And the resend of all three is still recognised, partition or not.
    let outcome = store.ingest_batch(&site, stream, &batch).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (0, 3));
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 3);
}

#[tokio::test]
async fn alerts_open_once_after_their_threshold_and_resolve_when_the_condition_clears() {
    use std::time::Duration;
    let db = TestDb::create().await.unwrap();
    let store = crate::support::migrated_store(&db).await;
    let (code, site, stream) = one_stream(&store, 4).await;
    store
        .ingest_batch(&site, stream, &events(&code, &[1, 2, 4]))
        .await
        .unwrap();
    let patient = AlertThresholds {
        gap: Duration::from_secs(3600),
        divergence: Duration::from_secs(3600),
        unavailable: Duration::from_secs(3600),
    };
    let eager = AlertThresholds {
        gap: Duration::ZERO,
        divergence: Duration::ZERO,
        unavailable: Duration::ZERO,
    };

    // A gap (3 is missing) that has not yet lasted its threshold is no alert.
    assert_eq!(store.check_alerts(patient).await.unwrap().opened, 0);
    assert!(
        store
            .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
            .await
            .unwrap()
            .is_empty()
    );
    // Once it has, it opens, once.
    assert_eq!(store.check_alerts(eager).await.unwrap().opened, 1);
    assert_eq!(store.check_alerts(eager).await.unwrap().opened, 0);
    let open = store
        .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (
            open[0].kind.as_str(),
            open[0].site_code.as_str(),
            open[0].stream_id
        ),
        ("sequence_gap", code.as_str(), stream.0)
    );
    assert!(
        open[0].detail.contains("sequences 3.."),
        "{}",
        open[0].detail
    );

    // The agent reports more than central received: a divergence.
    store.record_heartbeat(&site, stream, 9).await.unwrap();
    assert_eq!(store.check_alerts(eager).await.unwrap().opened, 1);
    let kinds: Vec<String> = store
        .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert!(
        kinds.contains(&"produced_received_divergence".to_string()),
        "{kinds:?}"
    );

    // 3 arrives: the gap resolves; 5..=9 arrive: the divergence resolves.
    store
        .ingest_batch(&site, stream, &events(&code, &[3]))
        .await
        .unwrap();
    assert_eq!(store.check_alerts(eager).await.unwrap().resolved, 1);
    store
        .ingest_batch(&site, stream, &events(&code, &[5, 6, 7, 8, 9]))
        .await
        .unwrap();
    assert_eq!(store.check_alerts(eager).await.unwrap().resolved, 1);
    assert!(
        store
            .alerts(&central_store::AlertState::UNRESOLVED, 10, &SiteScope::All)
            .await
            .unwrap()
            .is_empty()
    );
    let all = store
        .alerts(&central_store::AlertState::ALL, 10, &SiteScope::All)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|a| a.resolved_at.is_some()));

    // A condition that clears before its threshold leaves nothing behind.
    store.record_heartbeat(&site, stream, 10).await.unwrap();
    store.check_alerts(patient).await.unwrap();
    store
        .ingest_batch(&site, stream, &events(&code, &[10]))
        .await
        .unwrap();
    store.check_alerts(patient).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM alerts").await, 2);

    let status = store.stream_statuses(&SiteScope::All).await.unwrap();
    assert_eq!(
        (
            status[0].produced,
            status[0].highest_received,
            status[0].contiguous,
            status[0].lag
        ),
        (10, 10, 10, 0)
    );
}

#[tokio::test]
async fn a_store_whose_database_is_unreachable_reports_unavailable() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = store::connect(
        &DatabaseUrl::new(format!("postgres://postgres@127.0.0.1:{port}/none")),
        2,
    )
    .unwrap();
    let store = Store::new(pool);
    let code = e2e::site_code("341071236");
    let site = SiteCode::parse(&code).unwrap();
    let error = store
        .ingest_batch(&site, StreamId(Uuid::now_v7()), &events(&code, &[1]))
        .await
        .expect_err("nothing can be stored without a database");
    assert!(error.is_unavailable(), "{error}");
    let status = tonic::Status::from(central_core::error::ServiceError::from(error));
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
}

#[tokio::test]
async fn events_stored_before_partitioning_move_into_monthly_partitions() {
    let db = TestDb::create().await.unwrap();
    let client = db.client().await.unwrap();
    // A database as the walking skeleton left it: migration 1 only, with events of two months.
    let first = &migrate::MIGRATIONS[0];
    let checksum = fleet_tls::identity::hex(
        ring::digest::digest(&ring::digest::SHA256, first.sql.as_bytes()).as_ref(),
    );
    client.batch_execute(first.sql).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (1, $1, $2)",
            &[&first.name, &checksum],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO events (event_id, site_code, stream_id, sequence, terminal_id,
                                 occurred_at, kind, body) VALUES
             (gen_random_uuid(), '3410712362', gen_random_uuid(), 1, 'T01',
              '2020-01-31 23:00:00+00', 'lookup', '{}'),
             (gen_random_uuid(), '3410712362', gen_random_uuid(), 1, 'T01',
              '2026-11-01 00:00:00+00', 'lookup', '{}')",
        )
        .await
        .unwrap();

    let pool = store::connect(&DatabaseUrl::new(&db.url), 2).unwrap();
    let applied = migrate::migrate(&pool).await.unwrap();
    assert!(applied.contains(&2), "{applied:?}");
    let partitions = Store::new(pool).partitions().await.unwrap();
    for (name, rows) in [
        ("events_2020_01", 1),
        ("events_2026_11", 1),
        ("events_default", 0),
    ] {
        assert!(
            partitions.contains(&(name.to_string(), rows)),
            "{name} with {rows} rows in {partitions:?}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn streamed_exports_beyond_their_slots_are_refused_until_one_ends() {
    let db = TestDb::create().await.unwrap();
    // A pool of 4: one export at a time, so the pages keep three connections.
    let store = crate::support::migrated_store(&db).await;
    let query = central_store::audit_search::AuditQuery::default();
    let scope = SiteScope::All;
    let first = store.audit_rows(&query, &scope).await.unwrap();
    let refused = store.audit_rows(&query, &scope).await.err();
    assert!(
        matches!(refused, Some(store::StoreError::ExportsBusy)),
        "a second export while the first streams is refused: {refused:?}"
    );
    // A page of the search is not an export: it is served while the export streams.
    assert!(store.audit_search(&query, &scope).await.is_ok());
    let answer = central_core::error::ServiceError::from(store::StoreError::ExportsBusy);
    assert_eq!(central_http::error::http_status(&answer), 429);
    assert_eq!(answer.retry_after_secs(), Some(10));
    assert!(answer.to_string().starts_with("書き出しが同時に多すぎます"));
    drop(first);
    assert!(store.audit_rows(&query, &scope).await.is_ok());
}
