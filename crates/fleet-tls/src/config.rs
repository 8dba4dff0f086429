//! rustls configurations shared by central, onshi-sim and the edge agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} contains no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid trust anchors: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// ALPN for gRPC over HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for plain HTTPS (HTTP/1.1), offered after h2.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A certificate chain and its private key. The key is never printed.
pub struct Identity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.cert_chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    pub fn new(cert_chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self { cert_chain, key }
    }

    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_chain = load_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
            what: "a private key",
            path: key.to_path_buf(),
            source,
        })?;
        Ok(Self { cert_chain, key })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let read = |what, source| TlsError::Read {
            what,
            path: PathBuf::from("<memory>"),
            source,
        };
        let cert_chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read("certificates", e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| read("a private key", e))?;
        Ok(Self { cert_chain, key })
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.cert_chain[0]
    }

    /// Fails unless the leaf certificate is the private key's (and rustls can use the key).
    pub fn check_key_pair(&self) -> Result<(), TlsError> {
        certified(self).map(|_| ())
    }
}

/// Loads every certificate of a PEM file; an empty file is an error, not an empty trust store.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            what: "certificates",
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "certificates",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(anchors: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for anchor in anchors {
        store.add(anchor.clone())?;
    }
    Ok(Arc::new(store))
}

/// A server that speaks only TLS 1.3 and refuses any client without a certificate issued by
/// one of `client_roots`.
pub fn server_config(
    identity: &Identity,
    client_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(client_roots)?, provider.clone())
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// [`server_config`], taking the client certificates `trust` says, and refusing at the
/// handshake every one on `deny` (`refused` is told each time, for the audit trail).
pub fn server_config_with_deny_list(
    identity: &Identity,
    client_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    trust: crate::deny::Trust,
    deny: crate::deny::DenyList,
    refused: crate::deny::OnRefused,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let webpki =
        WebPkiClientVerifier::builder_with_provider(roots(client_roots)?, provider.clone())
            .build()?;
    let verifier = Arc::new(crate::deny::DenyingVerifier::with_trust(
        webpki, deny, refused, trust,
    ));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No session resumption: a resumed session skips the client certificate, and with it the
    // deny list. Agents hold one long stream, so a full handshake per connection costs little.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A server that speaks only TLS 1.3 and does not ask for a client certificate. For endpoints
/// that authenticate people another way (the dashboard's sessions), never for processes.
pub fn server_config_without_client_auth(
    identity: &Identity,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client that speaks only TLS 1.3, trusts only `server_roots` and presents `identity`.
/// Pass no ALPN for a config handed to hyper-rustls: it sets ALPN itself and panics if the
/// config already has one.
pub fn client_config(
    identity: Option<&Identity>,
    server_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(server_roots)?);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.cert_chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The client identity of a long-lived process whose certificate is renewed while it runs (the
/// edge agent): every new handshake presents the identity set last; connections already open
/// keep the one they were made with.
#[derive(Debug)]
pub struct SwappableIdentity(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl SwappableIdentity {
    pub fn new(identity: &Identity) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self(std::sync::RwLock::new(certified(identity)?))))
    }

    /// Presents `identity` from the next handshake on.
    pub fn replace(&self, identity: &Identity) -> Result<(), TlsError> {
        let key = certified(identity)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    /// The leaf certificate presented now.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).cert[0].clone()
    }
}

impl rustls::client::ResolvesClientCert for SwappableIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified(identity: &Identity) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let key = provider()
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    let certified = rustls::sign::CertifiedKey::new(identity.cert_chain.clone(), key);
    // A certificate that does not belong to the key would fail every handshake from now on.
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// Like [`client_config`], presenting whatever `identity` holds at each handshake.
pub fn client_config_swappable(
    identity: Arc<SwappableIdentity>,
    server_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(server_roots)?)
        .with_client_cert_resolver(identity);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
