//! The terminal transport's journal: `<data_dir>/terminal.sqlite3` (WAL, fsync on commit).
//!
//! - `requests`: one row per request file, inserted **before** the file appears in `req`; the
//!   result is stored when it is read, **before** the result file is removed from `res`; the
//!   lookup event's sequence is noted inside the outbox transaction that records it
//!   ([`super::Ticket`]); the row is deleted once that transaction committed. So at start every
//!   row is an exchange the previous run did not finish, and says how far it got.
//! - `face_files`: every face-reader result already handled, by file name (the terminal names
//!   each one with its time), with the step reached (0 nothing committed yet, 1 lookup event
//!   committed, 2 done) and the note of the event in flight, so none is recorded twice or missed.
//!
//! The request's bytes are kept only while the row lives (to record the lookup after a crash);
//! they are the same bytes the terminal's `req` folder holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use onshi_domain::events::FleetEvent;
use rusqlite::{Connection, OptionalExtension, params};

use super::Recovery;
use crate::filex::journal::Recording;

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
    /// The outbox stream the notes name ([`crate::filex::journal::was_committed`]).
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

/// A face file's row.
#[derive(Debug, Clone)]
pub struct FaceRow {
    pub name: String,
    pub step: u8,
    pub consent: Option<String>,
    pub note: Option<Recording>,
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
             CREATE TABLE IF NOT EXISTS face_files (
                 name TEXT PRIMARY KEY,
                 size INTEGER NOT NULL,
                 step INTEGER NOT NULL,
                 consent TEXT,
                 note_sequence INTEGER,
                 note_event_id TEXT,
                 note_stream TEXT,
                 handled_at_ms INTEGER NOT NULL
             );",
        )?;
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

    // ---- face files ----

    /// The names of every face file already handled (or being handled).
    pub async fn face_names(&self) -> Result<std::collections::HashSet<String>, JournalError> {
        self.with(|conn| {
            let mut statement = conn.prepare("SELECT name FROM face_files")?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
    }

    /// Face files not done: a crash left them between steps.
    pub async fn face_unfinished(&self) -> Result<Vec<FaceRow>, JournalError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT name, step, consent, note_sequence, note_event_id, note_stream
                 FROM face_files WHERE step < 2 ORDER BY name",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(FaceRow {
                    name: r.get(0)?,
                    step: r.get::<_, i64>(1)? as u8,
                    consent: r.get(2)?,
                    note: note_of(r.get(3)?, r.get(4)?, r.get(5)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn face_begin(
        &self,
        name: String,
        size: u64,
        consent: Option<String>,
        step: u8,
        now_ms: i64,
    ) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO face_files (name, size, step, consent, handled_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET step = ?3, consent = ?4",
                params![
                    name,
                    i64::try_from(size).unwrap_or(i64::MAX),
                    step,
                    consent,
                    now_ms
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Inside the outbox transaction (blocking).
    pub fn face_note_blocking(&self, name: &str, event: &FleetEvent) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE face_files SET note_sequence = ?2, note_event_id = ?3, note_stream = ?4
             WHERE name = ?1",
            params![
                name,
                i64::try_from(event.sequence).unwrap_or(i64::MAX),
                event.id.to_string(),
                self.stream_id
            ],
        )?;
        Ok(())
    }

    /// Sets the step reached and clears the note.
    pub async fn face_step(&self, name: String, step: u8) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE face_files SET step = ?2, note_sequence = NULL, note_event_id = NULL,
                        note_stream = NULL
                 WHERE name = ?1",
                params![name, step],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets a face file whose lookup never committed: the next scan handles it again.
    pub async fn face_forget(&self, name: String) -> Result<(), JournalError> {
        self.with(move |conn| {
            conn.execute("DELETE FROM face_files WHERE name = ?1", params![name])
                .map(|_| ())
        })
        .await
    }

    /// Forgets face files handled before `before_ms` that are no longer in the folder (`present`
    /// is what the folder holds now): the table stays as small as the folder.
    pub async fn face_prune(
        &self,
        present: std::collections::HashSet<String>,
        before_ms: i64,
    ) -> Result<usize, JournalError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let names: Vec<String> = {
                let mut statement = tx
                    .prepare("SELECT name FROM face_files WHERE step = 2 AND handled_at_ms < ?1")?;
                let rows = statement.query_map(params![before_ms], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut pruned = 0;
            for name in names.iter().filter(|n| !present.contains(*n)) {
                pruned += tx.execute("DELETE FROM face_files WHERE name = ?1", params![name])?;
            }
            tx.commit()?;
            Ok(pruned)
        })
        .await
    }

    /// Whether a face row exists (tests).
    pub async fn face_step_of(&self, name: String) -> Result<Option<u8>, JournalError> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT step FROM face_files WHERE name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.map(|s| s as u8))
        })
        .await
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
