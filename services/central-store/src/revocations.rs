//! Revoked certificates (migration 0010) and revoked sites (migration 0020): the deny list
//! every replica refuses at the handshake; and the renewals central signed, once per serial.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    pub sha256_fingerprint: String,
    pub reason: String,
    pub revoked_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

/// A fingerprint as the inventory shows it: 64 lowercase hex characters.
pub(crate) fn parse_fingerprint(text: &str) -> Result<[u8; 32], StoreError> {
    onshi_domain::hex::decode(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            StoreError::BadQuery(format!(
                "{text:?} is not a certificate fingerprint: expected the 64 lowercase hex \
                 characters of its SHA-256 (the sha256_fingerprint of /api/v1/certificates)"
            ))
        })
}

impl Store {
    /// Revokes the certificate with `fingerprint`; the revocation and who made it are audited.
    pub async fn revoke(
        &self,
        fingerprint: &str,
        reason: &str,
        by: &str,
    ) -> Result<[u8; 32], StoreError> {
        let bytes = parse_fingerprint(fingerprint)?;
        if reason.trim().is_empty() {
            return Err(StoreError::BadQuery("a revocation needs a reason".into()));
        }
        let hex = onshi_domain::hex::encode(&bytes);
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let new = tx
            .execute(
                "INSERT INTO revoked_certificates (sha256_fingerprint, reason, revoked_by)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&hex, &reason, &by],
            )
            .await?;
        if new > 0 {
            super::audit_admin(
                &tx,
                None,
                &format!("certificate {hex} revoked by {by}: {reason}"),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(bytes)
    }

    pub async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query(
                "SELECT sha256_fingerprint, reason, revoked_by, revoked_at
                 FROM revoked_certificates ORDER BY revoked_at DESC",
                &[],
            )
            .await?
            .iter()
            .map(|r| Revocation {
                sha256_fingerprint: r.get(0),
                reason: r.get(1),
                revoked_by: r.get(2),
                revoked_at: r.get(3),
            })
            .collect())
    }

    /// Every revoked fingerprint, for the handshake's deny list.
    pub async fn revoked_fingerprints(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        Ok(self
            .revocations()
            .await?
            .iter()
            .filter_map(|r| parse_fingerprint(&r.sha256_fingerprint).ok())
            .collect())
    }

    /// Revokes every agent certificate of `site` whose validity starts before `issued_before`
    /// (those a stolen key minted before now included); audited with who asked and why.
    pub async fn revoke_site(
        &self,
        site: &onshi_domain::site::SiteCode,
        issued_before: OffsetDateTime,
        reason: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::BadQuery(
                "サイトの失効には理由が必要です / revoking a site needs a reason".into(),
            ));
        }
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO site_revocations (site_code, issued_before, reason, revoked_by)
             VALUES ($1, $2, $3, $4)",
            &[&site.as_str(), &issued_before, &reason, &by],
        )
        .await?;
        let when = issued_before
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        super::audit_admin(
            &tx,
            Some(site.as_str()),
            &format!(
                "every agent certificate of site {site} issued before {when} revoked by {by}: {reason}"
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Each revoked site with the latest time its certificates must start after.
    pub async fn revoked_sites(&self) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query(
                "SELECT site_code, max(issued_before) AS issued_before
                 FROM site_revocations GROUP BY site_code",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get("site_code"), r.get("issued_before")))
            .collect())
    }

    /// Records that the certificate with serial `renewed_serial` was renewed into `issued`,
    /// with its audit row, in one transaction; false (and nothing written) when that serial
    /// was renewed before: central signs once per certificate.
    pub async fn record_renewal(
        &self,
        site: &onshi_domain::site::SiteCode,
        renewed_serial: &str,
        issued: &fleet_tls::identity::CertificateSummary,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let new = tx
            .execute(
                "INSERT INTO certificate_renewals
                     (renewed_serial, site_code, issued_serial, issued_fingerprint)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[
                    &renewed_serial.to_ascii_lowercase(),
                    &site.as_str(),
                    &issued.serial_hex.to_ascii_lowercase(),
                    &issued.sha256_fingerprint,
                ],
            )
            .await?;
        if new == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
             VALUES ('certificate_issued', $1, $1, $2)",
            &[&site.as_str(), &detail],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
