//! Small, careful file operations: atomic writes (temp file in the same folder, fsync, rename,
//! fsync of the folder) and moves that survive a crash at any point.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers see either no file or the whole file.
///
/// The temporary name starts with a dot and ends in `.tmp`, which the receipt computer's
/// `OQSsiquc01res_*.xml` pattern never matches.
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
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves `from` into `dir` under its own name (or, when that name is taken, with a numeric
/// suffix), durably. Returns the new path.
pub fn move_into(from: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = from
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy()
        .into_owned();
    let mut target = dir.join(&name);
    // Bounded: a thousand archived copies of one name means something else is wrong.
    for n in 1..=1000 {
        if !target.exists() {
            break;
        }
        target = dir.join(format!("{name}.{n}"));
    }
    fs::rename(from, &target)?;
    sync_dir(dir)?;
    if let Some(parent) = from.parent() {
        sync_dir(parent)?;
    }
    Ok(target)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQSsiquc01res_x.xml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn moves_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        for content in ["1", "2"] {
            fs::write(a.join("f.xml"), content).unwrap();
            move_into(&a.join("f.xml"), &b).unwrap();
        }
        assert_eq!(fs::read(b.join("f.xml")).unwrap(), b"1");
        assert_eq!(fs::read(b.join("f.xml.1")).unwrap(), b"2");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
