//! The dashboard's own reads: the fleet overview, the site list with its filters, one site's
//! page, and the alert list with acknowledgement.
//!
//! Every listing applies the principal's [`SiteScope`] in its SQL. Each page is a handful of
//! queries, one per table and none per site, pipelined on one connection. The overview reads
//! the summaries ingest keeps (`store::summaries`: lookups per hour, each link's latest report)
//! and, of `events`, only the last hour of lookups (`events_by_kind_and_time`), so its cost
//! does not grow with the history; one site's page reads that site's newest events
//! (`events_by_site_and_time`). Nothing counts over all events, and nothing is kept in memory
//! between page views: the first page after a start costs what the others do.

use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::alerts::{ALERT_COLUMNS, Alert};
use super::scope::SiteScope;
use super::{Store, StoreError};

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// Every site central knows: an agent connected, chain IT planned its adoption or named it.
const KNOWN: &str = "SELECT site_code FROM agent_streams
                     UNION SELECT site_code FROM site_adoption
                     UNION SELECT site_code FROM sites";

/// The fleet's numbers for the overview page.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Sites in scope.
    pub sites: i64,
    /// Sites with an agent per availability state (`online`, `closed`, `agent_down`, ...;
    /// `unknown`: not classified yet).
    pub availability: Vec<(String, i64)>,
    /// Readers the latest inventories list as removed or in error, and at how many sites.
    pub readers_down: i64,
    pub sites_with_readers_down: i64,
    /// Links (site × target, national or central) whose latest probe says down / degraded.
    pub links_down: i64,
    pub links_degraded: i64,
    /// Events the sites hold for central (produced − contiguous, over every stream).
    pub outbox_lag: i64,
    /// The site holding the most, and how many.
    pub worst_lag: Option<(String, i64)>,
    pub open_alerts: i64,
    pub unacknowledged_alerts: i64,
    /// Lookups of the last hour by outcome.
    pub lookups_last_hour: Vec<(String, i64)>,
    /// Lookups per hour (its start) and outcome over the 24 hours ending with the current hour.
    pub lookups_by_hour: Vec<(OffsetDateTime, String, i64)>,
    /// The first hour of `lookups_by_hour`.
    pub hours_from: OffsetDateTime,
    /// Current certificates that expire within 30 days, and those already expired.
    pub certificates_expiring: i64,
    pub certificates_expired: i64,
    pub rollouts: Vec<RolloutProgress>,
}

/// A running or paused rollout and how far it got among the sites in scope.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutProgress {
    pub id: i64,
    pub target_version: String,
    pub state: String,
    pub current_wave: i32,
    pub applied: i64,
    pub sites: i64,
}

/// The first hour of the 24 the overview's chart shows: 23 hours before the one `now` is in.
pub(crate) fn first_hour(now: OffsetDateTime) -> OffsetDateTime {
    super::summaries::hour_of(now) - Duration::hours(23)
}

/// What the site list can be narrowed to; every field is already checked (see
/// `web::sites`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteFilter {
    /// Two digits, 01–47.
    pub prefecture: Option<String>,
    /// The fee-table digit of the code (1 medical, 3 dental, 4 pharmacy, 6 home nursing).
    pub fee_table: Option<char>,
    /// An availability state, or `unknown` for sites not classified yet.
    pub status: Option<String>,
    /// The site's state in its latest rollout, or `none` for sites never in one.
    pub rollout: Option<String>,
    /// A code prefix or a part of the name.
    pub q: Option<String>,
    /// From 1.
    pub page: i64,
}

/// Sites per page of the list.
pub const SITES_PER_PAGE: i64 = 50;

/// One row of the site list.
#[derive(Debug, Clone, Serialize)]
pub struct SiteListRow {
    pub site_code: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub agent_version: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub open_alerts: i64,
    pub rollout_state: Option<String>,
    pub rollout_version: Option<String>,
}

/// One page of the site list and how many sites match in all.
#[derive(Debug, Clone, Serialize)]
pub struct SitePage {
    pub matches: i64,
    pub rows: Vec<SiteListRow>,
}

/// `text` for a LIKE pattern: `\`, `%` and `_` match themselves.
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An agent stream of one site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteStream {
    pub stream_id: Uuid,
    pub agent_version: String,
    pub lag: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

/// A recorded event as the site page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteEvent {
    pub sequence: i64,
    pub terminal_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub kind: String,
    pub body: serde_json::Value,
}

/// A current certificate of the site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteCertificate {
    pub terminal_id: String,
    pub role: String,
    pub subject: String,
    pub sha256_fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub missing: bool,
}

/// The availability verdict of the site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteState {
    pub state: String,
    pub open_now: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub detail: String,
}

/// Everything on one site's page but the adoption checklist (`Store::adoption`).
#[derive(Debug, Clone, Serialize)]
pub struct SiteDetail {
    pub site_code: String,
    pub name: Option<String>,
    pub availability: Option<SiteState>,
    pub streams: Vec<SiteStream>,
    /// The latest inventory any stream of the site sent.
    pub inventory: Option<onshi_domain::events::Inventory>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub inventory_received_at: Option<OffsetDateTime>,
    /// The newest link probes, newest first.
    pub links: Vec<SiteEvent>,
    pub certificates: Vec<SiteCertificate>,
    /// The newest events, newest first.
    pub events: Vec<SiteEvent>,
    pub alerts: Vec<Alert>,
    pub rollout_state: Option<String>,
    pub rollout_version: Option<String>,
}

/// Link probes on the site page.
const SITE_LINKS: i64 = 20;
/// Events on the site page.
pub(crate) const SITE_EVENTS: i64 = 50;

impl Store {
    /// The fleet overview for `scope` at `now`, every part read now.
    pub async fn overview(
        &self,
        scope: &SiteScope,
        now: OffsetDateTime,
    ) -> Result<Overview, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let in_scope = |column: &str| SiteScope::sql(column, 1, 2);
        let from = first_hour(now);
        let to = from + Duration::hours(24);
        let hour_ago = now - Duration::hours(1);
        let soon = now + Duration::days(30);

        let sites_sql = format!(
            "SELECT count(*) FROM ({KNOWN}) k WHERE {}",
            in_scope("k.site_code")
        );
        let availability_sql = format!(
            "SELECT coalesce(a.state, 'unknown'), count(*)
             FROM (SELECT DISTINCT site_code FROM agent_streams) s
             LEFT JOIN site_availability a USING (site_code)
             WHERE {} GROUP BY 1 ORDER BY 1",
            in_scope("s.site_code")
        );
        let readers_sql = format!(
            "WITH latest AS (
                 SELECT DISTINCT ON (site_code) site_code, inventory FROM agent_inventory
                 WHERE {} ORDER BY site_code, taken_at DESC)
             SELECT count(*), count(DISTINCT l.site_code)
             FROM latest l, jsonb_array_elements(l.inventory->'readers') r
             WHERE r->>'state' IN ('removed', 'error')",
            in_scope("site_code")
        );
        let lag_sql = format!(
            // Sums of bigints are numeric: capped before the cast, so no stream's claim can
            // make the page fail with "bigint out of range" for everyone who sees the site.
            "SELECT site_code, lag, least(sum(lag) OVER (), 9223372036854775807)::bigint FROM (
                 SELECT site_code,
                        least(sum(greatest(last_produced_sequence - contiguous_sequence, 0)),
                              9223372036854775807)::bigint AS lag
                 FROM agent_streams WHERE {} GROUP BY site_code) s
             ORDER BY lag DESC, site_code LIMIT 1",
            in_scope("site_code")
        );
        let alerts_sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE acknowledged_at IS NULL) FROM alerts
             WHERE opened_at IS NOT NULL AND resolved_at IS NULL AND {}",
            in_scope("site_code")
        );
        // The tile's sliding hour is the one read of `events`: one hour of lookups through
        // `events_by_kind_and_time`, whatever the history.
        let last_hour_sql = format!(
            "SELECT coalesce(body->>'outcome', 'unknown'), count(*)
             FROM events
             WHERE kind = 'lookup' AND occurred_at > $3 AND occurred_at <= $4 AND {}
             GROUP BY 1 ORDER BY 1",
            in_scope("site_code")
        );
        let hours_sql = format!(
            "SELECT hour, outcome, sum(lookups)::bigint FROM site_lookup_hours
             WHERE hour >= $3 AND hour < $4 AND {}
             GROUP BY 1, 2 ORDER BY 1, 2",
            in_scope("site_code")
        );
        // Links of sites with an agent whose latest report says down or degraded.
        let links_sql = format!(
            "SELECT count(*) FILTER (WHERE l.state = 'down'),
                    count(*) FILTER (WHERE l.state = 'degraded')
             FROM site_links l
             WHERE l.target IN ('onshi', 'central', 'terminal')
               AND EXISTS (SELECT 1 FROM agent_streams s WHERE s.site_code = l.site_code)
               AND {}",
            in_scope("l.site_code")
        );
        let certificates_sql = format!(
            "SELECT count(*) FILTER (WHERE not_after >= $3),
                    count(*) FILTER (WHERE not_after < $3)
             FROM certificates
             WHERE retired_at IS NULL AND NOT missing AND not_after < $4 AND {}",
            in_scope("site_code")
        );
        let rollouts_sql = format!(
            "SELECT r.id, r.target_version, r.state, r.current_wave,
                    count(*) FILTER (WHERE s.state = 'applied'), count(*)
             FROM rollouts r JOIN rollout_sites s ON s.rollout_id = r.id AND {}
             WHERE r.state IN ('running', 'paused')
             GROUP BY r.id ORDER BY r.id",
            in_scope("s.site_code")
        );
        let scoped: [Param; 2] = [&prefectures, &sites];
        let last_hour_params: [Param; 4] = [&prefectures, &sites, &hour_ago, &now];
        let hours_params: [Param; 4] = [&prefectures, &sites, &from, &to];
        let certificate_params: [Param; 4] = [&prefectures, &sites, &now, &soon];
        // One connection with the queries pipelined.
        let (
            sites_row,
            availability,
            readers,
            lag,
            alerts,
            last_hour,
            hours,
            links,
            certs,
            rollouts,
        ) = tokio::try_join!(
            client.query_one(&sites_sql, &scoped),
            client.query(&availability_sql, &scoped),
            client.query_one(&readers_sql, &scoped),
            client.query_opt(&lag_sql, &scoped),
            client.query_one(&alerts_sql, &scoped),
            client.query(&last_hour_sql, &last_hour_params),
            client.query(&hours_sql, &hours_params),
            client.query_one(&links_sql, &scoped),
            client.query_one(&certificates_sql, &certificate_params),
            client.query(&rollouts_sql, &scoped),
        )?;
        Ok(Overview {
            sites: sites_row.get(0),
            availability: availability.iter().map(|r| (r.get(0), r.get(1))).collect(),
            readers_down: readers.get(0),
            sites_with_readers_down: readers.get(1),
            links_down: links.get(0),
            links_degraded: links.get(1),
            outbox_lag: lag.as_ref().map_or(0, |r| r.get(2)),
            worst_lag: lag
                .as_ref()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .filter(|(_, n)| *n > 0),
            open_alerts: alerts.get(0),
            unacknowledged_alerts: alerts.get(1),
            lookups_last_hour: last_hour.iter().map(|r| (r.get(0), r.get(1))).collect(),
            lookups_by_hour: hours
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            hours_from: from,
            certificates_expiring: certs.get(0),
            certificates_expired: certs.get(1),
            rollouts: rollouts
                .iter()
                .map(|r| RolloutProgress {
                    id: r.get(0),
                    target_version: r.get(1),
                    state: r.get(2),
                    current_wave: r.get(3),
                    applied: r.get(4),
                    sites: r.get(5),
                })
                .collect(),
        })
    }

    /// One page of the sites in `scope` that match `filter`, by code.
    pub async fn site_page(
        &self,
        scope: &SiteScope,
        filter: &SiteFilter,
    ) -> Result<SitePage, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let fee_table = filter.fee_table.map(String::from);
        let q = filter.q.as_deref().map(like_escape);
        let offset = (filter.page.max(1) - 1) * SITES_PER_PAGE;
        let rows = client
            .query(
                &format!(
                    "WITH known AS ({KNOWN}),
                     streams AS (
                         SELECT DISTINCT ON (site_code) site_code, agent_version, last_seen_at
                         FROM agent_streams ORDER BY site_code, last_seen_at DESC),
                     open_alerts AS (
                         SELECT site_code, count(*) AS n FROM alerts
                         WHERE opened_at IS NOT NULL AND resolved_at IS NULL
                         GROUP BY site_code),
                     rollout AS (
                         SELECT DISTINCT ON (s.site_code) s.site_code, s.state, r.target_version
                         FROM rollout_sites s JOIN rollouts r ON r.id = s.rollout_id
                         ORDER BY s.site_code, s.rollout_id DESC)
                     SELECT k.site_code, d.name, a.state, s.agent_version, s.last_seen_at,
                            coalesce(o.n, 0), r.state, r.target_version,
                            count(*) OVER ()
                     FROM known k
                     LEFT JOIN sites d USING (site_code)
                     LEFT JOIN site_availability a USING (site_code)
                     LEFT JOIN streams s USING (site_code)
                     LEFT JOIN open_alerts o USING (site_code)
                     LEFT JOIN rollout r USING (site_code)
                     WHERE {}
                       AND ($3::text IS NULL OR left(k.site_code, 2) = $3)
                       AND ($4::text IS NULL OR substr(k.site_code, 3, 1) = $4)
                       AND ($5::text IS NULL OR coalesce(a.state, 'unknown') = $5)
                       AND ($6::text IS NULL OR coalesce(r.state, 'none') = $6)
                       AND ($7::text IS NULL OR k.site_code LIKE ($7 || '%')
                            OR d.name ILIKE ('%' || $7 || '%'))
                     ORDER BY k.site_code
                     LIMIT $8 OFFSET $9",
                    SiteScope::sql("k.site_code", 1, 2)
                ),
                &[
                    &prefectures,
                    &sites,
                    &filter.prefecture,
                    &fee_table,
                    &filter.status,
                    &filter.rollout,
                    &q,
                    &SITES_PER_PAGE,
                    &offset,
                ],
            )
            .await?;
        let matches = match rows.first() {
            Some(r) => r.get(8),
            // Past the last page, the window has no row to count on.
            None if offset > 0 => {
                Box::pin(self.site_page(
                    scope,
                    &SiteFilter {
                        page: 1,
                        ..filter.clone()
                    },
                ))
                .await?
                .matches
            }
            None => 0,
        };
        Ok(SitePage {
            matches,
            rows: rows
                .iter()
                .map(|r| SiteListRow {
                    site_code: r.get(0),
                    name: r.get(1),
                    status: r.get(2),
                    agent_version: r.get(3),
                    last_seen_at: r.get(4),
                    open_alerts: r.get(5),
                    rollout_state: r.get(6),
                    rollout_version: r.get(7),
                })
                .collect(),
        })
    }

    /// What the site page shows about `site` (whose scope the caller checked), or `None` for a
    /// site central does not know.
    pub async fn site_detail(&self, site: &SiteCode) -> Result<Option<SiteDetail>, StoreError> {
        let client = self.read_conn().await?;
        let code = site.as_str();
        let site_sql = format!(
            "SELECT d.name, a.state, a.open_now, a.since, a.detail
             FROM ({KNOWN}) k
             LEFT JOIN sites d USING (site_code)
             LEFT JOIN site_availability a USING (site_code)
             WHERE k.site_code = $1"
        );
        let event_columns = "sequence, terminal_id, occurred_at, kind, body";
        let links_sql = format!(
            "SELECT {event_columns} FROM events
             WHERE site_code = $1 AND kind = 'link_change'
             ORDER BY occurred_at DESC LIMIT {SITE_LINKS}"
        );
        let events_sql = format!(
            "SELECT {event_columns} FROM events WHERE site_code = $1
             ORDER BY occurred_at DESC, sequence DESC LIMIT {SITE_EVENTS}"
        );
        let alerts_sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE site_code = $1 AND opened_at IS NOT NULL AND resolved_at IS NULL
             ORDER BY opened_at DESC, id DESC"
        );
        let by_site: [Param; 1] = [&code];
        let (head, streams, inventory, links, certificates, events, alerts, rollout) = tokio::try_join!(
            client.query_opt(&site_sql, &by_site),
            client.query(
                "SELECT stream_id, agent_version,
                        greatest(last_produced_sequence - contiguous_sequence, 0),
                        first_seen_at, last_seen_at
                 FROM agent_streams WHERE site_code = $1 ORDER BY last_seen_at DESC",
                &by_site
            ),
            client.query_opt(
                "SELECT inventory, received_at FROM agent_inventory WHERE site_code = $1
                 ORDER BY taken_at DESC LIMIT 1",
                &by_site
            ),
            client.query(&links_sql, &by_site),
            client.query(
                "SELECT terminal_id, role, subject, sha256_fingerprint, not_after, missing
                 FROM certificates WHERE site_code = $1 AND retired_at IS NULL
                 ORDER BY not_after, terminal_id",
                &by_site
            ),
            client.query(&events_sql, &by_site),
            client.query(&alerts_sql, &by_site),
            client.query_opt(
                "SELECT s.state, r.target_version FROM rollout_sites s
                 JOIN rollouts r ON r.id = s.rollout_id
                 WHERE s.site_code = $1 ORDER BY s.rollout_id DESC LIMIT 1",
                &by_site
            ),
        )?;
        let Some(head) = head else {
            return Ok(None);
        };
        let event = |r: &tokio_postgres::Row| SiteEvent {
            sequence: r.get(0),
            terminal_id: r.get(1),
            occurred_at: r.get(2),
            kind: r.get(3),
            body: r.get(4),
        };
        let (inventory, inventory_received_at) = match inventory {
            Some(r) => {
                let tokio_postgres::types::Json(inventory) = r.get(0);
                (Some(inventory), Some(r.get(1)))
            }
            None => (None, None),
        };
        Ok(Some(SiteDetail {
            site_code: code.to_string(),
            name: head.get(0),
            availability: head.get::<_, Option<String>>(1).map(|state| SiteState {
                state,
                open_now: head.get(2),
                since: head.get(3),
                detail: head.get(4),
            }),
            streams: streams
                .iter()
                .map(|r| SiteStream {
                    stream_id: r.get(0),
                    agent_version: r.get(1),
                    lag: r.get(2),
                    first_seen_at: r.get(3),
                    last_seen_at: r.get(4),
                })
                .collect(),
            inventory,
            inventory_received_at,
            links: links.iter().map(event).collect(),
            certificates: certificates
                .iter()
                .map(|r| SiteCertificate {
                    terminal_id: r.get(0),
                    role: r.get(1),
                    subject: r.get(2),
                    sha256_fingerprint: r.get(3),
                    not_after: r.get(4),
                    missing: r.get(5),
                })
                .collect(),
            events: events.iter().map(event).collect(),
            alerts: alerts.iter().map(Alert::from_row).collect(),
            rollout_state: rollout.as_ref().map(|r| r.get(0)),
            rollout_version: rollout.as_ref().map(|r| r.get(1)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn wildcards_match_themselves() {
        assert_eq!(like_escape("13_4%"), "13\\_4\\%");
        assert_eq!(like_escape("a\\b"), "a\\\\b");
        assert_eq!(like_escape("新宿"), "新宿");
    }

    #[test]
    fn the_chart_starts_23_hours_before_the_current_hour() {
        assert_eq!(
            first_hour(datetime!(2026-12-02 05:59:12.5 UTC)),
            datetime!(2026-12-01 06:00 UTC)
        );
    }
}
