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
//! Statements that must share a transaction use [`Tx`]; `COPY` runs inside one.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use deadpool_postgres::{Object, Pool, Transaction};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, RowStream};

use super::StoreError;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Checks a connection out of `pool`: the one place central's code does (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub(crate) async fn checkout(pool: &Pool) -> Result<Conn, StoreError> {
    Ok(Conn {
        client: pool.get().await?,
    })
}

/// A pooled connection outside any transaction: each statement commits on its own.
#[derive(Debug)]
pub(crate) struct Conn {
    client: Object,
}

impl Conn {
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.client.query_typed(sql, &typed(params, &types)).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let types = self.types_of(sql).await?;
        self.client
            .query_typed_one(sql, &typed(params, &types))
            .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.client
            .query_typed_opt(sql, &typed(params, &types))
            .await
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let types = self.types_of(sql).await?;
        self.client.execute_typed(sql, &typed(params, &types)).await
    }

    /// The rows as PostgreSQL sends them, for exports of any size: memory stays bounded by what
    /// the reader has not taken yet (the connection stops reading when it does not).
    pub(crate) async fn query_raw(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<RowStream, Error> {
        let types = self.types_of(sql).await?;
        self.client
            .query_typed_raw(sql, typed(params, &types))
            .await
    }

    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        Ok(Tx {
            tx: self.client.transaction().await?,
        })
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
        self.client.batch_execute("BEGIN").await?;
        let learned = learn_types(&self.client, sql).await;
        let end = if learned.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.client.batch_execute(end).await?;
        learned
    }
}

/// A transaction on a pooled connection: its statements run on one server connection.
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
}

impl Tx<'_> {
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.tx.query_typed(sql, &typed(params, &types)).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let types = self.types_of(sql).await?;
        self.tx.query_typed_one(sql, &typed(params, &types)).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let types = self.types_of(sql).await?;
        self.tx.query_typed_opt(sql, &typed(params, &types)).await
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let types = self.types_of(sql).await?;
        self.tx.execute_typed(sql, &typed(params, &types)).await
    }

    /// Takes the advisory lock `key` until this transaction ends, unless another session holds
    /// it: `false` then. Work that one replica at a time does (maintenance passes) runs under one.
    pub(crate) async fn try_lock(&self, key: i64) -> Result<bool, Error> {
        Ok(self
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
            .await?
            .get(0))
    }

    /// Binary `COPY … FROM STDIN`; its statement lives and is closed inside this transaction.
    pub(crate) async fn binary_copy_in(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<BinaryCopyInWriter, Error> {
        Ok(BinaryCopyInWriter::new(self.tx.copy_in(sql).await?, types))
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await
    }

    async fn types_of(&self, sql: &str) -> Result<Arc<[Type]>, Error> {
        match known_types(sql) {
            Some(types) => Ok(types),
            None => learn_types(&self.tx, sql).await,
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
async fn learn_types(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
) -> Result<Arc<[Type]>, Error> {
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
