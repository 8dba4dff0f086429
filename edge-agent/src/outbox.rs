//! The durable outbox: every event is here, fsynced, before anything is shown to a user, and
//! leaves only when central has acknowledged it.
//!
//! SQLite in WAL mode with `synchronous = FULL`, so a commit is on disk when `append` returns and
//! survives kill -9 and power loss. Events are stored as their wire encoding (`onshi.fleet.v1.Event`),
//! numbered by a per-outbox sequence kept in `meta` (not derived from the rows, which are deleted
//! as acks arrive). The outbox's `stream_id` is created with it: a new outbox is a new stream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use onshi_domain::events::{FleetEvent, StreamId};
use prost::Message;
use proto::fleet::v1 as pb;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox {path} cannot be opened: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the outbox could not record the event (nothing was shown or sent): {0}")]
    Write(rusqlite::Error),
    #[error("the outbox could not be read: {0}")]
    Read(rusqlite::Error),
    #[error("outbox record {sequence} is damaged: {detail}")]
    Corrupt { sequence: u64, detail: String },
    #[error("the outbox worker stopped unexpectedly")]
    Worker,
}

/// One stored event, ready to send.
#[derive(Debug, Clone)]
pub struct Pending {
    pub sequence: u64,
    pub event: pb::Event,
    pub encoded_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStatus {
    pub depth: u64,
    pub last_sequence: u64,
    pub last_acked: u64,
    pub oldest_recorded_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    stream_id: StreamId,
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let open_err = |source| OutboxError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS meta (
                 key   TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS events (
                 sequence    INTEGER PRIMARY KEY,
                 event_id    BLOB    NOT NULL UNIQUE,
                 recorded_at INTEGER NOT NULL,
                 payload     BLOB    NOT NULL
             );",
        )
        .map_err(open_err)?;
        let stream_id = match conn
            .query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map_err(open_err)?
        {
            Some(bytes) => Uuid::from_slice(&bytes).map_err(|e| {
                open_err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                ))
            })?,
            None => {
                let id = Uuid::now_v7();
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('stream_id', ?1),
                         ('last_sequence', 0), ('last_acked', 0)",
                    params![id.as_bytes().to_vec()],
                )
                .map_err(open_err)?;
                id
            }
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            stream_id: StreamId(stream_id),
        })
    }

    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| OutboxError::Worker)?;
            work(&mut guard)
        })
        .await
        .map_err(|_| OutboxError::Worker)?
    }

    /// Numbers and stores one event. `build` receives the sequence and returns the event; the
    /// event is on disk (fsynced) when this returns.
    pub async fn append(
        &self,
        build: impl FnOnce(u64) -> FleetEvent + Send + 'static,
    ) -> Result<FleetEvent, OutboxError> {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(OutboxError::Write)?;
            let last: i64 = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'last_sequence'",
                    [],
                    |r| r.get(0),
                )
                .map_err(OutboxError::Write)?;
            let sequence = last as u64 + 1;
            let event = build(sequence);
            debug_assert_eq!(event.sequence, sequence);
            let payload = pb::Event::from(&event).encode_to_vec();
            tx.execute(
                "INSERT INTO events (sequence, event_id, recorded_at, payload)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    sequence as i64,
                    event.id.as_uuid().as_bytes().to_vec(),
                    OffsetDateTime::now_utc().unix_timestamp(),
                    payload
                ],
            )
            .map_err(OutboxError::Write)?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'last_sequence'",
                params![sequence as i64],
            )
            .map_err(OutboxError::Write)?;
            tx.commit().map_err(OutboxError::Write)?;
            Ok(event)
        })
        .await
    }

    /// Stored events after `after`, in order, up to `max_events` and about `max_bytes`
    /// (always at least one event, so one large event cannot stall the stream).
    pub async fn pending(
        &self,
        after: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pending>, OutboxError> {
        self.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT sequence, payload FROM events WHERE sequence > ?1
                     ORDER BY sequence LIMIT ?2",
                )
                .map_err(OutboxError::Read)?;
            let mut rows = statement
                .query(params![after as i64, max_events as i64])
                .map_err(OutboxError::Read)?;
            let mut out = Vec::new();
            let mut bytes = 0;
            while let Some(row) = rows.next().map_err(OutboxError::Read)? {
                let sequence = row.get::<_, i64>(0).map_err(OutboxError::Read)? as u64;
                let payload: Vec<u8> = row.get(1).map_err(OutboxError::Read)?;
                if !out.is_empty() && bytes + payload.len() > max_bytes {
                    break;
                }
                bytes += payload.len();
                let event =
                    pb::Event::decode(payload.as_slice()).map_err(|e| OutboxError::Corrupt {
                        sequence,
                        detail: e.to_string(),
                    })?;
                out.push(Pending {
                    sequence,
                    event,
                    encoded_len: payload.len(),
                });
            }
            Ok(out)
        })
        .await
    }

    /// Drops every event up to and including `up_to`: central holds them.
    pub async fn ack(&self, up_to: u64) -> Result<u64, OutboxError> {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(OutboxError::Write)?;
            let removed = tx
                .execute(
                    "DELETE FROM events WHERE sequence <= ?1",
                    params![up_to as i64],
                )
                .map_err(OutboxError::Write)?;
            tx.execute(
                "UPDATE meta SET value = max(value, ?1) WHERE key = 'last_acked'",
                params![up_to as i64],
            )
            .map_err(OutboxError::Write)?;
            tx.commit().map_err(OutboxError::Write)?;
            Ok(removed as u64)
        })
        .await
    }

    pub async fn status(&self) -> Result<OutboxStatus, OutboxError> {
        self.with_conn(|conn| {
            let meta = |key: &str| -> Result<u64, OutboxError> {
                conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|v| v as u64)
                .map_err(OutboxError::Read)
            };
            let (depth, oldest): (i64, Option<i64>) = conn
                .query_row("SELECT count(*), min(recorded_at) FROM events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(OutboxError::Read)?;
            Ok(OutboxStatus {
                depth: depth as u64,
                last_sequence: meta("last_sequence")?,
                last_acked: meta("last_acked")?,
                oldest_recorded_at: oldest,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::events::{EventBody, EventId, LinkChange, LinkState, LinkTarget};
    use onshi_domain::site::{SiteCode, TerminalId};

    fn event(sequence: u64) -> FleetEvent {
        FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
            site: SiteCode::parse("3410712362").unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
            occurred_at: OffsetDateTime::now_utc(),
            sequence,
            body: EventBody::LinkChange(LinkChange {
                target: LinkTarget::Onshi,
                state: LinkState::Up,
                detail: None,
                rtt_ms: Some(3),
                line_type: None,
            }),
        }
    }

    #[tokio::test]
    async fn events_are_numbered_kept_until_acked_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let outbox = Outbox::open(&path).unwrap();
        let stream = outbox.stream_id();
        for expected in 1..=5 {
            let stored = outbox.append(event).await.unwrap();
            assert_eq!(stored.sequence, expected);
        }
        assert_eq!(outbox.ack(3).await.unwrap(), 3);
        drop(outbox);

        let reopened = Outbox::open(&path).unwrap();
        assert_eq!(
            reopened.stream_id(),
            stream,
            "the stream survives a restart"
        );
        let status = reopened.status().await.unwrap();
        assert_eq!(
            (status.depth, status.last_sequence, status.last_acked),
            (2, 5, 3)
        );
        let pending = reopened.pending(3, 100, 1 << 20).await.unwrap();
        assert_eq!(
            pending.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            vec![4, 5]
        );
        // Sequences continue after the acked ones were deleted.
        assert_eq!(reopened.append(event).await.unwrap().sequence, 6);
    }

    #[tokio::test]
    async fn pending_respects_the_byte_budget_but_always_yields_one() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite3")).unwrap();
        for _ in 0..3 {
            outbox.append(event).await.unwrap();
        }
        assert_eq!(outbox.pending(0, 100, 1).await.unwrap().len(), 1);
        assert_eq!(outbox.pending(0, 2, 1 << 20).await.unwrap().len(), 2);
    }
}
