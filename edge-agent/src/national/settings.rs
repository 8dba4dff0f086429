//! The transport part of `[onshi]` in the agent's configuration.
//!
//! ```toml
//! [onshi]
//! transport = "terminal"     # a real site: the qualification terminal's file interface
//! folder = "D:/OQS"          # the terminal's base folder; req/ res/ face/ under it
//! # request_dir = "D:/OQS/req"
//! # result_dir = "D:/OQS/res"
//! # face_dir = "D:/OQS/face"
//! # watch_face = true        # record the face reader's results
//! timeout_ms = 30000         # a request the terminal has not answered by then is "unreachable"
//! # slow_ms = 5000           # answers slower than this make the terminal "slow"
//! # rescan_ms = 1000         # periodic rescan besides file-system notification
//! # settle_ms = 100          # a result file must keep its size this long before it is read
//! # max_result_bytes = 16777216
//! ```
//!
//! `transport = "direct"` (the default, for configurations written before terminals) is
//! onshi-sim's HTTPS protocol and needs `endpoint`, `ca`, `cert` and `key` instead.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// onshi-sim's HTTPS protocol (no real national endpoint speaks it).
    #[default]
    Direct,
    /// The qualification terminal's file interface (a real site).
    Terminal,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Direct => "direct",
            TransportKind::Terminal => "terminal",
        }
    }
}

/// The terminal's folders, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalFolders {
    pub request: PathBuf,
    pub result: PathBuf,
    pub face: PathBuf,
}

/// Everything the terminal transport needs.
#[derive(Debug, Clone)]
pub struct TerminalSettings {
    pub folders: TerminalFolders,
    pub watch_face: bool,
    /// A request unanswered this long is given up ("unreachable"); also the silence threshold.
    pub timeout: Duration,
    pub slow: Duration,
    pub rescan: Duration,
    pub settle: Duration,
    /// A stable result that still looks cut short is given this long to be completed.
    pub incomplete_grace: Duration,
    pub max_result_bytes: u64,
}

impl TerminalSettings {
    /// Defaults around `folder` (tests).
    pub fn new(folder: &std::path::Path, timeout: Duration) -> Self {
        Self {
            folders: TerminalFolders {
                request: folder.join("req"),
                result: folder.join("res"),
                face: folder.join("face"),
            },
            watch_face: true,
            timeout,
            slow: Duration::from_millis(default_slow_ms()),
            rescan: Duration::from_millis(default_rescan_ms()),
            settle: Duration::from_millis(default_settle_ms()),
            incomplete_grace: Duration::from_millis(2_000),
            max_result_bytes: default_max_result_bytes(),
        }
    }
}

pub fn default_slow_ms() -> u64 {
    5_000
}
pub fn default_rescan_ms() -> u64 {
    1_000
}
pub fn default_settle_ms() -> u64 {
    100
}
/// Batch results for many patients are the largest files (and may be zipped).
pub fn default_max_result_bytes() -> u64 {
    16 * 1024 * 1024
}
