//! Eligibility lookups: validate what the clerk typed, ask the national system, record the event
//! in the outbox, and only then answer.
//!
//! Input is checked completely before any network call (a wrong check digit never leaves the
//! site). Every lookup that reached the network is recorded, whatever its outcome, including
//! "unreachable". If the event cannot be recorded the answer is withheld: nothing is shown that
//! is not in the audit trail.

use std::path::Path;
use std::time::Instant;

use onshi_domain::codes::QualificationValidity;
use onshi_domain::events::{EventBody, FleetEvent, LookupOutcome, LookupRoute, LookupSource};
use onshi_domain::ids::{IdError, InsuranceCardQuery};
use onshi_domain::patient::PatientHashKey;
use onshi_domain::site::TerminalId;
use onshi_domain::xml::{
    QualificationConfirmSearchInfo, QualificationConfirmationRequest, RequestHeader, XmlEncoding,
};
use uuid::Uuid;

pub use crate::national::{Asked, Provenance};
pub use onshi_domain::calendar::today_jst;

use crate::judge::PersonShown;
use crate::national::{National, Recovery, Ticket, Transport};
use crate::outbox::OutboxError;
use crate::recorder::Recorder;

/// Records a lookup's national round trip in `agent_lookup_duration_seconds`, labelled by
/// route and outcome only (never by patient, staff or terminal).
pub fn observe_latency(route: LookupRoute, outcome: LookupOutcome, latency_ms: u32) {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::Histogram;
    static HISTOGRAM: std::sync::LazyLock<Histogram<f64>> = std::sync::LazyLock::new(|| {
        opentelemetry::global::meter("edge-agent")
            .f64_histogram("agent_lookup_duration_seconds")
            .with_description("National round trip of an eligibility lookup, by route and outcome")
            .with_unit("s")
            .with_boundaries(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            .build()
    });
    let route = match route {
        LookupRoute::MyNumberCard => "my_number_card",
        LookupRoute::InsuranceCard => "insurance_card",
    };
    HISTOGRAM.record(
        f64::from(latency_ms) / 1000.0,
        &[
            KeyValue::new("route", route),
            KeyValue::new("outcome", outcome.as_str()),
        ],
    );
}

/// What the clerk typed, as typed.
#[derive(Debug, Clone, Default)]
pub struct CardFields {
    pub insurer_number: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
    pub birthdate: String,
    pub terminal: Option<String>,
    pub limit_consent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The card fields are wrong; nothing was sent. Each entry is for the clerk.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidInput(Vec<IdError>),
    #[error("{0}")]
    BadTerminal(String),
    /// The lookup happened but could not be recorded, so its answer is withheld.
    #[error(transparent)]
    NotRecorded(#[from] OutboxError),
}

impl LookupError {
    /// The message for the counter, Japanese first, then English.
    pub fn for_clerk(&self) -> String {
        match self {
            LookupError::InvalidInput(errors) => errors
                .iter()
                .map(|e| format!("{} / {e}", e.message_ja()))
                .collect::<Vec<_>>()
                .join("\n"),
            LookupError::BadTerminal(message) => format!("端末IDが正しくありません / {message}"),
            LookupError::NotRecorded(error) => format!(
                "照会結果を記録できなかったため表示できません。管理者に連絡してください / {error}"
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LookupAnswer {
    pub outcome: LookupOutcome,
    pub qualification_validity: Option<QualificationValidity>,
    pub message: String,
    pub person: Option<PersonShown>,
    pub event: FleetEvent,
    pub latency_ms: u32,
}

#[derive(Debug)]
pub struct Lookups {
    default_terminal: TerminalId,
    onshi: National,
    recorder: Recorder,
    patient_key: PatientHashKey,
}

/// A relayed request's answer ([`Lookups::relay`]) and its exchange's journal entry.
#[derive(Debug)]
pub struct Relayed {
    pub asked: Asked,
    pub ticket: Ticket,
}

/// A confirmation that went to the national system and was recorded.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub answer: LookupAnswer,
    /// The result file exactly as the national system sent it (for the receipt computer), or
    /// `None` when it could not be reached.
    pub raw_result: Option<Vec<u8>>,
}

impl Lookups {
    pub fn new(
        default_terminal: TerminalId,
        onshi: National,
        recorder: Recorder,
        patient_key: PatientHashKey,
    ) -> Self {
        Self {
            default_terminal,
            onshi,
            recorder,
            patient_key,
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn default_terminal(&self) -> &TerminalId {
        &self.default_terminal
    }

    /// The national system's client, for exchanges that are not a single confirmation (the
    /// batch inquiry's two steps, [`crate::batch`]); their lookups are still recorded through
    /// [`Lookups::record_asked`].
    pub fn onshi(&self) -> &National {
        &self.onshi
    }

    /// The counter's insurance-card lookup: every field is checked before any network call.
    #[tracing::instrument(skip_all, fields(route = "insurance_card"))]
    pub async fn insurance_card(&self, fields: CardFields) -> Result<LookupAnswer, LookupError> {
        let result = self.insurance_card_inner(fields).await;
        match &result {
            // Field names only: the values may be patient identifiers, which never go to logs.
            Err(LookupError::InvalidInput(errors)) => tracing::info!(
                fields = ?errors.iter().map(|e| e.field.name_en()).collect::<Vec<_>>(),
                "lookup refused: the card fields are not valid"
            ),
            Err(error @ LookupError::NotRecorded(_)) => {
                tracing::error!(%error, "lookup answer withheld: the event could not be recorded")
            }
            _ => {}
        }
        result
    }

    async fn insurance_card_inner(&self, fields: CardFields) -> Result<LookupAnswer, LookupError> {
        let today = today_jst();
        let query = InsuranceCardQuery::parse(
            &fields.insurer_number,
            &fields.symbol,
            &fields.number,
            &fields.branch,
            &fields.birthdate,
            today,
        )
        .map_err(LookupError::InvalidInput)?;
        let terminal = match fields.terminal.as_deref() {
            None | Some("") => self.default_terminal.clone(),
            Some(t) => TerminalId::parse(t).map_err(|e| LookupError::BadTerminal(e.to_string()))?,
        };
        let request = QualificationConfirmationRequest {
            header: RequestHeader {
                qualification_confirmation_date: today,
                medical_institution_code: self.recorder.site().institution_code(),
                arbitrary_file_identifier: Some(Uuid::now_v7().simple().to_string()),
            },
            search: QualificationConfirmSearchInfo::from_query(&query, fields.limit_consent),
        };
        let provenance = Provenance {
            source: LookupSource::Counter,
            batch_id: None,
            terminal,
        };
        Ok(self.confirm(&request, provenance).await?.answer)
    }

    /// Sends a single eligibility request (already validated: it is a parsed
    /// `QualificationConfirmationRequest`), records the lookup event, then returns the answer.
    /// Used by the counter, the receipt-computer file exchange and batch inquiries alike.
    pub async fn confirm(
        &self,
        request: &QualificationConfirmationRequest,
        provenance: Provenance,
    ) -> Result<Confirmed, OutboxError> {
        self.ensure_room().await?;
        // The transport's journal entry is closed in the outbox transaction that records the
        // lookup (terminal mode: a restart records an unrecorded result, never twice).
        let started = Instant::now();
        let (answer, ticket) = self
            .onshi
            .exchange_for_lookup("OQSsiquc01", request.to_xml(XmlEncoding::Utf8), &provenance)
            .await;
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let noting = ticket.clone();
        let confirmed = self
            .record_asked(
                request,
                Asked { answer, latency_ms },
                provenance,
                move |e| noting.note(e),
            )
            .await;
        if confirmed.is_ok() {
            ticket.finish().await;
        }
        confirmed
    }

    /// The receipt computer's request passed on as it is (the file exchange, [`crate::filex`]):
    /// its bytes go to the national system unchanged and the answer comes back unrecorded.
    /// Whoever calls this journals the answer at `journal` (the file exchange's own journal),
    /// then closes the exchange with the [`Ticket`], and records before answering. Through the
    /// terminal, a restart that finds the answer in the terminal's journal writes it to
    /// `journal` ([`crate::national::Recovery::Relay`]).
    pub async fn relay(&self, message_id: &str, body: Vec<u8>, journal: &Path) -> Relayed {
        let started = Instant::now();
        let (answer, ticket) = self
            .onshi
            .exchange_journaled(
                message_id,
                body,
                Recovery::Relay {
                    journal: journal.to_path_buf(),
                },
            )
            .await;
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        Relayed {
            asked: Asked { answer, latency_ms },
            ticket,
        }
    }

    /// Refuses work whose event could not be recorded: when the outbox is full, nothing is sent
    /// to the national system (ARCHITECTURE.md's invariant). Every route calls it before its
    /// national query: `confirm` here, the file exchange's relay, information views, the card
    /// route and the national batch.
    pub async fn ensure_room(&self) -> Result<(), OutboxError> {
        self.recorder.outbox().ensure_room().await
    }

    /// The key patients are hashed with.
    pub fn patient_key(&self) -> &PatientHashKey {
        &self.patient_key
    }

    /// The second half of [`Lookups::confirm`]: records the lookup event for an answer from
    /// [`Lookups::ask`] (possibly one kept in a journal across a restart) and returns it.
    /// `before_commit` sees the numbered event inside the outbox transaction
    /// ([`Recorder::record_noting`]).
    pub async fn record_asked(
        &self,
        request: &QualificationConfirmationRequest,
        asked: Asked,
        provenance: Provenance,
        before_commit: impl FnOnce(&FleetEvent) + Send + 'static,
    ) -> Result<Confirmed, OutboxError> {
        let terminal = provenance.terminal.clone();
        let (body, confirmed) = self.judged(request, asked, provenance);
        let event = self
            .recorder
            .record_noting(terminal, body, before_commit)
            .await?;
        Ok(self.recorded(confirmed, event))
    }

    /// [`Lookups::record_asked`] for many lookups asked together (a national batch's rows),
    /// recorded in one outbox transaction: all or none. `before_commit` sees the last event.
    pub async fn record_all_asked(
        &self,
        rows: Vec<(QualificationConfirmationRequest, Asked)>,
        provenance: Provenance,
        before_commit: impl FnOnce(&FleetEvent) + Send + 'static,
    ) -> Result<Vec<Confirmed>, OutboxError> {
        let terminal = provenance.terminal.clone();
        let (bodies, confirmed): (Vec<EventBody>, Vec<Unrecorded>) = rows
            .into_iter()
            .map(|(request, asked)| self.judged(&request, asked, provenance.clone()))
            .unzip();
        let events = self
            .recorder
            .record_all_noting(terminal, bodies, before_commit)
            .await?;
        Ok(confirmed
            .into_iter()
            .zip(events)
            .map(|(confirmed, event)| self.recorded(confirmed, event))
            .collect())
    }

    /// The lookup event for an answer, and what the caller is told once it is recorded.
    fn judged(
        &self,
        request: &QualificationConfirmationRequest,
        asked: Asked,
        provenance: Provenance,
    ) -> (EventBody, Unrecorded) {
        let Asked { answer, latency_ms } = asked;
        let raw_result = answer.as_ref().ok().map(|a| a.body.clone());
        let (lookup, judged) = crate::exchanges::eligibility_lookup(
            &self.patient_key,
            Some(&request.search),
            answer.as_ref(),
            latency_ms,
            provenance.source,
            provenance.batch_id,
        );
        (
            EventBody::Lookup(lookup),
            Unrecorded {
                judged,
                latency_ms,
                raw_result,
            },
        )
    }

    /// The answer for a lookup once its event is recorded.
    fn recorded(&self, unrecorded: Unrecorded, event: FleetEvent) -> Confirmed {
        let Unrecorded {
            judged,
            latency_ms,
            raw_result,
        } = unrecorded;
        tracing::info!(
            outcome = judged.outcome.as_str(),
            latency_ms,
            sequence = event.sequence,
            "lookup recorded"
        );
        observe_latency(LookupRoute::InsuranceCard, judged.outcome, latency_ms);
        Confirmed {
            answer: LookupAnswer {
                outcome: judged.outcome,
                qualification_validity: judged.validity,
                person: judged.person(),
                message: judged.message,
                event,
                latency_ms,
            },
            raw_result,
        }
    }
}

/// A judged lookup whose event is not recorded yet.
struct Unrecorded {
    judged: crate::judge::Judged,
    latency_ms: u32,
    raw_result: Option<Vec<u8>>,
}
