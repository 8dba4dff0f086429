//! Agent version rollouts: created through the API, driven by the maintenance task.
//!
//! One controller pass ([`Store::step_rollouts`], under an advisory lock) per running rollout:
//! put the chain's sites in waves (once, `onshi_domain::rollout::assign`); target the current
//! wave's sites (while each is closed, unless the window is `any`); count a targeted site as
//! applied once its agent says hello with the target version, as failed when it has not within
//! the apply timeout; when the whole wave is done and soaked, check the gates and advance,
//! complete, pause or roll back. Every transition is a `rollout_transitions` row. Ingest tells
//! each agent its target (`Store::update_target`) after Welcome and at heartbeats.

use super::Tx;
use onshi_domain::rollout::{self, Gates, Health, Wave, WaveState};
use onshi_domain::site::SiteCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::scope::SiteScope;
use super::{Store, StoreError};

/// Names the rollout controller among PostgreSQL advisory locks.
const ROLLOUT_LOCK: i64 = 0x6f6e_7368_6952_6f6c; // "onshiRol"

/// What chain IT asks for (`POST /api/v1/rollouts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    pub target_version: String,
    pub waves: Vec<Wave>,
    #[serde(default)]
    pub gates: Gates,
    /// `outside_opening_hours` (default) or `any`.
    #[serde(default = "default_window")]
    pub window: String,
    /// `pause` (default) or `rollback`.
    #[serde(default = "default_on_failure")]
    pub on_gate_failure: String,
    /// Seconds a wave runs on the new version before its gates are checked.
    #[serde(default = "default_soak")]
    pub soak_secs: i32,
    /// Seconds a targeted site has to come back with the target version.
    #[serde(default = "default_apply_timeout")]
    pub apply_timeout_secs: i32,
}

fn default_window() -> String {
    "outside_opening_hours".into()
}
fn default_on_failure() -> String {
    "pause".into()
}
fn default_soak() -> i32 {
    3600
}
fn default_apply_timeout() -> i32 {
    86_400
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutSite {
    pub site_code: String,
    pub wave: i32,
    pub previous_version: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from_state: Option<String>,
    pub to_state: String,
    /// 1-based, as chain IT counts waves.
    pub wave: i32,
    pub reason: String,
    pub actor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub target_version: String,
    pub state: String,
    /// 1-based.
    pub current_wave: i32,
    pub waves: serde_json::Value,
    pub gates: serde_json::Value,
    pub window: String,
    pub on_gate_failure: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub sites: Vec<RolloutSite>,
    pub transitions: Vec<Transition>,
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Rollback,
}

impl Action {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "rollback" => Some(Self::Rollback),
            _ => None,
        }
    }
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::BadQuery(message.into())
}

async fn transition(
    tx: &Tx<'_>,
    rollout: i64,
    from: Option<&str>,
    to: &str,
    wave: i32,
    reason: &str,
    actor: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO rollout_transitions (rollout_id, from_state, to_state, wave, reason, actor)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&rollout, &from, &to, &(wave + 1), &reason, &actor],
    )
    .await?;
    if from != Some(to) {
        tx.execute(
            "UPDATE rollouts SET state = $2 WHERE id = $1",
            &[&rollout, &to],
        )
        .await?;
    }
    Ok(())
}

impl Store {
    /// Starts a rollout at `now`; its sites are put in waves at the controller's next pass.
    pub async fn create_rollout(
        &self,
        new: &NewRollout,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        if new.target_version.trim().is_empty() || new.target_version.len() > 64 {
            return Err(bad(
                "target_version names the agent version to roll out (1 to 64 characters)",
            ));
        }
        rollout::check_plan(&new.waves).map_err(|e| bad(e.to_string()))?;
        if !["outside_opening_hours", "any"].contains(&new.window.as_str()) {
            return Err(bad("window is outside_opening_hours or any"));
        }
        if !["pause", "rollback"].contains(&new.on_gate_failure.as_str()) {
            return Err(bad("on_gate_failure is pause or rollback"));
        }
        if new.soak_secs < 0 || new.apply_timeout_secs <= 0 {
            return Err(bad(
                "soak_secs is 0 or more and apply_timeout_secs more than 0",
            ));
        }
        let waves = serde_json::to_value(&new.waves).map_err(|e| bad(e.to_string()))?;
        let gates = serde_json::to_value(new.gates).map_err(|e| bad(e.to_string()))?;
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let running: Option<i64> = tx
            .query_opt(
                "SELECT id FROM rollouts WHERE state IN ('running', 'paused') LIMIT 1",
                &[],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(id) = running {
            return Err(bad(format!(
                "rollout {id} is still running or paused; complete or roll it back first"
            )));
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO rollouts (target_version, waves, gates, update_window, on_gate_failure,
                                       soak_secs, apply_timeout_secs, state, created_by,
                                       wave_started_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $9) RETURNING id",
                &[
                    &new.target_version,
                    &waves,
                    &gates,
                    &new.window,
                    &new.on_gate_failure,
                    &new.soak_secs,
                    &new.apply_timeout_secs,
                    &by,
                    &now,
                ],
            )
            .await?
            .get(0);
        transition(&tx, id, None, "running", 0, "started", by).await?;
        super::audit_admin(
            &tx,
            None,
            &format!(
                "{by} started rollout {id} of agent version {}",
                new.target_version
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Pauses, resumes or rolls back a rollout (the operator's actions).
    pub async fn act_on_rollout(
        &self,
        id: i64,
        action: Action,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT state, current_wave FROM rollouts WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .ok_or_else(|| bad(format!("there is no rollout {id}")))?;
        let (state, wave): (String, i32) = (row.get(0), row.get(1));
        let to = match (action, state.as_str()) {
            (Action::Pause, "running") => "paused",
            (Action::Resume, "paused") => "running",
            (Action::Rollback, "running" | "paused") => "rolled_back",
            _ => {
                return Err(bad(format!(
                    "rollout {id} is {state}: it cannot be {}",
                    match action {
                        Action::Pause => "paused",
                        Action::Resume => "resumed",
                        Action::Rollback => "rolled back",
                    }
                )));
            }
        };
        if to == "rolled_back" {
            roll_back_sites(&tx, id).await?;
        }
        transition(&tx, id, Some(&state), to, wave, "operator action", by).await?;
        super::audit_admin(
            &tx,
            None,
            &format!("{by} moved rollout {id} from {state} to {to}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rollouts, newest first, each with its sites and transitions.
    /// Rollouts, newest first (at most 50), each with its sites in `scope` only: an area
    /// manager sees the rollouts that touch their sites and none of the others' sites.
    pub async fn rollouts(
        &self,
        id: Option<i64>,
        scope: &SiteScope,
    ) -> Result<Vec<RolloutView>, StoreError> {
        let (prefectures, sites_in_scope) = scope.params();
        let client = self.conn().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, target_version, state, current_wave, waves, gates, update_window,
                            on_gate_failure, created_by, created_at
                     FROM rollouts r
                     WHERE ($1::bigint IS NULL OR id = $1)
                       AND ($2::text[] IS NULL OR EXISTS (
                             SELECT 1 FROM rollout_sites s
                             WHERE s.rollout_id = r.id AND {}))
                     ORDER BY id DESC LIMIT 50",
                    SiteScope::sql("s.site_code", 2, 3)
                ),
                &[&id, &prefectures, &sites_in_scope],
            )
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            let sites = client
                .query(
                    &format!(
                        "SELECT site_code, wave, previous_version, state FROM rollout_sites
                         WHERE rollout_id = $1 AND {} ORDER BY wave, site_code",
                        SiteScope::sql("site_code", 2, 3)
                    ),
                    &[&id, &prefectures, &sites_in_scope],
                )
                .await?
                .iter()
                .map(|s| RolloutSite {
                    site_code: s.get(0),
                    wave: s.get::<_, i32>(1) + 1,
                    previous_version: s.get(2),
                    state: s.get(3),
                })
                .collect();
            let transitions = client
                .query(
                    "SELECT at, from_state, to_state, wave, reason, actor FROM rollout_transitions
                     WHERE rollout_id = $1 ORDER BY id",
                    &[&id],
                )
                .await?
                .iter()
                .map(|t| Transition {
                    at: t.get(0),
                    from_state: t.get(1),
                    to_state: t.get(2),
                    wave: t.get(3),
                    reason: t.get(4),
                    actor: t.get(5),
                })
                .collect();
            views.push(RolloutView {
                id,
                target_version: r.get(1),
                state: r.get(2),
                current_wave: r.get::<_, i32>(3) + 1,
                waves: r.get(4),
                gates: r.get(5),
                window: r.get(6),
                on_gate_failure: r.get(7),
                created_by: r.get(8),
                created_at: r.get(9),
                sites,
                transitions,
            });
        }
        Ok(views)
    }

    /// The version `site`'s agent should run now, and the rollout that says so: the target of
    /// a rollout that targeted it, or its previous version after a rollback.
    pub async fn update_target(
        &self,
        site: &SiteCode,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let client = self.conn().await?;
        Ok(client
            .query_opt(
                "SELECT r.id, CASE WHEN s.state = 'rolled_back' THEN s.previous_version
                                   ELSE r.target_version END
                 FROM rollout_sites s JOIN rollouts r ON r.id = s.rollout_id
                 WHERE s.site_code = $1 AND s.state IN ('targeted', 'applied', 'failed', 'rolled_back')
                 ORDER BY r.id DESC LIMIT 1",
                &[&site.as_str()],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// One controller pass at `now` over every running rollout (see the module documentation).
    pub async fn step_rollouts(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        if !tx.try_lock(ROLLOUT_LOCK).await? {
            return Ok(());
        }
        let running = tx
            .query(
                "SELECT id, target_version, waves, gates, update_window, on_gate_failure,
                        soak_secs, apply_timeout_secs, current_wave, wave_started_at, wave_applied_at
                 FROM rollouts WHERE state = 'running' FOR UPDATE",
                &[],
            )
            .await?;
        for r in running {
            let id: i64 = r.get(0);
            let target: String = r.get(1);
            let waves: Vec<Wave> = serde_json::from_value(r.get(2))
                .map_err(|e| StoreError::Corrupt(format!("rollout {id} waves: {e}")))?;
            let gates: Gates = serde_json::from_value(r.get(3))
                .map_err(|e| StoreError::Corrupt(format!("rollout {id} gates: {e}")))?;
            let window: String = r.get(4);
            let on_failure: String = r.get(5);
            let soak = time::Duration::seconds(i64::from(r.get::<_, i32>(6)));
            let apply_timeout = time::Duration::seconds(i64::from(r.get::<_, i32>(7)));
            let wave: i32 = r.get(8);
            let wave_started: OffsetDateTime = r.get(9);
            let wave_applied: Option<OffsetDateTime> = r.get(10);

            assign_sites(&tx, id, &waves).await?;
            target_wave(&tx, id, wave, &window, now).await?;
            // Applied: the agent came back with the target version; failed: not in time.
            tx.execute(
                "UPDATE rollout_sites s SET state = 'applied', reported_at = $3
                 FROM agent_streams a
                 WHERE s.rollout_id = $1 AND s.state = 'targeted' AND a.site_code = s.site_code
                   AND a.agent_version = $2
                   AND a.last_seen_at = (SELECT max(last_seen_at) FROM agent_streams b
                                         WHERE b.site_code = s.site_code)",
                &[&id, &target, &now],
            )
            .await?;
            tx.execute(
                "UPDATE rollout_sites SET state = 'failed', reported_at = $3
                 WHERE rollout_id = $1 AND state = 'targeted' AND targeted_at <= $2",
                &[&id, &(now - apply_timeout), &now],
            )
            .await?;
            let open: i64 = tx
                .query_one(
                    "SELECT count(*) FROM rollout_sites
                     WHERE rollout_id = $1 AND wave = $2 AND state IN ('pending', 'targeted')",
                    &[&id, &wave],
                )
                .await?
                .get(0);
            if open > 0 {
                continue;
            }
            let Some(applied_at) = wave_applied else {
                tx.execute(
                    "UPDATE rollouts SET wave_applied_at = $2 WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
                continue;
            };
            if now - applied_at < soak {
                continue;
            }
            // Soaked: the same sites after the wave against as long a time before it.
            let after_len = now - applied_at;
            let before = wave_health(&tx, id, wave, wave_started - after_len, wave_started).await?;
            let after = wave_health(&tx, id, wave, applied_at, now).await?;
            let state = wave_state(&tx, id, wave).await?;
            let verdict = rollout::check_gates(&gates, &before, &after, &state);
            let last = wave as usize + 1 >= waves.len();
            if verdict.passed {
                let mut reason = format!("wave {} passed its gates", wave + 1);
                if !verdict.notes.is_empty() {
                    reason.push_str(&format!(" ({})", verdict.notes.join("; ")));
                }
                if last {
                    transition(
                        &tx,
                        id,
                        Some("running"),
                        "completed",
                        wave,
                        &reason,
                        "controller",
                    )
                    .await?;
                } else {
                    tx.execute(
                        "UPDATE rollouts SET current_wave = current_wave + 1,
                             wave_started_at = $2, wave_applied_at = NULL WHERE id = $1",
                        &[&id, &now],
                    )
                    .await?;
                    transition(
                        &tx,
                        id,
                        Some("running"),
                        "running",
                        wave + 1,
                        &reason,
                        "controller",
                    )
                    .await?;
                }
            } else {
                let reason = format!(
                    "wave {} failed its gates: {}",
                    wave + 1,
                    verdict.failures.join("; ")
                );
                tracing::warn!(rollout = id, %reason, "rollout stopped by a gate");
                let to = if on_failure == "rollback" {
                    roll_back_sites(&tx, id).await?;
                    "rolled_back"
                } else {
                    "paused"
                };
                transition(&tx, id, Some("running"), to, wave, &reason, "controller").await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Puts every site central knows into the rollout's waves, once.
async fn assign_sites(tx: &Tx<'_>, id: i64, waves: &[Wave]) -> Result<(), StoreError> {
    let assigned: i64 = tx
        .query_one(
            "SELECT count(*) FROM rollout_sites WHERE rollout_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if assigned > 0 {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT DISTINCT ON (site_code) site_code, agent_version FROM agent_streams
             ORDER BY site_code, last_seen_at DESC",
            &[],
        )
        .await?;
    let sites: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for (site, wave) in rollout::assign(id, waves, &sites) {
        let previous: String = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == site)
            .map(|r| r.get(1))
            .unwrap_or_default();
        tx.execute(
            "INSERT INTO rollout_sites (rollout_id, site_code, wave, previous_version, state)
             VALUES ($1, $2, $3, $4, 'pending')",
            &[&id, &site, &(wave as i32), &previous],
        )
        .await?;
    }
    Ok(())
}

/// Targets the wave's pending sites, each only while it is closed unless the window is `any`.
async fn target_wave(
    tx: &Tx<'_>,
    id: i64,
    wave: i32,
    window: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let pending = tx
        .query(
            "SELECT s.site_code, coalesce(h.hours, c.hours)
             FROM rollout_sites s
             LEFT JOIN opening_hours h ON h.scope = s.site_code
             LEFT JOIN opening_hours c ON c.scope = '*'
             WHERE s.rollout_id = $1 AND s.wave = $2 AND s.state = 'pending'",
            &[&id, &wave],
        )
        .await?;
    for row in pending {
        let site: String = row.get(0);
        if window != "any" {
            let hours = super::availability::hours_from(row.get(1))?;
            if hours.is_open(now).unwrap_or(true) {
                continue; // its turn comes when it closes
            }
        }
        tx.execute(
            "UPDATE rollout_sites SET state = 'targeted', targeted_at = $3
             WHERE rollout_id = $1 AND site_code = $2",
            &[&id, &site, &now],
        )
        .await?;
    }
    Ok(())
}

/// Sends every site the rollout reached back to its previous version.
async fn roll_back_sites(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE rollout_sites SET state = 'rolled_back'
         WHERE rollout_id = $1 AND state IN ('targeted', 'applied', 'failed')",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Lookups and card checks of the wave's sites in [from, to).
async fn wave_health(
    tx: &Tx<'_>,
    id: i64,
    wave: i32,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Health, StoreError> {
    let row = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE e.kind = 'lookup'),
                    count(*) FILTER (WHERE e.kind = 'lookup'
                                       AND e.body->>'outcome' IN ('valid', 'invalid', 'not_found')),
                    count(*) FILTER (WHERE e.kind = 'card_check'),
                    count(*) FILTER (WHERE e.kind = 'card_check' AND e.body->>'result' = 'reader_error')
             FROM events e JOIN rollout_sites s ON s.site_code = e.site_code
             WHERE s.rollout_id = $1 AND s.wave = $2
               AND e.kind IN ('lookup', 'card_check')
               AND e.occurred_at >= $3 AND e.occurred_at < $4",
            &[&id, &wave, &from, &to],
        )
        .await?;
    Ok(Health {
        lookups: row.get(0),
        lookups_ok: row.get(1),
        card_checks: row.get(2),
        reader_errors: row.get(3),
    })
}

/// The wave's sites now: how many, failed to apply, offline (not online while open), backlog.
async fn wave_state(tx: &Tx<'_>, id: i64, wave: i32) -> Result<WaveState, StoreError> {
    let row = tx
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE s.state = 'failed'),
                    count(*) FILTER (WHERE v.underlying IS NOT NULL AND v.underlying <> 'online'),
                    coalesce(max(greatest(a.last_produced_sequence - a.contiguous_sequence, 0)), 0)
             FROM rollout_sites s
             LEFT JOIN site_availability v ON v.site_code = s.site_code
             LEFT JOIN LATERAL (SELECT last_produced_sequence, contiguous_sequence
                                FROM agent_streams WHERE site_code = s.site_code
                                ORDER BY last_seen_at DESC LIMIT 1) a ON true
             WHERE s.rollout_id = $1 AND s.wave = $2",
            &[&id, &wave],
        )
        .await?;
    Ok(WaveState {
        sites: row.get(0),
        failed: row.get(1),
        offline: row.get(2),
        max_backlog: row.get(3),
    })
}
