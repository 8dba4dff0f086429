//! The dashboard's own reads: the fleet overview, the site list with its filters, one site's
//! page, and the alert list with acknowledgement.
//!
//! Every listing applies the principal's [`SiteScope`] in its SQL. Each page is a handful of
//! queries, one per table and none per site, pipelined on one connection; events are only read
//! through their indexes: by kind and time over the last 24 hours (`events_by_kind_and_time`),
//! a site's latest link probes (`events_signals_by_site`), a site's newest events
//! (`events_by_site_and_time`). Nothing counts over all events. The overview keeps what takes
//! longest to read (the completed hours of its chart, the links tile) in memory between page
//! views ([`OverviewMemo`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// How long the counts of a completed hour are served before they are read again, in the
/// background: an agent that was offline delivers its lookups late.
pub const PAST_HOUR_FRESH: std::time::Duration = std::time::Duration::from_secs(300);

/// Scopes the memo holds at most; past that it starts over.
const MEMO_SCOPES: usize = 256;

/// What a scope is, as a key: its two SQL parameters.
type ScopeKey = (Option<Vec<String>>, Option<Vec<String>>);

/// What the overview keeps in memory between page views, per scope, because reading it
/// takes longer than a page may:
/// - lookups per outcome of each completed hour: the chart reads the 23 completed hours of
///   the last day from here and only the current hour from `events`, so a page view does not
///   aggregate a day of lookups (about 150,000 rows for 1,000 sites). An hour read more than
///   [`PAST_HOUR_FRESH`] ago is read again;
/// - the links down and degraded (the latest probe of each site and target, an index probe
///   per site, target and month): read again after [`LINKS_FRESH`], about as often as the
///   maintenance task classifies availability.
///
/// What is missing is read before answering; what is old is served as it is and read again in
/// the background. One memo per router (each replica its own); cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct OverviewMemo {
    inner: Arc<Mutex<MemoInner>>,
}

/// What a background read is refreshing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    PastHours,
    Links,
}

#[derive(Debug, Default)]
struct MemoInner {
    scopes: HashMap<ScopeKey, BTreeMap<OffsetDateTime, PastHour>>,
    links: HashMap<ScopeKey, (Instant, LinkCounts)>,
    refreshing: HashSet<(ScopeKey, Part)>,
}

/// Links (site × target) whose latest probe says down, and degraded.
type LinkCounts = (i64, i64);

/// How long the links tile is served before it is read again.
pub const LINKS_FRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// How far back the latest link probe is looked for first; older ones only for the links
/// without a probe in that time.
const RECENT_LINKS: Duration = Duration::days(31);

#[derive(Debug, Clone)]
struct PastHour {
    read_at: Instant,
    counts: Vec<(String, i64)>,
}

/// The hours `[from, to)` to read: the first and the one after the last.
type HourRange = (OffsetDateTime, OffsetDateTime);

/// Hours of `[from, to)` (hour starts) that are not in `held`, and those held but read
/// before `fresh_after`, each as one range covering them.
fn plan(
    held: Option<&BTreeMap<OffsetDateTime, PastHour>>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    fresh_after: Option<Instant>,
) -> (Option<HourRange>, Option<HourRange>) {
    let mut missing: Option<HourRange> = None;
    let mut stale: Option<HourRange> = None;
    let widen = |range: &mut Option<HourRange>, hour: OffsetDateTime| {
        let end = hour + Duration::hours(1);
        *range = Some(range.map_or((hour, end), |(a, b)| (a.min(hour), b.max(end))));
    };
    let mut hour = from;
    while hour < to {
        match held.and_then(|h| h.get(&hour)) {
            None => widen(&mut missing, hour),
            Some(past) if fresh_after.is_some_and(|f| past.read_at < f) => widen(&mut stale, hour),
            Some(_) => {}
        }
        hour += Duration::hours(1);
    }
    (missing, stale)
}

impl OverviewMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoInner> {
        // A panic while holding it leaves counts, not a broken invariant.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What to read for `[from, to)`; forgets hours before `from`.
    fn plan(
        &self,
        key: &ScopeKey,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> (Option<HourRange>, Option<HourRange>) {
        let mut inner = self.lock();
        if let Some(hours) = inner.scopes.get_mut(key) {
            hours.retain(|hour, _| *hour >= from);
        }
        let fresh_after = Instant::now().checked_sub(PAST_HOUR_FRESH);
        plan(inner.scopes.get(key), from, to, fresh_after)
    }

    fn keep(
        &self,
        key: &ScopeKey,
        read: &BTreeMap<OffsetDateTime, Vec<(String, i64)>>,
        at: Instant,
    ) {
        let mut inner = self.lock();
        if !inner.scopes.contains_key(key) && inner.scopes.len() >= MEMO_SCOPES {
            inner.scopes.clear();
        }
        let hours = inner.scopes.entry(key.clone()).or_default();
        for (hour, counts) in read {
            hours.insert(
                *hour,
                PastHour {
                    read_at: at,
                    counts: counts.clone(),
                },
            );
        }
    }

    /// Whether this caller should refresh `part` of `key` (nobody else is).
    fn start_refresh(&self, key: &ScopeKey, part: Part) -> bool {
        self.lock().refreshing.insert((key.clone(), part))
    }

    fn end_refresh(&self, key: &ScopeKey, part: Part) {
        self.lock().refreshing.remove(&(key.clone(), part));
    }

    /// The links tile of `key` and when it was read.
    fn links(&self, key: &ScopeKey) -> Option<(Instant, LinkCounts)> {
        self.lock().links.get(key).copied()
    }

    fn keep_links(&self, key: &ScopeKey, counts: LinkCounts, at: Instant) {
        let mut inner = self.lock();
        if !inner.links.contains_key(key) && inner.links.len() >= MEMO_SCOPES {
            inner.links.clear();
        }
        inner.links.insert(key.clone(), (at, counts));
    }

    /// `(hour, outcome, lookups)` of `[from, to)` as held, `read` taking precedence.
    fn collect(
        &self,
        key: &ScopeKey,
        from: OffsetDateTime,
        to: OffsetDateTime,
        read: Option<&BTreeMap<OffsetDateTime, Vec<(String, i64)>>>,
    ) -> Vec<(OffsetDateTime, String, i64)> {
        let inner = self.lock();
        let held = inner.scopes.get(key);
        let mut out = Vec::new();
        let mut hour = from;
        while hour < to {
            let counts = read
                .and_then(|r| r.get(&hour))
                .or_else(|| held.and_then(|h| h.get(&hour)).map(|p| &p.counts));
            for (outcome, n) in counts.into_iter().flatten() {
                out.push((hour, outcome.clone(), *n));
            }
            hour += Duration::hours(1);
        }
        out
    }
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
pub fn first_hour(now: OffsetDateTime) -> OffsetDateTime {
    let hour = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now);
    hour - Duration::hours(23)
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
pub fn like_escape(text: &str) -> String {
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
pub const SITE_EVENTS: i64 = 50;

impl Store {
    /// The fleet overview for `scope` at `now`; the completed hours of the lookups chart and
    /// the links tile come through `memo` (see [`OverviewMemo`]), the rest is read now.
    pub async fn overview(
        &self,
        scope: &SiteScope,
        now: OffsetDateTime,
        memo: &OverviewMemo,
    ) -> Result<Overview, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let in_scope = |column: &str| SiteScope::sql(column, 1, 2);
        let from = first_hour(now);
        let current = from + Duration::hours(23);
        let to = current + Duration::hours(1);
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
        let lookups_sql = format!(
            "SELECT coalesce(body->>'outcome', 'unknown'),
                    count(*) FILTER (WHERE occurred_at >= $3),
                    count(*) FILTER (WHERE occurred_at > $4 AND occurred_at <= $5)
             FROM events
             WHERE kind = 'lookup' AND occurred_at > $4 AND occurred_at < $6 AND {}
             GROUP BY 1 ORDER BY 1",
            in_scope("site_code")
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
        let lookup_params: [Param; 6] = [&prefectures, &sites, &current, &hour_ago, &now, &to];
        let certificate_params: [Param; 4] = [&prefectures, &sites, &now, &soon];
        // One connection with the queries pipelined, beside the memo's parts on their own.
        let counts = async {
            tokio::try_join!(
                client.query_one(&sites_sql, &scoped),
                client.query(&availability_sql, &scoped),
                client.query_one(&readers_sql, &scoped),
                client.query_opt(&lag_sql, &scoped),
                client.query_one(&alerts_sql, &scoped),
                client.query(&lookups_sql, &lookup_params),
                client.query_one(&certificates_sql, &certificate_params),
                client.query(&rollouts_sql, &scoped),
            )
            .map_err(StoreError::from)
        };
        let (
            (sites_row, availability, readers, lag, alerts, lookups, certs, rollouts),
            mut by_hour,
            (links_down, links_degraded),
        ) = tokio::try_join!(
            counts,
            self.past_lookup_hours(memo, scope, from, current),
            self.link_counts(memo, scope, now),
        )?;
        let mut last_hour: Vec<(String, i64)> = Vec::new();
        for r in &lookups {
            let outcome: String = r.get(0);
            let (this_hour, recent): (i64, i64) = (r.get(1), r.get(2));
            if this_hour > 0 {
                by_hour.push((current, outcome.clone(), this_hour));
            }
            if recent > 0 {
                last_hour.push((outcome, recent));
            }
        }
        last_hour.sort();
        Ok(Overview {
            sites: sites_row.get(0),
            availability: availability.iter().map(|r| (r.get(0), r.get(1))).collect(),
            readers_down: readers.get(0),
            sites_with_readers_down: readers.get(1),
            links_down,
            links_degraded,
            outbox_lag: lag.as_ref().map_or(0, |r| r.get(2)),
            worst_lag: lag
                .as_ref()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .filter(|(_, n)| *n > 0),
            open_alerts: alerts.get(0),
            unacknowledged_alerts: alerts.get(1),
            lookups_last_hour: last_hour,
            lookups_by_hour: by_hour,
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

    /// Lookups per hour and outcome over the completed hours `[from, to)`, every hour of the
    /// range present (empty when it had none).
    async fn read_lookup_hours(
        &self,
        (prefectures, sites): &ScopeKey,
        (from, to): HourRange,
    ) -> Result<BTreeMap<OffsetDateTime, Vec<(String, i64)>>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT date_trunc('hour', occurred_at), coalesce(body->>'outcome', 'unknown'),
                            count(*)
                     FROM events
                     WHERE kind = 'lookup' AND occurred_at >= $3 AND occurred_at < $4 AND {}
                     GROUP BY 1, 2 ORDER BY 1, 2",
                    SiteScope::sql("site_code", 1, 2)
                ),
                &[prefectures, sites, &from, &to],
            )
            .await?;
        let mut hours = BTreeMap::new();
        let mut hour = from;
        while hour < to {
            hours.insert(hour, Vec::new());
            hour += Duration::hours(1);
        }
        for r in &rows {
            hours
                .entry(r.get(0))
                .or_insert_with(Vec::new)
                .push((r.get(1), r.get(2)));
        }
        Ok(hours)
    }

    /// The completed hours `[from, to)` of the lookups chart for `scope`, through `memo`.
    async fn past_lookup_hours(
        &self,
        memo: &OverviewMemo,
        scope: &SiteScope,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, String, i64)>, StoreError> {
        let key = scope.params();
        let (missing, stale) = memo.plan(&key, from, to);
        let mut read = None;
        if let Some(range) = missing {
            let started = Instant::now();
            let hours = self.read_lookup_hours(&key, range).await?;
            memo.keep(&key, &hours, started);
            read = Some(hours);
        } else if let Some(range) = stale
            && memo.start_refresh(&key, Part::PastHours)
        {
            let (store, memo, key) = (self.clone(), memo.clone(), key.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                match store.read_lookup_hours(&key, range).await {
                    Ok(hours) => memo.keep(&key, &hours, started),
                    Err(error) => tracing::warn!(%error, "refreshing the lookups chart failed"),
                }
                memo.end_refresh(&key, Part::PastHours);
            });
        }
        Ok(memo.collect(&key, from, to, read.as_ref()))
    }

    /// Links (each site with an agent × national, central, terminal) whose latest report says
    /// down, and degraded, at `now`.
    async fn read_link_counts(
        &self,
        (prefectures, sites): &ScopeKey,
        now: OffsetDateTime,
    ) -> Result<LinkCounts, StoreError> {
        let recent = now - RECENT_LINKS;
        let row = self
            .conn()
            .await?
            .query_one(
                &format!(
                    "WITH pairs AS (
                         SELECT s.site_code, t.target
                         FROM (SELECT DISTINCT site_code FROM agent_streams WHERE {}) s
                         CROSS JOIN (VALUES ('onshi'), ('central'), ('terminal')) t (target)),
                     recent AS MATERIALIZED (
                         SELECT p.site_code, p.target, l.state FROM pairs p
                         LEFT JOIN LATERAL (
                             SELECT e.body->>'state' AS state FROM events e
                             WHERE e.site_code = p.site_code AND e.kind = 'link_change'
                               AND e.body->>'target' = p.target AND e.occurred_at >= $3
                             ORDER BY e.occurred_at DESC LIMIT 1) l ON true),
                     older AS (
                         SELECT l.state FROM recent r
                         CROSS JOIN LATERAL (
                             SELECT e.body->>'state' AS state FROM events e
                             WHERE e.site_code = r.site_code AND e.kind = 'link_change'
                               AND e.body->>'target' = r.target AND e.occurred_at < $3
                             ORDER BY e.occurred_at DESC LIMIT 1) l
                         WHERE r.state IS NULL)
                     SELECT count(*) FILTER (WHERE state = 'down'),
                            count(*) FILTER (WHERE state = 'degraded')
                     FROM (SELECT state FROM recent WHERE state IS NOT NULL
                           UNION ALL SELECT state FROM older) latest",
                    SiteScope::sql("site_code", 1, 2)
                ),
                &[prefectures, sites, &recent],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// The links tile for `scope`, through `memo`.
    async fn link_counts(
        &self,
        memo: &OverviewMemo,
        scope: &SiteScope,
        now: OffsetDateTime,
    ) -> Result<LinkCounts, StoreError> {
        let key = scope.params();
        match memo.links(&key) {
            None => {
                let started = Instant::now();
                let counts = self.read_link_counts(&key, now).await?;
                memo.keep_links(&key, counts, started);
                Ok(counts)
            }
            Some((read_at, counts)) => {
                if read_at.elapsed() > LINKS_FRESH && memo.start_refresh(&key, Part::Links) {
                    let (store, memo, key) = (self.clone(), memo.clone(), key.clone());
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let now = OffsetDateTime::now_utc();
                        match store.read_link_counts(&key, now).await {
                            Ok(counts) => memo.keep_links(&key, counts, started),
                            Err(error) => {
                                tracing::warn!(%error, "refreshing the links tile failed")
                            }
                        }
                        memo.end_refresh(&key, Part::Links);
                    });
                }
                Ok(counts)
            }
        }
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

    fn hours(from: OffsetDateTime, n: i64) -> Vec<OffsetDateTime> {
        (0..n).map(|i| from + Duration::hours(i)).collect()
    }

    #[test]
    fn missing_hours_are_read_and_old_ones_refreshed_as_one_range_each() {
        let from = datetime!(2026-12-01 06:00 UTC);
        let to = from + Duration::hours(23);
        assert_eq!(plan(None, from, to, None), (Some((from, to)), None));
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(1);
        let mut held: BTreeMap<OffsetDateTime, PastHour> = hours(from, 22)
            .into_iter()
            .map(|h| {
                (
                    h,
                    PastHour {
                        read_at: later,
                        counts: vec![],
                    },
                )
            })
            .collect();
        // The hour that just ended is missing.
        let last = to - Duration::hours(1);
        assert_eq!(
            plan(Some(&held), from, to, Some(now)),
            (Some((last, to)), None)
        );
        // Two hours read long ago: one range from the first to after the second.
        held.insert(
            last,
            PastHour {
                read_at: later,
                counts: vec![],
            },
        );
        for h in [from + Duration::hours(2), from + Duration::hours(5)] {
            held.get_mut(&h).unwrap().read_at = now;
        }
        let fresh_after = Some(now + std::time::Duration::from_millis(500));
        assert_eq!(
            plan(Some(&held), from, to, fresh_after),
            (
                None,
                Some((from + Duration::hours(2), from + Duration::hours(6)))
            )
        );
        assert_eq!(plan(Some(&held), from, to, Some(now)), (None, None));
    }

    #[test]
    fn the_memo_serves_what_it_read_and_forgets_hours_before_the_chart() {
        let memo = OverviewMemo::default();
        let key: ScopeKey = (Some(vec!["13".into()]), Some(vec![]));
        let from = datetime!(2026-12-01 06:00 UTC);
        let read: BTreeMap<_, _> = hours(from, 3)
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    h,
                    if i == 1 {
                        vec![]
                    } else {
                        vec![("valid".to_string(), i as i64 + 1)]
                    },
                )
            })
            .collect();
        memo.keep(&key, &read, Instant::now());
        let to = from + Duration::hours(3);
        assert_eq!(memo.plan(&key, from, to), (None, None));
        assert_eq!(
            memo.collect(&key, from, to, None),
            vec![
                (from, "valid".to_string(), 1),
                (from + Duration::hours(2), "valid".to_string(), 3)
            ]
        );
        // Another scope sees nothing of it.
        assert_eq!(memo.plan(&(None, None), from, to), (Some((from, to)), None));
        // An hour later the first hour is gone and the new one missing.
        let (next_from, next_to) = (from + Duration::hours(1), to + Duration::hours(1));
        assert_eq!(
            memo.plan(&key, next_from, next_to),
            (Some((to, next_to)), None)
        );
        assert_eq!(memo.collect(&key, from, to, None).len(), 1);
        assert!(memo.start_refresh(&key, Part::PastHours));
        assert!(!memo.start_refresh(&key, Part::PastHours));
        assert!(memo.start_refresh(&key, Part::Links));
        memo.end_refresh(&key, Part::PastHours);
        assert!(memo.start_refresh(&key, Part::PastHours));
        // The links tile, per scope.
        assert_eq!(memo.links(&key), None);
        let at = Instant::now();
        memo.keep_links(&key, (2, 1), at);
        assert_eq!(memo.links(&key), Some((at, (2, 1))));
        assert_eq!(memo.links(&(None, None)), None);
    }
}
