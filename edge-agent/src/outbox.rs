//! The durable outbox: every event is here, fsynced, before anything is shown to a user, and
//! leaves only when central has acknowledged it.
//!
//! SQLite in WAL mode with `synchronous = FULL`: a commit is on disk when `append` returns and
//! survives kill -9 and power loss. Each record is an `onshi.fleet.v1.Event` sealed under the
//! site's outbox key ([`seal`]), numbered by a per-outbox sequence kept in `meta` (not derived
//! from the rows, which are deleted as acks arrive). The outbox's `stream_id` is created with it:
//! a new outbox is a new stream.
//!
//! A record that cannot be opened (damaged on disk) or is missing from the unacknowledged range
//! is never skipped silently and never stops the agent: it is copied to `quarantine` and its
//! place is taken by a `Loss` event at the same sequence, so central's contiguous run continues
//! and the audit trail says what was lost ([`Outbox::verify`]).
//!
//! A disk budget bounds the file: from 80 % the agent reports pressure; at 100 % appends fail
//! closed with a message for the clerk, except a small reserve for the agent's own pressure
//! events.

pub mod seal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use onshi_domain::chain::ChainHash;
use onshi_domain::events::{
    EventBody, EventId, FleetEvent, Loss, OutboxPressure, PressureLevel, StreamId,
};
use onshi_domain::site::{SiteCode, TerminalId};
use prost::Message;
use proto::fleet::v1 as pb;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

pub use seal::{KeyError, OutboxKey};

/// Extra room beyond the budget for the agent's own pressure events, so that "the outbox is
/// full" can itself be recorded.
const RESERVE_BYTES: u64 = 256 * 1024;
/// A file of this size is kept beside the outbox and released when the disk fills up, so that
/// acknowledgements (which must write to delete) can still free space: without it a full disk
/// would block the very deletes that empty it.
const BALLAST_BYTES: usize = 256 * 1024;
/// After a full disk, appends resume once this much room is free inside the database file.
const RESUME_FREE_BYTES: u64 = 128 * 1024;
const KEY_CHECK: &[u8] = b"onshi-fleet outbox key check";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox {path} cannot be opened: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the outbox key file {key} is missing, but {outbox} holds events sealed with it; restore \
         the key from backup (the outbox cannot be read without it)"
    )]
    KeyMissing { key: PathBuf, outbox: PathBuf },
    #[error(
        "the outbox key {key} does not match the outbox {outbox}; use the key it was created with"
    )]
    WrongKey { key: PathBuf, outbox: PathBuf },
    #[error(
        "the outbox is full ({used} of {budget} bytes): nothing was recorded, so nothing is shown. \
         Check the link to central (events leave the outbox once central has them) or free disk space"
    )]
    Full { used: u64, budget: u64 },
    #[error(
        "the disk holding the outbox is full: nothing was recorded, so nothing is shown. Free disk \
         space on this machine"
    )]
    DiskFull,
    #[error("the outbox could not record the event (nothing was shown or sent): {0}")]
    Write(rusqlite::Error),
    #[error("the outbox could not be read: {0}")]
    Read(rusqlite::Error),
    #[error("the outbox worker stopped unexpectedly")]
    Worker,
}

/// How the outbox is set up at a site.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub key_file: PathBuf,
    pub budget_bytes: u64,
    /// Who the agent's own events (losses, pressure) are recorded for.
    pub site: SiteCode,
    pub terminal: TerminalId,
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
    pub last_ack_at: Option<i64>,
    pub used_bytes: u64,
    pub budget_bytes: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub intact: u64,
    /// Sequences whose record could not be opened or decoded.
    pub damaged: Vec<u64>,
    /// Sequences missing from the unacknowledged range.
    pub missing: Vec<u64>,
    /// Whether damaged and missing records were replaced by loss events.
    pub repaired: bool,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    key: Arc<OutboxKey>,
    stream_id: StreamId,
    options: Arc<OutboxOptions>,
    /// The last pressure level reported (None: normal).
    pressure: Arc<Mutex<Option<PressureLevel>>>,
    /// Set when the disk filled up; appends fail closed until acks freed room in the file.
    disk_full: Arc<std::sync::atomic::AtomicBool>,
    ballast: PathBuf,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`. A new outbox gets a new stream id and, if the key
    /// file does not exist yet, a new key.
    pub fn open(path: &Path, options: OutboxOptions) -> Result<Self, OutboxError> {
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
             PRAGMA journal_size_limit = 1048576;
             PRAGMA wal_autocheckpoint = 64;
             CREATE TABLE IF NOT EXISTS meta (
                 key   TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS events (
                 sequence    INTEGER PRIMARY KEY,
                 event_id    BLOB    NOT NULL UNIQUE,
                 recorded_at INTEGER NOT NULL,
                 payload     BLOB    NOT NULL,
                 chain_hash  BLOB
             );
             CREATE TABLE IF NOT EXISTS quarantine (
                 sequence       INTEGER NOT NULL,
                 payload        BLOB,
                 reason         TEXT    NOT NULL,
                 quarantined_at INTEGER NOT NULL
             );",
        )
        .map_err(open_err)?;
        add_chain_column(&conn).map_err(open_err)?;
        let existing = conn
            .query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map_err(open_err)?;
        let (stream_id, key) = match existing {
            Some(bytes) => {
                let stream = Uuid::from_slice(&bytes).map_err(|e| {
                    open_err(rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Blob,
                        Box::new(e),
                    ))
                })?;
                if !options.key_file.exists() {
                    return Err(OutboxError::KeyMissing {
                        key: options.key_file.clone(),
                        outbox: path.to_path_buf(),
                    });
                }
                let key = OutboxKey::load(&options.key_file)?;
                let check: Vec<u8> = conn
                    .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| {
                        r.get(0)
                    })
                    .map_err(open_err)?;
                if key.open(stream, 0, &check).as_deref() != Some(KEY_CHECK) {
                    return Err(OutboxError::WrongKey {
                        key: options.key_file.clone(),
                        outbox: path.to_path_buf(),
                    });
                }
                (stream, key)
            }
            None => {
                let key = if options.key_file.exists() {
                    OutboxKey::load(&options.key_file)?
                } else {
                    OutboxKey::create(&options.key_file)?
                };
                let stream = Uuid::now_v7();
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('stream_id', ?1), ('key_check', ?2),
                         ('last_sequence', 0), ('last_acked', 0)",
                    params![stream.as_bytes().to_vec(), key.seal(stream, 0, KEY_CHECK)],
                )
                .map_err(open_err)?;
                (stream, key)
            }
        };
        let outbox = Self {
            conn: Arc::new(Mutex::new(conn)),
            key: Arc::new(key),
            stream_id: StreamId(stream_id),
            options: Arc::new(options),
            pressure: Arc::new(Mutex::new(None)),
            disk_full: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            ballast: ballast_path(path),
        };
        outbox.restore_ballast();
        Ok(outbox)
    }

    fn restore_ballast(&self) {
        if self.ballast.exists() {
            return;
        }
        let written = std::fs::File::create(&self.ballast).and_then(|mut file| {
            use std::io::Write;
            file.write_all(&vec![0u8; BALLAST_BYTES])?;
            file.sync_all()
        });
        if let Err(error) = written {
            let _ = std::fs::remove_file(&self.ballast);
            tracing::warn!(%error, "no room for the outbox's disk reserve yet");
        }
    }

    /// The disk is full: release the reserve so acks can delete, and fail appends until they
    /// have made room.
    fn on_disk_full(&self) {
        use std::sync::atomic::Ordering;
        if !self.disk_full.swap(true, Ordering::SeqCst) {
            tracing::error!("the disk holding the outbox is full: appends fail closed");
        }
        if std::fs::remove_file(&self.ballast).is_ok() {
            tracing::warn!(bytes = BALLAST_BYTES, "released the outbox's disk reserve");
        }
    }

    /// After a full disk: appends resume once acks have freed room inside the file.
    fn disk_room_returned(&self, conn: &Connection) -> bool {
        use std::sync::atomic::Ordering;
        if !self.disk_full.load(Ordering::SeqCst) {
            return true;
        }
        if free_bytes(conn).unwrap_or(0) >= RESUME_FREE_BYTES {
            self.disk_full.store(false, Ordering::SeqCst);
            tracing::info!("room in the outbox again after a full disk");
            self.restore_ballast();
            return true;
        }
        false
    }

    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.conn.clone();
            let mut guard = conn.lock().map_err(|_| OutboxError::Worker)?;
            let result = work(&mut guard, &this);
            if matches!(result, Err(OutboxError::DiskFull)) {
                this.on_disk_full();
            }
            result
        })
        .await
        .map_err(|_| OutboxError::Worker)?
    }

    /// Numbers and stores one event. `build` receives the sequence and returns the event; the
    /// event is on disk (fsynced) when this returns. Fails closed when the budget is used up.
    /// Crossing a budget level also records the agent's own `OutboxPressure` event.
    pub async fn append(
        &self,
        build: impl FnOnce(u64) -> FleetEvent + Send + 'static,
    ) -> Result<FleetEvent, OutboxError> {
        self.append_traced(None, build).await
    }

    /// [`Outbox::append`], storing `traceparent` (the W3C trace context of the span that
    /// recorded the event) in the sealed record beside the event, so that it reaches central
    /// with the event even after a restart. Observability only: it changes nothing else.
    pub async fn append_traced(
        &self,
        traceparent: Option<String>,
        build: impl FnOnce(u64) -> FleetEvent + Send + 'static,
    ) -> Result<FleetEvent, OutboxError> {
        self.with_conn(move |conn, this| {
            if !this.disk_room_returned(conn) {
                return Err(OutboxError::DiskFull);
            }
            let budget = this.options.budget_bytes;
            let used = used_bytes(conn).map_err(OutboxError::Read)?;
            if used >= budget {
                this.report_pressure(conn, used)?;
                return Err(OutboxError::Full { used, budget });
            }
            let event = this.insert_next(conn, traceparent.as_deref(), build)?;
            let used = used_bytes(conn).map_err(OutboxError::Read)?;
            this.report_pressure(conn, used)?;
            Ok(event)
        })
        .await
    }

    /// Appends `count` events in one transaction (one fsync): for producers of many events at
    /// once (a restored backlog, a benchmark filling an outbox). The budget is checked once.
    pub async fn append_many(
        &self,
        count: u64,
        mut build: impl FnMut(u64) -> FleetEvent + Send + 'static,
    ) -> Result<u64, OutboxError> {
        self.with_conn(move |conn, this| {
            let budget = this.options.budget_bytes;
            let used = used_bytes(conn).map_err(OutboxError::Read)?;
            if used >= budget {
                return Err(OutboxError::Full { used, budget });
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            let first = meta(&tx, "last_sequence").map_err(write_error)? + 1;
            for sequence in first..first + count {
                let mut event = build(sequence);
                chain_next(&tx, &mut event).map_err(write_error)?;
                insert_record(&tx, &this.key, this.stream_id.0, &event, None)
                    .map_err(write_error)?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'last_sequence'",
                params![(first + count - 1) as i64],
            )
            .map_err(write_error)?;
            tx.commit().map_err(write_error)?;
            Ok(first + count - 1)
        })
        .await
    }

    /// Fails with `Full` when the budget is used up: called before work (a national query)
    /// whose event could then not be recorded.
    pub async fn ensure_room(&self) -> Result<(), OutboxError> {
        self.with_conn(|conn, this| {
            let used = used_bytes(conn).map_err(OutboxError::Read)?;
            let budget = this.options.budget_bytes;
            if used >= budget {
                this.report_pressure(conn, used)?;
                return Err(OutboxError::Full { used, budget });
            }
            Ok(())
        })
        .await
    }

    fn insert_next(
        &self,
        conn: &mut Connection,
        traceparent: Option<&str>,
        build: impl FnOnce(u64) -> FleetEvent,
    ) -> Result<FleetEvent, OutboxError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        let sequence = meta(&tx, "last_sequence").map_err(write_error)? + 1;
        let mut event = build(sequence);
        debug_assert_eq!(event.sequence, sequence);
        chain_next(&tx, &mut event).map_err(write_error)?;
        insert_record(&tx, &self.key, self.stream_id.0, &event, traceparent)
            .map_err(write_error)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'last_sequence'",
            params![sequence as i64],
        )
        .map_err(write_error)?;
        tx.commit().map_err(write_error)?;
        Ok(event)
    }

    /// Records an `OutboxPressure` event when `used` crosses a budget level. Recovery is
    /// reported below 70 % so that a level near 80 % does not flap. The event may use the
    /// reserve past the budget, so that "the outbox is full" can itself be recorded.
    fn report_pressure(&self, conn: &mut Connection, used: u64) -> Result<(), OutboxError> {
        let budget = self.options.budget_bytes.max(1);
        let level = if used >= budget {
            Some(PressureLevel::Full)
        } else if used * 10 >= budget * 8 {
            Some(PressureLevel::Warning)
        } else if used * 10 < budget * 7 {
            None
        } else {
            return Ok(()); // between 70 % and 80 %: keep whatever was reported
        };
        let report = {
            let mut last = self.pressure.lock().map_err(|_| OutboxError::Worker)?;
            let report = match (*last, level) {
                (previous, Some(now)) if previous != Some(now) => Some(now),
                (Some(_), None) => Some(PressureLevel::Recovered),
                _ => None,
            };
            *last = level;
            report
        };
        let Some(level) = report else {
            return Ok(());
        };
        match level {
            PressureLevel::Full => {
                tracing::error!(used, budget, "outbox full: operations fail closed")
            }
            PressureLevel::Warning => {
                tracing::warn!(used, budget, "outbox above 80 % of its budget")
            }
            PressureLevel::Recovered => {
                tracing::info!(used, budget, "outbox back under its budget")
            }
        }
        if used >= budget + RESERVE_BYTES {
            return Ok(()); // even the reserve is used: the log line above is all we can do
        }
        let site = self.options.site.clone();
        let terminal = self.options.terminal.clone();
        self.insert_next(conn, None, move |sequence| FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
            site,
            terminal,
            occurred_at: OffsetDateTime::now_utc(),
            sequence,
            chain_hash: None,
            body: EventBody::OutboxPressure(OutboxPressure {
                level,
                used_bytes: used,
                budget_bytes: budget,
            }),
        })
        .map(|_| ())
    }

    /// Stored events after `after`, in order, up to `max_events` and about `max_bytes`
    /// (always at least one event, so one large event cannot stall the stream). A damaged
    /// record is quarantined and replaced by a loss event on the way: sending never stalls on it.
    pub async fn pending(
        &self,
        after: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pending>, OutboxError> {
        self.with_conn(move |conn, this| {
            let rows: Vec<(u64, Vec<u8>)> = {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT sequence, payload FROM events WHERE sequence > ?1
                         ORDER BY sequence LIMIT ?2",
                    )
                    .map_err(OutboxError::Read)?;
                statement
                    .query_map(params![after as i64, max_events as i64], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, payload(r)?))
                    })
                    .map_err(OutboxError::Read)?
                    .collect::<Result<_, _>>()
                    .map_err(OutboxError::Read)?
            };
            let mut out = Vec::new();
            let mut bytes = 0;
            for (sequence, record) in rows {
                let event = match this.open_record(sequence, &record) {
                    Some(event) => event,
                    None => {
                        let loss = this.replace_with_loss(
                            conn,
                            sequence,
                            Some(&record),
                            "the record was damaged on disk",
                        )?;
                        pb::Event::from(&loss)
                    }
                };
                let len = event.encoded_len();
                if !out.is_empty() && bytes + len > max_bytes {
                    break;
                }
                bytes += len;
                out.push(Pending {
                    sequence,
                    event,
                    encoded_len: len,
                });
            }
            Ok(out)
        })
        .await
    }

    fn open_record(&self, sequence: u64, record: &[u8]) -> Option<pb::Event> {
        open_record(&self.key, self.stream_id.0, sequence, record)
    }

    /// Moves a damaged (or missing) record to quarantine and puts a loss event in its place, in
    /// one transaction.
    fn replace_with_loss(
        &self,
        conn: &mut Connection,
        sequence: u64,
        record: Option<&[u8]>,
        reason: &str,
    ) -> Result<FleetEvent, OutboxError> {
        // The lost record's link, kept in clear beside its sealed payload, lets the chain go on
        // past the loss; without it the next link cannot be proved (central reports that).
        let lost_link = recorded_link(conn, sequence).map_err(OutboxError::Read)?;
        let loss = FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
            site: self.options.site.clone(),
            terminal: self.options.terminal.clone(),
            occurred_at: OffsetDateTime::now_utc(),
            sequence,
            chain_hash: lost_link,
            body: EventBody::Loss(Loss {
                first_sequence: sequence,
                last_sequence: sequence,
                reason: reason.to_string(),
            }),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        tx.execute(
            "INSERT INTO quarantine (sequence, payload, reason, quarantined_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                sequence as i64,
                record,
                reason,
                OffsetDateTime::now_utc().unix_timestamp()
            ],
        )
        .map_err(write_error)?;
        tx.execute(
            "DELETE FROM events WHERE sequence = ?1",
            params![sequence as i64],
        )
        .map_err(write_error)?;
        insert_record(&tx, &self.key, self.stream_id.0, &loss, None).map_err(write_error)?;
        tx.commit().map_err(write_error)?;
        tracing::warn!(
            sequence,
            reason,
            "outbox record quarantined and replaced by a loss event"
        );
        Ok(loss)
    }

    /// Drops every event up to and including `up_to`: central holds them. Returns how many
    /// were removed.
    pub async fn ack(&self, up_to: u64) -> Result<u64, OutboxError> {
        self.with_conn(move |conn, this| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            let removed = tx
                .execute(
                    "DELETE FROM events WHERE sequence <= ?1",
                    params![up_to as i64],
                )
                .map_err(write_error)?;
            tx.execute(
                "UPDATE meta SET value = max(value, ?1) WHERE key = 'last_acked'",
                params![up_to as i64],
            )
            .map_err(write_error)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_ack_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(write_error)?;
            tx.commit().map_err(write_error)?;
            this.disk_room_returned(conn);
            let used = used_bytes(conn).map_err(OutboxError::Read)?;
            this.report_pressure(conn, used)?;
            Ok(removed as u64)
        })
        .await
    }

    pub async fn status(&self) -> Result<OutboxStatus, OutboxError> {
        self.with_conn(|conn, this| {
            let (depth, oldest): (i64, Option<i64>) = conn
                .query_row("SELECT count(*), min(recorded_at) FROM events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(OutboxError::Read)?;
            let last_ack_at = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'last_ack_at'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map_err(OutboxError::Read)?;
            Ok(OutboxStatus {
                depth: depth as u64,
                last_sequence: meta(conn, "last_sequence").map_err(OutboxError::Read)?,
                last_acked: meta(conn, "last_acked").map_err(OutboxError::Read)?,
                oldest_recorded_at: oldest,
                last_ack_at,
                used_bytes: used_bytes(conn).map_err(OutboxError::Read)?,
                budget_bytes: this.options.budget_bytes,
            })
        })
        .await
    }

    /// Checks every unacknowledged record: it opens under the key, decodes, and sits at its own
    /// sequence, and the range from the last ack to the last sequence has no hole. With `repair`,
    /// damaged and missing records are quarantined and replaced by loss events (which reach
    /// central like any event); without it, nothing changes.
    pub async fn verify(&self, repair: bool) -> Result<VerifyReport, OutboxError> {
        self.with_conn(move |conn, this| {
            let last_acked = meta(conn, "last_acked").map_err(OutboxError::Read)?;
            let last_sequence = meta(conn, "last_sequence").map_err(OutboxError::Read)?;
            let rows: Vec<(u64, Vec<u8>)> = {
                let mut statement = conn
                    .prepare("SELECT sequence, payload FROM events ORDER BY sequence")
                    .map_err(OutboxError::Read)?;
                statement
                    .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, payload(r)?)))
                    .map_err(OutboxError::Read)?
                    .collect::<Result<_, _>>()
                    .map_err(OutboxError::Read)?
            };
            let mut report = VerifyReport {
                records: rows.len() as u64,
                ..Default::default()
            };
            let mut present = std::collections::HashSet::new();
            for (sequence, record) in &rows {
                present.insert(*sequence);
                if this.open_record(*sequence, record).is_some() {
                    report.intact += 1;
                } else {
                    report.damaged.push(*sequence);
                }
            }
            report.missing = (last_acked + 1..=last_sequence)
                .filter(|s| !present.contains(s))
                .collect();
            if repair {
                for (sequence, record) in rows.iter().filter(|(s, _)| report.damaged.contains(s)) {
                    this.replace_with_loss(
                        conn,
                        *sequence,
                        Some(record),
                        "the record was damaged on disk",
                    )?;
                }
                for sequence in &report.missing {
                    this.replace_with_loss(
                        conn,
                        *sequence,
                        None,
                        "the record was missing from the outbox",
                    )?;
                }
                report.repaired = !report.is_clean();
            }
            Ok(report)
        })
        .await
    }
}

/// The outbox record decoder: opens a stored record under `key` at its place (`stream`,
/// `sequence`) and decodes the event in it. `None` when the record does not open (damaged,
/// moved, another key), does not decode, or carries another sequence than its row: the
/// caller quarantines it. Public so the fuzz target (`edge-agent/fuzz`) drives this very code.
pub fn open_record(
    key: &OutboxKey,
    stream: Uuid,
    sequence: u64,
    record: &[u8],
) -> Option<pb::Event> {
    let plain = key.open(stream, sequence, record)?;
    let event = pb::Event::decode(plain.as_slice()).ok()?;
    (event.sequence == sequence).then_some(event)
}

fn insert_record(
    tx: &rusqlite::Transaction<'_>,
    key: &OutboxKey,
    stream: Uuid,
    event: &FleetEvent,
    traceparent: Option<&str>,
) -> rusqlite::Result<usize> {
    let mut record = pb::Event::from(event);
    record.traceparent = traceparent.map(str::to_string);
    let plain = record.encode_to_vec();
    tx.execute(
        "INSERT INTO events (sequence, event_id, recorded_at, payload, chain_hash)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            event.sequence as i64,
            event.id.as_uuid().as_bytes().to_vec(),
            OffsetDateTime::now_utc().unix_timestamp(),
            key.seal(stream, event.sequence, &plain),
            event.chain_hash.map(|h| h.as_bytes().to_vec()),
        ],
    )
}

/// Outboxes created before events were chained get the column that keeps each record's link.
fn add_chain_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = 'chain_hash'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE events ADD COLUMN chain_hash BLOB")?;
    }
    Ok(())
}

/// Links `event` into the stream's hash chain: it follows the head kept in `meta` (genesis for
/// a new outbox, or one that predates chaining), and becomes the head, in the caller's
/// transaction.
fn chain_next(tx: &rusqlite::Transaction<'_>, event: &mut FleetEvent) -> rusqlite::Result<()> {
    let head = tx
        .query_row("SELECT value FROM meta WHERE key = 'chain_head'", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()?
        .and_then(|bytes| ChainHash::from_slice(&bytes).ok())
        .unwrap_or(ChainHash::GENESIS);
    let link = proto::chain::link(&head, event);
    event.chain_hash = Some(link);
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('chain_head', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![link.as_bytes().to_vec()],
    )?;
    Ok(())
}

/// The link recorded beside the record at `sequence`, if there is one.
fn recorded_link(conn: &Connection, sequence: u64) -> rusqlite::Result<Option<ChainHash>> {
    let bytes: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT chain_hash FROM events WHERE sequence = ?1",
            params![sequence as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bytes.flatten().and_then(|b| ChainHash::from_slice(&b).ok()))
}

/// Room inside the database file that appends can reuse without growing it.
fn free_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((free.max(0) * page_size) as u64)
}

fn ballast_path(outbox: &Path) -> PathBuf {
    let mut name = outbox.file_name().unwrap_or_default().to_os_string();
    name.push(".reserve");
    outbox.with_file_name(name)
}

/// A record's bytes whatever the column holds: damage can change a value's type too, and a
/// damaged record must be reported and replaced, not stop the reader.
fn payload(row: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(1)? {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes.to_vec(),
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => Vec::new(),
    })
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v as u64)
}

/// Bytes the outbox's live pages occupy (as this connection sees the database, including
/// committed write-ahead-log frames). The WAL file itself is bounded by `journal_size_limit` and
/// a full disk is caught as `DiskFull`, so it is not counted against the budget.
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page_size) as u64)
}

/// A full disk is the budget's business too: the clerk gets the same fail-closed message.
fn write_error(error: rusqlite::Error) -> OutboxError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => OutboxError::DiskFull,
        _ => OutboxError::Write(error),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod traceparent_tests {
    use super::*;
    use onshi_domain::events::ReaderChange;

    /// The trace context recorded with an event is sealed in its record: it is there after the
    /// agent reopens the outbox (a restart between recording and sending), and only on that event.
    #[tokio::test]
    async fn the_traceparent_survives_reopening_with_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let options = OutboxOptions {
            key_file: dir.path().join("outbox.key"),
            budget_bytes: 1 << 30,
            site: SiteCode::parse("3410712362").unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
        };
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let event = |sequence| FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
            site: SiteCode::parse("3410712362").unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
            occurred_at: OffsetDateTime::now_utc(),
            sequence,
            chain_hash: None,
            body: EventBody::ReaderChange(ReaderChange {
                reader_name: "reader".into(),
                state: onshi_domain::events::ReaderState::PresentEmpty,
                detail: None,
                cards_read: 0,
                errors: 0,
                last_error: None,
            }),
        };
        {
            let outbox = Outbox::open(&path, options.clone()).unwrap();
            outbox
                .append_traced(Some(traceparent.into()), event)
                .await
                .unwrap();
            outbox.append(event).await.unwrap();
        }
        let outbox = Outbox::open(&path, options).unwrap();
        let pending = outbox.pending(0, 10, 1 << 20).await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].event.traceparent.as_deref(), Some(traceparent));
        assert_eq!(pending[1].event.traceparent, None);
    }
}
