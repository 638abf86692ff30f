//! Group commit for many writers: one task owns the [`Store`] and commits whatever batches are
//! queued as one transaction, so N concurrent writers cost far fewer than N fsyncs.

use std::sync::Arc;

use plait_kernel::storage::{LoadQuery, LoadResult, WriteBatch};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::store::Store;

/// Batches one commit takes from the queue at most, so one commit's latency stays bounded
/// however far the writers run ahead.
pub const BATCHES_PER_COMMIT_MAX: usize = 1024;

/// Requests (batches and reads) that may wait in the queue; a submitter beyond this waits.
pub const QUEUED_REQUESTS_MAX: usize = 4096;

/// Why a submitted batch was not made durable, or a read not answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The commit that carried the batch (or the read) failed; after a failed commit the writer
    /// has stopped (see [`StoreError`]).
    #[error("the store failed: {0}")]
    StoreFailed(Arc<StoreError>),
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

/// What the writer task is asked to do, in queue order.
enum Request {
    /// Make a batch durable, then reply.
    Write { batch: WriteBatch, durable: oneshot::Sender<Result<(), SubmitError>> },
    /// Answer a bounded read once every batch queued before it is durable.
    Answer { query: LoadQuery, answer: oneshot::Sender<Result<LoadResult, SubmitError>> },
}

/// A handle to submit batches and reads to the writer. Clone it for each writer task.
#[derive(Clone)]
pub struct CommitQueue {
    sender: mpsc::Sender<Request>,
}

/// The writer task; [`CommitWriter::finish`] returns the store once every queue handle is gone.
pub struct CommitWriter {
    task: JoinHandle<(Store, CommitCounts)>,
}

impl CommitQueue {
    /// Moves `store` into a new writer task on the current tokio runtime.
    pub fn start(store: Store) -> (CommitQueue, CommitWriter) {
        let (sender, receiver) = mpsc::channel(QUEUED_REQUESTS_MAX);
        let task = tokio::spawn(run_writer(store, receiver));
        (CommitQueue { sender }, CommitWriter { task })
    }

    /// Queues `batch` and returns once it is durable. Batches are committed in queue order.
    pub async fn submit(&self, batch: WriteBatch) -> Result<(), SubmitError> {
        let (durable, reply) = oneshot::channel();
        let request = Request::Write { batch, durable };
        self.sender.send(request).await.map_err(|_| SubmitError::WriterStopped)?;
        reply.await.map_err(|_| SubmitError::WriterStopped)?
    }

    /// Answers `query` (see [`Store::answer`]) after every batch queued before it is durable, so
    /// a read sees everything the kernel persisted before asking.
    pub async fn answer(&self, query: LoadQuery) -> Result<LoadResult, SubmitError> {
        let (answer, reply) = oneshot::channel();
        let request = Request::Answer { query, answer };
        self.sender.send(request).await.map_err(|_| SubmitError::WriterStopped)?;
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

/// Takes whatever is queued, commits consecutive writes as one group, and answers reads between
/// them in order. Stops at the first failed commit: later batches must not become durable
/// without the failed ones.
async fn run_writer(mut store: Store, mut receiver: mpsc::Receiver<Request>) -> (Store, CommitCounts) {
    let mut counts = CommitCounts::default();
    let mut queued = Vec::with_capacity(BATCHES_PER_COMMIT_MAX);
    let mut group = Group::default();
    'serve: while receiver.recv_many(&mut queued, BATCHES_PER_COMMIT_MAX).await > 0 {
        for request in queued.drain(..) {
            match request {
                Request::Write { batch, durable } => {
                    group.batches.push(batch);
                    group.replies.push(durable);
                }
                Request::Answer { query, answer } => {
                    if !group.commit(&mut store, &mut counts).await {
                        break 'serve;
                    }
                    let result = store.answer(&query).await;
                    let _ = answer.send(result.map_err(|error| SubmitError::StoreFailed(Arc::new(error))));
                }
            }
        }
        if !group.commit(&mut store, &mut counts).await {
            break;
        }
    }
    receiver.close();
    (store, counts)
}

/// Writes waiting to be committed together.
#[derive(Default)]
struct Group {
    batches: Vec<WriteBatch>,
    replies: Vec<oneshot::Sender<Result<(), SubmitError>>>,
}

impl Group {
    /// Commits the group (if any), replies to its submitters, and says whether it succeeded.
    async fn commit(&mut self, store: &mut Store, counts: &mut CommitCounts) -> bool {
        if self.batches.is_empty() {
            return true;
        }
        let result = store.apply(&self.batches).await.map_err(|error| SubmitError::StoreFailed(Arc::new(error)));
        counts.commits += 1;
        counts.batches += self.batches.len() as u64;
        self.batches.clear();
        for reply in self.replies.drain(..) {
            let _ = reply.send(result.clone()); // The submitter may have stopped waiting; fine.
        }
        result.is_ok()
    }
}
