//! Group commit: batches from many sessions share transactions.
//!
//! Sessions hand their batch to a bounded queue and wait for the result; a few writer tasks
//! each take whatever is queued (up to a group size), write it in one transaction
//! (`Store::ingest_group`) and answer every batch of the group after the commit. One commit (one
//! WAL flush) then serves many agents, which is where most of the cost of small batches goes.
//!
//! Memory stays bounded when PostgreSQL is slow or down: each session has at most one batch in
//! flight (it does not read the agent's next message before its write returned), the queue holds
//! at most `queue` batches, and each writer holds one group. Sessions that cannot enqueue simply
//! wait, so their agents see no acks and HTTP/2 flow control pushes back.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;

use central_store::{BatchOutcome, BatchWrite, Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Writer tasks, i.e. group transactions in flight at once.
    pub writers: usize,
    /// Batches waiting for a writer.
    pub queue: usize,
    /// A writer stops adding batches to a group once it holds this many events.
    pub max_group_events: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            writers: 2,
            queue: 128,
            max_group_events: 8_000,
        }
    }
}

type Reply = oneshot::Sender<Result<BatchOutcome, StoreError>>;

/// A queued batch: the batch, the W3C `traceparent`s its events carried, the session's reply.
type Queued = (BatchWrite, Vec<String>, Reply);

/// The sessions' handle on the writers. Writers stop when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    pub fn spawn(store: Store, config: WriterConfig) -> Self {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            tokio::spawn(write_groups(store.clone(), rx.clone(), config));
        }
        Self { queue }
    }

    /// Queues `batch` and waits until its group committed (or failed).
    pub async fn write(&self, batch: BatchWrite) -> Result<BatchOutcome, StoreError> {
        self.write_traced(batch, Vec::new()).await
    }

    /// [`Writer::write`], with the W3C `traceparent`s of the batch's events: the group's commit
    /// span joins their traces (see [`commit_span`]).
    pub(crate) async fn write_traced(
        &self,
        batch: BatchWrite,
        traceparents: Vec<String>,
    ) -> Result<BatchOutcome, StoreError> {
        let (reply, result) = oneshot::channel();
        if self.queue.send((batch, traceparents, reply)).await.is_err() {
            return Err(StoreError::ShuttingDown);
        }
        result.await.unwrap_or(Err(StoreError::ShuttingDown))
    }
}

async fn write_groups(store: Store, rx: Arc<Mutex<mpsc::Receiver<Queued>>>, config: WriterConfig) {
    loop {
        let mut batches = Vec::new();
        let mut replies = Vec::new();
        let mut traceparents = Vec::new();
        let mut events = 0;
        {
            // One writer collects at a time; the others are writing meanwhile.
            let mut rx = rx.lock().await;
            let Some((batch, traced, reply)) = rx.recv().await else {
                return;
            };
            events += batch.events.len();
            batches.push(batch);
            traceparents.extend(traced);
            replies.push(reply);
            while events < config.max_group_events {
                let Ok((batch, traced, reply)) = rx.try_recv() else {
                    break;
                };
                events += batch.events.len();
                batches.push(batch);
                traceparents.extend(traced);
                replies.push(reply);
            }
        }
        let span = commit_span(batches.len(), events, &traceparents);
        let started = Instant::now();
        let results = store.ingest_group(&batches).instrument(span).await;
        observe_commit(&batches, &results, started);
        for (reply, result) in replies.into_iter().zip(results) {
            // A session that gave up waiting is gone; its agent resends and the resend is a
            // duplicate, stored once.
            let _ = reply.send(result);
        }
    }
}

/// At most this many links on one commit span (the OpenTelemetry SDK's default span limit).
const MAX_LINKS: usize = 128;

/// The span of one group commit. Its parent is the span that recorded the group's first traced
/// event at its agent (the lookup, card check or file request, from the event's `traceparent`),
/// so a lookup and the commit that made it durable at central are one trace; every other traced
/// event of the group is a span link (a commit serves many agents, and a span has one parent).
/// Without traces (telemetry off, or agents that send none) it is a plain local span.
fn commit_span(batches: usize, events: usize, traceparents: &[String]) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "commit",
        batches,
        events,
        traced_events = traceparents.len()
    );
    let mut contexts = traceparents.iter().filter_map(|traceparent| {
        let carrier =
            std::collections::HashMap::from([("traceparent".to_string(), traceparent.clone())]);
        let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then_some((context, span_context))
    });
    if let Some((parent, _)) = contexts.next() {
        let _ = span.set_parent(parent);
        for (_, linked) in contexts.take(MAX_LINKS) {
            span.add_link(linked);
        }
    }
    span
}

struct Instruments {
    events: Counter<u64>,
    batch_size: Histogram<u64>,
    commit: Histogram<f64>,
    gaps: Counter<u64>,
}

/// Created on first use, after the binary installed (or not) the meter provider.
static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("central");
    Instruments {
        events: meter
            .u64_counter("central_ingest_events_total")
            .with_description(
                "Events in committed batches, by result (stored, duplicate, conflict)",
            )
            .build(),
        batch_size: meter
            .u64_histogram("central_ingest_batch_size_events")
            .with_description("Events per committed agent batch")
            .with_boundaries(vec![1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0])
            .build(),
        commit: meter
            .f64_histogram("central_commit_duration_seconds")
            .with_description("One group transaction, from taking the connection to the commit")
            .with_unit("s")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ])
            .build(),
        gaps: meter
            .u64_counter("central_ingest_gaps_total")
            .with_description(
                "Committed batches after which their stream was not contiguous up to the batch",
            )
            .build(),
    }
});

fn observe_commit(
    batches: &[BatchWrite],
    results: &[Result<BatchOutcome, StoreError>],
    started: Instant,
) {
    let m = &*INSTRUMENTS;
    let ok = results.iter().any(|r| r.is_ok());
    m.commit.record(
        started.elapsed().as_secs_f64(),
        &[KeyValue::new(
            "result",
            if ok { "committed" } else { "failed" },
        )],
    );
    for (batch, result) in batches.iter().zip(results) {
        let Ok(outcome) = result else { continue };
        m.batch_size.record(batch.events.len() as u64, &[]);
        for (count, result) in [
            (outcome.stored, "stored"),
            (outcome.duplicates, "duplicate"),
            (outcome.conflicts, "conflict"),
        ] {
            if count > 0 {
                m.events
                    .add(u64::from(count), &[KeyValue::new("result", result)]);
            }
        }
        if batch
            .events
            .last()
            .is_some_and(|last| outcome.contiguous < last.sequence)
        {
            m.gaps.add(1, &[]);
        }
    }
}
