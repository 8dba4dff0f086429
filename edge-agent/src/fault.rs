//! Fault injection for crash tests: the agent aborts (as kill -9 would) at a chosen step of an
//! exchange, chosen by the environment variable [`FAULT_ENV`]. Never set it in production; an
//! unknown value is ignored.
//!
//! | value | where |
//! | --- | --- |
//! | `abort-after-answer` | file exchange: the national answer is journaled, the event not yet recorded |
//! | `abort-after-record` | file exchange: the event is recorded, the result file not yet written |
//! | `terminal-abort-after-result` | terminal transport: the terminal's result is journaled and taken from `res`, not yet handed over |
//! | `terminal-abort-after-record` | terminal transport: the answer was handed over (a lookup's event committed), its journal entry not yet closed |

use std::collections::HashMap;

pub const FAULT_ENV: &str = "EDGE_AGENT_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    FileAfterAnswer,
    FileAfterRecord,
    TerminalAfterResult,
    TerminalAfterRecord,
}

impl Fault {
    pub fn from_env(env: &HashMap<String, String>) -> Option<Self> {
        match env.get(FAULT_ENV).map(String::as_str) {
            Some("abort-after-answer") => Some(Self::FileAfterAnswer),
            Some("abort-after-record") => Some(Self::FileAfterRecord),
            Some("terminal-abort-after-result") => Some(Self::TerminalAfterResult),
            Some("terminal-abort-after-record") => Some(Self::TerminalAfterRecord),
            _ => None,
        }
    }
}

/// Aborts the process when `configured` is the fault `at`.
pub fn strike(configured: Option<Fault>, at: Fault) {
    if configured == Some(at) {
        tracing::error!(fault = ?at, "{FAULT_ENV}: aborting as instructed");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_reads_only_its_value() {
        let env = |v: &str| HashMap::from([(FAULT_ENV.to_string(), v.to_string())]);
        assert_eq!(
            Fault::from_env(&env("abort-after-record")),
            Some(Fault::FileAfterRecord)
        );
        assert_eq!(
            Fault::from_env(&env("terminal-abort-after-result")),
            Some(Fault::TerminalAfterResult)
        );
        assert_eq!(Fault::from_env(&env("abort-somewhere")), None);
        assert_eq!(Fault::from_env(&HashMap::new()), None);
    }
}
