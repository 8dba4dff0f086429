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

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{BatchOutcome, BatchWrite, Store, StoreError};

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

/// The sessions' handle on the writers. Writers stop when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<(BatchWrite, Reply)>,
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
        let (reply, result) = oneshot::channel();
        if self.queue.send((batch, reply)).await.is_err() {
            return Err(StoreError::ShuttingDown);
        }
        result.await.unwrap_or(Err(StoreError::ShuttingDown))
    }
}

async fn write_groups(
    store: Store,
    rx: Arc<Mutex<mpsc::Receiver<(BatchWrite, Reply)>>>,
    config: WriterConfig,
) {
    loop {
        let mut batches = Vec::new();
        let mut replies = Vec::new();
        {
            // One writer collects at a time; the others are writing meanwhile.
            let mut rx = rx.lock().await;
            let Some((batch, reply)) = rx.recv().await else {
                return;
            };
            let mut events = batch.events.len();
            batches.push(batch);
            replies.push(reply);
            while events < config.max_group_events {
                let Ok((batch, reply)) = rx.try_recv() else {
                    break;
                };
                events += batch.events.len();
                batches.push(batch);
                replies.push(reply);
            }
        }
        let results = store.ingest_group(&batches).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A session that gave up waiting is gone; its agent resends and the resend is a
            // duplicate, stored once.
            let _ = reply.send(result);
        }
    }
}
