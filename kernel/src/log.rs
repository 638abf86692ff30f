//! What a group's commit log holds: its genesis, the entries chosen for slots, and the acceptor
//! set in force for each slot.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, NodeId, Slot, ValueHash};

/// One value chosen for a slot. Paxos orders these without looking inside `Value`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// Fills a slot that a stalled proposer left half-accepted; changes nothing.
    Noop,
    /// An opaque value from the layer above (later: an MLS commit).
    Value(Vec<u8>),
    /// Replaces the acceptor set. Takes effect from the next slot.
    SetAcceptors(AcceptorSet),
}

impl Entry {
    /// The hash a ballot is bound to when it carries this entry.
    pub fn hash(&self) -> ValueHash {
        let bytes = postcard::to_allocvec(self).expect("invariant: entries always encode");
        ValueHash(*blake3::hash(&bytes).as_bytes())
    }

    /// Encoded size in bytes, for limits.
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Noop => 1,
            Entry::Value(bytes) => bytes.len() + 6,
            Entry::SetAcceptors(set) => set.members().len() * 33 + 2,
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Noop => write!(f, "Noop"),
            Entry::Value(bytes) if bytes.len() <= 16 => write!(f, "Value({})", crate::ids::hex(bytes)),
            Entry::Value(bytes) => write!(f, "Value({} bytes {:?})", bytes.len(), self.hash()),
            Entry::SetAcceptors(set) => write!(f, "SetAcceptors({:?})", set.members()),
        }
    }
}

/// A non-empty, sorted set of distinct acceptors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorSet(Vec<NodeId>);

impl AcceptorSet {
    /// Sorts and de-duplicates `members`; `None` if that leaves nobody or more than `max`.
    pub fn new(mut members: Vec<NodeId>, max: usize) -> Option<AcceptorSet> {
        members.sort_unstable();
        members.dedup();
        (!members.is_empty() && members.len() <= max).then_some(AcceptorSet(members))
    }

    /// Re-checks a set that arrived from the wire (it may be unsorted, repeated or empty).
    pub fn is_well_formed(&self, max: usize) -> bool {
        !self.0.is_empty() && self.0.len() <= max && self.0.windows(2).all(|w| w[0] < w[1])
    }

    /// The members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.0
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.0.binary_search(&node).is_ok()
    }

    /// How many members may be Byzantine (lie, equivocate, withhold) without breaking safety:
    /// `f` with `n >= 3f + 1`. Three acceptors tolerate crashes only; four tolerate one liar.
    pub fn byzantine_tolerated(&self) -> usize {
        (self.0.len() - 1) / 3
    }

    /// How many distinct members make a quorum: the smallest size at which any two quorums
    /// share `f + 1` members, so at least one honest member sits in both (`2q >= n + f + 1`).
    /// With `f = 0` that is a plain majority.
    pub fn quorum_size(&self) -> usize {
        let n = self.0.len();
        let size = (n + self.byzantine_tolerated() + 2) / 2;
        debug_assert!(2 * size > n + self.byzantine_tolerated() && size + self.byzantine_tolerated() <= n);
        size
    }

    /// How many distinct members must report the same chosen value before a learner believes
    /// it: `f + 1`, so at least one of them is honest.
    pub fn vouches_needed(&self) -> usize {
        self.byzantine_tolerated() + 1
    }

    /// Whether `voters` include a quorum of this set's members. Non-members and repeats do
    /// not count: a value is chosen by a quorum of *distinct* acceptors.
    pub fn is_quorum<'a>(&self, voters: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let distinct: std::collections::BTreeSet<&NodeId> = voters.into_iter().filter(|v| self.contains(**v)).collect();
        distinct.len() >= self.quorum_size()
    }
}

/// What a group starts from. Its hash is the group's id, so nobody can swap it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGenesis {
    /// Makes two groups with the same members distinct.
    pub nonce: u64,
    /// The acceptor set in force for slot 0.
    pub acceptors: AcceptorSet,
    /// Devices allowed to propose. For an MLS group, the founder alone: membership after
    /// genesis is the MLS group's.
    pub proposers: Vec<NodeId>,
    /// For an MLS group: the founder's signed epoch-0 GroupInfo with the ratchet tree. Acceptors
    /// follow the group from it; `None` for a group of opaque values.
    pub group_info: Option<Vec<u8>>,
}

impl GroupGenesis {
    /// The group id this genesis names.
    pub fn group_id(&self) -> GroupId {
        let bytes = postcard::to_allocvec(self).expect("invariant: genesis always encodes");
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"plait group genesis v1");
        hasher.update(&bytes);
        let mut id = [0u8; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        GroupId(id)
    }

    /// Whether this is an MLS group.
    pub fn is_mls(&self) -> bool {
        self.group_info.is_some()
    }

    /// Whether `node` may propose in this group of opaque values (MLS groups ask the MLS state).
    pub fn allows_proposer(&self, node: NodeId) -> bool {
        self.proposers.binary_search(&node).is_ok()
    }

    /// Checks shape and limits of a genesis that arrived from the wire.
    pub fn is_well_formed(&self, acceptors_max: usize, proposers_max: usize) -> bool {
        self.acceptors.is_well_formed(acceptors_max)
            && !self.proposers.is_empty()
            && self.proposers.len() <= proposers_max
            && self.proposers.windows(2).all(|w| w[0] < w[1])
    }
}

/// The acceptor set in force at each slot, derived from the genesis and the chosen log.
///
/// Architecture Invariant: membership is a function of the log. Every node that has learned the
/// same prefix of slots computes the same acceptor set for the next slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptorHistory {
    /// `(first slot it applies to, set)`, in slot order; the first entry is the genesis set.
    changes: Vec<(Slot, AcceptorSet)>,
}

impl AcceptorHistory {
    /// The history of a group that has chosen nothing yet.
    pub fn new(genesis: &GroupGenesis) -> AcceptorHistory {
        AcceptorHistory { changes: vec![(Slot(0), genesis.acceptors.clone())] }
    }

    /// The history of an MLS member that has applied nothing of the log yet, whose settings name
    /// `set` (it joined from a Welcome when `set` was in force): `set` orders every slot, from
    /// the first. The member reads the log from slot 0, and the genesis acceptors may be long
    /// gone (replaced, their disks wiped): it could never read slot 0 from them. What it reads
    /// before its own epoch it cannot apply anyway (commits of epochs before its Welcome), and
    /// from its epoch on `set` is the set in force, so it trusts no one the log did not. The
    /// genesis set stays in the history (`ever_contained`).
    pub fn for_joiner(genesis: &GroupGenesis, set: Option<&AcceptorSet>) -> AcceptorHistory {
        let mut history = AcceptorHistory::new(genesis);
        if let Some(set) = set.filter(|set| **set != genesis.acceptors) {
            history.changes.push((Slot(0), set.clone()));
        }
        history
    }

    /// Records that `entry` was chosen at `slot`. Must be called in slot order.
    pub fn record(&mut self, slot: Slot, entry: &Entry) {
        let last = self.changes.last().expect("invariant: history starts with the genesis set").0;
        assert!(slot >= last, "acceptor history recorded out of order: {slot:?} < {last:?}");
        if let Entry::SetAcceptors(set) = entry {
            self.changes.push((slot.next(), set.clone()));
        }
    }

    /// Records that the MLS commit chosen at `slot` leaves `set` named in the group's settings:
    /// if it differs from the set in force, it orders every slot after `slot`.
    pub fn record_settings(&mut self, slot: Slot, set: Option<&AcceptorSet>) {
        if let Some(set) = set.filter(|set| *set != self.latest()) {
            self.record(slot, &Entry::SetAcceptors(set.clone()));
        }
    }

    /// The set in force for `slot` (given that everything before it has been recorded).
    pub fn at(&self, slot: Slot) -> &AcceptorSet {
        let index = self.changes.partition_point(|(from, _)| *from <= slot);
        &self.changes[index.saturating_sub(1)].1
    }

    /// The set in force after everything recorded so far.
    pub fn latest(&self) -> &AcceptorSet {
        &self.changes.last().expect("invariant: history starts with the genesis set").1
    }

    /// The sets in force so far, the latest first.
    pub fn latest_first(&self) -> impl Iterator<Item = &AcceptorSet> {
        self.changes.iter().rev().map(|(_, set)| set)
    }

    /// Whether `node` was an acceptor at any slot recorded so far.
    pub fn ever_contained(&self, node: NodeId) -> bool {
        self.changes.iter().any(|(_, set)| set.contains(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> AcceptorSet {
        AcceptorSet::new(ids.iter().map(|i| NodeId::from_index(*i)).collect(), 16).expect("non-empty")
    }

    #[test]
    fn a_joiners_history_takes_its_settings_set_from_the_first_slot_and_remembers_the_genesis_set() {
        let genesis =
            GroupGenesis { nonce: 0, acceptors: set(&[1, 2, 3]), proposers: vec![NodeId::from_index(9)], group_info: None };
        let history = AcceptorHistory::for_joiner(&genesis, Some(&set(&[4, 5, 6])));
        assert_eq!(history.at(Slot(0)), &set(&[4, 5, 6]));
        assert!(history.ever_contained(NodeId::from_index(1)));
        let unchanged = AcceptorHistory::for_joiner(&genesis, None);
        assert_eq!(unchanged, AcceptorHistory::new(&genesis));
        assert_eq!(AcceptorHistory::for_joiner(&genesis, Some(&set(&[1, 2, 3]))), AcceptorHistory::new(&genesis));
    }

    #[test]
    fn history_applies_a_change_from_the_next_slot() {
        let genesis =
            GroupGenesis { nonce: 1, acceptors: set(&[1, 2, 3]), proposers: vec![NodeId::from_index(9)], group_info: None };
        let mut history = AcceptorHistory::new(&genesis);
        history.record(Slot(0), &Entry::Noop);
        history.record(Slot(1), &Entry::SetAcceptors(set(&[2, 3, 4])));
        assert_eq!(history.at(Slot(1)), &set(&[1, 2, 3]));
        assert_eq!(history.at(Slot(2)), &set(&[2, 3, 4]));
        assert_eq!(history.latest(), &set(&[2, 3, 4]));
        assert!(history.ever_contained(NodeId::from_index(1)));
        let sets: Vec<&AcceptorSet> = history.latest_first().collect();
        assert_eq!(sets, [&set(&[2, 3, 4]), &set(&[1, 2, 3])]);
    }

    #[test]
    fn genesis_names_its_group() {
        let a = GroupGenesis { nonce: 1, acceptors: set(&[1, 2, 3]), proposers: vec![NodeId::from_index(9)], group_info: None };
        let mut b = a.clone();
        b.nonce = 2;
        assert_ne!(a.group_id(), b.group_id());
        assert_eq!(a.group_id(), a.clone().group_id());
    }
}
