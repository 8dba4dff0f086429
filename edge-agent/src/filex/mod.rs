//! The receipt-computer (レセコン) file exchange: request files in, result files out.
//!
//! The receipt computer writes `<Kind>req_<suffix>.xml` into the request folder; the agent
//! answers `<Kind>res_<suffix>.xml` in the result folder (domain doc §4), for every kind the
//! terminal answers ([`kinds`]): single eligibility `OQSsiquc01`, the batch inquiry's two steps
//! `OQSmuquc01` / `OQSmuquc02`, drug `YZKsiquc01` and checkup `TKKsiquc01` information. With
//! `transport = "terminal"` this is **relay mode**: the receipt computer's folders point at the
//! agent, which passes each request on to the qualification terminal and its answer back. The
//! folder is watched with file-system notification plus a periodic rescan (notifications can be
//! lost, on network shares especially). A file is touched only once it is stable (size and mtime
//! unchanged for `settle_ms`); a file that still does not parse is given `incomplete_grace_ms`
//! of quiet to be completed before it is declared bad, so a slow writer is never answered early.
//!
//! One request, step by step (each step durable before the next):
//!
//! 1. **claim**: `rename` into the work folder (from here on, the request is the agent's);
//! 2. **ask** the national system with the request's own bytes (checked to be well formed and
//!    this site's, never rewritten), and journal the answer ([`journal`]); through the terminal
//!    the exchange is journaled there too ([`crate::national::Recovery::Relay`]), so an answer
//!    that lands while the agent is down is found at start and nothing is asked twice;
//! 3. **record** the request's events, as the agent's own paths record that kind
//!    ([`crate::exchanges`], `LookupSource::FileExchange`: a lookup per eligibility request and
//!    per batch row, an `InfoView` per drug or checkup request, nothing for a batch accepted or
//!    still in progress); the journal notes each event's sequence inside the outbox transaction;
//! 4. **answer**: the result file, written atomically (temp + fsync + rename) — the national
//!    system's file byte for byte as it came, or, when there is none or it does not read as its
//!    kind's result, a file in that kind's shape with an agent code ([`codes`]) telling the
//!    clerk what to do;
//! 5. **archive** the request and drop the journal.
//!
//! A crash anywhere is resumed at start ([`FileExchange::recover`]) from the work folder: each
//! request is answered exactly once, with no second national query once the answer is
//! journaled and no second event once it is recorded. (One window remains: a crash between
//! publishing the result and archiving the request, if the receipt computer has already taken
//! the result away, writes it again; the result carries the request's
//! `ArbitraryFileIdentifier`.)
//!
//! A bad file (unreadable, malformed, oversized, another institution) is moved to the error
//! folder with an error result (and, with `err_files`, a `<request-name>.err` text) in the
//! result folder. Nothing about one file stops the watcher.

pub mod codes;
pub mod kinds;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use onshi_domain::events::{EventBody, LookupRoute, LookupSource};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{XmlEncoding, XmlError};
use tokio::sync::Notify;

use crate::fault::{self, Fault};
use crate::folder::journal::{self, Journal, Recording};
use crate::folder::{fsio, watch};
use crate::lookup::Lookups;
use crate::outbox::Outbox;
use codes::{AgentErrorCode, Echo};
use kinds::{Kind, ReadRequest};
pub use settings::{FileExchangeConfig, Folders};

#[derive(Debug)]
pub struct FileExchange {
    config: FileExchangeConfig,
    folders: Folders,
    lookups: Arc<Lookups>,
    outbox: Outbox,
    site: MedicalInstitutionCode,
    fault: Option<Fault>,
}

/// What the watcher last saw of one request file.
#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    /// When this size and mtime were first seen.
    since: Instant,
    /// It was read and did not parse (with this size and mtime).
    unparsable: bool,
}

/// Why a file is refused.
#[derive(Debug)]
struct Refusal {
    code: AgentErrorCode,
    /// For the result file and the `.err` file (they stay at the site): may quote a value.
    detail: String,
    /// For the log: never a value from the file, which may be a patient identifier.
    log_detail: String,
}

impl Refusal {
    fn new(code: AgentErrorCode, detail: String) -> Self {
        Self {
            code,
            log_detail: detail.clone(),
            detail,
        }
    }

    fn xml(error: XmlError) -> Self {
        let code = match error {
            XmlError::TooLarge { .. } => AgentErrorCode::RequestTooLarge,
            // A whole file with a wrong value: complete, so no grace, and said precisely.
            XmlError::InvalidIdentifier { .. } | XmlError::InvalidValue { .. } => {
                AgentErrorCode::RequestInvalidField
            }
            _ => AgentErrorCode::RequestUnreadable,
        };
        let log_detail = match &error {
            XmlError::InvalidValue { path, .. } => format!("invalid value in {path}"),
            XmlError::InvalidIdentifier { path, error } => {
                format!("{} ({}) in {path}", error.field, error.problem.kind())
            }
            other => other.to_string(),
        };
        let detail = match &error {
            // For the clerk: the field, the value and the rule, Japanese then English.
            XmlError::InvalidIdentifier { path, error } => {
                format!("{} / {} ({path})", error.message_ja(), error)
            }
            other => other.to_string(),
        };
        Self {
            code,
            detail,
            log_detail,
        }
    }

    /// A file that may still be being written: only a file that is not yet well-formed XML
    /// (a writer that writes in place has not reached `</XmlMsg>`) deserves the grace wait.
    fn may_be_incomplete(&self) -> bool {
        self.code == AgentErrorCode::RequestUnreadable
    }
}

impl FileExchange {
    /// Creates the folders when missing.
    pub fn new(
        config: FileExchangeConfig,
        lookups: Arc<Lookups>,
        outbox: Outbox,
        fault: Option<Fault>,
    ) -> anyhow::Result<Self> {
        let folders = config.folders();
        for dir in [
            &folders.request,
            &folders.result,
            &folders.archive,
            &folders.error,
            &folders.work,
        ] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the file-exchange folder {}", dir.display()))?;
        }
        let site = lookups.recorder().site().institution_code();
        Ok(Self {
            config,
            folders,
            lookups,
            outbox,
            site,
            fault,
        })
    }

    pub fn folders(&self) -> &Folders {
        &self.folders
    }

    /// Finishes every request a previous run left in the work folder. Call at start, before
    /// anything else records events.
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let mut names = list_requests(&self.folders.work)
            .with_context(|| format!("listing {}", self.folders.work.display()))?;
        names.sort();
        for name in &names {
            tracing::warn!(file = %name, "resuming a request left in flight by the previous run");
            self.process_claimed(&self.folders.work.join(name)).await;
        }
        Ok(names.len())
    }

    /// Watches the request folder until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let wake = Arc::new(Notify::new());
        let _watcher = watch(&self.folders.request, wake.clone());
        let mut seen: HashMap<String, Seen> = HashMap::new();
        tokio::pin!(shutdown);
        tracing::info!(folder = %self.folders.request.display(), "file exchange watching");
        loop {
            let unsettled = self.scan(&mut seen).await;
            let wait = if unsettled {
                self.config.settle().min(self.config.rescan())
            } else {
                self.config.rescan()
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("file exchange stopped");
    }

    /// One look at the request folder; returns whether a file is still settling.
    async fn scan(&self, seen: &mut HashMap<String, Seen>) -> bool {
        let names = match list_requests(&self.folders.request) {
            Ok(names) => names,
            Err(error) => {
                tracing::error!(%error, folder = %self.folders.request.display(), "cannot list the request folder; retrying");
                return true;
            }
        };
        seen.retain(|name, _| names.contains(name));
        let mut unsettled = false;
        for name in names {
            let path = self.folders.request.join(&name);
            // Never through a link: its target's size means nothing here.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let (size, mtime) = (meta.len(), meta.modified().ok());
            let entry = seen.entry(name.clone()).or_insert(Seen {
                size,
                mtime,
                since: Instant::now(),
                unparsable: false,
            });
            if entry.size != size || entry.mtime != mtime {
                *entry = Seen {
                    size,
                    mtime,
                    since: Instant::now(),
                    unparsable: false,
                };
            }
            let quiet = entry.since.elapsed();
            if quiet < self.config.settle() {
                unsettled = true;
                continue;
            }
            if size > self.config.max_request_bytes {
                seen.remove(&name);
                self.refuse_unclaimed(
                    &path,
                    Refusal::new(
                        AgentErrorCode::RequestTooLarge,
                        format!(
                            "{size} bytes, the limit is {}",
                            self.config.max_request_bytes
                        ),
                    ),
                )
                .await;
                continue;
            }
            if entry.unparsable && quiet < self.config.incomplete_grace() {
                unsettled = true;
                continue;
            }
            let bytes = match self.read_request(&path).await {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    if quiet < self.config.incomplete_grace() {
                        unsettled = true;
                        continue;
                    }
                    seen.remove(&name);
                    self.refuse_unclaimed(
                        &path,
                        Refusal::new(AgentErrorCode::FileUnreadable, error.to_string()),
                    )
                    .await;
                    continue;
                }
            };
            let Some(kind) = kinds::of_claimed(&name) else {
                continue;
            };
            let incomplete =
                matches!(self.parse(kind, &bytes), Err(refusal) if refusal.may_be_incomplete());
            if incomplete && quiet < self.config.incomplete_grace() {
                // Perhaps still being written: look again once it has been quiet longer.
                entry.unparsable = true;
                unsettled = true;
                continue;
            }
            seen.remove(&name);
            match fsio::move_into(&path, &self.folders.work) {
                Ok(claimed) => self.process_claimed(&claimed).await,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::error!(%error, file = %name, "cannot move the request into the work folder; will retry");
                    unsettled = true;
                }
            }
        }
        unsettled
    }

    fn parse(&self, kind: Kind, bytes: &[u8]) -> Result<ReadRequest, Refusal> {
        let max = usize::try_from(self.config.max_request_bytes).unwrap_or(usize::MAX);
        let request = kinds::read_request(kind, bytes, max).map_err(Refusal::xml)?;
        if request.institution != self.site {
            return Err(Refusal::new(
                AgentErrorCode::WrongInstitution,
                format!("request {}, this site {}", request.institution, self.site),
            ));
        }
        Ok(request)
    }

    /// Claims a bad file into the work folder, then refuses it.
    async fn refuse_unclaimed(&self, path: &Path, refusal: Refusal) {
        match fsio::move_into(path, &self.folders.work) {
            Ok(claimed) => self.refuse(&claimed, None, refusal).await,
            Err(error) => {
                tracing::error!(%error, file = %path.display(), "cannot move a bad request into the work folder")
            }
        }
    }

    /// Answers one request that is in the work folder, resuming from its journal. The span is the
    /// root of the request's trace: its lookup event carries it to central.
    #[tracing::instrument(name = "file_request", skip_all)]
    async fn process_claimed(&self, path: &Path) {
        if let Err(error) = self.process_claimed_inner(path).await {
            // Left in the work folder: the next start resumes it.
            tracing::error!(error = %format!("{error:#}"), file = %path.display(), "a request could not be finished; it stays in the work folder");
        }
    }

    /// Reads a request off the runtime's threads: a regular file within the size limit, never
    /// through a symbolic link, never blocking on a FIFO (a file swapped for one between the
    /// listing and the read is refused, not followed).
    async fn read_request(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let path = path.to_path_buf();
        let limit = self.config.max_request_bytes;
        tokio::task::spawn_blocking(move || fsio::read_limited(&path, limit))
            .await
            .map_err(std::io::Error::other)?
    }

    async fn process_claimed_inner(&self, path: &Path) -> anyhow::Result<()> {
        let Some(kind) = kinds::of_claimed(&file_name(path)) else {
            anyhow::bail!("not a request file");
        };
        let bytes = match self.read_request(path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let refusal = Refusal::new(AgentErrorCode::FileUnreadable, error.to_string());
                self.refuse(path, None, refusal).await;
                return Ok(());
            }
        };
        let encoding = onshi_domain::xml::sniffed_encoding(&bytes);
        let request = match self.parse(kind, &bytes) {
            Ok(request) => request,
            Err(refusal) => {
                self.refuse(path, Some(&bytes), refusal).await;
                return Ok(());
            }
        };
        let journal_path = journal::path_for(path);
        let journal = match journal::read(&journal_path).context("reading the journal")? {
            Some(journal) => journal,
            None => {
                if let Err(error) = self.lookups.ensure_room().await {
                    tracing::error!(%error, kind = kind.message_id(), "file-exchange request refused before sending: the outbox is full");
                    let result = kinds::error_result(
                        kind,
                        &self.site,
                        &request.echo,
                        AgentErrorCode::NotRecorded,
                        None,
                        encoding,
                    );
                    return self.answer(path, &journal_path, result).await;
                }
                let asked = self
                    .lookups
                    .relay(kind.message_id(), bytes.clone(), &journal_path)
                    .await;
                let journal = Journal::from_asked(&asked.asked);
                write_journal(journal_path.clone(), journal.clone()).await;
                asked.ticket.finish().await;
                fault::strike(self.fault, Fault::FileAfterAnswer);
                journal
            }
        };
        if let Err(error) = self.record(kind, &bytes, &journal, &journal_path).await {
            tracing::error!(%error, kind = kind.message_id(), "file-exchange request not recorded: answer withheld");
            let result = kinds::error_result(
                kind,
                &self.site,
                &request.echo,
                AgentErrorCode::NotRecorded,
                None,
                encoding,
            );
            return self.answer(path, &journal_path, result).await;
        }
        fault::strike(self.fault, Fault::FileAfterRecord);
        let result = match journal.raw_result() {
            Some(raw) if kinds::result_reads(kind, &raw) => raw,
            Some(_) => kinds::error_result(
                kind,
                &self.site,
                &request.echo,
                AgentErrorCode::NationalAnswerUnreadable,
                None,
                encoding,
            ),
            None => {
                let detail = match &journal.answer {
                    journal::StoredAnswer::Failed { message } => Some(message.as_str()),
                    journal::StoredAnswer::Answered { .. } => None,
                };
                kinds::error_result(
                    kind,
                    &self.site,
                    &request.echo,
                    AgentErrorCode::NationalUnreachable,
                    detail,
                    encoding,
                )
            }
        };
        self.answer(path, &journal_path, result).await
    }

    /// Records the events of one request not yet recorded: those after the one the journal
    /// notes if that one committed, else from it (at start the outbox tells, before anything
    /// else records). Each is noted in the journal inside its outbox transaction.
    async fn record(
        &self,
        kind: Kind,
        request: &[u8],
        journal: &Journal,
        journal_path: &Path,
    ) -> Result<(), crate::outbox::OutboxError> {
        let asked = journal.asked();
        let events = crate::exchanges::events(
            kind,
            Some(request),
            asked.answer.as_ref(),
            crate::exchanges::Context {
                patient_key: self.lookups.patient_key(),
                source: LookupSource::FileExchange,
                latency_ms: journal.latency_ms,
                today: crate::lookup::today_jst(),
            },
        );
        let start = match &journal.recording {
            Some(recording) => {
                let index = usize::try_from(journal.recording_index).unwrap_or(usize::MAX);
                if journal::was_committed(&self.outbox, recording).await? {
                    index.saturating_add(1)
                } else {
                    index
                }
            }
            None => 0,
        };
        let stream_id = self.outbox.stream_id().0.to_string();
        for (index, body) in events.into_iter().enumerate().skip(start) {
            let noted = journal.clone();
            let note_path = journal_path.to_path_buf();
            let stream_id = stream_id.clone();
            let before_commit = move |event: &onshi_domain::events::FleetEvent| {
                let mut noted = noted;
                noted.recording = Some(Recording {
                    sequence: event.sequence,
                    event_id: event.id.to_string(),
                    stream_id,
                });
                noted.recording_index = u32::try_from(index).unwrap_or(u32::MAX);
                if let Err(error) = journal::write(&note_path, &noted) {
                    tracing::error!(%error, "cannot journal the event's sequence; a crash now could record it twice");
                }
            };
            let lookup = match &body {
                EventBody::Lookup(l) => Some((l.outcome, l.latency_ms)),
                _ => None,
            };
            let event = self
                .lookups
                .recorder()
                .record_noting(self.lookups.default_terminal().clone(), body, before_commit)
                .await?;
            if let Some((outcome, latency_ms)) = lookup {
                crate::lookup::observe_latency(LookupRoute::InsuranceCard, outcome, latency_ms);
            }
            tracing::info!(
                kind = kind.message_id(),
                event = event.body.kind(),
                sequence = event.sequence,
                "file-exchange request recorded"
            );
        }
        Ok(())
    }

    /// Publishes the result, archives the request, drops the journal.
    async fn answer(
        &self,
        request: &Path,
        journal_path: &Path,
        result: Vec<u8>,
    ) -> anyhow::Result<()> {
        let name = file_name(request);
        let result_path = self.folders.result.join(result_name(&name));
        let archive = self.folders.archive.clone();
        let request = request.to_path_buf();
        let journal_path = journal_path.to_path_buf();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if !result_path.exists() {
                fsio::write_atomic(&result_path, &result)
                    .with_context(|| format!("writing {}", result_path.display()))?;
            }
            fsio::move_into(&request, &archive)
                .with_context(|| format!("archiving {}", request.display()))?;
            match std::fs::remove_file(&journal_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, "cannot remove a finished journal")
                }
                _ => {}
            }
            Ok(())
        })
        .await
        .context("the file task stopped")??;
        tracing::info!(file = %name, "request answered");
        Ok(())
    }

    /// Refuses a claimed request: error result (and `.err`) in the result folder, the request
    /// to the error folder.
    async fn refuse(&self, request: &Path, bytes: Option<&[u8]>, refusal: Refusal) {
        let name = file_name(request);
        let encoding = bytes.map_or(XmlEncoding::Utf8, onshi_domain::xml::sniffed_encoding);
        let echo = bytes.map(scan_echo).unwrap_or_default();
        let result = kinds::error_result(
            kinds::of_claimed(&name).unwrap_or(Kind::Eligibility),
            &self.site,
            &echo,
            refusal.code,
            Some(&refusal.detail),
            encoding,
        );
        tracing::warn!(file = %name, code = refusal.code.code(), detail = %refusal.log_detail, "request refused");
        let result_path = self.folders.result.join(result_name(&name));
        let err_path = self
            .config
            .err_files
            .then(|| self.folders.result.join(format!("{name}.err")));
        let err_text = format!(
            "{} {}\n{}\n",
            refusal.code.code(),
            refusal.code.message(),
            refusal.detail
        );
        let error_dir = self.folders.error.clone();
        let request = request.to_path_buf();
        let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if !result_path.exists() {
                fsio::write_atomic(&result_path, &result)?;
            }
            if let Some(err_path) = err_path {
                fsio::write_atomic(&err_path, &encode(&err_text, encoding))?;
            }
            fsio::move_into(&request, &error_dir)?;
            let _ = std::fs::remove_file(journal::path_for(&request));
            Ok(())
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, file = %name, "cannot finish refusing a request; it stays in the work folder")
            }
            Err(error) => tracing::error!(%error, "the file task stopped"),
        }
    }
}

async fn write_journal(path: PathBuf, journal: Journal) {
    let written = tokio::task::spawn_blocking(move || journal::write(&path, &journal)).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("cannot write the request's journal; a crash now would ask again");
    }
}

/// The names of request files in `dir`.
fn list_requests(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Anything but a folder: a link or a FIFO under a request's name is answered with an
        // error (the read refuses it) rather than left unexplained in the folder.
        if is_request_name(&name) && entry.file_type().is_ok_and(|t| !t.is_dir()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `<Kind>req_<suffix>.xml` for a kind the file exchange relays ([`kinds::Kind`]).
pub fn is_request_name(name: &str) -> bool {
    Kind::of_request(name).is_some()
}

/// `<Kind>req_X.xml` → `<Kind>res_X.xml`.
pub fn result_name(request_name: &str) -> String {
    crate::exchanges::result_name(request_name)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn encode(text: &str, encoding: XmlEncoding) -> Vec<u8> {
    match encoding {
        XmlEncoding::Utf8 => text.as_bytes().to_vec(),
        XmlEncoding::ShiftJis => onshi_domain::sjis::encode(text),
    }
}

/// Best effort: the `ArbitraryFileIdentifier` of a file that could not be parsed, to echo it.
pub(crate) fn scan_echo(bytes: &[u8]) -> Echo {
    Echo {
        confirmation_date: None,
        arbitrary_file_identifier: onshi_domain::xml::scanned_arbitrary_file_identifier(bytes),
        reception_number: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_request_name("OQSsiquc01req_202604010001.xml"));
        assert!(is_request_name("OQSsiquc01req_202604010001.XML"));
        assert!(!is_request_name("OQSsiquc01res_202604010001.xml"));
        assert!(!is_request_name(".OQSsiquc01req_1.xml.tmp"));
        assert!(is_request_name("YZKsiquc01req_02261201093012340.xml"));
        assert!(is_request_name("OQSmuquc02req_1.xml"));
        assert!(!is_request_name("OQSsiimm01req_1.xml"));
        assert_eq!(
            result_name("OQSsiquc01req_202604010001.xml"),
            "OQSsiquc01res_202604010001.xml"
        );
    }

    #[test]
    fn encodings_are_sniffed() {
        assert_eq!(
            onshi_domain::xml::sniffed_encoding(
                b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a/>"
            ),
            XmlEncoding::ShiftJis
        );
        assert_eq!(
            onshi_domain::xml::sniffed_encoding(b"<?xml version='1.0' encoding = 'CP932'?>"),
            XmlEncoding::ShiftJis
        );
        assert_eq!(
            onshi_domain::xml::sniffed_encoding(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            XmlEncoding::Utf8
        );
        assert_eq!(
            onshi_domain::xml::sniffed_encoding(b"garbage"),
            XmlEncoding::Utf8
        );
    }

    #[test]
    fn echo_is_scanned_from_broken_files() {
        let echo = scan_echo(b"<XmlMsg><ArbitraryFileIdentifier>R-1</ArbitraryFileIdentifier><");
        assert_eq!(echo.arbitrary_file_identifier.as_deref(), Some("R-1"));
        assert_eq!(scan_echo(b"\xff").arbitrary_file_identifier, None);
    }

    #[test]
    fn logged_refusals_never_quote_a_value() {
        let refusal = Refusal::xml(XmlError::InvalidValue {
            path: "XmlMsg/MessageBody/QualificationConfirmSearchInfo/Birthdate".into(),
            value: "19800231".into(),
            reason: "no such day".into(),
        });
        assert_eq!(refusal.code, AgentErrorCode::RequestInvalidField);
        assert!(
            refusal.detail.contains("19800231"),
            "the result file says which"
        );
        assert!(!refusal.log_detail.contains("19800231"), "the log does not");
        assert!(refusal.log_detail.contains("Birthdate"));
    }

    /// A wrong check digit in a whole file is not a half-written file: answered at once, with
    /// the field and the rule in Japanese then English, never as "unreadable".
    #[test]
    fn a_wrong_check_digit_is_named_and_not_given_the_grace_wait() {
        let error = onshi_domain::ids::InsurerNumber::parse("06139157").unwrap_err();
        let refusal = Refusal::xml(XmlError::InvalidIdentifier {
            path: "XmlMsg/MessageBody/QualificationConfirmSearchInfo/InsurerNumber".into(),
            error,
        });
        assert_eq!(refusal.code, AgentErrorCode::RequestInvalidField);
        assert!(!refusal.may_be_incomplete());
        let ja = refusal.detail.find("保険者番号の検証番号が一致しません");
        let en = refusal.detail.find("check digit should be 8, not 7");
        assert!(
            matches!((ja, en), (Some(j), Some(e)) if j < e),
            "{}",
            refusal.detail
        );
        assert!(
            !refusal.detail.contains("読み取れません"),
            "{}",
            refusal.detail
        );
        assert!(
            !refusal.log_detail.contains("06139157"),
            "{}",
            refusal.log_detail
        );
        assert!(
            !refusal.log_detail.contains("should be 8"),
            "{}",
            refusal.log_detail
        );
        // A file that is not yet well-formed may still be being written.
        let truncated = Refusal::xml(XmlError::Malformed {
            position: 10,
            detail: "unexpected end".into(),
        });
        assert!(truncated.may_be_incomplete());
    }
}
