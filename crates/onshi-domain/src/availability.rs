//! Is the site really offline? Central's reading of the signals it has about one site.
//!
//! Central cannot see into a site; it reads what the stream tells it and how the stream ended:
//! - an agent whose process stops closes its connection at once (the kernel sends FIN or RST,
//!   or the agent says goodbye): the session ends promptly after the last message;
//! - a closed-network link that fails (router down, line cut) closes nothing: messages just
//!   stop, and central ends the session itself after a silence longer than a few heartbeats
//!   (a hung agent PC looks the same from central, which the detail says);
//! - while the stream is up, the agent's own signals: its latest national link probe (direct
//!   mode), its latest qualification terminal health (terminal mode: the terminal went silent,
//!   i.e. left a request unanswered past the agent's timeout, or answers again) and the readers
//!   its latest inventory lists.
//!
//! The state is what is wrong (or `Online`); whether to alert is the state and the opening
//! hours together: a site that is closed is reported as `Closed`, and alerts are for open sites.

use serde::Serialize;

/// How the last session of the site ended, as central saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The agent closed its stream (a shutdown) or its connection dropped right after it
    /// last spoke: the agent (process or PC) stopped.
    Prompt,
    /// Nothing arrived for longer than central waits (several heartbeats): the link is gone.
    Silent,
}

/// What central knows about one site now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// The site's opening hours say it is open now.
    pub open: bool,
    /// A session of the site's agent is up and spoke recently.
    pub connected: bool,
    /// How the last session ended (`None`: never connected, or no end recorded).
    pub last_end: Option<SessionEnd>,
    /// The agent's latest national link probe said down (`None`: no probe reported).
    pub national_down: Option<bool>,
    /// The agent's latest qualification terminal health said silent (`None`: not reported,
    /// e.g. a site in direct mode).
    pub terminal_down: Option<bool>,
    /// The site has had a card reader, and its latest inventory lists none present.
    pub readers_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Online,
    /// Outside opening hours (whatever else is true then; see `underlying`).
    Closed,
    AgentDown,
    LinkDown,
    ReaderUnplugged,
    NationalUnreachable,
    /// The qualification terminal left the agent's requests unanswered (terminal mode).
    TerminalNotAnswering,
}

impl State {
    /// Every state, in the order the dashboard lists them.
    pub const ALL: [State; 7] = [
        State::Online,
        State::Closed,
        State::AgentDown,
        State::LinkDown,
        State::ReaderUnplugged,
        State::NationalUnreachable,
        State::TerminalNotAnswering,
    ];

    /// The state named by [`State::as_str`].
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Closed => "closed",
            State::AgentDown => "agent_down",
            State::LinkDown => "link_down",
            State::ReaderUnplugged => "reader_unplugged",
            State::NationalUnreachable => "national_unreachable",
            State::TerminalNotAnswering => "terminal_not_answering",
        }
    }

    /// For the dashboard and alert texts: Japanese, then English.
    pub fn label(self) -> &'static str {
        match self {
            State::Online => "稼働中 / online",
            State::Closed => "営業時間外 / closed",
            State::AgentDown => "エージェント停止 / agent down",
            State::LinkDown => "閉域網回線断 / closed-network link down",
            State::ReaderUnplugged => "カードリーダー未接続 / card reader unplugged",
            State::NationalUnreachable => {
                "オンライン資格確認等システムに接続不可 / national endpoint unreachable"
            }
            State::TerminalNotAnswering => "資格確認端末が応答しません / terminal not answering",
        }
    }
}

/// The verdict for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// What the site's status is now.
    pub state: State,
    /// What is wrong regardless of the hours (equal to `state` while open).
    pub underlying: State,
    /// Whether this is worth an alert now: open, and something is wrong.
    pub alerting: bool,
}

/// Reads the signals (see the module documentation); the first problem in the chain from
/// central to the card counts: no agent, then no link, then no answer from the qualification
/// terminal (the site's way to the national system in terminal mode: behind a silent terminal
/// the national system's state is unknown), then no national system, then no reader.
pub fn classify(signals: Signals) -> Availability {
    let underlying = if !signals.connected {
        match signals.last_end {
            Some(SessionEnd::Silent) => State::LinkDown,
            // Never connected or stopped: nothing at the site is talking to central.
            Some(SessionEnd::Prompt) | None => State::AgentDown,
        }
    } else if signals.terminal_down == Some(true) {
        State::TerminalNotAnswering
    } else if signals.national_down == Some(true) {
        State::NationalUnreachable
    } else if signals.readers_missing {
        State::ReaderUnplugged
    } else {
        State::Online
    };
    let state = if signals.open {
        underlying
    } else {
        State::Closed
    };
    Availability {
        state,
        underlying,
        alerting: signals.open && underlying != State::Online,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Signals {
        Signals {
            open: true,
            connected: true,
            last_end: None,
            national_down: Some(false),
            terminal_down: None,
            readers_missing: false,
        }
    }

    #[test]
    fn each_signal_names_its_state() {
        assert_eq!(classify(up()).state, State::Online);
        let stopped = Signals {
            connected: false,
            last_end: Some(SessionEnd::Prompt),
            ..up()
        };
        assert_eq!(classify(stopped).state, State::AgentDown);
        let silent = Signals {
            connected: false,
            last_end: Some(SessionEnd::Silent),
            ..up()
        };
        assert_eq!(classify(silent).state, State::LinkDown);
        let national = Signals {
            national_down: Some(true),
            ..up()
        };
        assert_eq!(classify(national).state, State::NationalUnreachable);
        let reader = Signals {
            readers_missing: true,
            ..up()
        };
        assert_eq!(classify(reader).state, State::ReaderUnplugged);
        let never = Signals {
            connected: false,
            last_end: None,
            ..up()
        };
        assert_eq!(classify(never).state, State::AgentDown);
    }

    #[test]
    fn the_first_problem_from_central_to_the_counter_counts() {
        // Disconnected: what the agent said before (national down, no reader) is stale.
        let all = Signals {
            connected: false,
            last_end: Some(SessionEnd::Silent),
            national_down: Some(true),
            readers_missing: true,
            ..up()
        };
        assert_eq!(classify(all).state, State::LinkDown);
        let both = Signals {
            national_down: Some(true),
            readers_missing: true,
            ..up()
        };
        assert_eq!(classify(both).state, State::NationalUnreachable);
    }

    #[test]
    fn a_silent_terminal_is_its_own_state_and_recovers() {
        // Terminal mode: no national probe, the terminal's health instead.
        let terminal_mode = Signals {
            national_down: None,
            terminal_down: Some(false),
            ..up()
        };
        assert_eq!(classify(terminal_mode).state, State::Online);
        let silent = classify(Signals {
            terminal_down: Some(true),
            ..terminal_mode
        });
        assert_eq!(silent.state, State::TerminalNotAnswering);
        assert_eq!(silent.underlying, State::TerminalNotAnswering);
        assert!(silent.alerting);
        assert!(
            silent
                .state
                .label()
                .starts_with("資格確認端末が応答しません")
        );
        assert!(silent.state.label().ends_with("terminal not answering"));
        // The terminal answers again.
        let answered = classify(Signals {
            terminal_down: Some(false),
            ..terminal_mode
        });
        assert_eq!(answered.state, State::Online);
        assert!(!answered.alerting);
        // Closed hours: reported as closed, the silence kept underneath, no alert.
        let closed = classify(Signals {
            open: false,
            terminal_down: Some(true),
            ..terminal_mode
        });
        assert_eq!(closed.state, State::Closed);
        assert_eq!(closed.underlying, State::TerminalNotAnswering);
        assert!(!closed.alerting);
    }

    #[test]
    fn a_silent_terminal_comes_after_the_agent_and_its_link_and_before_the_rest() {
        let silent = Signals {
            terminal_down: Some(true),
            ..up()
        };
        // What the agent said last is stale once it is gone.
        let gone = classify(Signals {
            connected: false,
            last_end: Some(SessionEnd::Silent),
            ..silent
        });
        assert_eq!(gone.state, State::LinkDown);
        let stopped = classify(Signals {
            connected: false,
            last_end: Some(SessionEnd::Prompt),
            ..silent
        });
        assert_eq!(stopped.state, State::AgentDown);
        // Behind a silent terminal, the national system and the readers are not known.
        let everything = classify(Signals {
            national_down: Some(true),
            readers_missing: true,
            ..silent
        });
        assert_eq!(everything.state, State::TerminalNotAnswering);
    }

    #[test]
    fn every_state_reads_back_from_its_name() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("offline"), None);
    }

    #[test]
    fn only_an_open_site_alerts() {
        let down = Signals {
            connected: false,
            last_end: Some(SessionEnd::Prompt),
            ..up()
        };
        let open = classify(down);
        assert!(open.alerting);
        let closed = classify(Signals {
            open: false,
            ..down
        });
        assert_eq!(closed.state, State::Closed);
        assert_eq!(closed.underlying, State::AgentDown);
        assert!(!closed.alerting);
        assert!(!classify(up()).alerting);
        let closed_but_fine = classify(Signals {
            open: false,
            ..up()
        });
        assert_eq!(closed_but_fine.state, State::Closed);
        assert_eq!(closed_but_fine.underlying, State::Online);
    }
}
