//! The checker's ghost of document messages: which acceptors hold each one durably, and which
//! ones their senders were told are safe.
//!
//! Safe means "stored durably by a write quorum of the group's acceptors", so the ghost checks
//! that when the sender says so, and again whenever an acceptor loses its disk: a safe message
//! must never be left with no durable copy.
//!
//! After compaction a message is also recoverable from an acceptor that holds every chunk of a
//! snapshot whose compaction covers it; deleting a message must never remove the last way an
//! acceptor has to recover it.

use std::collections::{BTreeMap, BTreeSet};

use plait_kernel::snapshot::{Covered, SnapshotHash};
use plait_kernel::updates::UpdateId;
use plait_kernel::{AcceptorSet, GroupId, NodeId, WriteQuorum};

/// One snapshot's chunk count, and the chunk indexes each honest acceptor holds durably.
type SnapshotHolders = (u32, BTreeMap<NodeId, BTreeSet<u32>>);

/// Document messages as the acceptors' disks hold them.
#[derive(Debug, Default)]
pub struct DocumentGhost {
    /// Honest acceptors holding each message durably.
    copies: BTreeMap<(GroupId, UpdateId), BTreeSet<NodeId>>,
    /// Honest acceptors that ever made each message durable (an acknowledgement may arrive
    /// after its sender lost its disk: it was true when it was sent).
    stored_by: BTreeMap<(GroupId, UpdateId), BTreeSet<NodeId>>,
    /// Messages their senders were told are safe.
    safe: BTreeSet<(GroupId, UpdateId)>,
    /// Snapshot chunks honest acceptors hold durably: the chunk count, and indexes by holder.
    snapshots: BTreeMap<(GroupId, SnapshotHash), SnapshotHolders>,
    /// What each chosen compaction covers, by its snapshot.
    compactions: BTreeMap<(GroupId, SnapshotHash), Covered>,
}

impl DocumentGhost {
    /// An acceptor made a message durable.
    pub fn on_stored(&mut self, acceptor: NodeId, group: GroupId, id: UpdateId) {
        self.copies.entry((group, id)).or_default().insert(acceptor);
        self.stored_by.entry((group, id)).or_default().insert(acceptor);
    }

    /// An acceptor lost its disk. Returns the safe messages that now have no copy at all.
    pub fn on_wipe(&mut self, acceptor: NodeId) -> Vec<(GroupId, UpdateId)> {
        for holders in self.copies.values_mut() {
            holders.remove(&acceptor);
        }
        for (_, holders) in self.snapshots.values_mut() {
            holders.remove(&acceptor);
        }
        self.safe.iter().filter(|(group, id)| !self.recoverable_anywhere(*group, id)).copied().collect()
    }

    /// An acceptor made a snapshot chunk durable.
    pub fn on_snapshot_chunk(&mut self, acceptor: NodeId, group: GroupId, hash: SnapshotHash, index: u32, count: u32) {
        let (held_count, holders) = self.snapshots.entry((group, hash)).or_insert_with(|| (count, BTreeMap::new()));
        *held_count = count;
        holders.entry(acceptor).or_default().insert(index);
    }

    /// An acceptor dropped a snapshot.
    pub fn on_snapshot_dropped(&mut self, acceptor: NodeId, group: GroupId, hash: SnapshotHash) {
        if let Some((_, holders)) = self.snapshots.get_mut(&(group, hash)) {
            holders.remove(&acceptor);
        }
    }

    /// A compaction was chosen (an acceptor recorded it).
    pub fn on_compacted(&mut self, group: GroupId, hash: SnapshotHash, covered: &Covered) {
        self.compactions.entry((group, hash)).or_insert_with(|| covered.clone());
    }

    /// An acceptor deleted messages a compaction covers. `Err` names a safe message it can no
    /// longer recover: it held a copy and holds no snapshot that covers it.
    pub fn on_unstored(&mut self, acceptor: NodeId, group: GroupId, ids: &[UpdateId]) -> Result<(), UpdateId> {
        for id in ids {
            if let Some(holders) = self.copies.get_mut(&(group, *id)) {
                holders.remove(&acceptor);
            }
        }
        let lost = ids.iter().find(|id| self.safe.contains(&(group, **id)) && !self.recoverable_at(acceptor, group, id));
        lost.map_or(Ok(()), |id| Err(*id))
    }

    /// An acceptor no longer in the group's set deleted messages: ones the set copied from it,
    /// or ones a snapshot it holds covers (as an acceptor of the set would). `Err` names a safe
    /// message it cannot recover and fewer than `needed` acceptors of `set` can, and how many can.
    pub fn on_handed_over(
        &mut self,
        acceptor: NodeId,
        group: GroupId,
        ids: &[UpdateId],
        set: &AcceptorSet,
        needed: usize,
    ) -> Result<(), (UpdateId, usize)> {
        for id in ids {
            if let Some(holders) = self.copies.get_mut(&(group, *id)) {
                holders.remove(&acceptor);
            }
        }
        for id in ids.iter().filter(|id| self.safe.contains(&(group, **id))) {
            let held = set.members().iter().filter(|a| self.recoverable_at(**a, group, id)).count();
            if held < needed && !self.recoverable_at(acceptor, group, id) {
                return Err((*id, held));
            }
        }
        Ok(())
    }

    /// Whether `acceptor` holds a copy of the message or a whole snapshot that covers it.
    fn recoverable_at(&self, acceptor: NodeId, group: GroupId, id: &UpdateId) -> bool {
        self.copies.get(&(group, *id)).is_some_and(|h| h.contains(&acceptor))
            || self
                .compactions
                .iter()
                .any(|((g, hash), covered)| *g == group && covered.contains(id) && self.holds_snapshot(acceptor, group, *hash))
    }

    fn recoverable_anywhere(&self, group: GroupId, id: &UpdateId) -> bool {
        self.copies.get(&(group, *id)).is_some_and(|h| !h.is_empty())
            || self.compactions.iter().any(|((g, hash), covered)| {
                *g == group
                    && covered.contains(id)
                    && self
                        .snapshots
                        .get(&(group, *hash))
                        .is_some_and(|(count, holders)| holders.values().any(|indexes| indexes.len() == *count as usize))
            })
    }

    fn holds_snapshot(&self, acceptor: NodeId, group: GroupId, hash: SnapshotHash) -> bool {
        self.snapshots
            .get(&(group, hash))
            .is_some_and(|(count, holders)| holders.get(&acceptor).is_some_and(|indexes| indexes.len() == *count as usize))
    }

    /// A sender was told its message is safe. `Err` names how many acceptors of `set` made it
    /// durable when fewer than a write quorum did (Byzantine members of the set are not counted
    /// on).
    pub fn on_safe(
        &mut self,
        group: GroupId,
        id: UpdateId,
        quorum: WriteQuorum,
        set: &AcceptorSet,
        liars: &BTreeSet<NodeId>,
    ) -> Result<(), usize> {
        self.safe.insert((group, id));
        let needed = quorum.of(set.members().len());
        let liars_in_set = set.members().iter().filter(|a| liars.contains(a)).count();
        let held = self.stored_by.get(&(group, id)).map_or(0, |h| h.iter().filter(|a| set.contains(**a)).count());
        if held < needed.saturating_sub(liars_in_set) { Err(held) } else { Ok(()) }
    }

    /// Every message reported safe in `group`.
    pub fn safe(&self, group: GroupId) -> impl Iterator<Item = UpdateId> + '_ {
        self.safe.iter().filter(move |(g, _)| *g == group).map(|(_, id)| *id)
    }

    /// Whether `acceptor` lacks a safe message of `group` (it is still copying after losing
    /// its disk, or it missed the posts).
    pub fn lacks_safe(&self, acceptor: NodeId, group: GroupId) -> bool {
        self.safe(group).any(|id| !self.recoverable_at(acceptor, group, &id))
    }
}
