//! The terminal's knobs: answer latency, silence (the terminal is down), malformed results and
//! results that arrive after the client gave up.
//!
//! Set at start with flags; the terminal writes them to the control file
//! (`<folder>/.sim/knobs.json`, [`super::Folders::knobs`]) and reads that file again on every
//! scan, so a test or a demo script changes them at run time by rewriting it (atomically) or
//! with `onshi-sim terminal knobs`. Every field is optional in the file; missing ones keep
//! their default.
//!
//! "Every n-th" choices use a counter, not randomness, so a test knows which answer is hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The knobs as set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Delay before every answer is written, in milliseconds.
    pub latency_ms: u64,
    /// The terminal is down: requests stay in `req`, unanswered, until this is switched off
    /// (then they are answered).
    pub silent: bool,
    /// Every n-th answer is written as a broken XML file (0: never; 1: every answer).
    pub malformed_every: u64,
    /// Every n-th answer is held [`Knobs::late_ms`] instead of [`Knobs::latency_ms`]: longer
    /// than the client's timeout, so it lands after the client gave up (0: never).
    pub late_every: u64,
    pub late_ms: u64,
}

/// What happens to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    pub delay: Duration,
    pub malformed: bool,
}

/// Counts answers for the "every n-th" knobs.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// The fate of the next answer under `knobs`.
    pub fn next(&self, knobs: &Knobs) -> Fate {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        let hit = |every: u64| every > 0 && n.is_multiple_of(every);
        let late = hit(knobs.late_every);
        Fate {
            delay: Duration::from_millis(if late {
                knobs.late_ms
            } else {
                knobs.latency_ms
            }),
            malformed: hit(knobs.malformed_every),
        }
    }
}

/// `bytes` made unreadable the way a broken writer leaves a file: cut in the middle of an
/// element, so no XML reader accepts it.
pub fn break_xml(bytes: &[u8]) -> Vec<u8> {
    let mut broken = bytes[..bytes.len() / 2].to_vec();
    broken.extend_from_slice(b"<Broken");
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_is_counted() {
        let knobs = Knobs {
            latency_ms: 5,
            late_every: 3,
            late_ms: 900,
            malformed_every: 2,
            ..Knobs::default()
        };
        let counter = Counter::default();
        let fates: Vec<Fate> = (0..6).map(|_| counter.next(&knobs)).collect();
        let delays: Vec<u64> = fates.iter().map(|f| f.delay.as_millis() as u64).collect();
        assert_eq!(delays, [5, 5, 900, 5, 5, 900]);
        let broken: Vec<bool> = fates.iter().map(|f| f.malformed).collect();
        assert_eq!(broken, [false, true, false, true, false, true]);
        assert_eq!(
            Counter::default().next(&Knobs::default()).delay,
            Duration::ZERO
        );
        let partial: Knobs = serde_json::from_str(r#"{"silent":true}"#).unwrap();
        assert!(partial.silent && partial.latency_ms == 0);
        assert!(serde_json::from_str::<Knobs>(r#"{"silence":true}"#).is_err());
    }

    #[test]
    fn broken_files_do_not_read() {
        let xml = b"<?xml version=\"1.0\"?><XmlMsg><MessageHeader/></XmlMsg>";
        let broken = break_xml(xml);
        assert!(onshi_domain::xml::QualificationConfirmationResult::from_xml(&broken).is_err());
    }
}
