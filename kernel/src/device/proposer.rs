//! A device's Paxos proposer state for one group.
//!
//! ```text
//!   Idle --work--> Preparing --quorum of promises--> Leading --rejected/timeout--> Backoff --> Idle
//!   Preparing --rejected/timeout--> Backoff
//!   Leading --acceptor set changed--> Idle
//! ```
//!
//! A `Leading` proposer skips phase 1 for every later slot: one round trip per commit while
//! nobody prepares a higher ballot.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Ballot, Incarnation, NodeId, Slot, ValueHash};
use crate::log::{AcceptorSet, Entry};
use crate::storage::AcceptedValue;
use crate::time::Time;

/// Where the proposer is.
#[derive(Debug)]
pub(crate) enum Proposer {
    /// No ballot in use.
    Idle,
    /// Waiting before trying a new ballot.
    Backoff { until: Time },
    /// Phase 1 in progress.
    Preparing(Preparing),
    /// Phase 1 done for every slot from `from_slot` on.
    Leading(Leading),
}

/// Phase 1 in progress.
#[derive(Debug)]
pub(crate) struct Preparing {
    pub(crate) ballot: Ballot,
    pub(crate) from_slot: Slot,
    pub(crate) acceptors: AcceptorSet,
    pub(crate) promises: BTreeMap<NodeId, (Incarnation, Vec<(Slot, AcceptedValue)>)>,
    pub(crate) deadline: Time,
}

/// Proof that a quorum of distinct acceptors promised a ballot. Only [`Preparing::tally`] makes it.
#[derive(Debug)]
pub(crate) struct QuorumPromised {
    pub(crate) ballot: Ballot,
    pub(crate) acceptors: AcceptorSet,
    pub(crate) promised_by: Vec<(NodeId, Incarnation)>,
    /// For each slot, the accepted value with the highest ballot among the promises.
    pub(crate) adopted: BTreeMap<Slot, AcceptedValue>,
}

impl Preparing {
    /// Counts the promises; a proof once they are a quorum of the acceptor set.
    pub(crate) fn tally(&self, quorum_too_small: bool) -> Option<QuorumPromised> {
        let needed = self.acceptors.quorum_size() - usize::from(quorum_too_small && self.acceptors.quorum_size() > 1);
        let voters = self.promises.keys().filter(|a| self.acceptors.contains(**a)).count();
        if voters < needed {
            return None;
        }
        let mut adopted: BTreeMap<Slot, AcceptedValue> = BTreeMap::new();
        for (slot, value) in self.promises.values().flat_map(|(_, accepted)| accepted) {
            if *slot < self.from_slot {
                continue;
            }
            if adopted.get(slot).is_none_or(|current| value.ballot > current.ballot) {
                adopted.insert(*slot, value.clone());
            }
        }
        let promised_by = self.promises.iter().map(|(node, (incarnation, _))| (*node, *incarnation)).collect();
        Some(QuorumPromised { ballot: self.ballot, acceptors: self.acceptors.clone(), promised_by, adopted })
    }
}

/// Phase 1 done; proposing one slot at a time.
#[derive(Debug)]
pub(crate) struct Leading {
    pub(crate) ballot: Ballot,
    /// The set the promise quorum was counted in; a different set needs a new phase 1.
    pub(crate) acceptors: AcceptorSet,
    pub(crate) promised_by: Vec<(NodeId, Incarnation)>,
    /// Values that promises reported accepted; they must be proposed before anything else.
    pub(crate) adopted: BTreeMap<Slot, AcceptedValue>,
    pub(crate) in_flight: Option<InFlight>,
}

impl Leading {
    pub(crate) fn from_quorum(quorum: QuorumPromised) -> Leading {
        Leading {
            ballot: quorum.ballot,
            acceptors: quorum.acceptors,
            promised_by: quorum.promised_by,
            adopted: quorum.adopted,
            in_flight: None,
        }
    }
}

/// The one slot a leader has out for acceptance.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) slot: Slot,
    pub(crate) entry: Entry,
    pub(crate) value_hash: ValueHash,
    /// Our signature on the accept (MLS groups), kept for retransmissions.
    pub(crate) proof: Vec<u8>,
    /// Whether the value is this device's own proposal (the head of its queue) or adopted.
    pub(crate) own: bool,
    pub(crate) accepted_by: BTreeSet<NodeId>,
    /// Acceptors that refused the value as invalid.
    pub(crate) refused_by: BTreeSet<NodeId>,
    pub(crate) deadline: Time,
    pub(crate) retransmits: u32,
}

impl InFlight {
    /// Whether the accepts are a quorum of `acceptors`.
    pub(crate) fn is_chosen(&self, acceptors: &AcceptorSet, quorum_too_small: bool) -> bool {
        let needed = acceptors.quorum_size() - usize::from(quorum_too_small && acceptors.quorum_size() > 1);
        self.accepted_by.iter().filter(|a| acceptors.contains(**a)).count() >= needed
    }
}

impl Proposer {
    /// The deadline this state needs a timer for.
    pub(crate) fn deadline(&self) -> Option<Time> {
        match self {
            Proposer::Idle => None,
            Proposer::Backoff { until } => Some(*until),
            Proposer::Preparing(preparing) => Some(preparing.deadline),
            Proposer::Leading(leading) => leading.in_flight.as_ref().map(|f| f.deadline),
        }
    }

    /// The ballot in use, if any.
    pub(crate) fn ballot(&self) -> Option<Ballot> {
        match self {
            Proposer::Preparing(preparing) => Some(preparing.ballot),
            Proposer::Leading(leading) => Some(leading.ballot),
            Proposer::Idle | Proposer::Backoff { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u64) -> AcceptorSet {
        AcceptorSet::new((1..=n).map(NodeId::from_index).collect(), 16).expect("non-empty")
    }

    fn value(round: u64, byte: u8) -> AcceptedValue {
        let entry = Entry::Value(vec![byte]);
        AcceptedValue {
            ballot: Ballot { round, proposer: NodeId::from_index(90) },
            value_hash: entry.hash(),
            entry,
            proof: vec![],
        }
    }

    #[test]
    fn tally_needs_a_majority_of_members_and_adopts_the_highest_ballot() {
        let mut preparing = Preparing {
            ballot: Ballot { round: 5, proposer: NodeId::from_index(9) },
            from_slot: Slot(3),
            acceptors: set(3),
            promises: BTreeMap::new(),
            deadline: Time(0),
        };
        preparing.promises.insert(NodeId::from_index(1), (Incarnation(1), vec![(Slot(3), value(2, 1))]));
        preparing.promises.insert(NodeId::from_index(77), (Incarnation(1), vec![]));
        assert!(preparing.tally(false).is_none(), "a non-member's promise does not count");
        preparing.promises.insert(NodeId::from_index(2), (Incarnation(1), vec![(Slot(3), value(4, 2)), (Slot(1), value(9, 3))]));
        let quorum = preparing.tally(false).expect("two of three");
        assert_eq!(quorum.adopted.len(), 1, "slots before from_slot are ignored");
        assert_eq!(quorum.adopted[&Slot(3)].entry, Entry::Value(vec![2]));
    }
}
