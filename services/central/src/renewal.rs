//! Signing agents' certificate renewals (`RenewCertificate` on the uplink) with the chain CA.
//!
//! Central signs only for a session's own site, taken from the certificate the session was
//! opened with, and only once per session; every issuance and refusal is a `security_events`
//! row (`certificate_issued`, `certificate_renewal_refused`) naming the serial, fingerprint and
//! expiry, so the audit log shows each agent identity the chain ever issued.

use std::path::PathBuf;
use std::sync::Arc;

use fleet_tls::renewal::{AgentCa, RenewalError};
use onshi_domain::site::SiteCode;
use proto::fleet::v1 as pb;

use crate::store::Store;

/// Where the chain CA that signs renewals is, and how long what it signs is valid.
#[derive(Debug, Clone)]
pub struct RenewalSettings {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub lifetime: time::Duration,
}

/// The CA and the lifetime of what it signs; `None`: renewals are refused.
#[derive(Debug, Clone)]
pub struct Renewals(Option<Arc<(AgentCa, time::Duration)>>);

impl Renewals {
    pub fn load(settings: &RenewalSettings) -> Result<Self, RenewalError> {
        let ca = AgentCa::load(&settings.ca_cert, &settings.ca_key)?;
        Ok(Self(Some(Arc::new((ca, settings.lifetime)))))
    }

    /// Every request is answered with a refusal that says what to do instead.
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Signs (or refuses) one request of `site`'s session, and audits the outcome.
    pub async fn answer(
        &self,
        store: &Store,
        site: &SiteCode,
        request: &pb::RenewCertificate,
    ) -> pb::CertificateRenewal {
        let signed = match self.0.as_deref() {
            None => Err(
                "central does not sign agent certificates (no --agent-ca-key); renew this \
                 site's certificate through the chain's PKI process"
                    .to_string(),
            ),
            Some((ca, lifetime)) => ca
                .sign(site.as_str(), &request.csr_der, *lifetime)
                .map_err(|e| e.to_string()),
        };
        let (kind, detail, answer) = match signed {
            Ok(issued) => {
                let s = &issued.summary;
                let detail = format!(
                    "agent certificate for site {site} issued: serial {}, sha256 {}, valid until {}",
                    s.serial_hex,
                    s.sha256_fingerprint,
                    s.not_after
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                );
                tracing::info!(site = %site, serial = %s.serial_hex, "agent certificate renewed");
                (
                    "certificate_issued",
                    detail,
                    pb::CertificateRenewal {
                        certificate_chain_pem: issued.chain_pem,
                        refused: String::new(),
                    },
                )
            }
            Err(reason) => {
                tracing::warn!(site = %site, %reason, "agent certificate renewal refused");
                (
                    "certificate_renewal_refused",
                    format!("renewal for site {site} refused: {reason}"),
                    pb::CertificateRenewal {
                        certificate_chain_pem: String::new(),
                        refused: reason,
                    },
                )
            }
        };
        if let Err(error) = store
            .record_security_event(kind, Some(site.as_str()), Some(site.as_str()), &detail)
            .await
        {
            // An issuance central cannot record is not handed out.
            tracing::error!(%error, "the renewal could not be audited; not answering it");
            return pb::CertificateRenewal {
                certificate_chain_pem: String::new(),
                refused: "central could not record the renewal; try again later".into(),
            };
        }
        answer
    }
}
