//! Agent version rollouts: the wave plan, the health gates and what the controller does next.
//!
//! A rollout names a target agent version and a wave plan (shares of the chain's sites, e.g.
//! 5 % canary, 25 %, 100 %, or explicit site lists). Sites are put in waves in a stable order
//! (a hash of rollout id and site code), so a rerun of the controller never reshuffles them.
//! After a wave's sites applied the target and a soak time passed, the gates compare the same
//! sites after the wave with the same length of time before it: lookup success rate, reader
//! error rate, outbox backlog and offline share. A failed gate pauses the rollout (or rolls it
//! back, if the rollout says so); every transition is recorded with its reason.

use serde::{Deserialize, Serialize};

/// One wave: a cumulative share of the sites (1..=100), or named sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Wave {
    /// Up to this percentage of all the rollout's sites, counting earlier waves.
    Share { share: u8 },
    /// These sites (those not already in an earlier wave).
    Sites { sites: Vec<String> },
}

/// The health gates, checked after each wave (absent fields take the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Largest drop of the lookup success rate, in percentage points.
    pub max_success_drop_pct: f64,
    /// Largest rise of the reader error rate (reader errors per card check), percentage points.
    pub max_reader_error_rise_pct: f64,
    /// Largest outbox backlog (events waiting at a site for central) of any wave site.
    pub max_backlog: i64,
    /// Largest share of the wave's sites that are not online, in percent.
    pub max_offline_pct: f64,
    /// Largest share of the wave's sites that failed to apply the target, in percent.
    pub max_failed_pct: f64,
    /// Fewer lookups than this in either period: the success rate is not compared.
    pub min_lookups: i64,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            max_success_drop_pct: 5.0,
            max_reader_error_rise_pct: 5.0,
            max_backlog: 1_000,
            max_offline_pct: 10.0,
            max_failed_pct: 0.0,
            min_lookups: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a rollout needs at least one wave")]
    NoWaves,
    #[error("wave {0}: a share is a percentage from 1 to 100")]
    BadShare(usize),
    #[error("wave {0}: shares must grow from wave to wave (they count the earlier waves)")]
    ShrinkingShare(usize),
    #[error("wave {0} names no site")]
    EmptySites(usize),
    #[error("the last wave must reach every site (share 100), or every wave must list its sites")]
    Incomplete,
}

/// Checks a wave plan.
pub fn check_plan(waves: &[Wave]) -> Result<(), PlanError> {
    if waves.is_empty() {
        return Err(PlanError::NoWaves);
    }
    let mut last = 0u8;
    for (i, wave) in waves.iter().enumerate() {
        match wave {
            Wave::Share { share } => {
                if !(1..=100).contains(share) {
                    return Err(PlanError::BadShare(i + 1));
                }
                if *share < last {
                    return Err(PlanError::ShrinkingShare(i + 1));
                }
                last = *share;
            }
            Wave::Sites { sites } if sites.is_empty() => return Err(PlanError::EmptySites(i + 1)),
            Wave::Sites { .. } => {}
        }
    }
    let shares = waves.iter().any(|w| matches!(w, Wave::Share { .. }));
    if shares && last != 100 {
        return Err(PlanError::Incomplete);
    }
    Ok(())
}

/// FNV-1a: a stable, well-spread order of sites per rollout (not a security property).
fn rank(rollout: i64, site: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rollout.to_be_bytes().iter().chain(site.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Which wave (0-based) each site is in. Share waves take sites in the rollout's stable order
/// until the cumulative share is reached (at least one site per wave while any are left);
/// named sites go to the first wave naming them. Sites no wave reaches are left out.
pub fn assign(rollout: i64, waves: &[Wave], sites: &[String]) -> Vec<(String, usize)> {
    let mut ordered: Vec<&String> = sites.iter().collect();
    ordered.sort_by_key(|s| (rank(rollout, s), s.as_str()));
    let mut assigned: Vec<(String, usize)> = Vec::new();
    let taken =
        |assigned: &Vec<(String, usize)>, site: &str| assigned.iter().any(|(s, _)| s == site);
    for (i, wave) in waves.iter().enumerate() {
        match wave {
            Wave::Sites { sites: named } => {
                for site in named {
                    if sites.contains(site) && !taken(&assigned, site) {
                        assigned.push((site.clone(), i));
                    }
                }
            }
            Wave::Share { share } => {
                let want = (sites.len() * usize::from(*share)).div_ceil(100);
                let mut count = assigned.len();
                for site in &ordered {
                    if count >= want {
                        break;
                    }
                    if !taken(&assigned, site) {
                        assigned.push(((*site).clone(), i));
                        count += 1;
                    }
                }
            }
        }
    }
    assigned
}

/// What the gates read for one wave's sites in one period.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Health {
    pub lookups: i64,
    /// Lookups the national system answered (valid, invalid or not found).
    pub lookups_ok: i64,
    pub card_checks: i64,
    pub reader_errors: i64,
}

impl Health {
    fn success_pct(&self) -> Option<f64> {
        (self.lookups > 0).then(|| 100.0 * self.lookups_ok as f64 / self.lookups as f64)
    }
    fn reader_error_pct(&self) -> Option<f64> {
        (self.card_checks > 0).then(|| 100.0 * self.reader_errors as f64 / self.card_checks as f64)
    }
}

/// The wave's sites now.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct WaveState {
    pub sites: i64,
    pub failed: i64,
    pub offline: i64,
    pub max_backlog: i64,
}

/// The verdict of the gates: every failed check, in words for chain IT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateVerdict {
    pub passed: bool,
    pub failures: Vec<String>,
    /// Checks skipped for want of data.
    pub notes: Vec<String>,
}

/// Compares a wave's sites after the wave with before it.
pub fn check_gates(gates: &Gates, before: &Health, after: &Health, now: &WaveState) -> GateVerdict {
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    if before.lookups >= gates.min_lookups && after.lookups >= gates.min_lookups {
        if let (Some(b), Some(a)) = (before.success_pct(), after.success_pct())
            && b - a > gates.max_success_drop_pct
        {
            failures.push(format!(
                "lookup success rate fell from {b:.1} % to {a:.1} % (at most {:.1} points allowed)",
                gates.max_success_drop_pct
            ));
        }
    } else {
        notes.push(format!(
            "lookup success rate not compared: {} lookups before, {} after (at least {} each needed)",
            before.lookups, after.lookups, gates.min_lookups
        ));
    }
    if let (Some(b), Some(a)) = (before.reader_error_pct(), after.reader_error_pct())
        && a - b > gates.max_reader_error_rise_pct
    {
        failures.push(format!(
            "reader error rate rose from {b:.1} % to {a:.1} % (at most {:.1} points allowed)",
            gates.max_reader_error_rise_pct
        ));
    }
    if now.max_backlog > gates.max_backlog {
        failures.push(format!(
            "an outbox holds {} events for central (at most {} allowed)",
            now.max_backlog, gates.max_backlog
        ));
    }
    let share = |n: i64| {
        if now.sites == 0 {
            0.0
        } else {
            100.0 * n as f64 / now.sites as f64
        }
    };
    if share(now.offline) > gates.max_offline_pct {
        failures.push(format!(
            "{} of {} sites offline ({:.0} %, at most {:.0} % allowed)",
            now.offline,
            now.sites,
            share(now.offline),
            gates.max_offline_pct
        ));
    }
    if share(now.failed) > gates.max_failed_pct {
        failures.push(format!(
            "{} of {} sites did not apply the target in time ({:.0} %, at most {:.0} % allowed)",
            now.failed,
            now.sites,
            share(now.failed),
            gates.max_failed_pct
        ));
    }
    GateVerdict {
        passed: failures.is_empty(),
        failures,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("13{i:08}")).collect()
    }

    #[test]
    fn plans_are_checked() {
        let share = |share| Wave::Share { share };
        assert_eq!(check_plan(&[]), Err(PlanError::NoWaves));
        assert_eq!(check_plan(&[share(0)]), Err(PlanError::BadShare(1)));
        assert_eq!(
            check_plan(&[share(25), share(5), share(100)]),
            Err(PlanError::ShrinkingShare(2))
        );
        assert_eq!(
            check_plan(&[share(5), share(25)]),
            Err(PlanError::Incomplete)
        );
        assert_eq!(
            check_plan(&[Wave::Sites { sites: vec![] }]),
            Err(PlanError::EmptySites(1))
        );
        assert!(check_plan(&[share(5), share(25), share(100)]).is_ok());
        assert!(
            check_plan(&[Wave::Sites {
                sites: vec!["a".into()]
            }])
            .is_ok()
        );
        let parsed: Vec<Wave> =
            serde_json::from_str(r#"[{"share": 5}, {"sites": ["1310000018"]}, {"share": 100}]"#)
                .unwrap();
        assert!(check_plan(&parsed).is_ok());
    }

    #[test]
    fn shares_are_cumulative_stable_and_never_empty() {
        let all = sites(40);
        let plan = [
            Wave::Share { share: 5 },
            Wave::Share { share: 25 },
            Wave::Share { share: 100 },
        ];
        let assigned = assign(7, &plan, &all);
        let in_wave = |w| assigned.iter().filter(|(_, x)| *x == w).count();
        assert_eq!((in_wave(0), in_wave(1), in_wave(2)), (2, 8, 30));
        assert_eq!(assigned, assign(7, &plan, &all), "the same every time");
        assert_ne!(
            assigned,
            assign(8, &plan, &all),
            "another rollout, another canary"
        );
        // A tiny chain still gets a canary of one.
        let two = assign(7, &plan, &sites(2));
        assert_eq!(two.iter().filter(|(_, w)| *w == 0).count(), 1);
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn named_sites_go_first_and_once() {
        let all = sites(10);
        let plan = [
            Wave::Sites {
                sites: vec![all[3].clone(), "9999999999".into()],
            },
            Wave::Share { share: 100 },
        ];
        let assigned = assign(1, &plan, &all);
        assert_eq!(assigned[0], (all[3].clone(), 0));
        assert_eq!(
            assigned.len(),
            10,
            "unknown sites are ignored, each site once"
        );
    }

    #[test]
    fn a_wave_that_hurts_lookups_fails_its_gate() {
        let gates = Gates::default();
        let healthy = Health {
            lookups: 100,
            lookups_ok: 99,
            card_checks: 50,
            reader_errors: 0,
        };
        let worse = Health {
            lookups: 100,
            lookups_ok: 80,
            ..healthy
        };
        let fine = WaveState {
            sites: 2,
            ..Default::default()
        };
        assert!(check_gates(&gates, &healthy, &healthy, &fine).passed);
        let verdict = check_gates(&gates, &healthy, &worse, &fine);
        assert!(!verdict.passed);
        assert!(
            verdict.failures[0].contains("99.0 % to 80.0 %"),
            "{verdict:?}"
        );
        // Too few lookups to tell: not compared, said so.
        let few = Health {
            lookups: 3,
            lookups_ok: 0,
            ..healthy
        };
        let verdict = check_gates(&gates, &healthy, &few, &fine);
        assert!(verdict.passed && verdict.notes[0].contains("not compared"));
    }

    #[test]
    fn readers_backlog_offline_and_failed_applies_are_gated() {
        let gates = Gates::default();
        let base = Health {
            lookups: 0,
            lookups_ok: 0,
            card_checks: 100,
            reader_errors: 1,
        };
        let readers = Health {
            reader_errors: 20,
            ..base
        };
        let fine = WaveState {
            sites: 10,
            ..Default::default()
        };
        assert!(check_gates(&gates, &base, &readers, &fine).failures[0].contains("reader error"));
        let backlog = WaveState {
            max_backlog: 5_000,
            ..fine
        };
        assert!(check_gates(&gates, &base, &base, &backlog).failures[0].contains("outbox"));
        let offline = WaveState { offline: 2, ..fine };
        assert!(check_gates(&gates, &base, &base, &offline).failures[0].contains("offline"));
        let failed = WaveState { failed: 1, ..fine };
        assert!(check_gates(&gates, &base, &base, &failed).failures[0].contains("did not apply"));
    }
}
