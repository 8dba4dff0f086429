//! The terminal's folders and the simulator's own state beside them.
//!
//! `<folder>/req`, `<folder>/res`, `<folder>/face` are the file interface (domain notes §4).
//! `<folder>/.sim/` is the simulator's: `terminal.json` (who the running terminal is: its
//! institution and population, so `present` answers for the same people), `knobs.json`
//! ([`super::knobs`]) and `consents/holder-<n>.json`, one file per patient who used the face
//! reader (one file each, so two `present` commands never overwrite each other's consent).
//! Every file here is written atomically: a temporary dot name in the same folder, then a
//! rename, so a reader sees the old file or the new one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use onshi_domain::access::ConsentRecord;
use serde::{Deserialize, Serialize};

/// The folders of one terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub base: PathBuf,
    pub req: PathBuf,
    pub res: PathBuf,
    pub face: PathBuf,
    /// Where answered requests go with `--requests move` (inside `req`, a folder, so never
    /// taken for a request).
    pub done: PathBuf,
    sim: PathBuf,
}

impl Folders {
    pub fn under(base: &Path) -> Self {
        Self {
            base: base.to_path_buf(),
            req: base.join("req"),
            res: base.join("res"),
            face: base.join("face"),
            done: base.join("req").join("done"),
            sim: base.join(".sim"),
        }
    }

    /// Creates the folders that do not exist yet.
    pub fn create(&self, with_done: bool) -> anyhow::Result<()> {
        let consents = self.consents();
        let mut all = vec![&self.req, &self.res, &self.face, &self.sim, &consents];
        if with_done {
            all.push(&self.done);
        }
        for dir in all {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// The simulator's own folder (`.sim`).
    pub fn sim(&self) -> &Path {
        &self.sim
    }

    pub fn knobs(&self) -> PathBuf {
        self.sim.join("knobs.json")
    }

    pub fn identity(&self) -> PathBuf {
        self.sim.join("terminal.json")
    }

    pub fn consents(&self) -> PathBuf {
        self.sim.join("consents")
    }
}

/// Who the running terminal is, for `present`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub institution: String,
    pub seed: u64,
    pub population: usize,
}

/// A consent given on the face reader, as the terminal reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConsent {
    /// The person's index in the population (the simulator's handle, not an identifier).
    pub holder: usize,
    pub record: ConsentRecord,
}

pub fn write_consent(folders: &Folders, consent: &StoredConsent) -> anyhow::Result<()> {
    let path = folders
        .consents()
        .join(format!("holder-{}.json", consent.holder));
    let json = serde_json::to_vec_pretty(consent).context("encoding the consent")?;
    write_atomic(&path, &json).with_context(|| format!("writing {}", path.display()))
}

/// Every consent on file; unreadable files are skipped (with a warning), never fatal.
pub fn read_consents(folders: &Folders) -> Vec<StoredConsent> {
    let Ok(entries) = fs::read_dir(folders.consents()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("holder-") && name.ends_with(".json")
        })
        .filter_map(|e| {
            let bytes = fs::read(e.path()).ok()?;
            serde_json::from_slice(&bytes)
                .inspect_err(
                    |error| tracing::warn!(%error, "a consent file does not read; skipped"),
                )
                .ok()
        })
        .collect()
}

/// Writes `bytes` to `path` so that readers see no file or the whole file: a dot-named
/// temporary in the same folder, then a rename. The temporary name never matches a request or
/// result pattern. No fsync: readers need whole files, not files that survive a power cut, and
/// an fsync would add milliseconds to every answer that benchmarks count as the terminal's.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Moves `from` into `dir` under its own name, or with a numeric suffix when that is taken.
pub fn move_into(from: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = from
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy()
        .into_owned();
    let mut target = dir.join(&name);
    let mut n = 0u32;
    while target.exists() {
        n += 1;
        target = dir.join(format!("{name}.{n}"));
    }
    fs::rename(from, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let folders = Folders::under(dir.path());
        folders.create(true).unwrap();
        let path = folders.res.join("OQSsiquc01res_1.xml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&folders.res).unwrap().count(), 1);
        let request = folders.req.join("OQSsiquc01req_1.xml");
        fs::write(&request, b"a").unwrap();
        let first = move_into(&request, &folders.done).unwrap();
        fs::write(&request, b"b").unwrap();
        let second = move_into(&request, &folders.done).unwrap();
        assert_ne!(first, second);
        assert!(!request.exists());

        let consent = StoredConsent {
            holder: 7,
            record: ConsentRecord {
                consented_at: time::OffsetDateTime::UNIX_EPOCH,
                categories: vec![onshi_domain::events::InfoCategory::Drug],
            },
        };
        write_consent(&folders, &consent).unwrap();
        fs::write(folders.consents().join("holder-8.json"), b"{").unwrap();
        assert_eq!(read_consents(&folders), vec![consent]);
    }
}
