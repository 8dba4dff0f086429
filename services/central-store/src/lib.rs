//! Everything central keeps in PostgreSQL, and the pieces the store itself needs: the audit
//! trail's checks (`audit`), the seal signing key (`sealing`) and Japan time in messages
//! (`jst`). Invariant: the only central crate that knows SQL, tokio-postgres or
//! deadpool-postgres (a tidy test reads the crates' manifests); statements run through `conn`
//! (`clippy.toml` refuses `Pool::get` elsewhere).

pub(crate) mod access_recheck;
pub(crate) mod access_rules;
pub mod accounts;
pub mod adoption;
pub mod alerts;
pub mod audit;
pub mod audit_search;
pub mod availability;
pub mod certificates;
pub mod chain;
mod conn;
mod copy_rows;
pub mod dashboard;
pub mod dashboard_rollout;
pub mod durability;
pub(crate) mod events;
pub mod fleet_gauges;
pub mod grace;
mod ingest;
pub mod jst;
pub mod migrate;
pub mod notifications;
pub(crate) mod partitions;
pub mod retention;
pub mod revocations;
pub(crate) mod roles;
pub mod rollouts;
pub mod scope;
pub mod sealing;
pub(crate) mod seals;
pub mod summaries;
pub(crate) mod tls;

use std::str::FromStr;

pub(crate) use conn::{Conn, Tx};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use alerts::{Acknowledgement, Alert, AlertState, AlertThresholds, StreamStatus};
pub use audit_search::{AuditQuery, AuditTotals};
pub use certificates::{CertificateAlert, CertificateAlertDays, CertificateRow};
pub use chain::VerifierPace;
pub use events::{SiteSummary, StoredEvent, StoredInventory};
pub use ingest::{BatchOutcome, BatchWrite, WriteMethod};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Shown without PostgreSQL's DETAIL, which may quote a row (an event body).
    #[error("database error: {}", db_summary(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A group transaction failed as a whole (the connection, not a statement): every batch in
    /// it shares the error.
    #[error("{0}")]
    Group(std::sync::Arc<StoreError>),
    #[error(
        "PostgreSQL did not commit within {0:?} (slow or down); the agent keeps its events and retries"
    )]
    Timeout(std::time::Duration),
    #[error("central is shutting down; the agent keeps its events and retries")]
    ShuttingDown,
    /// Every slot for a streamed export is taken (see `Store::export_slot`).
    #[error("too many exports are running at once")]
    ExportsBusy,
    #[error("stream {stream} of site {site} is not registered: the session must say hello first")]
    UnknownStream { site: String, stream: uuid::Uuid },
    /// A search that cannot be run as asked (the message says why, for the person asking).
    #[error("{0}")]
    BadQuery(String),
    /// A statement a pipelined transaction would have run outside itself (store::conn): a bug
    /// in central, refused before anything was sent.
    #[error("statement refused: {0}")]
    Refused(&'static str),
    /// A value central could not put into PostgreSQL's binary form (a bug, not bad input).
    #[error("a value could not be encoded for PostgreSQL: {0}")]
    Encode(String),
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
    /// A stored value this binary cannot read (written by a newer central, or edited by hand).
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
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

/// What stands between central and PostgreSQL, which decides whether a prepared statement may
/// outlive its transaction on a connection (`store::conn`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`) may be: each
    /// transaction may run on a different server connection, so no statement outlives its
    /// transaction. The default, as it is right whatever is in between.
    #[default]
    Transaction,
    /// PostgreSQL itself, or a pooler in session mode: a connection is one server connection
    /// for its whole life. Ingest's writers then keep their statements prepared on their
    /// connections instead of having PostgreSQL parse and plan each one for every group.
    None,
}

/// Opens a connection pool. Connections are made lazily, so this does not fail when PostgreSQL
/// is down; the first query does.
pub fn connect(url: &DatabaseUrl, max_size: usize) -> Result<Pool, StoreError> {
    // sslmode=verify-full and sslrootcert are central's own (tls.rs); the rest is
    // tokio-postgres's.
    let (url, tls) = tls::split_url(&url.0)?;
    let mut config =
        tokio_postgres::Config::from_str(&url).map_err(|e| StoreError::Url(e.to_string()))?;
    // No JIT: central's queries are short and index-driven, and compiling them cost more than
    // running them (0.7 s on the adoption proofs over 1,000 sites).
    let options = match config.get_options() {
        Some(given) => format!("{given} -c jit=off"),
        None => "-c jit=off".to_string(),
    };
    config.options(options);
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(config, tls, recycling),
        None => Manager::from_config(config, tokio_postgres::NoTls, recycling),
    };
    // Bounded waits, so that a session facing a dead or saturated database answers UNAVAILABLE
    // instead of hanging on a pool slot.
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Url(e.to_string()))
}

impl StoreError {
    /// Whether the failure is PostgreSQL (or the way to it) being unavailable, as opposed to a
    /// bug or a refused statement: callers answer UNAVAILABLE and the agent retries.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Db(error) => error.code().is_none_or(|code| {
                // Class 08: connection exception; 57P0x: shutdown, crash, cannot connect now;
                // 53xxx: insufficient resources; 40xxx: serialization failure / deadlock.
                let code = code.code();
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code.starts_with("40")
                    || code == "57014"
            }),
            StoreError::Timeout(_) | StoreError::ShuttingDown => true,
            StoreError::Group(inner) => inner.is_unavailable(),
            _ => false,
        }
    }
}

/// A PostgreSQL error as message and SQLSTATE only; other errors (connection) as they are.
fn db_summary(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Stream sequences are u64 on the wire and bigint in PostgreSQL.
pub(crate) fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Central's store: the pool plus the queries.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// A replica's pool for reads that tolerate lag (`--read-database-url`); `None`: the
    /// primary serves them too.
    replica: Option<Pool>,
    method: WriteMethod,
    /// Ingest's connections keep their statements prepared ([`Pooler::None`]). Cleared for the
    /// life of the process when PostgreSQL says a kept statement does not exist: a
    /// transaction-mode pooler is in between after all ([`Store::stop_keeping_statements`]).
    keeps_statements: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Streamed exports at once: each holds a read connection for its whole download, so a
    /// quarter of the read pool at most, and the pages and the API keep the rest.
    exports: std::sync::Arc<tokio::sync::Semaphore>,
}

fn export_slots(reads: &Pool) -> std::sync::Arc<tokio::sync::Semaphore> {
    std::sync::Arc::new(tokio::sync::Semaphore::new(
        (reads.status().max_size / 4).max(1),
    ))
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        let exports = export_slots(&pool);
        Self {
            pool,
            replica: None,
            method: WriteMethod::default(),
            keeps_statements: Default::default(),
            exports,
        }
    }

    /// The same store reading the dashboard's pages, the JSON API's listings and the auditor's
    /// search from a replica. Ingest, acks, resume points and every write stay on `pool`.
    pub fn with_replica(mut self, replica: Pool) -> Self {
        self.exports = export_slots(&replica);
        self.replica = Some(replica);
        self
    }

    /// A slot for a streamed export (audit CSV, certificates CSV), held until its stream is
    /// dropped; refused with [`StoreError::ExportsBusy`] when every slot is taken.
    pub(crate) fn export_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| StoreError::ExportsBusy)
    }

    /// Where reads that tolerate a replica's lag go.
    pub(crate) fn reader(&self) -> &Pool {
        self.replica.as_ref().unwrap_or(&self.pool)
    }

    /// A connection to the primary, for writes and reads that must not lag.
    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        let conn = conn::checkout(&self.pool).await?;
        let keeps = self
            .keeps_statements
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok(conn.keeping_statements(keeps))
    }

    /// A connection for reads that tolerate a replica's lag ([`Store::reader`]).
    pub(crate) async fn read_conn(&self) -> Result<Conn, StoreError> {
        conn::checkout(self.reader()).await
    }

    /// The same store writing new rows with `method` (the benchmark compares them).
    pub fn with_write_method(mut self, method: WriteMethod) -> Self {
        self.method = method;
        self
    }

    /// What stands between this store and PostgreSQL ([`Pooler`]); with [`Pooler::None`],
    /// ingest's group statements stay prepared on the pool's connections.
    pub fn with_pooler(mut self, pooler: Pooler) -> Self {
        self.keeps_statements = std::sync::Arc::new((pooler == Pooler::None).into());
        self
    }

    /// Stops keeping statements on ingest's connections, for good; `true` the first time.
    pub(crate) fn stop_keeping_statements(&self) -> bool {
        self.keeps_statements
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The primary pool's connections now (central's `central_db_pool_connections` gauge).
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            in_use: status.size.saturating_sub(status.available),
            idle: status.available,
            max: status.max_size,
            waiting: status.waiting,
        }
    }
}

/// The primary pool's connections at one moment: in use, idle, the pool's maximum, and callers
/// waiting for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub in_use: usize,
    pub idle: usize,
    pub max: usize,
    pub waiting: usize,
}

/// Records an administrative action (who changed what through the API) in `security_events`,
/// in the transaction that makes the change, so the change and its audit row commit together.
pub(crate) async fn audit_admin(
    tx: &Tx<'_>,
    site: Option<&str>,
    detail: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
         VALUES ('admin_action', $1, NULL, $2)",
        &[&site, &detail],
    )
    .await?;
    Ok(())
}
