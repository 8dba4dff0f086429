//! The transport part of `[onshi]` in the agent's configuration.
//!
//! ```toml
//! [onshi]
//! transport = "terminal"     # a real site: the qualification terminal's file interface
//! folder = "D:/OQS"          # the terminal's base folder; req/ res/ face/ under it
//! # mode = "client"          # client: the agent writes its own requests (and relays the
//! #                          # receipt computer's with [file_exchange]); tap: it only reads
//! #                          # the terminal's folders and records the receipt computer's
//! #                          # exchanges it sees there
//! # request_dir = "D:/OQS/req"
//! # result_dir = "D:/OQS/res"
//! # face_dir = "D:/OQS/face"
//! # watch_face = true        # record the face reader's results
//! timeout_ms = 30000         # a request the terminal has not answered by then is "unreachable"
//!                            # (tap: the receipt computer's request is recorded as unanswered)
//! # slow_ms = 5000           # answers slower than this make the terminal "slow"
//! # rescan_ms = 1000         # periodic rescan besides file-system notification
//! # settle_ms = 100          # a result file must keep its size this long before it is read
//! # max_result_bytes = 16777216
//! ```
//!
//! `transport = "direct"` (the default, for configurations written before terminals) is
//! onshi-sim's HTTPS protocol and needs `endpoint`, `ca`, `cert` and `key` instead.
//!
//! Three ways to sit at a site with a terminal ([`TerminalMode`]):
//!
//! - **client** (the default): the agent is one more client of the terminal: counter lookups,
//!   batch steps and views become its own request files;
//! - **relay**: client mode plus `[file_exchange]` where the receipt computer's folders point at
//!   the agent: each of its requests is passed on to the terminal and the answer passed back
//!   byte for byte ([`crate::filex`]);
//! - **tap** (`mode = "tap"`): the receipt computer keeps talking to the terminal directly; the
//!   agent only reads `req`, `res` and `face` (read-only access is enough), pairs each request
//!   with its result, records each exchange once, and never writes, moves or renames anything
//!   there ([`crate::observed::tap`]). It sends nothing itself: counter lookups, batch inquiries and views
//!   are refused, and `[file_exchange]` cannot be configured with it. `timeout_ms` is how long a
//!   request may stay unanswered before it is recorded as such.

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

/// How the agent works with the terminal's folders (`mode` in `[onshi]`, terminal transport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalMode {
    /// The agent writes its own requests into `req` and takes its results from `res`.
    #[default]
    Client,
    /// The agent only reads `req`, `res` and `face`, recording the receipt computer's exchanges.
    Tap,
}

impl TerminalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalMode::Client => "client",
            TerminalMode::Tap => "tap",
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
    pub mode: TerminalMode,
    pub watch_face: bool,
    /// A request unanswered this long is given up ("unreachable"; in tap mode, recorded as
    /// unanswered); also the silence threshold.
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
            mode: TerminalMode::Client,
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
