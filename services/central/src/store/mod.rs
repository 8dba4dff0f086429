//! Everything central keeps in PostgreSQL. Only this module knows SQL.

mod events;
pub mod migrate;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use events::{BatchOutcome, SiteSummary, StoredEvent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
    #[error(
        "migration {version} ({name}) was changed after it was applied; ship a new migration instead"
    )]
    MigrationEdited { version: i32, name: &'static str },
    #[error(
        "the database schema (version {database}) is newer than this binary knows ({binary}); upgrade central"
    )]
    SchemaTooNew { database: i32, binary: i32 },
}

/// A database URL; never printed, because it may hold a password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

/// Opens a connection pool. Connections are made lazily, so this does not fail when PostgreSQL
/// is down; the first query does.
pub fn connect(url: &DatabaseUrl, max_size: usize) -> Result<Pool, StoreError> {
    let config =
        tokio_postgres::Config::from_str(&url.0).map_err(|e| StoreError::Url(e.to_string()))?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .map_err(|e| StoreError::Url(e.to_string()))
}

/// Central's store: the pool plus the queries.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
