//! What a device keeps of a group it was removed from when an admin invites it back
//! (ARCHITECTURE.md, *Joining again*).

use crate::device::group::DeviceGroup;
use crate::ids::{GroupId, NodeId};
use crate::storage::Record;

/// What a device keeps of a group it was removed from when it joins the group again (the
/// rest goes: `Record::GroupForgotten`). Ballots are `(round, device)`, so a round used again
/// could carry a second value at the same ballot; update ids are `(device, seq)`, and acceptors
/// and readers take an id they hold as a copy of what they have, so a number used again would
/// be dropped as a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Carried {
    /// The highest round reserved.
    pub(crate) round_floor: u64,
    /// Own sequence numbers below this were given out.
    pub(crate) own_seq_below: u64,
}

impl DeviceGroup {
    /// What a device that forgets this group to join it again must keep (see
    /// [`Carried`]): the rounds it reserved and its own sequence numbers given out.
    pub(crate) fn carried(&self, me: NodeId) -> Carried {
        let own_seq_below = self.replica.as_ref().map_or(0, |replica| replica.outbox.next_seq.max(replica.applied.next_of(me)));
        Carried { round_floor: self.round_floor, own_seq_below }
    }

    /// Takes on what the group this device forgot had given out, so that none of its ballots or
    /// update ids is used again; returns the records that keep it so.
    pub(super) fn carry_over(&mut self, group: GroupId, carried: Carried) -> Vec<Record> {
        self.round_floor = self.round_floor.max(carried.round_floor);
        self.highest_round_seen = self.highest_round_seen.max(carried.round_floor);
        let mut records = vec![Record::RoundFloor { group, round: self.round_floor }];
        if let Some(replica) = self.replica.as_mut() {
            let outbox = &mut replica.outbox;
            assert!(outbox.open.is_none() && outbox.unsafe_len() == 0, "invariant: carried over before any edit");
            outbox.next_seq = outbox.next_seq.max(carried.own_seq_below);
            outbox.safe_below = outbox.safe_below.max(carried.own_seq_below);
            records.push(Record::SafeBelow { group, seq: outbox.safe_below });
        }
        records
    }
}
