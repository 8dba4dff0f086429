//! What the dashboard's certificate, rollout and audit pages read beyond the API's listings,
//! one query per table: certificates with the page's filters and the expiry timeline, rollout
//! summaries (sites counted, never loaded) and one rollout's detail, and where the chain
//! verifier stands per stream. The principal's [`SiteScope`] is applied inside every query.
//! The adoption tables come from `store::adoption` (`prefecture_table`, `adoptions`).

use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::certificates::CertificateRow;
use super::rollouts::Transition;
use super::scope::SiteScope;
use super::{Store, StoreError};

/// Which certificates a listing shows; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    /// Expiring within this many days of now (expired ones included); `None`: all.
    pub within_days: Option<i64>,
    /// The certificate's role: `terminal`, `agent` or `ca`.
    pub role: Option<String>,
    pub site: Option<SiteCode>,
    /// A two-digit prefecture code (the first two digits of the site code).
    pub prefecture: Option<String>,
}

/// Certificates (distinct fingerprints) of one role expiring in one Tokyo month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryMonth {
    /// `YYYY-MM`, Asia/Tokyo.
    pub month: String,
    pub role: String,
    pub certificates: i64,
}

/// A rollout with its sites counted (in the principal's scope).
#[derive(Debug, Clone, Serialize)]
pub struct RolloutSummary {
    pub id: i64,
    pub target_version: String,
    pub state: String,
    /// 1-based.
    pub current_wave: i32,
    pub waves: serde_json::Value,
    pub window: String,
    pub on_gate_failure: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub sites: i64,
    pub applied: i64,
    pub failed: i64,
    pub rolled_back: i64,
}

/// One site's place in a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutSiteState {
    pub site_code: String,
    /// 1-based.
    pub wave: i32,
    pub previous_version: String,
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub targeted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub reported_at: Option<OffsetDateTime>,
}

/// One rollout as its page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutDetail {
    pub summary: RolloutSummary,
    pub gates: serde_json::Value,
    pub soak_secs: i32,
    pub apply_timeout_secs: i32,
    /// The sites in the principal's scope, by wave and code.
    pub sites: Vec<RolloutSiteState>,
    pub transitions: Vec<Transition>,
}

/// Where the chain verifier stands on one agent stream, and its latest seal.
#[derive(Debug, Clone, Serialize)]
pub struct StreamVerificationStatus {
    pub site_code: String,
    pub stream_id: Uuid,
    /// What central holds without a gap.
    pub contiguous_sequence: i64,
    /// The last sequence the verifier walked (0: not yet).
    pub verified_through: i64,
    pub events_verified: i64,
    pub breaks: i64,
    pub break_detail: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    pub last_seal_day: Option<Date>,
    pub last_seal_through: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sealed_at: Option<OffsetDateTime>,
}

/// The condition of the certificate listings over `$1` until, `$2` role, `$3` site, `$4`
/// prefecture and the scope in `$5`, `$6`.
fn certificate_filter() -> String {
    format!(
        "retired_at IS NULL
         AND ($1::timestamptz IS NULL OR not_after <= $1)
         AND ($2::text IS NULL OR role = $2)
         AND ($3::text IS NULL OR site_code = $3)
         AND ($4::text IS NULL OR left(site_code, 2) = $4)
         AND {}",
        SiteScope::sql("site_code", 5, 6)
    )
}

/// The certificates an export lists, counted, and their rows as they are read.
pub struct CertificateExport {
    pub rows: i64,
    pub stream: futures_util::stream::BoxStream<'static, Result<CertificateRow, StoreError>>,
}

impl std::fmt::Debug for CertificateExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateExport")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn tokyo_day(at: OffsetDateTime) -> Date {
    at.to_offset(time::macros::offset!(+9)).date()
}

fn rollout_summary(r: &tokio_postgres::Row) -> RolloutSummary {
    RolloutSummary {
        id: r.get(0),
        target_version: r.get(1),
        state: r.get(2),
        current_wave: r.get::<_, i32>(3) + 1,
        waves: r.get(4),
        window: r.get(5),
        on_gate_failure: r.get(6),
        created_by: r.get(7),
        created_at: r.get(8),
        sites: r.get(9),
        applied: r.get(10),
        failed: r.get(11),
        rolled_back: r.get(12),
    }
}

/// The columns of [`rollout_summary`] over `rollouts r` left-joined with `rollout_sites s`
/// (already narrowed to the scope).
const SUMMARY_COLUMNS: &str = "r.id, r.target_version, r.state, r.current_wave, r.waves,
     r.update_window, r.on_gate_failure, r.created_by, r.created_at,
     count(s.site_code), count(*) FILTER (WHERE s.state = 'applied'),
     count(*) FILTER (WHERE s.state = 'failed'),
     count(*) FILTER (WHERE s.state = 'rolled_back')";

impl Store {
    /// The certificates sites in `scope` hold now that match `filter`, soonest expiry first,
    /// at most `limit` (the expiry index gives them in order).
    pub async fn dashboard_certificates(
        &self,
        now: OffsetDateTime,
        filter: &CertificateFilter,
        scope: &SiteScope,
        limit: i64,
    ) -> Result<Vec<CertificateRow>, StoreError> {
        let (prefectures, sites) = scope.params();
        let until = filter.within_days.map(|d| now + Duration::days(d));
        let site = filter.site.as_ref().map(SiteCode::as_str);
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM certificates WHERE {}
                     ORDER BY not_after, site_code, terminal_id, sha256_fingerprint LIMIT $7",
                    super::certificates::CERTIFICATE_COLUMNS,
                    certificate_filter()
                ),
                &[
                    &until,
                    &filter.role,
                    &site,
                    &filter.prefecture,
                    &prefectures,
                    &sites,
                    &limit,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| super::certificates::certificate_row(r, now))
            .collect())
    }

    /// Every certificate [`Store::dashboard_certificates`] would list, however many, as a
    /// stream read from PostgreSQL as it is consumed (memory bounded whatever the size), with
    /// their number counted first in the same snapshot (for the export's audit record). The
    /// stream owns its connection, taken out of the pool: dropped half-way, it closes the
    /// connection and its read-only transaction with it.
    pub async fn certificates_export(
        &self,
        now: OffsetDateTime,
        filter: &CertificateFilter,
        scope: &SiteScope,
    ) -> Result<CertificateExport, StoreError> {
        // Taken out of the pool, not checked out through store::conn: dropped mid-export it
        // must close, never go back to the pool inside its transaction. Its statements all run
        // inside that transaction, so they stay on one server connection behind a pooler too.
        let slot = self.export_slot()?;
        #[allow(clippy::disallowed_methods)]
        let client = deadpool_postgres::Object::take(self.pool.get().await?);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let (prefectures, sites) = scope.params();
        let until = filter.within_days.map(|d| now + Duration::days(d));
        let site = filter.site.as_ref().map(SiteCode::as_str);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &until,
            &filter.role,
            &site,
            &filter.prefecture,
            &prefectures,
            &sites,
        ];
        let count: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM certificates WHERE {}",
                    certificate_filter()
                ),
                &params,
            )
            .await?
            .get(0);
        let rows = client
            .query_raw(
                &format!(
                    "SELECT {} FROM certificates WHERE {}
                     ORDER BY not_after, site_code, terminal_id, sha256_fingerprint",
                    super::certificates::CERTIFICATE_COLUMNS,
                    certificate_filter()
                ),
                params,
            )
            .await?;
        let stream = futures_util::stream::unfold(
            (slot, client, Box::pin(rows)),
            move |(slot, client, mut rows)| async move {
                use futures_util::StreamExt;
                let next = rows.next().await?;
                let item = next
                    .map(|r| super::certificates::certificate_row(&r, now))
                    .map_err(StoreError::from);
                Some((item, (slot, client, rows)))
            },
        );
        Ok(CertificateExport {
            rows: count,
            stream: Box::pin(stream),
        })
    }

    /// Per Tokyo month from `now`'s to `months` later, per role: the certificates (distinct
    /// fingerprints: a CA every site holds is one certificate to renew) that expire then,
    /// matching `filter` but for its `within_days`.
    pub async fn certificate_expiry_months(
        &self,
        now: OffsetDateTime,
        months: u8,
        filter: &CertificateFilter,
        scope: &SiteScope,
    ) -> Result<Vec<ExpiryMonth>, StoreError> {
        let today = tokyo_day(now);
        let month_start = |offset: u8| -> Option<OffsetDateTime> {
            let index =
                today.year() * 12 + i32::from(u8::from(today.month())) - 1 + i32::from(offset);
            let month = time::Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
            Date::from_calendar_date(index.div_euclid(12), month, 1)
                .ok()
                .map(|d| d.midnight().assume_offset(time::macros::offset!(+9)))
        };
        let end = month_start(months).ok_or_else(|| {
            StoreError::BadQuery("the expiry timeline runs past year 9999".into())
        })?;
        let (prefectures, sites) = scope.params();
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT to_char(date_trunc('month', (not_after AT TIME ZONE 'UTC')
                                                        + interval '9 hours'), 'YYYY-MM'),
                            role, count(DISTINCT sha256_fingerprint)
                     FROM certificates
                     WHERE retired_at IS NULL AND not_after >= $1 AND not_after < $2
                       AND ($3::text IS NULL OR role = $3)
                       AND ($4::text IS NULL OR site_code = $4)
                       AND ($5::text IS NULL OR left(site_code, 2) = $5)
                       AND {}
                     GROUP BY 1, 2 ORDER BY 1, 2",
                    SiteScope::sql("site_code", 6, 7)
                ),
                &[
                    &now,
                    &end,
                    &filter.role,
                    &filter.site.as_ref().map(SiteCode::as_str),
                    &filter.prefecture,
                    &prefectures,
                    &sites,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ExpiryMonth {
                month: r.get(0),
                role: r.get(1),
                certificates: r.get(2),
            })
            .collect())
    }

    /// The latest `limit` rollouts, newest first, with their sites in `scope` counted.
    pub async fn rollout_summaries(
        &self,
        scope: &SiteScope,
        limit: i64,
    ) -> Result<Vec<RolloutSummary>, StoreError> {
        let (prefectures, sites) = scope.params();
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}
                     FROM (SELECT * FROM rollouts ORDER BY id DESC LIMIT $1) r
                     LEFT JOIN rollout_sites s ON s.rollout_id = r.id AND {}
                     GROUP BY r.id, r.target_version, r.state, r.current_wave, r.waves,
                              r.update_window, r.on_gate_failure, r.created_by, r.created_at
                     ORDER BY r.id DESC",
                    SiteScope::sql("s.site_code", 2, 3)
                ),
                &[&limit, &prefectures, &sites],
            )
            .await?;
        Ok(rows.iter().map(rollout_summary).collect())
    }

    /// One rollout with its sites in `scope` and every transition; `None` if there is none.
    pub async fn rollout_detail(
        &self,
        id: i64,
        scope: &SiteScope,
    ) -> Result<Option<RolloutDetail>, StoreError> {
        let (prefectures, sites) = scope.params();
        let client = self.read_conn().await?;
        let Some(row) = client
            .query_opt(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, r.gates, r.soak_secs, r.apply_timeout_secs
                     FROM rollouts r
                     LEFT JOIN rollout_sites s ON s.rollout_id = r.id AND {}
                     WHERE r.id = $1
                     GROUP BY r.id",
                    SiteScope::sql("s.site_code", 2, 3)
                ),
                &[&id, &prefectures, &sites],
            )
            .await?
        else {
            return Ok(None);
        };
        let site_rows = client
            .query(
                &format!(
                    "SELECT site_code, wave, previous_version, state, targeted_at, reported_at
                     FROM rollout_sites WHERE rollout_id = $1 AND {}
                     ORDER BY wave, site_code",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&id, &prefectures, &sites],
            )
            .await?;
        let transitions = client
            .query(
                "SELECT at, from_state, to_state, wave, reason, actor FROM rollout_transitions
                 WHERE rollout_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(Some(RolloutDetail {
            summary: rollout_summary(&row),
            gates: row.get(13),
            soak_secs: row.get(14),
            apply_timeout_secs: row.get(15),
            sites: site_rows
                .iter()
                .map(|s| RolloutSiteState {
                    site_code: s.get(0),
                    wave: s.get::<_, i32>(1) + 1,
                    previous_version: s.get(2),
                    state: s.get(3),
                    targeted_at: s.get(4),
                    reported_at: s.get(5),
                })
                .collect(),
            transitions: transitions
                .iter()
                .map(|t| Transition {
                    at: t.get(0),
                    from_state: t.get(1),
                    to_state: t.get(2),
                    wave: t.get(3),
                    reason: t.get(4),
                    actor: t.get(5),
                })
                .collect(),
        }))
    }

    /// Every agent stream in `scope` with where the chain verifier stands on it and its latest
    /// seal; streams with a break first, then by site.
    pub async fn verification_status(
        &self,
        scope: &SiteScope,
    ) -> Result<Vec<StreamVerificationStatus>, StoreError> {
        let (prefectures, sites) = scope.params();
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT s.site_code, s.stream_id, s.contiguous_sequence,
                            coalesce((v.walk->>'through')::bigint, 0), coalesce(v.events, 0),
                            coalesce(v.breaks, 0), v.break_detail, v.verified_at,
                            l.day, l.through_sequence, l.sealed_at
                     FROM agent_streams s
                     LEFT JOIN chain_verification v USING (site_code, stream_id)
                     LEFT JOIN LATERAL (
                         SELECT day, through_sequence, sealed_at FROM seals x
                         WHERE x.site_code = s.site_code AND x.stream_id = s.stream_id
                         ORDER BY day DESC LIMIT 1) l ON true
                     WHERE {}
                     ORDER BY coalesce(v.breaks, 0) > 0 DESC, s.site_code, s.first_seen_at,
                              s.stream_id",
                    SiteScope::sql("s.site_code", 1, 2)
                ),
                &[&prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StreamVerificationStatus {
                site_code: r.get(0),
                stream_id: r.get(1),
                contiguous_sequence: r.get(2),
                verified_through: r.get(3),
                events_verified: r.get(4),
                breaks: r.get(5),
                break_detail: r.get(6),
                verified_at: r.get(7),
                last_seal_day: r.get(8),
                last_seal_through: r.get(9),
                last_sealed_at: r.get(10),
            })
            .collect())
    }
}
