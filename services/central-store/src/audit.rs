//! Proving the audit trail: the checks shared by `central verify` (rows in PostgreSQL) and the
//! offline `central verify-bundle` (an exported bundle, nothing else), and the bundle format.
//!
//! Both read events as [`EventRecord`]s (a stored row: columns and JSON body), rebuild each as
//! the domain event the agent recorded, and walk the stream's hash chain
//! (`onshi_domain::chain`); then they check each daily seal (`onshi_domain::seal`) against the
//! event at its sequence and against the seal before it. No I/O here.

use std::collections::BTreeSet;

use onshi_domain::chain::{ChainHash, ChainStep, ChainWalk, Finding, merge_ranges};
use onshi_domain::events::{EventBody, EventId, FleetEvent};
use onshi_domain::seal::Seal;
use onshi_domain::site::{SiteCode, TerminalId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// One stored event, as PostgreSQL holds it and as a bundle carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub sequence: i64,
    pub event_id: Uuid,
    pub terminal_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub body: serde_json::Value,
    /// Lowercase hex; absent for events from agents that predate chaining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_hash: Option<String>,
    /// The event expired under the retention policy: only its link (and sequence, time, id)
    /// is left; `body` is null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl EventRecord {
    /// The domain event the agent recorded, or `None` if this record cannot be one.
    fn event(&self, site_code: &str) -> Option<FleetEvent> {
        Some(FleetEvent {
            id: EventId::from_uuid(self.event_id).ok()?,
            site: SiteCode::parse(site_code).ok()?,
            terminal: TerminalId::parse(&self.terminal_id).ok()?,
            occurred_at: self.occurred_at,
            sequence: u64::try_from(self.sequence).ok()?,
            chain_hash: match &self.chain_hash {
                Some(hex) => Some(ChainHash::from_hex(hex)?),
                None => None,
            },
            body: serde_json::from_value::<EventBody>(self.body.clone()).ok()?,
        })
    }
}

/// A seal with its signature and the public key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSeal {
    pub seal: Seal,
    /// Lowercase hex.
    pub signature: String,
    /// Lowercase hex, 32 bytes of Ed25519 public key.
    pub public_key: String,
}

/// Walks `records` (in sequence order) and returns the findings.
pub(crate) fn walk_records(
    site_code: &str,
    records: &[EventRecord],
    walk: &mut ChainWalk,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for record in records {
        let sequence = record.sequence.max(0) as u64;
        if record.expired {
            let link = record.chain_hash.as_deref().map(ChainHash::from_hex);
            match link {
                Some(None) => findings.extend(walk.step_unreadable(sequence)),
                Some(Some(hash)) => findings.extend(walk.step_expired(sequence, Some(&hash))),
                None => findings.extend(walk.step_expired(sequence, None)),
            }
            continue;
        }
        match record.event(site_code) {
            Some(event) => {
                let canonical = proto::chain::canonical(&event);
                findings.extend(walk.step(ChainStep {
                    sequence,
                    is_loss: matches!(event.body, EventBody::Loss(_)),
                    stored: event.chain_hash.as_ref(),
                    canonical: &canonical,
                }));
            }
            // Not even an event any more: a break, and the next link is unknown.
            None => findings.extend(walk.step_unreadable(sequence)),
        }
    }
    findings
}

/// Checks a stream's seals (oldest first) whose sequence lies in `first..=last`: each is signed
/// by the key it names, follows the seal before it, and names the chain hash that `held`
/// returns for its sequence (`None`: no event there; `Some(None)`: an event without a hash).
/// Returns how many were checked; the keys that signed them go into `keys`.
pub(crate) fn check_seals(
    seals: &[SignedSeal],
    first: u64,
    last: u64,
    mut held: impl FnMut(u64) -> Option<Option<String>>,
    findings: &mut Vec<Finding>,
    keys: &mut BTreeSet<String>,
) -> u64 {
    let mut previous = ChainHash::GENESIS;
    let mut checked = 0;
    for signed in seals {
        let seal = &signed.seal;
        let mut problem = |what: &str| {
            findings.push(Finding::Seal {
                day: seal.day.to_string(),
                sequence: seal.through_sequence,
                problem: what.to_string(),
            })
        };
        let in_range = (first..=last).contains(&seal.through_sequence);
        let follows = seal.previous == previous;
        previous = seal.hash();
        if !in_range {
            continue;
        }
        checked += 1;
        keys.insert(signed.public_key.clone());
        if !follows {
            problem("it does not follow the stream's previous seal (a seal removed or replaced)");
        }
        let verified = match (
            onshi_domain::hex::decode(&signed.public_key),
            onshi_domain::hex::decode(&signed.signature),
        ) {
            (Some(key), Some(signature)) => seal.verify(&key, &signature),
            _ => false,
        };
        if !verified {
            problem("its signature does not verify");
        }
        match held(seal.through_sequence) {
            None => problem("the sealed event is gone"),
            Some(hash) if hash.as_deref() != Some(seal.head.to_hex().as_str()) => {
                problem("the event there is not the one sealed (the chain was rewritten)")
            }
            Some(_) => {}
        }
    }
    checked
}

/// One stream's part of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct StreamVerification {
    pub site_code: String,
    pub stream_id: Uuid,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub events: u64,
    /// Set when the period starts mid-stream: the link of this first event was taken as given
    /// (only a walk from the stream's start, or a seal, proves it).
    pub anchored_at: Option<u64>,
    /// Daily seals checked against the events (their signature, head and chain).
    pub seals: u64,
    pub findings: Vec<Finding>,
    pub intact: bool,
}

impl StreamVerification {
    /// A stream's verdict from its findings.
    pub fn new(
        site_code: String,
        stream_id: Uuid,
        (first_sequence, last_sequence): (u64, u64),
        events: u64,
        anchored_at: Option<u64>,
        seals: u64,
        findings: Vec<Finding>,
    ) -> Self {
        let findings = merge_ranges(findings);
        let intact = !findings.iter().any(Finding::is_break);
        Self {
            site_code,
            stream_id,
            first_sequence,
            last_sequence,
            events,
            anchored_at,
            seals,
            findings,
            intact,
        }
    }
}

/// The verdict over a period.
#[derive(Debug, Clone, Serialize)]
pub struct ChainVerdict {
    pub site_code: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub events: u64,
    pub streams: Vec<StreamVerification>,
    /// The public keys (hex) that signed the seals checked: compare them with central's
    /// published seal key.
    pub seal_keys: Vec<String>,
    pub intact: bool,
}

impl ChainVerdict {
    pub fn new(
        site_code: Option<String>,
        (from, to): (Option<OffsetDateTime>, Option<OffsetDateTime>),
        streams: Vec<StreamVerification>,
        seal_keys: BTreeSet<String>,
    ) -> Self {
        Self {
            site_code,
            from,
            to,
            events: streams.iter().map(|s| s.events).sum(),
            intact: streams.iter().all(|s| s.intact),
            streams,
            seal_keys: seal_keys.into_iter().collect(),
        }
    }

    /// The verdict for a person: one line, then one line per finding.
    pub fn describe(&self) -> String {
        let scope = self
            .site_code
            .as_deref()
            .map_or("all sites".to_string(), |s| format!("site {s}"));
        let mut out = if self.intact {
            let seals: u64 = self.streams.iter().map(|s| s.seals).sum();
            format!(
                "INTACT: {scope}, {} events in {} streams follow their hash chains; {seals} daily \
                 seals agree\n",
                self.events,
                self.streams.len()
            )
        } else {
            let broken = self.streams.iter().filter(|s| !s.intact).count();
            format!(
                "BROKEN: {scope}, {broken} of {} streams have events that are not what the site \
                 recorded\n",
                self.streams.len()
            )
        };
        for key in &self.seal_keys {
            out.push_str(&format!("  seals signed by key {key}\n"));
        }
        for stream in &self.streams {
            for finding in &stream.findings {
                out.push_str(&format!(
                    "  site {} stream {}: {}\n",
                    stream.site_code,
                    stream.stream_id,
                    describe(finding)
                ));
            }
            if let Some(at) = stream.anchored_at {
                out.push_str(&format!(
                    "  site {} stream {}: the period starts at sequence {at}; its own link is \
                     taken as given\n",
                    stream.site_code, stream.stream_id
                ));
            }
        }
        out
    }
}

/// One finding, for a person.
pub fn describe(finding: &Finding) -> String {
    match finding {
        Finding::Broken { sequence } => format!(
            "sequence {sequence} does not follow from the one before it (an event altered, \
             replaced or moved)"
        ),
        Finding::Missing { first, last } if first == last => {
            format!("sequence {first} is missing")
        }
        Finding::Missing { first, last } => format!("sequences {first}..{last} are missing"),
        Finding::HashRemoved { sequence } => {
            format!("sequence {sequence} has lost its chain hash")
        }
        Finding::DeclaredLoss { sequence } => format!(
            "sequence {sequence} is a loss the site declared (a record it could not read back)"
        ),
        Finding::Unchained { first, last } => format!(
            "sequences {first}..{last} were recorded before the agent chained its events \
             (present, not provable)"
        ),
        Finding::Expired { first, last } => format!(
            "sequences {first}..{last} expired under the retention policy (content dropped; \
             their chain links remain and the chain continues through them)"
        ),
        Finding::Seal {
            day,
            sequence,
            problem,
        } => format!("the seal of {day} (sequence {sequence}): {problem}"),
    }
}

// ------------------------------------------------------------------------------- bundles

/// The bundle format's name and version, checked first on reading.
pub(crate) const BUNDLE_FORMAT: &str = "onshi-fleet audit bundle v1";

/// A self-verifying export for auditors who cannot reach the live system: a site's events over
/// a period (each stream from its first event in the period to its last), with their hash
/// chains and the seals that cover them, each seal naming the public key that signed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub site_code: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    pub exported_by: String,
    pub streams: Vec<BundleStream>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleStream {
    pub stream_id: Uuid,
    /// Whether the events start at the stream's first sequence (else the first link is
    /// anchored, as a period that starts mid-stream is).
    pub from_start: bool,
    pub events: Vec<EventRecord>,
    pub seals: Vec<SignedSeal>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not an onshi-fleet audit bundle: {0}")]
    Unreadable(serde_json::Error),
    #[error("this bundle is in format {found:?}; this verifier reads {BUNDLE_FORMAT:?}")]
    Format { found: String },
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(BundleError::Unreadable)?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(BundleError::Format {
                found: bundle.format,
            });
        }
        Ok(bundle)
    }

    /// Verifies the bundle by itself: every stream's chain over its events, every seal.
    pub fn verify(&self) -> ChainVerdict {
        let mut keys = BTreeSet::new();
        let streams = self
            .streams
            .iter()
            .map(|stream| {
                let first = stream
                    .events
                    .first()
                    .map_or(1, |e| e.sequence.max(1) as u64);
                let last = stream.events.last().map_or(0, |e| e.sequence.max(0) as u64);
                let (mut walk, anchored_at) = if stream.from_start || first <= 1 {
                    (ChainWalk::default(), None)
                } else {
                    (ChainWalk::anchored_after(first - 1), Some(first))
                };
                let mut findings = walk_records(&self.site_code, &stream.events, &mut walk);
                // A bundle up to now must reach every sealed sequence: events cut off its end
                // still have their seals.
                let sealed = stream.seals.iter().map(|s| s.seal.through_sequence).max();
                if self.to.is_none()
                    && let Some(sealed) = sealed.filter(|s| *s > last)
                {
                    findings.push(Finding::Missing {
                        first: last + 1,
                        last: sealed,
                    });
                }
                let first_walked = if anchored_at.is_some() { first } else { 1 };
                let seals = check_seals(
                    &stream.seals,
                    first_walked,
                    last,
                    |sequence| {
                        stream
                            .events
                            .iter()
                            .find(|e| e.sequence == sequence as i64)
                            .map(|e| e.chain_hash.clone())
                    },
                    &mut findings,
                    &mut keys,
                );
                StreamVerification::new(
                    self.site_code.clone(),
                    stream.stream_id,
                    (first_walked, last),
                    stream.events.len() as u64,
                    anchored_at,
                    seals,
                    findings,
                )
            })
            .collect();
        ChainVerdict::new(
            Some(self.site_code.clone()),
            (self.from, self.to),
            streams,
            keys,
        )
    }
}
