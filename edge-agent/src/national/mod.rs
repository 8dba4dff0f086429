//! The agent's way to the national system: one [`Transport`] trait, two implementations.
//!
//! - **terminal** ([`terminal::Terminal`], what a real site uses): every exchange is a request
//!   file written into the qualification terminal's `req` folder and answered by the terminal's
//!   result file in `res` (domain notes §4). The terminal's own software talks to the national
//!   system; its file interface is the only public way in.
//! - **direct** ([`crate::onshi::OnshiClient`]): HTTPS to onshi-sim's own protocol
//!   (`POST /oqs/<message id>`). No real national endpoint speaks it; it exists for the
//!   simulator, demos and benchmarks.
//!
//! With the terminal transport the agent works with the terminal's folders in one of two modes
//! ([`settings::TerminalMode`]): as a **client** (above; relaying the receipt computer's
//! requests too when `[file_exchange]` is configured), or as a **tap** ([`tap`]): it only reads
//! the folders and records the receipt computer's own exchanges, and sends nothing
//! ([`National::Tap`] refuses every exchange).
//!
//! Callers hold a [`National`] and call [`Transport::exchange_journaled`] as they did the
//! HTTPS client; answers keep the [`OnshiAnswer`] shape (`http_status` is 200 for every result
//! file the terminal wrote: its refusals are inside the file, as they are in onshi-sim's).
//!
//! **Crash safety (terminal).** Every request is journaled ([`journal`]) before its file
//! appears, with the result once it is read, so a request is never written twice and a result
//! that landed while the agent was down is found at start. [`National::exchange_for_lookup`]
//! hands the caller a [`Ticket`]: it notes the lookup event's sequence in the journal inside the
//! outbox transaction that records it (`Recorder::record_noting`, as `filex` does), so at start
//! the journal tells whether the event committed: each result is recorded exactly once. Every
//! exchange is journaled with what records it ([`Recovery`]): lookups, information views and a
//! national batch's steps are recorded at start by [`RecordsRecovered`] (`crate::resume`).

pub mod health;
pub mod journal;
pub mod settings;
pub mod terminal;

use std::future::Future;
use std::sync::Arc;

use onshi_domain::events::{FleetEvent, InfoView, LookupSource};
use onshi_domain::site::TerminalId;
use onshi_domain::xml::QualificationConfirmationRequest;
use serde::{Deserialize, Serialize};

pub use crate::onshi::{Asked, OnshiAnswer, OnshiClient, OnshiError};
pub use settings::{TerminalFolders, TerminalMode, TransportKind};

/// What a tap-mode agent says when asked to send something itself.
pub const TAP_REFUSAL: &str = "この端末はタップモードです（資格確認端末のフォルダを読むだけで、照会はしません）。レセコンから照会してください / tap mode: the agent only watches the qualification terminal's folders and sends nothing; look patients up at the receipt computer";

/// One way to exchange a message with the national system.
pub trait Transport {
    /// Sends one message (`OQSsiquc01`, `OQSmuquc01`, `YZKsiquc01`, …) and returns its answer.
    /// `recovery` says what a restarted agent must do with an answer this run could not hand
    /// over ([`Recovery`]); the [`Ticket`] closes the exchange's journal entry.
    fn exchange_journaled(
        &self,
        message_id: &str,
        body: Vec<u8>,
        recovery: Recovery,
    ) -> impl Future<Output = (Result<OnshiAnswer, OnshiError>, Ticket)> + Send;
}

/// What a restarted agent does with an exchange the previous run left open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recovery {
    /// Nothing records the answer: at start the request is withdrawn if still unanswered and
    /// its result removed. Every exchange the agent makes names what records it; this is what
    /// an entry whose recovery does not read is taken for.
    HandOver,
    /// An eligibility confirmation: recorded as a lookup with this provenance at start
    /// (`Lookups::record_asked`).
    Lookup(StoredProvenance),
    /// An information view (`YZKsiquc01`, `TKKsiquc01`) the access policy allowed: recorded at
    /// start as this view, allowed or refused by the answer ([`RecordsRecovered::record_recovered_view`]).
    View(StoredView),
    /// A step of a national batch inquiry (`OQSmuquc01`, `OQSmuquc02`): at start the batch is
    /// resumed from the furthest step the journal holds and its rows are recorded, all in one
    /// outbox transaction ([`RecordsRecovered::resume_batch`]).
    Batch(StoredBatch),
    /// The receipt computer's request relayed by the file exchange: at start the answer (or
    /// the terminal's silence) is written to the file exchange's journal of the request at
    /// `journal` when it has none, so the file exchange finishes it without asking again.
    Relay { journal: std::path::PathBuf },
}

/// [`Provenance`] as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProvenance {
    pub source: LookupSource,
    pub batch_id: Option<String>,
    pub terminal: String,
}

/// An information view waiting for its answer, as the journal keeps it: the view event to
/// record (the policy's decision made, `allowed` still false) and where it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredView {
    pub terminal: String,
    pub view: InfoView,
}

/// A national batch's step, as the journal keeps it: which batch, asked where. The
/// `OQSmuquc01` entry holds the batch's rows (its request); its `OQSmuquc02` entries the
/// results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBatch {
    pub batch_id: String,
    pub terminal: String,
}

/// What a restarted agent knows of a national batch the previous run did not finish recording
/// ([`RecordsRecovered::resume_batch`]).
#[derive(Debug)]
pub struct BatchLeft {
    pub stored: StoredBatch,
    /// The `OQSmuquc01` request: the batch's rows.
    pub request: Vec<u8>,
    /// Its answer (the reception number), or why there is none.
    pub accepted: Result<OnshiAnswer, OnshiError>,
    /// The last `OQSmuquc02` answer read, when there is one.
    pub results: Option<OnshiAnswer>,
    /// Since the batch was sent.
    pub latency_ms: u32,
    /// The batch's journal entries: noted with the rows' events, closed once they committed.
    pub tickets: Vec<Ticket>,
}

impl Recovery {
    pub fn lookup(provenance: &Provenance) -> Self {
        Recovery::Lookup(StoredProvenance {
            source: provenance.source,
            batch_id: provenance.batch_id.clone(),
            terminal: provenance.terminal.as_str().to_string(),
        })
    }
}

impl StoredProvenance {
    pub fn provenance(&self) -> Option<Provenance> {
        Some(Provenance {
            source: self.source,
            batch_id: self.batch_id.clone(),
            terminal: TerminalId::parse(&self.terminal).ok()?,
        })
    }
}

/// The journal entry of one terminal exchange, until its lookup is recorded. Cheap to clone;
/// a no-op for the direct transport (nothing to resume: an HTTPS answer that was not recorded
/// is gone with the process, as it always was).
#[derive(Debug, Clone, Default)]
pub struct Ticket(Option<Journaled>);

#[derive(Debug, Clone)]
struct Journaled {
    journal: journal::Journal,
    id: i64,
    /// The crash-test hook ([`crate::fault`]).
    fault: Option<crate::fault::Fault>,
}

impl Ticket {
    pub(crate) fn journaled(
        journal: journal::Journal,
        id: i64,
        fault: Option<crate::fault::Fault>,
    ) -> Self {
        Self(Some(Journaled { journal, id, fault }))
    }

    /// Notes the event that records this exchange; call it inside the outbox transaction
    /// (`Recorder::record_noting`'s `before_commit`, a blocking thread).
    pub fn note(&self, event: &FleetEvent) {
        if let Some(entry) = &self.0
            && let Err(error) = entry.journal.note_blocking(entry.id, event)
        {
            tracing::error!(%error, "cannot note the lookup's sequence in the terminal journal; a crash now could record it twice");
        }
    }

    /// Closes the entry once its event committed (or when nothing is to be recorded).
    pub async fn finish(&self) {
        if let Some(entry) = &self.0 {
            crate::fault::strike(entry.fault, crate::fault::Fault::TerminalAfterRecord);
            if let Err(error) = entry.journal.close(entry.id).await {
                tracing::warn!(%error, "cannot close a finished terminal journal entry; it is checked again at start");
            }
        }
    }
}

/// The transport the agent was configured with.
#[derive(Debug, Clone)]
pub enum National {
    Direct(Box<OnshiClient>),
    Terminal(Arc<terminal::Terminal>),
    /// Tap mode: nothing is sent; the health is the one [`crate::observed::tap::Tap`] keeps from what it sees.
    Tap(Arc<health::Health>),
}

impl National {
    /// An eligibility confirmation whose lookup event the caller records: note the event with
    /// the [`Ticket`] inside the outbox transaction, then [`Ticket::finish`].
    pub async fn exchange_for_lookup(
        &self,
        message_id: &str,
        body: Vec<u8>,
        provenance: &Provenance,
    ) -> (Result<OnshiAnswer, OnshiError>, Ticket) {
        self.exchange_journaled(message_id, body, Recovery::lookup(provenance))
            .await
    }

    /// The card route's JSON messages exist only in onshi-sim's protocol; in terminal mode card
    /// lookups are the terminal's own (they arrive as face results, [`face`]).
    pub async fn exchange_json(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<OnshiAnswer, OnshiError> {
        match self {
            National::Direct(client) => client.exchange_json(path, body).await,
            National::Terminal(_) | National::Tap(_) => Err(OnshiError::Unreachable(
                "card lookups go through the qualification terminal's own reader in terminal mode"
                    .into(),
            )),
        }
    }

    /// The terminal transport in client mode, when configured.
    pub fn terminal(&self) -> Option<&Arc<terminal::Terminal>> {
        match self {
            National::Terminal(t) => Some(t),
            National::Direct(_) | National::Tap(_) => None,
        }
    }

    /// The terminal's health (client or tap mode).
    pub fn health(&self) -> Option<&Arc<health::Health>> {
        match self {
            National::Terminal(t) => Some(t.health()),
            National::Tap(health) => Some(health),
            National::Direct(_) => None,
        }
    }

    /// Whether the agent may send anything itself (not in tap mode).
    pub fn sends(&self) -> bool {
        !matches!(self, National::Tap(_))
    }

    pub fn kind(&self) -> TransportKind {
        match self {
            National::Direct(_) => TransportKind::Direct,
            National::Terminal(_) | National::Tap(_) => TransportKind::Terminal,
        }
    }
}

impl Transport for National {
    async fn exchange_journaled(
        &self,
        message_id: &str,
        body: Vec<u8>,
        recovery: Recovery,
    ) -> (Result<OnshiAnswer, OnshiError>, Ticket) {
        match self {
            National::Direct(client) => client.exchange_journaled(message_id, body, recovery).await,
            National::Terminal(t) => t.exchange_journaled(message_id, body, recovery).await,
            National::Tap(_) => (
                Err(OnshiError::Unreachable(TAP_REFUSAL.into())),
                Ticket::default(),
            ),
        }
    }
}

impl Transport for OnshiClient {
    async fn exchange_journaled(
        &self,
        message_id: &str,
        body: Vec<u8>,
        _recovery: Recovery,
    ) -> (Result<OnshiAnswer, OnshiError>, Ticket) {
        (self.exchange(message_id, body).await, Ticket::default())
    }
}

/// How a lookup was asked for, recorded on its event (and kept in the terminal journal, so a
/// result recovered at start is recorded as it was asked).
#[derive(Debug, Clone)]
pub struct Provenance {
    pub source: LookupSource,
    pub batch_id: Option<String>,
    pub terminal: TerminalId,
}

/// What records a lookup the terminal answered while its caller was gone (start-up recovery,
/// [`terminal::Terminal::recover`]): [`crate::lookup::Lookups`]. A trait here, so the transport
/// does not depend on the recorders above it.
pub trait RecordsRecovered: Send + Sync + 'static {
    /// Records the lookup `request` asked, as `provenance` says it was asked; `before_commit`
    /// sees its event inside the outbox transaction (the journal's note).
    fn record_recovered(
        &self,
        request: &QualificationConfirmationRequest,
        asked: Asked,
        provenance: Provenance,
        before_commit: Box<dyn FnOnce(&FleetEvent) + Send>,
    ) -> impl Future<Output = Result<(), crate::outbox::OutboxError>> + Send;

    /// Records the information view `stored` waited for, allowed or refused by `answer`;
    /// `before_commit` as above.
    fn record_recovered_view(
        &self,
        stored: &StoredView,
        answer: Result<OnshiAnswer, OnshiError>,
        before_commit: Box<dyn FnOnce(&FleetEvent) + Send>,
    ) -> impl Future<Output = Result<(), crate::outbox::OutboxError>> + Send;

    /// Finishes a national batch from where `left` says the previous run stopped (polling for
    /// its results through the transport if they are not in yet), records its rows in one
    /// transaction noted on every ticket, and closes them.
    fn resume_batch(&self, left: BatchLeft) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
pub(crate) mod test_site;
#[cfg(test)]
mod tests;
