//! The agent's configuration file (TOML), with environment overrides.
//!
//! ```toml
//! version = 1
//! site_code = "1340112342"        # the site's 10-digit medical institution code
//! site_kind = "pharmacy"          # hospital | clinic | dental_clinic | pharmacy
//! prefecture = "13"
//! terminal_id = "T01"             # default terminal for lookups made from this agent
//! data_dir = "/var/lib/onshi-fleet-agent"
//! patient_hash_key_file = "/etc/onshi-fleet-agent/patient-hash.key"
//!
//! [central]
//! endpoint = "https://central.example:7443"
//! ca = "/etc/onshi-fleet-agent/chain-ca.pem"
//! cert = "/etc/onshi-fleet-agent/agent.pem"
//! key = "/etc/onshi-fleet-agent/agent.key"
//!
//! [onshi]                         # a real site: transport = "terminal", folder = "D:/OQS"
//! transport = "direct"            # onshi-sim's HTTPS protocol
//! endpoint = "https://onshi.example:9443"
//! ca = "/etc/onshi-fleet-agent/common-ca.pem"
//! cert = "/etc/onshi-fleet-agent/terminal.pem"
//! key = "/etc/onshi-fleet-agent/terminal.key"
//! timeout_ms = 5000
//! ```
//!
//! Relative paths are resolved against the folder of the configuration file. Environment
//! variables `EDGE_AGENT_DATA_DIR`, `EDGE_AGENT_CENTRAL_ENDPOINT` and `EDGE_AGENT_ONSHI_ENDPOINT`
//! override the file (the environment is passed in as a map, so tests never touch the process
//! environment).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use onshi_domain::ids::{FeeTable, Prefecture};
use onshi_domain::site::{SiteCode, SiteKind, TerminalId};
use serde::{Deserialize, Serialize};

use crate::certs::{CertificateFormat, Source, Watch, role_name};
use crate::national::TransportKind;

/// The only configuration format version this agent reads.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "the configuration file says version {found}; this agent reads version {CONFIG_VERSION}"
    )]
    Version { found: u32 },
    #[error("the configuration is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub version: u32,
    pub site_code: SiteCode,
    pub site_kind: SiteKind,
    pub prefecture: Prefecture,
    pub terminal_id: TerminalId,
    pub data_dir: PathBuf,
    pub patient_hash_key_file: PathBuf,
    /// The control channel the counter CLI talks to: a socket path (default
    /// `<data_dir>/agent.sock`), or on Windows a named pipe (default `\\.\pipe\onshi-fleet-agent`).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// The key that seals outbox records; defaults to `<data_dir>/outbox.key`, created with a new
    /// outbox. Keep it owner-only and back it up: the outbox cannot be read without it.
    #[serde(default)]
    pub outbox_key_file: Option<PathBuf>,
    /// Disk budget of the outbox in bytes (default 256 MiB). From 80 % the agent reports
    /// pressure; when full, operations that must record an event fail closed.
    #[serde(default = "default_outbox_budget_bytes")]
    pub outbox_budget_bytes: u64,
    pub central: CentralLink,
    pub onshi: OnshiLink,
    /// The site's card readers (PC/SC); absent: the agent does not touch them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<crate::cards::CardsConfig>,
    /// The receipt-computer file exchange; absent: no folder is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_exchange: Option<crate::filex::FileExchangeConfig>,
    /// Closed-network link probes (national system and central); absent: no probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::probe::LinkConfig>,
    /// Certificates to inventory besides the always-watched ones ([`crate::certs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<crate::certs::CertificatesConfig>,
    /// The access policy version deciding who may view what (`jp-2020-11`, the current rule,
    /// by default; `jp-2020-09` is the stricter 2020 rule), set per site here.
    #[serde(default = "default_access_policy")]
    pub access_policy: onshi_domain::access::PolicyVersion,
    /// The site's qualified staff and their roles, for information views (`[[staff]]`), until
    /// central sends the roster chain IT set (`access-rules.json` in the data folder), which
    /// then replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staff: Vec<StaffMember>,
    /// Disaster windows (災害時医療情報閲覧) the ministry designated: drug and checkup
    /// information may be viewed without the card in these prefectures during these periods.
    /// Listed here (`[[disaster_windows]]`) until central sends the windows chain IT opened,
    /// which then replace them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disaster_windows: Vec<onshi_domain::access::DisasterWindow>,
}

/// One member of the site's staff roster (`[[staff]]`: id, and doctor | dentist | pharmacist |
/// clerk | site_admin).
pub use onshi_domain::access::Staff as StaffMember;

fn default_access_policy() -> onshi_domain::access::PolicyVersion {
    onshi_domain::access::PolicyVersion::CURRENT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralLink {
    pub endpoint: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The cap of the reconnect backoff (full jitter under it), in milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Ask central for a new certificate when fewer days than this are left (default: when a
    /// third of the certificate's lifetime is left). `cert` and `key` are then replaced in
    /// place, so their folder must be writable by the agent.
    #[serde(default)]
    pub renew_before_days: Option<u32>,
    /// Seconds between heartbeats; keep it well under central's silence limit
    /// (`--silence-secs`, 90), after which central counts the site's link as down.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// See [`default_keepalive_secs`].
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
}

/// Seconds between HTTP/2 pings on the connection to central; one unanswered for as long
/// drops the connection, so a closed-network link that went silent is noticed and the agent
/// reconnects when it returns.
fn default_keepalive_secs() -> u64 {
    30
}

fn default_heartbeat_secs() -> u64 {
    30
}

fn default_reconnect_max_ms() -> u64 {
    60_000
}

fn default_outbox_budget_bytes() -> u64 {
    256 * 1024 * 1024
}

/// `[onshi]`: how the agent reaches the national system ([`crate::national`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnshiLink {
    /// `terminal` (a real site: the qualification terminal's file interface) or `direct`
    /// (onshi-sim's HTTPS protocol; the default, for files written before terminals).
    #[serde(default)]
    pub transport: TransportKind,
    /// Direct: the endpoint, its CA and the terminal certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Direct: the HTTPS round trip; terminal: how long a request may wait for its result.
    #[serde(default = "default_onshi_timeout_ms")]
    pub timeout_ms: u64,
    /// Terminal: the terminal software's base folder (`req`, `res`, `face` under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_dir: Option<PathBuf>,
    /// Terminal: `client` (the default: the agent writes its own requests, and relays the
    /// receipt computer's with `[file_exchange]`) or `tap` (it only reads the terminal's
    /// folders and records the receipt computer's exchanges there; [`crate::observed::tap`]).
    #[serde(default)]
    pub mode: crate::national::settings::TerminalMode,
    /// Terminal: record the face reader's results (`face`).
    #[serde(default = "default_true")]
    pub watch_face: bool,
    #[serde(default = "crate::national::settings::default_slow_ms")]
    pub slow_ms: u64,
    #[serde(default = "crate::national::settings::default_rescan_ms")]
    pub rescan_ms: u64,
    #[serde(default = "crate::national::settings::default_settle_ms")]
    pub settle_ms: u64,
    #[serde(default = "crate::national::settings::default_max_result_bytes")]
    pub max_result_bytes: u64,
}

fn default_true() -> bool {
    true
}

impl OnshiLink {
    /// The terminal transport's settings (`transport = "terminal"`).
    pub fn terminal_settings(&self) -> Option<crate::national::settings::TerminalSettings> {
        if self.transport != TransportKind::Terminal {
            return None;
        }
        let folder = self.folder.clone()?;
        let pick =
            |dir: &Option<PathBuf>, name: &str| dir.clone().unwrap_or_else(|| folder.join(name));
        let timeout = std::time::Duration::from_millis(self.timeout_ms.max(1));
        Some(crate::national::settings::TerminalSettings {
            folders: crate::national::TerminalFolders {
                request: pick(&self.request_dir, "req"),
                result: pick(&self.result_dir, "res"),
                face: pick(&self.face_dir, "face"),
            },
            mode: self.mode,
            watch_face: self.watch_face,
            timeout,
            slow: std::time::Duration::from_millis(self.slow_ms),
            rescan: std::time::Duration::from_millis(self.rescan_ms.max(10)),
            settle: std::time::Duration::from_millis(self.settle_ms),
            incomplete_grace: timeout.min(std::time::Duration::from_secs(5)),
            max_result_bytes: self.max_result_bytes,
        })
    }

    /// Direct: endpoint, CA, certificate and key (all four are required there).
    pub fn direct(&self) -> Option<(&str, &Path, &Path, &Path)> {
        Some((
            self.endpoint.as_deref()?,
            self.ca.as_deref()?,
            self.cert.as_deref()?,
            self.key.as_deref()?,
        ))
    }
}

fn default_onshi_timeout_ms() -> u64 {
    5_000
}

impl AgentConfig {
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    pub fn from_toml(
        text: &str,
        base: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        if config.version != CONFIG_VERSION {
            return Err(ConfigError::Version {
                found: config.version,
            });
        }
        if let Some(dir) = env.get("EDGE_AGENT_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(endpoint) = env.get("EDGE_AGENT_CENTRAL_ENDPOINT") {
            config.central.endpoint = endpoint.clone();
        }
        if let Some(endpoint) = env.get("EDGE_AGENT_ONSHI_ENDPOINT") {
            config.onshi.endpoint = Some(endpoint.clone());
        }
        config.resolve_paths(base);
        config.check()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        resolve(&mut self.patient_hash_key_file);
        if let Some(file_exchange) = self.file_exchange.as_mut() {
            file_exchange.resolve_paths(base);
        }
        if let Some(certificates) = self.certificates.as_mut() {
            certificates.resolve_paths(base);
        }
        if let Some(key) = self.outbox_key_file.as_mut() {
            resolve(key);
        }
        if let Some(socket) = self.control_socket.as_mut() {
            resolve(socket);
        }
        for p in [
            &mut self.central.ca,
            &mut self.central.cert,
            &mut self.central.key,
        ] {
            resolve(p);
        }
        for p in [
            &mut self.onshi.ca,
            &mut self.onshi.cert,
            &mut self.onshi.key,
            &mut self.onshi.folder,
            &mut self.onshi.request_dir,
            &mut self.onshi.result_dir,
            &mut self.onshi.face_dir,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let code = self.site_code.institution_code();
        if code.prefecture() != self.prefecture {
            return Err(ConfigError::Inconsistent(format!(
                "site_code {} is in prefecture {}, but prefecture says {}",
                self.site_code,
                code.prefecture().code_str(),
                self.prefecture.code_str()
            )));
        }
        if !self.site_kind.accepts_fee_table(code.fee_table()) {
            let table = match code.fee_table() {
                FeeTable::Medical => "medical",
                FeeTable::Dental => "dental",
                FeeTable::Pharmacy => "pharmacy",
                FeeTable::HomeNursing => "home nursing",
            };
            return Err(ConfigError::Inconsistent(format!(
                "site_code {} is a {table} code, which a {} cannot hold",
                self.site_code,
                self.site_kind.as_str()
            )));
        }
        let mut ids = std::collections::HashSet::new();
        for member in &self.staff {
            if member.id.trim().is_empty() || !ids.insert(member.id.as_str()) {
                return Err(ConfigError::Inconsistent(format!(
                    "staff ids must be unique and not empty (\"{}\")",
                    member.id
                )));
            }
        }
        for window in &self.disaster_windows {
            if window.ends_at <= window.starts_at || window.prefectures.is_empty() {
                return Err(ConfigError::Inconsistent(format!(
                    "disaster window {} must name prefectures and end after it starts",
                    window.id
                )));
            }
        }
        if let Some(certificates) = &self.certificates {
            certificates.check().map_err(ConfigError::Inconsistent)?;
        }
        match self.onshi.transport {
            TransportKind::Direct if self.onshi.direct().is_none() => {
                return Err(ConfigError::Inconsistent(
                    "[onshi] transport = \"direct\" needs endpoint, ca, cert and key".into(),
                ));
            }
            TransportKind::Terminal if self.onshi.folder.is_none() => {
                return Err(ConfigError::Inconsistent(
                    "[onshi] transport = \"terminal\" needs folder (the terminal's base folder, e.g. \"D:/OQS\")".into(),
                ));
            }
            _ => {}
        }
        if self.onshi.mode == crate::national::settings::TerminalMode::Tap {
            if self.onshi.transport != TransportKind::Terminal {
                return Err(ConfigError::Inconsistent(
                    "[onshi] mode = \"tap\" watches the qualification terminal's folders: it needs transport = \"terminal\"".into(),
                ));
            }
            if self.file_exchange.is_some() {
                return Err(ConfigError::Inconsistent(
                    "[onshi] mode = \"tap\" sends nothing to the terminal, so it cannot relay the receipt computer's requests: remove [file_exchange] (relay mode is mode = \"client\" with [file_exchange])".into(),
                ));
            }
        }
        let direct_endpoint = match self.onshi.transport {
            TransportKind::Direct => self.onshi.endpoint.as_ref(),
            TransportKind::Terminal => None,
        };
        for (name, endpoint) in [
            ("central.endpoint", Some(&self.central.endpoint)),
            ("onshi.endpoint", direct_endpoint),
        ]
        .into_iter()
        .filter_map(|(n, e)| Some((n, e?)))
        {
            if !endpoint.starts_with("https://") {
                return Err(ConfigError::Inconsistent(format!(
                    "{name} must be an https:// URL, got {endpoint:?}"
                )));
            }
        }
        Ok(())
    }

    /// The control channel: `control_socket`, else `agent.sock` in the data folder (unix) or
    /// the pipe `\\.\pipe\onshi-fleet-agent` (Windows).
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| default_control_channel(&self.data_dir))
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.data_dir.join("outbox.sqlite3")
    }

    /// Where the access rules central last pushed (roster, disaster windows) are kept.
    pub fn access_rules_path(&self) -> PathBuf {
        self.data_dir.join("access-rules.json")
    }

    /// The terminal transport's journal ([`crate::national::journal`]).
    pub fn terminal_journal_path(&self) -> PathBuf {
        self.data_dir.join("terminal.sqlite3")
    }

    /// The consents given on the card reader ([`crate::consents`]).
    pub fn consents_path(&self) -> PathBuf {
        self.data_dir.join("consents.sqlite3")
    }

    /// The certificate files to watch: the always-watched ones first, then `[certificates]`'s,
    /// each path once.
    pub fn watched_certificates(&self) -> Vec<Watch> {
        let mut all = vec![
            Watch::pem(self.central.cert.clone(), "agent"),
            Watch::pem(self.central.ca.clone(), "ca"),
        ];
        // Direct mode only: in terminal mode the terminal's certificate stays in its own software.
        all.extend(
            self.onshi
                .cert
                .iter()
                .map(|path| Watch::pem(path.clone(), "terminal")),
        );
        all.extend(
            self.onshi
                .ca
                .iter()
                .map(|path| Watch::pem(path.clone(), "ca")),
        );
        for file in self.certificates.iter().flat_map(|c| &c.watch) {
            let source = match file.format {
                CertificateFormat::Pem => Source::Pem(file.path.clone()),
                CertificateFormat::P12 => Source::Pkcs12 {
                    path: file.path.clone(),
                    password_file: file.password_file.clone(),
                },
            };
            all.push(Watch {
                source,
                role: role_name(file.role),
            });
        }
        for store in self.certificates.iter().flat_map(|c| &c.stores) {
            all.push(Watch {
                source: Source::Store(store.clone()),
                role: role_name(store.role),
            });
        }
        let mut seen = HashSet::new();
        all.retain(|w| seen.insert(w.source.label()));
        all
    }

    pub fn outbox_key_file(&self) -> PathBuf {
        self.outbox_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox.key"))
    }

    pub fn outbox_options(&self) -> crate::outbox::OutboxOptions {
        crate::outbox::OutboxOptions {
            key_file: self.outbox_key_file(),
            budget_bytes: self.outbox_budget_bytes,
            site: self.site_code.clone(),
            terminal: self.terminal_id.clone(),
        }
    }

    /// Hex SHA-256 of the effective configuration, reported to central so drifted sites show.
    pub fn config_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("the configuration serialises");
        fleet_tls::identity::hex(ring::digest::digest(&ring::digest::SHA256, &canonical).as_ref())
    }
}

#[cfg(unix)]
fn default_control_channel(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.sock")
}

#[cfg(windows)]
fn default_control_channel(_data_dir: &Path) -> PathBuf {
    PathBuf::from(r"\\.\pipe\onshi-fleet-agent")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(site: &str, kind: &str, prefecture: &str) -> String {
        format!(
            r#"version = 1
site_code = "{site}"
site_kind = "{kind}"
prefecture = "{prefecture}"
terminal_id = "T01"
data_dir = "data"
patient_hash_key_file = "patient-hash.key"
[central]
endpoint = "https://localhost:7443"
ca = "pki/chain-ca.pem"
cert = "pki/agents/{site}.pem"
key = "pki/agents/{site}.key"
[onshi]
endpoint = "https://localhost:9443"
ca = "pki/common-ca.pem"
cert = "pki/t.pem"
key = "pki/t.key"
"#
        )
    }

    #[test]
    fn a_valid_file_loads_with_paths_resolved() {
        let config = AgentConfig::from_toml(
            &sample("3410712362", "clinic", "34"),
            Path::new("/etc/agent"),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/etc/agent/data"));
        assert_eq!(config.onshi.timeout_ms, 5_000);
        assert_eq!(config.config_hash().len(), 64);
    }

    /// A terminal PC's paths: a drive letter and a UNC share are kept as given, relative names
    /// resolve under the configuration's folder, and the control channel defaults to the pipe.
    #[cfg(windows)]
    #[test]
    fn windows_drive_and_unc_paths_are_kept_and_relative_ones_resolved() {
        let text = sample("3410712362", "clinic", "34")
            .replace(r#"data_dir = "data""#, r"data_dir = 'D:\OQS-agent\data'")
            .replace(
                r#"ca = "pki/chain-ca.pem""#,
                r"ca = '\\oqs-terminal\pki\chain-ca.pem'",
            );
        let config = AgentConfig::from_toml(
            &text,
            Path::new(r"C:\ProgramData\onshi-fleet\agent"),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from(r"D:\OQS-agent\data"));
        assert_eq!(
            config.central.ca,
            PathBuf::from(r"\\oqs-terminal\pki\chain-ca.pem")
        );
        assert_eq!(
            config.patient_hash_key_file,
            PathBuf::from(r"C:\ProgramData\onshi-fleet\agent\patient-hash.key")
        );
        assert_eq!(
            config.control_socket(),
            PathBuf::from(r"\\.\pipe\onshi-fleet-agent")
        );
    }

    /// `[onshi]` with the terminal transport: `req`, `res` and `face` under `folder` by default;
    /// each overridable on its own (absolute as given, relative under the configuration's
    /// folder), the others keeping their default. (Unix paths: on Windows `/mnt/oqs` is not
    /// absolute; drive and UNC paths are the Windows test's.)
    #[cfg(unix)]
    #[test]
    fn terminal_folders_default_under_the_base_folder_and_can_each_be_moved() {
        let terminal = |extra: &str| {
            let text = sample("3410712362", "clinic", "34").replace(
                "[onshi]\nendpoint = \"https://localhost:9443\"\nca = \"pki/common-ca.pem\"\ncert = \"pki/t.pem\"\nkey = \"pki/t.key\"\n",
                &format!("[onshi]\ntransport = \"terminal\"\nfolder = \"/mnt/oqs\"\n{extra}"),
            );
            assert!(text.contains("transport = \"terminal\""), "{text}");
            AgentConfig::from_toml(&text, Path::new("/etc/agent"), &HashMap::new())
                .unwrap()
                .onshi
                .terminal_settings()
                .expect("terminal settings")
                .folders
        };
        assert_eq!(
            terminal(""),
            crate::national::TerminalFolders {
                request: PathBuf::from("/mnt/oqs/req"),
                result: PathBuf::from("/mnt/oqs/res"),
                face: PathBuf::from("/mnt/oqs/face"),
            }
        );
        assert_eq!(
            terminal("request_dir = \"/srv/in\"\n"),
            crate::national::TerminalFolders {
                request: PathBuf::from("/srv/in"),
                result: PathBuf::from("/mnt/oqs/res"),
                face: PathBuf::from("/mnt/oqs/face"),
            }
        );
        assert_eq!(
            terminal("result_dir = \"/srv/out\"\nface_dir = \"face-copy\"\n"),
            crate::national::TerminalFolders {
                request: PathBuf::from("/mnt/oqs/req"),
                result: PathBuf::from("/srv/out"),
                face: PathBuf::from("/etc/agent/face-copy"),
            }
        );
        // The direct transport has no terminal folders.
        let direct = AgentConfig::from_toml(
            &sample("3410712362", "clinic", "34"),
            Path::new("/etc/agent"),
            &HashMap::new(),
        )
        .unwrap();
        assert!(direct.onshi.terminal_settings().is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = HashMap::from([(
            "EDGE_AGENT_CENTRAL_ENDPOINT".to_string(),
            "https://other:1".to_string(),
        )]);
        let config =
            AgentConfig::from_toml(&sample("3410712362", "clinic", "34"), Path::new("/"), &env)
                .unwrap();
        assert_eq!(config.central.endpoint, "https://other:1");
    }

    #[test]
    fn inconsistent_site_facts_are_refused() {
        let wrong_prefecture = AgentConfig::from_toml(
            &sample("3410712362", "clinic", "13"),
            Path::new("/"),
            &HashMap::new(),
        );
        assert!(matches!(
            wrong_prefecture,
            Err(ConfigError::Inconsistent(_))
        ));
        let pharmacy_with_medical_code = AgentConfig::from_toml(
            &sample("3410712362", "pharmacy", "34"),
            Path::new("/"),
            &HashMap::new(),
        );
        assert!(matches!(
            pharmacy_with_medical_code,
            Err(ConfigError::Inconsistent(_))
        ));
    }

    #[test]
    fn the_example_configuration_in_deploy_is_valid() {
        let example = include_str!("../../deploy/agent.example.toml");
        let config = AgentConfig::from_toml(example, Path::new("/"), &HashMap::new()).unwrap();
        assert_eq!(config.site_kind, SiteKind::Pharmacy);
        // And with every commented-out setting switched on (prose comments stay comments).
        let is_setting = |rest: &str| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        };
        let uncommented: String = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|rest| is_setting(rest))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        AgentConfig::from_toml(&uncommented, Path::new("/"), &HashMap::new()).unwrap();
    }

    #[test]
    fn staff_policy_and_disaster_windows() {
        let text = sample("3410712362", "clinic", "34").replace(
            "terminal_id = \"T01\"",
            "terminal_id = \"T01\"\naccess_policy = \"jp-2020-09\"",
        ) + r#"
[[staff]]
id = "D001"
role = "doctor"
[[staff]]
id = "C001"
role = "clerk"
[[disaster_windows]]
id = "2026-noto"
prefectures = ["34", "17"]
starts_at = "2026-01-01T00:00:00+09:00"
ends_at = "2026-01-08T00:00:00+09:00"
"#;
        let config = AgentConfig::from_toml(&text, Path::new("/"), &HashMap::new()).unwrap();
        assert_eq!(
            config.access_policy,
            onshi_domain::access::PolicyVersion::Jp2020Sep
        );
        assert_eq!(config.staff.len(), 2);
        assert_eq!(config.staff[1].role, onshi_domain::access::Role::Clerk);
        assert_eq!(config.disaster_windows[0].prefectures.len(), 2);
        let default = AgentConfig::from_toml(
            &sample("3410712362", "clinic", "34"),
            Path::new("/"),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(
            default.access_policy,
            onshi_domain::access::PolicyVersion::CURRENT
        );
        let duplicate = text.replace("\"C001\"", "\"D001\"");
        assert!(matches!(
            AgentConfig::from_toml(&duplicate, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Inconsistent(_))
        ));
        let backwards = text.replace("2026-01-08", "2025-12-31");
        assert!(matches!(
            AgentConfig::from_toml(&backwards, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Inconsistent(_))
        ));
        let unknown_role = text.replace("\"clerk\"", "\"nurse\"");
        assert!(AgentConfig::from_toml(&unknown_role, Path::new("/"), &HashMap::new()).is_err());
    }

    #[test]
    fn tap_mode_needs_the_terminal_and_no_file_exchange() {
        let terminal = sample("3410712362", "clinic", "34").replace(
            "[onshi]\n",
            "[onshi]\ntransport = \"terminal\"\nfolder = \"/mnt/oqs\"\nmode = \"tap\"\n",
        );
        let config = AgentConfig::from_toml(&terminal, Path::new("/"), &HashMap::new()).unwrap();
        let settings = config.onshi.terminal_settings().unwrap();
        assert_eq!(settings.mode, crate::national::settings::TerminalMode::Tap);
        assert_eq!(settings.folders.request, PathBuf::from("/mnt/oqs/req"));
        let relaying = format!("{terminal}\n[file_exchange]\nfolder = \"/srv/onshi\"\n");
        assert!(matches!(
            AgentConfig::from_toml(&relaying, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Inconsistent(m)) if m.contains("[file_exchange]")
        ));
        let direct =
            sample("3410712362", "clinic", "34").replace("[onshi]\n", "[onshi]\nmode = \"tap\"\n");
        assert!(matches!(
            AgentConfig::from_toml(&direct, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Inconsistent(m)) if m.contains("transport = \"terminal\"")
        ));
        // Relay: client mode (the default) with the file exchange.
        let relay = format!(
            "{}\n[file_exchange]\nfolder = \"/srv/onshi\"\n",
            terminal.replace("mode = \"tap\"\n", "")
        );
        let config = AgentConfig::from_toml(&relay, Path::new("/"), &HashMap::new()).unwrap();
        assert_eq!(
            config.onshi.mode,
            crate::national::settings::TerminalMode::Client
        );
    }

    #[test]
    fn unknown_keys_and_versions_are_refused() {
        let text = sample("3410712362", "clinic", "34").replace("version = 1", "version = 2");
        assert!(matches!(
            AgentConfig::from_toml(&text, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Version { found: 2 })
        ));
        let text = format!(
            "colour = \"blue\"\n{}",
            sample("3410712362", "clinic", "34")
        );
        assert!(matches!(
            AgentConfig::from_toml(&text, Path::new("/"), &HashMap::new()),
            Err(ConfigError::Parse { .. })
        ));
    }
}
