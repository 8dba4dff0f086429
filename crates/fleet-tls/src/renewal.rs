//! Agent certificate renewal: the agent's certificate signing request and central's signature.
//!
//! The agent makes a new key pair for every renewal (the old key is never reused) and sends only
//! a CSR over its authenticated stream. Central signs, with the chain CA, a certificate naming
//! the site of the certificate the session was opened with, whatever the CSR asks for: the CSR
//! proves possession of the new key and nothing else. Short lifetimes are then safe: a site
//! whose agent stops renewing drops out within one lifetime, revoked or not.

use std::path::Path;

use rcgen::{CertificateParams, CertificateSigningRequestParams, Issuer, KeyPair};
use rustls_pki_types::CertificateSigningRequestDer;
use time::Duration;

use crate::devpki::{agent_leaf, set_validity};
use crate::identity::CertificateSummary;

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the chain CA certificate or key is not usable: {0}")]
    Ca(rcgen::Error),
    #[error(
        "the certificate signing request is not valid (unreadable, or not signed by its key): {0}"
    )]
    BadRequest(rcgen::Error),
    #[error("the certificate could not be made: {0}")]
    Generate(rcgen::Error),
    #[error("the new certificate cannot be read back: {0}")]
    Summary(#[from] crate::identity::IdentityError),
}

/// When a renewal of `current` may be signed: once a third of its lifetime is left. Agents
/// renew from then on by default, and central signs no earlier, so a stolen key cannot renew
/// a fresh certificate (and, once per serial, not twice the same one).
pub fn window_opens(current: &CertificateSummary) -> time::OffsetDateTime {
    current.not_after - (current.not_after - current.not_before) / 3
}

/// A new key pair and the CSR for it. The key stays with the agent.
pub struct RenewalRequest {
    pub key_pem: String,
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for RenewalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalRequest")
            .field("key", &"<redacted>")
            .field("csr_bytes", &self.csr_der.len())
            .finish()
    }
}

/// Makes a new ECDSA P-256 key and a CSR for `site`'s agent certificate.
pub fn request(site: &str) -> Result<RenewalRequest, RenewalError> {
    let key = KeyPair::generate().map_err(RenewalError::Generate)?;
    let mut params = agent_leaf(site).map_err(RenewalError::Generate)?;
    // Central picks the serial (and the validity, which a CSR does not carry).
    params.serial_number = None;
    let csr = params
        .serialize_request(&key)
        .map_err(RenewalError::Generate)?;
    Ok(RenewalRequest {
        key_pem: key.serialize_pem(),
        csr_der: csr.der().to_vec(),
    })
}

/// The chain CA as central holds it to sign agent renewals.
pub struct AgentCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for AgentCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCa { key: <redacted> }")
    }
}

/// A certificate central issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf, then the chain CA.
    pub chain_pem: String,
    pub summary: CertificateSummary,
}

impl AgentCa {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, RenewalError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| RenewalError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let ca_pem = read(cert)?;
        let key = KeyPair::from_pem(&read(key)?).map_err(RenewalError::Ca)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(RenewalError::Ca)?;
        Ok(Self { issuer, ca_pem })
    }

    /// Signs a certificate for `site` (taken from the session's certificate, never from the
    /// CSR) over the CSR's key, valid from an hour ago for `lifetime`.
    pub fn sign(
        &self,
        site: &str,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<Issued, RenewalError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(RenewalError::BadRequest)?;
        let mut params: CertificateParams = agent_leaf(site).map_err(RenewalError::Generate)?;
        set_validity(&mut params, lifetime);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(RenewalError::Generate)?;
        let summary = CertificateSummary::from_der(cert.der())?;
        let mut chain_pem = cert.pem();
        chain_pem.push_str(&self.ca_pem);
        Ok(Issued { chain_pem, summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::site_of;

    fn ca(dir: &Path) -> AgentCa {
        crate::devpki::init(dir, &Default::default()).unwrap();
        AgentCa::load(&dir.join("agent-ca.pem"), &dir.join("agent-ca.key")).unwrap()
    }

    #[test]
    fn the_issued_certificate_names_the_session_s_site_over_the_request_s_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        // The CSR asks for another site: the session's site is what gets signed.
        let request = request("1311234566").unwrap();
        let issued = ca
            .sign("2711111111", &request.csr_der, Duration::days(30))
            .unwrap();
        let identity = crate::Identity::from_pem(&issued.chain_pem, &request.key_pem).unwrap();
        assert_eq!(site_of(identity.leaf()).unwrap(), "2711111111");
        assert_eq!(identity.cert_chain.len(), 2, "leaf then the agent CA");
        // The key pair matches: rustls accepts the pair as a client identity.
        crate::config::SwappableIdentity::new(&identity).unwrap();
        let left = issued.summary.not_after - time::OffsetDateTime::now_utc();
        assert!(left > Duration::days(29) && left <= Duration::days(30));
        assert!(!issued.summary.is_ca);
    }

    #[test]
    fn a_request_not_signed_by_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        let mut csr = request("1311234566").unwrap().csr_der;
        let last = csr.len() - 1;
        csr[last] ^= 0x01; // the signature's last byte
        let error = ca.sign("1311234566", &csr, Duration::days(30)).unwrap_err();
        assert!(matches!(error, RenewalError::BadRequest(_)), "{error}");
        assert!(matches!(
            ca.sign("1311234566", b"not a csr", Duration::days(30)),
            Err(RenewalError::BadRequest(_))
        ));
    }

    #[test]
    fn a_swapped_identity_is_presented_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        let first = request("1311234566").unwrap();
        let second = request("1311234566").unwrap();
        let issue = |r: &RenewalRequest| {
            let issued = ca
                .sign("1311234566", &r.csr_der, Duration::days(1))
                .unwrap();
            crate::Identity::from_pem(&issued.chain_pem, &r.key_pem).unwrap()
        };
        let (one, two) = (issue(&first), issue(&second));
        let swappable = crate::config::SwappableIdentity::new(&one).unwrap();
        assert_eq!(swappable.leaf(), *one.leaf());
        swappable.replace(&two).unwrap();
        assert_eq!(swappable.leaf(), *two.leaf());
        // A certificate with someone else's key is refused and changes nothing.
        let mismatched = crate::Identity::from_pem(
            &ca.sign("1311234566", &first.csr_der, Duration::days(1))
                .unwrap()
                .chain_pem,
            &second.key_pem,
        )
        .unwrap();
        assert!(swappable.replace(&mismatched).is_err());
        assert_eq!(swappable.leaf(), *two.leaf());
    }
}
