//! Who a peer is, read from its certificate.
//!
//! Naming convention of the fleet's certificates (written into them by [`crate::devpki`] and by
//! a real chain's enrollment, see `deploy/pki/README.md`):
//! - an agent: SAN URI `urn:onshi-fleet:site:<site code>` (the 10-digit institution code) and
//!   CN `site <site code>`; the URI is what central trusts, the CN is for people reading it;
//! - an operator (JSON API client): SAN URI `urn:onshi-fleet:operator:<name>`;
//! - a qualification terminal (onshi-sim's clients): SAN URI
//!   `urn:onshi-fleet:terminal:<institution code>:<terminal id>`. The real common CA's naming is
//!   not public (UNCONFIRMED); this is the simulator's convention.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

pub const SITE_URI_PREFIX: &str = "urn:onshi-fleet:site:";
pub const OPERATOR_URI_PREFIX: &str = "urn:onshi-fleet:operator:";
pub const TERMINAL_URI_PREFIX: &str = "urn:onshi-fleet:terminal:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("the peer certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("the peer certificate names no {0} (expected a SAN URI starting with {1})")]
    Missing(&'static str, &'static str),
    #[error("the peer certificate names more than one {0}")]
    Ambiguous(&'static str),
}

/// What a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerName {
    /// An edge agent speaking for one site (the raw site code; the caller parses it).
    Site(String),
    Operator(String),
    Terminal {
        institution_code: String,
        terminal_id: String,
    },
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))
}

/// Every URI subject alternative name of a certificate.
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, IdentityError> {
    let cert = parse(der)?;
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push((*uri).to_string());
            }
        }
    }
    Ok(uris)
}

fn single_with_prefix(
    der: &[u8],
    what: &'static str,
    prefix: &'static str,
) -> Result<String, IdentityError> {
    let mut found = uri_sans(der)?
        .into_iter()
        .filter_map(|uri| uri.strip_prefix(prefix).map(str::to_string));
    let first = found.next().ok_or(IdentityError::Missing(what, prefix))?;
    if found.next().is_some() {
        return Err(IdentityError::Ambiguous(what));
    }
    Ok(first)
}

/// The site an agent certificate speaks for.
pub fn site_of(der: &[u8]) -> Result<String, IdentityError> {
    single_with_prefix(der, "site", SITE_URI_PREFIX)
}

/// The operator name of a JSON API client certificate.
pub fn operator_of(der: &[u8]) -> Result<String, IdentityError> {
    single_with_prefix(der, "operator", OPERATOR_URI_PREFIX)
}

/// The institution code and terminal id of a qualification terminal certificate.
pub fn terminal_of(der: &[u8]) -> Result<(String, String), IdentityError> {
    let rest = single_with_prefix(der, "terminal", TERMINAL_URI_PREFIX)?;
    match rest.split_once(':') {
        Some((code, terminal)) if !code.is_empty() && !terminal.is_empty() => {
            Ok((code.to_string(), terminal.to_string()))
        }
        _ => Err(IdentityError::Missing(
            "terminal (institution code and terminal id)",
            TERMINAL_URI_PREFIX,
        )),
    }
}

/// The leaf of a presented chain, or an error naming its absence.
pub fn leaf<'a>(chain: Option<&'a [CertificateDer<'static>]>) -> Result<&'a [u8], IdentityError> {
    chain
        .and_then(|c| c.first())
        .map(|c| c.as_ref())
        .ok_or(IdentityError::NoCertificate)
}

/// What the certificate inventory reports about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub sha256_fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key_type: String,
    pub key_bits: u32,
    pub is_ca: bool,
}

impl CertificateSummary {
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let cert = parse(der)?;
        let (key_type, key_bits) = match cert.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) => ("RSA", rsa.key_size() as u32),
            Ok(PublicKey::EC(point)) => ("EC", point.key_size() as u32),
            Ok(PublicKey::DSA(_)) => ("DSA", 0),
            Ok(_) => ("other", 0),
            Err(_) => ("unknown", 0),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial_hex: cert.raw_serial_as_string().replace(':', ""),
            sha256_fingerprint: hex(digest.as_ref()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            key_type: key_type.to_string(),
            key_bits,
            is_ca: cert.is_ca(),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
