//! Small, careful file operations: atomic writes (temp file in the same folder, fsync, rename,
//! fsync of the folder), moves that survive a crash at any point, and careful reads.
//!
//! Folders the agent writes into may be shared with other programs (the receipt computer, the
//! qualification terminal's software), so a file is never created through a name someone else
//! could have prepared: temporary names are random, created with `create_new` (`O_EXCL`) and
//! no-follow (`O_NOFOLLOW`, `FILE_FLAG_OPEN_REPARSE_POINT` on Windows); files are read through
//! a no-follow open, only when regular, and only up to a size limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers see either no file or the whole file.
///
/// The temporary name starts with a dot and ends in `.tmp` ([`create_temp`]), which no request
/// or result pattern (`…req_*.xml`, `…res_*.xml`) matches.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut file, temp) = create_temp(dir, &name)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        rename_in_place(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// `fs::rename`, and on Windows the rename Wine reports failed although it took place: seen
/// under Wine 8 as os error 8 (not enough memory) while the terminal had already taken the
/// renamed request away (as we read Wine's server/fd.c, it resolves the new name after renaming
/// and answers STATUS_NO_MEMORY when that name is already gone). The temporary name being gone
/// is the proof that the rename happened.
fn rename_in_place(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        #[cfg(windows)]
        Err(e) if e.raw_os_error() == Some(8) && !from.exists() => Ok(()),
        other => other,
    }
}

/// Creates a new, empty file in `dir` named `.<hint>.<random>.tmp`, owner read/write only on
/// unix. It never opens an existing file, and never follows a symbolic link, so a name planted
/// in a shared folder cannot redirect the write.
pub fn create_temp(dir: &Path, hint: &str) -> io::Result<(File, PathBuf)> {
    // Bounded: a collision of 122 random bits means something else is wrong.
    for _ in 0..4 {
        let temp = dir.join(format!(".{hint}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW).mode(0o600);
        }
        // Windows: the file inherits its folder's ACL, which decides who shares the folder
        // (the receipt computer's account must read the results written here).
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        }
        match options.open(&temp) {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}

/// Why [`read_limited`] refused a file.
pub fn is_refusal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::FileTooLarge
    )
}

/// Reads `path` whole when it is a regular file of at most `max_bytes`: the last component is
/// never followed if it is a symbolic link, and a FIFO or device is refused without blocking
/// (`InvalidInput`); a larger file is refused with `FileTooLarge`. The checks are made on the
/// opened file, so the file cannot be swapped between check and read. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn read_limited(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // The link itself is opened, not its target; `is_file` below then refuses it.
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    #[cfg(unix)]
    let file = options.open(path).map_err(|e| {
        // ELOOP: the name is a symbolic link.
        if e.raw_os_error() == Some(libc::ELOOP) {
            return io::Error::new(io::ErrorKind::InvalidInput, "a symbolic link, not a file");
        }
        e
    })?;
    #[cfg(not(unix))]
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{} bytes, the limit is {max_bytes}", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: never read more than the limit.
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("more than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// Makes a rename or a new file in `dir` durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes a rename or a new file in `dir` durable: on Windows, NTFS journals the folder's
/// entries itself and a folder handle cannot be flushed (`FlushFileBuffers` needs write access
/// to a file), so there is nothing to do beyond the file's own `sync_all`.
#[cfg(windows)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let _ = dir;
    Ok(())
}

/// `FILE_FLAG_OPEN_REPARSE_POINT`: open a symbolic link or junction itself, never its target
/// (the Windows counterpart of `O_NOFOLLOW`).
#[cfg(windows)]
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

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

    #[cfg(unix)]
    #[test]
    fn temp_names_are_random_and_never_follow_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let (_, a) = create_temp(dir.path(), "x.xml").unwrap();
        let (_, b) = create_temp(dir.path(), "x.xml").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".x.xml.") && name.ends_with(".tmp"));
        // The old predictable name (`.<name>.<pid>.tmp`) planted as a link changes nothing.
        let planted = dir
            .path()
            .join(format!(".y.xml.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&dir.path().join("y.xml"), b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(dir.path().join("y.xml")).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn careful_reads_refuse_links_fifos_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.xml");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_limited(&file, 5).unwrap(), b"12345");
        let large = read_limited(&file, 4).unwrap_err();
        assert_eq!(large.kind(), io::ErrorKind::FileTooLarge);
        assert!(is_refusal(&large));
        let link = dir.path().join("l.xml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(is_refusal(&read_limited(&link, 100).unwrap_err()));
        let fifo = dir.path().join("p.xml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(is_refusal(&read_limited(&fifo, 100).unwrap_err()));
        assert!(!is_refusal(
            &read_limited(&dir.path().join("none"), 1).unwrap_err()
        ));
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
