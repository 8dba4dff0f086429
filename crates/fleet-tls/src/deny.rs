//! Revoked client certificates, refused at the handshake.
//!
//! The chain CA's signature says who a client is; the deny list says who no longer may connect.
//! [`DenyList`] holds SHA-256 fingerprints of revoked leaf certificates; [`DenyingVerifier`]
//! wraps the WebPKI client verifier and refuses a listed leaf with the TLS "certificate
//! revoked" alert, so a revoked agent learns why at once and nothing of it reaches the
//! application. Who keeps the list current (central, from its database) is not this crate's
//! business; each refusal is reported through the `refused` callback (for the audit trail).
//!
//! Besides single certificates, a whole site can be revoked: every agent certificate naming
//! the site whose validity starts (notBefore) before a time is refused, so certificates a
//! stolen key had minted before the revocation are refused with the one the operator knew of.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The SHA-256 fingerprint of a certificate (DER).
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Fingerprints of revoked certificates and revoked sites; cheap to clone, shared with whoever
/// updates it.
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    fingerprints: Arc<RwLock<HashSet<[u8; 32]>>>,
    /// Site code → certificates of the site starting before this time are refused.
    sites: Arc<RwLock<HashMap<String, time::OffsetDateTime>>>,
}

impl DenyList {
    /// Replaces the whole list of fingerprints (a refresh from the store of record).
    pub fn replace(&self, fingerprints: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut set) = self.fingerprints.write() {
            *set = fingerprints.into_iter().collect();
        }
    }

    pub fn insert(&self, fingerprint: [u8; 32]) {
        if let Ok(mut set) = self.fingerprints.write() {
            set.insert(fingerprint);
        }
    }

    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.fingerprints
            .read()
            .is_ok_and(|set| set.contains(fingerprint))
    }

    /// Replaces the whole list of revoked sites (site code, issued-before time).
    pub fn replace_sites(&self, sites: impl IntoIterator<Item = (String, time::OffsetDateTime)>) {
        if let Ok(mut map) = self.sites.write() {
            *map = sites.into_iter().collect();
        }
    }

    /// Refuses every certificate of `site` starting before `before` (a later time for the
    /// same site wins; an earlier one changes nothing).
    pub fn revoke_site(&self, site: &str, before: time::OffsetDateTime) {
        if let Ok(mut map) = self.sites.write() {
            let at = map.entry(site.to_string()).or_insert(before);
            *at = (*at).max(before);
        }
    }

    /// Whether an agent certificate of `site` valid from `not_before` is refused by a revocation
    /// of its site.
    pub fn site_refuses(&self, site: &str, not_before: time::OffsetDateTime) -> bool {
        self.sites
            .read()
            .is_ok_and(|map| map.get(site).is_some_and(|before| not_before < *before))
    }

    /// Whether the certificate `der` is refused: by its fingerprint, or (an agent's) by a
    /// revocation of its site.
    pub fn refuses(&self, der: &CertificateDer<'_>) -> bool {
        if self.contains(&fingerprint(der)) {
            return true;
        }
        let Ok(site) = crate::identity::site_of(der) else {
            return false;
        };
        crate::identity::CertificateSummary::from_der(der)
            .is_ok_and(|summary| self.site_refuses(&site, summary.not_before))
    }
}

/// What a refusal reports: the leaf's fingerprint.
pub type OnRefused = Arc<dyn Fn([u8; 32]) + Send + Sync>;

/// Which client certificates a listener takes before the deny list is asked.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Any chain to the roots (intermediates as the client sends them).
    #[default]
    Chains,
    /// Only certificates the roots issued themselves: intermediates the client sends are
    /// ignored, so nothing a sub-CA signed passes (the operator listener, whose root also
    /// signed the agent sub-CA).
    DirectlyIssued,
    /// Chains to the roots, and this one certificate besides (byte for byte; the handshake
    /// still proves its key): central's own, for its health probe on the agent listener.
    ChainsAnd(CertificateDer<'static>),
}

/// The WebPKI client verifier, then the deny list.
pub struct DenyingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    deny: DenyList,
    refused: OnRefused,
    trust: Trust,
}

impl std::fmt::Debug for DenyingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyingVerifier").finish_non_exhaustive()
    }
}

impl DenyingVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, deny: DenyList, refused: OnRefused) -> Self {
        Self::with_trust(inner, deny, refused, Trust::Chains)
    }

    pub fn with_trust(
        inner: Arc<dyn ClientCertVerifier>,
        deny: DenyList,
        refused: OnRefused,
        trust: Trust,
    ) -> Self {
        Self {
            inner,
            deny,
            refused,
            trust,
        }
    }
}

impl ClientCertVerifier for DenyingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match &self.trust {
            Trust::Chains => self
                .inner
                .verify_client_cert(end_entity, intermediates, now)?,
            Trust::DirectlyIssued => self.inner.verify_client_cert(end_entity, &[], now)?,
            Trust::ChainsAnd(own) if own.as_ref() == end_entity.as_ref() => {
                ClientCertVerified::assertion()
            }
            Trust::ChainsAnd(_) => self
                .inner
                .verify_client_cert(end_entity, intermediates, now)?,
        };
        if self.deny.refuses(end_entity) {
            (self.refused)(fingerprint(end_entity));
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}
