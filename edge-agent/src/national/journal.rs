//! The terminal transport's journal: `<data_dir>/terminal.sqlite3` (WAL, fsync on commit).
//!
//! - `requests`: one row per request file, inserted **before** the file appears in `req`; the
//!   result is stored when it is read, **before** the result file is removed from `res`; the
//!   lookup event's sequence is noted inside the outbox transaction that records it
//!   ([`super::Ticket`]); the row is deleted once that transaction committed. So at start every
//!   row is an exchange the previous run did not finish, and says how far it got.
//! - `watched_files`: every file of a watched folder already handled, by folder and file name
//!   (the face reader's results, `face`; the exchanges observed in tap mode, `tap`, by result
//!   name), with the events it stands for (JSON, in recording order), how many of them
//!   committed, and the note of the one in flight ([`crate::observed::watched`]), so none is recorded
//!   twice or missed. (Journals written before tap mode had `face_files`, with steps 0 / 1 / 2;
//!   its rows are moved here when the journal is opened.)
//! - `tap_requests`: in tap mode, the receipt computer's requests read from `req` and not yet
//!   recorded with their result (or as unanswered), with when they were first seen
//!   ([`crate::observed::tap`]): the terminal may take a request away before its result appears, and a
//!   restart must not lose it.
//!
//! The request's bytes are kept only while the row lives (to record the lookup after a crash);
//! they are the same bytes the terminal's `req` folder holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use onshi_domain::events::{EventBody, FleetEvent};
use rusqlite::{Connection, OptionalExtension, params};

use super::Recovery;
use crate::folder::journal::Recording;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the terminal journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the terminal journal: {0}")]
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Journal {
    conn: Arc<Mutex<Connection>>,
    /// The outbox stream the notes name ([`crate::folder::journal::was_committed`]).
    stream_id: String,
}

/// A request the journal holds.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub request: Vec<u8>,
    pub recovery: Recovery,
    pub written_at_ms: i64,
    pub result: Option<Vec<u8>>,
    pub gave_up: bool,
    pub note: Option<Recording>,
}

/// A watched file's row ([`crate::observed::watched`]).
#[derive(Debug, Clone)]
pub struct WatchedRow {
    pub name: String,
    /// The events the file stands for, in recording order. `None`: an event whose body a
    /// journal from before tap mode did not keep (the file is read again if it never committed).
    pub events: Vec<Option<EventBody>>,
    /// How many of `events` are known to be committed; `note` names the one after them, when
    /// it was in flight.
    pub recorded: usize,
    pub note: Option<Recording>,
}

/// A request seen in `req` in tap mode ([`crate::observed::tap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    pub name: String,
    pub request: Vec<u8>,
    pub seen_at_ms: i64,
}

impl Journal {
    pub fn open(path: &Path, stream_id: String) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS requests (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL UNIQUE,
                 kind TEXT NOT NULL,
                 day TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 request BLOB NOT NULL,
                 recovery TEXT NOT NULL,
                 written_at_ms INTEGER NOT NULL,
                 result BLOB,
                 gave_up INTEGER NOT NULL DEFAULT 0,
                 note_sequence INTEGER,
                 note_event_id TEXT,
                 note_stream TEXT
             );
             CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS watched_files (
                 folder TEXT NOT NULL,
                 name TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 events TEXT NOT NULL,
                 total INTEGER NOT NULL,
                 recorded INTEGER NOT NULL,
                 note_sequence INTEGER,
                 note_event_id TEXT,
                 note_stream TEXT,
                 handled_at_ms INTEGER NOT NULL,
                 PRIMARY KEY (folder, name)
             );
             CREATE TABLE IF NOT EXISTS tap_requests (
                 name TEXT PRIMARY KEY,
                 request BLOB NOT NULL,
                 seen_at_ms INTEGER NOT NULL
             );",
        )?;
        migrate_face_files(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            stream_id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, JournalError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&mut this.lock()))
            .await
            .map_err(|e| JournalError::Other(e.to_string()))?
            .map_err(JournalError::from)
    }

    /// Journals a new request and names its file `<kind>req_<yyyyMMdd><seq>_<tail>.xml`.
    ///
    /// The name keeps the usual 12-character `yyyyMMdd` + 4-digit daily sequence (the
    /// journal's own count, so names sort by time), then `_ofa` and 8 random hex digits: the
    /// terminal's `req` folder is shared with the receipt computer, which numbers its own files
    /// with the same pattern, so a 12-character name of ours could take (or be overwritten by)
    /// one of its requests and its result; the random tail also keeps names unique if this
    /// journal were ever lost. The terminal answers with the same name, `req` → `res`, whatever
    /// the suffix (face results carry longer names too).
    pub async fn begin(
        &self,
        kind: &str,
        request: Vec<u8>,
        recovery: &Recovery,
        day: String,
        now_ms: i64,
    ) -> Result<(i64, String), JournalError> {
        let recovery =
            serde_json::to_string(recovery).map_err(|e| JournalError::Other(e.to_string()))?;
        let kind = kind.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let seq: i64 = tx.query_row(
                "INSERT INTO days (day, last_seq) VALUES (?1, 1)
                     ON CONFLICT (day) DO UPDATE SET last_seq = last_seq + 1
                     RETURNING last_seq",
                params![day],
                |r| r.get(0),
            )?;
            let tail = uuid::Uuid::new_v4().simple().to_string();
            let name = format!("{kind}req_{day}{seq:04}_ofa{}.xml", &tail[..8]);
            tx.execute(
                "INSERT INTO requests (name, kind, day, seq, request, recovery, written_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, kind, day, seq, request, recovery, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("DELETE FROM days WHERE day < ?1", params![day])?;
            tx.commit()?;
            Ok((id, name))
        })
        .await
    }

    /// The result, kept before its file is removed from `res`.
    pub async fn store_result(&self, id: i64, result: Vec<u8>) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE requests SET result = ?2 WHERE id = ?1",
                params![id, result],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn give_up(&self, id: i64) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute("UPDATE requests SET gave_up = 1 WHERE id = ?1", params![id])
                .map(|_| ())
        })
        .await
    }

    /// Inside the outbox transaction (blocking).
    pub fn note_blocking(&self, id: i64, event: &FleetEvent) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE requests SET note_sequence = ?2, note_event_id = ?3, note_stream = ?4
             WHERE id = ?1",
            params![
                id,
                i64::try_from(event.sequence).unwrap_or(i64::MAX),
                event.id.to_string(),
                self.stream_id
            ],
        )?;
        Ok(())
    }

    pub async fn close(&self, id: i64) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute("DELETE FROM requests WHERE id = ?1", params![id])
                .map(|_| ())
        })
        .await
    }

    /// Every request a run has not finished, oldest first.
    pub async fn open_entries(&self) -> Result<Vec<Entry>, JournalError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT id, name, kind, request, recovery, written_at_ms, result, gave_up,
                        note_sequence, note_event_id, note_stream
                 FROM requests ORDER BY id",
            )?;
            let rows = statement.query_map([], |r| {
                let recovery: String = r.get(4)?;
                Ok(Entry {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    request: r.get(3)?,
                    recovery: serde_json::from_str(&recovery).unwrap_or(Recovery::HandOver),
                    written_at_ms: r.get(5)?,
                    result: r.get(6)?,
                    gave_up: r.get::<_, i64>(7)? != 0,
                    note: note_of(r.get(8)?, r.get(9)?, r.get(10)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    // ---- watched files ----

    /// The names of every file of `folder` already handled (or being handled).
    pub async fn watched_names(
        &self,
        folder: &'static str,
    ) -> Result<std::collections::HashSet<String>, JournalError> {
        self.with(move |conn| {
            let mut statement = conn.prepare("SELECT name FROM watched_files WHERE folder = ?1")?;
            let rows = statement.query_map(params![folder], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
    }

    /// The row of one file, if it was handled.
    pub async fn watched_row(
        &self,
        folder: &'static str,
        name: String,
    ) -> Result<Option<WatchedRow>, JournalError> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT name, events, recorded, note_sequence, note_event_id, note_stream
                 FROM watched_files WHERE folder = ?1 AND name = ?2",
                params![folder, name],
                watched_row,
            )
            .optional()
        })
        .await
    }

    /// Files of `folder` not done: a crash (or a refused record) left them between events.
    pub async fn watched_unfinished(
        &self,
        folder: &'static str,
    ) -> Result<Vec<WatchedRow>, JournalError> {
        self.with(move |conn| {
            let mut statement = conn.prepare(
                "SELECT name, events, recorded, note_sequence, note_event_id, note_stream
                 FROM watched_files WHERE folder = ?1 AND recorded < total ORDER BY name",
            )?;
            let rows = statement.query_map(params![folder], watched_row)?;
            rows.collect()
        })
        .await
    }

    /// Journals a file and the events it stands for, none recorded yet. A row already there
    /// is kept as it is (`false`).
    pub async fn watched_begin(
        &self,
        folder: &'static str,
        name: String,
        size: u64,
        events: Vec<Option<EventBody>>,
        now_ms: i64,
    ) -> Result<bool, JournalError> {
        let total = events.len();
        let events =
            serde_json::to_string(&events).map_err(|e| JournalError::Other(e.to_string()))?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO watched_files (folder, name, size, events, total, recorded,
                                            handled_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                 ON CONFLICT (folder, name) DO NOTHING",
                params![
                    folder,
                    name,
                    i64::try_from(size).unwrap_or(i64::MAX),
                    events,
                    i64::try_from(total).unwrap_or(i64::MAX),
                    now_ms
                ],
            )
            .map(|inserted| inserted == 1)
        })
        .await
    }

    /// Inside the outbox transaction that records event `index` of the file (blocking): the
    /// events before it committed, this one is in flight.
    pub fn watched_note_blocking(
        &self,
        folder: &str,
        name: &str,
        index: usize,
        event: &FleetEvent,
    ) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE watched_files SET recorded = ?3, note_sequence = ?4, note_event_id = ?5,
                    note_stream = ?6
             WHERE folder = ?1 AND name = ?2",
            params![
                folder,
                name,
                i64::try_from(index).unwrap_or(i64::MAX),
                i64::try_from(event.sequence).unwrap_or(i64::MAX),
                event.id.to_string(),
                self.stream_id
            ],
        )?;
        Ok(())
    }

    /// Sets how many events are known committed and clears the note.
    pub async fn watched_step(
        &self,
        folder: &'static str,
        name: String,
        recorded: usize,
    ) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE watched_files SET recorded = ?3, note_sequence = NULL,
                        note_event_id = NULL, note_stream = NULL
                 WHERE folder = ?1 AND name = ?2",
                params![folder, name, i64::try_from(recorded).unwrap_or(i64::MAX)],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets a file none of whose events committed: the next scan handles it again.
    pub async fn watched_forget(
        &self,
        folder: &'static str,
        name: String,
    ) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM watched_files WHERE folder = ?1 AND name = ?2",
                params![folder, name],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets files of `folder` done before `before_ms` whose names are not in `present` (what
    /// the folder holds now): the table stays as small as the folder.
    pub async fn watched_prune(
        &self,
        folder: &'static str,
        present: std::collections::HashSet<String>,
        before_ms: i64,
    ) -> Result<usize, JournalError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let names: Vec<String> = {
                let mut statement = tx.prepare(
                    "SELECT name FROM watched_files
                     WHERE folder = ?1 AND recorded >= total AND handled_at_ms < ?2",
                )?;
                let rows =
                    statement.query_map(params![folder, before_ms], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut pruned = 0;
            for name in names.iter().filter(|n| !present.contains(*n)) {
                pruned += tx.execute(
                    "DELETE FROM watched_files WHERE folder = ?1 AND name = ?2",
                    params![folder, name],
                )?;
            }
            tx.commit()?;
            Ok(pruned)
        })
        .await
    }

    // ---- tap mode's requests ----

    /// A request read from `req` in tap mode (kept until its exchange is recorded).
    pub async fn tap_seen(
        &self,
        name: String,
        request: Vec<u8>,
        seen_at_ms: i64,
    ) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO tap_requests (name, request, seen_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, request, seen_at_ms],
            )
            .map(|_| ())
        })
        .await
    }

    /// Every request seen and not yet recorded, oldest first.
    pub async fn tap_requests(&self) -> Result<Vec<TapRequest>, JournalError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT name, request, seen_at_ms FROM tap_requests ORDER BY seen_at_ms, name",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(TapRequest {
                    name: r.get(0)?,
                    request: r.get(1)?,
                    seen_at_ms: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The request's exchange is recorded (after [`Journal::watched_begin`]).
    pub async fn tap_done(&self, name: String) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute("DELETE FROM tap_requests WHERE name = ?1", params![name])
                .map(|_| ())
        })
        .await
    }
}

fn watched_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WatchedRow> {
    let events: String = r.get(1)?;
    let events = serde_json::from_str(&events).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(WatchedRow {
        name: r.get(0)?,
        events,
        recorded: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        note: note_of(r.get(3)?, r.get(4)?, r.get(5)?),
    })
}

/// Moves the rows of a journal written before tap mode (`face_files`: step 0 nothing
/// committed, 1 the lookup committed, 2 done; the consent kept as JSON) into `watched_files`
/// under `face`, keeping what each row knows: the lookup's body was not kept, so a row whose
/// lookup never committed is read again from its file, as before.
fn migrate_face_files(conn: &Connection) -> Result<(), rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'face_files')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    // Each row's events (the lookup's body unknown, the consent kept) and their count.
    let rows: Vec<(String, String, i64)> = {
        let mut statement = conn.prepare("SELECT name, step, consent FROM face_files")?;
        let rows = statement.query_map([], |r| {
            let step: i64 = r.get(1)?;
            let consent: Option<EventBody> = r
                .get::<_, Option<String>>(2)?
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .map(EventBody::Consent);
            let events: Vec<Option<EventBody>> = match step {
                0 => std::iter::once(None).chain(consent.map(Some)).collect(),
                1 => consent.map(Some).into_iter().collect(),
                _ => Vec::new(),
            };
            let total = i64::try_from(events.len()).unwrap_or(i64::MAX);
            let events = serde_json::to_string(&events).unwrap_or_else(|_| "[]".into());
            Ok((r.get(0)?, events, total))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let moved = (|| {
        for (name, events, total) in rows {
            conn.execute(
                "INSERT OR IGNORE INTO watched_files (folder, name, size, events, total, recorded,
                     note_sequence, note_event_id, note_stream, handled_at_ms)
                 SELECT 'face', name, size, ?2, ?3, 0, note_sequence, note_event_id, note_stream,
                        handled_at_ms
                 FROM face_files WHERE name = ?1",
                params![name, events, total],
            )?;
        }
        conn.execute_batch("DROP TABLE face_files")
    })();
    match moved {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn note_of(
    sequence: Option<i64>,
    event_id: Option<String>,
    stream: Option<String>,
) -> Option<Recording> {
    Some(Recording {
        sequence: u64::try_from(sequence?).ok()?,
        event_id: event_id?,
        stream_id: stream?,
    })
}
