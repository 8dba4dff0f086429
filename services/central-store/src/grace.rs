//! Grace notifications (猶予届出, migration 0012): filed per site by chain IT with the end
//! condition of their category, the deadline from `onshi_domain::grace`, ended when the
//! condition is met. The status (active / overdue / ended) is computed when read, for the
//! Asia/Tokyo date. Filing and ending are `admin_action` security events, in the same
//! transaction as the change.

use onshi_domain::grace::{GraceCategory, GraceNotification, GraceState, GraceStatus};
use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use super::scope::SiteScope;
use super::seals::tokyo_day;
use super::{Store, StoreError};

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GraceView {
    pub id: i64,
    pub site_code: String,
    pub category: GraceCategory,
    pub category_number: u8,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub filed_on: String,
    pub contracted_on: Option<String>,
    pub line_available_on: Option<String>,
    pub ends_on: Option<String>,
    pub review_on: Option<String>,
    pub evidence: Option<String>,
    /// The last day the grace covers.
    pub deadline: String,
    /// The deadline is a review date (category 6, and 2 without a line date), not an end.
    pub deadline_is_review: bool,
    /// `status` (active / ended / overdue) with `days_left`, `on` or `since`.
    #[serde(flatten)]
    pub status: GraceStatus,
    pub filed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub filed_at: OffsetDateTime,
    pub ended_on: Option<String>,
    pub ended_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

/// What ending a notification came to.
#[derive(Debug, Clone)]
pub enum GraceEnd {
    Ended(Box<GraceView>),
    /// The site has no notification with that id (another site's is not found either: whose
    /// it is stays unsaid).
    NotFound,
    /// It was ended before, on that day by that operator.
    AlreadyEnded {
        on: Date,
        by: String,
    },
}

const COLUMNS: &str = "id, site_code, category, filed_on, contracted_on, line_available_on,
    ends_on, review_on, evidence, deadline, deadline_is_review, filed_by, filed_at, ended_on,
    ended_by, ended_at";

fn day(date: Option<Date>) -> Option<String> {
    date.map(|d| d.to_string())
}

fn category_of(number: i16) -> Result<GraceCategory, StoreError> {
    u8::try_from(number)
        .ok()
        .and_then(GraceCategory::from_number)
        .ok_or_else(|| StoreError::BadQuery(format!("stored grace category {number} is unknown")))
}

/// The row (in [`COLUMNS`] order) as of `today`.
fn view(row: &tokio_postgres::Row, today: Date) -> Result<GraceView, StoreError> {
    let category = category_of(row.get(2))?;
    let deadline: Date = row.get(9);
    let ended_on: Option<Date> = row.get(13);
    Ok(GraceView {
        id: row.get(0),
        site_code: row.get(1),
        category,
        category_number: category.number(),
        label_ja: category.label_ja(),
        label_en: category.label_en(),
        filed_on: row.get::<_, Date>(3).to_string(),
        contracted_on: day(row.get(4)),
        line_available_on: day(row.get(5)),
        ends_on: day(row.get(6)),
        review_on: day(row.get(7)),
        evidence: row.get(8),
        deadline: deadline.to_string(),
        deadline_is_review: row.get(10),
        status: GraceStatus::on(deadline, today, ended_on),
        filed_by: row.get(11),
        filed_at: row.get(12),
        ended_on: day(ended_on),
        ended_by: row.get(14),
        ended_at: row.get(15),
    })
}

fn stored_notification(row: &tokio_postgres::Row) -> Result<GraceNotification, StoreError> {
    Ok(GraceNotification {
        category: category_of(row.get(2))?,
        filed_on: row.get(3),
        contracted_on: row.get(4),
        line_available_on: row.get(5),
        ends_on: row.get(6),
        review_on: row.get(7),
        evidence: row.get(8),
    })
}

impl Store {
    /// Files `notification` for `site` after checking it (`onshi_domain::grace`: the fields its
    /// category needs, not filed after today in Tokyo); audited with `by`.
    pub async fn file_grace_notification(
        &self,
        site: &SiteCode,
        notification: &GraceNotification,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<GraceView, StoreError> {
        let today = tokyo_day(now);
        let refused = |e: onshi_domain::grace::GraceError| StoreError::BadQuery(e.to_string());
        notification.validate(today).map_err(refused)?;
        let deadline = notification.deadline().map_err(refused)?;
        let evidence = notification
            .evidence
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let category = notification.category;
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO grace_notifications (site_code, category, filed_on, contracted_on,
                         line_available_on, ends_on, review_on, evidence, deadline,
                         deadline_is_review, filed_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     RETURNING {COLUMNS}"
                ),
                &[
                    &site.as_str(),
                    &i16::from(category.number()),
                    &notification.filed_on,
                    &notification.contracted_on,
                    &notification.line_available_on,
                    &notification.ends_on,
                    &notification.review_on,
                    &evidence,
                    &deadline.date,
                    &deadline.is_review,
                    &by,
                ],
            )
            .await?;
        let view = view(&row, today)?;
        super::audit_admin(&tx, Some(site.as_str()), &format!(
                    "grace notification {} of site {site} filed by {by}: category {} ({}), filed on {}, {} {}",
                    view.id,
                    category.number(),
                    category.name(),
                    notification.filed_on,
                    if deadline.is_review {
                        "review on"
                    } else {
                        "deadline"
                    },
                    deadline.date
                )).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Ends notification `id` of `site` on `ended_on` (not before it was filed, not after today
    /// in Tokyo), once; audited with `by`.
    pub async fn end_grace_notification(
        &self,
        site: &SiteCode,
        id: i64,
        ended_on: Date,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<GraceEnd, StoreError> {
        let today = tokyo_day(now);
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM grace_notifications
                     WHERE id = $1 AND site_code = $2 FOR UPDATE"
                ),
                &[&id, &site.as_str()],
            )
            .await?
        else {
            return Ok(GraceEnd::NotFound);
        };
        if let Some(on) = row.get::<_, Option<Date>>(13) {
            return Ok(GraceEnd::AlreadyEnded {
                on,
                by: row.get(14),
            });
        }
        let notification = stored_notification(&row)?;
        notification
            .check_end(ended_on, today)
            .map_err(|e| StoreError::BadQuery(e.to_string()))?;
        let row = tx
            .query_one(
                &format!(
                    "UPDATE grace_notifications SET ended_on = $2, ended_by = $3, ended_at = now()
                     WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id, &ended_on, &by],
            )
            .await?;
        super::audit_admin(
            &tx,
            Some(site.as_str()),
            &format!(
                "grace notification {id} of site {site} (category {}) ended on {ended_on} by {by}",
                notification.category.number()
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(GraceEnd::Ended(Box::new(view(&row, today)?)))
    }

    /// The site's notifications, oldest filing first, with their status on `now` in Tokyo.
    pub async fn grace_notifications(
        &self,
        site: &SiteCode,
        now: OffsetDateTime,
    ) -> Result<Vec<GraceView>, StoreError> {
        let today = tokyo_day(now);
        self.conn()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM grace_notifications WHERE site_code = $1
                     ORDER BY filed_on, id"
                ),
                &[&site.as_str()],
            )
            .await?
            .iter()
            .map(|r| view(r, today))
            .collect()
    }

    /// Across the chain: the notifications in `state` on `now` in Tokyo (`None`: the open ones,
    /// active and overdue), soonest deadline first.
    pub async fn chain_grace_notifications(
        &self,
        state: Option<GraceState>,
        now: OffsetDateTime,
        scope: &SiteScope,
    ) -> Result<Vec<GraceView>, StoreError> {
        let today = tokyo_day(now);
        let ended = state.map(|s| s == GraceState::Ended).unwrap_or(false);
        let (prefectures, sites) = scope.params();
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM grace_notifications
                     WHERE (ended_on IS NOT NULL) = $1 AND {}
                     ORDER BY deadline, site_code, id",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&ended, &prefectures, &sites],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let view = view(row, today)?;
            if state.is_none_or(|s| view.status.state() == s) {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// The active notifications (not ended, not past their deadline) of each of `sites`.
    pub(crate) async fn active_grace_by_site(
        &self,
        sites: &[String],
        now: OffsetDateTime,
    ) -> Result<std::collections::HashMap<String, Vec<GraceView>>, StoreError> {
        let today = tokyo_day(now);
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM grace_notifications
                     WHERE ended_on IS NULL AND site_code = ANY($1)
                     ORDER BY filed_on, id"
                ),
                &[&sites],
            )
            .await?;
        let mut by_site: std::collections::HashMap<String, Vec<GraceView>> = Default::default();
        for row in &rows {
            let view = view(row, today)?;
            if view.status.state() == GraceState::Active {
                by_site
                    .entry(view.site_code.clone())
                    .or_default()
                    .push(view);
            }
        }
        Ok(by_site)
    }
}
