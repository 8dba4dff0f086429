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
//! format = "pem"                   # pem | p12
//! [[certificates.watch]]
//! path = 'C:\OQS\terminal.p12'
//! role = "terminal"
//! format = "p12"
//! password_file = 'C:\ProgramData\onshi-fleet\agent\keys\terminal.p12.pass'
//! [[certificates.store]]            # Windows only: a certificate store (certs::store)
//! location = "local_machine"
//! name = "MY"
//! role = "terminal"
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
//! **PKCS#12** (`format = "p12"`, [`pkcs12`]): every certificate of the file, opened with the
//! password in `password_file` (its first line; without one, the empty password). Keys in it are
//! never decrypted. A password that does not open the file is reported like any unreadable file
//! (missing, and logged as "password unknown"); the password itself is never logged or sent.
//!
//! **Windows certificate stores** (`[[certificates.store]]`, [`store`]): the certificates of a
//! system store (the machine's, the agent's account's or the service's; `MY`, `CA`, `Root`...)
//! that pass its subject/issuer filter, read like a file: `source` is `store:LocalMachine\MY`,
//! a change is any certificate added or removed, and a store where none matches any more is
//! reported as missing.

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

use crate::recorder::Recorder;

pub mod pkcs12;
pub mod store;

pub use store::{StoreLocation, WatchedStore};

/// The prefix of `source` for certificates of a watched file that can no longer be read.
pub const MISSING_PREFIX: &str = "missing:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesConfig {
    #[serde(default)]
    pub watch: Vec<WatchedFile>,
    /// `[[certificates.store]]`: Windows certificate stores.
    #[serde(default, rename = "store")]
    pub stores: Vec<WatchedStore>,
    #[serde(default = "default_check_interval_secs")]
    pub check_interval_secs: u64,
    #[serde(default = "default_snapshot_interval_secs")]
    pub snapshot_interval_secs: u64,
}

impl Default for CertificatesConfig {
    fn default() -> Self {
        Self {
            watch: Vec::new(),
            stores: Vec::new(),
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
    /// A PKCS#12 file's password, the file's first line (`format = "p12"` only).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
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
    /// PKCS#12 (`.p12`, `.pfx`): its certificates, read by [`pkcs12`].
    P12,
}

impl CertificatesConfig {
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for file in &mut self.watch {
            for path in std::iter::once(&mut file.path).chain(file.password_file.as_mut()) {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
    }

    /// Why the section cannot be used, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        for file in &self.watch {
            if file.password_file.is_some() && file.format != CertificateFormat::P12 {
                return Err(format!(
                    "certificates.watch {}: password_file is for format = \"p12\" only",
                    file.path.display()
                ));
            }
        }
        for store in &self.stores {
            store.check()?;
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

/// One file or store to inventory, with the role of its non-CA certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub source: Source,
    /// `agent`, `terminal` or `ca`.
    pub role: &'static str,
}

/// Where certificates are read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Pem(PathBuf),
    Pkcs12 {
        path: PathBuf,
        password_file: Option<PathBuf>,
    },
    Store(WatchedStore),
}

impl Watch {
    pub fn pem(path: PathBuf, role: &'static str) -> Self {
        Self {
            source: Source::Pem(path),
            role,
        }
    }
}

impl Source {
    /// How the inventory names it (`source`): the file's path, or the store.
    pub fn label(&self) -> String {
        match self {
            Self::Pem(path) | Self::Pkcs12 { path, .. } => path.display().to_string(),
            Self::Store(store) => store.label(),
        }
    }
}

pub(crate) fn role_name(role: WatchRole) -> &'static str {
    match role {
        WatchRole::Terminal => "terminal",
        WatchRole::Ca => "ca",
    }
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
            let state = match read(watch) {
                Ok((digest, certificates)) => FileState {
                    digest: Some(digest),
                    certificates,
                },
                Err(why) => {
                    if previous.as_ref().is_none_or(|p| p.digest.is_some()) {
                        tracing::warn!(source = %watch.source.label(), error = %why, "watched certificates cannot be read; reported as missing");
                    }
                    let source = format!("{MISSING_PREFIX}{}", watch.source.label());
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

/// The source's digest and certificates, or why it cannot be used (never a file's content or
/// a password).
fn read(watch: &Watch) -> Result<(Vec<u8>, Vec<CertificateInfo>), String> {
    let source = watch.source.label();
    let (digested, ders) = match &watch.source {
        Source::Pem(path) => {
            let bytes = std::fs::read(path).map_err(|e| e.kind().to_string())?;
            let ders = CertificateDer::pem_slice_iter(&bytes)
                .map(|der| der.map(|d| d.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "not a PEM file".to_string())?;
            (bytes, ders)
        }
        Source::Pkcs12 {
            path,
            password_file,
        } => {
            let bytes = std::fs::read(path).map_err(|e| e.kind().to_string())?;
            let password = match password_file {
                Some(file) => password(file)?,
                None => String::new(),
            };
            let ders = pkcs12::certificates(&bytes, &password).map_err(|e| e.to_string())?;
            (bytes, ders)
        }
        Source::Store(store) => {
            let mut ders = store.certificates()?;
            ders.retain(|der| {
                CertificateSummary::from_der(der).is_ok_and(|s| store.wants(&s.subject, &s.issuer))
            });
            if ders.is_empty() {
                return Err("no certificate in the store matches".into());
            }
            // A change is a certificate added or removed: the digest covers them all.
            (ders.concat(), ders)
        }
    };
    if ders.is_empty() {
        return Err("no certificate in the file".into());
    }
    let certificates = ders
        .iter()
        .map(|der| {
            let summary = CertificateSummary::from_der(der)
                .map_err(|_| "a certificate in it cannot be parsed".to_string())?;
            Ok(info(summary, watch.role, &source))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &digested);
    Ok((digest.as_ref().to_vec(), certificates))
}

/// A PKCS#12 password: the file's first line.
fn password(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("the password file cannot be read ({})", e.kind()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
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
    /// Watches `files` (the configuration's [`crate::config::AgentConfig::watched_certificates`])
    /// as `settings` say, reporting as `terminal`.
    pub fn new(
        files: Vec<Watch>,
        settings: CertificatesConfig,
        terminal: TerminalId,
        recorder: Recorder,
    ) -> Self {
        Self {
            inventory: Inventory::new(files),
            current: Arc::default(),
            recorder,
            terminal,
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
        let inventory = Inventory::new(vec![Watch::pem(chain.clone(), "terminal")]);
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
            Watch::pem(watched_path.clone(), "terminal"),
            Watch::pem(pki.chain_ca(), "ca"),
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
            Watch::pem(pki.chain_ca(), "ca"),
            Watch::pem(copy, "ca"),
        ]);
        assert_eq!(inventory.scan().full_snapshot().certificates.len(), 1);
    }

    #[test]
    fn a_pkcs12_file_is_read_with_its_password_and_refused_without() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = pkcs12::fixture_path("aes256-sha256.p12");
        let password_file = dir.path().join("terminal.p12.pass");
        std::fs::write(&password_file, "wrong\r\n").unwrap();
        let watch = Watch {
            source: Source::Pkcs12 {
                path: fixture.clone(),
                password_file: Some(password_file.clone()),
            },
            role: "terminal",
        };
        let mut inventory = Inventory::new(vec![watch]);
        let error = read(&inventory.files[0].0).unwrap_err();
        assert!(error.contains("password is unknown"), "{error}");
        assert!(!error.contains("wrong"), "never the password: {error}");
        inventory.commit(inventory.scan());

        // The right password (its first line; Windows line ends too): the leaf and its CA.
        std::fs::write(&password_file, "テスト-pass\r\n").unwrap();
        let scan = inventory.scan();
        let changes = scan.changes().expect("readable now");
        let roles: Vec<_> = changes.certificates.iter().map(|c| &c.role[..]).collect();
        assert_eq!(roles, ["terminal", "ca"]);
        assert!(changes.certificates[0].subject.contains("pkcs12 fixture"));
        assert_eq!(
            changes.certificates[0].source,
            fixture.display().to_string()
        );
    }

    #[test]
    fn the_configuration_takes_p12_files_and_refuses_what_cannot_work() {
        let config: CertificatesConfig = toml::from_str(
            "[[watch]]\npath = \"t.p12\"\nrole = \"terminal\"\nformat = \"p12\"\npassword_file = \"t.pass\"\n",
        )
        .unwrap();
        assert!(config.check().is_ok());
        let mut resolved = config.clone();
        resolved.resolve_paths(Path::new("/etc/agent"));
        assert_eq!(
            resolved.watch[0].password_file.as_deref(),
            Some(Path::new("/etc/agent/t.pass"))
        );
        let config: CertificatesConfig = toml::from_str(
            "[[watch]]\npath = \"t.pem\"\nrole = \"terminal\"\npassword_file = \"t.pass\"\n",
        )
        .unwrap();
        assert!(config.check().unwrap_err().contains("p12"));
        let config: CertificatesConfig =
            toml::from_str("[[watch]]\npath = \"t.pem\"\nrole = \"terminal\"\n").unwrap();
        assert_eq!(config.watch[0].format, CertificateFormat::Pem);
        assert!(config.check().is_ok());
        assert!(
            toml::from_str::<CertificatesConfig>("[[watch]]\npath = \"t.pem\"\nrole = \"leaf\"\n")
                .is_err()
        );
        let config: CertificatesConfig = toml::from_str(
            "[[store]]\nlocation = \"local_machine\"\nname = \"MY\"\nrole = \"terminal\"\n",
        )
        .unwrap();
        assert_eq!(config.check().is_ok(), cfg!(windows));
    }
}
