//! Revoked client certificates, refused at the handshake.
//!
//! The chain CA's signature says who a client is; the deny list says who no longer may connect.
//! [`DenyList`] holds SHA-256 fingerprints of revoked leaf certificates; [`DenyingVerifier`]
//! wraps the WebPKI client verifier and refuses a listed leaf with the TLS "certificate
//! revoked" alert, so a revoked agent learns why at once and nothing of it reaches the
//! application. Who keeps the list current (central, from its database) is not this crate's
//! business; each refusal is reported through the `refused` callback (for the audit trail).

use std::collections::HashSet;
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

/// Fingerprints of revoked certificates; cheap to clone, shared with whoever updates it.
#[derive(Debug, Clone, Default)]
pub struct DenyList(Arc<RwLock<HashSet<[u8; 32]>>>);

impl DenyList {
    /// Replaces the whole list (a refresh from the store of record).
    pub fn replace(&self, fingerprints: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut set) = self.0.write() {
            *set = fingerprints.into_iter().collect();
        }
    }

    pub fn insert(&self, fingerprint: [u8; 32]) {
        if let Ok(mut set) = self.0.write() {
            set.insert(fingerprint);
        }
    }

    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.0.read().is_ok_and(|set| set.contains(fingerprint))
    }
}

/// What a refusal reports: the leaf's fingerprint.
pub type OnRefused = Arc<dyn Fn([u8; 32]) + Send + Sync>;

/// The WebPKI client verifier, then the deny list.
pub struct DenyingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    deny: DenyList,
    refused: OnRefused,
}

impl std::fmt::Debug for DenyingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyingVerifier").finish_non_exhaustive()
    }
}

impl DenyingVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, deny: DenyList, refused: OnRefused) -> Self {
        Self {
            inner,
            deny,
            refused,
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let print = fingerprint(end_entity);
        if self.deny.contains(&print) {
            (self.refused)(print);
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
