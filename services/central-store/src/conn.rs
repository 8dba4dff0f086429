//! The connections every store query runs on: statements that need no session, so central
//! works behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`), where each
//! transaction, and each statement outside one, may run on a different server connection.
//!
//! tokio-postgres runs `client.query("…", params)` as two round trips: it prepares a *named*
//! statement, then binds and executes it. Behind a transaction-mode pooler the second round
//! trip may reach a server connection that never saw the first ("prepared statement "s68"
//! does not exist"). Here every statement is sent as one *unnamed* Parse/Bind/Execute in a
//! single round trip (`query_typed`), with the parameter types PostgreSQL inferred for that SQL
//! text the first time this process ran it. Learning them prepares the statement inside a
//! transaction, which a pooler keeps on one server connection, and closes it before the
//! commit. So no statement outlives its transaction on any server connection, and a statement
//! already learned costs one round trip instead of two, pooler or not.
//!
//! Statements that must share a transaction use [`Tx`]; `COPY` runs inside one, its statement
//! prepared and closed within it (unless the connection keeps it: below).
//!
//! Parsing, analysing and planning each statement again costs PostgreSQL little for a page,
//! but about a quarter of a writer backend's CPU for ingest's small groups (six statements a
//! group; README, "Ingest", fifth session). When nothing pools transactions between central and PostgreSQL
//! ([`super::Pooler::None`]), the connections ingest writes on keep their group statements
//! prepared by name instead ([`Conn::keeping_statements`], [`Conn::learn`]). Should one turn
//! out missing on its connection (a transaction pooler after all), the store stops keeping
//! them (`Store::stop_keeping_statements`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use bytes::Bytes;
use deadpool_postgres::{Object, Pool, Transaction};
use futures_util::SinkExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, CopyInSink, Error, Row, RowStream, Statement};

use super::StoreError;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Checks a connection out of `pool`: the one place central's code does (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub(crate) async fn checkout(pool: &Pool) -> Result<Conn, StoreError> {
    Ok(Conn {
        client: Some(pool.get().await?),
        discard: false,
        keeps: false,
        kept: HashMap::new(),
    })
}

/// A pooled connection outside any transaction: each statement commits on its own.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Always present until the connection is dropped.
    client: Option<Object>,
    /// A pipelined transaction was left open on it: it is closed instead of returned to the
    /// pool, where the next user would find itself inside that transaction.
    discard: bool,
    /// Statements [`Conn::learn`]s are kept prepared on the server connection, for its life.
    keeps: bool,
    /// Those statements, by SQL text, for this checkout (the connection keeps them longer:
    /// deadpool's per-connection statement cache).
    kept: HashMap<String, Statement>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.discard
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

impl Conn {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }

    /// With `keeps`, the statements this connection learns stay prepared on it, by name, for
    /// its life, and its pipelined transactions run them as such: only where one connection is
    /// one server connection for its whole life ([`super::Pooler::None`]).
    pub(crate) fn keeping_statements(mut self, keeps: bool) -> Self {
        self.keeps = keeps;
        self
    }

    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.client().query_typed(sql, &typed(params, &types)).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let types = self.types_of(sql).await?;
        self.client()
            .query_typed_one(sql, &typed(params, &types))
            .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.client()
            .query_typed_opt(sql, &typed(params, &types))
            .await
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let types = self.types_of(sql).await?;
        self.client()
            .execute_typed(sql, &typed(params, &types))
            .await
    }

    /// The rows as PostgreSQL sends them, for exports of any size: memory stays bounded by what
    /// the reader has not taken yet (the connection stops reading when it does not).
    pub(crate) async fn query_raw(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<RowStream, Error> {
        let types = self.types_of(sql).await?;
        self.client()
            .query_typed_raw(sql, typed(params, &types))
            .await
    }

    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        let client = self.client.as_mut().expect("present until dropped");
        Ok(Tx {
            kind: Kind::Awaited(client.transaction().await?),
        })
    }

    /// A transaction that sends `BEGIN` with its first statement and `COMMIT` with its last
    /// ([`Tx::commit_pipelined`]): two round trips fewer, for ingest's group commits, where a
    /// small group's time is mostly round trips. If it is dropped open, the connection is
    /// closed, not pooled.
    pub(crate) fn pipelined_transaction(&mut self) -> Tx<'_> {
        Tx {
            kind: Kind::Pipelined(Pipelined {
                conn: self,
                begun: AtomicBool::new(false),
                ending: AtomicBool::new(false),
                ended: AtomicBool::new(false),
                learning: AtomicUsize::new(0),
            }),
        }
    }

    /// Readies `sql` now, outside any transaction, for a pipelined transaction: statements
    /// joined with [`Tx::commit_pipelined`] must not wait on a round trip of their own. On a
    /// connection that keeps statements it is prepared by name once per server connection
    /// (and looked up in memory after that); otherwise its parameter types are learned once
    /// per process.
    pub(crate) async fn learn(&mut self, sql: &str) -> Result<(), Error> {
        if !self.keeps {
            return self.types_of(sql).await.map(drop);
        }
        if !self.kept.contains_key(sql) {
            let client = self.client.as_ref().expect("present until dropped");
            let statement = client.prepare_cached(sql).await?;
            self.kept.insert(sql.to_owned(), statement);
        }
        Ok(())
    }

    async fn types_of(&self, sql: &str) -> Result<Arc<[Type]>, Error> {
        if let Some(types) = known_types(sql) {
            return Ok(types);
        }
        // Queries joined on one `Conn` would otherwise learn at once and nest their BEGINs
        // ("there is already a transaction in progress", then a COMMIT with none): one learning
        // at a time in the process, which costs nothing after the first use of each text.
        let _one_at_a_time = LEARNING.lock().await;
        if let Some(types) = known_types(sql) {
            return Ok(types);
        }
        // A transaction keeps the prepare, its description and its close on one server
        // connection behind a pooler.
        self.client().batch_execute("BEGIN").await?;
        let learned = learn_types(self.client(), sql).await;
        let end = if learned.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.client().batch_execute(end).await?;
        learned
    }
}

/// A transaction on a pooled connection: its statements run on one server connection.
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    kind: Kind<'a>,
}

#[derive(Debug)]
enum Kind<'a> {
    /// tokio-postgres's transaction: `BEGIN` waited for on its own, and a `ROLLBACK` sent if it
    /// is dropped open.
    Awaited(Transaction<'a>),
    /// `BEGIN` and `COMMIT` sent by [`Tx`] itself, each in the round trip of other statements
    /// ([`Conn::pipelined_transaction`]).
    Pipelined(Pipelined<'a>),
}

#[derive(Debug)]
struct Pipelined<'a> {
    conn: &'a mut Conn,
    /// `BEGIN` is on its way: it went with the first statement.
    begun: AtomicBool,
    /// `COMMIT` (or `ROLLBACK`) is on its way: any later statement is refused, since it would
    /// run after the transaction, on its own.
    ending: AtomicBool,
    /// PostgreSQL answered the `COMMIT` (or `ROLLBACK`): the connection is outside any
    /// transaction again.
    ended: AtomicBool,
    /// Statements still learning their parameter types: they send their execution only after
    /// a round trip, so a `COMMIT` sent meanwhile would overtake them.
    learning: AtomicUsize,
}

impl Drop for Pipelined<'_> {
    fn drop(&mut self) {
        // Dropped between BEGIN and the answer to COMMIT (a failed statement, a cancelled
        // group): nothing can roll back from here without waiting, so the connection is
        // closed instead of pooled, and PostgreSQL rolls back.
        if self.begun.load(Ordering::SeqCst) && !self.ended.load(Ordering::SeqCst) {
            self.conn.discard = true;
        }
    }
}

impl Tx<'_> {
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        if let Some(statement) = self.kept(sql) {
            return self.run(self.client().query(statement, params)).await;
        }
        let types = self.types_of(sql).await?;
        self.run(self.client().query_typed(sql, &typed(params, &types)))
            .await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        if let Some(statement) = self.kept(sql) {
            return self.run(self.client().query_one(statement, params)).await;
        }
        let types = self.types_of(sql).await?;
        self.run(self.client().query_typed_one(sql, &typed(params, &types)))
            .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        if let Some(statement) = self.kept(sql) {
            return self.run(self.client().query_opt(statement, params)).await;
        }
        let types = self.types_of(sql).await?;
        self.run(self.client().query_typed_opt(sql, &typed(params, &types)))
            .await
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        if let Some(statement) = self.kept(sql) {
            return self.run(self.client().execute(statement, params)).await;
        }
        let types = self.types_of(sql).await?;
        self.run(self.client().execute_typed(sql, &typed(params, &types)))
            .await
    }

    /// Takes the advisory lock `key` until this transaction ends, unless another session holds
    /// it: `false` then. Work that one replica at a time does (maintenance passes) runs under one.
    pub(crate) async fn try_lock(&self, key: i64) -> Result<bool, StoreError> {
        Ok(self
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
            .await?
            .get(0))
    }

    /// Prepares `sql` as a named statement of this transaction's connection. Dropping the
    /// [`Statement`] closes it; the caller drops it before the commit, so behind a pooler it
    /// never outlives the transaction. Joined with another statement, it adds no round trip.
    /// A statement the connection keeps is returned as is, with no round trip (dropping this
    /// handle leaves it prepared).
    pub(crate) async fn prepare(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.kept(sql) {
            return Ok(statement.clone());
        }
        self.run(self.client().prepare(sql)).await
    }

    /// Starts `statement`, a `COPY … FROM STDIN (FORMAT binary)` prepared in this transaction,
    /// and closes the statement once it has started: its close goes ahead of whatever is sent
    /// after this returns, `COMMIT` included.
    pub(crate) async fn start_copy(&self, statement: Statement) -> Result<CopyStarted, StoreError> {
        let sink = self
            .run(self.client().copy_in::<_, Bytes>(&statement))
            .await?;
        drop(statement);
        Ok(CopyStarted { sink })
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self.kind {
            Kind::Awaited(tx) => Ok(tx.commit().await?),
            Kind::Pipelined(_) => self.commit_pipelined().await,
        }
    }

    /// Sends `COMMIT` at once and waits for its answer. Joined (`biased`, after them) with the
    /// transaction's last statements, it travels in their round trip: PostgreSQL runs what is
    /// sent before it, in order, then commits, or rolls back if any of them failed (the caller
    /// sees that statement's error). A statement still learning its parameter types would run
    /// after the `COMMIT`: then `ROLLBACK` is sent instead and the transaction fails.
    pub(crate) async fn commit_pipelined(&self) -> Result<(), StoreError> {
        let Kind::Pipelined(p) = &self.kind else {
            unreachable!("commit_pipelined is for transactions from Conn::pipelined_transaction")
        };
        p.ending.store(true, Ordering::SeqCst);
        if !p.begun.load(Ordering::SeqCst) {
            // No statement ran: there is nothing to commit.
            p.ended.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let overtaken = p.learning.load(Ordering::SeqCst) > 0;
        let end = if overtaken { "ROLLBACK" } else { "COMMIT" };
        self.client().batch_execute(end).await?;
        p.ended.store(true, Ordering::SeqCst);
        if overtaken {
            return Err(StoreError::Refused(
                "a statement of the transaction was still learning its parameter types at COMMIT; rolled back",
            ));
        }
        Ok(())
    }

    /// The statement the connection keeps for `sql`, if it keeps statements and learned this
    /// one ([`Conn::learn`]); any other statement runs unnamed, as everywhere else.
    fn kept(&self, sql: &str) -> Option<&Statement> {
        match &self.kind {
            Kind::Pipelined(p) => p.conn.kept.get(sql),
            Kind::Awaited(_) => None,
        }
    }

    fn client(&self) -> &Client {
        match &self.kind {
            Kind::Awaited(tx) => tx.client(),
            Kind::Pipelined(p) => p.conn.client(),
        }
    }

    /// Runs `statement`, a tokio-postgres future that sends its request when first polled. In a
    /// pipelined transaction the first statement takes `BEGIN` along, sent just before it in
    /// the same poll, and statements after `COMMIT` are refused.
    async fn run<T>(
        &self,
        statement: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, StoreError> {
        let Kind::Pipelined(p) = &self.kind else {
            return Ok(statement.await?);
        };
        if p.ending.load(Ordering::SeqCst) {
            return Err(StoreError::Refused(
                "a statement after its transaction's COMMIT",
            ));
        }
        if p.begun.swap(true, Ordering::SeqCst) {
            return Ok(statement.await?);
        }
        // `join` polls in order: BEGIN is queued on the connection before the statement.
        let (begun, result) =
            futures_util::future::join(self.client().batch_execute("BEGIN"), statement).await;
        begun?;
        Ok(result?)
    }

    async fn types_of(&self, sql: &str) -> Result<Arc<[Type]>, StoreError> {
        if let Some(types) = known_types(sql) {
            return Ok(types);
        }
        let _learning = Learning::start(self);
        self.run(learn_types(self.client(), sql)).await
    }
}

/// A `COPY` PostgreSQL is ready to receive rows for ([`Tx::start_copy`]).
pub(crate) struct CopyStarted {
    sink: CopyInSink<Bytes>,
}

impl CopyStarted {
    /// Sends `rows`, a whole binary COPY stream already encoded (`store::copy_rows`), in one
    /// message, and waits until PostgreSQL has stored them; returns how many.
    pub(crate) async fn send(self, rows: Bytes) -> Result<u64, StoreError> {
        let mut sink = std::pin::pin!(self.sink);
        sink.as_mut().feed(rows).await?;
        Ok(sink.as_mut().finish().await?)
    }
}

/// Counts a statement of a pipelined transaction as learning its types while it lives.
struct Learning<'t>(Option<&'t AtomicUsize>);

impl<'t> Learning<'t> {
    fn start(tx: &'t Tx<'_>) -> Self {
        match &tx.kind {
            Kind::Pipelined(p) => {
                p.learning.fetch_add(1, Ordering::SeqCst);
                Self(Some(&p.learning))
            }
            Kind::Awaited(_) => Self(None),
        }
    }
}

impl Drop for Learning<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The parameter types PostgreSQL inferred for each SQL text this process has run. They depend
/// on the text and the schema only, and the schema is migrated before central serves. Central's
/// SQL texts are its source's (a few hundred); the cap only guards against a bug that builds
/// texts without end, which would then be learned at every run instead of remembered.
static TYPES: LazyLock<RwLock<HashMap<String, Arc<[Type]>>>> = LazyLock::new(RwLock::default);
/// Held while a connection outside a transaction learns a text's types ([`Conn::types_of`]).
static LEARNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const MAX_REMEMBERED: usize = 4096;

fn known_types(sql: &str) -> Option<Arc<[Type]>> {
    TYPES
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(sql)
        .cloned()
}

/// Prepares `sql` (inside the caller's transaction), keeps its parameter types and closes it:
/// the statement is dropped before this returns, so its Close precedes the caller's commit.
async fn learn_types(client: &Client, sql: &str) -> Result<Arc<[Type]>, Error> {
    let statement = client.prepare(sql).await?;
    let types: Arc<[Type]> = statement.params().into();
    drop(statement);
    let mut known = TYPES
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if known.len() < MAX_REMEMBERED {
        known.insert(sql.to_string(), types.clone());
    }
    Ok(types)
}

fn typed<'a>(params: Params<'a>, types: &[Type]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().copied().zip(types.iter().cloned()).collect()
}
