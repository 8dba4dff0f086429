//! Terminal health, in terminal mode instead of the HTTPS link probe: the terminal is
//! **answered** (every request answered, recent answers quick), **slow** (the oldest unanswered
//! request, or the median of recent answers, is past `slow`) or **silent** (a request waited
//! `timeout` without an answer, and nothing was answered since). Nothing is sent to the terminal
//! to find out: the agent's own requests are the probe (in tap mode, the receipt computer's
//! requests it sees), so an idle site stays in its last state.
//!
//! Changes are recorded as `LinkChange` events of the terminal link ([`LinkTarget::Terminal`]:
//! `up` / `degraded` / `down`, the detail naming the terminal; central reads `down` as
//! "terminal not answering") through the probes' event path
//! ([`crate::probe::record_change`]), and shown by `edge-agent status`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use onshi_domain::events::{LinkState, LinkTarget};
use onshi_domain::site::TerminalId;

use crate::probe::Change;
use crate::recorder::Recorder;

/// How many recent answer times are kept.
const RECENT: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalState {
    Answered,
    Slow,
    Silent,
}

impl TerminalState {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalState::Answered => "answered",
            TerminalState::Slow => "slow",
            TerminalState::Silent => "silent",
        }
    }

    fn link_state(self) -> LinkState {
        match self {
            TerminalState::Answered => LinkState::Up,
            TerminalState::Slow => LinkState::Degraded,
            TerminalState::Silent => LinkState::Down,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<i64, Instant>,
    recent: VecDeque<Duration>,
    /// A request was given up and nothing has been answered since.
    gave_up: bool,
}

#[derive(Debug)]
pub struct Health {
    slow: Duration,
    silent: Duration,
    state: Mutex<State>,
}

/// One assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: TerminalState,
    pub median_ms: Option<u32>,
    pub oldest_unanswered_ms: Option<u32>,
}

impl Assessment {
    pub fn describe(&self) -> String {
        let mut text = format!("qualification terminal {}", self.state.as_str());
        if let Some(ms) = self.oldest_unanswered_ms {
            text.push_str(&format!(", oldest unanswered request {ms} ms"));
        }
        if let Some(ms) = self.median_ms {
            text.push_str(&format!(", recent answers {ms} ms (median)"));
        }
        text
    }
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Health {
    pub fn new(slow: Duration, silent: Duration) -> Self {
        Self {
            slow,
            silent,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sent(&self, id: i64, at: Instant) {
        self.lock().in_flight.insert(id, at);
    }

    pub fn answered(&self, id: i64, took: Duration) {
        let mut state = self.lock();
        state.in_flight.remove(&id);
        state.gave_up = false;
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(took);
    }

    pub fn gave_up(&self, id: i64) {
        let mut state = self.lock();
        state.in_flight.remove(&id);
        state.gave_up = true;
    }

    /// The terminal answered a request whose sending the agent did not see (tap mode: the
    /// terminal took it first): it answers, but there is no time to count.
    pub fn heard(&self) {
        self.lock().gave_up = false;
    }

    /// The terminal is known not to answer (tap mode, at start: a request recorded as
    /// unanswered is still waiting in `req`), until it answers again.
    pub fn known_silent(&self) {
        self.lock().gave_up = true;
    }

    /// A request that ended without a terminal answer or silence (it could not be written).
    pub fn forget(&self, id: i64) {
        self.lock().in_flight.remove(&id);
    }

    pub fn assess(&self, now: Instant) -> Assessment {
        let state = self.lock();
        let oldest = state
            .in_flight
            .values()
            .map(|sent| now.saturating_duration_since(*sent))
            .max();
        let median = {
            let mut recent: Vec<Duration> = state.recent.iter().copied().collect();
            recent.sort();
            recent.get(recent.len() / 2).copied()
        };
        let verdict = if state.gave_up || oldest.is_some_and(|o| o >= self.silent) {
            TerminalState::Silent
        } else if oldest.is_some_and(|o| o >= self.slow) || median.is_some_and(|m| m >= self.slow) {
            TerminalState::Slow
        } else {
            TerminalState::Answered
        };
        Assessment {
            state: verdict,
            median_ms: median.map(ms),
            oldest_unanswered_ms: oldest.map(ms),
        }
    }

    /// Records the terminal's state as a link event whenever it changes (the first look counts
    /// as a change), looking every `every` until `shutdown`.
    pub async fn run(
        self: std::sync::Arc<Self>,
        recorder: Recorder,
        terminal: TerminalId,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut last: Option<TerminalState> = None;
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut shutdown => break,
            }
            let assessment = self.assess(Instant::now());
            if last == Some(assessment.state) {
                continue;
            }
            let change = Change {
                state: assessment.state.link_state(),
                rtt_ms: assessment.median_ms,
                detail: Some(assessment.describe()),
            };
            if crate::probe::record_change(&recorder, &terminal, LinkTarget::Terminal, change, None)
                .await
            {
                last = Some(assessment.state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_slow_silent_and_back() {
        let health = Health::new(Duration::from_millis(100), Duration::from_millis(1000));
        let t0 = Instant::now();
        assert_eq!(health.assess(t0).state, TerminalState::Answered);
        health.sent(1, t0);
        assert_eq!(
            health.assess(t0 + Duration::from_millis(50)).state,
            TerminalState::Answered
        );
        assert_eq!(
            health.assess(t0 + Duration::from_millis(150)).state,
            TerminalState::Slow
        );
        assert_eq!(
            health.assess(t0 + Duration::from_millis(1000)).state,
            TerminalState::Silent
        );
        health.gave_up(1);
        // Stays silent with nothing in flight, until the terminal answers again.
        assert_eq!(
            health.assess(t0 + Duration::from_secs(60)).state,
            TerminalState::Silent
        );
        health.sent(2, t0);
        health.answered(2, Duration::from_millis(10));
        let a = health.assess(t0 + Duration::from_secs(61));
        assert_eq!(a.state, TerminalState::Answered);
        assert_eq!(a.median_ms, Some(10));
        assert!(a.describe().contains("answered"));
        // Slow answers make it slow with nothing in flight.
        for id in 3..6 {
            health.sent(id, t0);
            health.answered(id, Duration::from_millis(500));
        }
        assert_eq!(health.assess(t0).state, TerminalState::Slow);
    }
}
