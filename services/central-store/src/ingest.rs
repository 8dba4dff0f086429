//! Writing event batches: one transaction for a group of batches (from one or many sessions),
//! acked by the caller only after it returns.
//!
//! The fast path is binary COPY straight into `events`. It is taken for a batch that lies
//! entirely above its stream's highest received sequence: such a batch cannot meet a taken
//! stream position, and a correct agent never reuses an event id, so there is nothing for
//! `ON CONFLICT` to do. Everything else (a resend after a lost ack, a replay, a reordered batch)
//! takes the checked path: the positions it covers are read first, a different event at a taken
//! position is refused and audited, and the rest is inserted with `ON CONFLICT DO NOTHING`.
//! If the fast path meets a unique violation anyway (a broken agent reusing an id), the group is
//! rolled back and every batch is written again on the checked path, one per transaction, so one
//! bad batch never fails its neighbours. The fast path beat COPY into a staging table followed
//! by `INSERT .. SELECT .. ON CONFLICT` and the `UNNEST` insert in `fleet-bench` (README,
//! "Performance").
//!
//! The stream rows of a group are locked in one statement in key order, so two groups never
//! deadlock, and two sessions of one stream (an old one still draining after a reconnect) are
//! serialised.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::Tx;
use bytes::{Bytes, BytesMut};
use onshi_domain::events::{FleetEvent, StreamId};
use onshi_domain::site::SiteCode;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};
use uuid::Uuid;

use super::summaries::SummaryDelta;
use super::{Store, StoreError, copy_rows, seq};

/// What one committed batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events that were new.
    pub stored: u32,
    /// Events central already had (same id and time): a resend after a lost ack.
    pub duplicates: u32,
    /// Events refused because their stream position is taken by a different event.
    pub conflicts: u32,
    /// Highest n such that central holds every event 1..n of the stream, after the commit.
    pub contiguous: u64,
}

/// One batch of one stream, as the ingest session hands it over. Events are in strictly
/// increasing sequence order (the session checks it) and name the batch's site. Read-only once
/// made: its rows are encoded from its events then.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    site: SiteCode,
    stream: StreamId,
    events: Vec<FleetEvent>,
    /// The events as rows of a binary `COPY` into `events`, encoded by the session that
    /// received them, in parallel with the other sessions and outside any transaction.
    rows: Bytes,
}

impl BatchWrite {
    pub fn new(
        site: SiteCode,
        stream: StreamId,
        events: Vec<FleetEvent>,
    ) -> Result<Self, StoreError> {
        let rows = encode_events(&site, stream, &events)?;
        Ok(Self {
            site,
            stream,
            events,
            rows,
        })
    }

    pub fn site(&self) -> &SiteCode {
        &self.site
    }

    pub fn stream(&self) -> StreamId {
        self.stream
    }

    pub fn events(&self) -> &[FleetEvent] {
        &self.events
    }
}

/// How the fast path writes new rows. `Copy` is what central runs; `Unnest` (one
/// `INSERT .. SELECT FROM UNNEST(arrays)`) is kept so the benchmark can compare the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMethod {
    #[default]
    Copy,
    Unnest,
}

/// How many stored sequences one contiguity walk reads at most; the rest is picked up by the
/// next batch. Batches arrive in order, so a walk is rare: only after a gap or a replay.
const CONTIGUITY_WINDOW: i64 = 100_000;

const COPY_EVENTS: &str = "COPY events (event_id, site_code, stream_id, sequence, terminal_id, \
                           occurred_at, kind, body, chain_hash) FROM STDIN (FORMAT binary)";
const COPY_TYPES: [Type; 9] = [
    Type::UUID,
    Type::TEXT,
    Type::UUID,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::JSONB,
    Type::BYTEA,
];

/// The group's streams, locked in one statement in key order (two groups never deadlock).
const LOCK_STREAMS: &str = "SELECT s.site_code, s.stream_id, s.contiguous_sequence,
                                   s.highest_received_sequence
                            FROM agent_streams s
                            JOIN UNNEST($1::text[], $2::uuid[]) AS k(site_code, stream_id)
                              ON s.site_code = k.site_code AND s.stream_id = k.stream_id
                            ORDER BY s.site_code, s.stream_id
                            FOR UPDATE OF s";
/// The streams' positions after the group.
const SAVE_POSITIONS: &str = "UPDATE agent_streams s SET
                                  contiguous_sequence = k.contiguous,
                                  highest_received_sequence =
                                      GREATEST(s.highest_received_sequence, k.highest),
                                  last_seen_at = now()
                              FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::bigint[])
                                   AS k(site_code, stream_id, contiguous, highest)
                              WHERE s.site_code = k.site_code AND s.stream_id = k.stream_id";

#[derive(Debug)]
struct StreamState {
    contiguous: i64,
    highest: i64,
}

impl Store {
    /// Stores one batch in its own transaction (a group of one).
    pub async fn ingest_batch(
        &self,
        site: &SiteCode,
        stream: StreamId,
        events: &[FleetEvent],
    ) -> Result<BatchOutcome, StoreError> {
        let batch = BatchWrite::new(site.clone(), stream, events.to_vec())?;
        self.ingest_group(std::slice::from_ref(&batch))
            .await
            .remove(0)
    }

    /// Stores a group of batches in one transaction and returns one result per batch, in order.
    /// Nothing of a batch is acknowledged before this returns `Ok` for it: a crash at any point
    /// loses nothing its agent still holds.
    pub async fn ingest_group(
        &self,
        batches: &[BatchWrite],
    ) -> Vec<Result<BatchOutcome, StoreError>> {
        if batches.is_empty() {
            return Vec::new();
        }
        match self.write_group(batches, false).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // PostgreSQL (or the way to it) is down: every batch of the group shares that fate.
            Err(error) if error.is_unavailable() => {
                let error = Arc::new(error);
                batches
                    .iter()
                    .map(|_| Err(StoreError::Group(error.clone())))
                    .collect()
            }
            // A statement was refused: find out which batch, by writing each on its own on the
            // checked path. A unique violation is the expected case (an id reused by a broken
            // agent); anything else is worth a line in the log.
            Err(error) => {
                let unique_violation = matches!(&error, StoreError::Db(e)
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION));
                let unknown_statement = matches!(&error, StoreError::Db(e)
                    if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME));
                // Told nothing pools transactions, but a kept statement is gone: a pooler in
                // transaction mode is in between after all. The batches are written again below
                // with unnamed statements, as every later group will be.
                if unknown_statement && self.stop_keeping_statements() {
                    tracing::error!(%error, "a statement kept prepared was not found on its connection: a pooler in transaction mode is between central and PostgreSQL; central keeps no statement from now on, and should be started with --database-pooler transaction");
                } else if !unique_violation && !unknown_statement {
                    tracing::warn!(%error, batches = batches.len(), "group write refused; writing its batches one by one");
                }
                let mut results = Vec::with_capacity(batches.len());
                for batch in batches {
                    results.push(
                        self.write_group(std::slice::from_ref(batch), true)
                            .await
                            .map(|mut o| o.remove(0)),
                    );
                }
                results
            }
        }
    }

    /// One group in one transaction, in three round trips when every batch extends its stream:
    /// `BEGIN`, the streams' lock and the `COPY`'s preparation; the summaries, the streams'
    /// positions and the start of the `COPY`; the rows, the statement's close and `COMMIT`.
    /// On a connection that keeps its statements (`Pooler::None`) the `COPY` is neither
    /// prepared nor closed: it is already there.
    /// The rows were encoded by the sessions before the group formed, so PostgreSQL does not
    /// wait on their encoding inside the transaction.
    async fn write_group(
        &self,
        batches: &[BatchWrite],
        checked_only: bool,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let copies = !checked_only && self.method == WriteMethod::Copy;
        let mut client = self.conn().await?;
        // Statements sent along with `COMMIT` must be ready beforehand (store::conn): their
        // parameter types known, or kept prepared on this connection with the `COPY`'s; after
        // the first group this costs nothing.
        let copy_statement = copies.then_some(COPY_EVENTS);
        for sql in [LOCK_STREAMS, SAVE_POSITIONS]
            .into_iter()
            .chain(SummaryDelta::STATEMENTS)
            .chain(copy_statement)
        {
            client.learn(sql).await?;
        }
        let tx = client.pipelined_transaction();

        let mut streams: BTreeMap<(&str, Uuid), Option<StreamState>> = batches
            .iter()
            .map(|b| ((b.site.as_str(), b.stream.0), None))
            .collect();
        let (sites, ids): (Vec<&str>, Vec<Uuid>) = streams.keys().copied().unzip();
        let lock_keys: [&(dyn ToSql + Sync); 2] = [&sites, &ids];
        let lock = tx.query(LOCK_STREAMS, &lock_keys);
        let (locked, copy) = if copies {
            let (locked, copy) = tokio::join!(biased; lock, tx.prepare(COPY_EVENTS));
            (locked?, Some(copy?))
        } else {
            (lock.await?, None)
        };
        for row in &locked {
            let key: (&str, Uuid) = (row.get(0), row.get(1));
            if let Some(slot) = streams.get_mut(&key) {
                *slot = Some(StreamState {
                    contiguous: row.get(2),
                    highest: row.get(3),
                });
            }
        }
        let mut state: HashMap<(&str, Uuid), StreamState> = HashMap::new();
        for (key, slot) in streams {
            let found = slot.ok_or_else(|| StoreError::UnknownStream {
                site: key.0.to_string(),
                stream: key.1,
            })?;
            state.insert(key, found);
        }

        let mut outcomes = Vec::with_capacity(batches.len());
        let mut new_rows = NewRows {
            batches,
            copy,
            pending: Vec::new(),
        };
        // What the rows inserted here change in the summaries, written before the commit.
        let mut summaries = SummaryDelta::default();
        for (index, batch) in batches.iter().enumerate() {
            let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) else {
                outcomes.push(BatchOutcome {
                    stored: 0,
                    duplicates: 0,
                    conflicts: 0,
                    contiguous: 0,
                });
                continue;
            };
            let (first, last) = (seq(first.sequence), seq(last.sequence));
            let stream = state
                .get_mut(&(batch.site.as_str(), batch.stream.0))
                .expect("every stream of the group was locked above");
            if !checked_only && first > stream.highest {
                // Contiguous with what central holds and gap-free itself: the run simply extends.
                // Anything else is settled by the walk below.
                let gap_free = last - first + 1 == batch.events.len() as i64;
                if stream.contiguous == stream.highest && first == stream.contiguous + 1 && gap_free
                {
                    stream.contiguous = last;
                }
                stream.highest = last;
                // The fast path inserts every event of the batch, or the group fails.
                for event in &batch.events {
                    summaries.add(batch.site.as_str(), event);
                }
                new_rows.pending.push(index);
                outcomes.push(BatchOutcome {
                    stored: batch.events.len() as u32,
                    duplicates: 0,
                    conflicts: 0,
                    contiguous: 0,
                });
            } else {
                // The check must see the rows of earlier batches of this group.
                new_rows.write(&tx, self.method).await?;
                outcomes.push(write_checked(&tx, batch, &mut summaries).await?);
                stream.highest = stream.highest.max(last);
            }
        }
        // A stream whose run does not simply extend is walked, and the walk must see the rows.
        // So do the rows of `UNNEST` (the benchmark's alternative), sent as one query.
        if state.values().any(|s| s.contiguous < s.highest) || self.method == WriteMethod::Unnest {
            new_rows.write(&tx, self.method).await?;
            for ((site, stream_id), stream) in state.iter_mut() {
                if stream.contiguous < stream.highest {
                    stream.contiguous =
                        advance_contiguous(&tx, site, *stream_id, stream.contiguous).await?;
                }
            }
        }
        let mut sites = Vec::with_capacity(state.len());
        let mut ids = Vec::with_capacity(state.len());
        let mut contiguous = Vec::with_capacity(state.len());
        let mut highest = Vec::with_capacity(state.len());
        for ((site, stream_id), stream) in &state {
            sites.push(*site);
            ids.push(*stream_id);
            contiguous.push(stream.contiguous);
            highest.push(stream.highest);
        }
        let positions = async {
            tx.execute(SAVE_POSITIONS, &[&sites, &ids, &contiguous, &highest])
                .await
                .map(drop)
        };
        // The summaries and positions come from memory, not from the rows, so they may run
        // before the rows. `COMMIT` must follow everything, the `COPY`'s close included: it is
        // sent once the `COPY` has started, which is when the statement is closed.
        let (copy, rows) = new_rows.into_last();
        let rows_then_commit = async {
            let Some(statement) = copy else {
                return tx.commit_pipelined().await;
            };
            let started = tx.start_copy(statement).await?;
            let (copied, committed) =
                tokio::join!(biased; started.send(rows), tx.commit_pipelined());
            what_aborted([copied.map(drop), committed])
        };
        let (summarised, positioned, committed) =
            tokio::join!(biased; summaries.write(&tx), positions, rows_then_commit);
        what_aborted([summarised, positioned, committed])?;

        for (batch, outcome) in batches.iter().zip(outcomes.iter_mut()) {
            outcome.contiguous = state[&(batch.site.as_str(), batch.stream.0)].contiguous as u64;
        }
        Ok(outcomes)
    }
}

/// The fast path's rows of one group: its batches, the prepared `COPY` (none when the group
/// does not copy), and which batches are still to write.
struct NewRows<'a> {
    batches: &'a [BatchWrite],
    copy: Option<Statement>,
    pending: Vec<usize>,
}

impl NewRows<'_> {
    /// Writes the pending batches now, because what follows must see them.
    async fn write(&mut self, tx: &Tx<'_>, method: WriteMethod) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match method {
            WriteMethod::Copy => {
                let statement = self
                    .copy
                    .clone()
                    .expect("the COPY is prepared whenever the fast path can run");
                let rows = self.copy_stream();
                tx.start_copy(statement).await?.send(rows).await?;
            }
            WriteMethod::Unnest => {
                let mut events = Vec::new();
                for &i in &self.pending {
                    let batch = &self.batches[i];
                    for event in &batch.events {
                        events.push((batch, event));
                    }
                }
                insert_unnest(tx, &events).await?;
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// The prepared `COPY` (if the group has rows still to copy) and the rows, for the
    /// group's last round trip.
    fn into_last(self) -> (Option<Statement>, Bytes) {
        if self.pending.is_empty() {
            return (None, Bytes::new());
        }
        let rows = self.copy_stream();
        (self.copy, rows)
    }

    /// The pending batches' rows as one binary `COPY` stream, sent as one message: each chunk
    /// would be a hand-over to the connection's task.
    fn copy_stream(&self) -> Bytes {
        let size = self
            .pending
            .iter()
            .map(|&i| self.batches[i].rows.len())
            .sum::<usize>();
        let mut stream = BytesMut::with_capacity(copy_rows::HEADER.len() + size + 2);
        stream.extend_from_slice(copy_rows::HEADER);
        for &i in &self.pending {
            stream.extend_from_slice(&self.batches[i].rows);
        }
        stream.extend_from_slice(copy_rows::TRAILER);
        stream.freeze()
    }
}

/// A batch's events as rows of a binary `COPY` into `events`.
fn encode_events(
    site: &SiteCode,
    stream: StreamId,
    events: &[FleetEvent],
) -> Result<Bytes, StoreError> {
    let mut rows = BytesMut::with_capacity(events.len() * 512);
    for event in events {
        let id = event.id.as_uuid();
        let sequence = seq(event.sequence);
        let chain_hash = event.chain_hash.as_ref().map(|h| h.as_bytes().as_slice());
        let row: [&(dyn ToSql + Sync); 9] = [
            &id,
            &site.as_str(),
            &stream.0,
            &sequence,
            &event.terminal.as_str(),
            &event.occurred_at,
            &event.body.kind(),
            &Json(&event.body),
            &chain_hash,
        ];
        copy_rows::put_row(&mut rows, &row, &COPY_TYPES)?;
    }
    Ok(rows.freeze())
}

/// Of the results of statements sent together in one transaction, the error that aborted it.
/// Once one statement fails PostgreSQL refuses the rest ("current transaction is aborted"), and
/// which of them reaches it first is not fixed.
fn what_aborted<const N: usize>(results: [Result<(), StoreError>; N]) -> Result<(), StoreError> {
    let mut refused = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(StoreError::Db(error))
                if error.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) =>
            {
                refused.get_or_insert(StoreError::Db(error));
            }
            Err(cause) => return Err(cause),
        }
    }
    refused.map_or(Ok(()), Err)
}

/// `INSERT .. SELECT FROM UNNEST(..) ON CONFLICT DO NOTHING`; returns the ids inserted.
async fn insert_unnest(
    tx: &Tx<'_>,
    events: &[(&BatchWrite, &FleetEvent)],
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::new();
    let mut sites = Vec::new();
    let mut streams = Vec::new();
    let mut sequences = Vec::new();
    let mut terminals = Vec::new();
    let mut times = Vec::new();
    let mut kinds = Vec::new();
    let mut bodies = Vec::new();
    let mut chain_hashes = Vec::new();
    for &(batch, event) in events {
        ids.push(event.id.as_uuid());
        sites.push(batch.site.as_str());
        streams.push(batch.stream.0);
        sequences.push(seq(event.sequence));
        terminals.push(event.terminal.as_str());
        times.push(event.occurred_at);
        kinds.push(event.body.kind());
        bodies.push(Json(&event.body));
        chain_hashes.push(event.chain_hash.as_ref().map(|h| h.as_bytes().as_slice()));
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tx
        .query(
            "INSERT INTO events
                 (event_id, site_code, stream_id, sequence, terminal_id, occurred_at, kind, body,
                  chain_hash)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[],
                                  $5::text[], $6::timestamptz[], $7::text[], $8::jsonb[],
                                  $9::bytea[])
             ON CONFLICT DO NOTHING
             RETURNING event_id",
            &[
                &ids,
                &sites,
                &streams,
                &sequences,
                &terminals,
                &times,
                &kinds,
                &bodies,
                &chain_hashes,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The checked path for one batch: positions already taken by the same event are duplicates,
/// by another event are conflicts (refused, audited); the rest is inserted, and what was
/// inserted is added to `summaries`.
async fn write_checked(
    tx: &super::Tx<'_>,
    batch: &BatchWrite,
    summaries: &mut SummaryDelta,
) -> Result<BatchOutcome, StoreError> {
    let first = seq(batch.events.first().map_or(0, |e| e.sequence));
    let last = seq(batch.events.last().map_or(0, |e| e.sequence));
    let taken: HashMap<i64, (Uuid, time::OffsetDateTime)> = tx
        .query(
            "SELECT sequence, event_id, occurred_at FROM events
             WHERE site_code = $1 AND stream_id = $2 AND sequence BETWEEN $3 AND $4",
            &[&batch.site.as_str(), &batch.stream.0, &first, &last],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();

    let mut duplicates = 0u32;
    let mut conflicts = Vec::new();
    let mut fresh = Vec::new();
    for event in &batch.events {
        match taken.get(&seq(event.sequence)) {
            // PostgreSQL keeps microseconds; the event may carry nanoseconds.
            Some(&(id, at))
                if id == event.id.as_uuid()
                    && (at - event.occurred_at).abs() < time::Duration::MICROSECOND =>
            {
                duplicates += 1
            }
            Some(_) => conflicts.push(event),
            None => fresh.push(event),
        }
    }
    let fresh: Vec<(&BatchWrite, &FleetEvent)> = fresh.into_iter().map(|e| (batch, e)).collect();
    let inserted = insert_unnest(tx, &fresh).await?;
    // A fresh position whose (id, time) exists elsewhere: the event is already stored once.
    duplicates += (fresh.len() - inserted.len()) as u32;
    let inserted_ids: HashSet<Uuid> = inserted.iter().copied().collect();
    for &(_, event) in &fresh {
        if inserted_ids.contains(&event.id.as_uuid()) {
            summaries.add(batch.site.as_str(), event);
        }
    }

    if !conflicts.is_empty() {
        let details: Vec<String> = conflicts
            .iter()
            .map(|event| {
                format!(
                    "stream {} sequence {} already holds another event; event {} refused",
                    batch.stream.0, event.sequence, event.id
                )
            })
            .collect();
        tx.execute(
            "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
             SELECT 'conflicting_sequence', $1, $1, d FROM UNNEST($2::text[]) AS d",
            &[&batch.site.as_str(), &details],
        )
        .await?;
    }
    Ok(BatchOutcome {
        stored: inserted.len() as u32,
        duplicates,
        conflicts: conflicts.len() as u32,
        contiguous: 0,
    })
}

/// Walks the stored sequences above `from` and returns the end of the gap-free run.
async fn advance_contiguous(
    tx: &Tx<'_>,
    site: &str,
    stream: Uuid,
    from: i64,
) -> Result<i64, StoreError> {
    let rows = tx
        .query(
            "SELECT sequence FROM events
             WHERE site_code = $1 AND stream_id = $2 AND sequence > $3
             ORDER BY sequence LIMIT $4",
            &[&site, &stream, &from, &CONTIGUITY_WINDOW],
        )
        .await?;
    let mut contiguous = from;
    for row in rows {
        let sequence: i64 = row.get(0);
        if sequence != contiguous + 1 {
            break;
        }
        contiguous = sequence;
    }
    Ok(contiguous)
}
