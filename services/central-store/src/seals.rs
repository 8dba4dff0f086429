//! Daily seals of each stream's verified chain head (`onshi_domain::seal`, migration 0007).
//!
//! The maintenance task calls [`Store::seal_streams`] at every alert tick; it seals a stream at
//! most once per Asia/Tokyo day, and only when the chain verifier has walked further than the
//! stream's last seal and knows the head there. Several replicas may call it at once: the
//! primary key (site, stream, day) keeps one seal per day, the other insert does nothing.

use onshi_domain::chain::{ChainHash, ChainWalk};
use onshi_domain::seal::Seal;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::audit::SignedSeal;
use crate::sealing::SealKey;

/// The Asia/Tokyo day of `at` (JST is UTC+9 all year).
pub fn tokyo_day(at: OffsetDateTime) -> time::Date {
    at.to_offset(time::macros::offset!(+9)).date()
}

impl Store {
    /// Seals every stream the verifier has walked beyond its last seal, once per day; returns
    /// how many seals were made.
    pub async fn seal_streams(
        &self,
        key: &SealKey,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let client = self.conn().await?;
        let day = tokyo_day(now);
        // Streams whose latest seal (if any) is from an earlier day.
        let candidates = client
            .query(
                "SELECT v.site_code, v.stream_id, v.walk FROM chain_verification v
                 WHERE NOT EXISTS (
                     SELECT 1 FROM seals s WHERE s.site_code = v.site_code
                       AND s.stream_id = v.stream_id AND s.day >= $1)",
                &[&day],
            )
            .await?;
        let mut made = 0;
        for row in candidates {
            let site_code: String = row.get(0);
            let stream_id: Uuid = row.get(1);
            let Ok(walk) = serde_json::from_value::<ChainWalk>(row.get(2)) else {
                continue;
            };
            let (Some(head), true) = (walk.head, walk.through > 0) else {
                continue; // the head is not known right now (after a gap): seal another day
            };
            let last = self
                .seals_where(&site_code, stream_id, "ORDER BY day DESC LIMIT 1")
                .await?;
            if last
                .first()
                .is_some_and(|l| l.seal.through_sequence >= walk.through)
            {
                continue; // nothing new since the last seal
            }
            let previous = last.first().map_or(ChainHash::GENESIS, |l| l.seal.hash());
            let seal = Seal {
                site_code,
                stream_id,
                day,
                through_sequence: walk.through,
                head,
                previous,
                // Whole seconds: the signed message names the time in seconds.
                sealed_at: now.replace_nanosecond(0).unwrap_or(now),
            };
            let signature = key.sign(&seal);
            made += client
                .execute(
                    "INSERT INTO seals (site_code, stream_id, day, through_sequence, head, previous,
                                        sealed_at, signature, public_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT DO NOTHING",
                    &[
                        &seal.site_code,
                        &seal.stream_id,
                        &seal.day,
                        &(seal.through_sequence as i64),
                        &seal.head.as_bytes().as_slice(),
                        &seal.previous.as_bytes().as_slice(),
                        &seal.sealed_at,
                        &signature,
                        &key.public_key(),
                    ],
                )
                .await?;
        }
        if made > 0 {
            tracing::info!(seals = made, %day, "streams sealed");
        }
        Ok(made)
    }

    /// The seals of one stream, oldest first.
    pub async fn seals(
        &self,
        site_code: &str,
        stream: Uuid,
    ) -> Result<Vec<SignedSeal>, StoreError> {
        self.seals_where(site_code, stream, "ORDER BY day").await
    }

    async fn seals_where(
        &self,
        site_code: &str,
        stream: Uuid,
        order: &'static str,
    ) -> Result<Vec<SignedSeal>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT site_code, stream_id, day, through_sequence, head, previous, sealed_at,
                            signature, public_key
                     FROM seals WHERE site_code = $1 AND stream_id = $2 {order}"
                ),
                &[&site_code, &stream],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(SignedSeal {
                    seal: Seal {
                        site_code: r.get(0),
                        stream_id: r.get(1),
                        day: r.get(2),
                        through_sequence: r.get::<_, i64>(3).max(0) as u64,
                        head: ChainHash::from_slice(&r.get::<_, Vec<u8>>(4)).ok()?,
                        previous: ChainHash::from_slice(&r.get::<_, Vec<u8>>(5)).ok()?,
                        sealed_at: r.get(6),
                    },
                    signature: onshi_domain::hex::encode(&r.get::<_, Vec<u8>>(7)),
                    public_key: onshi_domain::hex::encode(&r.get::<_, Vec<u8>>(8)),
                })
            })
            .collect())
    }
}
