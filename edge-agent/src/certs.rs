//! The certificate inventory: every certificate the agent is told to watch, reported to central
//! as `CertificateInventory` events, so central sees an expiry coming (issue 6).
//!
//! ```toml
//! [certificates]
//! check_interval_secs = 300        # how often watched files are re-read for changes
//! snapshot_interval_secs = 86400   # a full snapshot at start and then this often
//! [[certificates.watch]]
//! path = "/etc/onshi-fleet-agent/onshi-terminal.pem"
//! role = "terminal"                # terminal | ca
//! format = "pem"                   # pem only; "p12" is refused (see below)
//! ```
//!
//! Without a `[certificates]` section nothing is inventoried (like `[link]`: existing sites see no
//! new events until they opt in); an empty `[certificates]` section is enough to start. With it,
//! always watched besides the listed files: the agent's own mTLS certificate for central (role
//! `agent`) and its CA bundle (`ca`), and the terminal certificate and CA bundle of the `[onshi]`
//! link (`terminal`, `ca`). A file named twice is read once.
//!
//! **Every certificate of a PEM file is reported**, so the intermediates and CAs of a chain are
//! tracked as well as the leaf: a certificate that is a CA (basicConstraints) is reported with
//! role `ca` whatever the file's role, the others with the file's role.
//!
//! **Events.** A full snapshot (`full_snapshot = true`: the site's whole current inventory;
//! central retires what it no longer lists) at start and every `snapshot_interval_secs`; between
//! snapshots, every `check_interval_secs`, a file whose content changed (by SHA-256 of its
//! bytes) is reported with all the certificates it now holds (`full_snapshot = false`).
//! Certificates that left a file are retired by the next full snapshot.
//!
//! **A file that cannot be read or parsed** (removed, unreadable, not PEM, no certificate) is
//! reported as missing: the certificates last read from it are sent again with
//! `source = "missing:<path>"` (role unchanged), in the change event and in every full snapshot
//! while it stays missing; central shows them as missing rather than retiring them silently. A
//! file missing since the agent started has nothing to report and is logged. The file's content
//! is never logged, only its path and the kind of error.
//!
//! **PKCS#12** (`format = "p12"`) is not supported yet: no lean pure-Rust PKCS#12 parser is
//! among the workspace's dependencies, so the configuration is refused with a message telling to
//! export the certificates as PEM (`openssl pkcs12 -in t.p12 -nokeys -out t.pem`).

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_tls::identity::CertificateSummary;
use onshi_domain::events::{CertificateInfo, CertificateInventory, EventBody};
use onshi_domain::site::TerminalId;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;
use crate::recorder::Recorder;

/// The prefix of `source` for certificates of a watched file that can no longer be read.
pub const MISSING_PREFIX: &str = "missing:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesConfig {
    #[serde(default)]
    pub watch: Vec<WatchedFile>,
    #[serde(default = "default_check_interval_secs")]
    pub check_interval_secs: u64,
    #[serde(default = "default_snapshot_interval_secs")]
    pub snapshot_interval_secs: u64,
}

impl Default for CertificatesConfig {
    fn default() -> Self {
        Self {
            watch: Vec::new(),
            check_interval_secs: default_check_interval_secs(),
            snapshot_interval_secs: default_snapshot_interval_secs(),
        }
    }
}

fn default_check_interval_secs() -> u64 {
    300
}

fn default_snapshot_interval_secs() -> u64 {
    86_400
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedFile {
    pub path: PathBuf,
    pub role: WatchRole,
    #[serde(default)]
    pub format: CertificateFormat,
}

/// What a watched file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchRole {
    Terminal,
    Ca,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateFormat {
    #[default]
    Pem,
    /// Refused by [`CertificatesConfig::check`]: not supported yet.
    P12,
}

impl CertificatesConfig {
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for file in &mut self.watch {
            if file.path.is_relative() {
                file.path = base.join(&file.path);
            }
        }
    }

    /// Why the section cannot be used, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        for file in &self.watch {
            if file.format == CertificateFormat::P12 {
                return Err(format!(
                    "certificates.watch {}: format = \"p12\" is not supported yet; export the \
                     certificates as PEM (openssl pkcs12 -in file.p12 -nokeys -out file.pem) and \
                     watch that file with format = \"pem\"",
                    file.path.display()
                ));
            }
        }
        if self.check_interval_secs == 0 || self.snapshot_interval_secs == 0 {
            return Err(
                "certificates.check_interval_secs and snapshot_interval_secs must be above 0"
                    .into(),
            );
        }
        Ok(())
    }
}

/// One file to inventory, with the role of its non-CA certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub path: PathBuf,
    /// `agent`, `terminal` or `ca`.
    pub role: &'static str,
}

/// The files to watch for `config`: the always-watched ones first, then `[certificates]`'s,
/// each path once.
pub fn watched(config: &AgentConfig) -> Vec<Watch> {
    let mut all = vec![
        Watch {
            path: config.central.cert.clone(),
            role: "agent",
        },
        Watch {
            path: config.central.ca.clone(),
            role: "ca",
        },
    ];
    // Direct mode only: in terminal mode the terminal's certificate stays in its own software.
    all.extend(config.onshi.cert.iter().map(|path| Watch {
        path: path.clone(),
        role: "terminal",
    }));
    all.extend(config.onshi.ca.iter().map(|path| Watch {
        path: path.clone(),
        role: "ca",
    }));
    for file in config.certificates.iter().flat_map(|c| &c.watch) {
        all.push(Watch {
            path: file.path.clone(),
            role: match file.role {
                WatchRole::Terminal => "terminal",
                WatchRole::Ca => "ca",
            },
        });
    }
    let mut seen = HashSet::new();
    all.retain(|w| seen.insert(w.path.clone()));
    all
}

/// What was last read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    /// SHA-256 of the file's bytes; `None` while the file cannot be read or parsed.
    digest: Option<Vec<u8>>,
    /// The certificates last read from it (kept while it is missing).
    certificates: Vec<CertificateInfo>,
}

/// The inventory of the watched files: reads them and tells what to report.
#[derive(Debug, Clone)]
pub struct Inventory {
    files: Vec<(Watch, Option<FileState>)>,
}

/// The result of reading every file, to [`Inventory::commit`] once its event is recorded.
#[derive(Debug, Clone)]
pub struct Scan {
    states: Vec<FileState>,
    changed: Vec<bool>,
}

impl Inventory {
    pub fn new(watched: Vec<Watch>) -> Self {
        Self {
            files: watched.into_iter().map(|w| (w, None)).collect(),
        }
    }

    /// Reads every watched file (blocking file I/O: small files).
    pub fn scan(&self) -> Scan {
        let mut states = Vec::with_capacity(self.files.len());
        let mut changed = Vec::with_capacity(self.files.len());
        for (watch, previous) in &self.files {
            let state = match read_file(watch) {
                Ok((digest, certificates)) => FileState {
                    digest: Some(digest),
                    certificates,
                },
                Err(why) => {
                    if previous.as_ref().is_none_or(|p| p.digest.is_some()) {
                        tracing::warn!(path = %watch.path.display(), error = %why, "a watched certificate file cannot be read; reported as missing");
                    }
                    let source = format!("{MISSING_PREFIX}{}", watch.path.display());
                    FileState {
                        digest: None,
                        certificates: previous
                            .iter()
                            .flat_map(|p| p.certificates.iter().cloned())
                            .map(|mut c| {
                                c.source = source.clone();
                                c
                            })
                            .collect(),
                    }
                }
            };
            changed.push(match previous {
                Some(p) => p.digest != state.digest,
                None => true,
            });
            states.push(state);
        }
        Scan { states, changed }
    }

    /// Makes `scan` the inventory's state (after its event was recorded).
    pub fn commit(&mut self, scan: Scan) {
        for ((_, state), new) in self.files.iter_mut().zip(scan.states) {
            *state = Some(new);
        }
    }
}

impl Scan {
    /// The full snapshot: every certificate of every file, each fingerprint once.
    pub fn full_snapshot(&self) -> CertificateInventory {
        CertificateInventory {
            certificates: unique(self.states.iter().flat_map(|s| &s.certificates)),
            full_snapshot: true,
        }
    }

    /// The certificates of the files that changed since the committed state, if any did.
    pub fn changes(&self) -> Option<CertificateInventory> {
        if !self.changed.iter().any(|c| *c) {
            return None;
        }
        let certificates = unique(
            self.states
                .iter()
                .zip(&self.changed)
                .filter(|(_, changed)| **changed)
                .flat_map(|(s, _)| &s.certificates),
        );
        Some(CertificateInventory {
            certificates,
            full_snapshot: false,
        })
    }
}

fn unique<'a>(certs: impl Iterator<Item = &'a CertificateInfo>) -> Vec<CertificateInfo> {
    let mut seen = HashSet::new();
    certs
        .filter(|c| seen.insert(c.sha256_fingerprint.clone()))
        .cloned()
        .collect()
}

/// The file's digest and certificates, or why it cannot be used (never its content).
fn read_file(watch: &Watch) -> Result<(Vec<u8>, Vec<CertificateInfo>), String> {
    let bytes = std::fs::read(&watch.path).map_err(|e| e.kind().to_string())?;
    let ders = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM file".to_string())?;
    if ders.is_empty() {
        return Err("no certificate in the file".into());
    }
    let source = watch.path.display().to_string();
    let certificates = ders
        .iter()
        .map(|der| {
            let summary = CertificateSummary::from_der(der)
                .map_err(|_| "a certificate in the file cannot be parsed".to_string())?;
            Ok(info(summary, watch.role, &source))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok((digest.as_ref().to_vec(), certificates))
}

fn info(summary: CertificateSummary, role: &str, source: &str) -> CertificateInfo {
    CertificateInfo {
        role: if summary.is_ca { "ca" } else { role }.to_string(),
        subject: summary.subject,
        issuer: summary.issuer,
        serial_hex: summary.serial_hex,
        sha256_fingerprint: summary.sha256_fingerprint,
        not_before: summary.not_before,
        not_after: summary.not_after,
        key_type: summary.key_type,
        key_bits: summary.key_bits,
        source: source.to_string(),
    }
}

/// The periodic task: a full snapshot at start and every `snapshot_interval_secs`, changes
/// every `check_interval_secs`.
#[derive(Debug)]
pub struct CertificateWatch {
    inventory: Inventory,
    /// The certificates of the last scan, for the uplink's inventory snapshot.
    current: Arc<Mutex<Vec<CertificateInfo>>>,
    recorder: Recorder,
    terminal: TerminalId,
    check_every: Duration,
    snapshot_every: Duration,
}

impl CertificateWatch {
    pub fn new(config: &AgentConfig, recorder: Recorder) -> Self {
        let settings = config.certificates.clone().unwrap_or_default();
        Self {
            inventory: Inventory::new(watched(config)),
            current: Arc::default(),
            recorder,
            terminal: config.terminal_id.clone(),
            check_every: Duration::from_secs(settings.check_interval_secs.max(1)),
            snapshot_every: Duration::from_secs(settings.snapshot_interval_secs.max(1)),
        }
    }

    /// The certificates of the last scan (empty until the first), kept current.
    pub fn current(&self) -> Arc<Mutex<Vec<CertificateInfo>>> {
        self.current.clone()
    }

    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_snapshot: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            let inventory = self.inventory.clone();
            let Ok(scan) = tokio::task::spawn_blocking(move || inventory.scan()).await else {
                continue;
            };
            let snapshot_due = last_snapshot.is_none_or(|at| at.elapsed() >= self.snapshot_every);
            let body = if snapshot_due {
                Some(scan.full_snapshot())
            } else {
                scan.changes()
            };
            // The live view follows what the agent reads, before the event that reports it is
            // recorded (recording wakes the uplink, which then sends the new inventory).
            if let Ok(mut current) = self.current.lock() {
                *current = scan.full_snapshot().certificates;
            }
            let Some(body) = body else { continue };
            let full = body.full_snapshot;
            let count = body.certificates.len();
            match self
                .recorder
                .record(self.terminal.clone(), EventBody::CertificateInventory(body))
                .await
            {
                Ok(_) => {
                    tracing::info!(full, certificates = count, "certificate inventory recorded");
                    self.inventory.commit(scan);
                    if full {
                        last_snapshot = Some(tokio::time::Instant::now());
                    }
                }
                // Not committed: the next check reports the same again.
                Err(e) => tracing::warn!(error = %e, "cannot record the certificate inventory"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_tls::devpki::{self, DevPkiSpec};

    fn pki() -> (tempfile::TempDir, devpki::DevPki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = devpki::init(
            &dir.path().join("pki"),
            &DevPkiSpec {
                sites: vec!["3410712362".into()],
                terminals: vec![("3410712362".into(), "T01".into())],
                ..Default::default()
            },
        )
        .unwrap();
        (dir, pki)
    }

    #[test]
    fn a_chain_file_reports_leaf_and_ca_with_their_roles() {
        let (dir, pki) = pki();
        let (terminal, _) = pki.terminal("3410712362", "T01");
        let chain = dir.path().join("chain.pem");
        let mut text = std::fs::read_to_string(&terminal).unwrap();
        text.push_str(&std::fs::read_to_string(pki.common_ca()).unwrap());
        std::fs::write(&chain, text).unwrap();
        let inventory = Inventory::new(vec![Watch {
            path: chain.clone(),
            role: "terminal",
        }]);
        let snapshot = inventory.scan().full_snapshot();
        assert!(snapshot.full_snapshot);
        let roles: Vec<_> = snapshot.certificates.iter().map(|c| &c.role[..]).collect();
        assert_eq!(roles, ["terminal", "ca"]);
        let leaf = &snapshot.certificates[0];
        assert!(leaf.subject.contains("terminal 3410712362 T01"));
        assert!(leaf.issuer.contains("common"), "{}", leaf.issuer);
        assert_eq!(leaf.sha256_fingerprint.len(), 64);
        assert_eq!(leaf.source, chain.display().to_string());
        assert!(leaf.not_after > leaf.not_before);
        assert!(leaf.key_bits > 0);
    }

    #[test]
    fn changes_are_reported_once_and_a_missing_file_keeps_its_certificates() {
        let (dir, pki) = pki();
        let watched_path = dir.path().join("terminal.pem");
        std::fs::copy(pki.terminal("3410712362", "T01").0, &watched_path).unwrap();
        let mut inventory = Inventory::new(vec![
            Watch {
                path: watched_path.clone(),
                role: "terminal",
            },
            Watch {
                path: pki.chain_ca(),
                role: "ca",
            },
        ]);
        let scan = inventory.scan();
        assert_eq!(scan.full_snapshot().certificates.len(), 2);
        inventory.commit(scan);
        // Nothing changed: nothing to report.
        assert!(inventory.scan().changes().is_none());

        // The file now holds another certificate: only that file is reported.
        std::fs::copy(pki.agent("3410712362").0, &watched_path).unwrap();
        let scan = inventory.scan();
        let changes = scan.changes().unwrap();
        assert!(!changes.full_snapshot);
        assert_eq!(changes.certificates.len(), 1);
        assert!(changes.certificates[0].subject.contains("site 3410712362"));
        let fingerprint = changes.certificates[0].sha256_fingerprint.clone();
        // Not committed (say the outbox was full): reported again.
        assert!(inventory.scan().changes().is_some());
        inventory.commit(scan);
        assert!(inventory.scan().changes().is_none());

        // Gone: its last certificates come back marked missing, once, and in snapshots.
        std::fs::remove_file(&watched_path).unwrap();
        let scan = inventory.scan();
        let changes = scan.changes().unwrap();
        assert_eq!(changes.certificates.len(), 1);
        assert_eq!(changes.certificates[0].sha256_fingerprint, fingerprint);
        assert_eq!(
            changes.certificates[0].source,
            format!("{MISSING_PREFIX}{}", watched_path.display())
        );
        assert_eq!(changes.certificates[0].role, "terminal");
        inventory.commit(scan);
        let scan = inventory.scan();
        assert!(scan.changes().is_none());
        assert_eq!(scan.full_snapshot().certificates.len(), 2);

        // Garbage is missing too (and its content is never reported).
        std::fs::write(&watched_path, "not a certificate").unwrap();
        assert!(inventory.scan().changes().is_none());
    }

    #[test]
    fn the_same_certificate_in_two_files_is_listed_once() {
        let (dir, pki) = pki();
        let copy = dir.path().join("copy.pem");
        std::fs::copy(pki.chain_ca(), &copy).unwrap();
        let inventory = Inventory::new(vec![
            Watch {
                path: pki.chain_ca(),
                role: "ca",
            },
            Watch {
                path: copy,
                role: "ca",
            },
        ]);
        assert_eq!(inventory.scan().full_snapshot().certificates.len(), 1);
    }

    #[test]
    fn p12_is_refused_with_a_clear_message() {
        let config: CertificatesConfig = toml::from_str(
            "[[watch]]\npath = \"/etc/t.p12\"\nrole = \"terminal\"\nformat = \"p12\"\n",
        )
        .unwrap();
        let error = config.check().unwrap_err();
        assert!(error.contains("not supported yet"), "{error}");
        let config: CertificatesConfig =
            toml::from_str("[[watch]]\npath = \"t.pem\"\nrole = \"terminal\"\n").unwrap();
        assert_eq!(config.watch[0].format, CertificateFormat::Pem);
        assert!(config.check().is_ok());
        assert!(
            toml::from_str::<CertificatesConfig>("[[watch]]\npath = \"t.pem\"\nrole = \"leaf\"\n")
                .is_err()
        );
    }
}
