//! The one way anything at the agent records an event: numbered, written to the outbox
//! (fsynced), and the uplink woken. Whoever shows something to a user calls this first.

use std::sync::Arc;

use onshi_domain::events::{EventBody, EventId, FleetEvent};
use onshi_domain::site::{SiteCode, TerminalId};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::outbox::{Outbox, OutboxError};

#[derive(Debug, Clone)]
pub struct Recorder {
    site: SiteCode,
    outbox: Outbox,
    new_events: Arc<Notify>,
}

impl Recorder {
    pub fn new(site: SiteCode, outbox: Outbox, new_events: Arc<Notify>) -> Self {
        Self {
            site,
            outbox,
            new_events,
        }
    }

    pub fn site(&self) -> &SiteCode {
        &self.site
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Records `body` as happening now at `terminal`; the event is on disk when this returns.
    pub async fn record(
        &self,
        terminal: TerminalId,
        body: EventBody,
    ) -> Result<FleetEvent, OutboxError> {
        let site = self.site.clone();
        let occurred_at = OffsetDateTime::now_utc();
        let traceparent = current_traceparent();
        let event = self
            .outbox
            .append_traced(traceparent, move |sequence| FleetEvent {
                id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
                site,
                terminal,
                occurred_at,
                sequence,
                chain_hash: None,
                body,
            })
            .await?;
        metrics::observe(&event);
        self.new_events.notify_one();
        Ok(event)
    }

    /// [`Recorder::record`], calling `before_commit` with the numbered event inside the outbox
    /// transaction, before it commits. The file exchange writes its restart journal there: if
    /// the agent dies, the outbox's last sequence then tells whether the event committed
    /// (`filex::journal`). `before_commit` runs on a blocking thread under the outbox lock:
    /// keep it short (one small fsynced file).
    pub async fn record_noting(
        &self,
        terminal: TerminalId,
        body: EventBody,
        before_commit: impl FnOnce(&FleetEvent) + Send + 'static,
    ) -> Result<FleetEvent, OutboxError> {
        let site = self.site.clone();
        let occurred_at = OffsetDateTime::now_utc();
        let traceparent = current_traceparent();
        let event = self
            .outbox
            .append_traced(traceparent, move |sequence| {
                let event = FleetEvent {
                    id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
                    site,
                    terminal,
                    occurred_at,
                    sequence,
                    chain_hash: None,
                    body,
                };
                before_commit(&event);
                event
            })
            .await?;
        metrics::observe(&event);
        self.new_events.notify_one();
        Ok(event)
    }
}

impl Recorder {
    /// Records `bodies` as happening now at `terminal`, all in one outbox transaction (all or
    /// none), calling `before_commit` with the last of them inside it (the terminal journal's
    /// note: if that one committed, all did). The national batch's rows.
    pub async fn record_all_noting(
        &self,
        terminal: TerminalId,
        bodies: Vec<EventBody>,
        before_commit: impl FnOnce(&FleetEvent) + Send + 'static,
    ) -> Result<Vec<FleetEvent>, OutboxError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let site = self.site.clone();
        let occurred_at = OffsetDateTime::now_utc();
        let count = bodies.len() as u64;
        let built = Arc::new(std::sync::Mutex::new(Vec::with_capacity(bodies.len())));
        let keep = built.clone();
        let mut bodies = bodies.into_iter();
        let mut before_commit = Some(before_commit);
        self.outbox
            .append_many(count, move |sequence| {
                let event = FleetEvent {
                    id: EventId::from_uuid(Uuid::now_v7()).expect("now_v7 makes a v7 UUID"),
                    site: site.clone(),
                    terminal: terminal.clone(),
                    occurred_at,
                    sequence,
                    chain_hash: None,
                    body: bodies.next().expect("one body per event"),
                };
                let mut kept = keep.lock().unwrap_or_else(|p| p.into_inner());
                kept.push(event.clone());
                if kept.len() as u64 == count
                    && let Some(note) = before_commit.take()
                {
                    note(&event);
                }
                event
            })
            .await?;
        let events = std::mem::take(&mut *built.lock().unwrap_or_else(|p| p.into_inner()));
        for event in &events {
            metrics::observe(event);
        }
        self.new_events.notify_one();
        Ok(events)
    }
}

/// The W3C `traceparent` of the current span (the lookup, card check or file request that
/// records the event), when the binary exports traces; `None` otherwise (no cost then: without
/// the OpenTelemetry layer a span has no context). Stored with the event in the outbox, so
/// central's commit joins the same trace even after an agent restart.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// Metrics the agent's events carry: link RTT and state (from the probes' `LinkChange`
/// events) and reader states (`ReaderChange`). Labels are link targets, states and reader
/// names: a handful per site, never a patient or staff id.
pub(crate) mod metrics {
    use std::sync::LazyLock;

    use onshi_domain::events::{EventBody, FleetEvent, LinkState, LinkTarget, ReaderState};
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::Gauge;

    struct Instruments {
        link_rtt: Gauge<f64>,
        link_up: Gauge<u64>,
        reader_state: Gauge<u64>,
    }

    static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
        let meter = opentelemetry::global::meter("edge-agent");
        Instruments {
            link_rtt: meter
                .f64_gauge("agent_link_rtt_seconds")
                .with_description("Round trip of the last answered link probe")
                .with_unit("s")
                .build(),
            link_up: meter
                .u64_gauge("agent_link_state")
                .with_description("1 for the link's current state (up, degraded, down), else 0")
                .build(),
            reader_state: meter
                .u64_gauge("agent_reader_state")
                .with_description("1 for the reader's current state, else 0")
                .build(),
        }
    });

    /// Every answered probe, not only state changes: RTT drifts long before a link degrades.
    pub(crate) fn link_rtt(target: LinkTarget, rtt: std::time::Duration) {
        let target = match target {
            LinkTarget::Onshi => "onshi",
            LinkTarget::Central => "central",
            LinkTarget::Terminal => "terminal",
        };
        INSTRUMENTS
            .link_rtt
            .record(rtt.as_secs_f64(), &[KeyValue::new("target", target)]);
    }

    pub(super) fn observe(event: &FleetEvent) {
        match &event.body {
            EventBody::LinkChange(change) => {
                let target = match change.target {
                    LinkTarget::Onshi => "onshi",
                    LinkTarget::Central => "central",
                    LinkTarget::Terminal => "terminal",
                };
                let m = &*INSTRUMENTS;
                for (state, name) in [
                    (LinkState::Up, "up"),
                    (LinkState::Degraded, "degraded"),
                    (LinkState::Down, "down"),
                ] {
                    m.link_up.record(
                        u64::from(change.state == state),
                        &[
                            KeyValue::new("target", target),
                            KeyValue::new("state", name),
                        ],
                    );
                }
            }
            EventBody::ReaderChange(change) => {
                let m = &*INSTRUMENTS;
                for (state, name) in [
                    (ReaderState::PresentEmpty, "present_empty"),
                    (ReaderState::CardPresent, "card_present"),
                    (ReaderState::Removed, "removed"),
                    (ReaderState::Error, "error"),
                ] {
                    m.reader_state.record(
                        u64::from(change.state == state),
                        &[
                            KeyValue::new("reader", change.reader_name.clone()),
                            KeyValue::new("state", name),
                        ],
                    );
                }
            }
            _ => {}
        }
    }
}
