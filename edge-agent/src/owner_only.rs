//! Files only the agent's own account may read, on every platform: created that way, and checked
//! before a secret is loaded from them; and the agent's data folder, made private at start
//! ([`private_folder`]).
//!
//! - unix: mode `0600` at creation; a file with any group or other bit is refused.
//! - Windows: a new file keeps the DACL it inherits when no broad group can read it (the agent's
//!   folders, protected by `service configure`), else gets a protected DACL (no inherited
//!   entries) granting the agent's account and `SYSTEM` full access, set and checked on the
//!   still-empty file while this process holds it unshared (so nobody can open it before the
//!   DACL applies); a file whose DACL lets `Everyone`, `Users`,
//!   `Authenticated Users`, `Guests`, `ANONYMOUS LOGON` or `INTERACTIVE` read it is refused, as
//!   is a file with no DACL at all (full access for everyone).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Why a file meant for the agent alone is not: said for the operator who must fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// Who else can read it ("mode 644", "Everyone, BUILTIN\\Users").
    pub who: String,
    /// The command that fixes it on this platform.
    pub fix: String,
}

impl std::fmt::Display for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; run `{}`", self.who, self.fix)
    }
}

/// Opens `path` for writing, readable by the agent's account only. With `new`, refuses an
/// existing file (`create_new`); otherwise creates or truncates it (and, on Windows, replaces
/// the DACL of an existing file too).
pub fn create(path: &Path, new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    open_private(&mut options, path)
}

/// Opens `path` for writing with `options` so that a file it creates is readable by the agent's
/// account only (the caller adds its own flags, such as a no-follow open, before).
pub fn open_private(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
        options.open(path)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // GENERIC_WRITE | WRITE_DAC | READ_CONTROL: writing, and reading and replacing the
        // DACL through this handle.
        const ACCESS: u32 = 0x4000_0000 | 0x0004_0000 | 0x0002_0000;
        options.access_mode(ACCESS);
        // No sharing while the DACL is checked and replaced: an open handle keeps the access
        // it was granted, so nobody may get one before the file is private.
        options.share_mode(0);
        let file = options.open(path)?;
        // A file inheriting a DACL no broad group can read (the agent's own folders, which the
        // MSI's `service configure` protects) keeps it; otherwise it gets the owner-only one.
        // Either way it is checked: a file system that does not keep the DACL (Wine 8 maps
        // any DACL set through the API to a mode that others can read) is refused here rather
        // than at the next start.
        if !windows::broad_readers_of(&file)?.is_empty() {
            windows::make_private(&file)?;
            let readers = windows::broad_readers_of(&file)?;
            if !readers.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the owner-only ACL did not hold on {}: {} can still read it",
                        path.display(),
                        readers.join(", ")
                    ),
                ));
            }
        }
        Ok(file)
    }
}

/// Whether `path` can be read by accounts other than the agent's (and the system's).
/// `Ok(Some(..))` says who and how to fix it.
pub fn exposure(path: &Path) -> io::Result<Option<Exposure>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then(|| Exposure {
            who: format!("mode {mode:o}"),
            fix: format!("chmod 600 {}", path.display()),
        }))
    }
    #[cfg(windows)]
    {
        let readers = windows::broad_readers(path)?;
        Ok((!readers.is_empty()).then(|| Exposure {
            who: format!("its ACL lets {} read it", readers.join(", ")),
            fix: format!(
                "icacls \"{}\" /inheritance:r /grant:r SYSTEM:F \"<the agent's account>:F\"",
                path.display()
            ),
        }))
    }
}

/// Makes the folder `dir` private to the agent's account (creating it when missing) and checks
/// that it held: on Unix mode `0700`, on Windows a protected DACL, inherited by what the agent
/// creates inside, granting `SYSTEM`, Administrators and the agent's account full access. The
/// agent's data folder holds the outbox, the journals and the consents (keyed patient
/// references): a folder others can read is made private at start, not refused, since the usual
/// umask or a hand-made folder leave it readable. Returns who could read it before, if anyone.
pub fn private_folder(dir: &Path) -> io::Result<Option<Exposure>> {
    std::fs::create_dir_all(dir)?;
    let Some(before) = exposure(dir)? else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(windows)]
    {
        let me = windows::current_user_sid()?;
        windows::set_dacl(
            dir,
            &format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{me})"),
        )?;
    }
    match exposure(dir)? {
        None => Ok(Some(before)),
        Some(still) => Err(io::Error::other(format!(
            "{} can still be read by other users after it was made private ({})",
            dir.display(),
            still.who
        ))),
    }
}

#[cfg(windows)]
#[allow(unsafe_code)] // Win32 security calls; each block says what it relies on.
pub mod windows {
    //! The Win32 security calls behind [`super`] and the named-pipe control channel.

    use std::ffi::OsStr;
    use std::fs::File;
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;
    use std::ptr::null_mut;

    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_SUCCESS, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT, SetSecurityInfo,
    };
    use windows_sys::Win32::Security::{
        ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, GetAce,
        GetSecurityDescriptorDacl, GetTokenInformation, PROTECTED_DACL_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR, PSID, TOKEN_QUERY, TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
    const FILE_READ_DATA: u32 = 0x0001;
    const GENERIC_ALL: u32 = 0x1000_0000;
    const GENERIC_READ: u32 = 0x8000_0000;

    /// Well-known SIDs that stand for "other people" on a terminal PC.
    const BROAD: &[(&str, &str)] = &[
        ("S-1-1-0", "Everyone"),
        ("S-1-5-32-545", "BUILTIN\\Users"),
        ("S-1-5-11", "Authenticated Users"),
        ("S-1-5-32-546", "BUILTIN\\Guests"),
        ("S-1-5-7", "ANONYMOUS LOGON"),
        ("S-1-5-4", "INTERACTIVE"),
    ];

    pub fn wide(s: &OsStr) -> Vec<u16> {
        s.encode_wide().chain(std::iter::once(0)).collect()
    }

    /// A string Windows allocated with `LocalAlloc`, read and freed.
    ///
    /// Safety: `p` is null or a NUL-terminated UTF-16 string from `LocalAlloc`.
    unsafe fn take_local_string(p: *mut u16) -> String {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: NUL-terminated per the contract above.
        let len = (0..).take_while(|&i| unsafe { *p.add(i) } != 0).count();
        let text = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) });
        // SAFETY: allocated by the API with LocalAlloc, freed once here.
        unsafe { LocalFree(p.cast()) };
        text
    }

    /// The SID of the account this process runs as (`S-1-5-…`): the service's virtual account
    /// under the Service Control Manager, the signed-in user at a console.
    pub fn current_user_sid() -> io::Result<String> {
        let mut token: HANDLE = null_mut();
        // SAFETY: the pseudo-handle of the current process; `token` is an out pointer.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = 0u32;
        // SAFETY: a size query (null buffer, zero length) that fills `len`.
        unsafe { GetTokenInformation(token, TokenUser, null_mut(), 0, &mut len) };
        // u64s: TOKEN_USER holds pointers and must be aligned for them.
        let mut buffer = vec![0u64; (len as usize).div_ceil(8).max(1)];
        // SAFETY: `buffer` has at least `len` bytes.
        let ok = unsafe {
            GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), len, &mut len)
        };
        let error = io::Error::last_os_error();
        // SAFETY: a handle this function opened.
        unsafe { CloseHandle(token) };
        if ok == 0 {
            return Err(error);
        }
        // SAFETY: GetTokenInformation(TokenUser) wrote a TOKEN_USER at the buffer's start; its
        // SID points into the same buffer, alive until the end of this function.
        let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        sid_string(sid)
    }

    fn sid_string(sid: PSID) -> io::Result<String> {
        let mut text: *mut u16 = null_mut();
        // SAFETY: `sid` is a valid SID (callers); `text` is an out pointer LocalAlloc'ed.
        if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: ConvertSidToStringSidW's result is a LocalAlloc'ed NUL-terminated string.
        Ok(unsafe { take_local_string(text) })
    }

    /// A security descriptor made from SDDL, freed on drop.
    #[derive(Debug)]
    pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

    // SAFETY: the descriptor is immutable after creation and owned by this value alone.
    unsafe impl Send for SecurityDescriptor {}
    // SAFETY: as above; Windows only reads it.
    unsafe impl Sync for SecurityDescriptor {}

    impl SecurityDescriptor {
        pub fn from_sddl(sddl: &str) -> io::Result<Self> {
            let text = wide(OsStr::new(sddl));
            let mut sd: PSECURITY_DESCRIPTOR = null_mut();
            // SAFETY: `text` is NUL-terminated; `sd` is an out pointer LocalAlloc'ed.
            let ok = unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    text.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    null_mut(),
                )
            };
            if ok == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "security descriptor {sddl:?}: {}",
                        io::Error::last_os_error()
                    ),
                ));
            }
            Ok(Self(sd))
        }

        /// Only the agent's account and SYSTEM, nothing inherited.
        pub fn owner_only() -> io::Result<Self> {
            Self::from_sddl(&format!("D:P(A;;FA;;;SY)(A;;FA;;;{})", current_user_sid()?))
        }

        pub fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
            self.0
        }

        fn dacl(&self) -> io::Result<*mut ACL> {
            let (mut present, mut defaulted) = (0, 0);
            let mut dacl: *mut ACL = null_mut();
            // SAFETY: `self.0` is a valid descriptor; the rest are out pointers.
            let ok = unsafe {
                GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted)
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(dacl)
        }
    }

    impl Drop for SecurityDescriptor {
        fn drop(&mut self) {
            // SAFETY: LocalAlloc'ed by ConvertStringSecurityDescriptorToSecurityDescriptorW.
            unsafe { LocalFree(self.0) };
        }
    }

    /// Replaces the DACL of an open file with the owner-only one.
    pub fn make_private(file: &File) -> io::Result<()> {
        let sd = SecurityDescriptor::owner_only()?;
        let dacl = sd.dacl()?;
        // SAFETY: a handle owned by `file`; `dacl` lives as long as `sd`.
        win32_status(unsafe {
            SetSecurityInfo(
                file.as_raw_handle() as HANDLE,
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                dacl,
                null_mut(),
            )
        })
    }

    fn win32_status(status: u32) -> io::Result<()> {
        match status {
            ERROR_SUCCESS => Ok(()),
            error => Err(io::Error::from_raw_os_error(error as i32)),
        }
    }

    /// Replaces `path`'s DACL with the one in `sddl` (a `D:P(…)` descriptor), inheritance off.
    pub fn set_dacl(path: &Path, sddl: &str) -> io::Result<()> {
        let sd = SecurityDescriptor::from_sddl(sddl)?;
        let dacl = sd.dacl()?;
        let name = wide(path.as_os_str());
        // SAFETY: `name` is NUL-terminated; `dacl` lives as long as `sd`.
        win32_status(unsafe {
            windows_sys::Win32::Security::Authorization::SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                dacl,
                null_mut(),
            )
        })
    }

    /// The broad groups (see [`BROAD`]) whose allow entries in `path`'s DACL include reading.
    pub fn broad_readers(path: &Path) -> io::Result<Vec<String>> {
        let name = wide(path.as_os_str());
        let mut dacl: *mut ACL = null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: `name` is NUL-terminated; `dacl` and `sd` are out pointers, `dacl` pointing
        // into `sd`, which is LocalAlloc'ed and freed in `readers_in`.
        let status = unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                &mut dacl,
                null_mut(),
                &mut sd,
            )
        };
        readers_in(status, dacl, sd)
    }

    /// [`broad_readers`] of an open file (its handle needs `READ_CONTROL`).
    pub fn broad_readers_of(file: &File) -> io::Result<Vec<String>> {
        let mut dacl: *mut ACL = null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: a handle owned by `file`; out pointers as in `broad_readers`.
        let status = unsafe {
            windows_sys::Win32::Security::Authorization::GetSecurityInfo(
                file.as_raw_handle() as HANDLE,
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                &mut dacl,
                null_mut(),
                &mut sd,
            )
        };
        readers_in(status, dacl, sd)
    }

    /// Reads the DACL a security query returned, then frees its descriptor.
    fn readers_in(
        status: u32,
        dacl: *mut ACL,
        sd: PSECURITY_DESCRIPTOR,
    ) -> io::Result<Vec<String>> {
        win32_status(status)?;
        let result = (|| {
            if dacl.is_null() {
                return Ok(vec!["everyone (the file has no DACL at all)".to_string()]);
            }
            let mut readers = Vec::new();
            // SAFETY: a valid ACL from the security query.
            let count = unsafe { (*dacl).AceCount };
            for index in 0..u32::from(count) {
                let mut ace: *mut core::ffi::c_void = null_mut();
                // SAFETY: index < AceCount.
                if unsafe { GetAce(dacl, index, &mut ace) } == 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: every ACE starts with an ACE_HEADER.
                let header = unsafe { &*ace.cast::<ACE_HEADER>() };
                if header.AceType != ACCESS_ALLOWED_ACE_TYPE {
                    continue;
                }
                // SAFETY: an ACCESS_ALLOWED_ACE per its type; its SID starts at SidStart.
                let allowed = unsafe { &*ace.cast::<ACCESS_ALLOWED_ACE>() };
                if allowed.Mask & (FILE_READ_DATA | GENERIC_READ | GENERIC_ALL) == 0 {
                    continue;
                }
                let sid = sid_string(std::ptr::addr_of!(allowed.SidStart) as PSID)?;
                if let Some((_, name)) = BROAD.iter().find(|(s, _)| *s == sid) {
                    readers.push((*name).to_string());
                }
            }
            Ok(readers)
        })();
        // SAFETY: LocalAlloc'ed by the security query, freed once.
        unsafe { LocalFree(sd) };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Under Wine, private by the mode Wine creates files with: `make test-windows` runs Wine
    /// with umask 077 (scripts/windows.sh).
    #[test]
    fn created_files_are_private_and_never_overwritten_when_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        create(&path, true).unwrap().write_all(b"x").unwrap();
        assert_eq!(exposure(&path).unwrap(), None);
        assert_eq!(
            create(&path, true).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        create(&path, false).unwrap().write_all(b"y").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"y");
        assert_eq!(exposure(&path).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_data_folder_others_can_read_is_made_private_and_a_missing_one_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("data");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = private_folder(&shared)
            .unwrap()
            .expect("it was readable by others");
        assert_eq!(before.who, "mode 755");
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Once private, nothing more to do.
        assert_eq!(private_folder(&shared).unwrap(), None);
        // A folder that does not exist yet is made, and private (whatever the umask).
        let fresh = dir.path().join("new").join("data");
        let made = private_folder(&fresh).unwrap();
        assert!(made.is_none() || made.is_some_and(|e| e.who.starts_with("mode")));
        assert_eq!(exposure(&fresh).unwrap(), None);
    }

    /// Under Wine, a folder made by the agent is private by the mode Wine creates it with
    /// (umask 077, scripts/windows.sh); on Windows by the DACL `private_folder` sets. Either
    /// way no broad group can read it afterwards.
    #[cfg(windows)]
    #[test]
    fn the_data_folder_is_private_to_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        private_folder(&data).unwrap();
        assert!(data.is_dir());
        assert_eq!(exposure(&data).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_others_is_exposed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let exposure = exposure(&path).unwrap().expect("group-readable");
        assert_eq!(exposure.who, "mode 640");
    }

    /// Under Wine 8 a file's DACL is emulated from its unix mode, and a DACL set through the
    /// API becomes a mode others can read: the DACL granting Everyone read set here is seen
    /// either way (on Windows as set, under Wine through the mode).
    #[cfg(windows)]
    #[test]
    fn a_file_whose_acl_lets_everyone_read_is_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        create(&path, true).unwrap().write_all(b"x").unwrap();
        assert_eq!(exposure(&path).unwrap(), None);
        let me = windows::current_user_sid().unwrap();
        windows::set_dacl(&path, &format!("D:P(A;;FA;;;{me})(A;;FR;;;WD)")).unwrap();
        let exposure = exposure(&path).unwrap().expect("Everyone can read it");
        assert!(exposure.who.contains("Everyone"), "{exposure}");
    }
}
