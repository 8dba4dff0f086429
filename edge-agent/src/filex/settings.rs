//! The `[file_exchange]` section of the agent's configuration (optional: without it the agent
//! does not watch any folder).
//!
//! ```toml
//! [file_exchange]
//! folder = "/srv/onshi"            # base; the folders below default to <folder>/req, res, …
//! # request_dir = "…/req"          # the receipt computer writes <Kind>req_*.xml here
//! # result_dir = "…/res"           # the agent answers <Kind>res_*.xml here
//! # archive_dir = "…/archive"      # answered requests
//! # error_dir = "…/error"          # requests that could not be read
//! # work_dir = "…/work"            # requests being answered, and their restart journal
//! # rescan_ms = 5000               # periodic rescan, besides file-system notification
//! # settle_ms = 200                # a file must keep its size and mtime this long
//! # incomplete_grace_ms = 5000     # an unparsable file is given this long to be completed
//! # max_request_bytes = 1048576
//! # err_files = true               # also write <request-name>.err on failure (UNCONFIRMED convention)
//! ```
//!
//! The kinds are those the terminal answers: `OQSsiquc01`, `OQSmuquc01`/`OQSmuquc02`,
//! `YZKsiquc01`, `TKKsiquc01` (other names are left alone). With `[onshi] transport =
//! "terminal"` this is relay mode: point the receipt computer's request and result folders here
//! instead of at the terminal's, and the agent passes each request on and the answer back byte
//! for byte. A batch inquiry for many people may be larger than `max_request_bytes`' default:
//! raise it for sites that send them.
//!
//! The work, request, result, archive and error folders must be on one file system: requests
//! and results are moved with `rename`, which is atomic only within a file system.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileExchangeConfig {
    pub folder: PathBuf,
    #[serde(default)]
    pub request_dir: Option<PathBuf>,
    #[serde(default)]
    pub result_dir: Option<PathBuf>,
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
    #[serde(default)]
    pub error_dir: Option<PathBuf>,
    #[serde(default)]
    pub work_dir: Option<PathBuf>,
    #[serde(default = "default_rescan_ms")]
    pub rescan_ms: u64,
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    #[serde(default = "default_incomplete_grace_ms")]
    pub incomplete_grace_ms: u64,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u64,
    #[serde(default = "default_true")]
    pub err_files: bool,
}

fn default_rescan_ms() -> u64 {
    5_000
}
fn default_settle_ms() -> u64 {
    200
}
fn default_incomplete_grace_ms() -> u64 {
    5_000
}
fn default_max_request_bytes() -> u64 {
    1024 * 1024
}
fn default_true() -> bool {
    true
}

/// The folders, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub request: PathBuf,
    pub result: PathBuf,
    pub archive: PathBuf,
    pub error: PathBuf,
    pub work: PathBuf,
}

impl FileExchangeConfig {
    /// Makes relative paths relative to `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.folder);
        for p in [
            &mut self.request_dir,
            &mut self.result_dir,
            &mut self.archive_dir,
            &mut self.error_dir,
            &mut self.work_dir,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }

    pub fn folders(&self) -> Folders {
        let or =
            |p: &Option<PathBuf>, name: &str| p.clone().unwrap_or_else(|| self.folder.join(name));
        Folders {
            request: or(&self.request_dir, "req"),
            result: or(&self.result_dir, "res"),
            archive: or(&self.archive_dir, "archive"),
            error: or(&self.error_dir, "error"),
            work: or(&self.work_dir, "work"),
        }
    }

    pub fn rescan(&self) -> Duration {
        Duration::from_millis(self.rescan_ms.max(100))
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    pub fn incomplete_grace(&self) -> Duration {
        Duration::from_millis(self.incomplete_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_default_under_the_base() {
        let mut config: FileExchangeConfig =
            toml::from_str("folder = \"share\"\nresult_dir = \"/x/res\"").unwrap();
        config.resolve_paths(Path::new("/etc/agent"));
        let folders = config.folders();
        assert_eq!(folders.request, PathBuf::from("/etc/agent/share/req"));
        assert_eq!(folders.result, PathBuf::from("/x/res"));
        assert_eq!(folders.work, PathBuf::from("/etc/agent/share/work"));
        assert!(config.err_files);
        assert_eq!(config.rescan(), Duration::from_secs(5));
        assert!(toml::from_str::<FileExchangeConfig>("folder = \"a\"\nbogus = 1").is_err());
    }
}
