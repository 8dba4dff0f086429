//! Tap mode (`mode = "tap"`): for sites whose receipt computer keeps talking to the
//! qualification terminal directly. The agent only **reads** the terminal's `req` and `res`
//! folders (and `face`, [`super::face`]): read access is all it needs, and it never writes,
//! moves or renames anything there. It pairs each of the receipt computer's requests with the
//! terminal's result and records the exchange once ([`crate::exchanges`], source
//! `terminal_tap`):
//!
//! - a request (`<Kind>req_<suffix>.xml`, the kinds of [`crate::exchanges::Kind`]) is read as
//!   soon as it is whole (its root element closed; a file that never closes is taken as it is
//!   once quiet for `incomplete_grace`), and kept in the journal (`tap_requests`) with when it
//!   was first seen: the terminal takes requests away, often before their result appears;
//! - its result (`<Kind>res_<suffix>.xml`, the same name) is read once stable (size and mtime
//!   held for `settle`) and recorded with the request: the patient from the request, the
//!   outcome from the result, the time between them as the latency. The result must echo the
//!   request's `ArbitraryFileIdentifier` when both carry one;
//! - a result whose request was never seen (the terminal took it first) is recorded from the
//!   result alone: an eligibility result echoes the search, so the patient is the same; a drug
//!   or checkup result names the person (name, birth date, sex), not the card, so its view is
//!   recorded under a reference of that person, which does not join the patient's card events
//!   ([`crate::exchanges`]);
//! - a request unanswered for `timeout` is recorded as unanswered (unreachable), so a silent
//!   terminal is visible at central; a result that comes later is not recorded again.
//!
//! Each exchange is a file recorded once ([`super::watched`], under `tap`, by result name), so
//! across restarts nothing is recorded twice and nothing is missed; results already in `res`
//! when the agent starts are recorded too.
//!
//! The requests seen and answered feed the terminal's health ([`crate::national::health`]): the oldest
//! unanswered request's age, the answer times, a request given up. Logs carry message kinds
//! only, never file names (some receipt computers put a patient number in them).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use onshi_domain::events::LookupSource;
use onshi_domain::patient::PatientHashKey;
use onshi_domain::site::TerminalId;
use tokio::sync::Notify;

use super::watched::Watched;
use crate::exchanges::{self, Kind};
use crate::folder::fsio;
use crate::national::health::Health;
use crate::national::journal::Journal;
use crate::national::settings::{TerminalFolders, TerminalSettings};
use crate::national::{OnshiAnswer, OnshiError};
use crate::outbox::Outbox;
use crate::recorder::Recorder;

/// The tap's key among watched files.
pub const WATCHED: &str = "tap";

#[derive(Debug)]
pub struct Tap {
    folders: TerminalFolders,
    settings: TerminalSettings,
    journal: Journal,
    watched: Watched,
    health: Arc<Health>,
    patient_key: PatientHashKey,
}

/// A request read from `req`, not yet recorded.
#[derive(Debug)]
struct Pending {
    kind: Kind,
    bytes: Vec<u8>,
    seen_at_ms: i64,
    /// Its id in the health's book.
    id: i64,
}

/// A file's size and mtime, and since when they held.
#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
}

/// What one run keeps between scans.
#[derive(Debug, Default)]
struct State {
    /// By request name.
    pending: HashMap<String, Pending>,
    /// Result names recorded (or recorded as unanswered).
    handled: HashSet<String>,
    /// Files being watched settle, by folder (`false` req, `true` res) and name.
    seen: HashMap<(bool, String), Seen>,
    /// Requests that cannot be read (links, devices, too large): said once.
    refused: HashSet<String>,
    /// Results present at the last look (`None` before the first): a handled one that appears
    /// anew is a late answer.
    results: Option<HashSet<String>>,
    next_id: i64,
}

type Listing = Vec<(String, u64, Option<SystemTime>)>;

impl Tap {
    /// The terminal's health as the tap will see it ([`crate::national::National::Tap`] holds it too).
    pub fn health_for(settings: &TerminalSettings) -> Arc<Health> {
        Arc::new(Health::new(settings.slow, settings.timeout))
    }

    /// The folders must exist: they are the terminal software's.
    pub fn new(
        settings: &TerminalSettings,
        journal: Journal,
        health: Arc<Health>,
        recorder: Recorder,
        patient_key: PatientHashKey,
        terminal: TerminalId,
    ) -> anyhow::Result<Self> {
        for dir in [&settings.folders.request, &settings.folders.result] {
            anyhow::ensure!(
                dir.is_dir(),
                "資格確認端末のフォルダがありません: {} / the qualification terminal's folder {} does not exist (or cannot be read): check [onshi] folder and that the terminal software is installed",
                dir.display(),
                dir.display()
            );
        }
        Ok(Self {
            folders: settings.folders.clone(),
            settings: settings.clone(),
            watched: Watched::new(journal.clone(), WATCHED, recorder, terminal),
            journal,
            health,
            patient_key,
        })
    }

    /// The terminal's health as the tap sees it (for `edge-agent status` and link events).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Finishes exchanges a previous run left between events and forgets requests whose
    /// exchange was recorded. Call at start, before anything else records events.
    pub async fn recover(&self, outbox: &Outbox) -> anyhow::Result<usize> {
        let left = self.watched.recover(outbox).await?;
        let handled = self.watched.handled().await?;
        for request in self.journal.tap_requests().await? {
            if handled.contains(&exchanges::result_name(&request.name)) {
                self.journal.tap_done(request.name).await?;
            }
        }
        // Exchanges recorded more than a week ago whose files the site has cleared away.
        let (req, res) = (self.folders.request.clone(), self.folders.result.clone());
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<HashSet<String>> {
            let mut present: HashSet<String> = names(&res)?.into_iter().collect();
            present.extend(names(&req)?.iter().map(|n| exchanges::result_name(n)));
            Ok(present)
        })
        .await?;
        if let Ok(present) = listed {
            let pruned = self.watched.prune(present).await?;
            if pruned > 0 {
                tracing::info!(
                    pruned,
                    "forgot observed exchanges the site has cleared away"
                );
            }
        }
        Ok(left)
    }

    /// Watches `req` and `res` until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let wake = Arc::new(Notify::new());
        let _watchers = (
            crate::folder::watch(&self.folders.request, wake.clone()),
            crate::folder::watch(&self.folders.result, wake.clone()),
        );
        let mut state = State::default();
        match self.load(&mut state).await {
            Ok(()) => {}
            Err(error) => {
                tracing::error!(%error, "cannot read what the tap recorded; not watching the terminal's folders");
                return;
            }
        }
        tokio::pin!(shutdown);
        tracing::info!(
            requests = %self.folders.request.display(),
            results = %self.folders.result.display(),
            "tap mode: watching the receipt computer's exchanges with the terminal"
        );
        loop {
            let wait = self.scan(&mut state).await;
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
    }

    async fn load(&self, state: &mut State) -> anyhow::Result<()> {
        state.handled = self.watched.handled().await?;
        let now = now_ms();
        for request in self.journal.tap_requests().await? {
            let Some(kind) = Kind::of_request(&request.name) else {
                continue;
            };
            state.next_id += 1;
            let age = Duration::from_millis(u64::try_from(now - request.seen_at_ms).unwrap_or(0));
            self.health.sent(
                state.next_id,
                Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            );
            state.pending.insert(
                request.name,
                Pending {
                    kind,
                    bytes: request.request,
                    seen_at_ms: request.seen_at_ms,
                    id: state.next_id,
                },
            );
        }
        Ok(())
    }

    /// One look at both folders; returns how long to wait before the next one at most.
    async fn scan(&self, state: &mut State) -> Duration {
        let (req, res) = (self.folders.request.clone(), self.folders.result.clone());
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<(Listing, Listing)> {
            Ok((
                list(&req, |n| Kind::of_request(n).is_some())?,
                list(&res, |n| Kind::of_result(n).is_some())?,
            ))
        })
        .await;
        let (requests, results) = match listed {
            Ok(Ok(listed)) => listed,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot list the terminal's folders; retrying");
                return self.settings.rescan;
            }
            Err(_) => return self.settings.rescan,
        };
        let mut settling = false;
        let now = Instant::now();
        let present: HashSet<(bool, String)> = requests
            .iter()
            .map(|(n, _, _)| (false, n.clone()))
            .chain(results.iter().map(|(n, _, _)| (true, n.clone())))
            .collect();
        state.seen.retain(|key, _| present.contains(key));
        state
            .refused
            .retain(|n| present.contains(&(false, n.clone())));

        let result_names: HashSet<String> = results.iter().map(|(n, _, _)| n.clone()).collect();
        for (name, size, mtime) in &requests {
            let answer = exchanges::result_name(name);
            if state.handled.contains(&answer) {
                // At start: recorded as unanswered, still not taken, still no answer.
                if state.results.is_none() && !result_names.contains(&answer) {
                    self.health.known_silent();
                }
                continue;
            }
            if state.pending.contains_key(name) || state.refused.contains(name) {
                continue;
            }
            settling |= self.read_request(state, name, *size, *mtime, now).await;
        }

        for (name, size, mtime) in &results {
            if state.handled.contains(name) {
                if state.results.as_ref().is_some_and(|r| !r.contains(name)) {
                    // A late answer to a request recorded as unanswered: the terminal is back.
                    self.health.heard();
                }
                continue;
            }
            settling |= self.read_result(state, name, *size, *mtime, now).await;
        }
        let result_names = state.results.insert(result_names);

        // Requests unanswered for `timeout`, whose result is not settling in `res` right now.
        let mut next_deadline: Option<Duration> = None;
        let overdue: Vec<String> = state
            .pending
            .iter()
            .filter_map(|(name, p)| {
                let age = age_of(p.seen_at_ms);
                if age >= self.settings.timeout {
                    (!result_names.contains(&exchanges::result_name(name))).then(|| name.clone())
                } else {
                    let left = self.settings.timeout - age;
                    next_deadline = Some(next_deadline.map_or(left, |d| d.min(left)));
                    None
                }
            })
            .collect();
        for name in overdue {
            settling |= !self.record_unanswered(state, &name).await;
        }

        let mut wait = self.settings.rescan;
        if settling {
            wait = wait.min(self.settings.settle.max(Duration::from_millis(10)));
        }
        if let Some(deadline) = next_deadline {
            wait = wait.min(deadline + Duration::from_millis(10));
        }
        wait
    }

    /// Reads one request of the receipt computer's once it is whole. Returns whether it is
    /// still being waited for.
    async fn read_request(
        &self,
        state: &mut State,
        name: &str,
        size: u64,
        mtime: Option<SystemTime>,
        now: Instant,
    ) -> bool {
        let Some(kind) = Kind::of_request(name) else {
            return false;
        };
        let quiet = settle(&mut state.seen, (false, name.to_string()), size, mtime, now);
        if size == 0 {
            return true;
        }
        let path = self.folders.request.join(name);
        let max = self.settings.max_result_bytes;
        let read = tokio::task::spawn_blocking(move || fsio::read_limited(&path, max))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let bytes = match read {
            Ok(bytes) => bytes,
            // Taken by the terminal meanwhile: its result will tell.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return false,
            Err(error) if fsio::is_refusal(&error) => {
                tracing::warn!(%error, kind = kind.message_id(), "a request in the terminal's folder cannot be read as a file; ignored");
                state.refused.insert(name.to_string());
                return false;
            }
            Err(error) => {
                tracing::warn!(%error, kind = kind.message_id(), "a request in the terminal's folder cannot be read yet");
                return true;
            }
        };
        // Taken as soon as it is whole: the terminal may take it away any moment. A writer
        // that never closes the root is taken as it is once quiet long enough.
        if !closes_root(&bytes) && quiet < self.settings.incomplete_grace.max(self.settings.settle)
        {
            return true;
        }
        let seen_at_ms = now_ms();
        if let Err(error) = self
            .journal
            .tap_seen(name.to_string(), bytes.clone(), seen_at_ms)
            .await
        {
            tracing::error!(%error, "cannot journal a request seen in the terminal's folder; retrying");
            return true;
        }
        state.next_id += 1;
        self.health.sent(state.next_id, now);
        state.pending.insert(
            name.to_string(),
            Pending {
                kind,
                bytes,
                seen_at_ms,
                id: state.next_id,
            },
        );
        state.seen.remove(&(false, name.to_string()));
        tracing::debug!(
            kind = kind.message_id(),
            "request seen in the terminal's folder"
        );
        false
    }

    /// Reads and records one result once stable. Returns whether it is still being waited for.
    async fn read_result(
        &self,
        state: &mut State,
        name: &str,
        size: u64,
        mtime: Option<SystemTime>,
        now: Instant,
    ) -> bool {
        let Some(kind) = Kind::of_result(name) else {
            return false;
        };
        let quiet = settle(&mut state.seen, (true, name.to_string()), size, mtime, now);
        if quiet < self.settings.settle || size == 0 {
            return true;
        }
        let path = self.folders.result.join(name);
        let max = self.settings.max_result_bytes;
        let read = tokio::task::spawn_blocking(move || fsio::read_limited(&path, max))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let body = match read {
            Ok(bytes)
                if !crate::national::terminal::looks_complete(&bytes)
                    && quiet < self.settings.incomplete_grace =>
            {
                return true;
            }
            Ok(bytes) => bytes,
            // Cleared away meanwhile (the receipt computer took it): its request, if seen,
            // then times out.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return false,
            // Not a file (a link, a device) or too large: recorded as an answer that does not
            // read.
            Err(error) if fsio::is_refusal(&error) => {
                tracing::warn!(%error, kind = kind.message_id(), "a result in the terminal's folder cannot be read as a file");
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(%error, kind = kind.message_id(), "a result in the terminal's folder cannot be read yet");
                return true;
            }
        };
        let answer = OnshiAnswer {
            http_status: 200,
            body,
        };
        let request_name = exchanges::request_name(name);
        let paired = match state.pending.get(&request_name) {
            Some(p) if !echoes(&p.bytes, &answer.body) => {
                tracing::warn!(
                    kind = kind.message_id(),
                    "a result in the terminal's folder does not echo its request's ArbitraryFileIdentifier; recorded from the result alone"
                );
                None
            }
            other => other,
        };
        let latency_ms = match (paired, mtime) {
            (Some(p), Some(mtime)) => {
                let answered = mtime
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                u32::try_from((answered - p.seen_at_ms).max(0)).unwrap_or(u32::MAX)
            }
            _ => 0,
        };
        let events = exchanges::events(
            kind,
            paired.map(|p| p.bytes.as_slice()),
            Ok(&answer),
            self.context(latency_ms),
        );
        let recorded = self.watched.record(name, size, events).await;
        if let Err(error) = recorded {
            tracing::error!(%error, kind = kind.message_id(), "an observed exchange could not be recorded; retrying");
            return true;
        }
        state.handled.insert(name.to_string());
        state.seen.remove(&(true, name.to_string()));
        tracing::info!(
            kind = kind.message_id(),
            paired = paired.is_some(),
            latency_ms,
            "observed exchange recorded"
        );
        // The request (paired or not: a result under its name answers it) is done.
        if let Some(p) = state.pending.remove(&request_name) {
            self.health
                .answered(p.id, Duration::from_millis(u64::from(latency_ms)));
            if let Err(error) = self.journal.tap_done(request_name).await {
                tracing::warn!(%error, "cannot forget a recorded request; it is forgotten at the next start");
            }
        } else {
            self.health.heard();
        }
        false
    }

    /// Records a request the terminal did not answer within `timeout`. Returns whether it was.
    async fn record_unanswered(&self, state: &mut State, name: &str) -> bool {
        let Some(p) = state.pending.get(name) else {
            return true;
        };
        let waited = age_of(p.seen_at_ms);
        let waited_ms = u32::try_from(waited.as_millis()).unwrap_or(u32::MAX);
        let silent = OnshiError::TerminalSilent { waited };
        let events = exchanges::events(
            p.kind,
            Some(&p.bytes),
            Err(&silent),
            self.context(waited_ms),
        );
        let result = exchanges::result_name(name);
        if let Err(error) = self.watched.record(&result, 0, events).await {
            tracing::error!(%error, "an unanswered request could not be recorded; retrying");
            return false;
        }
        tracing::warn!(
            kind = p.kind.message_id(),
            waited_ms,
            "the terminal did not answer a receipt computer's request; recorded as unanswered"
        );
        self.health.gave_up(p.id);
        state.handled.insert(result);
        state.pending.remove(name);
        if let Err(error) = self.journal.tap_done(name.to_string()).await {
            tracing::warn!(%error, "cannot forget a recorded request; it is forgotten at the next start");
        }
        true
    }

    fn context(&self, latency_ms: u32) -> exchanges::Context<'_> {
        exchanges::Context {
            patient_key: &self.patient_key,
            source: LookupSource::TerminalTap,
            latency_ms,
            today: crate::lookup::today_jst(),
        }
    }
}

/// Tracks a file's size and mtime; returns how long they have held.
fn settle(
    seen: &mut HashMap<(bool, String), Seen>,
    key: (bool, String),
    size: u64,
    mtime: Option<SystemTime>,
    now: Instant,
) -> Duration {
    let entry = seen.entry(key).or_insert(Seen {
        size,
        mtime,
        since: now,
    });
    if entry.size != size || entry.mtime != mtime {
        *entry = Seen {
            size,
            mtime,
            since: now,
        };
    }
    now.duration_since(entry.since)
}

/// Whether the file ends with its root element closed (`</XmlMsg>`, whitespace after it
/// allowed): a request written in place is whole then.
fn closes_root(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != 0)
        .map_or(&bytes[..0], |i| &bytes[..=i]);
    end.ends_with(b"</XmlMsg>")
}

/// Whether `result` echoes `request`'s `ArbitraryFileIdentifier` (when both carry one).
fn echoes(request: &[u8], result: &[u8]) -> bool {
    let id = |b: &[u8]| crate::filex::scan_echo(b).arbitrary_file_identifier;
    match (id(request), id(result)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn age_of(seen_at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms() - seen_at_ms).unwrap_or(0))
}

/// Regular files in `dir` whose names `keep` accepts, with size and mtime.
fn list(dir: &Path, keep: impl Fn(&str) -> bool) -> std::io::Result<Listing> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            found.push((name, meta.len(), meta.modified().ok()));
        }
    }
    found.sort();
    Ok(found)
}

fn names(dir: &PathBuf) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
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

#[cfg(test)]
mod tests;
