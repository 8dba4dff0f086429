//! Least privilege in PostgreSQL: central works as the application role `onshi_app`, which
//! cannot change or delete audit rows, even when granted the privilege by mistake.

use central::store::{self, DatabaseUrl, Store, migrate};
use e2e::TestDb;
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// `url` with its user replaced by `user` (the throwaway cluster trusts loopback).
fn url_as(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (_, host_and_db) = rest.split_once('@').expect("a user in the URL");
    format!("{scheme}://{user}@{host_and_db}")
}

/// Migrates as the owner, then returns a login role that is a member of `onshi_app` only.
async fn app_login(db: &TestDb) -> String {
    let owner = store::connect(&DatabaseUrl::new(&db.url), 2).unwrap();
    migrate::migrate(&owner).await.unwrap();
    let login = format!("central_{}", Uuid::new_v4().simple());
    db.client()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE ROLE {login} LOGIN IN ROLE onshi_app"))
        .await
        .unwrap();
    url_as(&db.url, &login)
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
