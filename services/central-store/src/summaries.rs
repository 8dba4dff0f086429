//! The per-site summaries ingest keeps beside the events (migration 0022): each site's latest
//! event and lookup, its adoption proofs, the latest report of each link, and lookups per hour
//! and outcome. The pages read these instead of `events`, so their cost follows the fleet, not
//! the history.
//!
//! Invariant: every value is a function of the events stored, whatever their order of arrival
//! (latest = greatest `(occurred_at, event_id)`, first = least `occurred_at`, counts = events),
//! so the summaries equal a recount from `events`. Ingest feeds [`SummaryDelta`] only the events
//! it actually inserted (a resend adds nothing) and writes it in the same transaction: one
//! statement per table for a whole group, its rows in key order, so two writers that touch the
//! same sites lock them in the same order and never deadlock.

use std::collections::BTreeMap;

use onshi_domain::events::{EventBody, FleetEvent, LinkState, LinkTarget, ReaderState};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Store, StoreError};

/// How long lookups per hour are kept: the overview's chart reads the last 24 hours.
pub const LOOKUP_HOURS_KEPT: Duration = Duration::days(8);

const UPSERT_SITES: &str =
    "INSERT INTO site_summaries AS s (site_code, last_event_at, last_event_id,
                 last_lookup_at, last_lookup_id, last_lookup_outcome, first_reader_at,
                 first_reader_name, first_national_up_at, first_valid_lookup_at)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::uuid[], $4::timestamptz[],
                                  $5::uuid[], $6::text[], $7::timestamptz[], $8::text[],
                                  $9::timestamptz[], $10::timestamptz[])
             ORDER BY 1
             ON CONFLICT (site_code) DO UPDATE SET
                 (last_event_at, last_event_id) = (
                     CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.last_event_id)
                               > (s.last_event_at, s.last_event_id)
                          THEN EXCLUDED.last_event_at ELSE s.last_event_at END,
                     CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.last_event_id)
                               > (s.last_event_at, s.last_event_id)
                          THEN EXCLUDED.last_event_id ELSE s.last_event_id END),
                 (last_lookup_at, last_lookup_id, last_lookup_outcome) = (
                     CASE WHEN s.last_lookup_at IS NULL
                               OR (EXCLUDED.last_lookup_at, EXCLUDED.last_lookup_id)
                                  > (s.last_lookup_at, s.last_lookup_id)
                          THEN EXCLUDED.last_lookup_at ELSE s.last_lookup_at END,
                     CASE WHEN s.last_lookup_at IS NULL
                               OR (EXCLUDED.last_lookup_at, EXCLUDED.last_lookup_id)
                                  > (s.last_lookup_at, s.last_lookup_id)
                          THEN EXCLUDED.last_lookup_id ELSE s.last_lookup_id END,
                     CASE WHEN s.last_lookup_at IS NULL
                               OR (EXCLUDED.last_lookup_at, EXCLUDED.last_lookup_id)
                                  > (s.last_lookup_at, s.last_lookup_id)
                          THEN EXCLUDED.last_lookup_outcome ELSE s.last_lookup_outcome END),
                 (first_reader_at, first_reader_name) = (
                     CASE WHEN s.first_reader_at IS NULL
                               OR EXCLUDED.first_reader_at < s.first_reader_at
                          THEN EXCLUDED.first_reader_at ELSE s.first_reader_at END,
                     CASE WHEN s.first_reader_at IS NULL
                               OR EXCLUDED.first_reader_at < s.first_reader_at
                          THEN EXCLUDED.first_reader_name ELSE s.first_reader_name END),
                 first_national_up_at = LEAST(s.first_national_up_at,
                                              EXCLUDED.first_national_up_at),
                 first_valid_lookup_at = LEAST(s.first_valid_lookup_at,
                                               EXCLUDED.first_valid_lookup_at)";

const UPSERT_LINKS: &str =
    "INSERT INTO site_links AS l (site_code, target, state, occurred_at, event_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                                  $5::uuid[])
             ORDER BY 1, 2
             ON CONFLICT (site_code, target) DO UPDATE SET state = EXCLUDED.state,
                 occurred_at = EXCLUDED.occurred_at, event_id = EXCLUDED.event_id
             WHERE (EXCLUDED.occurred_at, EXCLUDED.event_id) > (l.occurred_at, l.event_id)";

const ADD_LOOKUP_HOURS: &str =
    "INSERT INTO site_lookup_hours AS h (hour, site_code, outcome, lookups)
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::bigint[])
             ORDER BY 1, 2, 3
             ON CONFLICT (hour, site_code, outcome) DO UPDATE SET
                 lookups = h.lookups + EXCLUDED.lookups";

/// What one group's inserted events change in the summaries, aggregated in memory.
#[derive(Debug, Default)]
pub(crate) struct SummaryDelta {
    sites: BTreeMap<String, SiteDelta>,
    /// (site, target) → (occurred_at, event id, state).
    links: BTreeMap<(String, &'static str), (OffsetDateTime, Uuid, &'static str)>,
    /// (hour, site, outcome) → lookups.
    hours: BTreeMap<(OffsetDateTime, String, &'static str), i64>,
}

#[derive(Debug, Default)]
struct SiteDelta {
    last_event: Option<(OffsetDateTime, Uuid)>,
    last_lookup: Option<(OffsetDateTime, Uuid, &'static str)>,
    first_reader: Option<(OffsetDateTime, String)>,
    first_national_up: Option<OffsetDateTime>,
    first_valid_lookup: Option<OffsetDateTime>,
}

/// `at` truncated to its UTC hour.
pub(crate) fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_time(time::Time::from_hms(at.hour(), 0, 0).expect("an hour of a day"))
}

fn link_target(target: LinkTarget) -> &'static str {
    match target {
        LinkTarget::Onshi => "onshi",
        LinkTarget::Central => "central",
        LinkTarget::Terminal => "terminal",
    }
}

fn link_state(state: LinkState) -> &'static str {
    match state {
        LinkState::Up => "up",
        LinkState::Degraded => "degraded",
        LinkState::Down => "down",
    }
}

fn earlier(slot: &mut Option<OffsetDateTime>, at: OffsetDateTime) {
    if slot.is_none_or(|held| at < held) {
        *slot = Some(at);
    }
}

impl SummaryDelta {
    /// Counts `event` of `site`, which this transaction inserted.
    pub fn add(&mut self, site: &str, event: &FleetEvent) {
        let at = event.occurred_at;
        let id = event.id.as_uuid();
        let key = (at, id);
        let summary = self.sites.entry(site.to_string()).or_default();
        if summary.last_event.is_none_or(|held| key > held) {
            summary.last_event = Some(key);
        }
        match &event.body {
            EventBody::Lookup(lookup) => {
                let outcome = lookup.outcome.as_str();
                if summary
                    .last_lookup
                    .is_none_or(|(held_at, held_id, _)| key > (held_at, held_id))
                {
                    summary.last_lookup = Some((at, id, outcome));
                }
                if outcome == "valid" {
                    earlier(&mut summary.first_valid_lookup, at);
                }
                *self
                    .hours
                    .entry((hour_of(at), site.to_string(), outcome))
                    .or_default() += 1;
            }
            EventBody::ReaderChange(change)
                if matches!(
                    change.state,
                    ReaderState::PresentEmpty | ReaderState::CardPresent
                ) && summary
                    .first_reader
                    .as_ref()
                    .is_none_or(|(held, _)| at < *held) =>
            {
                summary.first_reader = Some((at, change.reader_name.clone()));
            }
            EventBody::LinkChange(change) => {
                let target = link_target(change.target);
                if matches!(change.target, LinkTarget::Onshi | LinkTarget::Terminal)
                    && change.state == LinkState::Up
                {
                    earlier(&mut summary.first_national_up, at);
                }
                let latest = self.links.entry((site.to_string(), target)).or_insert((
                    at,
                    id,
                    link_state(change.state),
                ));
                if key > (latest.0, latest.1) {
                    *latest = (at, id, link_state(change.state));
                }
            }
            _ => {}
        }
    }

    /// Every statement [`SummaryDelta::write`] may send.
    pub(crate) const STATEMENTS: [&'static str; 3] = [UPSERT_SITES, UPSERT_LINKS, ADD_LOOKUP_HOURS];

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Writes the delta in `tx`, the transaction that inserted its events: the three
    /// statements ([`SummaryDelta::STATEMENTS`]) sent together, one round trip for all three.
    /// Each locks its rows in key order, so two writers touching the same sites never
    /// deadlock.
    pub(crate) async fn write(&self, tx: &super::Tx<'_>) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        tokio::try_join!(
            self.write_sites(tx),
            self.write_links(tx),
            self.write_hours(tx)
        )?;
        Ok(())
    }

    async fn write_sites(&self, tx: &super::Tx<'_>) -> Result<(), StoreError> {
        let n = self.sites.len();
        let mut codes = Vec::with_capacity(n);
        let (mut event_at, mut event_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut lookup_at, mut lookup_id, mut outcome) = (Vec::new(), Vec::new(), Vec::new());
        let (mut reader_at, mut reader) = (Vec::new(), Vec::new());
        let (mut national_up, mut valid) = (Vec::new(), Vec::new());
        for (code, s) in &self.sites {
            let Some((at, id)) = s.last_event else {
                continue;
            };
            codes.push(code.as_str());
            event_at.push(at);
            event_id.push(id);
            lookup_at.push(s.last_lookup.map(|l| l.0));
            lookup_id.push(s.last_lookup.map(|l| l.1));
            outcome.push(s.last_lookup.map(|l| l.2));
            reader_at.push(s.first_reader.as_ref().map(|r| r.0));
            reader.push(s.first_reader.as_ref().map(|r| r.1.as_str()));
            national_up.push(s.first_national_up);
            valid.push(s.first_valid_lookup);
        }
        // A row comparison with a NULL side is NULL, so CASE keeps the stored value unless the
        // new one is later (latest) or earlier (first).
        tx.execute(
            UPSERT_SITES,
            &[
                &codes,
                &event_at,
                &event_id,
                &lookup_at,
                &lookup_id,
                &outcome,
                &reader_at,
                &reader,
                &national_up,
                &valid,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_links(&self, tx: &super::Tx<'_>) -> Result<(), StoreError> {
        if self.links.is_empty() {
            return Ok(());
        }
        let mut codes = Vec::with_capacity(self.links.len());
        let mut targets = Vec::with_capacity(self.links.len());
        let mut states = Vec::with_capacity(self.links.len());
        let mut times = Vec::with_capacity(self.links.len());
        let mut ids = Vec::with_capacity(self.links.len());
        for ((code, target), (at, id, state)) in &self.links {
            codes.push(code.as_str());
            targets.push(*target);
            states.push(*state);
            times.push(*at);
            ids.push(*id);
        }
        tx.execute(UPSERT_LINKS, &[&codes, &targets, &states, &times, &ids])
            .await?;
        Ok(())
    }

    async fn write_hours(&self, tx: &super::Tx<'_>) -> Result<(), StoreError> {
        if self.hours.is_empty() {
            return Ok(());
        }
        let mut hours = Vec::with_capacity(self.hours.len());
        let mut codes = Vec::with_capacity(self.hours.len());
        let mut outcomes = Vec::with_capacity(self.hours.len());
        let mut counts = Vec::with_capacity(self.hours.len());
        for ((hour, code, outcome), n) in &self.hours {
            hours.push(*hour);
            codes.push(code.as_str());
            outcomes.push(*outcome);
            counts.push(*n);
        }
        tx.execute(ADD_LOOKUP_HOURS, &[&hours, &codes, &outcomes, &counts])
            .await?;
        Ok(())
    }
}

impl Store {
    /// Deletes lookups per hour older than [`LOOKUP_HOURS_KEPT`] before `now`; returns how
    /// many rows went. Idempotent, so every replica may run it.
    pub async fn prune_lookup_hours(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let before = hour_of(now) - LOOKUP_HOURS_KEPT;
        Ok(self
            .conn()
            .await?
            .execute("DELETE FROM site_lookup_hours WHERE hour < $1", &[&before])
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_hour_is_its_utc_start() {
        assert_eq!(
            hour_of(datetime!(2026-12-02 05:59:12.5 +09:00)),
            datetime!(2026-12-01 20:00 UTC)
        );
    }
}
