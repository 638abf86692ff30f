//! The checker's ghost of document messages: which acceptors hold each one durably, and which
//! ones their senders were told are safe.
//!
//! Safe means "stored durably by a write quorum of the group's acceptors", so the ghost checks
//! that when the sender says so, and again whenever an acceptor loses its disk: a safe message
//! must never be left with no durable copy.

use std::collections::{BTreeMap, BTreeSet};

use plait_kernel::updates::UpdateId;
use plait_kernel::{AcceptorSet, GroupId, NodeId, WriteQuorum};

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
        self.safe.iter().filter(|key| self.copies.get(key).is_none_or(BTreeSet::is_empty)).copied().collect()
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
        self.safe(group).any(|id| self.copies.get(&(group, id)).is_none_or(|h| !h.contains(&acceptor)))
    }
}
