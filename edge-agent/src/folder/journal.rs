//! The restart journal of one request being answered: `work/<request-name>.journal`, a small
//! JSON file written atomically (temp, fsync, rename, fsync of the folder).
//!
//! Written twice per request:
//!
//! 1. **answered**: the national system's answer (the raw result file, or why it could not be
//!    reached), before the lookup event is recorded. After a crash the answer is recorded from
//!    here: no second national query.
//! 2. **recording**: the same plus the event's sequence, id and outbox stream (and its index
//!    among the request's events: a batch result is one event per row, a batch still in
//!    progress none), written from inside the outbox transaction that records each event,
//!    before it commits ([`crate::recorder::Recorder::record_noting`]); the events before it
//!    committed. After a crash the outbox says whether that transaction committed
//!    ([`was_committed`]): the events after it are recorded now, none twice, and the result
//!    is written from the journal.
//!
//! The request file and its journal leave `work/` together when the result is written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::onshi::{Asked, OnshiAnswer, OnshiError};
use crate::outbox::{Outbox, OutboxError};

use super::fsio;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredAnswer {
    Answered { http_status: u16, body_hex: String },
    Failed { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub sequence: u64,
    pub event_id: String,
    pub stream_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub answer: StoredAnswer,
    pub latency_ms: u32,
    #[serde(default)]
    pub recording: Option<Recording>,
    /// Which of the request's events `recording` notes (0 for journals written before the
    /// file exchange relayed more than eligibility requests, which had one).
    #[serde(default)]
    pub recording_index: u32,
}

impl Journal {
    pub fn from_asked(asked: &Asked) -> Self {
        let answer = match &asked.answer {
            Ok(a) => StoredAnswer::Answered {
                http_status: a.http_status,
                body_hex: fsio::hex(&a.body),
            },
            Err(e) => StoredAnswer::Failed {
                message: e.to_string(),
            },
        };
        Self {
            version: 1,
            answer,
            latency_ms: asked.latency_ms,
            recording: None,
            recording_index: 0,
        }
    }

    /// The answer as [`crate::lookup::Lookups::record_asked`] takes it.
    pub fn asked(&self) -> Asked {
        let answer = match &self.answer {
            StoredAnswer::Answered {
                http_status,
                body_hex,
            } => match fsio::unhex(body_hex) {
                Some(body) => Ok(OnshiAnswer {
                    http_status: *http_status,
                    body,
                }),
                None => Err(OnshiError::Body("the journal's copy is damaged".into())),
            },
            StoredAnswer::Failed { message } => Err(OnshiError::Unreachable(message.clone())),
        };
        Asked {
            answer,
            latency_ms: self.latency_ms,
        }
    }

    pub fn raw_result(&self) -> Option<Vec<u8>> {
        match &self.answer {
            StoredAnswer::Answered { body_hex, .. } => fsio::unhex(body_hex),
            StoredAnswer::Failed { .. } => None,
        }
    }
}

pub fn path_for(request_in_work: &Path) -> PathBuf {
    let mut name = request_in_work.as_os_str().to_os_string();
    name.push(".journal");
    PathBuf::from(name)
}

pub fn write(path: &Path, journal: &Journal) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(journal).map_err(std::io::Error::other)?;
    fsio::write_atomic(path, &bytes)
}

/// The journal, `None` when there is none; a damaged one is an error.
pub fn read(path: &Path) -> std::io::Result<Option<Journal>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the outbox transaction noted in `recording` committed. Called at start, before
/// anything else records an event.
///
/// - The record is still in the outbox (not yet acknowledged): committed iff it has the noted
///   id (a different event at that sequence means ours rolled back and the number was reused).
/// - The outbox never reached that sequence: not committed.
/// - The sequence is acknowledged and gone: committed (only this agent numbers events, and at
///   start nothing else has been recorded since the crash).
/// - The outbox is another stream (recreated): unknown; taken as committed, so that the audit
///   trail never holds a lookup twice, and said in the log.
pub async fn was_committed(outbox: &Outbox, recording: &Recording) -> Result<bool, OutboxError> {
    if outbox.stream_id().0.to_string() != recording.stream_id {
        tracing::warn!(
            "the outbox was recreated since this request was recorded; not recording it again"
        );
        return Ok(true);
    }
    let status = outbox.status().await?;
    if status.last_sequence < recording.sequence {
        return Ok(false);
    }
    let pending = outbox
        .pending(recording.sequence.saturating_sub(1), 1, 64 * 1024)
        .await?;
    match pending.first() {
        Some(p) if p.sequence == recording.sequence => {
            Ok(uuid::Uuid::from_slice(&p.event.event_id)
                .is_ok_and(|id| id.to_string() == recording.event_id))
        }
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxOptions;
    use onshi_domain::events::{
        EventBody, EventId, FleetEvent, LineType, LinkChange, LinkState, LinkTarget,
    };
    use onshi_domain::site::{SiteCode, TerminalId};

    fn event(sequence: u64) -> FleetEvent {
        FleetEvent {
            id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
            site: SiteCode::parse("3410712362").unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
            occurred_at: time::OffsetDateTime::now_utc(),
            sequence,
            chain_hash: None,
            body: EventBody::LinkChange(LinkChange {
                target: LinkTarget::Onshi,
                state: LinkState::Up,
                detail: None,
                rtt_ms: Some(1),
                line_type: Some(LineType::IpVpn),
            }),
        }
    }

    #[tokio::test]
    async fn the_outbox_tells_whether_the_noted_transaction_committed() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.sqlite3"),
            OutboxOptions {
                key_file: dir.path().join("outbox.key"),
                budget_bytes: 64 * 1024 * 1024,
                site: SiteCode::parse("3410712362").unwrap(),
                terminal: TerminalId::parse("T01").unwrap(),
            },
        )
        .unwrap();
        let stream_id = outbox.stream_id().0.to_string();
        let committed = outbox.append(event).await.unwrap();
        let noted = |sequence, event_id: String, stream_id: &str| Recording {
            sequence,
            event_id,
            stream_id: stream_id.to_string(),
        };
        // Committed and still unacknowledged: the id at that sequence is ours.
        assert!(
            was_committed(&outbox, &noted(1, committed.id.to_string(), &stream_id))
                .await
                .unwrap()
        );
        // Rolled back, and the number reused by another event.
        assert!(
            !was_committed(
                &outbox,
                &noted(1, uuid::Uuid::now_v7().to_string(), &stream_id)
            )
            .await
            .unwrap()
        );
        // Rolled back before anything took the number.
        assert!(
            !was_committed(
                &outbox,
                &noted(2, uuid::Uuid::now_v7().to_string(), &stream_id)
            )
            .await
            .unwrap()
        );
        // Acknowledged and gone: committed.
        outbox.ack(1).await.unwrap();
        assert!(
            was_committed(&outbox, &noted(1, committed.id.to_string(), &stream_id))
                .await
                .unwrap()
        );
    }

    #[test]
    fn a_journal_round_trips_the_answer() {
        let asked = Asked {
            answer: Ok(OnshiAnswer {
                http_status: 200,
                body: "<XmlMsg>資格</XmlMsg>".as_bytes().to_vec(),
            }),
            latency_ms: 7,
        };
        let journal = Journal::from_asked(&asked);
        let text = serde_json::to_vec(&journal).unwrap();
        let back: Journal = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, journal);
        assert_eq!(
            back.raw_result().unwrap(),
            "<XmlMsg>資格</XmlMsg>".as_bytes()
        );
        let failed = Journal::from_asked(&Asked {
            answer: Err(OnshiError::Timeout(std::time::Duration::from_secs(1))),
            latency_ms: 1000,
        });
        assert!(failed.raw_result().is_none());
        assert!(matches!(
            failed.asked().answer,
            Err(OnshiError::Unreachable(_))
        ));
    }
}
