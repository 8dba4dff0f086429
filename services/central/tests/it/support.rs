//! What every test of central's library starts from, in one place (as zero-to-production's
//! `spawn_app`): a fresh database, migrated by its owner, and a [`Store`] over it.

use central_store::{self as store, DatabaseUrl, Store, migrate};
use e2e::TestDb;

/// A store over `db`, migrated, connecting as the database's owner (the tests' superuser):
/// for tests that seed or inspect what central's role may not touch.
pub async fn migrated_store(db: &TestDb) -> Store {
    Store::new(migrated_pool(db).await)
}

/// The migrated pool of [`migrated_store`], for tests that wrap it themselves.
pub async fn migrated_pool(db: &TestDb) -> deadpool_postgres::Pool {
    let pool = store::connect(&DatabaseUrl::new(&db.url), 4).unwrap();
    migrate::migrate(&pool).await.unwrap();
    pool
}

/// A store over `db` as central runs in production: migrated by the owner, serving as a login
/// role in `onshi_app` only ([`TestDb::app_login`]).
pub async fn app_store(db: &TestDb) -> Store {
    migrated_pool(db).await;
    let app = db.app_login().await.unwrap();
    Store::new(store::connect(&DatabaseUrl::new(&app), 4).unwrap())
}
