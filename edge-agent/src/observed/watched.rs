//! Files recorded once: each file of a watched folder that the agent must not touch (the face
//! reader's results in `face`, [`super::face`]; the exchanges observed in the terminal's folders
//! in tap mode, [`super::tap`]) stands for a list of events, recorded in order, each exactly
//! once across crashes and restarts.
//!
//! 1. The file's name and its events are **journaled** before the first is recorded
//!    (`watched_files` in the terminal journal, [`crate::national::journal`]), under the watcher's folder
//!    key: from then on the file is handled, whatever happens to it.
//! 2. Each event is recorded through [`Recorder::record_noting`], which **notes** its sequence
//!    and index in the journal inside the outbox transaction, so at start the outbox tells
//!    whether it committed ([`crate::folder::journal::was_committed`]).
//! 3. When the last one committed the row is **done**; done rows of files the site cleared
//!    away are pruned after a week.
//!
//! A row left between events (a crash, an outbox that refused) is finished from the journal,
//! not from the file: the file may be gone by then (the receipt computer deletes results).

use std::collections::HashSet;
use std::time::SystemTime;

use onshi_domain::events::{EventBody, FleetEvent};
use onshi_domain::site::TerminalId;

use crate::national::journal::{Journal, WatchedRow};
use crate::outbox::Outbox;
use crate::recorder::Recorder;

/// How long a done row is kept after its file left the folder.
const KEEP_DONE_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Watched {
    journal: Journal,
    /// The key of the watcher's rows (`face`, `tap`).
    folder: &'static str,
    recorder: Recorder,
    terminal: TerminalId,
}

impl Watched {
    pub fn new(
        journal: Journal,
        folder: &'static str,
        recorder: Recorder,
        terminal: TerminalId,
    ) -> Self {
        Self {
            journal,
            folder,
            recorder,
            terminal,
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Every name already handled (or being handled).
    pub async fn handled(&self) -> anyhow::Result<HashSet<String>> {
        Ok(self.journal.watched_names(self.folder).await?)
    }

    /// Records `events` for `name` once and returns the events this call recorded. A name
    /// already journaled is not taken again: its own events are finished if some are left (a
    /// record the outbox refused earlier), and `events` are ignored.
    pub async fn record(
        &self,
        name: &str,
        size: u64,
        events: Vec<EventBody>,
    ) -> anyhow::Result<Vec<FleetEvent>> {
        self.journal
            .watched_begin(
                self.folder,
                name.to_string(),
                size,
                events.into_iter().map(Some).collect(),
                now_ms(),
            )
            .await?;
        let Some(row) = self
            .journal
            .watched_row(self.folder, name.to_string())
            .await?
        else {
            anyhow::bail!("the journal lost a row it just wrote");
        };
        // In this run an event either committed or returned an error (and the row says so):
        // the note needs no checking.
        self.finish(row, None).await
    }

    /// Finishes the rows a previous run left between events; call at start, before anything
    /// else records. Returns how many there were.
    pub async fn recover(&self, outbox: &Outbox) -> anyhow::Result<usize> {
        let rows = self.journal.watched_unfinished(self.folder).await?;
        let count = rows.len();
        for row in rows {
            self.finish(row, Some(outbox)).await?;
        }
        Ok(count)
    }

    /// Forgets done rows older than a week whose files are not in `present` (only call it with
    /// a listing that succeeded: an unmounted share is not an emptied folder).
    pub async fn prune(&self, present: HashSet<String>) -> anyhow::Result<usize> {
        Ok(self
            .journal
            .watched_prune(self.folder, present, now_ms() - KEEP_DONE_MS)
            .await?)
    }

    /// Records the events of `row` not yet committed. `outbox`: at start, to tell whether the
    /// noted one committed before the crash.
    async fn finish(
        &self,
        row: WatchedRow,
        outbox: Option<&Outbox>,
    ) -> anyhow::Result<Vec<FleetEvent>> {
        let mut start = row.recorded;
        if let (Some(note), Some(outbox)) = (&row.note, outbox)
            && crate::folder::journal::was_committed(outbox, note).await?
        {
            start += 1;
        }
        let mut recorded = Vec::new();
        for (index, body) in row.events.iter().enumerate().skip(start) {
            let Some(body) = body.clone() else {
                if index == 0 {
                    // A journal from before tap mode did not keep this body and it never
                    // committed: the file is read again.
                    self.journal
                        .watched_forget(self.folder, row.name.clone())
                        .await?;
                    return Ok(recorded);
                }
                continue;
            };
            let journal = self.journal.clone();
            let folder = self.folder;
            let noted = row.name.clone();
            let result = self
                .recorder
                .record_noting(self.terminal.clone(), body, move |e| {
                    if let Err(error) = journal.watched_note_blocking(folder, &noted, index, e) {
                        tracing::error!(%error, "cannot note a watched file's event; a crash now could record it twice");
                    }
                })
                .await;
            match result {
                Ok(event) => recorded.push(event),
                Err(error) => {
                    // Not committed: the next try starts at this event.
                    self.journal
                        .watched_step(self.folder, row.name.clone(), index)
                        .await?;
                    return Err(error.into());
                }
            }
        }
        self.journal
            .watched_step(self.folder, row.name, row.events.len())
            .await?;
        Ok(recorded)
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}
