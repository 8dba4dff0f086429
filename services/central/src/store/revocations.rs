//! Revoked certificates (migration 0010): the deny list every replica refuses at the handshake.

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
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], StoreError> {
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
        let mut client = self.pool.get().await?;
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
            .pool
            .get()
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
}
