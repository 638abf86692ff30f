//! Folds consecutive write batches into the net change per table, with the meaning of
//! [`Restored::apply`](plait_kernel::storage::Restored::apply).
//!
//! The fold exists so that one group commit writes each table with a few multi-row statements
//! (each parsed by SQLite, since their shapes vary) instead of one statement per record.
//! Because every record kind either replaces, keeps the maximum, sets a flag, or deletes, the net
//! effect of a sequence of records on one key is a single row to upsert or delete (a snapshot's
//! chunks: a delete of all of them, then upserts).

use std::collections::{BTreeMap, BTreeSet};

use plait_kernel::ids::{Ballot, GroupId, Incarnation, NodeId, Slot};
use plait_kernel::invite::{Mailbox, Redeeming};
use plait_kernel::log::{Entry, GroupGenesis};
use plait_kernel::snapshot::{Compaction, ContentKey, Covered, SnapshotHash};
use plait_kernel::storage::{AcceptedValue, Record, WriteBatch, dropped_by};
use plait_kernel::updates::{Cursor, StoredMessage, UpdateId};

/// The net effect of some batches, table by table. Keys are ordered so writes are deterministic.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Groups forgotten (`Record::GroupForgotten`): every durable row of theirs is deleted
    /// before anything else is written. The fields below hold only what came after the last
    /// forgetting of a group.
    pub(crate) forgotten: BTreeSet<GroupId>,
    /// Groups that were not durable before: first genesis wins, as in `Restored::apply`.
    pub(crate) groups: BTreeMap<GroupId, GroupGenesis>,
    /// Last incarnation per group.
    pub(crate) incarnations: BTreeMap<GroupId, Incarnation>,
    /// Groups marked recovered.
    pub(crate) recovered: BTreeSet<GroupId>,
    /// Highest ballot per group among `Promised` and `Accepted` records; the write keeps the
    /// higher of this and the durable one.
    pub(crate) promised: BTreeMap<GroupId, Ballot>,
    /// Per slot: the last accepted value, or `None` when a later `Chosen` removed it.
    pub(crate) accepted: BTreeMap<(GroupId, Slot), Option<AcceptedValue>>,
    /// Last incarnation per peer.
    pub(crate) peer_incarnations: BTreeMap<(GroupId, NodeId), Incarnation>,
    /// Last chosen entry per slot.
    pub(crate) chosen: BTreeMap<(GroupId, Slot), Entry>,
    /// Highest round floor per group; the write keeps the higher of this and the durable one.
    pub(crate) round_floors: BTreeMap<GroupId, u64>,
    /// Per MLS key: the last value, or `None` when the key was deleted last.
    pub(crate) mls_state: BTreeMap<(GroupId, Vec<u8>), Option<Vec<u8>>>,
    /// Per position: the last stored message, or `None` when a later `Unstored` deleted it.
    pub(crate) stored: BTreeMap<(GroupId, u64), Option<StoredMessage>>,
    /// Highest deleted position + 1 per group; the write keeps the higher of this and the durable
    /// one. Stored positions are not counted here: the load counts the `stored` rows.
    pub(crate) unstored_below: BTreeMap<GroupId, u64>,
    /// Per snapshot: what to do to its chunks.
    pub(crate) snapshots: BTreeMap<(GroupId, SnapshotHash), SnapshotChange>,
    /// Last compaction per group.
    pub(crate) compacted: BTreeMap<GroupId, (Compaction, Option<ContentKey>)>,
    /// Last imported snapshot per group.
    pub(crate) imported: BTreeMap<GroupId, (Covered, Vec<u8>)>,
    /// Updates deleted, per group in order, before `updates` are written (a drop also removes
    /// the updates folded before it).
    pub(crate) updates_dropped: BTreeMap<GroupId, Vec<Covered>>,
    /// Last update per update id (a device rewrites its open update with every edit).
    pub(crate) updates: BTreeMap<(GroupId, UpdateId), Vec<u8>>,
    /// Messages a device cannot decrypt, with the epoch each was sealed in (deleted by the same
    /// `updates_dropped`).
    pub(crate) undecryptable: BTreeMap<(GroupId, UpdateId), u64>,
    /// Batches closed (`Record::BatchClosed`): their durable parts are deleted before
    /// `batch_parts` are written (a close also removes the parts folded before it).
    pub(crate) batches_closed: BTreeSet<(GroupId, UpdateId)>,
    /// The parts of open batches, by batch and place (deleted by the same `updates_dropped`).
    pub(crate) batch_parts: BTreeMap<(GroupId, UpdateId, u32), Vec<u8>>,
    /// Highest `SafeBelow` per group; the write keeps the higher of this and the durable one.
    pub(crate) safe_below: BTreeMap<GroupId, u64>,
    /// Last read cursor per acceptor (it may move back: replaced, not maximised).
    pub(crate) read_cursors: BTreeMap<(GroupId, NodeId), Cursor>,
    /// Per invite code a device redeems: the last state, or `None` when it was deleted last.
    pub(crate) redeeming: BTreeMap<Mailbox, Option<Redeeming>>,
}

/// The net change to one snapshot's chunks.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotChange {
    /// Whether a `SnapshotDropped` came: the durable chunks and count go before `chunks` are
    /// written.
    pub(crate) is_dropped: bool,
    /// The chunk count the last `SnapshotChunk` carried; `None` if none came after the drop.
    pub(crate) count: Option<u32>,
    /// The last bytes per chunk index since the drop (or since the start).
    pub(crate) chunks: BTreeMap<u32, Vec<u8>>,
}

impl Changes {
    /// Folds `batches`, in order, on top of a store whose durable groups are `groups_durable`.
    pub(crate) fn fold(groups_durable: &BTreeSet<GroupId>, batches: &[WriteBatch]) -> Changes {
        let mut changes = Changes::default();
        for record in batches.iter().flat_map(|batch| &batch.records) {
            changes.add(groups_durable, record);
        }
        changes
    }

    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.forgotten.is_empty()
            && self.groups.is_empty()
            && self.incarnations.is_empty()
            && self.recovered.is_empty()
            && self.promised.is_empty()
            && self.accepted.is_empty()
            && self.peer_incarnations.is_empty()
            && self.chosen.is_empty()
            && self.round_floors.is_empty()
            && self.mls_state.is_empty()
            && self.stored.is_empty()
            && self.updates_dropped.is_empty()
            && self.updates.is_empty()
            && self.undecryptable.is_empty()
            && self.batches_closed.is_empty()
            && self.batch_parts.is_empty()
            && self.safe_below.is_empty()
            && self.read_cursors.is_empty()
            && self.unstored_below.is_empty()
            && self.snapshots.is_empty()
            && self.compacted.is_empty()
            && self.imported.is_empty()
            && self.redeeming.is_empty()
    }

    /// Adding a record kind: add a field above, an arm here, a table in a new migration, and a
    /// write in `write.rs` and a read in `read.rs`. This match has no wildcard on purpose.
    fn add(&mut self, groups_durable: &BTreeSet<GroupId>, record: &Record) {
        let Some(group) = record.group() else { return self.add_outside_groups(record) };
        let is_durable = groups_durable.contains(&group) && !self.forgotten.contains(&group);
        let is_known = is_durable || self.groups.contains_key(&group);
        if !is_known && !matches!(record, Record::Group { .. }) {
            return; // `Restored::apply` ignores records of a group it does not hold.
        }
        match record {
            Record::Group { genesis, .. } => {
                if !is_known {
                    self.groups.insert(group, genesis.clone());
                }
            }
            Record::GroupForgotten { .. } => self.forget(group),
            Record::Incarnation { incarnation, .. } => {
                self.incarnations.insert(group, *incarnation);
            }
            Record::Recovered { .. } => {
                self.recovered.insert(group);
            }
            Record::Promised { ballot, .. } => self.raise_promised(group, *ballot),
            Record::Accepted { slot, ballot, value_hash, entry, proof, .. } => {
                let value =
                    AcceptedValue { ballot: *ballot, value_hash: *value_hash, entry: entry.clone(), proof: proof.clone() };
                self.accepted.insert((group, *slot), Some(value));
                self.raise_promised(group, *ballot);
            }
            Record::PeerIncarnation { acceptor, incarnation, .. } => {
                self.peer_incarnations.insert((group, *acceptor), *incarnation);
            }
            Record::Chosen { slot, entry, .. } => {
                self.accepted.insert((group, *slot), None);
                self.chosen.insert((group, *slot), entry.clone());
            }
            Record::RoundFloor { round, .. } => {
                let floor = self.round_floors.entry(group).or_insert(*round);
                *floor = (*floor).max(*round);
            }
            Record::MlsState { key, value, .. } => {
                self.mls_state.insert((group, key.clone()), value.clone());
            }
            Record::Stored { position, message, .. } => {
                self.stored.insert((group, *position), Some(message.clone()));
            }
            Record::Unstored { deleted, .. } => {
                for (position, _) in deleted {
                    self.stored.insert((group, *position), None);
                    let below = self.unstored_below.entry(group).or_insert(position + 1);
                    *below = (*below).max(position + 1);
                }
            }
            Record::SnapshotChunk { hash, index, count, bytes, .. } => {
                let change = self.snapshots.entry((group, *hash)).or_default();
                change.count = Some(*count);
                change.chunks.insert(*index, bytes.clone());
            }
            Record::SnapshotDropped { hash, .. } => {
                self.snapshots.insert((group, *hash), SnapshotChange { is_dropped: true, ..SnapshotChange::default() });
            }
            Record::Compacted { compaction, key, .. } => {
                self.compacted.insert(group, (compaction.clone(), *key));
            }
            Record::ImportedSnapshot { covered, snapshot, .. } => {
                self.imported.insert(group, (covered.clone(), snapshot.clone()));
            }
            Record::Update { id, update, .. } => {
                self.updates.insert((group, *id), update.clone());
            }
            Record::UpdatesDropped { covered, .. } => {
                self.updates.retain(|(of, id), _| *of != group || !dropped_by(covered, id));
                self.undecryptable.retain(|(of, id), _| *of != group || !dropped_by(covered, id));
                self.batch_parts.retain(|(of, id, _), _| *of != group || !dropped_by(covered, id));
                self.updates_dropped.entry(group).or_default().push(covered.clone());
            }
            Record::BatchPart { id, part, update, .. } => {
                self.batch_parts.insert((group, *id, *part), update.clone());
            }
            Record::BatchClosed { id, update, .. } => {
                self.updates.insert((group, *id), update.clone());
                self.batch_parts.retain(|(of, batch, _), _| (*of, *batch) != (group, *id));
                self.batches_closed.insert((group, *id));
            }
            Record::Undecryptable { id, epoch, .. } => {
                self.undecryptable.insert((group, *id), *epoch);
            }
            Record::SafeBelow { seq, .. } => {
                let safe_below = self.safe_below.entry(group).or_insert(*seq);
                *safe_below = (*safe_below).max(*seq);
            }
            Record::ReadCursor { acceptor, cursor, .. } => {
                self.read_cursors.insert((group, *acceptor), *cursor);
            }
            Record::Redeeming { .. } => unreachable!("a record outside groups has no group"),
        }
    }

    /// Drops everything folded for `group` so far; the write deletes its durable rows first.
    fn forget(&mut self, group: GroupId) {
        self.forgotten.insert(group);
        self.groups.remove(&group);
        self.incarnations.remove(&group);
        self.recovered.remove(&group);
        self.promised.remove(&group);
        self.accepted.retain(|(of, _), _| *of != group);
        self.peer_incarnations.retain(|(of, _), _| *of != group);
        self.chosen.retain(|(of, _), _| *of != group);
        self.round_floors.remove(&group);
        self.mls_state.retain(|(of, _), _| *of != group);
        self.stored.retain(|(of, _), _| *of != group);
        self.unstored_below.remove(&group);
        self.snapshots.retain(|(of, _), _| *of != group);
        self.compacted.remove(&group);
        self.imported.remove(&group);
        self.updates_dropped.remove(&group);
        self.updates.retain(|(of, _), _| *of != group);
        self.undecryptable.retain(|(of, _), _| *of != group);
        self.batches_closed.retain(|(of, _)| *of != group);
        self.batch_parts.retain(|(of, _, _), _| *of != group);
        self.safe_below.remove(&group);
        self.read_cursors.retain(|(of, _), _| *of != group);
    }

    /// A node's record outside any group (`Record::group` is `None`).
    fn add_outside_groups(&mut self, record: &Record) {
        match record {
            Record::Redeeming { mailbox, redeeming } => {
                self.redeeming.insert(*mailbox, redeeming.clone());
            }
            _ => unreachable!("every other record has a group"),
        }
    }

    fn raise_promised(&mut self, group: GroupId, ballot: Ballot) {
        let promised = self.promised.entry(group).or_insert(ballot);
        *promised = (*promised).max(ballot);
    }
}

#[cfg(test)]
mod tests {
    use plait_kernel::log::AcceptorSet;

    use super::*;

    fn genesis(nonce: u64) -> GroupGenesis {
        let acceptors = AcceptorSet::new(vec![NodeId::from_index(1)], 8).expect("one acceptor");
        GroupGenesis { nonce, acceptors, proposers: vec![NodeId::from_index(2)], group_info: None }
    }

    fn batch(records: Vec<Record>) -> WriteBatch {
        WriteBatch { records }
    }

    #[test]
    fn records_before_their_group_are_dropped_and_after_it_kept() {
        let genesis = genesis(1);
        let group = genesis.group_id();
        let early = Record::RoundFloor { group, round: 5 };
        let late = Record::RoundFloor { group, round: 3 };
        let changes = Changes::fold(&BTreeSet::new(), &[batch(vec![early]), batch(vec![Record::Group { group, genesis }, late])]);
        assert_eq!(changes.round_floors.get(&group), Some(&3));
    }

    #[test]
    fn chosen_after_accepted_deletes_and_accepted_after_chosen_keeps() {
        let genesis = genesis(1);
        let group = genesis.group_id();
        let ballot = Ballot { round: 2, proposer: NodeId::from_index(2) };
        let accepted = |slot| Record::Accepted {
            group,
            slot: Slot(slot),
            ballot,
            value_hash: Entry::Noop.hash(),
            entry: Entry::Noop,
            proof: vec![],
        };
        let chosen = |slot| Record::Chosen { group, slot: Slot(slot), entry: Entry::Noop };
        let durable = BTreeSet::from([group]);
        let changes = Changes::fold(&durable, &[batch(vec![accepted(1), chosen(1), chosen(2), accepted(2)])]);
        assert_eq!(changes.accepted.get(&(group, Slot(1))), Some(&None));
        assert!(matches!(changes.accepted.get(&(group, Slot(2))), Some(Some(_))));
        assert_eq!(changes.promised.get(&group), Some(&ballot));
        assert!(changes.groups.is_empty(), "a durable group is not written again");
    }

    #[test]
    fn safe_below_keeps_the_max_and_update_stored_and_cursor_keep_the_last() {
        let genesis = genesis(1);
        let group = genesis.group_id();
        let sender = NodeId::from_index(2);
        let acceptor = NodeId::from_index(1);
        let id = UpdateId { sender, seq: 4 };
        let update = |bytes: &[u8]| Record::Update { group, id, update: bytes.to_vec() };
        let stored = |seq| Record::Stored {
            group,
            position: 1,
            message: StoredMessage { id: UpdateId { sender, seq }, ciphertext: vec![seq as u8] },
        };
        let cursor = |incarnation, position| Record::ReadCursor {
            group,
            acceptor,
            cursor: Cursor { incarnation: Incarnation(incarnation), position },
        };
        let durable = BTreeSet::from([group]);
        let changes = Changes::fold(
            &durable,
            &[
                batch(vec![Record::SafeBelow { group, seq: 3 }, update(b"a"), stored(1), cursor(1, 9)]),
                batch(vec![Record::SafeBelow { group, seq: 7 }, update(b"ab"), stored(2), cursor(2, 0)]),
                batch(vec![Record::SafeBelow { group, seq: 5 }, update(b"abc")]),
            ],
        );
        assert_eq!(changes.safe_below.get(&group), Some(&7), "SafeBelow keeps the maximum");
        assert_eq!(changes.updates.get(&(group, id)).map(Vec::as_slice), Some(&b"abc"[..]), "the last rewrite wins");
        assert_eq!(changes.updates.len(), 1);
        assert_eq!(
            changes.stored.get(&(group, 1)).and_then(|message| message.as_ref()).map(|message| message.id.seq),
            Some(2),
            "the last message wins"
        );
        let last = Cursor { incarnation: Incarnation(2), position: 0 };
        assert_eq!(changes.read_cursors.get(&(group, acceptor)), Some(&last), "a cursor is replaced, even by a lower one");
    }

    #[test]
    fn unstored_deletes_and_raises_its_floor_and_a_drop_forgets_earlier_chunks() {
        let genesis = genesis(1);
        let group = genesis.group_id();
        let sender = NodeId::from_index(2);
        let id = |seq| UpdateId { sender, seq };
        let stored =
            |position| Record::Stored { group, position, message: StoredMessage { id: id(position), ciphertext: vec![] } };
        let unstored = |positions: &[u64]| Record::Unstored { group, deleted: positions.iter().map(|p| (*p, id(*p))).collect() };
        let hash = SnapshotHash([3; 32]);
        let chunk = |index: u32, count| Record::SnapshotChunk { group, hash, index, count, bytes: vec![index as u8] };
        let durable = BTreeSet::from([group]);
        let records = vec![
            stored(1),
            stored(2),
            unstored(&[2, 1]),
            stored(3),
            chunk(0, 2),
            Record::SnapshotDropped { group, hash },
            chunk(1, 3),
        ];
        let changes = Changes::fold(&durable, &[batch(records)]);
        assert_eq!(changes.stored.get(&(group, 2)), Some(&None), "Unstored deletes");
        assert!(matches!(changes.stored.get(&(group, 3)), Some(Some(_))), "a later Stored is kept");
        assert_eq!(changes.unstored_below.get(&group), Some(&3), "the highest deleted position + 1");
        let expected = SnapshotChange { is_dropped: true, count: Some(3), chunks: BTreeMap::from([(1, vec![1])]) };
        assert_eq!(changes.snapshots.get(&(group, hash)), Some(&expected), "only chunks after the drop are written");
    }
}
