//! Face-reader results: when a patient uses a My Number card on the face-recognition reader, the
//! terminal writes the eligibility result unasked into its `face` folder as
//! `OQSsiquc01res_face_…xml` (domain notes §4). The agent records each one once, as the card
//! route does (`cards`): a `Lookup` event (route My Number card, source face reader), and when the
//! patient gave consents on the reader and the result is valid, a `Consent` event (kept for
//! information views too, when views are configured).
//!
//! The files are the terminal's and the receipt computer's: the agent never moves, renames or
//! changes them. It remembers what it handled in the terminal journal as files recorded once
//! ([`super::watched`], under `face`), so across restarts nothing is recorded twice and nothing
//! is missed. Files are read once stable (size
//! and mtime unchanged for `settle`), through a no-follow, regular-file-only, size-limited open,
//! in Shift_JIS or UTF-8 and in any element order (the shared codec).
//!
//! Which identity check the reader made (face or PIN) is not in the public shape of the file;
//! the event says `face` (the face-recognition reader's result) — UNCONFIRMED.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use onshi_domain::events::{
    Consent, EventBody, IdentityVerification, Lookup, LookupOutcome, LookupRoute, LookupSource,
};
use onshi_domain::patient::{PatientHashKey, PatientRef};
use onshi_domain::site::TerminalId;
use tokio::sync::Notify;

use super::watched::Watched;
use crate::folder::fsio;
use crate::judge::judge;
use crate::national::journal::Journal;
use crate::outbox::Outbox;
use crate::recorder::Recorder;

pub use crate::exchanges::FACE_PREFIX;

/// The face watcher's key among watched files.
pub const WATCHED: &str = "face";

pub fn is_face_name(name: &str) -> bool {
    name.starts_with(FACE_PREFIX) && name.to_ascii_lowercase().ends_with(".xml")
}

#[derive(Debug)]
pub struct FaceWatch {
    folder: PathBuf,
    watched: Watched,
    patient_key: PatientHashKey,
    settle: Duration,
    rescan: Duration,
    incomplete_grace: Duration,
    max_bytes: u64,
    views: Option<Arc<crate::views::Views>>,
}

#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
}

impl FaceWatch {
    pub fn new(
        settings: &crate::national::settings::TerminalSettings,
        journal: Journal,
        recorder: Recorder,
        patient_key: PatientHashKey,
        terminal: TerminalId,
    ) -> Self {
        Self {
            folder: settings.folders.face.clone(),
            watched: Watched::new(journal, WATCHED, recorder, terminal),
            patient_key,
            settle: settings.settle,
            rescan: settings.rescan,
            incomplete_grace: settings.incomplete_grace,
            max_bytes: settings.max_result_bytes,
            views: None,
        }
    }

    pub fn with_views(mut self, views: Arc<crate::views::Views>) -> Self {
        self.views = Some(views);
        self
    }

    /// Finishes face files a previous run left between events. Call at start, before anything
    /// else records events.
    pub async fn recover(&self, outbox: &Outbox) -> anyhow::Result<usize> {
        let left = self.watched.recover(outbox).await?;
        // Files the site has cleared away and that were handled more than a week ago.
        let folder = self.folder.clone();
        let present = tokio::task::spawn_blocking(move || -> std::io::Result<HashSet<String>> {
            Ok(std::fs::read_dir(&folder)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect())
        })
        .await?;
        // Only when the folder could be listed: an unmounted share is not an emptied folder.
        if let Ok(present) = present {
            let pruned = self.watched.prune(present).await?;
            if pruned > 0 {
                tracing::info!(pruned, "forgot face results the site has cleared away");
            }
        }
        Ok(left)
    }

    /// Watches the face folder until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let wake = Arc::new(Notify::new());
        let _watcher = crate::folder::watch(&self.folder, wake.clone());
        let mut handled = match self.watched.handled().await {
            Ok(names) => names,
            Err(error) => {
                tracing::error!(%error, "cannot read which face results were recorded; not watching the face folder");
                return;
            }
        };
        let mut seen: HashMap<String, Seen> = HashMap::new();
        tokio::pin!(shutdown);
        tracing::info!(folder = %self.folder.display(), "watching the face reader's results");
        loop {
            let settling = self.scan(&mut handled, &mut seen).await;
            let wait = if settling {
                self.settle.min(self.rescan)
            } else {
                self.rescan
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
    }

    /// One look at the face folder; returns whether a file is still settling.
    async fn scan(&self, handled: &mut HashSet<String>, seen: &mut HashMap<String, Seen>) -> bool {
        let dir = self.folder.clone();
        let listed = tokio::task::spawn_blocking(
            move || -> std::io::Result<Vec<(String, u64, Option<SystemTime>)>> {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !is_face_name(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                        continue;
                    }
                    if let Ok(meta) = entry.metadata() {
                        found.push((name, meta.len(), meta.modified().ok()));
                    }
                }
                found.sort();
                Ok(found)
            },
        )
        .await;
        let files = match listed {
            Ok(Ok(files)) => files,
            Ok(Err(error)) => {
                tracing::error!(%error, folder = %self.folder.display(), "cannot list the face folder; retrying");
                return true;
            }
            Err(_) => return true,
        };
        let now = Instant::now();
        let mut settling = false;
        let present: HashSet<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
        seen.retain(|name, _| present.contains(name.as_str()));
        for (name, size, mtime) in &files {
            if handled.contains(name) {
                continue;
            }
            let entry = seen.entry(name.clone()).or_insert(Seen {
                size: *size,
                mtime: *mtime,
                since: now,
            });
            if entry.size != *size || entry.mtime != *mtime {
                *entry = Seen {
                    size: *size,
                    mtime: *mtime,
                    since: now,
                };
            }
            let quiet = now.duration_since(entry.since);
            if quiet < self.settle || *size == 0 {
                settling = true;
                continue;
            }
            match self.handle(name, *size, quiet).await {
                Ok(true) => {
                    handled.insert(name.clone());
                    seen.remove(name);
                }
                Ok(false) => settling = true,
                Err(error) => {
                    tracing::error!(%error, "a face result could not be recorded; retrying");
                    settling = true;
                }
            }
        }
        settling
    }

    /// Reads and records one stable face file. `Ok(false)`: not yet (it looks cut short).
    async fn handle(&self, name: &str, size: u64, quiet: Duration) -> anyhow::Result<bool> {
        let path = self.folder.join(name);
        let max = self.max_bytes;
        let read = tokio::task::spawn_blocking(move || fsio::read_limited(&path, max))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(error) if fsio::is_refusal(&error) => {
                // No file name in the log: the middle of a face file's name is the terminal's (UNCONFIRMED what).
                tracing::warn!(%error, "a face file is refused and ignored");
                self.watched.record(name, size, Vec::new()).await?;
                return Ok(true);
            }
            Err(error) => {
                tracing::warn!(%error, "a face file cannot be read yet");
                return Ok(false);
            }
        };
        let parsed = onshi_domain::xml::QualificationConfirmationResult::from_xml(&bytes);
        if parsed.is_err() && quiet < self.incomplete_grace {
            return Ok(false);
        }
        let judged = judge(&bytes, 200, crate::cards::NOT_FOUND_ON_CARD);
        let first = judged.first.as_ref();
        let patient_ref = first.and_then(|r| {
            Some(PatientRef::for_insurance_card(
                &self.patient_key,
                r.insurer_number.as_ref()?,
                r.insured_card_symbol.as_ref(),
                r.insured_identification_number.as_ref()?,
                r.insured_branch_number.as_ref(),
            ))
        });
        let consent = match (first, &patient_ref) {
            (Some(first), Some(patient_ref))
                if judged.outcome == LookupOutcome::Valid && carries_consent(first) =>
            {
                Some(crate::cards::consent_of(first, patient_ref.clone()))
            }
            _ => None,
        };
        let lookup = Lookup {
            route: LookupRoute::MyNumberCard,
            outcome: judged.outcome,
            patient_ref,
            insurer_number: first
                .and_then(|r| r.insurer_number.as_ref())
                .map(|n| n.as_str().to_string()),
            qualification_validity: judged.validity.map(|v| v.code().to_string()),
            processing_result_code: judged.processing_result_code.clone(),
            error_code: judged.error_code.clone(),
            latency_ms: 0,
            staff_id: None,
            source: LookupSource::FaceReader,
            batch_id: None,
            // The file does not say face or PIN (UNCONFIRMED): face, the reader's usual way;
            // the README states the assumption.
            identity_verification: IdentityVerification::Face,
        };
        let mut events = vec![EventBody::Lookup(lookup)];
        if let Some(consent) = &consent {
            events.push(EventBody::Consent(consent.clone()));
        }
        let recorded = self.watched.record(name, size, events).await?;
        let lookup_event = recorded
            .iter()
            .find(|e| matches!(e.body, EventBody::Lookup(_)));
        if let Some(event) = lookup_event {
            tracing::info!(
                outcome = judged.outcome.as_str(),
                sequence = event.sequence,
                "face-reader result recorded"
            );
        }
        // Kept for views once both are recorded (only in this run: handles live in memory).
        if let (Some(views), Some(first), Some(consent), Some(event), true) = (
            &self.views,
            judged.first.as_ref(),
            &consent,
            lookup_event,
            recorded.len() == 2,
        ) {
            self.keep_for_views(views, &event.id.to_string(), first, consent)
                .await;
        }
        Ok(true)
    }

    async fn keep_for_views(
        &self,
        views: &crate::views::Views,
        handle: &str,
        first: &onshi_domain::xml::ResultOfQualificationConfirmation,
        consent: &Consent,
    ) {
        let numbers = (|| {
            Some(crate::views::PatientNumbers {
                insurer_number: first.insurer_number.clone()?,
                symbol: first.insured_card_symbol.clone(),
                number: first.insured_identification_number.clone()?,
                branch: first.insured_branch_number.clone(),
            })
        })();
        let Some(numbers) = numbers else { return };
        let record = onshi_domain::access::ConsentRecord {
            consented_at: consent.consented_at,
            categories: crate::cards::given_categories(consent),
        };
        if let Err(error) = views
            .consent_recorded(handle.to_string(), numbers, &record)
            .await
        {
            tracing::error!(%error, "a face result's consent could not be kept for views");
        }
    }
}

/// Whether the patient answered any consent question on the reader.
fn carries_consent(first: &onshi_domain::xml::ResultOfQualificationConfirmation) -> bool {
    first.pharmacists_info.is_some()
        || first.specific_health_checkups_info.is_some()
        || first.diagnosis_info.is_some()
        || first.operation_info.is_some()
        || first.limit_application_certificate_related_cons_flg == Some(true)
}
