//! The write-ahead log written out in advance (`prefill_log` in `store.rs`): commits land in it
//! and survive, and a log left by a crash is recovered instead of replaced. (That another
//! program's rollback-journal database gets no log beside it is checked in `misuse.rs`.)

use std::path::{Path, PathBuf};

use plait_kernel::ids::{NodeId, Slot};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::storage::{Record, Restored, WriteBatch};
use plait_store_sqlite::Store;

const NODE: NodeId = NodeId([1; 32]);
/// The prefilled log's size: a 32-byte header and 1,024 frames of 24 + 4,096 bytes.
const PREFILLED_LOG_BYTES: u64 = 32 + 1_024 * (24 + 4_096);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn genesis() -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NODE], 8).expect("one acceptor");
    GroupGenesis { nonce: 1, acceptors, proposers: vec![NODE], group_info: None }
}

/// A batch with one 300-byte log entry; batch 0 also creates the group.
fn batch(number: u64) -> WriteBatch {
    let group = genesis().group_id();
    let mut batch = WriteBatch::default();
    if number == 0 {
        batch.push(Record::Group { group, genesis: genesis() });
    }
    batch.push(Record::Chosen { group, slot: Slot(number), entry: Entry::Value(vec![number as u8; 300]) });
    batch
}

/// Applies batches `numbers` one commit each, and to `model`.
async fn apply(store: &mut Store, model: &mut Restored, numbers: std::ops::Range<u64>) {
    for number in numbers {
        let batch = batch(number);
        store.apply(std::slice::from_ref(&batch)).await.expect("apply");
        model.apply(&batch);
    }
}

fn log_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Proves that a reopened database commits into a log written out to its full size in advance,
/// and that what it commits there is durable: a second reopen loads all of it.
#[test]
fn a_reopened_database_commits_into_a_log_written_out_in_advance() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    runtime().block_on(async {
        let mut model = Restored::empty();
        let mut store = Store::open(&path, NODE).await.expect("open a new store");
        apply(&mut store, &mut model, 0..3).await;
        store.close().await.expect("close");
        assert!(!log_path(&path).exists(), "a clean close removes the log");

        let mut store = Store::open(&path, NODE).await.expect("reopen");
        assert_eq!(std::fs::metadata(log_path(&path)).expect("the log").len(), PREFILLED_LOG_BYTES);
        apply(&mut store, &mut model, 3..40).await;
        assert_eq!(
            std::fs::metadata(log_path(&path)).expect("the log").len(),
            PREFILLED_LOG_BYTES,
            "37 small commits overwrite the log; they do not grow it"
        );
        drop(store);

        let mut store = Store::open(&path, NODE).await.expect("reopen again");
        assert_eq!(store.load().await.expect("load"), model);
    });
}

/// Proves that a log a crash left behind is recovered, not replaced by an empty one: the files
/// are copied while the store is open (its last commits only in the log), and the copy loads
/// every acknowledged batch.
#[test]
fn a_log_left_by_a_crash_is_recovered_not_replaced() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let crashed = directory.path().join("crashed.sqlite");
    runtime().block_on(async {
        let mut model = Restored::empty();
        let mut store = Store::open(&path, NODE).await.expect("open a new store");
        apply(&mut store, &mut model, 0..20).await;
        std::fs::copy(&path, &crashed).expect("copy the database");
        std::fs::copy(log_path(&path), log_path(&crashed)).expect("copy the log");
        store.close().await.expect("close");

        let mut store = Store::open(&crashed, NODE).await.expect("open the crashed copy");
        assert_eq!(store.load().await.expect("load"), model, "every acknowledged batch, recovered from the log");
    });
}
