//! `onshi-sim terminal`: the qualification terminal's software (資格確認端末) as a receipt
//! computer and the edge agent see it: its **file interface** (domain notes §4).
//!
//! - A client writes `<Kind>req_<suffix>.xml` into `<folder>/req` (a temporary name, then a
//!   rename). The terminal notices it (file-system notification plus a periodic rescan,
//!   [`TerminalSettings::rescan`]), reads it once it is whole (a file that does not read is
//!   given [`TerminalSettings::incomplete_grace`] of quiet to be finished before it is answered
//!   as unreadable), takes it out of `req` (removed, or moved to `req/done` with
//!   [`AfterAnswer::Move`]: what the real terminal does is not public) and writes the result as
//!   the same name with `req` replaced by `res` into `<folder>/res`, atomically.
//!   Taking the request out when it is picked up, not when it is answered, lets a client tell
//!   a silent terminal (requests stay) from a slow one (requests gone, no result yet).
//! - Answers come from the simulator's population through [`national`]: single eligibility
//!   (`OQSsiquc01`), the two-step batch (`OQSmuquc01` → reception number, `OQSmuquc02` → in
//!   progress, then the results, zipped with `--zip-batch`), drug
//!   (`YZKsiquc01`) and checkup (`TKKsiquc01`) information.
//! - `onshi-sim terminal present` plays a patient on the face-recognition reader ([`face`]):
//!   an `OQSsiquc01res_face_…` file in `<folder>/face` and the consent, kept in
//!   `<folder>/.sim/consents/` for the running terminal ([`files`]).
//! - Knobs ([`knobs`]): latency, silence, malformed results, late results; at start and at run
//!   time through `<folder>/.sim/knobs.json` (or SIGUSR1/SIGUSR2 for silence). A terminal
//!   stopped while it holds answers loses them (their requests were already taken), as a
//!   crashed terminal would.
//!
//! The terminal answers for one institution (`--institution`): a request naming another is
//! answered with `SIM-E0102`, as the national system refuses a terminal certificate's
//! mismatch. Logs carry message kinds and counts, never file names (some clients put a
//! patient number in the suffix) nor anything read from a file.

pub mod face;
pub mod files;
pub mod knobs;
pub mod names;
pub mod national;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::XmlError;
use tokio::sync::{Notify, watch};

use crate::http::now_jst;
use crate::population::Population;
pub use files::{Folders, Identity};
use knobs::{Counter, Knobs};
use names::Kind;
use national::National;

/// The default institution: a real Hokkaido clinic code used by the sample files of
/// `shared/onshi-corpus`.
pub const DEFAULT_INSTITUTION: &str = "0110112489";

/// What happens to a request file once the terminal has taken it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AfterAnswer {
    #[default]
    Remove,
    /// Into `req/done`.
    Move,
}

/// Everything `onshi-sim terminal` needs.
#[derive(Debug, Clone)]
pub struct TerminalSettings {
    pub folder: std::path::PathBuf,
    pub institution: MedicalInstitutionCode,
    pub seed: u64,
    pub population: usize,
    /// Time from a batch inquiry's acceptance to its results being ready.
    pub batch_delay: Duration,
    pub requests: AfterAnswer,
    /// The knobs at start (the control file may change them).
    pub knobs: Knobs,
    /// The periodic rescan of `req` (notifications can be lost, on network shares especially).
    pub rescan: Duration,
    /// How long a file that does not read must stay unchanged before it is answered as
    /// unreadable (it may still be being written).
    pub incomplete_grace: Duration,
    /// Also writes every result, as written to `res`, into this folder (`--copy-results`):
    /// evidence of what the terminal answered, for tests of clients that pass results on.
    pub copy_results: Option<std::path::PathBuf>,
    /// Batch results (an `OQSmuquc02res` that carries them) are written as a zip archive
    /// holding the result XML, under the same file name (`--zip-batch`): the national side may
    /// zip them (domain notes §3; the real archive's layout and file name are UNCONFIRMED).
    pub zip_batch: bool,
}

/// A terminal with its folders ready.
#[derive(Debug)]
pub struct Terminal {
    settings: TerminalSettings,
    folders: Folders,
    national: National,
    knobs: watch::Sender<Knobs>,
    counter: Counter,
}

#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
}

impl Terminal {
    /// Creates the folders, generates the population and writes `terminal.json` and the knobs.
    pub fn build(settings: TerminalSettings) -> anyhow::Result<Self> {
        let folders = Folders::under(&settings.folder);
        folders.create(settings.requests == AfterAnswer::Move)?;
        let population = Arc::new(Population::generate(settings.seed, settings.population));
        let national = National::new(
            settings.institution.clone(),
            population,
            settings.batch_delay,
        );
        let identity = Identity {
            institution: settings.institution.to_string(),
            seed: settings.seed,
            population: settings.population,
        };
        files::write_atomic(
            &folders.identity(),
            &serde_json::to_vec_pretty(&identity).context("encoding terminal.json")?,
        )
        .context("writing terminal.json")?;
        write_knobs(&folders, &settings.knobs)?;
        Ok(Self {
            knobs: watch::Sender::new(settings.knobs.clone()),
            settings,
            folders,
            national,
            counter: Counter::default(),
        })
    }

    pub fn folders(&self) -> &Folders {
        &self.folders
    }

    pub fn national(&self) -> &National {
        &self.national
    }

    /// Answers requests until `shutdown`. Answers still held by a knob are dropped then.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let wake = Arc::new(Notify::new());
        let _watcher = watch_folders(&[&self.folders.req, self.folders.sim()], wake.clone());
        let mut seen = HashMap::new();
        let mut knobs_file = Vec::new();
        let mut pending = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(
            people = self.national.population().len(),
            "onshi-sim terminal watching its request folder"
        );
        loop {
            self.reload_knobs(&mut knobs_file);
            let unsettled = if self.knobs.borrow().silent {
                false
            } else {
                self.scan(&mut seen, &mut pending, &mut knobs_file)
            };
            while pending.try_join_next().is_some() {}
            let wait = if unsettled {
                self.settings.rescan.min(Duration::from_millis(50))
            } else {
                self.settings.rescan
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
        pending.abort_all();
        tracing::info!("onshi-sim terminal stopped");
        Ok(())
    }

    /// Takes the knobs from the control file when it changed (a file that does not read is
    /// reported once and ignored).
    fn reload_knobs(&self, last: &mut Vec<u8>) {
        let Ok(bytes) = std::fs::read(self.folders.knobs()) else {
            return;
        };
        if bytes == *last {
            return;
        }
        match serde_json::from_slice::<Knobs>(&bytes) {
            Ok(knobs) => {
                self.knobs.send_if_modified(|current| {
                    let changed = *current != knobs;
                    if changed {
                        tracing::info!(?knobs, "terminal knobs changed");
                        *current = knobs;
                    }
                    changed
                });
            }
            Err(error) => tracing::warn!(%error, "knobs.json does not read; keeping the knobs"),
        }
        *last = bytes;
    }

    /// One look at `req`; returns whether a file is still being waited for.
    fn scan(
        &self,
        seen: &mut HashMap<String, Seen>,
        pending: &mut tokio::task::JoinSet<()>,
        knobs_file: &mut Vec<u8>,
    ) -> bool {
        let found = match list_requests(&self.folders.req) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "cannot list the request folder; retrying");
                return true;
            }
        };
        // Knobs changed before a request was written govern that request: read them again
        // now that the request is listed. Read only before the listing, a terminal silenced
        // just before a request arrived could take it under the old knobs (the tap's tests
        // silence the terminal, then write a request the agent must see first).
        if !found.is_empty() {
            self.reload_knobs(knobs_file);
            if self.knobs.borrow().silent {
                return false;
            }
        }
        seen.retain(|name, _| found.iter().any(|(n, _)| n == name));
        let mut unsettled = false;
        let mut consents_read = false;
        for (name, kind) in found {
            let path = self.folders.req.join(&name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let (size, mtime) = (meta.len(), meta.modified().ok());
            let entry = seen.entry(name.clone()).or_insert(Seen {
                size,
                mtime,
                since: Instant::now(),
            });
            if entry.size != size || entry.mtime != mtime {
                *entry = Seen {
                    size,
                    mtime,
                    since: Instant::now(),
                };
            }
            let quiet = entry.since.elapsed();
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    tracing::warn!(%error, kind = ?kind, "a request file cannot be read yet");
                    unsettled = true;
                    continue;
                }
            };
            let read = National::read(kind, &bytes);
            if let Err(error) = &read
                && maybe_incomplete(error, &bytes)
                && quiet < self.settings.incomplete_grace
            {
                unsettled = true;
                continue;
            }
            // Taken: from here on the request is the terminal's.
            if let Err(error) = self.take(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::error!(%error, "cannot take a request out of req; will retry");
                    unsettled = true;
                }
                continue;
            }
            seen.remove(&name);
            let now = now_jst();
            let at = Instant::now();
            let result = match &read {
                Ok(request) => {
                    if matches!(kind, Kind::Drug | Kind::Checkup) && !consents_read {
                        self.national
                            .refresh_consents(&files::read_consents(&self.folders));
                        consents_read = true;
                    }
                    let now_utc = time::OffsetDateTime::now_utc();
                    self.national.answer(request, &bytes, now, now_utc, at)
                }
                Err(error) => {
                    tracing::info!(kind = ?kind, code = crate::errors::SimErrorCode::for_xml_error(error).code(), "request does not read; answering the error");
                    self.national.unreadable(kind, &bytes, error, now, at)
                }
            };
            let result = if self.settings.zip_batch && kind == Kind::BatchFetch {
                zipped_if_results(result, &names::result_name(&name))
            } else {
                result
            };
            let fate = self.counter.next(&self.knobs.borrow());
            let target = self.folders.res.join(names::result_name(&name));
            let copy = self
                .settings
                .copy_results
                .as_ref()
                .map(|dir| dir.join(names::result_name(&name)));
            let mut knobs = self.knobs.subscribe();
            pending.spawn(async move {
                if !fate.delay.is_zero() {
                    tokio::time::sleep(fate.delay).await;
                }
                // Silenced meanwhile: the answer waits for the terminal to come back.
                if knobs.wait_for(|k| !k.silent).await.is_err() {
                    return;
                }
                let bytes = if fate.malformed {
                    knobs::break_xml(&result)
                } else {
                    result
                };
                let written = tokio::task::spawn_blocking(move || {
                    if let Some(copy) = copy {
                        files::write_atomic(&copy, &bytes)?;
                    }
                    files::write_atomic(&target, &bytes)
                })
                .await;
                match written {
                    Ok(Ok(())) => tracing::debug!(
                        kind = ?kind,
                        delay_ms = fate.delay.as_millis() as u64,
                        malformed = fate.malformed,
                        "answered"
                    ),
                    Ok(Err(error)) => {
                        tracing::error!(%error, kind = ?kind, "cannot write a result file")
                    }
                    Err(error) => tracing::error!(%error, "the result writer failed"),
                }
            });
        }
        unsettled
    }

    fn take(&self, path: &Path) -> std::io::Result<()> {
        match self.settings.requests {
            AfterAnswer::Remove => std::fs::remove_file(path),
            AfterAnswer::Move => files::move_into(path, &self.folders.done).map(|_| ()),
        }
    }
}

/// Writes the control file.
/// A batch result that carries the results (SegmentOfResult 1), deflated into a zip archive
/// whose one file is `name`; anything else (in progress, refused) as it is.
fn zipped_if_results(result: Vec<u8>, name: &str) -> Vec<u8> {
    let ready = onshi_domain::xml::BulkResult::from_xml(&result)
        .is_ok_and(|r| r.header.segment_of_result == onshi_domain::codes::SegmentOfResult::Normal);
    if ready {
        onshi_domain::zip::single_entry(name, &result, onshi_domain::zip::Method::Deflated)
    } else {
        result
    }
}

pub fn write_knobs(folders: &Folders, knobs: &Knobs) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(knobs).context("encoding the knobs")?;
    files::write_atomic(&folders.knobs(), &json)
        .with_context(|| format!("writing {}", folders.knobs().display()))
}

/// Reads the control file (defaults when there is none).
pub fn read_knobs(folders: &Folders) -> anyhow::Result<Knobs> {
    match std::fs::read(folders.knobs()) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", folders.knobs().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Knobs::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", folders.knobs().display())),
    }
}

/// Whether a file that does not read may simply not be finished yet.
fn maybe_incomplete(error: &XmlError, bytes: &[u8]) -> bool {
    bytes.is_empty() || matches!(error, XmlError::Malformed { .. } | XmlError::Encoding(_))
}

/// The request files in `dir`, with their kinds.
fn list_requests(dir: &Path) -> std::io::Result<Vec<(String, Kind)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(kind) = names::request_kind(&name)
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            found.push((name, kind));
        }
    }
    // Name order is the order of a receipt computer's sequence numbers.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// File-system notification on `dirs`; `None` (rescans only) when it is unavailable.
fn watch_folders(dirs: &[&Path], wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            // Not opening and reading (notify reports those too): the scan's own listing and
            // reads would wake it again and keep it spinning.
            use notify::event::{AccessKind, AccessMode, EventKind};
            let changes = match event.map(|e| e.kind) {
                Ok(EventKind::Access(AccessKind::Close(AccessMode::Write))) => true,
                Ok(EventKind::Access(_)) | Err(_) => false,
                Ok(_) => true,
            };
            if changes {
                wake.notify_one();
            }
        },
    ) {
        Ok(w) => w,
        Err(error) => {
            tracing::warn!(%error, "file-system notification unavailable; relying on the periodic rescan");
            return None;
        }
    };
    for dir in dirs {
        if let Err(error) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(%error, folder = %dir.display(), "cannot watch a folder; relying on the periodic rescan");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal silenced just before a request arrives never takes that request, even when it
    /// last read its knobs before either was written (the run loop's read, then a wake-up by the
    /// request). Before the knobs were read again after listing, it took the request under the
    /// old knobs, and the tap's end-to-end test lost that race under load (once in three full
    /// test runs of 2026-12-06).
    #[tokio::test]
    async fn knobs_written_before_a_request_govern_it() {
        let dir = tempfile::tempdir().unwrap();
        let terminal = Terminal::build(TerminalSettings {
            folder: dir.path().to_path_buf(),
            institution: MedicalInstitutionCode::parse("0110112489").unwrap(),
            seed: 1,
            population: 10,
            batch_delay: Duration::ZERO,
            requests: AfterAnswer::Remove,
            knobs: Knobs::default(),
            rescan: Duration::from_secs(1),
            // Any file is answered at once, readable or not.
            incomplete_grace: Duration::ZERO,
            copy_results: None,
            zip_batch: false,
        })
        .unwrap();
        let mut knobs_file = Vec::new();
        terminal.reload_knobs(&mut knobs_file);
        assert!(!terminal.knobs.borrow().silent);

        let silent = Knobs {
            silent: true,
            ..Knobs::default()
        };
        write_knobs(terminal.folders(), &silent).unwrap();
        let request = terminal
            .folders()
            .req
            .join("OQSsiquc01req_202612010001.xml");
        std::fs::write(&request, b"<any/>").unwrap();
        let mut seen = HashMap::new();
        let mut pending = tokio::task::JoinSet::new();
        terminal.scan(&mut seen, &mut pending, &mut knobs_file);

        assert!(request.exists(), "the silenced terminal took the request");
        assert!(pending.is_empty(), "the silenced terminal is answering");
        assert!(terminal.knobs.borrow().silent);
    }
}
