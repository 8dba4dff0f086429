//! Group commit: batches from many sessions share transactions.
//!
//! Sessions hand their batch to a bounded queue and wait for the result; a few writer tasks
//! each take their share of what is queued (up to a group size), write it in one transaction
//! (`Store::ingest_group`) and answer every batch of the group after the commit. One commit (one
//! WAL flush) then serves many agents, which is where most of the cost of small batches goes.
//!
//! A writer takes its fair share of the queue, not all of it. Sessions whose batches were in one
//! commit get their acks together and send again together, so batches arrive in bursts; a
//! writer that took a whole burst made it one long transaction that every batch in it waited
//! for, while the other writers took the trickle after it one batch at a time. At half the
//! maximum rate the writer left with the trickle was near its own capacity and the queue seldom
//! drained (README, "Performance": "Where the ack time goes, and the writers' share").
//!
//! Memory stays bounded when PostgreSQL is slow or down: each session has at most one batch in
//! flight (it does not read the agent's next message before its write returned), the queue holds
//! at most `queue` batches, and each writer holds one group. Sessions that cannot enqueue simply
//! wait, so their agents see no acks and HTTP/2 flow control pushes back.

use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Starts the writers on a thread of their own, with a runtime of their own. A connection's
    /// messages are read and written by its own task; on central's runtime that task waited
    /// behind the sessions' TLS and gRPC work each time PostgreSQL answered, and PostgreSQL
    /// waited for central, inside the transaction, a fifth of a group's time (README, "Ingest",
    /// fourth session). `store` should be the writers' own, so that its connections are made,
    /// and their tasks run, on that runtime.
    pub fn spawn(store: Store, config: WriterConfig) -> Self {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let config = WriterConfig {
            writers: config.writers.max(1),
            ..config
        };
        // Writers in a transaction: the others share what is queued.
        let busy = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the writers");
        std::thread::Builder::new()
            .name("central-writers".into())
            .spawn(move || {
                runtime.block_on(async {
                    let writers: Vec<_> = (0..config.writers)
                        .map(|_| {
                            tokio::spawn(write_groups(
                                store.clone(),
                                rx.clone(),
                                busy.clone(),
                                config,
                            ))
                        })
                        .collect();
                    // They end when the last handle on the queue is dropped.
                    for writer in writers {
                        if let Err(error) = writer.await {
                            tracing::error!(%error, "a group writer ended abnormally");
                        }
                    }
                })
            })
            .expect("a thread for the writers");
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

async fn write_groups(
    store: Store,
    rx: Arc<Mutex<mpsc::Receiver<Queued>>>,
    busy: Arc<AtomicUsize>,
    config: WriterConfig,
) {
    loop {
        let group = {
            // One writer collects at a time; the others are writing meanwhile.
            let mut rx = rx.lock().await;
            next_group(&mut rx, &busy, &config).await
        };
        let Some(group) = group else {
            return;
        };
        busy.fetch_add(1, Ordering::AcqRel);
        let span = commit_span(group.batches.len(), group.events, &group.traceparents);
        let started = Instant::now();
        let results = store.ingest_group(&group.batches).instrument(span).await;
        observe_commit(&group.batches, &results, started);
        busy.fetch_sub(1, Ordering::AcqRel);
        for (reply, result) in group.replies.into_iter().zip(results) {
            // A session that gave up waiting is gone; its agent resends and the resend is a
            // duplicate, stored once.
            let _ = reply.send(result);
        }
    }
}

/// The batches one transaction writes, with their traces and the sessions waiting for them.
#[derive(Default)]
struct Group {
    batches: Vec<BatchWrite>,
    traceparents: Vec<String>,
    replies: Vec<Reply>,
    events: usize,
}

impl Group {
    fn push(&mut self, (batch, traced, reply): Queued) {
        self.events += batch.events().len();
        self.batches.push(batch);
        self.traceparents.extend(traced);
        self.replies.push(reply);
    }
}

/// Waits for a batch, then adds what is already queued up to this writer's share: the queue
/// divided among the writers free at that moment (not in a transaction, this one included), so
/// a burst is written by all of them at once, and no more than `max_group_events` events.
/// `None` once the queue is closed and empty.
async fn next_group(
    rx: &mut mpsc::Receiver<Queued>,
    busy: &AtomicUsize,
    config: &WriterConfig,
) -> Option<Group> {
    let mut group = Group::default();
    group.push(rx.recv().await?);
    let free = config
        .writers
        .saturating_sub(busy.load(Ordering::Acquire))
        .max(1);
    let share = (1 + rx.len()).div_ceil(free);
    while group.batches.len() < share && group.events < config.max_group_events {
        let Ok(queued) = rx.try_recv() else { break };
        group.push(queued);
    }
    Some(group)
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
        m.batch_size.record(batch.events().len() as u64, &[]);
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
            .events()
            .last()
            .is_some_and(|last| outcome.contiguous < last.sequence)
        {
            m.gaps.add(1, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::events::StreamId;
    use onshi_domain::site::SiteCode;

    /// A channel holding `n` queued batches (no events: the share counts batches).
    async fn queue_of(n: usize) -> (mpsc::Sender<Queued>, mpsc::Receiver<Queued>) {
        let site = SiteCode::parse("1310000000").expect("a valid site code");
        let (tx, rx) = mpsc::channel(32);
        for _ in 0..n {
            let batch = BatchWrite::new(site.clone(), StreamId(uuid::Uuid::nil()), Vec::new())
                .expect("an empty batch encodes");
            tx.send((batch, Vec::new(), oneshot::channel().0))
                .await
                .unwrap();
        }
        (tx, rx)
    }

    fn four_writers() -> WriterConfig {
        WriterConfig {
            writers: 4,
            ..WriterConfig::default()
        }
    }

    #[tokio::test]
    async fn free_writers_share_a_burst() {
        let (_tx, mut rx) = queue_of(9).await;
        let none_busy = AtomicUsize::new(0);
        // Nine queued among four free writers: three, then what is left shared again.
        let mut sizes = Vec::new();
        while !rx.is_empty() {
            let group = next_group(&mut rx, &none_busy, &four_writers()).await;
            sizes.push(group.unwrap().batches.len());
        }
        assert_eq!(sizes, [3, 2, 1, 1, 1, 1]);
    }

    #[tokio::test]
    async fn the_only_free_writer_takes_everything_queued() {
        let (tx, mut rx) = queue_of(9).await;
        let three_busy = AtomicUsize::new(3);
        let group = next_group(&mut rx, &three_busy, &four_writers()).await;
        assert_eq!(group.unwrap().batches.len(), 9);
        drop(tx);
        let group = next_group(&mut rx, &three_busy, &four_writers()).await;
        assert!(group.is_none(), "closed and empty");
    }
}
