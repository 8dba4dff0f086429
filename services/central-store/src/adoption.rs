//! Each site's adoption checklist (migration 0011): deadlines from the planned start in Japanese
//! business days, steps marked done through the API, and the steps the agent proves by itself
//! (readers present, national link up, a valid terminal certificate, the first production
//! lookup) read from what it reported, with that evidence attached.

use onshi_domain::adoption::{
    AgentEvidence, SiteAdoption, StepKind, StepState, deadlines, site_status, step,
};
use onshi_domain::site::SiteCode;
use serde::Serialize;
use std::collections::HashMap;

use time::{Date, OffsetDateTime};

use super::scope::SiteScope;
use super::{Store, StoreError};

/// One step as the site page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub step: StepKind,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub owner: onshi_domain::adoption::Owner,
    pub deadline: String,
    pub done_on: Option<String>,
    pub evidence: Option<String>,
    /// Whether the agent's own reports advanced it.
    pub by_agent: bool,
}

/// A site's checklist and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptionView {
    pub site_code: String,
    pub planned_start: String,
    pub new_site: bool,
    pub status: SiteAdoption,
    /// The step behind an at-risk or overdue status.
    pub reason: Option<StepKind>,
    pub steps: Vec<StepView>,
    /// The site's grace notifications (猶予届出) active today: not ended, not past their deadline.
    pub grace_notifications: Vec<super::grace::GraceView>,
}

fn step_name(kind: StepKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_step(name: &str) -> Result<StepKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        StoreError::BadQuery(format!(
            "{name:?} is not an adoption step (e.g. usage_application, operation_test)"
        ))
    })
}

fn tokyo_day(at: OffsetDateTime) -> Date {
    at.to_offset(time::macros::offset!(+9)).date()
}

impl Store {
    /// Sets the site's planned start (and whether it is a new site, which adds the reception
    /// number step); audited.
    pub async fn set_adoption_plan(
        &self,
        site: &SiteCode,
        planned_start: Date,
        new_site: bool,
        by: &str,
    ) -> Result<(), StoreError> {
        deadlines(planned_start, new_site).map_err(|e| {
            StoreError::BadQuery(format!("no business-day calendar for that start: {e:?}"))
        })?;
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO site_adoption (site_code, planned_start, new_site, updated_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (site_code) DO UPDATE SET planned_start = EXCLUDED.planned_start,
                 new_site = EXCLUDED.new_site, updated_by = EXCLUDED.updated_by, updated_at = now()",
            &[&site.as_str(), &planned_start, &new_site, &by],
        )
        .await?;
        super::audit_admin(&tx, Some(site.as_str()), &format!("adoption plan of site {site}: start {planned_start} (new site: {new_site}) set by {by}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a step done on `done_on` with its evidence (a document number, a note); audited.
    pub async fn set_adoption_step(
        &self,
        site: &SiteCode,
        step_name_text: &str,
        done_on: Date,
        evidence: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        let kind = parse_step(step_name_text)?;
        if evidence.trim().is_empty() {
            return Err(StoreError::BadQuery(
                "a step marked done needs its evidence (a reference, a document, a note)".into(),
            ));
        }
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO adoption_steps (site_code, step, done_on, evidence, set_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (site_code, step) DO UPDATE SET done_on = EXCLUDED.done_on,
                 evidence = EXCLUDED.evidence, set_by = EXCLUDED.set_by, set_at = now()",
            &[&site.as_str(), &step_name(kind), &done_on, &evidence, &by],
        )
        .await?;
        super::audit_admin(
            &tx,
            Some(site.as_str()),
            &format!(
                "adoption step {} of site {site} done on {done_on} set by {by}",
                step_name(kind)
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the agent first proved each kind of evidence at each of `sites`, with what: the
    /// first reader present, national link up and valid lookup from the summaries ingest
    /// keeps (`store::summaries`), the terminal certificate as it is now (it can expire).
    /// Two queries whatever the number of sites or events.
    async fn agent_proofs(
        &self,
        sites: &[String],
        now: OffsetDateTime,
    ) -> Result<Proofs, StoreError> {
        let client = self.conn().await?;
        let by_site: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&sites];
        let with_now: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&sites, &now];
        let (summaries, certificates) = tokio::try_join!(
            client.query(
                "SELECT site_code, first_reader_at, first_reader_name, first_national_up_at,
                        first_valid_lookup_at
                 FROM site_summaries WHERE site_code = ANY($1)",
                &by_site,
            ),
            client.query(
                "SELECT site_code, min(first_seen_at) AS first_at,
                        'terminal certificate ' || min(sha256_fingerprint) AS what
                 FROM certificates WHERE site_code = ANY($1) AND role = 'terminal'
                   AND retired_at IS NULL AND NOT missing AND not_after > $2
                 GROUP BY site_code",
                &with_now,
            ),
        )?;
        let mut proofs = Proofs::new();
        for row in &summaries {
            let site: String = row.get("site_code");
            let reader: Option<OffsetDateTime> = row.get("first_reader_at");
            if let Some(at) = reader {
                let name: Option<String> = row.get("first_reader_name");
                let what = format!("reader {} present", name.unwrap_or_default());
                proofs.insert((site.clone(), AgentEvidence::ReadersPresent), (at, what));
            }
            let national: Option<OffsetDateTime> = row.get("first_national_up_at");
            if let Some(at) = national {
                proofs.insert(
                    (site.clone(), AgentEvidence::NationalLinkUp),
                    (at, "link to the national system up".into()),
                );
            }
            let valid: Option<OffsetDateTime> = row.get("first_valid_lookup_at");
            if let Some(at) = valid {
                proofs.insert(
                    (site, AgentEvidence::FirstProductionLookup),
                    (
                        at,
                        "first eligibility confirmed by the national system".into(),
                    ),
                );
            }
        }
        for row in &certificates {
            proofs.insert(
                (
                    row.get("site_code"),
                    AgentEvidence::TerminalCertificateValid,
                ),
                (row.get("first_at"), row.get("what")),
            );
        }
        Ok(proofs)
    }

    /// The site's checklist on `now`, or `None` without a planned start.
    pub async fn adoption(
        &self,
        site: &SiteCode,
        now: OffsetDateTime,
    ) -> Result<Option<AdoptionView>, StoreError> {
        let mut views = self.adoptions(Some(site), &SiteScope::All, now).await?;
        Ok(views.pop())
    }

    /// The checklists of every site with a planned start in `scope` (or just `site`), by code.
    pub async fn adoptions(
        &self,
        site: Option<&SiteCode>,
        scope: &SiteScope,
        now: OffsetDateTime,
    ) -> Result<Vec<AdoptionView>, StoreError> {
        self.adoptions_with(site, scope, now, None).await
    }

    /// [`Store::adoptions`], with the agent's proofs when the caller has them already.
    async fn adoptions_with(
        &self,
        site: Option<&SiteCode>,
        scope: &SiteScope,
        now: OffsetDateTime,
        proofs: Option<&Proofs>,
    ) -> Result<Vec<AdoptionView>, StoreError> {
        let client = self.conn().await?;
        let (prefectures, sites) = scope.params();
        let plans: Vec<(String, Date, bool)> = client
            .query(
                &format!(
                    "SELECT site_code, planned_start, new_site FROM site_adoption
                     WHERE ($1::text IS NULL OR site_code = $1) AND {}
                     ORDER BY site_code",
                    SiteScope::sql("site_code", 2, 3)
                ),
                &[&site.map(SiteCode::as_str), &prefectures, &sites],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let codes: Vec<String> = plans.iter().map(|(code, _, _)| code.clone()).collect();
        let mut done: HashMap<String, HashMap<String, (Date, String)>> = HashMap::new();
        for r in client
            .query(
                "SELECT site_code, step, done_on, evidence FROM adoption_steps
                 WHERE site_code = ANY($1)",
                &[&codes],
            )
            .await?
        {
            done.entry(r.get(0))
                .or_default()
                .insert(r.get(1), (r.get(2), r.get(3)));
        }
        let found;
        let proofs = match proofs {
            Some(proofs) => proofs,
            None => {
                found = self.agent_proofs(&codes, now).await?;
                &found
            }
        };
        let mut grace = self.active_grace_by_site(&codes, now).await?;
        let no_steps = HashMap::new();
        plans
            .into_iter()
            .map(|(code, start, new_site)| {
                let steps = done.get(&code).unwrap_or(&no_steps);
                let grace = grace.remove(&code).unwrap_or_default();
                view(code, start, new_site, steps, proofs, grace, now)
            })
            .collect()
    }

    /// The per-prefecture adoption table over every site central knows in `scope` (it has
    /// heard from, or has a plan for): a card reader applied for, the production connection,
    /// operating. A fixed handful of queries, whatever the number of sites.
    pub async fn prefecture_table(
        &self,
        now: OffsetDateTime,
        scope: &SiteScope,
    ) -> Result<Vec<onshi_domain::adoption::PrefectureRow>, StoreError> {
        Ok(self.adoption_overview(now, scope).await?.0)
    }

    /// The per-prefecture table and every planned site's checklist in `scope`, from one
    /// reading of the agents' proofs (what the rollout page shows together).
    pub async fn adoption_overview(
        &self,
        now: OffsetDateTime,
        scope: &SiteScope,
    ) -> Result<
        (
            Vec<onshi_domain::adoption::PrefectureRow>,
            Vec<AdoptionView>,
        ),
        StoreError,
    > {
        let (prefectures, sites) = scope.params();
        let codes: Vec<String> = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT site_code FROM (SELECT site_code FROM agent_streams
                                            UNION SELECT site_code FROM site_adoption) known
                     WHERE {} ORDER BY 1",
                    SiteScope::sql("site_code", 1, 2)
                ),
                &[&prefectures, &sites],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let proofs = self.agent_proofs(&codes, now).await?;
        let list = self.adoptions_with(None, scope, now, Some(&proofs)).await?;
        let views: HashMap<&str, &AdoptionView> =
            list.iter().map(|v| (v.site_code.as_str(), v)).collect();
        let mut progress = Vec::with_capacity(codes.len());
        for code in codes {
            let Ok(site) = SiteCode::parse(&code) else {
                continue;
            };
            let view = views.get(code.as_str()).copied();
            let done = |kind: StepKind| {
                view.is_some_and(|v| {
                    v.steps
                        .iter()
                        .any(|s| s.step == kind && s.done_on.is_some())
                })
            };
            let proved = |evidence| proofs.contains_key(&(code.clone(), evidence));
            progress.push(onshi_domain::adoption::SiteProgress {
                prefecture: site.prefecture(),
                reader_applied: done(StepKind::CardReaderProcurement)
                    || proved(AgentEvidence::ReadersPresent),
                connected: done(StepKind::NetworkLine) || proved(AgentEvidence::NationalLinkUp),
                operating: view.is_some_and(|v| v.status == SiteAdoption::Live)
                    || proved(AgentEvidence::FirstProductionLookup),
            });
        }
        Ok((onshi_domain::adoption::prefecture_table(&progress), list))
    }
}

/// First proof per (site, evidence): when, and with what.
type Proofs = HashMap<(String, AgentEvidence), (OffsetDateTime, String)>;

/// One site's checklist from its plan, the steps marked done, the agent's proofs and its
/// active grace notifications.
fn view(
    site_code: String,
    start: Date,
    new_site: bool,
    done: &HashMap<String, (Date, String)>,
    proofs: &Proofs,
    grace_notifications: Vec<super::grace::GraceView>,
    now: OffsetDateTime,
) -> Result<AdoptionView, StoreError> {
    let due = deadlines(start, new_site)
        .map_err(|e| StoreError::BadQuery(format!("no business-day calendar: {e:?}")))?;
    let mut steps = Vec::with_capacity(due.len());
    let mut states = Vec::with_capacity(due.len());
    for (kind, deadline) in due {
        let Some(guide) = step(kind) else { continue };
        let mut state = done.get(&step_name(kind)).cloned();
        let mut by_agent = false;
        if state.is_none()
            && let Some(evidence) = guide.evidence
            && let Some((at, what)) = proofs.get(&(site_code.clone(), evidence))
        {
            state = Some((tokyo_day(*at), what.clone()));
            by_agent = true;
        }
        states.push(StepState {
            kind,
            deadline,
            done: state.as_ref().map(|(d, _)| *d),
        });
        steps.push(StepView {
            step: kind,
            label_ja: guide.label_ja,
            label_en: guide.label_en,
            owner: guide.owner,
            deadline: deadline.to_string(),
            done_on: state.as_ref().map(|(d, _)| d.to_string()),
            evidence: state.map(|(_, e)| e),
            by_agent,
        });
    }
    let (status, reason) = site_status(&states, tokyo_day(now))
        .map_err(|e| StoreError::BadQuery(format!("no business-day calendar: {e:?}")))?;
    Ok(AdoptionView {
        site_code,
        planned_start: start.to_string(),
        new_site,
        status,
        reason,
        steps,
        grace_notifications,
    })
}
