//! A site's folders for the terminal's tests (the transport's and the tap's): the qualification
//! terminal's `req`, `res` and `face` under `OQS`, and the agent's data folder with its outbox.

use std::path::PathBuf;

use onshi_domain::site::{SiteCode, TerminalId};

use crate::outbox::{Outbox, OutboxOptions};

/// The tests' site code (Hokkaido).
pub(crate) const SITE: &str = "0110112489";

/// One agent's folders in a temporary folder, kept across the agent's (re)starts.
pub(crate) struct SiteFolders {
    dir: tempfile::TempDir,
}

impl SiteFolders {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["OQS/req", "OQS/res", "OQS/face", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }

    /// The terminal's base folder.
    pub(crate) fn oqs(&self) -> PathBuf {
        self.dir.path().join("OQS")
    }

    /// The agent's data folder.
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The outbox as a (re)started agent opens it, at most `budget_bytes`.
    pub(crate) fn outbox(&self, budget_bytes: u64) -> Outbox {
        let data = self.data();
        Outbox::open(
            &data.join("outbox.sqlite3"),
            OutboxOptions {
                key_file: data.join("outbox.key"),
                budget_bytes,
                site: SiteCode::parse(SITE).unwrap(),
                terminal: TerminalId::parse("T01").unwrap(),
            },
        )
        .unwrap()
    }
}
