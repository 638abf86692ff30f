//! Group commit for many writers: one task owns the [`Store`] and commits whatever batches are
//! queued as one transaction, so N concurrent writers cost far fewer than N fsyncs.

use std::sync::Arc;

use plait_kernel::storage::WriteBatch;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::store::Store;

/// Batches one commit takes from the queue at most, so one commit's latency stays bounded
/// however far the writers run ahead.
pub const BATCHES_PER_COMMIT_MAX: usize = 1024;

/// Submissions that may wait in the queue; a writer beyond this waits to submit.
pub const QUEUED_BATCHES_MAX: usize = 4096;

/// Why a submitted batch was not made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The commit that carried the batch failed; the writer has stopped (see [`StoreError`]).
    #[error("the group commit failed: {0}")]
    CommitFailed(Arc<StoreError>),
    /// The writer stopped before the batch was committed (an earlier commit failed).
    #[error("the commit writer has stopped")]
    WriterStopped,
}

/// What the writer did, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Transactions committed (each one fsync of the write-ahead log).
    pub commits: u64,
    /// Batches they carried.
    pub batches: u64,
}

struct Submission {
    batch: WriteBatch,
    durable: oneshot::Sender<Result<(), SubmitError>>,
}

/// A handle to submit batches to the writer. Clone it for each writer task.
#[derive(Clone)]
pub struct CommitQueue {
    sender: mpsc::Sender<Submission>,
}

/// The writer task; [`CommitWriter::finish`] returns the store once every queue handle is gone.
pub struct CommitWriter {
    task: JoinHandle<(Store, CommitCounts)>,
}

impl CommitQueue {
    /// Moves `store` into a new writer task on the current tokio runtime.
    pub fn start(store: Store) -> (CommitQueue, CommitWriter) {
        let (sender, receiver) = mpsc::channel(QUEUED_BATCHES_MAX);
        let task = tokio::spawn(run_writer(store, receiver));
        (CommitQueue { sender }, CommitWriter { task })
    }

    /// Queues `batch` and returns once it is durable. Batches are committed in queue order.
    pub async fn submit(&self, batch: WriteBatch) -> Result<(), SubmitError> {
        let (durable, reply) = oneshot::channel();
        self.sender
            .send(Submission { batch, durable })
            .await
            .map_err(|_| SubmitError::WriterStopped)?;
        reply.await.map_err(|_| SubmitError::WriterStopped)?
    }
}

impl CommitWriter {
    /// Waits until every [`CommitQueue`] handle is dropped and the queue is drained; returns the
    /// store and what the writer did. `None` if the writer task panicked.
    pub async fn finish(self) -> Option<(Store, CommitCounts)> {
        self.task.await.ok()
    }
}

async fn run_writer(
    mut store: Store,
    mut receiver: mpsc::Receiver<Submission>,
) -> (Store, CommitCounts) {
    let mut counts = CommitCounts::default();
    let mut queued = Vec::with_capacity(BATCHES_PER_COMMIT_MAX);
    while receiver
        .recv_many(&mut queued, BATCHES_PER_COMMIT_MAX)
        .await
        > 0
    {
        let (batches, replies): (Vec<_>, Vec<_>) = queued
            .drain(..)
            .map(|submission| (submission.batch, submission.durable))
            .unzip();
        let result = store
            .apply(&batches)
            .await
            .map_err(|error| SubmitError::CommitFailed(Arc::new(error)));
        counts.commits += 1;
        counts.batches += batches.len() as u64;
        let failed = result.is_err();
        for reply in replies {
            let _ = reply.send(result.clone()); // The writer may have given up waiting; fine.
        }
        if failed {
            break; // Later batches must not become durable without this one: stop.
        }
    }
    receiver.close();
    (store, counts)
}
