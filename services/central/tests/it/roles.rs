//! Least privilege in PostgreSQL: central works as the application role `onshi_app`, which
//! cannot change or delete audit rows, even when granted the privilege by mistake; and the
//! real central process refuses to serve as the schema owner unless told it is development.

use central_store::{self as store, DatabaseUrl, Store};
use e2e::TestDb;
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use std::process::Stdio;
use tokio_postgres::error::SqlState;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use uuid::Uuid;

/// Migrates as the owner, then returns a login role that is a member of `onshi_app` only.
async fn app_login(db: &TestDb) -> String {
    crate::support::migrated_pool(db).await;
    db.app_login().await.unwrap()
}

fn events(site: &str, sequences: std::ops::RangeInclusive<u64>) -> Vec<FleetEvent> {
    sequences
        .map(|s| FleetEvent::try_from(e2e::uplink::lookup_event(site, s)).unwrap())
        .collect()
}

#[tokio::test]
async fn the_application_role_stores_and_maintains_but_cannot_change_audit_rows() {
    let db = TestDb::create().await.unwrap();
    let app_url = app_login(&db).await;
    let store = Store::new(store::connect(&DatabaseUrl::new(&app_url), 2).unwrap());

    // What central does as the application role works.
    let code = e2e::site_code("341071236");
    let site = SiteCode::parse(&code).unwrap();
    let stream = StreamId(Uuid::now_v7());
    store
        .open_stream(&site, stream, "test", "0", 3)
        .await
        .unwrap();
    let outcome = store
        .ingest_batch(&site, stream, &events(&code, 1..=3))
        .await
        .unwrap();
    assert_eq!(outcome.stored, 3);
    // A month three years out, beyond what migrations made: created through the owner's function.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(3 * 365);
    let created = store.ensure_partitions(later, 0).await.unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    store.verify_chains(100).await.unwrap();
    store
        .record_security_event("test", Some(&code), None, "a refused batch")
        .await
        .unwrap();

    // Changing audit rows is refused.
    let app = e2e::connect(&app_url).await.unwrap();
    for sql in [
        "UPDATE events SET terminal_id = 'T99'",
        "DELETE FROM events",
        "UPDATE security_events SET detail = 'nothing happened'",
        "DELETE FROM security_events",
        "TRUNCATE events",
    ] {
        let error = app.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    // Direct access to a partition is refused too.
    let error = app
        .execute("DELETE FROM events_default", &[])
        .await
        .expect_err("a partition is no way around it");
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{error}"
    );

    // A privilege granted by mistake still changes nothing: the trigger refuses.
    db.client()
        .await
        .unwrap()
        .batch_execute("GRANT UPDATE, DELETE ON events, security_events TO onshi_app")
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET terminal_id = 'T99'",
        "DELETE FROM security_events",
    ] {
        let error = app.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
        let message = error
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    let stored: i64 = app
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3, "nothing was changed or deleted");
}

/// central serving as `database_url`'s role with extra `args`: its readiness line (None when it
/// exited instead) and what it logged.
async fn serve_as(pki: &e2e::Pki, database_url: &str, args: &[&str]) -> (Option<String>, String) {
    let mut command = e2e::central_serve(pki, args);
    command
        .env("DATABASE_URL", database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let ready = tokio::time::timeout(e2e::patience(), stdout.next_line())
        .await
        .expect("central starts or exits in time")
        .unwrap();
    if ready.is_some() {
        child.kill().await.unwrap();
    }
    child.wait().await.unwrap();
    let mut logged = String::new();
    stderr.read_to_string(&mut logged).await.unwrap();
    (ready, logged)
}

#[tokio::test(flavor = "multi_thread")]
async fn central_refuses_to_serve_as_the_schema_owner_unless_told_it_is_development() {
    let db = TestDb::create().await.unwrap();
    let pki = e2e::Pki::new(&[]).unwrap();
    // The harness's URL is the server's superuser, who owns the schema (as the chart and the
    // compose file used to serve).
    let (ready, logged) = serve_as(&pki, &db.url, &[]).await;
    assert!(ready.is_none(), "central served as the owner: {ready:?}");
    assert!(
        logged.contains("refuses to serve") && logged.contains("is a superuser"),
        "{logged}"
    );
    assert!(
        logged.contains("onshi_app"),
        "the error says what to do: {logged}"
    );
    let migrated: bool = db
        .client()
        .await
        .unwrap()
        .query_one("SELECT to_regclass('events') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!migrated, "a refused owner changed nothing");

    // The development flag serves, and says so.
    let (ready, logged) = serve_as(&pki, &db.url, &["--allow-schema-owner"]).await;
    assert!(ready.is_some(), "{logged}");
    assert!(logged.contains("DEVELOPMENT ONLY"), "{logged}");

    // A plain owner (not a superuser) that owns the schema's tables is refused too.
    let owner = format!("owner_{}", Uuid::new_v4().simple());
    let admin = db.client().await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN; ALTER TABLE events OWNER TO {owner}"
        ))
        .await
        .unwrap();
    let (ready, logged) = serve_as(&pki, &e2e::with_user(&db.url, &owner), &["--no-migrate"]).await;
    assert!(ready.is_none(), "central served as the owner of events");
    assert!(logged.contains("owns the events table"), "{logged}");
    admin
        .batch_execute(&format!(
            "ALTER TABLE events OWNER TO CURRENT_USER; DROP ROLE {owner}"
        ))
        .await
        .unwrap();

    // Its own login role in onshi_app serves, without a warning.
    let (ready, logged) = serve_as(&pki, &db.app_login().await.unwrap(), &["--no-migrate"]).await;
    assert!(ready.is_some(), "{logged}");
    assert!(!logged.contains("DEVELOPMENT ONLY"), "{logged}");
}
