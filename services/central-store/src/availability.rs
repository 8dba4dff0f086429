//! Is the site really offline? Opening hours, session presence and the verdict per site.
//!
//! Ingest records each session's start and how it ended (`agent_presence`); chain IT sets
//! opening hours (`opening_hours`, the chain default under scope `*`); the maintenance task
//! reads those, the agent's latest report on its way to the national system (its national
//! link probe in direct mode, the qualification terminal's health, link target `terminal`, in
//! terminal mode: whichever came last) and its latest inventory, classifies
//! every site (`onshi_domain::availability::classify`) into `site_availability`, and the alert
//! checker opens a `site_unavailable` alert only for a site that is open and not online.

use std::time::Duration;

use onshi_domain::availability::{self, Availability, SessionEnd, Signals, State};
use onshi_domain::events::StreamId;
use onshi_domain::hours::OpeningHours;
use onshi_domain::site::SiteCode;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::scope::SiteScope;
use super::{Store, StoreError};

/// Names the availability check among PostgreSQL advisory locks.
const AVAILABILITY_LOCK: i64 = 0x6f6e_7368_6941_7661; // "onshiAva"
const CHAIN_SCOPE: &str = "*";

/// Which opening hours apply to a site, and where they come from.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveHours {
    /// `site` (its own), `chain` (the chain default chain IT set) or `built_in`.
    pub source: &'static str,
    pub hours: OpeningHours,
}

/// One site's verdict, as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteAvailability {
    pub site_code: String,
    pub state: String,
    pub underlying: String,
    pub label: String,
    pub alerting: bool,
    pub open_now: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    pub detail: String,
}

impl Store {
    /// A session of `site` started (it now holds the site's presence).
    pub async fn session_opened(
        &self,
        site: &SiteCode,
        stream: StreamId,
        session: Uuid,
    ) -> Result<(), StoreError> {
        let client = self.conn().await?;
        client
            .execute(
                "INSERT INTO agent_presence (site_code, stream_id, session_id, connected)
                 VALUES ($1, $2, $3, true)
                 ON CONFLICT (site_code) DO UPDATE SET stream_id = EXCLUDED.stream_id,
                     session_id = EXCLUDED.session_id, connected = true, ended = NULL,
                     changed_at = now()",
                &[&site.as_str(), &stream.0, &session],
            )
            .await?;
        Ok(())
    }

    /// `session` of `site` ended; nothing changes if a newer session already took over.
    pub async fn session_ended(
        &self,
        site: &SiteCode,
        session: Uuid,
        end: SessionEnd,
    ) -> Result<(), StoreError> {
        let ended = match end {
            SessionEnd::Prompt => "prompt",
            SessionEnd::Silent => "silent",
        };
        let client = self.conn().await?;
        client
            .execute(
                "UPDATE agent_presence SET connected = false, ended = $3, changed_at = now()
                 WHERE site_code = $1 AND session_id = $2",
                &[&site.as_str(), &session, &ended],
            )
            .await?;
        Ok(())
    }

    /// Sets the opening hours of `site`, or the chain default (`None`); audited.
    pub async fn set_opening_hours(
        &self,
        site: Option<&SiteCode>,
        hours: &OpeningHours,
        by: &str,
    ) -> Result<(), StoreError> {
        let scope = site.map_or(CHAIN_SCOPE, SiteCode::as_str);
        let json = serde_json::to_value(hours).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO opening_hours (scope, hours, set_by) VALUES ($1, $2, $3)
             ON CONFLICT (scope) DO UPDATE SET hours = EXCLUDED.hours, set_by = EXCLUDED.set_by,
                 set_at = now()",
            &[&scope, &json, &by],
        )
        .await?;
        let what = site.map_or("the chain default".to_string(), |s| format!("site {s}"));
        super::audit_admin(
            &tx,
            site.map(SiteCode::as_str),
            &format!("opening hours of {what} set by {by}: {json}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The opening hours that apply to `site`.
    pub async fn opening_hours(&self, site: &SiteCode) -> Result<EffectiveHours, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                "SELECT scope, hours FROM opening_hours WHERE scope IN ($1, '*')
                 ORDER BY scope = '*' LIMIT 1",
                &[&site.as_str()],
            )
            .await?;
        Ok(match row {
            None => EffectiveHours {
                source: "built_in",
                hours: OpeningHours::chain_default(),
            },
            Some(row) => EffectiveHours {
                source: if row.get::<_, String>(0) == CHAIN_SCOPE {
                    "chain"
                } else {
                    "site"
                },
                hours: hours_from(Some(row.get(1)))?,
            },
        })
    }

    /// Classifies every site at `now` into `site_availability` (see the module documentation).
    /// `silence`: how long a connected session may say nothing before it counts as gone.
    pub async fn check_availability(
        &self,
        now: OffsetDateTime,
        silence: Duration,
    ) -> Result<usize, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(AVAILABILITY_LOCK).await? {
            return Ok(0);
        }
        let chain_default = match tx
            .query_opt("SELECT hours FROM opening_hours WHERE scope = '*'", &[])
            .await?
        {
            Some(row) => hours_from(Some(row.get(0)))?,
            None => OpeningHours::chain_default(),
        };
        // Per site: its latest stream, presence, own hours, its latest report on its way to the
        // national system (the national probe in direct mode, the terminal's health in
        // terminal mode: whichever came last, so a site that changed mode is read in its
        // current one), whether it ever had a reader, and how many readers its latest
        // inventory shows present.
        let rows = tx
            .query(
                "WITH latest AS (
                     SELECT DISTINCT ON (site_code) site_code, stream_id, last_seen_at
                     FROM agent_streams ORDER BY site_code, last_seen_at DESC)
                 SELECT l.site_code, l.stream_id, l.last_seen_at,
                        p.connected, p.ended, h.hours,
                        w.way, w.way_state,
                        EXISTS (SELECT 1 FROM events e
                          WHERE e.site_code = l.site_code AND e.kind = 'reader_change') AS had_reader,
                        (SELECT count(*) FROM agent_inventory i,
                                jsonb_array_elements(i.inventory->'readers') r
                          WHERE i.site_code = l.site_code AND i.stream_id = l.stream_id
                            AND r->>'state' IN ('present_empty', 'card_present')) AS present,
                        EXISTS (SELECT 1 FROM agent_inventory i
                          WHERE i.site_code = l.site_code AND i.stream_id = l.stream_id) AS has_inventory,
                        a.state, a.since
                 FROM latest l
                 LEFT JOIN LATERAL (
                     SELECT e.body->>'target' AS way, e.body->>'state' AS way_state FROM events e
                     WHERE e.site_code = l.site_code AND e.kind = 'link_change'
                       AND e.body->>'target' IN ('onshi', 'terminal')
                     ORDER BY e.occurred_at DESC LIMIT 1) w ON true
                 LEFT JOIN agent_presence p ON p.site_code = l.site_code
                 LEFT JOIN opening_hours h ON h.scope = l.site_code
                 LEFT JOIN site_availability a ON a.site_code = l.site_code",
                &[],
            )
            .await?;
        let silence = time::Duration::try_from(silence).unwrap_or(time::Duration::MAX);
        for row in &rows {
            let site: String = row.get("site_code");
            let stream: Uuid = row.get("stream_id");
            let last_seen: OffsetDateTime = row.get("last_seen_at");
            let presence_connected: Option<bool> = row.get("connected");
            let ended: Option<String> = row.get("ended");
            let hours = match row.get::<_, Option<serde_json::Value>>("hours") {
                Some(json) => hours_from(Some(json))?,
                None => chain_default.clone(),
            };
            let way: Option<String> = row.get("way");
            let way_down = row
                .get::<_, Option<String>>("way_state")
                .map(|s| s == "down");
            let had_reader: bool = row.get("had_reader");
            let present: i64 = row.get("present");
            let has_inventory: bool = row.get("has_inventory");
            let previous: Option<String> = row.get("state");
            let previous_since: Option<OffsetDateTime> = row.get("since");

            let fresh = now - last_seen <= silence;
            let connected = presence_connected == Some(true) && fresh;
            let last_end = match ended.as_deref() {
                Some("silent") => Some(SessionEnd::Silent),
                Some(_) => Some(SessionEnd::Prompt),
                // Connected as far as the presence says, but silent for too long: the
                // session's replica is gone or has not noticed yet; the link is what failed.
                None if presence_connected == Some(true) && !fresh => Some(SessionEnd::Silent),
                None => None,
            };
            let open = hours.is_open(now).unwrap_or(true);
            let verdict = availability::classify(Signals {
                open,
                connected,
                last_end,
                national_down: way_down.filter(|_| way.as_deref() == Some("onshi")),
                terminal_down: way_down.filter(|_| way.as_deref() == Some("terminal")),
                readers_missing: had_reader && has_inventory && present == 0,
            });
            let since = match (&previous, previous_since) {
                (Some(p), Some(since)) if State::parse(p) == Some(verdict.state) => since,
                _ => now,
            };
            let detail = detail(&site, &verdict, last_seen);
            tx.execute(
                "INSERT INTO site_availability
                     (site_code, stream_id, state, underlying, alerting, open_now, since, checked_at, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (site_code) DO UPDATE SET stream_id = EXCLUDED.stream_id,
                     state = EXCLUDED.state, underlying = EXCLUDED.underlying,
                     alerting = EXCLUDED.alerting, open_now = EXCLUDED.open_now,
                     since = EXCLUDED.since, checked_at = EXCLUDED.checked_at,
                     detail = EXCLUDED.detail",
                &[
                    &site,
                    &stream,
                    &verdict.state.as_str(),
                    &verdict.underlying.as_str(),
                    &verdict.alerting,
                    &open,
                    &since,
                    &now,
                    &detail,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Every site's verdict (or one site's), by site code.
    pub async fn availability(
        &self,
        site: Option<&SiteCode>,
        scope: &SiteScope,
    ) -> Result<Vec<SiteAvailability>, StoreError> {
        let client = self.read_conn().await?;
        let (prefectures, sites) = scope.params();
        let rows = client
            .query(
                &format!(
                    "SELECT site_code, state, underlying, alerting, open_now, since, checked_at,
                            detail
                     FROM site_availability WHERE ($1::text IS NULL OR site_code = $1) AND {}
                     ORDER BY site_code",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&site.map(SiteCode::as_str), &prefectures, &sites],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let state: String = r.get(1);
                SiteAvailability {
                    site_code: r.get(0),
                    label: State::parse(&state).map_or("", State::label).to_string(),
                    state,
                    underlying: r.get(2),
                    alerting: r.get(3),
                    open_now: r.get(4),
                    since: r.get(5),
                    checked_at: r.get(6),
                    detail: r.get(7),
                }
            })
            .collect())
    }
}

/// Stored opening hours (`None`: the built-in chain default).
pub(super) fn hours_from(json: Option<serde_json::Value>) -> Result<OpeningHours, StoreError> {
    let Some(json) = json else {
        return Ok(OpeningHours::chain_default());
    };
    serde_json::from_value(json)
        .map_err(|e| StoreError::Corrupt(format!("stored opening hours: {e}")))
}

/// The alert text: what is wrong, in Japanese then English, and since when central knows.
fn detail(site: &str, verdict: &Availability, last_seen: OffsetDateTime) -> String {
    let last = crate::jst::stamp(last_seen);
    match verdict.underlying {
        State::Online => format!("site {site}: online"),
        State::LinkDown => format!(
            "site {site}: {} (nothing heard since {last}; the agent PC may also be hung)",
            verdict.underlying.label()
        ),
        State::AgentDown => format!(
            "site {site}: {} (the agent's connection closed; last heard {last})",
            verdict.underlying.label()
        ),
        State::TerminalNotAnswering => format!(
            "site {site}: {} (端末PCと資格確認端末のソフトが動いているか確認してください / \
             the agent's requests went unanswered past its timeout; check that the terminal PC \
             and its software are running)",
            verdict.underlying.label()
        ),
        other => format!("site {site}: {}", other.label()),
    }
}
