//! The store against the simulator's disk model: random batches, abandoned batches and crashes
//! applied to both `plait-store-sqlite` and io-sim's `Disk` (a `Restored` that `Restored::apply`
//! runs on), comparing the loaded state after every reopen and every bounded read.

use std::collections::BTreeMap;

use plait_io_sim::disk::Disk;
use plait_kernel::ids::{Ballot, GroupId, Incarnation, NodeId, Slot};
use plait_kernel::invite::{InviteCode, Redeeming};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::rng::NodeRng;
use plait_kernel::snapshot::{Compaction, ContentKey, Covered, CoveredSender, SnapshotHash};
use plait_kernel::storage::{LoadQuery, Record, Restored, WriteBatch};
use plait_kernel::time::Time;
use plait_kernel::updates::{Cursor, StoredMessage, UpdateId};
use plait_store_sqlite::Store;
use proptest::prelude::*;

/// Distinct groups the generated records refer to.
const GROUPS: u64 = 3;
/// Slots per group the generated records refer to: few, so records collide on keys.
const SLOTS: u64 = 6;

/// One thing the host does to its store.
#[derive(Clone, Debug)]
enum Step {
    /// `Store::apply` of these batches (a group commit); the model applies them in order.
    Apply(Vec<WriteBatch>),
    /// The process dies with this batch built but not yet applied: drop it and the store,
    /// reopen, compare. The model never sees the batch.
    CrashWithBatchInFlight(WriteBatch),
    /// The process dies between applies: drop the store, reopen, compare.
    Crash,
    /// A bounded read, compared with `LoadQuery::answer` on the model.
    Query(LoadQuery),
}

fn genesis(index: u64) -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NodeId::from_index(1), NodeId::from_index(2)], 8).expect("two acceptors");
    GroupGenesis { nonce: index, acceptors, proposers: vec![NodeId::from_index(9)], group_info: None }
}

fn group(index: u64) -> GroupId {
    genesis(index).group_id()
}

/// Small values (which collide, so max and replace rules matter) and any u64 (which checks
/// order across the sign bit SQLite's INTEGER would break).
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..4u64, 1 => any::<u64>()]
}

fn node() -> impl Strategy<Value = NodeId> {
    (1..4u64).prop_map(NodeId::from_index)
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (number(), node()).prop_map(|(round, proposer)| Ballot { round, proposer })
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        Just(Entry::Noop),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Entry::Value),
        prop::collection::vec(node(), 1..4)
            .prop_map(|members| Entry::SetAcceptors(AcceptorSet::new(members, 8).expect("non-empty"))),
    ]
}

/// An update id from few senders and mostly small sequence numbers, so the same id is rewritten.
fn update_id() -> impl Strategy<Value = UpdateId> {
    (node(), number()).prop_map(|(sender, seq)| UpdateId { sender, seq })
}

/// An update as a device's open update grows: a prefix of one byte string, so a rewrite of the
/// same id is usually longer (and sometimes shorter) than the last.
fn growing_update() -> impl Strategy<Value = Vec<u8>> {
    (0..48u8).prop_map(|length| (0..length).collect())
}

/// Few snapshot names, so chunks of one snapshot collide and drops hit held snapshots.
fn snapshot_hash() -> impl Strategy<Value = SnapshotHash> {
    (0..3u8).prop_map(|byte| SnapshotHash([byte; 32]))
}

/// Any covered set: the store keeps it as bytes, so it need not be well formed.
fn covered() -> impl Strategy<Value = Covered> {
    let sender = (node(), number(), prop::collection::vec(number(), 0..3)).prop_map(|(sender, below, beyond)| CoveredSender {
        sender,
        below,
        beyond,
    });
    prop::collection::vec(sender, 0..3).prop_map(|senders| Covered { senders })
}

fn compaction() -> impl Strategy<Value = Compaction> {
    (snapshot_hash(), number(), 1..5u32, covered(), prop::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(hash, size, chunks, covered, wrapped_key)| Compaction { hash, size, chunks, covered, wrapped_key })
}

/// Few mailboxes (codes from a few seeds), so a code is rewritten and deleted while held.
fn redeeming_record() -> impl Strategy<Value = Record> {
    let redeeming = (0..3u64, prop::collection::vec(node(), 1..4), any::<[u8; 32]>(), number()).prop_map(
        |(code, acceptors, key_seed, started_at)| Redeeming {
            code: InviteCode::generate(&mut NodeRng::from_seed(code)),
            acceptors: AcceptorSet::new(acceptors, 8).expect("non-empty"),
            key_seed,
            started_at: Time(started_at),
        },
    );
    (0..3u64, prop::option::of(redeeming)).prop_map(|(code, redeeming)| Record::Redeeming {
        // Deleting names the mailbox alone, sometimes one never written.
        mailbox: redeeming
            .as_ref()
            .map_or_else(|| InviteCode::generate(&mut NodeRng::from_seed(code)).mailbox, |r| r.code.mailbox),
        redeeming,
    })
}

fn record() -> impl Strategy<Value = Record> {
    let any_group = (0..GROUPS).prop_map(group);
    let slot = (0..SLOTS).prop_map(Slot);
    prop_oneof![
        2 => (0..GROUPS).prop_map(|index| Record::Group { group: group(index), genesis: genesis(index) }),
        // A genesis that does not hash to its group: the first one written must win.
        1 => (0..GROUPS, GROUPS..GROUPS + 2)
            .prop_map(|(index, other)| Record::Group { group: group(index), genesis: genesis(other) }),
        1 => (any_group.clone(), number()).prop_map(|(group, n)| Record::Incarnation { group, incarnation: Incarnation(n) }),
        1 => any_group.clone().prop_map(|group| Record::Recovered { group }),
        2 => (any_group.clone(), ballot()).prop_map(|(group, ballot)| Record::Promised { group, ballot }),
        // Proofs empty (groups of opaque values) or not (MLS groups): both must round-trip.
        3 => (any_group.clone(), slot.clone(), ballot(), entry(), prop::collection::vec(any::<u8>(), 0..3)).prop_map(
            |(group, slot, ballot, entry, proof)| Record::Accepted { group, slot, ballot, value_hash: entry.hash(), entry, proof }
        ),
        1 => (any_group.clone(), node(), number())
            .prop_map(|(group, acceptor, n)| Record::PeerIncarnation { group, acceptor, incarnation: Incarnation(n) }),
        3 => (any_group.clone(), slot, entry()).prop_map(|(group, slot, entry)| Record::Chosen { group, slot, entry }),
        1 => (any_group.clone(), number()).prop_map(|(group, round)| Record::RoundFloor { group, round }),
        // Rare, so that groups fill up between forgettings; `Group` records bring them back.
        1 => any_group.clone().prop_map(|group| Record::GroupForgotten { group }),
        2 => (any_group.clone(), 0..4u8, prop::option::of(prop::collection::vec(any::<u8>(), 0..40)))
            .prop_map(|(group, key, value)| Record::MlsState { group, key: vec![key; 3], value }),
        2 => (any_group.clone(), number(), update_id(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(
            |(group, position, id, ciphertext)| Record::Stored { group, position, message: StoredMessage { id, ciphertext } }
        ),
        // The same id rewritten with a growing update, and arbitrary bytes.
        2 => (any_group.clone(), update_id(), growing_update()).prop_map(|(group, id, update)| Record::Update { group, id, update }),
        1 => (any_group.clone(), update_id(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(group, id, update)| Record::Update { group, id, update }),
        // Raised and lowered: the store must keep the maximum.
        2 => (any_group.clone(), number()).prop_map(|(group, seq)| Record::SafeBelow { group, seq }),
        // Positions from the same range as `Stored`'s, so the highest stored one is often deleted
        // (and `positions_below` must still count it), and ones never stored.
        2 => (any_group.clone(), prop::collection::vec((number(), update_id()), 0..3))
            .prop_map(|(group, deleted)| Record::Unstored { group, deleted }),
        // The count varies between chunks of one snapshot: the last one carried wins.
        3 => (any_group.clone(), snapshot_hash(), 0..4u32, 1..5u32, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(group, hash, index, count, bytes)| Record::SnapshotChunk { group, hash, index, count, bytes }),
        1 => (any_group.clone(), snapshot_hash()).prop_map(|(group, hash)| Record::SnapshotDropped { group, hash }),
        // With a key (a device) and without (an acceptor).
        1 => (any_group.clone(), compaction(), prop::option::of(any::<[u8; 32]>().prop_map(ContentKey)))
            .prop_map(|(group, compaction, key)| Record::Compacted { group, compaction, key }),
        1 => (any_group.clone(), covered(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(group, covered, snapshot)| Record::ImportedSnapshot { group, covered, snapshot }),
        // Over the ids `Update` writes, so that `UpdatesDropped` deletes both; the epoch rewritten.
        2 => (any_group.clone(), update_id(), number()).prop_map(|(group, id, epoch)| Record::Undecryptable { group, id, epoch }),
        // Over the ids `Update` writes, so that `BatchClosed` and `UpdatesDropped` delete them;
        // few places, so that parts are rewritten.
        2 => (any_group.clone(), update_id(), 1..4u32, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(group, id, part, update)| Record::BatchPart { group, id, part, update }),
        1 => (any_group.clone(), update_id(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(group, id, update)| Record::BatchClosed { group, id, update }),
        // Often over ids `Update` writes (few senders, small seqs), in any order.
        1 => (any_group.clone(), covered()).prop_map(|(group, covered)| Record::UpdatesDropped { group, covered }),
        // Raised, lowered, and moved to another incarnation: the last one wins.
        2 => (any_group, node(), number(), number()).prop_map(|(group, acceptor, incarnation, position)| Record::ReadCursor {
            group,
            acceptor,
            cursor: Cursor { incarnation: Incarnation(incarnation), position },
        }),
        // Outside any group: kept whatever groups there are.
        2 => redeeming_record(),
    ]
}

fn batch() -> impl Strategy<Value = WriteBatch> {
    prop::collection::vec(record(), 0..6).prop_map(|records| WriteBatch { records })
}

fn step() -> impl Strategy<Value = Step> {
    let query = (0..GROUPS + 1, 0..SLOTS + 1, 0..SLOTS as usize + 2).prop_map(|(index, from, count)| LoadQuery::ChosenEntries {
        group: group(index),
        from: Slot(from),
        count,
    });
    prop_oneof![
        6 => prop::collection::vec(batch(), 1..4).prop_map(Step::Apply),
        1 => batch().prop_map(Step::CrashWithBatchInFlight),
        1 => Just(Step::Crash),
        2 => query.prop_map(Step::Query),
    ]
}

const NODE: NodeId = NodeId([7; 32]);

async fn reopen_and_compare(path: &std::path::Path, model: &Restored) -> Result<Store, TestCaseError> {
    let mut store = Store::open(path, NODE).await.map_err(|error| TestCaseError::fail(error.to_string()))?;
    let loaded = store.load().await.map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(&loaded, model, "loaded state after reopen differs from the model");
    Ok(store)
}

/// Runs `steps` against the store and the model, and returns the model's final state.
async fn run(steps: Vec<Step>) -> Result<Restored, TestCaseError> {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let mut disk = Disk::default();
    let mut store = reopen_and_compare(&path, disk.durable()).await?;
    for step in steps {
        match step {
            Step::Apply(batches) => {
                store.apply(&batches).await.map_err(|error| TestCaseError::fail(error.to_string()))?;
                batches.iter().for_each(|batch| disk.persist(batch));
            }
            Step::CrashWithBatchInFlight(batch) => {
                drop((store, batch));
                store = reopen_and_compare(&path, disk.durable()).await?;
            }
            Step::Crash => {
                drop(store);
                store = reopen_and_compare(&path, disk.durable()).await?;
            }
            Step::Query(query) => {
                let answer = store.answer(&query).await.map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(answer, query.answer(disk.durable()), "answer to {:?}", query);
            }
        }
    }
    let loaded = store.load().await.map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(&loaded, disk.durable(), "loaded state at the end differs from the model");
    drop(store);
    reopen_and_compare(&path, disk.durable()).await?;
    Ok(disk.durable().clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Proves that after any sequence of group commits, crashes between them and crashes with a
    /// batch in flight, the store loads exactly what the simulator's disk model holds.
    #[test]
    fn store_loads_what_the_simulator_disk_model_holds_after_every_crash(steps in prop::collection::vec(step(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(run(steps))?;
    }
}

/// Proves that deleting the highest stored position, in a later commit or in the same one as its
/// `Stored`, still counts it in `positions_below`; that a dropped snapshot loses every chunk while
/// a chunk written after the drop stays, with the latest count; and that the latest compaction and
/// imported snapshot replace earlier ones, across reopens.
#[test]
fn unstored_highest_position_and_dropped_snapshot_load_as_the_model_holds() {
    let group = group(0);
    let sender = NodeId::from_index(3);
    let id = |seq| UpdateId { sender, seq };
    let stored =
        |position| Record::Stored { group, position, message: StoredMessage { id: id(position), ciphertext: vec![1; 4] } };
    let unstored = |positions: &[u64]| Record::Unstored { group, deleted: positions.iter().map(|p| (*p, id(*p))).collect() };
    let hash = SnapshotHash([1; 32]);
    let chunk = |index: u32, count| Record::SnapshotChunk { group, hash, index, count, bytes: vec![index as u8; 8] };
    let compacted = |size, key| {
        let compaction = Compaction { hash, size, chunks: 2, covered: Covered::default(), wrapped_key: vec![5; 4] };
        Record::Compacted { group, compaction, key }
    };
    let imported = |snapshot: &[u8]| Record::ImportedSnapshot { group, covered: Covered::default(), snapshot: snapshot.to_vec() };
    let commit = |records: Vec<Record>| Step::Apply(vec![WriteBatch { records }]);
    let steps = vec![
        commit(vec![Record::Group { group, genesis: genesis(0) }, stored(1), stored(2), stored(3), chunk(0, 2), chunk(1, 2)]),
        commit(vec![compacted(16, Some(ContentKey([9; 32]))), imported(b"first")]),
        commit(vec![unstored(&[3, 2]), Record::SnapshotDropped { group, hash }]),
        Step::Crash,
        commit(vec![stored(4), unstored(&[4]), chunk(0, 3), compacted(32, None), imported(b"second")]),
        Step::Crash,
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let model = runtime.block_on(run(steps)).expect("the store loads what the model holds");

    let state = &model.groups[&group];
    assert_eq!(state.stored.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(state.positions_below, 5, "deleted positions 3 and 4 are still counted");
    let chunks = BTreeMap::from([(0, vec![0; 8])]);
    assert_eq!(state.snapshots.get(&hash), Some(&(3, chunks)), "only the chunk written after the drop");
    assert_eq!(state.compacted.as_ref().map(|(compaction, key)| (compaction.size, *key)), Some((32, None)));
    assert_eq!(state.imported.as_ref().map(|(_, snapshot)| snapshot.as_slice()), Some(&b"second"[..]));
}
