//! Central's re-check of the information views agents allowed (`onshi_domain::access::recheck`,
//! migration 0008): off the ingest path, by arrival, from a stored position; what fails is a
//! violation row and an `access_violation` alert.
//!
//! A view is checked with the consents central holds for the same patient at the same site in
//! the 24 hours before it. Both come from the same agent stream in sequence order, and the
//! re-check only reads views that arrived, so a consent recorded before its view has arrived
//! with it or before it.

use onshi_domain::access::recheck;
use onshi_domain::events::{Consent, EventBody, InfoView};
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};

/// Names the re-check among PostgreSQL advisory locks.
const RECHECK_LOCK: i64 = 0x6f6e_7368_6941_6363; // "onshiAcc"

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecheckPass {
    pub views: u64,
    pub violations: u64,
}

impl Store {
    /// Re-checks up to `max_views` views that arrived since the last pass and at least `settle`
    /// ago. `received_at` is a transaction's start time, so a view committed late can carry an
    /// earlier time than one already read: `settle` (longer than central's write timeout) lets
    /// every transaction that could still commit such a view finish first.
    pub async fn recheck_views(
        &self,
        max_views: i64,
        settle: std::time::Duration,
    ) -> Result<RecheckPass, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(RECHECK_LOCK).await? {
            return Ok(RecheckPass::default());
        }
        let position = tx
            .query_opt(
                "SELECT received_at, event_id FROM access_recheck_position",
                &[],
            )
            .await?
            .map(|r| (r.get::<_, OffsetDateTime>(0), r.get::<_, Uuid>(1)));
        let (after_at, after_id) = position.unwrap_or((OffsetDateTime::UNIX_EPOCH, Uuid::nil()));
        let views = tx
            .query(
                "SELECT event_id, site_code, stream_id, sequence, occurred_at, received_at, body
                 FROM events
                 WHERE kind = 'info_view' AND (received_at, event_id) > ($1, $2)
                   AND received_at < now() - $4::float8 * interval '1 second'
                 ORDER BY received_at, event_id LIMIT $3",
                &[&after_at, &after_id, &max_views, &settle.as_secs_f64()],
            )
            .await?;
        let mut pass = RecheckPass::default();
        for row in &views {
            pass.views += 1;
            let event_id: Uuid = row.get(0);
            let site_code: String = row.get(1);
            let occurred_at: OffsetDateTime = row.get(4);
            let view: Option<InfoView> = match serde_json::from_value(row.get(6)) {
                Ok(EventBody::InfoView(view)) => Some(view),
                _ => None,
            };
            let (Some(view), Ok(site)) = (view, SiteCode::parse(&site_code)) else {
                continue; // not a view any more: the chain verifier reports that row
            };
            if !view.allowed {
                continue; // a refusal shows nothing
            }
            let consents: Vec<Consent> = tx
                .query(
                    "SELECT body FROM events
                     WHERE kind = 'consent' AND site_code = $1 AND body->>'patient_ref' = $2
                       AND occurred_at <= $3 AND occurred_at > $3 - interval '25 hours'",
                    &[&site_code, &view.patient_ref.as_str(), &occurred_at],
                )
                .await?
                .iter()
                .filter_map(|r| match serde_json::from_value(r.get(0)) {
                    Ok(EventBody::Consent(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if let Err(violation) = recheck(&site, &view, occurred_at, &consents) {
                pass.violations += 1;
                let detail = format!(
                    "{} ({}): staff {} viewed {:?} information",
                    violation,
                    violation.code(),
                    view.staff_id.as_deref().unwrap_or("unknown"),
                    view.category
                );
                tracing::warn!(site = %site_code, code = violation.code(), "a view fails central's re-check");
                tx.execute(
                    "INSERT INTO access_violations
                         (event_id, site_code, stream_id, sequence, occurred_at, code, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    &[
                        &event_id,
                        &site_code,
                        &row.get::<_, Uuid>(2),
                        &row.get::<_, i64>(3),
                        &occurred_at,
                        &violation.code(),
                        &detail,
                    ],
                )
                .await?;
            }
        }
        if let Some(last) = views.last() {
            tx.execute(
                "INSERT INTO access_recheck_position (received_at, event_id) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET received_at = EXCLUDED.received_at,
                                                event_id = EXCLUDED.event_id",
                &[&last.get::<_, OffsetDateTime>(5), &last.get::<_, Uuid>(0)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pass)
    }
}
