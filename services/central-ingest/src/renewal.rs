//! Signing agents' certificate renewals (`RenewCertificate` on the uplink) with the chain CA.
//!
//! Central signs only for a session's own site, taken from the certificate the session was
//! opened with, only inside that certificate's renewal window (a third of its lifetime left,
//! `fleet_tls::renewal::window_opens`) and only once per certificate serial (the
//! `certificate_renewals` table's key), so one stolen agent key yields at most one more
//! certificate, and none while the stolen one is fresh. The CA is the agent sub-CA: it cannot
//! sign anything the operator listener takes. Every issuance and refusal is a
//! `security_events` row (`certificate_issued`, `certificate_renewal_refused`) naming the
//! serial, fingerprint and expiry, so the audit log shows each agent identity the chain ever
//! issued.

use std::path::PathBuf;
use std::sync::Arc;

use fleet_tls::identity::CertificateSummary;
use fleet_tls::renewal::{AgentCa, RenewalError};
use onshi_domain::site::SiteCode;
use proto::fleet::v1 as pb;

use central_store::Store;

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

    /// Signs (or refuses) one request of `site`'s session, opened with `current`, and audits
    /// the outcome.
    pub async fn answer(
        &self,
        store: &Store,
        site: &SiteCode,
        current: Option<&CertificateSummary>,
        request: &pb::RenewCertificate,
    ) -> pb::CertificateRenewal {
        let signed = match (self.0.as_deref(), current) {
            (None, _) => Err(
                "central does not sign agent certificates (no --agent-ca-key); renew this \
                 site's certificate through the chain's PKI process"
                    .to_string(),
            ),
            (Some(_), None) => Err("the session's certificate could not be read".to_string()),
            (Some((ca, lifetime)), Some(current)) => {
                let opens = fleet_tls::renewal::window_opens(current);
                if time::OffsetDateTime::now_utc() < opens {
                    Err(format!(
                        "証明書の更新はまだできません / not yet due: central renews a certificate \
                         once a third of its lifetime is left; certificate {} may be renewed from {}",
                        current.serial_hex,
                        rfc3339(opens)
                    ))
                } else {
                    ca.sign(site.as_str(), &request.csr_der, *lifetime)
                        .map(|issued| (issued, current))
                        .map_err(|e| e.to_string())
                }
            }
        };
        let (issued, current) = match signed {
            Ok(signed) => signed,
            Err(reason) => return self.refuse(store, site, reason).await,
        };
        let s = &issued.summary;
        let detail = format!(
            "agent certificate for site {site} issued: serial {}, sha256 {}, valid until {}, \
             renewing serial {}",
            s.serial_hex,
            s.sha256_fingerprint,
            rfc3339(s.not_after),
            current.serial_hex
        );
        match store
            .record_renewal(site, &current.serial_hex, s, &detail)
            .await
        {
            Ok(true) => {
                tracing::info!(site = %site, serial = %s.serial_hex, "agent certificate renewed");
                pb::CertificateRenewal {
                    certificate_chain_pem: issued.chain_pem,
                    refused: String::new(),
                }
            }
            Ok(false) => {
                // Signed but never handed out: the serial was renewed before.
                let reason = format!(
                    "この証明書は更新済みです / certificate {} was renewed before; central \
                     renews each certificate once. Use the certificate issued then, or have \
                     the chain's PKI process issue a new one",
                    current.serial_hex
                );
                self.refuse(store, site, reason).await
            }
            Err(error) => {
                // An issuance central cannot record is not handed out.
                tracing::error!(%error, "the renewal could not be recorded; not answering it");
                pb::CertificateRenewal {
                    certificate_chain_pem: String::new(),
                    refused: "central could not record the renewal; try again later".into(),
                }
            }
        }
    }

    /// Refuses with `reason`, audited.
    async fn refuse(
        &self,
        store: &Store,
        site: &SiteCode,
        reason: String,
    ) -> pb::CertificateRenewal {
        tracing::warn!(site = %site, %reason, "agent certificate renewal refused");
        let detail = format!("renewal for site {site} refused: {reason}");
        if let Err(error) = store
            .record_security_event(
                "certificate_renewal_refused",
                Some(site.as_str()),
                Some(site.as_str()),
                &detail,
            )
            .await
        {
            tracing::error!(%error, "a renewal refusal could not be audited");
        }
        pb::CertificateRenewal {
            certificate_chain_pem: String::new(),
            refused: reason,
        }
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
