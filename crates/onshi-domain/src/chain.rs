//! The per-stream hash chain that makes a site's audit trail tamper-evident.
//!
//! Every event an agent records carries a [`ChainHash`]: SHA-256 over a domain tag, the previous
//! event's hash and the event's canonical encoding ([`link`]). The canonical encoding itself is
//! the protocol's business (`proto::chain`), so this module takes it as bytes: it owns the hash,
//! the genesis value and the rules a verifier applies while walking a stream in sequence order
//! ([`ChainWalk`]).
//!
//! Rules, in order of the walk:
//! - the first event of a stream links to [`ChainHash::GENESIS`]; so does the first chained event
//!   after events recorded before chaining existed (an agent upgraded in place starts its chain
//!   there), which are reported as [`Finding::Unchained`] but are not a break;
//! - a missing sequence is a [`Finding::Missing`] range, and the link after it cannot be checked:
//!   the walk takes the next event's hash as given and goes on from it;
//! - a `Loss` event (a record the agent could not read back, replaced in place) is a declared
//!   break: its hash, if the agent still had it, is taken as given, else the next link is;
//! - any other event whose hash is not `link(previous, event)` is a [`Finding::Broken`]; the walk
//!   goes on from the stored hash, so one altered event is reported once, at its own sequence.

use ring::digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Separates this hash from any other SHA-256 over similar bytes; the version changes if the
/// construction ever does.
const DOMAIN_TAG: &[u8] = b"onshi-fleet event chain v1\0";

/// One link of a stream's hash chain: 32 bytes, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a chain hash is 32 bytes, got {0}")]
pub struct ChainHashLength(pub usize);

impl ChainHash {
    /// What the first event of a stream links to.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Result<Self, ChainHashLength> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ChainHashLength(bytes.len()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        crate::hex::decode(s).and_then(|bytes| Self::from_slice(&bytes).ok())
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl std::fmt::Display for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("a chain hash is 64 lowercase hex characters"))
    }
}

/// The hash of an event whose canonical encoding is `canonical`, following `previous`.
pub fn link(previous: &ChainHash, canonical: &[u8]) -> ChainHash {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(DOMAIN_TAG);
    context.update(&previous.0);
    context.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    ChainHash(out)
}

/// What a walk found at one place in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The event's hash does not follow from the previous one: the event, or the one before it,
    /// was altered, or events were swapped.
    Broken { sequence: u64 },
    /// Sequences that should be there and are not.
    Missing { first: u64, last: u64 },
    /// A `Loss` event: the agent declared this record lost.
    DeclaredLoss { sequence: u64 },
    /// An event without a hash after the chain had started: its hash was removed.
    HashRemoved { sequence: u64 },
    /// Events recorded before the agent chained its events (an older agent version): present,
    /// but not provable.
    Unchained { first: u64, last: u64 },
    /// Events dropped under the chain's retention policy: their content is gone, their links
    /// are kept (`expired_events`), so the chain runs on through them and proves they existed.
    Expired { first: u64, last: u64 },
    /// A daily seal (`seal`) that the stored events or the other seals contradict, or whose
    /// signature does not verify.
    Seal {
        day: String,
        sequence: u64,
        problem: String,
    },
}

impl Finding {
    /// Whether the finding means the record is not what the site recorded (a declared loss and
    /// events from before chaining are reported, but they are the site's own statements).
    pub fn is_break(&self) -> bool {
        matches!(
            self,
            Finding::Broken { .. }
                | Finding::Missing { .. }
                | Finding::HashRemoved { .. }
                | Finding::Seal { .. }
        )
    }
}

/// What the walk needs of one stored event.
#[derive(Debug, Clone, Copy)]
pub struct ChainStep<'a> {
    pub sequence: u64,
    pub is_loss: bool,
    pub stored: Option<&'a ChainHash>,
    /// The event's canonical encoding (`proto::chain::canonical`).
    pub canonical: &'a [u8],
}

/// A verifier's position in one stream, resumable: central keeps it between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainWalk {
    /// The last sequence walked (0: none).
    pub through: u64,
    /// The hash the next event must follow; `None` when it cannot be known (after a gap or a
    /// loss without a hash): the next event's own hash is then taken as given.
    pub head: Option<ChainHash>,
    /// Whether a chained event has been seen in this stream.
    pub chained: bool,
}

impl Default for ChainWalk {
    fn default() -> Self {
        Self {
            through: 0,
            head: Some(ChainHash::GENESIS),
            chained: false,
        }
    }
}

impl ChainWalk {
    /// Takes the next stored event (in increasing sequence order) and says what is wrong, if
    /// anything. A sequence at or below `through` is refused as out of order (the caller reads
    /// in order; a repeat means the same position twice).
    pub fn step(&mut self, event: ChainStep<'_>) -> Vec<Finding> {
        let mut findings = Vec::new();
        if !self.advance_to(event.sequence, &mut findings) {
            return findings;
        }
        if event.is_loss {
            findings.push(Finding::DeclaredLoss {
                sequence: event.sequence,
            });
            self.head = event.stored.copied();
            return findings;
        }
        let Some(stored) = event.stored else {
            if self.chained {
                findings.push(Finding::HashRemoved {
                    sequence: event.sequence,
                });
                self.head = None;
            } else {
                findings.push(Finding::Unchained {
                    first: event.sequence,
                    last: event.sequence,
                });
                // An agent that starts chaining links its first chained event to genesis.
                self.head = Some(ChainHash::GENESIS);
            }
            return findings;
        };
        self.chained = true;
        if let Some(head) = &self.head
            && link(head, event.canonical) != *stored
        {
            findings.push(Finding::Broken {
                sequence: event.sequence,
            });
        }
        self.head = Some(*stored);
        findings
    }
}

impl ChainWalk {
    /// A walk that starts after `sequence` without knowing the head there: the next event's
    /// link is taken as given (a period that starts mid-stream).
    pub fn anchored_after(sequence: u64) -> Self {
        Self {
            through: sequence,
            head: None,
            chained: true,
        }
    }

    /// An event at `sequence` that expired under the retention policy: only its link is left
    /// (`stored`), which the next event's link must follow from.
    pub fn step_expired(&mut self, sequence: u64, stored: Option<&ChainHash>) -> Vec<Finding> {
        let mut findings = Vec::new();
        if !self.advance_to(sequence, &mut findings) {
            return findings;
        }
        findings.push(Finding::Expired {
            first: sequence,
            last: sequence,
        });
        match stored {
            Some(hash) => {
                self.chained = true;
                self.head = Some(*hash);
            }
            // Expired before its agent chained its events: the chain starts after it.
            None if !self.chained => self.head = Some(ChainHash::GENESIS),
            None => {
                findings.push(Finding::HashRemoved { sequence });
                self.head = None;
            }
        }
        findings
    }

    /// A stored record at `sequence` that is not an event at all (it cannot be decoded): a
    /// break, after which the next link cannot be known.
    pub fn step_unreadable(&mut self, sequence: u64) -> Vec<Finding> {
        let mut findings = Vec::new();
        if self.advance_to(sequence, &mut findings) {
            findings.push(Finding::Broken { sequence });
            self.head = None;
        }
        findings
    }

    /// Moves to `sequence`, reporting what lies between; `false` (with a finding) when it is not
    /// ahead of the walk.
    fn advance_to(&mut self, sequence: u64, findings: &mut Vec<Finding>) -> bool {
        if sequence <= self.through {
            findings.push(Finding::Broken { sequence });
            return false;
        }
        if sequence > self.through + 1 {
            findings.push(Finding::Missing {
                first: self.through + 1,
                last: sequence - 1,
            });
            self.head = None;
        }
        self.through = sequence;
        true
    }
}

/// Joins adjacent `Unchained` findings into ranges, so a report lists ranges, not sequences.
pub fn merge_ranges(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        match (out.last_mut(), &finding) {
            (Some(Finding::Unchained { last, .. }), Finding::Unchained { first, last: l })
            | (Some(Finding::Expired { last, .. }), Finding::Expired { first, last: l })
                if *first == *last + 1 =>
            {
                *last = *l;
            }
            _ => out.push(finding),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(bodies: &[&[u8]]) -> Vec<ChainHash> {
        let mut head = ChainHash::GENESIS;
        bodies
            .iter()
            .map(|b| {
                head = link(&head, b);
                head
            })
            .collect()
    }

    #[test]
    fn an_expired_event_keeps_the_chain_going_and_a_forged_link_breaks_it() {
        let hashes = chain(&[b"one", b"two", b"three"]);
        let mut walk = ChainWalk::default();
        let mut found = walk.step(ChainStep {
            sequence: 1,
            is_loss: false,
            stored: Some(&hashes[0]),
            canonical: b"one",
        });
        found.extend(walk.step_expired(2, Some(&hashes[1])));
        found.extend(walk.step(ChainStep {
            sequence: 3,
            is_loss: false,
            stored: Some(&hashes[2]),
            canonical: b"three",
        }));
        assert_eq!(found, vec![Finding::Expired { first: 2, last: 2 }]);
        assert!(!found[0].is_break());

        let mut walk = ChainWalk::default();
        walk.step(ChainStep {
            sequence: 1,
            is_loss: false,
            stored: Some(&hashes[0]),
            canonical: b"one",
        });
        walk.step_expired(2, Some(&hashes[0]));
        let after_forged = walk.step(ChainStep {
            sequence: 3,
            is_loss: false,
            stored: Some(&hashes[2]),
            canonical: b"three",
        });
        assert_eq!(after_forged, vec![Finding::Broken { sequence: 3 }]);
    }

    fn walk(steps: &[(u64, bool, Option<ChainHash>, &[u8])]) -> Vec<Finding> {
        let mut walk = ChainWalk::default();
        let mut out = Vec::new();
        for (sequence, is_loss, stored, canonical) in steps {
            out.extend(walk.step(ChainStep {
                sequence: *sequence,
                is_loss: *is_loss,
                stored: stored.as_ref(),
                canonical,
            }));
        }
        merge_ranges(out)
    }

    const BODIES: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];

    #[test]
    fn an_intact_chain_has_no_findings() {
        let h = chain(&BODIES);
        let steps: Vec<_> = (0..4)
            .map(|i| (i as u64 + 1, false, Some(h[i]), BODIES[i]))
            .collect();
        assert_eq!(walk(&steps), vec![]);
    }

    #[test]
    fn an_altered_event_is_reported_once_at_its_own_sequence() {
        let h = chain(&BODIES);
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, false, Some(h[1]), b"TWO".as_slice()),
            (3, false, Some(h[2]), BODIES[2]),
            (4, false, Some(h[3]), BODIES[3]),
        ];
        assert_eq!(walk(&steps), vec![Finding::Broken { sequence: 2 }]);
    }

    #[test]
    fn a_rewritten_hash_breaks_the_next_link() {
        let h = chain(&BODIES);
        let forged = link(&h[0], b"TWO");
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, false, Some(forged), b"TWO".as_slice()),
            (3, false, Some(h[2]), BODIES[2]),
        ];
        assert_eq!(walk(&steps), vec![Finding::Broken { sequence: 3 }]);
    }

    #[test]
    fn swapped_events_break_both_links() {
        let h = chain(&BODIES);
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, false, Some(h[2]), BODIES[2]),
            (3, false, Some(h[1]), BODIES[1]),
            (4, false, Some(h[3]), BODIES[3]),
        ];
        assert_eq!(
            walk(&steps),
            vec![
                Finding::Broken { sequence: 2 },
                Finding::Broken { sequence: 3 },
                Finding::Broken { sequence: 4 }
            ]
        );
    }

    #[test]
    fn a_deleted_event_is_a_missing_range() {
        let h = chain(&BODIES);
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (3, false, Some(h[2]), BODIES[2]),
            (4, false, Some(h[3]), BODIES[3]),
        ];
        assert_eq!(walk(&steps), vec![Finding::Missing { first: 2, last: 2 }]);
    }

    #[test]
    fn a_declared_loss_is_reported_but_is_not_a_break() {
        let h = chain(&BODIES);
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, true, Some(h[1]), b"loss".as_slice()),
            (3, false, Some(h[2]), BODIES[2]),
        ];
        let findings = walk(&steps);
        assert_eq!(findings, vec![Finding::DeclaredLoss { sequence: 2 }]);
        assert!(!findings[0].is_break());
        // A loss whose hash was lost too: the next link is taken as given.
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, true, None, b"loss".as_slice()),
            (3, false, Some(h[2]), BODIES[2]),
            (4, false, Some(h[3]), BODIES[3]),
        ];
        assert_eq!(walk(&steps), vec![Finding::DeclaredLoss { sequence: 2 }]);
    }

    #[test]
    fn events_from_before_chaining_are_unchained_and_the_chain_starts_after_them() {
        let h = chain(&BODIES[2..]);
        let steps = [
            (1, false, None, BODIES[0]),
            (2, false, None, BODIES[1]),
            (3, false, Some(h[0]), BODIES[2]),
            (4, false, Some(h[1]), BODIES[3]),
        ];
        let findings = walk(&steps);
        assert_eq!(findings, vec![Finding::Unchained { first: 1, last: 2 }]);
        assert!(!findings[0].is_break());
    }

    #[test]
    fn a_hash_removed_after_the_chain_started_is_a_break() {
        let h = chain(&BODIES);
        let steps = [
            (1, false, Some(h[0]), BODIES[0]),
            (2, false, None, BODIES[1]),
            (3, false, Some(h[2]), BODIES[2]),
        ];
        assert_eq!(walk(&steps), vec![Finding::HashRemoved { sequence: 2 }]);
    }

    #[test]
    fn a_walk_resumes_where_it_stopped() {
        let h = chain(&BODIES);
        let mut first = ChainWalk::default();
        for i in 0..2 {
            assert!(
                first
                    .step(ChainStep {
                        sequence: i as u64 + 1,
                        is_loss: false,
                        stored: Some(&h[i]),
                        canonical: BODIES[i],
                    })
                    .is_empty()
            );
        }
        let saved = serde_json::to_string(&first).unwrap();
        let mut resumed: ChainWalk = serde_json::from_str(&saved).unwrap();
        let findings = resumed.step(ChainStep {
            sequence: 3,
            is_loss: false,
            stored: Some(&h[2]),
            canonical: BODIES[2],
        });
        assert!(findings.is_empty());
    }

    #[test]
    fn an_unreadable_record_is_a_break_and_the_next_link_is_taken_as_given() {
        let h = chain(&BODIES);
        let mut walk = ChainWalk::default();
        let step = |walk: &mut ChainWalk, i: usize| {
            walk.step(ChainStep {
                sequence: i as u64 + 1,
                is_loss: false,
                stored: Some(&h[i]),
                canonical: BODIES[i],
            })
        };
        assert!(step(&mut walk, 0).is_empty());
        assert_eq!(
            walk.step_unreadable(2),
            vec![Finding::Broken { sequence: 2 }]
        );
        assert!(step(&mut walk, 2).is_empty());
        assert!(step(&mut walk, 3).is_empty());
        assert_eq!(
            walk.step_unreadable(4),
            vec![Finding::Broken { sequence: 4 }],
            "not ahead of the walk"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_other_lengths() {
        let h = link(&ChainHash::GENESIS, b"x");
        assert_eq!(ChainHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChainHash::from_hex("ab"), None);
        assert!(ChainHash::from_slice(&[0; 31]).is_err());
    }
}
