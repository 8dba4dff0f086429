//! The agent's own certificate for central, and its renewal over the uplink.
//!
//! When less than `renew_before` (default: a third of the certificate's lifetime) is left, the
//! uplink sends central a CSR for a key pair made for this renewal; central answers with a
//! certificate for the same site. [`AgentIdentity::install`] checks it (same site, matches the
//! new key, valid now), writes it over the configured `cert`/`key` files and presents it from
//! the next handshake on; the uplink then reconnects. Events are not at risk at any point:
//! they stay in the outbox until central acknowledges them, whichever certificate carried them.
//!
//! The pair is replaced crash-safely with two files written beside the configured ones and
//! two renames: `<key>.next` and `<cert>.next` are written and fsynced first, then the key is
//! renamed, then the certificate. [`AgentIdentity::load`] finishes or discards a replacement
//! a crash interrupted, so the agent never starts with a certificate that is not its key's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_tls::config::{Identity, SwappableIdentity};
use fleet_tls::identity::CertificateSummary;
use fleet_tls::renewal::RenewalRequest;
use onshi_domain::site::SiteCode;
use time::{Duration, OffsetDateTime};

use crate::folder::fsio::sync_dir;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent's TLS key {path} can be read by other users ({exposure})")]
    Exposed {
        path: PathBuf,
        exposure: crate::owner_only::Exposure,
    },
    #[error("the agent certificate: {0}")]
    Tls(#[from] fleet_tls::TlsError),
    #[error("the agent certificate cannot be read: {0}")]
    Certificate(#[from] fleet_tls::identity::IdentityError),
    #[error(
        "central sent a certificate for site {got}, not this site ({want}); keeping the current one"
    )]
    OtherSite { want: String, got: String },
    #[error(
        "central sent a certificate that is not valid now (from {not_before} until {not_after}); keeping the current one"
    )]
    NotValidNow {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
pub struct AgentIdentity {
    cert: PathBuf,
    key: PathBuf,
    site: SiteCode,
    /// Renew when less than this is left; `None`: a third of the certificate's lifetime.
    renew_before: Option<Duration>,
    presented: Arc<SwappableIdentity>,
}

impl AgentIdentity {
    /// Loads the pair from `cert` and `key`, first finishing (or discarding) a replacement a
    /// crash interrupted.
    pub fn load(
        cert: &Path,
        key: &Path,
        site: SiteCode,
        renew_before: Option<Duration>,
    ) -> Result<Self, IdentityError> {
        recover(cert, key)?;
        if let Some(exposure) = crate::owner_only::exposure(key).map_err(io(key))? {
            return Err(IdentityError::Exposed {
                path: key.to_path_buf(),
                exposure,
            });
        }
        let identity = Identity::from_pem_files(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            site,
            renew_before,
            presented: SwappableIdentity::new(&identity)?,
        })
    }

    /// What the TLS client presents (the identity installed last).
    pub fn presented(&self) -> Arc<SwappableIdentity> {
        self.presented.clone()
    }

    /// The certificate presented now.
    pub fn current(&self) -> Result<CertificateSummary, IdentityError> {
        Ok(CertificateSummary::from_der(&self.presented.leaf())?)
    }

    /// Whether the certificate presented now should be renewed at `now`.
    pub fn due(&self, now: OffsetDateTime) -> Result<bool, IdentityError> {
        let current = self.current()?;
        Ok(match self.renew_before {
            Some(margin) => current.not_after - now <= margin,
            // Central's own rule: it signs no earlier.
            None => now >= fleet_tls::renewal::window_opens(&current),
        })
    }

    /// Whether the files can be replaced here (the folder is writable): asked before a CSR is
    /// sent, so that central does not issue a certificate the agent would have to throw away.
    pub fn writable(&self) -> Result<(), IdentityError> {
        let probe = next_path(&self.cert, "probe");
        drop(crate::owner_only::create(&probe, false).map_err(io(&probe))?);
        fs::remove_file(&probe).map_err(io(&probe))
    }

    /// Checks central's answer to `request`, replaces the files and presents the new
    /// certificate from the next handshake on. On error nothing changed.
    pub fn install(
        &self,
        request: RenewalRequest,
        chain_pem: &str,
        now: OffsetDateTime,
    ) -> Result<CertificateSummary, IdentityError> {
        let identity = Identity::from_pem(chain_pem, &request.key_pem)?;
        let site = fleet_tls::identity::site_of(identity.leaf())?;
        if site != self.site.as_str() {
            return Err(IdentityError::OtherSite {
                want: self.site.to_string(),
                got: site,
            });
        }
        let summary = CertificateSummary::from_der(identity.leaf())?;
        if !(summary.not_before <= now && now < summary.not_after) {
            return Err(IdentityError::NotValidNow {
                not_before: summary.not_before,
                not_after: summary.not_after,
            });
        }
        identity.check_key_pair()?;

        let (key_next, cert_next) = (next_path(&self.key, "next"), next_path(&self.cert, "next"));
        write_private(&key_next, request.key_pem.as_bytes())?;
        write_private(&cert_next, chain_pem.as_bytes())?;
        rename(&key_next, &self.key)?;
        rename(&cert_next, &self.cert)?;
        self.presented.replace(&identity)?;
        Ok(summary)
    }
}

/// `<file>.<suffix>` beside `file`.
fn next_path(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    PathBuf::from(name)
}

/// Finishes a replacement cut short by a crash (see the module documentation).
fn recover(cert: &Path, key: &Path) -> Result<(), IdentityError> {
    let (key_next, cert_next) = (next_path(key, "next"), next_path(cert, "next"));
    match (key_next.exists(), cert_next.exists()) {
        // Both written, nothing renamed yet: the new pair is whole, take it.
        (true, true) => {
            rename(&key_next, key)?;
            rename(&cert_next, cert)?;
            tracing::warn!("finished replacing the agent certificate a crash interrupted");
        }
        // The key was renamed, then the crash: the certificate must follow it.
        (false, true) => {
            rename(&cert_next, cert)?;
            tracing::warn!("finished replacing the agent certificate a crash interrupted");
        }
        // The certificate never arrived whole: the old pair is intact, the new key is useless.
        (true, false) => fs::remove_file(&key_next).map_err(io(&key_next))?,
        (false, false) => {}
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let mut file = crate::owner_only::create(path, false).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    fs::rename(from, to).map_err(io(to))?;
    sync_dir(to.parent().unwrap_or(Path::new("."))).map_err(io(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "1311234566";

    struct Pki {
        dir: tempfile::TempDir,
        ca: fleet_tls::renewal::AgentCa,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let spec = fleet_tls::devpki::DevPkiSpec {
                sites: vec![SITE.into(), "2711111111".into()],
                ..Default::default()
            };
            fleet_tls::devpki::init(dir.path(), &spec).unwrap();
            let ca = fleet_tls::renewal::AgentCa::load(
                &dir.path().join("agent-ca.pem"),
                &dir.path().join("agent-ca.key"),
            )
            .unwrap();
            Self { dir, ca }
        }

        fn identity(&self, renew_before: Option<Duration>) -> AgentIdentity {
            let (cert, key) = fleet_tls::devpki::DevPki::at(self.dir.path()).agent(SITE);
            AgentIdentity::load(&cert, &key, SiteCode::parse(SITE).unwrap(), renew_before).unwrap()
        }

        fn answer(&self, site: &str) -> (RenewalRequest, String) {
            let request = fleet_tls::renewal::request(SITE).unwrap();
            let issued = self
                .ca
                .sign(site, &request.csr_der, Duration::days(30))
                .unwrap();
            (request, issued.chain_pem)
        }
    }

    #[test]
    fn a_third_of_the_lifetime_left_is_due_unless_configured_otherwise() {
        let pki = Pki::new();
        let identity = pki.identity(None);
        let now = OffsetDateTime::now_utc();
        // The dev certificate lives a year: not due now, due in ten months.
        assert!(!identity.due(now).unwrap());
        assert!(identity.due(now + Duration::days(300)).unwrap());
        let eager = pki.identity(Some(Duration::days(400)));
        assert!(eager.due(now).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn a_tls_key_other_users_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let pki = Pki::new();
        let (cert, key) = fleet_tls::devpki::DevPki::at(pki.dir.path()).agent(SITE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let refused = AgentIdentity::load(&cert, &key, SiteCode::parse(SITE).unwrap(), None);
        let message = refused.expect_err("a readable key is refused").to_string();
        assert!(
            message.contains("mode 644") && message.contains("chmod 600"),
            "{message}"
        );
    }

    #[test]
    fn an_installed_certificate_replaces_the_files_and_is_presented() {
        let pki = Pki::new();
        let identity = pki.identity(None);
        let before = identity.current().unwrap();
        let (request, chain) = pki.answer(SITE);
        let installed = identity
            .install(request, &chain, OffsetDateTime::now_utc())
            .unwrap();
        assert_ne!(installed.serial_hex, before.serial_hex);
        assert_eq!(identity.current().unwrap(), installed);
        // What a restart loads is the new pair.
        let reloaded = pki.identity(None);
        assert_eq!(reloaded.current().unwrap(), installed);
        let key = fleet_tls::devpki::DevPki::at(pki.dir.path()).agent(SITE).1;
        assert_eq!(crate::owner_only::exposure(&key).unwrap(), None);
        #[cfg(unix)]
        {
            let mode = fs::metadata(key).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_certificate_for_another_site_or_another_key_changes_nothing() {
        let pki = Pki::new();
        let identity = pki.identity(None);
        let before = identity.current().unwrap();
        let (request, chain) = pki.answer("2711111111");
        let error = identity
            .install(request, &chain, OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(matches!(error, IdentityError::OtherSite { .. }), "{error}");
        let (_, chain) = pki.answer(SITE);
        let other_key = fleet_tls::renewal::request(SITE).unwrap();
        assert!(
            identity
                .install(other_key, &chain, OffsetDateTime::now_utc())
                .is_err()
        );
        assert_eq!(identity.current().unwrap(), before);
        assert_eq!(pki.identity(None).current().unwrap(), before);
    }

    #[test]
    fn a_replacement_cut_short_by_a_crash_is_finished_or_discarded_at_load() {
        let pki = Pki::new();
        let (cert, key) = fleet_tls::devpki::DevPki::at(pki.dir.path()).agent(SITE);
        let old = pki.identity(None).current().unwrap();
        // Crash after both files were written: the new pair is taken.
        let (request, chain) = pki.answer(SITE);
        write_private(&next_path(&key, "next"), request.key_pem.as_bytes()).unwrap();
        write_private(&next_path(&cert, "next"), chain.as_bytes()).unwrap();
        let taken = pki.identity(None).current().unwrap();
        assert_ne!(taken.serial_hex, old.serial_hex);
        // Crash after the key's rename: the certificate follows it.
        let (request, chain) = pki.answer(SITE);
        write_private(&key, request.key_pem.as_bytes()).unwrap();
        write_private(&next_path(&cert, "next"), chain.as_bytes()).unwrap();
        let followed = pki.identity(None).current().unwrap();
        assert_ne!(followed.serial_hex, taken.serial_hex);
        // Crash before the certificate was written: the old pair stays, the key goes.
        let request = fleet_tls::renewal::request(SITE).unwrap();
        write_private(&next_path(&key, "next"), request.key_pem.as_bytes()).unwrap();
        assert_eq!(pki.identity(None).current().unwrap(), followed);
        assert!(!next_path(&key, "next").exists());
    }
}
