//! The terminal transport: request files into the qualification terminal's `req` folder,
//! results from its `res` folder (domain notes §4).
//!
//! One exchange, step by step:
//!
//! 1. **journal** the request (its bytes, its file name, what a restart must do with it)
//!    ([`super::journal`]); from here on it is never written a second time;
//! 2. **write** it into `req` whole: a random temporary name in the same folder (`.…tmp`, which
//!    the terminal's `*req_*.xml` pattern never matches), fsync, rename, fsync of the folder;
//! 3. **wait** for `res/<kind>res_<suffix>.xml`: file-system notification plus a periodic
//!    rescan (notifications are lost on network shares), one collector for all requests; a
//!    result is read once its size and mtime held for `settle`, through a no-follow,
//!    regular-file-only, size-limited open ([`crate::folder::fsio::read_limited`]) on a blocking
//!    thread;
//! 4. **journal the result, then remove the file** from `res`: a client deletes its results
//!    (the terminal leaves them), and the journal holds the bytes until the lookup is recorded;
//! 5. after `timeout` the request is **given up**: withdrawn from `req` if the terminal has not
//!    taken it (so it is never answered unrecorded), and the caller hears
//!    [`OnshiError::TerminalSilent`], which tells the clerk to check the terminal software.
//!
//! A result that arrives after its request was given up is removed and logged. [`Terminal::recover`]
//! finishes at start what a previous run left in the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use onshi_domain::xml::QualificationConfirmationRequest;
use tokio::sync::{Notify, oneshot};

use super::Asked;
use super::health::Health;
use super::journal::{Entry, Journal};
use super::settings::TerminalSettings;
use super::{
    BatchLeft, OnshiAnswer, OnshiError, RecordsRecovered, Recovery, StoredView, Ticket, Transport,
};
use crate::fault::{self, Fault};
use crate::folder::fsio;
use crate::outbox::Outbox;

/// What the collector hands a waiting exchange.
type Delivery = Result<Vec<u8>, String>;

#[derive(Debug)]
struct Waiter {
    id: i64,
    tx: Option<oneshot::Sender<Delivery>>,
    /// Size and mtime at the last look, and since when unchanged.
    last: Option<(u64, Option<SystemTime>, Instant)>,
    /// Being read by the collector right now.
    taking: bool,
    /// The request's `ArbitraryFileIdentifier`, which its result must echo.
    correlation: Option<String>,
}

/// A request given up: when, and its late result's size and mtime at the last look.
#[derive(Debug)]
struct GivenUp {
    at: Instant,
    last: Option<((u64, Option<SystemTime>), Instant)>,
}

#[derive(Debug)]
pub struct Terminal {
    settings: TerminalSettings,
    journal: Journal,
    waiting: Mutex<HashMap<String, Waiter>>,
    wake: Arc<Notify>,
    health: Arc<Health>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Results of requests given up (by result name, since when): removed when they arrive late.
    given_up: Mutex<HashMap<String, GivenUp>>,
    fault: Option<Fault>,
}

/// The result file's name for a request file's name: `…req_X` → `…res_X`.
pub fn result_name(request_name: &str) -> String {
    match request_name.split_once("req_") {
        Some((kind, rest)) => format!("{kind}res_{rest}"),
        None => format!("{request_name}.res"),
    }
}

/// Today in Japan, `yyyyMMdd` (the date the terminal's file names carry).
fn day_jst() -> String {
    let d = onshi_domain::calendar::today_jst();
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
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

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Terminal {
    /// Opens the transport and starts its result collector (call inside the runtime). The
    /// folders must exist: they are the terminal software's, not the agent's to create.
    /// `fault` is the crash-test hook ([`crate::fault`]), `None` in production.
    pub fn start(
        settings: TerminalSettings,
        journal: Journal,
        fault: Option<Fault>,
    ) -> anyhow::Result<Arc<Self>> {
        for dir in [&settings.folders.request, &settings.folders.result] {
            anyhow::ensure!(
                dir.is_dir(),
                "資格確認端末のフォルダがありません: {} / the qualification terminal's folder {} does not exist: check [onshi] folder and that the terminal software is installed",
                dir.display(),
                dir.display()
            );
        }
        let health = Arc::new(Health::new(settings.slow, settings.timeout));
        let wake = Arc::new(Notify::new());
        let watcher = crate::folder::watch(&settings.folders.result, wake.clone());
        let terminal = Arc::new(Self {
            settings,
            journal,
            waiting: Mutex::new(HashMap::new()),
            wake,
            health,
            watcher: Mutex::new(watcher),
            given_up: Mutex::new(HashMap::new()),
            fault,
        });
        tokio::spawn(collect(Arc::downgrade(&terminal)));
        Ok(terminal)
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn settings(&self) -> &TerminalSettings {
        &self.settings
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops file-system notification (the collector ends with the last handle).
    pub fn stop_watching(&self) {
        self.watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Waits for the result of request `name` (journal row `id`) until `deadline`.
    async fn wait_for(
        &self,
        id: i64,
        name: &str,
        correlation: Option<String>,
        started: Instant,
        deadline: Instant,
    ) -> Result<Vec<u8>, OnshiError> {
        let result = result_name(name);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(
            result.clone(),
            Waiter {
                id,
                tx: Some(tx),
                last: None,
                taking: false,
                correlation,
            },
        );
        self.health.sent(id, started);
        self.wake.notify_one();
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(Ok(bytes))) => {
                self.health.answered(id, started.elapsed());
                Ok(bytes)
            }
            Ok(Ok(Err(refused))) => {
                self.health.answered(id, started.elapsed());
                Err(OnshiError::Body(refused))
            }
            Ok(Err(_)) => {
                self.health.forget(id);
                Err(OnshiError::Unreachable(
                    "the terminal's result collector stopped".into(),
                ))
            }
            Err(_) => {
                self.waiting().remove(&result);
                self.given_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        result.clone(),
                        GivenUp {
                            at: Instant::now(),
                            last: None,
                        },
                    );
                self.health.gave_up(id);
                self.withdraw(name).await;
                if let Err(error) = self.journal.give_up(id).await {
                    tracing::warn!(%error, "cannot note a given-up request in the terminal journal");
                }
                tracing::warn!(file = %name, waited_ms = ms(started.elapsed()), "the qualification terminal did not answer; request given up");
                Err(OnshiError::TerminalSilent {
                    waited: started.elapsed(),
                })
            }
        }
    }

    /// Removes a given-up request from `req` if the terminal has not taken it, so it is never
    /// answered (and looked up nationally) without being recorded.
    async fn withdraw(&self, name: &str) -> bool {
        let path = self.settings.folders.request.join(name);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    let _ = fsio::sync_dir(dir);
                }
                true
            }
            Err(_) => false,
        })
        .await
        .unwrap_or(false);
        if removed {
            tracing::info!(file = %name, "withdrew the unanswered request from the terminal's folder");
        }
        removed
    }

    /// Finishes what a previous run left in the journal. Call at start, before anything else
    /// records events (a noted event is judged committed or not by the outbox's state).
    ///
    /// - an exchange whose event committed: closed;
    /// - a lookup or an information view with a result (read before the crash, or found in
    ///   `res` now): recorded, as the journal says it was asked;
    /// - one given up: recorded as unreachable;
    /// - one still unanswered: waited for (in the background) up to `timeout` more, then
    ///   recorded either way;
    /// - the steps of a national batch: the batch is resumed from its furthest step
    ///   ([`Terminal::recover_batch`]) and its rows recorded;
    /// - a relayed request of the file exchange: its answer handed to the file exchange's
    ///   journal ([`Terminal::recover_relay`]), so the file exchange (recovered after this)
    ///   records and answers it without asking again;
    /// - anything else ([`Recovery::HandOver`], or an entry that does not read): nothing can
    ///   record it, so the request is withdrawn if still unanswered, a result is removed, and
    ///   the entry closed (logged).
    pub async fn recover<R: RecordsRecovered>(
        self: &Arc<Self>,
        owner: &Arc<R>,
        outbox: &Outbox,
    ) -> anyhow::Result<usize> {
        let entries = self.journal.open_entries().await?;
        let count = entries.len();
        let mut batches: std::collections::BTreeMap<String, Vec<Entry>> = Default::default();
        for entry in entries {
            if let Recovery::Batch(stored) = &entry.recovery {
                batches
                    .entry(stored.batch_id.clone())
                    .or_default()
                    .push(entry);
                continue;
            }
            if let Some(note) = &entry.note
                && crate::folder::journal::was_committed(outbox, note).await?
            {
                self.journal.close(entry.id).await?;
                continue;
            }
            let what = match &entry.recovery {
                Recovery::Relay { journal } => {
                    self.recover_relay(&entry, journal).await?;
                    continue;
                }
                Recovery::Lookup(stored) if entry.kind == "OQSsiquc01" => stored
                    .provenance()
                    .zip(QualificationConfirmationRequest::from_xml(&entry.request).ok())
                    .map(|(provenance, request)| Left::Lookup(request, provenance)),
                Recovery::View(stored) => Some(Left::View(stored.clone())),
                _ => None,
            };
            let Some(what) = what else {
                tracing::warn!(file = %entry.name, kind = %entry.kind, "closing a terminal exchange the previous run left open; nothing can record it");
                if entry.result.is_none() {
                    self.withdraw(&entry.name).await;
                    self.discard_result(&entry.name).await;
                }
                self.journal.close(entry.id).await?;
                continue;
            };
            let latency_ms = since_written(&entry);
            match self.answer_left(&entry).await {
                Some(answer) => {
                    tracing::warn!(file = %entry.name, "recording a terminal result the previous run did not record");
                    record(
                        owner.as_ref(),
                        &self.journal,
                        entry.id,
                        what,
                        answer,
                        latency_ms,
                    )
                    .await;
                }
                None => {
                    tracing::warn!(file = %entry.name, "waiting for the result of a request the previous run sent");
                    let this = self.clone();
                    let owner = owner.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let answer = this.wait_again(&entry, started).await;
                        let latency_ms = latency_ms.saturating_add(ms(started.elapsed()));
                        record(
                            owner.as_ref(),
                            &this.journal,
                            entry.id,
                            what,
                            answer,
                            latency_ms,
                        )
                        .await;
                    });
                }
            }
        }
        for (_, entries) in batches {
            self.recover_batch(owner, outbox, entries).await?;
        }
        Ok(count)
    }

    /// The answer of a journaled exchange as far as it is known at start: its result (journaled,
    /// or in `res` now), silence if it was given up, `None` if it may still come.
    async fn answer_left(&self, entry: &Entry) -> Option<Result<OnshiAnswer, OnshiError>> {
        let result = match entry.result.clone() {
            Some(result) => Some(result),
            None => self.take_now(entry).await,
        };
        match (result, entry.gave_up) {
            (Some(body), _) => Some(Ok(OnshiAnswer {
                http_status: 200,
                body,
            })),
            (None, true) => Some(Err(OnshiError::TerminalSilent {
                waited: Duration::from_millis(u64::from(since_written(entry))),
            })),
            (None, false) => None,
        }
    }

    /// Waits up to `timeout` more for the result of a request the previous run sent.
    async fn wait_again(&self, entry: &Entry, started: Instant) -> Result<OnshiAnswer, OnshiError> {
        self.wait_again_for_bytes(entry, started)
            .await
            .map(|body| OnshiAnswer {
                http_status: 200,
                body,
            })
    }

    /// [`Terminal::wait_again`], the result file's bytes as they are (a relayed answer).
    async fn wait_again_for_bytes(
        &self,
        entry: &Entry,
        started: Instant,
    ) -> Result<Vec<u8>, OnshiError> {
        self.wait_for(
            entry.id,
            &entry.name,
            correlation_of(&entry.request),
            started,
            started + self.settings.timeout,
        )
        .await
    }

    /// At start: the journal entries of one national batch. If one of them was noted with an
    /// event that committed, the rows were recorded (all in one transaction): closed. Else the
    /// batch's furthest step is found: the last `OQSmuquc02` result read (or found in `res`
    /// now); else the `OQSmuquc01` answer (read, found, given up, or waited for up to
    /// `timeout`). Polls that were never answered are withdrawn and closed (the resumed batch
    /// polls again: asking for results is harmless, unlike sending the rows twice). The rest is
    /// [`RecordsRecovered::resume_batch`]'s, in the background: it may poll for minutes.
    async fn recover_batch<R: RecordsRecovered>(
        self: &Arc<Self>,
        owner: &Arc<R>,
        outbox: &Outbox,
        entries: Vec<Entry>,
    ) -> anyhow::Result<()> {
        for entry in &entries {
            if let Some(note) = &entry.note
                && crate::folder::journal::was_committed(outbox, note).await?
            {
                for entry in &entries {
                    if entry.result.is_none() {
                        self.withdraw(&entry.name).await;
                        self.discard_result(&entry.name).await;
                    }
                    self.journal.close(entry.id).await?;
                }
                return Ok(());
            }
        }
        let Some(accept) = entries.iter().find(|e| e.kind == "OQSmuquc01").cloned() else {
            tracing::warn!("closing national batch polls whose batch is gone from the journal");
            for entry in &entries {
                self.withdraw(&entry.name).await;
                self.discard_result(&entry.name).await;
                self.journal.close(entry.id).await?;
            }
            return Ok(());
        };
        let Recovery::Batch(stored) = accept.recovery.clone() else {
            return Ok(());
        };
        let mut results = None;
        let mut tickets = vec![Ticket::journaled(self.journal.clone(), accept.id, None)];
        for entry in entries.iter().rev().filter(|e| e.kind != "OQSmuquc01") {
            let result = match entry.result.clone() {
                Some(result) => Some(result),
                None => self.take_now(entry).await,
            };
            match result {
                Some(body) if results.is_none() => {
                    results = Some(OnshiAnswer {
                        http_status: 200,
                        body,
                    });
                    tickets.push(Ticket::journaled(self.journal.clone(), entry.id, None));
                }
                Some(_) => self.journal.close(entry.id).await?,
                None => {
                    if !self.withdraw(&entry.name).await {
                        self.expect_late(&entry.name);
                    }
                    self.journal.close(entry.id).await?;
                }
            }
        }
        let accepted = self.answer_left(&accept).await;
        tracing::warn!(
            steps = entries.len(),
            "resuming a national batch the previous run did not finish"
        );
        let this = self.clone();
        let owner = owner.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let accepted = match accepted {
                Some(answer) => answer,
                None => this.wait_again(&accept, started).await,
            };
            let left = BatchLeft {
                stored,
                request: accept.request.clone(),
                accepted,
                results,
                latency_ms: since_written(&accept),
                tickets,
            };
            owner.resume_batch(left).await;
        });
        Ok(())
    }

    /// A result that may still land for a request nobody waits for any more: removed when it
    /// does.
    fn expect_late(&self, request_name: &str) {
        self.given_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                result_name(request_name),
                GivenUp {
                    at: Instant::now(),
                    last: None,
                },
            );
    }

    /// At start: a receipt computer's request the file exchange relayed. Its answer goes to the
    /// file exchange's journal of the request (unless that has one), so the file exchange
    /// finishes it without asking again: the result journaled here or found in `res`; else, if
    /// the terminal never took the request, it is withdrawn and the file exchange asks anew
    /// (the terminal never saw it); else its answer is waited for, up to `timeout`, before the
    /// agent goes on starting, and silence is journaled as silence.
    async fn recover_relay(&self, entry: &Entry, journal: &Path) -> anyhow::Result<()> {
        let request_in_work = journal.with_extension("");
        let handed_over = crate::folder::journal::read(journal)
            .ok()
            .flatten()
            .is_some();
        if handed_over || !request_in_work.exists() {
            if entry.result.is_none() {
                self.discard_result(&entry.name).await;
            }
            self.journal.close(entry.id).await?;
            return Ok(());
        }
        let written =
            SystemTime::UNIX_EPOCH + Duration::from_millis(entry.written_at_ms.max(0) as u64);
        let answer = match entry.result.clone() {
            Some(result) => Ok(result),
            None if entry.gave_up => Err(OnshiError::TerminalSilent {
                waited: self.settings.timeout,
            }),
            None => match self.take_now(entry).await {
                Some(result) => Ok(result),
                None if self.withdraw(&entry.name).await => {
                    tracing::warn!(file = %entry.name, "a relayed request the terminal never took was withdrawn; it is asked again");
                    self.journal.close(entry.id).await?;
                    return Ok(());
                }
                None => {
                    tracing::warn!(file = %entry.name, "waiting for the answer to a relayed request the previous run sent");
                    self.wait_again_for_bytes(entry, Instant::now()).await
                }
            },
        };
        let latency_ms = ms(SystemTime::now()
            .duration_since(written)
            .unwrap_or_default());
        let asked = Asked {
            answer: answer.map(|body| OnshiAnswer {
                http_status: 200,
                body,
            }),
            latency_ms,
        };
        let path = journal.to_path_buf();
        let stored = crate::folder::journal::Journal::from_asked(&asked);
        tokio::task::spawn_blocking(move || crate::folder::journal::write(&path, &stored))
            .await??;
        tracing::warn!(file = %entry.name, "handed a relayed request's answer to the file exchange");
        self.journal.close(entry.id).await?;
        Ok(())
    }

    /// At start: the result of `entry` if it is in `res` already (it landed while the agent was
    /// down), journaled and removed like any other.
    async fn take_now(&self, entry: &Entry) -> Option<Vec<u8>> {
        let path = self.settings.folders.result.join(result_name(&entry.name));
        let max = self.settings.max_result_bytes;
        let settle = self.settings.settle;
        let bytes = tokio::task::spawn_blocking(move || -> Option<Vec<u8>> {
            // Stable: the same size across two looks `settle` apart.
            let first = std::fs::symlink_metadata(&path).ok()?.len();
            std::thread::sleep(settle);
            let second = std::fs::symlink_metadata(&path).ok()?.len();
            (first == second && second > 0).then_some(())?;
            fsio::read_limited(&path, max).ok()
        })
        .await
        .ok()
        .flatten()?;
        if let Err(error) = self.journal.store_result(entry.id, bytes.clone()).await {
            tracing::error!(%error, "cannot journal a terminal result");
            return None;
        }
        self.discard_result(&entry.name).await;
        Some(bytes)
    }

    async fn discard_result(&self, request_name: &str) {
        let path = self.settings.folders.result.join(result_name(request_name));
        let _ = tokio::task::spawn_blocking(move || remove_durably(&path)).await;
    }

    /// One look at `res` for every waiting request; returns whether a result is settling.
    async fn scan(&self) -> bool {
        let late = self.late_results();
        if self.waiting().is_empty() && late.is_empty() {
            return false;
        }
        let dir = self.settings.folders.result.clone();
        let listed = tokio::task::spawn_blocking(move || list(&dir)).await;
        let present = match listed {
            Ok(Ok(present)) => present,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot list the terminal's result folder; retrying");
                return true;
            }
            Err(_) => return true,
        };
        let mut settling = false;
        for name in late {
            let Some(seen) = present.get(&name).copied() else {
                continue;
            };
            // Removed once it has been left alone for `incomplete_grace` (nobody reads it, so no
            // need to judge whether it is whole), never while the terminal may still write it.
            let stable = {
                let mut given_up = self.given_up.lock().unwrap_or_else(|p| p.into_inner());
                match given_up.get_mut(&name) {
                    Some(GivenUp {
                        last: Some((last, since)),
                        ..
                    }) if *last == seen => {
                        let quiet = since.elapsed() >= self.settings.incomplete_grace;
                        if quiet {
                            given_up.remove(&name);
                        }
                        quiet
                    }
                    Some(entry) => {
                        entry.last = Some((seen, Instant::now()));
                        false
                    }
                    None => false,
                }
            };
            if !stable {
                settling = true;
                continue;
            }
            tracing::warn!(file = %name, "a terminal result arrived after its request was given up; removed");
            let path = self.settings.folders.result.join(&name);
            let _ = tokio::task::spawn_blocking(move || remove_durably(&path)).await;
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut early = Vec::new();
        {
            let mut waiting = self.waiting();
            for (name, waiter) in waiting.iter_mut() {
                if waiter.taking {
                    continue;
                }
                let Some((size, mtime)) = present.get(name) else {
                    continue;
                };
                match waiter.last {
                    Some((s, m, since)) if s == *size && m == *mtime => {
                        if now.duration_since(since) >= self.settings.settle && *size > 0 {
                            waiter.taking = true;
                            ready.push((name.clone(), waiter.id, since));
                        } else {
                            settling = true;
                        }
                    }
                    _ => {
                        waiter.last = Some((*size, *mtime, now));
                        settling = true;
                        // A result that is already a whole document is taken at once: the
                        // settle wait is only for files that may still be growing.
                        if *size > 0 {
                            waiter.taking = true;
                            early.push((name.clone(), waiter.id));
                        }
                    }
                }
            }
        }
        for (name, id) in early {
            settling |= self.take(&name, id, Take::IfWhole).await;
        }
        for (name, id, since) in ready {
            settling |= self.take(&name, id, Take::Settled { since }).await;
        }
        settling
    }

    /// Results still expected late (given up within the last ten timeouts; older ones are
    /// forgotten, and then left in `res` for the site to clear).
    fn late_results(&self) -> Vec<String> {
        let keep = self.settings.timeout * 10;
        let mut given_up = self.given_up.lock().unwrap_or_else(|p| p.into_inner());
        given_up.retain(|_, g| g.at.elapsed() < keep);
        given_up.keys().cloned().collect()
    }

    /// Reads, journals and removes one result, then hands it to its waiter. Returns whether it
    /// must be looked at again (it looks cut short and may still be completed).
    async fn take(&self, name: &str, id: i64, how: Take) -> bool {
        let path = self.settings.folders.result.join(name);
        let max = self.settings.max_result_bytes;
        let read = tokio::task::spawn_blocking(move || fsio::read_limited(&path, max))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let delivery = match read {
            Ok(bytes) if !looks_complete(&bytes) && how.waits_for_more(&self.settings) => {
                if let Some(w) = self.waiting().get_mut(name) {
                    w.taking = false;
                }
                return true;
            }
            Ok(bytes) if !self.echoes(name, &bytes) => {
                tracing::warn!(file = %name, "a terminal result does not echo its request's ArbitraryFileIdentifier");
                Err("資格確認端末の結果が別の照会のものです / the terminal's result names another request (ArbitraryFileIdentifier)".to_string())
            }
            Ok(bytes) => {
                if let Err(error) = self.journal.store_result(id, bytes.clone()).await {
                    // Left in `res`: the next look tries again.
                    tracing::error!(%error, "cannot journal a terminal result; retrying");
                    if let Some(w) = self.waiting().get_mut(name) {
                        w.taking = false;
                    }
                    return true;
                }
                Ok(bytes)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(w) = self.waiting().get_mut(name) {
                    w.taking = false;
                    w.last = None;
                }
                return false;
            }
            Err(error) => {
                tracing::warn!(%error, file = %name, "the terminal's result file cannot be read");
                Err(format!(
                    "資格確認端末の結果ファイルを読めません / the terminal's result file cannot be read: {error}"
                ))
            }
        };
        let path = self.settings.folders.result.join(name);
        let _ = tokio::task::spawn_blocking(move || remove_durably(&path)).await;
        if delivery.is_ok() {
            fault::strike(self.fault, Fault::TerminalAfterResult);
        }
        let waiter = self.waiting().remove(name);
        match waiter.and_then(|mut w| w.tx.take()) {
            Some(tx) => {
                let _ = tx.send(delivery);
            }
            None => {
                tracing::warn!(file = %name, "a terminal result arrived after its request was given up")
            }
        }
        false
    }
}

impl Terminal {
    /// Whether the result echoes the request's `ArbitraryFileIdentifier` (when both carry one:
    /// zipped results and requests without one are matched by file name alone).
    fn echoes(&self, name: &str, result: &[u8]) -> bool {
        let expected = self.waiting().get(name).and_then(|w| w.correlation.clone());
        match (expected, correlation_of(result)) {
            (Some(expected), Some(found)) => expected == found,
            _ => true,
        }
    }
}

/// How the collector takes a result it found.
#[derive(Debug, Clone, Copy)]
enum Take {
    /// Seen for the first time, still maybe growing: only if it is a whole document already.
    IfWhole,
    /// Size and mtime held for `settle` (unchanged since `since`): whole or, once
    /// `incomplete_grace` passed, as it is (the codec then says what is wrong with it).
    Settled { since: Instant },
}

impl Take {
    /// Whether a result that does not look whole is left for a later look.
    fn waits_for_more(self, settings: &TerminalSettings) -> bool {
        match self {
            Take::IfWhole => true,
            Take::Settled { since } => since.elapsed() < settings.incomplete_grace,
        }
    }
}

/// The `ArbitraryFileIdentifier` a request or result carries (a plain value only).
fn correlation_of(bytes: &[u8]) -> Option<String> {
    onshi_domain::xml::scanned_arbitrary_file_identifier(bytes)
}

/// Whether a result is a whole document: an XML file whose last tag closes its root element,
/// or a zip archive (zipped batch results) whose end-of-central-directory record is there. A
/// file the terminal is still writing in place fails this, whatever its size at the moment.
pub(crate) fn looks_complete(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"PK") {
        return zip_is_whole(bytes);
    }
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != 0)
        .map_or(&bytes[..0], |i| &bytes[..=i]);
    let Some(root) = root_element(bytes) else {
        return false;
    };
    let Some(last_tag) = end.strip_suffix(b">") else {
        return false;
    };
    match last_tag.iter().rposition(|b| *b == b'<') {
        Some(open) => {
            let tag = &last_tag[open + 1..];
            match tag.strip_prefix(b"/") {
                Some(closing) => closing.trim_ascii() == root,
                // `<Root/>`: a root element that closes itself.
                None => tag.ends_with(b"/") && element_name(tag) == root,
            }
        }
        None => false,
    }
}

/// The name of the first element: past the XML declaration, processing instructions,
/// comments and the doctype.
fn root_element(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes;
    loop {
        let open = rest.iter().position(|b| *b == b'<')?;
        rest = &rest[open + 1..];
        match rest.first()? {
            b'?' | b'!' => {
                let close = if rest.starts_with(b"!--") {
                    rest.windows(3).position(|w| w == b"-->")? + 2
                } else {
                    rest.iter().position(|b| *b == b'>')?
                };
                rest = &rest[close + 1..];
            }
            _ => return Some(element_name(rest)),
        }
    }
}

/// The element name at the start of a tag's text (`Name attr="…"` → `Name`).
fn element_name(tag: &[u8]) -> &[u8] {
    let end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
        .unwrap_or(tag.len());
    &tag[..end]
}

/// A zip archive is written front to back and ends with its end-of-central-directory record
/// (signature `PK\x05\x06`, 22 bytes plus a comment of at most 65,535).
fn zip_is_whole(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(22 + 65_535)..];
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

fn remove_durably(path: &Path) {
    if std::fs::remove_file(path).is_ok()
        && let Some(dir) = path.parent()
    {
        let _ = fsio::sync_dir(dir);
    }
}

/// Regular files in `dir` with their size and mtime.
fn list(dir: &Path) -> std::io::Result<HashMap<String, (u64, Option<SystemTime>)>> {
    let mut found = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_file() {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            found.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (meta.len(), meta.modified().ok()),
            );
        }
    }
    Ok(found)
}

/// The collector: one task for every waiting request, until the transport is dropped.
async fn collect(terminal: Weak<Terminal>) {
    loop {
        let Some(this) = terminal.upgrade() else {
            return;
        };
        let settling = this.scan().await;
        let wait = if settling {
            this.settings.settle.min(this.settings.rescan)
        } else {
            this.settings.rescan
        };
        let wake = this.wake.clone();
        drop(this);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What a recovered answer is recorded as.
enum Left {
    Lookup(QualificationConfirmationRequest, super::Provenance),
    View(StoredView),
}

/// Milliseconds since the entry's request was written.
fn since_written(entry: &Entry) -> u32 {
    let written = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.written_at_ms.max(0) as u64);
    ms(SystemTime::now()
        .duration_since(written)
        .unwrap_or_default())
}

/// Records a recovered answer, noting its event on entry `id` and closing the entry once it
/// committed (else it is tried again at the next start).
async fn record<R: RecordsRecovered>(
    owner: &R,
    journal: &Journal,
    id: i64,
    what: Left,
    answer: Result<OnshiAnswer, OnshiError>,
    latency_ms: u32,
) {
    let ticket = Ticket::journaled(journal.clone(), id, None);
    let noting = ticket.clone();
    let before_commit: Box<dyn FnOnce(&onshi_domain::events::FleetEvent) + Send> =
        Box::new(move |e| noting.note(e));
    let recorded = match what {
        Left::Lookup(request, provenance) => {
            owner
                .record_recovered(
                    &request,
                    Asked { answer, latency_ms },
                    provenance,
                    before_commit,
                )
                .await
        }
        Left::View(stored) => {
            owner
                .record_recovered_view(&stored, answer, before_commit)
                .await
        }
    };
    match recorded {
        Ok(_) => ticket.finish().await,
        Err(error) => {
            tracing::error!(%error, "a recovered terminal exchange could not be recorded; it is tried again at the next start")
        }
    }
}

impl Transport for Terminal {
    async fn exchange_journaled(
        &self,
        message_id: &str,
        body: Vec<u8>,
        recovery: Recovery,
    ) -> (Result<OnshiAnswer, OnshiError>, Ticket) {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let (id, name) = match self
            .journal
            .begin(message_id, body.clone(), &recovery, day_jst(), now_ms())
            .await
        {
            Ok(begun) => begun,
            Err(error) => {
                return (
                    Err(OnshiError::Unreachable(format!(
                        "cannot journal the request: {error}"
                    ))),
                    Ticket::default(),
                );
            }
        };
        let ticket = Ticket::journaled(self.journal.clone(), id, self.fault);
        let correlation = correlation_of(&body);
        let path: PathBuf = self.settings.folders.request.join(&name);
        let written = tokio::task::spawn_blocking(move || fsio::write_atomic(&path, &body))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(error) = written {
            tracing::error!(%error, "cannot write a request into the terminal's folder");
            self.withdraw(&name).await;
            ticket.finish().await;
            return (
                Err(OnshiError::Unreachable(format!(
                    "cannot write the request into the terminal's folder {}: {error}",
                    self.settings.folders.request.display()
                ))),
                Ticket::default(),
            );
        }
        let answer = self
            .wait_for(id, &name, correlation, started, deadline)
            .await
            .map(|body| OnshiAnswer {
                http_status: 200,
                body,
            });
        (answer, ticket)
    }
}

#[cfg(test)]
mod whole_document {
    use super::looks_complete;
    use proptest::prelude::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/onshi-corpus");

    fn corpus_results() -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(CORPUS).expect("the shared onshi corpus beside the project")
        {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains("res_") && name.ends_with(".xml") {
                found.push(std::fs::read(&path).expect("corpus file"));
            }
        }
        assert!(found.len() >= 5, "the corpus's result files");
        found
    }

    #[test]
    fn every_corpus_result_is_whole() {
        for bytes in corpus_results() {
            assert!(
                looks_complete(&bytes),
                "{}",
                String::from_utf8_lossy(&bytes[..80])
            );
        }
    }

    #[test]
    fn documents_cut_at_a_tag_boundary_are_not_whole() {
        let doc =
            b"<?xml version=\"1.0\"?>\n<!-- a <comment> -->\n<XmlMsg><A>1</A><B/></XmlMsg>\r\n";
        assert!(looks_complete(doc));
        assert!(!looks_complete(
            b"<?xml version=\"1.0\"?>\n<XmlMsg><A>1</A>"
        ));
        assert!(!looks_complete(
            b"<?xml version=\"1.0\"?>\n<XmlMsg><A>1</A><B/>"
        ));
        assert!(looks_complete(b"<XmlMsg/>"));
        assert!(!looks_complete(b"<?xml version=\"1.0\"?>"));
        assert!(!looks_complete(
            b"PK\x03\x04 a local header and nothing more"
        ));
        assert!(looks_complete(
            b"PK\x03\x04...PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
        ));
    }

    proptest! {
        /// A file the terminal is still writing is never taken early, wherever the cut falls.
        #[test]
        fn no_strict_prefix_of_a_result_is_whole(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
            let results = corpus_results();
            let bytes = &results[pick.index(results.len())];
            let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).unwrap();
            let at = cut.index(end);
            prop_assert!(!looks_complete(&bytes[..at]), "cut at {}", at);
        }
    }
}
