//! Group commit through `CommitQueue`: many writers, one writer task, each batch durable before
//! its `submit` returns; a failed commit stops the queue with a prefix durable.

use plait_kernel::ids::{Incarnation, NodeId, Slot};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::storage::{LoadQuery, LoadResult, Record, Restored, WriteBatch};
use plait_store_sqlite::{CHOSEN_ENTRIES_PER_LOAD_MAX, CommitQueue, Store, StoreError, StoreOptions, SubmitError};

const NODE: NodeId = NodeId([4; 32]);
const WRITERS: u64 = 20;
const BATCHES_PER_WRITER: u64 = 20;

fn genesis() -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NODE], 8).expect("one acceptor");
    GroupGenesis { nonce: 4, acceptors, proposers: vec![NODE], group_info: None }
}

fn group_batch() -> WriteBatch {
    let group = genesis().group_id();
    WriteBatch { records: vec![Record::Group { group, genesis: genesis() }] }
}

/// Writer `writer`'s batch `number`: a log entry of its own, and its peer incarnation set to
/// `number`, so a reordering within one writer would leave a lower final incarnation.
fn writer_batch(writer: u64, number: u64) -> WriteBatch {
    let group = genesis().group_id();
    WriteBatch {
        records: vec![
            Record::Chosen {
                group,
                slot: Slot(writer * BATCHES_PER_WRITER + number),
                entry: Entry::Value(vec![writer as u8; 40]),
            },
            Record::PeerIncarnation { group, acceptor: NodeId::from_index(writer), incarnation: Incarnation(number) },
        ],
    }
}

/// Proves that batches submitted concurrently by many tasks all become durable, each writer's in
/// its own order, that a read through the queue sees them all, and that the writer needed no
/// more commits than batches.
#[test]
fn many_writers_sharing_a_commit_queue_all_become_durable_in_order_and_readable() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let mut store = Store::open(&path, NODE).await.expect("open");
        store.apply(&[group_batch()]).await.expect("create the group");
        let (queue, writer) = CommitQueue::start(store);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for number in 0..BATCHES_PER_WRITER {
                        queue.submit(writer_batch(writer, number)).await.expect("submit");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
        let query = LoadQuery::ChosenEntries { group: genesis().group_id(), from: Slot(0), count: usize::MAX };
        let LoadResult::ChosenEntries(rows) = queue.answer(query).await.expect("answer");
        assert_eq!(rows.len() as u64, WRITERS * BATCHES_PER_WRITER, "a read sees every batch acknowledged before it");
        drop(queue);
        let (store, counts) = writer.finish().await.expect("the writer finishes");
        assert_eq!(counts.batches, WRITERS * BATCHES_PER_WRITER);
        assert!(counts.commits >= 1 && counts.commits <= counts.batches);
        drop(store);

        let mut store = Store::open(&path, NODE).await.expect("reopen");
        let restored = store.load().await.expect("load");
        let state = &restored.groups[&genesis().group_id()];
        assert_eq!(state.chosen.len() as u64, WRITERS * BATCHES_PER_WRITER);
        for writer in 0..WRITERS {
            assert_eq!(
                state.peer_incarnations[&NodeId::from_index(writer)],
                Incarnation(BATCHES_PER_WRITER - 1),
                "writer {writer}'s batches were committed out of order"
            );
        }
    });
}

/// Proves that when a group commit fails (here: the size limit), its submitter learns why, every
/// later submission is refused, and the durable state is exactly the acknowledged batches.
#[test]
fn a_failed_group_commit_stops_the_queue_and_keeps_exactly_the_acknowledged_batches() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let options = StoreOptions { pages_max: Some(64), ..StoreOptions::default() };
        let mut store = Store::open_with(&path, NODE, options).await.expect("open");
        let mut model = Restored::empty();
        store.apply(&[group_batch()]).await.expect("create the group");
        model.apply(&group_batch());
        let (queue, writer) = CommitQueue::start(store);
        let group = genesis().group_id();
        let mut failure = None;
        for number in 0..1_000 {
            let batch =
                WriteBatch { records: vec![Record::Chosen { group, slot: Slot(number), entry: Entry::Value(vec![1; 2_000]) }] };
            match queue.submit(batch.clone()).await {
                Ok(()) => model.apply(&batch),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let failure = failure.expect("64 pages cannot hold 1,000 entries of 2 KB");
        assert!(matches!(&failure, SubmitError::StoreFailed(error) if matches!(**error, StoreError::Full)), "{failure:?}");
        let later = queue.submit(group_batch()).await;
        assert!(matches!(later, Err(SubmitError::WriterStopped)), "{later:?}");
        drop(queue);
        drop(writer.finish().await.expect("the writer finishes"));

        let mut store = Store::open(&path, NODE).await.expect("reopen");
        assert_eq!(store.load().await.expect("load"), model);
    });
}

/// Proves that a load asking for more than the bound gets exactly the bound, from the right slot,
/// agreeing with the reference answer cut to that length.
#[test]
fn a_load_returns_at_most_the_bound_in_slot_order() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let mut store = Store::open(&path, NODE).await.expect("open");
        let group = genesis().group_id();
        let mut batches = vec![group_batch()];
        let slots_total = CHOSEN_ENTRIES_PER_LOAD_MAX as u64 + 500;
        batches.extend(
            (0..slots_total)
                .map(|slot| WriteBatch { records: vec![Record::Chosen { group, slot: Slot(slot), entry: Entry::Noop }] }),
        );
        store.apply(&batches).await.expect("apply");
        let mut model = Restored::empty();
        batches.iter().for_each(|batch| model.apply(batch));

        let query = LoadQuery::ChosenEntries { group, from: Slot(100), count: usize::MAX };
        let LoadResult::ChosenEntries(rows) = store.answer(&query).await.expect("answer");
        let LoadResult::ChosenEntries(mut expected) = query.answer(&model);
        expected.truncate(CHOSEN_ENTRIES_PER_LOAD_MAX);
        assert_eq!(rows.len(), CHOSEN_ENTRIES_PER_LOAD_MAX);
        assert_eq!(rows, expected);
    });
}
