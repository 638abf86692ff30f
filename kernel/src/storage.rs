//! What the kernel persists and what it gets back after a restart.
//!
//! The kernel emits `Effect::Persist(WriteBatch)`; the host makes the batch durable, all or
//! nothing, before it carries out any later effect. After a restart the host rebuilds a
//! [`Restored`] from everything durable and hands it to the node's constructor.
//!
//! If a persist fails, durability of that batch is unknown: the host must stop the node and
//! rebuild it from what the store loads, never carry out the effects after the failed persist.
//!
//! [`Restored::apply`] is the reference meaning of a batch: the simulator's disk is exactly a
//! `Restored` that batches are applied to, and a real store must load the same `Restored` after
//! the same batches (store-sqlite tests this against the simulator's model).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Ballot, GroupId, Incarnation, NodeId, Slot, ValueHash};
use crate::invite::{Mailbox, Redeeming};
use crate::log::{AcceptorSet, Entry, GroupGenesis};
use crate::snapshot::{Compaction, ContentKey, Covered, SnapshotHash};
use crate::updates::{Cursor, StoredMessage, UpdateId};

/// One durable fact. Later records for the same key replace earlier ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A node (either kind) now hosts this group.
    Group {
        /// Which group.
        group: GroupId,
        /// Its genesis.
        genesis: GroupGenesis,
    },
    /// Acceptor: the incarnation it drew when it created its state for the group.
    Incarnation {
        /// Which group.
        group: GroupId,
        /// The incarnation.
        incarnation: Incarnation,
    },
    /// Acceptor: it has caught up safely after creating its state and may vote.
    Recovered {
        /// Which group.
        group: GroupId,
    },
    /// Acceptor: the highest ballot it promised for the group.
    Promised {
        /// Which group.
        group: GroupId,
        /// The promise.
        ballot: Ballot,
    },
    /// Acceptor: the value it accepted for a slot.
    Accepted {
        /// Which group.
        group: GroupId,
        /// Which slot.
        slot: Slot,
        /// The ballot that carried the value.
        ballot: Ballot,
        /// Hash of `entry`.
        value_hash: ValueHash,
        /// The value.
        entry: Entry,
        /// The proposer's signature (see [`AcceptedValue::proof`]).
        proof: Vec<u8>,
    },
    /// Acceptor: a peer acceptor's current incarnation, learned when it recovered.
    PeerIncarnation {
        /// Which group.
        group: GroupId,
        /// The peer.
        acceptor: NodeId,
        /// Its incarnation.
        incarnation: Incarnation,
    },
    /// Either kind: the value chosen for a slot (a device records only what it has applied).
    Chosen {
        /// Which group.
        group: GroupId,
        /// Which slot.
        slot: Slot,
        /// The chosen value.
        entry: Entry,
    },
    /// Either kind: one key of the group's MLS state (openmls storage, journaled); `None`
    /// deletes the key.
    MlsState {
        /// Which group.
        group: GroupId,
        /// The key.
        key: Vec<u8>,
        /// The value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Device: rounds up to this one may have been used; the next ballot must be higher.
    RoundFloor {
        /// Which group.
        group: GroupId,
        /// The highest round reserved.
        round: u64,
    },
    /// Acceptor: a document message it stored, at its next position for the group.
    Stored {
        /// Which group.
        group: GroupId,
        /// Its position (1, 2, 3, ...).
        position: u64,
        /// The message.
        message: StoredMessage,
    },
    /// Device: a document update it applied or wrote (plaintext: devices are trusted). Its own
    /// update being written is rewritten with every edit until the batch is closed.
    Update {
        /// Which group.
        group: GroupId,
        /// The update's id.
        id: UpdateId,
        /// The encoded CRDT update.
        update: Vec<u8>,
    },
    /// Device: every update of its own numbered below `seq` is safe (stored by a write quorum).
    SafeBelow {
        /// Which group.
        group: GroupId,
        /// The first of its own sequence numbers that may not be safe.
        seq: u64,
    },
    /// Device: how far it has read one acceptor's message store.
    ReadCursor {
        /// Which group.
        group: GroupId,
        /// The acceptor.
        acceptor: NodeId,
        /// The cursor.
        cursor: Cursor,
    },
    /// Acceptor: one chunk of a stored snapshot (ciphertext).
    SnapshotChunk {
        /// Which group.
        group: GroupId,
        /// The snapshot.
        hash: SnapshotHash,
        /// The chunk's index.
        index: u32,
        /// How many chunks the snapshot has.
        count: u32,
        /// The chunk.
        bytes: Vec<u8>,
    },
    /// Acceptor: every chunk of this snapshot is deleted.
    SnapshotDropped {
        /// Which group.
        group: GroupId,
        /// The snapshot.
        hash: SnapshotHash,
    },
    /// Acceptor: stored messages deleted because a compaction covers them. Their positions are
    /// never given out again.
    Unstored {
        /// Which group.
        group: GroupId,
        /// The positions deleted, with the ids of the messages they held.
        deleted: Vec<(u64, UpdateId)>,
    },
    /// Acceptor and device: the latest compaction chosen in the log (a device keeps its key).
    Compacted {
        /// Which group.
        group: GroupId,
        /// The compaction.
        compaction: Compaction,
        /// Its content key (devices only).
        key: Option<ContentKey>,
    },
    /// Device: a snapshot of its document (plaintext) and the messages whose updates it holds:
    /// one it imported from a compaction, or its own checkpoint. A restart imports it before the
    /// stored updates.
    ImportedSnapshot {
        /// Which group.
        group: GroupId,
        /// The messages it covers (counted as applied).
        covered: Covered,
        /// The document snapshot.
        snapshot: Vec<u8>,
    },
    /// Device: deletes its stored updates that `covered` names (for each sender it lists, every
    /// seq below that entry's `below` and each seq in its `beyond`, whatever their order), and
    /// its `Undecryptable` and `BatchPart` records of them. The kernel writes it after an
    /// `ImportedSnapshot` that holds them.
    UpdatesDropped {
        /// Which group.
        group: GroupId,
        /// The updates to delete.
        covered: Covered,
    },
    /// Device, outside any group: an invite code it is redeeming, so that a restart goes on with
    /// the same key package (an admin may already have added it); `None` once it got in or gave
    /// up.
    Redeeming {
        /// The code's mailbox.
        mailbox: Mailbox,
        /// What the device needs to go on, or `None` to delete.
        redeeming: Option<Redeeming>,
    },
    /// Device: it no longer holds the group; every record of it goes. Written when a device
    /// that was removed from a group joins it again through an invite, before the records of
    /// its new membership (see `Device::open_welcomed`). (Last, so that the encoding of the
    /// others stays.)
    GroupForgotten {
        /// Which group.
        group: GroupId,
    },
    /// Device: a stored message it cannot decrypt (sealed in `epoch`, before it joined or too
    /// long ago), which it asks the members to compact. Kept so that a restart goes on asking:
    /// its cursor has moved past the message. An `UpdatesDropped` naming it deletes it, as it
    /// deletes updates (the checkpoint after the import of a snapshot that covers it); a restart
    /// ignores one the device has applied meanwhile. (After `GroupForgotten`, so that the
    /// encoding of the others stays.)
    Undecryptable {
        /// Which group.
        group: GroupId,
        /// The message's id.
        id: UpdateId,
        /// The epoch it was sealed in.
        epoch: u64,
    },
    /// Device: the update of one edit in its open batch `id`, after the batch's first edit
    /// (whose update is the batch's `Update`): every edit writes what it changed, not the batch
    /// so far. A restart joins a batch's parts into one update. `BatchClosed` replaces them, and
    /// an `UpdatesDropped` naming `id` deletes them. (After `Undecryptable`, so that the encoding
    /// of the others stays.)
    BatchPart {
        /// Which group.
        group: GroupId,
        /// The batch's update id.
        id: UpdateId,
        /// Its place in the batch: 1 for the second edit, 2 for the third, ...
        part: u32,
        /// The edit's encoded CRDT update.
        update: Vec<u8>,
    },
    /// Device: its batch `id` closed with more than one edit: `update`, the whole batch, replaces
    /// the batch's `Update`, and its `BatchPart`s are deleted.
    BatchClosed {
        /// Which group.
        group: GroupId,
        /// The batch's update id.
        id: UpdateId,
        /// The batch's encoded CRDT update.
        update: Vec<u8>,
    },
}

impl Record {
    /// The group this record belongs to; `None` for a node's records outside any group.
    pub fn group(&self) -> Option<GroupId> {
        let group = match self {
            Record::Group { group, .. }
            | Record::Incarnation { group, .. }
            | Record::Recovered { group }
            | Record::Promised { group, .. }
            | Record::Accepted { group, .. }
            | Record::PeerIncarnation { group, .. }
            | Record::Chosen { group, .. }
            | Record::MlsState { group, .. }
            | Record::RoundFloor { group, .. }
            | Record::Stored { group, .. }
            | Record::Update { group, .. }
            | Record::SafeBelow { group, .. }
            | Record::ReadCursor { group, .. }
            | Record::SnapshotChunk { group, .. }
            | Record::SnapshotDropped { group, .. }
            | Record::Unstored { group, .. }
            | Record::Compacted { group, .. }
            | Record::ImportedSnapshot { group, .. }
            | Record::UpdatesDropped { group, .. }
            | Record::GroupForgotten { group }
            | Record::Undecryptable { group, .. }
            | Record::BatchPart { group, .. }
            | Record::BatchClosed { group, .. } => *group,
            Record::Redeeming { .. } => return None,
        };
        Some(group)
    }
}

/// Records that become durable together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The records, applied in order.
    pub records: Vec<Record>,
}

impl WriteBatch {
    /// Adds a record.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// An accepted value as stored and as reported in promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedValue {
    /// The ballot that carried it.
    pub ballot: Ballot,
    /// Hash of `entry`.
    pub value_hash: ValueHash,
    /// The value.
    pub entry: Entry,
    /// The proposer's signature over the ballot, slot and value hash (MLS groups; empty
    /// otherwise), so a promise cannot claim a value at a ballot that never carried it.
    pub proof: Vec<u8>,
}

/// Everything durable about one group on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredGroup {
    /// The group's genesis.
    pub genesis: GroupGenesis,
    /// Acceptor: its incarnation for this group.
    pub incarnation: Option<Incarnation>,
    /// Acceptor: whether it finished recovery and may vote.
    pub recovered: bool,
    /// Acceptor: highest promise.
    pub promised: Ballot,
    /// Acceptor: accepted values of slots not known chosen.
    pub accepted: BTreeMap<Slot, AcceptedValue>,
    /// Acceptor: peers' incarnations.
    pub peer_incarnations: BTreeMap<NodeId, Incarnation>,
    /// Chosen entries (acceptor: all it knows; device: all it applied).
    pub chosen: BTreeMap<Slot, Entry>,
    /// Device: highest round it may have used.
    pub round_floor: u64,
    /// The group's MLS state (openmls storage keys and values).
    pub mls: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Acceptor: stored document messages by position.
    pub stored: BTreeMap<u64, StoredMessage>,
    /// Device: document updates it applied or wrote.
    pub updates: BTreeMap<UpdateId, Vec<u8>>,
    /// Device: its own updates below this sequence number are safe.
    pub safe_below: u64,
    /// Device: how far it has read each acceptor's store.
    pub cursors: BTreeMap<NodeId, Cursor>,
    /// Acceptor: every position below this was given out (some may be deleted since).
    pub positions_below: u64,
    /// Acceptor: snapshot chunks held, by snapshot: `(count, chunks by index)`.
    pub snapshots: BTreeMap<SnapshotHash, (u32, BTreeMap<u32, Vec<u8>>)>,
    /// The latest compaction chosen (devices: with its key).
    pub compacted: Option<(Compaction, Option<ContentKey>)>,
    /// Device: the snapshot it imported last, with what it covers.
    pub imported: Option<(Covered, Vec<u8>)>,
    /// Device: stored messages it cannot decrypt, with the epoch each was sealed in.
    pub undecryptable: BTreeMap<UpdateId, u64>,
    /// Device: the edits of an open batch after its first, by the batch's id and their place.
    pub batch_parts: BTreeMap<(UpdateId, u32), Vec<u8>>,
}

impl RestoredGroup {
    /// A group's state before any record but its `Group` record: what `Restored::apply` starts
    /// from, and what a store rebuilds on top of.
    pub fn new(genesis: GroupGenesis) -> RestoredGroup {
        RestoredGroup {
            genesis,
            incarnation: None,
            recovered: false,
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            peer_incarnations: BTreeMap::new(),
            chosen: BTreeMap::new(),
            round_floor: 0,
            mls: BTreeMap::new(),
            stored: BTreeMap::new(),
            updates: BTreeMap::new(),
            safe_below: 0,
            cursors: BTreeMap::new(),
            positions_below: 1,
            snapshots: BTreeMap::new(),
            compacted: None,
            imported: None,
            undecryptable: BTreeMap::new(),
            batch_parts: BTreeMap::new(),
        }
    }

    /// The acceptor set after every chosen entry this group holds.
    pub fn acceptors(&self) -> AcceptorSet {
        let mut set = self.genesis.acceptors.clone();
        for entry in self.chosen.values() {
            if let Entry::SetAcceptors(next) = entry {
                set = next.clone();
            }
        }
        set
    }
}

/// A node's durable state, as handed to its constructor after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// Per group.
    pub groups: BTreeMap<GroupId, RestoredGroup>,
    /// Device: invite codes it is redeeming, by mailbox.
    pub redeeming: BTreeMap<Mailbox, Redeeming>,
}

impl Restored {
    /// Nothing durable: a new node, or one whose disk was lost.
    pub fn empty() -> Restored {
        Restored::default()
    }

    /// Applies a batch as a store must: records in order, later facts replacing earlier ones.
    /// Records for a group that has no `Group` record yet are ignored (the kernel never writes
    /// them; a store that loses the `Group` row loses the group).
    pub fn apply(&mut self, batch: &WriteBatch) {
        for record in &batch.records {
            self.apply_record(record);
        }
    }

    fn apply_record(&mut self, record: &Record) {
        match record {
            Record::Group { group, genesis } => {
                self.groups.entry(*group).or_insert_with(|| RestoredGroup::new(genesis.clone()));
                return;
            }
            Record::GroupForgotten { group } => {
                self.groups.remove(group);
                return;
            }
            Record::Redeeming { mailbox, redeeming: Some(redeeming) } => {
                self.redeeming.insert(*mailbox, redeeming.clone());
                return;
            }
            Record::Redeeming { mailbox, redeeming: None } => {
                self.redeeming.remove(mailbox);
                return;
            }
            _ => {}
        }
        let Some(state) = record.group().and_then(|group| self.groups.get_mut(&group)) else { return };
        match record {
            Record::Group { .. } | Record::GroupForgotten { .. } | Record::Redeeming { .. } => unreachable!("handled above"),
            Record::Incarnation { incarnation, .. } => state.incarnation = Some(*incarnation),
            Record::Recovered { .. } => state.recovered = true,
            Record::Promised { ballot, .. } => state.promised = state.promised.max(*ballot),
            Record::Accepted { slot, ballot, value_hash, entry, proof, .. } => {
                let value =
                    AcceptedValue { ballot: *ballot, value_hash: *value_hash, entry: entry.clone(), proof: proof.clone() };
                state.accepted.insert(*slot, value);
                state.promised = state.promised.max(*ballot);
            }
            Record::PeerIncarnation { acceptor, incarnation, .. } => {
                state.peer_incarnations.insert(*acceptor, *incarnation);
            }
            Record::Chosen { slot, entry, .. } => {
                state.accepted.remove(slot);
                state.chosen.insert(*slot, entry.clone());
            }
            Record::RoundFloor { round, .. } => state.round_floor = state.round_floor.max(*round),
            Record::MlsState { key, value: Some(value), .. } => {
                state.mls.insert(key.clone(), value.clone());
            }
            Record::MlsState { key, value: None, .. } => {
                state.mls.remove(key);
            }
            Record::Stored { position, message, .. } => {
                state.stored.insert(*position, message.clone());
                state.positions_below = state.positions_below.max(position + 1);
            }
            Record::Unstored { deleted, .. } => {
                for (position, _) in deleted {
                    state.stored.remove(position);
                    state.positions_below = state.positions_below.max(position + 1);
                }
            }
            Record::SnapshotChunk { hash, index, count, bytes, .. } => {
                let (held, chunks) = state.snapshots.entry(*hash).or_insert_with(|| (*count, BTreeMap::new()));
                *held = *count;
                chunks.insert(*index, bytes.clone());
            }
            Record::SnapshotDropped { hash, .. } => {
                state.snapshots.remove(hash);
            }
            Record::Compacted { compaction, key, .. } => state.compacted = Some((compaction.clone(), *key)),
            Record::ImportedSnapshot { covered, snapshot, .. } => state.imported = Some((covered.clone(), snapshot.clone())),
            Record::Update { id, update, .. } => {
                state.updates.insert(*id, update.clone());
            }
            Record::UpdatesDropped { covered, .. } => {
                state.updates.retain(|id, _| !dropped_by(covered, id));
                state.undecryptable.retain(|id, _| !dropped_by(covered, id));
                state.batch_parts.retain(|(id, _), _| !dropped_by(covered, id));
            }
            Record::BatchPart { id, part, update, .. } => {
                state.batch_parts.insert((*id, *part), update.clone());
            }
            Record::BatchClosed { id, update, .. } => {
                state.updates.insert(*id, update.clone());
                state.batch_parts.retain(|(of, _), _| of != id);
            }
            Record::Undecryptable { id, epoch, .. } => {
                state.undecryptable.insert(*id, *epoch);
            }
            Record::SafeBelow { seq, .. } => state.safe_below = state.safe_below.max(*seq),
            Record::ReadCursor { acceptor, cursor, .. } => {
                state.cursors.insert(*acceptor, *cursor);
            }
        }
    }
}

/// Whether [`Record::UpdatesDropped`] with `covered` deletes the update `id`: by every entry of the
/// sender, in any order (a store keeps what it is given; only the kernel's own sets are sorted).
pub fn dropped_by(covered: &Covered, id: &UpdateId) -> bool {
    covered.senders.iter().any(|entry| entry.sender == id.sender && (id.seq < entry.below || entry.beyond.contains(&id.seq)))
}

/// Rows one `Load` returns at most, whatever `count` asked for; every store applies the same cap.
pub const LOAD_ROWS_MAX: usize = 4096;

/// Identifies one outstanding `Load`; echoed back in `Input::Loaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LoadId(pub u64);

/// A bounded read the kernel asks the host for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadQuery {
    /// Chosen entries of `group` from slot `from`, at most `count` of them, in slot order.
    ChosenEntries {
        /// Which group.
        group: GroupId,
        /// First slot wanted.
        from: Slot,
        /// Entries at most.
        count: usize,
    },
}

/// The rows a `Load` returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadResult {
    /// Answer to [`LoadQuery::ChosenEntries`]: contiguous from `from`, possibly fewer than asked.
    ChosenEntries(Vec<(Slot, Entry)>),
}

impl LoadQuery {
    /// Answers the query from a durable image: the reference any store must agree with.
    pub fn answer(&self, durable: &Restored) -> LoadResult {
        match self {
            LoadQuery::ChosenEntries { group, from, count } => {
                let rows = durable
                    .groups
                    .get(group)
                    .map(|state| state.chosen.range(*from..).take(*count).map(|(slot, entry)| (*slot, entry.clone())).collect());
                LoadResult::ChosenEntries(rows.unwrap_or_default())
            }
        }
    }
}
