//! Invariants, checked after every event against ghost state the nodes cannot see.
//!
//! The ghost records every durable accept as a vote (votes are sticky: an acceptor that later
//! accepts something else or loses its disk still voted). A value is *chosen* for a slot when a
//! majority of distinct acceptors of the set in force for that slot voted for the same ballot
//! and value. Everything else is checked against that.

use std::collections::{BTreeMap, BTreeSet};

use plait_kernel::log::AcceptorHistory;
use plait_kernel::mls::PublicView;
use plait_kernel::storage::Record;
use plait_kernel::wire::{Envelope, Message, decode};
use plait_kernel::{Ballot, Entry, GroupGenesis, GroupId, Incarnation, NodeId, Restored, Slot, Time, ValueHash, WriteBatch};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Short name of the invariant (printed as `invariant=NAME`).
    pub invariant: &'static str,
    /// What exactly happened.
    pub detail: String,
    /// When.
    pub at: Time,
}

/// One group's ghost.
#[derive(Debug)]
struct GhostGroup {
    history: AcceptorHistory,
    mls: bool,
    votes: BTreeMap<Slot, BTreeMap<(Ballot, ValueHash), BTreeSet<NodeId>>>,
    values: BTreeMap<ValueHash, Entry>,
    /// Chosen values of slots `0..frontier`, contiguous.
    chosen: Vec<ValueHash>,
    /// Each `(ballot, slot)` carries one value.
    bindings: BTreeMap<(Ballot, Slot), ValueHash>,
    /// For an MLS group: the public view after the chosen prefix, whose settings may hand the
    /// log to another acceptor set.
    view: Option<Box<PublicView>>,
}

impl GhostGroup {
    fn frontier(&self) -> Slot {
        Slot(self.chosen.len() as u64)
    }

    fn chosen_at(&self, slot: Slot) -> Option<ValueHash> {
        self.chosen.get(slot.0 as usize).copied()
    }

    /// The value chosen at `slot`, judged by the set in force there: honest votes (Byzantine
    /// acceptors' are never recorded) at one ballot from a quorum less the `f` members that may
    /// lie. That is what a proposer's quorum of acknowledgements guarantees at the least; with
    /// `f = 0` it is a plain quorum.
    fn quorum_value(&self, slot: Slot) -> Vec<ValueHash> {
        let set = self.history.at(slot);
        let needed = set.quorum_size() - set.byzantine_tolerated();
        let Some(votes) = self.votes.get(&slot) else { return Vec::new() };
        let mut winners: Vec<ValueHash> = votes
            .iter()
            .filter(|(_, voters)| voters.iter().filter(|v| set.contains(**v)).count() >= needed)
            .map(|((_, hash), _)| *hash)
            .collect();
        winners.sort_unstable();
        winners.dedup();
        winners
    }
}

/// All invariants and their ghost state.
#[derive(Debug, Default)]
pub struct Checker {
    groups: BTreeMap<GroupId, GhostGroup>,
    /// Highest prepare ballot each device has sent per group, across all its boots, and whether
    /// the device rebooted since (a rebooted device must never send that ballot again).
    prepared: BTreeMap<(NodeId, GroupId), (Ballot, bool)>,
    /// Highest promise each acceptor incarnation has shown the world per group.
    shown_promises: BTreeMap<(NodeId, GroupId, Incarnation), Ballot>,
    violation: Option<Violation>,
    /// Events checked.
    pub checks: u64,
    /// The authenticator hash of each MLS epoch, as first reported.
    epochs: BTreeMap<(GroupId, u64), [u8; 32]>,
    /// The last epoch each device reported per group.
    device_epochs: BTreeMap<(NodeId, GroupId), u64>,
    /// The members of each MLS epoch, as first reported.
    members: BTreeMap<(GroupId, u64), Vec<NodeId>>,
    /// Byzantine acceptors: their votes are not votes, and their words are not checked.
    pub byzantine: std::collections::BTreeSet<NodeId>,
    /// Document messages: durable copies at acceptors, and which are safe.
    pub documents: crate::documents::DocumentGhost,
}

impl Checker {
    /// The first broken invariant, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Records a broken invariant (the first one wins).
    pub fn fail(&mut self, at: Time, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, detail, at });
        }
    }

    /// Registers a group so votes can be judged against its acceptor sets.
    pub fn know_group(&mut self, genesis: &GroupGenesis) {
        self.groups.entry(genesis.group_id()).or_insert_with(|| GhostGroup {
            history: AcceptorHistory::new(genesis),
            mls: genesis.is_mls(),
            votes: BTreeMap::new(),
            values: BTreeMap::new(),
            chosen: Vec::new(),
            bindings: BTreeMap::new(),
            view: genesis.group_info.as_ref().and_then(|info| PublicView::from_group_info(info).ok()).map(Box::new),
        });
    }

    /// The ghost's chosen frontier of a group: every slot below it has a chosen value.
    pub fn frontier(&self, group: GroupId) -> Slot {
        self.groups.get(&group).map_or(Slot(0), GhostGroup::frontier)
    }

    /// Every group the checker knows.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Whether the group is an MLS group.
    pub fn is_mls(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|g| g.mls)
    }

    /// The acceptor set in force at the ghost's frontier.
    pub fn acceptors(&self, group: GroupId) -> Option<&plait_kernel::AcceptorSet> {
        self.groups.get(&group).map(|g| g.history.latest())
    }

    /// Every acceptor set a group has had, by the chosen log so far, the latest first.
    pub fn acceptor_sets(&self, group: GroupId) -> impl Iterator<Item = &plait_kernel::AcceptorSet> {
        self.groups.get(&group).into_iter().flat_map(|g| g.history.latest_first())
    }

    /// Chosen values of a group, in slot order.
    pub fn chosen(&self, group: GroupId) -> Vec<Entry> {
        let Some(ghost) = self.groups.get(&group) else { return Vec::new() };
        ghost.chosen.iter().map(|hash| ghost.values[hash].clone()).collect()
    }

    /// An acceptor's batch is about to become durable (`write_quorum`: the cluster's rule).
    pub fn on_acceptor_persist(
        &mut self,
        at: Time,
        acceptor: NodeId,
        batch: &WriteBatch,
        write_quorum: plait_kernel::WriteQuorum,
    ) {
        if self.byzantine.contains(&acceptor) {
            return;
        }
        for record in &batch.records {
            match record {
                Record::Accepted { group, slot, ballot, value_hash, entry, .. } => {
                    let Some(ghost) = self.groups.get_mut(group) else { continue };
                    ghost.values.entry(*value_hash).or_insert_with(|| entry.clone());
                    ghost.votes.entry(*slot).or_default().entry((*ballot, *value_hash)).or_default().insert(acceptor);
                    self.settle(at, *group, *slot);
                }
                Record::Chosen { group, slot, entry } => self.check_learned(at, acceptor, *group, *slot, &entry.hash()),
                Record::Stored { group, message, .. } => self.documents.on_stored(acceptor, *group, message.id),
                Record::SnapshotChunk { group, hash, index, count, .. } => {
                    self.documents.on_snapshot_chunk(acceptor, *group, *hash, *index, *count);
                }
                Record::SnapshotDropped { group, hash } => self.documents.on_snapshot_dropped(acceptor, *group, *hash),
                Record::Compacted { group, compaction, .. } => {
                    self.documents.on_compacted(*group, compaction.hash, &compaction.covered);
                }
                Record::Unstored { group, deleted } => {
                    let ids: Vec<_> = deleted.iter().map(|(_, id)| *id).collect();
                    let set = self.groups.get(group).map(|g| g.history.latest().clone());
                    if let Some(set) = set.filter(|set| !set.contains(acceptor)) {
                        // Out of the set: it deletes what the set copied from it.
                        let needed = write_quorum.of(set.members().len());
                        let liars = set.members().iter().filter(|a| self.byzantine.contains(a)).count();
                        if let Err((lost, held)) =
                            self.documents.on_handed_over(acceptor, *group, &ids, &set, needed.saturating_sub(liars))
                        {
                            let detail = format!(
                                "{acceptor}, out of the set, deleted safe message {lost:?} of {group:?} while {held} acceptor(s) of {set:?} could recover it"
                            );
                            self.fail(at, "an-acceptor-out-of-the-set-deletes-only-what-a-write-quorum-of-it-holds", detail);
                        }
                    } else if let Err(lost) = self.documents.on_unstored(acceptor, *group, &ids) {
                        let detail = format!(
                            "{acceptor} deleted safe message {lost:?} of {group:?} without holding a snapshot that covers it"
                        );
                        self.fail(at, "compaction-never-removes-the-last-way-to-recover-a-safe-update", detail);
                    }
                }
                _ => {}
            }
        }
    }

    /// Re-evaluates what is chosen after a vote at `slot`.
    fn settle(&mut self, at: Time, group: GroupId, slot: Slot) {
        let Some(ghost) = self.groups.get_mut(&group) else { return };
        if slot < ghost.frontier() {
            let winners = ghost.quorum_value(slot);
            let chosen = ghost.chosen_at(slot).expect("below the frontier");
            if let Some(other) = winners.iter().find(|w| **w != chosen) {
                let detail = format!("{group:?} slot {} chose {chosen:?} and later {other:?}", slot.0);
                return self.fail(at, "one-value-per-slot", detail);
            }
            return;
        }
        // Advance the frontier while the next slot has a winner; later slots wait for it.
        loop {
            let next = ghost.frontier();
            let winners = ghost.quorum_value(next);
            match winners.as_slice() {
                [] => return,
                [winner] => {
                    let entry = ghost.values[winner].clone();
                    ghost.history.record(next, &entry);
                    if let (Some(view), Entry::Value(commit)) = (ghost.view.as_mut(), &entry)
                        && view.apply_commit(commit).is_ok()
                    {
                        ghost.history.record_settings(next, view.settings().ok().and_then(|s| s.acceptors).as_ref());
                    }
                    ghost.chosen.push(*winner);
                }
                [first, second, ..] => {
                    let detail = format!("{group:?} slot {} has quorums for {first:?} and {second:?}", next.0);
                    return self.fail(at, "one-value-per-slot", detail);
                }
            }
        }
    }

    fn check_learned(&mut self, at: Time, node: NodeId, group: GroupId, slot: Slot, hash: &ValueHash) {
        let Some(ghost) = self.groups.get(&group) else { return };
        match ghost.chosen_at(slot) {
            Some(chosen) if chosen == *hash => {}
            Some(chosen) => {
                let detail = format!("{node} learned {hash:?} at {group:?} slot {} but {chosen:?} was chosen", slot.0);
                self.fail(at, "learners-agree-with-chosen", detail);
            }
            None => {
                let detail = format!("{node} learned {hash:?} at {group:?} slot {} before any value was chosen", slot.0);
                self.fail(at, "learn-only-chosen-values", detail);
            }
        }
    }

    /// A device's MLS group moved to `epoch`: every member that reaches an epoch must agree on
    /// its authenticator (no forks), and a device never goes back to an earlier epoch.
    pub fn on_epoch(&mut self, at: Time, device: NodeId, group: GroupId, epoch: u64, hash: &[u8; 32], members: &[NodeId]) {
        let first = *self.epochs.entry((group, epoch)).or_insert(*hash);
        if first != *hash {
            return self.fail(at, "members-agree-on-every-epoch", format!("{device} forked from the group at epoch {epoch}"));
        }
        let known = self.members.entry((group, epoch)).or_insert_with(|| members.to_vec());
        if known != members {
            let detail = format!("{device} saw members {members:?} at epoch {epoch}, another member saw {known:?}");
            return self.fail(at, "membership-is-a-function-of-the-log", detail);
        }
        let last = *self.device_epochs.entry((device, group)).or_insert(epoch);
        if epoch < last {
            return self.fail(at, "epochs-never-go-backwards", format!("{device} went from epoch {last} to {epoch}"));
        }
        self.device_epochs.insert((device, group), epoch);
    }

    /// The members of an MLS epoch, once any member reported reaching it.
    pub fn members_at(&self, group: GroupId, epoch: u64) -> Option<&[NodeId]> {
        self.members.get(&(group, epoch)).map(Vec::as_slice)
    }

    /// A device decrypted application data from `epoch`: it and the sender must be members of
    /// that epoch (a removed member cannot read later epochs, nor write to them).
    pub fn on_message(&mut self, at: Time, device: NodeId, group: GroupId, epoch: u64, sender: NodeId) {
        let Some(members) = self.members.get(&(group, epoch)) else { return };
        if !members.contains(&device) {
            let detail = format!("{device} decrypted a message of epoch {epoch}, of which it is not a member");
            return self.fail(at, "a-removed-member-cannot-decrypt-later-epochs", detail);
        }
        if !members.contains(&sender) {
            let detail = format!("{device} accepted a message of epoch {epoch} from {sender}, not a member of it");
            self.fail(at, "only-members-send-application-data", detail);
        }
    }

    /// An acceptor at `epoch` relayed application data from `sender`: only current members may
    /// send through acceptors.
    pub fn on_relay(&mut self, at: Time, acceptor: NodeId, group: GroupId, epoch: u64, sender: NodeId) {
        let Some(members) = self.members.get(&(group, epoch)) else { return };
        if !members.contains(&sender) {
            let detail = format!("{acceptor}, at epoch {epoch}, relayed application data from {sender}, not a member of it");
            self.fail(at, "acceptors-relay-only-current-members", detail);
        }
    }

    /// A device applied a chosen entry.
    pub fn on_applied(&mut self, at: Time, device: NodeId, group: GroupId, slot: Slot, hash: &ValueHash) {
        self.check_learned(at, device, group, slot, hash);
    }

    /// A node is about to send `frame`; `durable` is its disk as of now.
    pub fn on_send(&mut self, at: Time, sender: NodeId, frame: &[u8], durable: &Restored) {
        debug_assert!(!self.byzantine.contains(&sender), "the cluster does not check what liars send");
        use plait_kernel::wire::{kind, peek};
        // Only these four kinds carry promises, accepts or ballots; skip decoding the rest.
        let inspected = [kind::PREPARE, kind::PROMISE, kind::ACCEPT, kind::ACCEPTED];
        if peek(frame).is_some_and(|(_, kind)| !inspected.contains(&kind)) {
            return;
        }
        let Ok(Envelope { group, message }) = decode(frame, usize::MAX) else {
            return self.fail(at, "nodes-send-well-formed-frames", format!("{sender} sent an undecodable frame"));
        };
        let state = durable.groups.get(&group);
        match message {
            Message::Promise { ballot, incarnation, .. } => {
                if state.is_none_or(|s| s.promised < ballot) {
                    let detail = format!("{sender} promised {ballot:?} in {group:?} before the promise was durable");
                    return self.fail(at, "no-send-before-its-persist", detail);
                }
                self.show_promise(sender, group, incarnation, ballot, state);
            }
            Message::Accepted { ballot, slot, value_hash } => {
                let durable_accept =
                    state.and_then(|s| s.accepted.get(&slot)).is_some_and(|a| a.ballot == ballot && a.value_hash == value_hash);
                let durable_chosen = state.is_some_and(|s| s.chosen.contains_key(&slot));
                if !durable_accept && !durable_chosen {
                    let detail =
                        format!("{sender} acknowledged {ballot:?} at {group:?} slot {} before the accept was durable", slot.0);
                    return self.fail(at, "no-send-before-its-persist", detail);
                }
                if let Some(incarnation) = state.and_then(|s| s.incarnation) {
                    self.show_promise(sender, group, incarnation, ballot, state);
                }
            }
            Message::Prepare { ballot, .. } => self.check_prepare(at, sender, group, ballot, state.map_or(0, |s| s.round_floor)),
            Message::Accept { ballot, slot, value_hash, .. } => {
                let Some(ghost) = self.groups.get_mut(&group) else { return };
                let bound = *ghost.bindings.entry((ballot, slot)).or_insert(value_hash);
                if bound != value_hash {
                    let detail = format!("{ballot:?} carried {bound:?} and {value_hash:?} at {group:?} slot {}", slot.0);
                    self.fail(at, "ballots-unique", detail);
                }
            }
            _ => {}
        }
    }

    fn show_promise(
        &mut self,
        acceptor: NodeId,
        group: GroupId,
        incarnation: Incarnation,
        ballot: Ballot,
        _state: Option<&plait_kernel::storage::RestoredGroup>,
    ) {
        let shown = self.shown_promises.entry((acceptor, group, incarnation)).or_default();
        *shown = (*shown).max(ballot);
    }

    fn check_prepare(&mut self, at: Time, device: NodeId, group: GroupId, ballot: Ballot, round_floor: u64) {
        if ballot.round > round_floor {
            let detail = format!("{device} prepared round {} in {group:?} with only {round_floor} durable", ballot.round);
            return self.fail(at, "no-send-before-its-persist", detail);
        }
        let (previous, rebooted) = self.prepared.entry((device, group)).or_default();
        // One prepare goes to every acceptor, so a boot may repeat its ballot; a new boot may not.
        let reused = if *rebooted { ballot <= *previous } else { ballot < *previous };
        if reused {
            let detail = format!("{device} prepared {ballot:?} in {group:?} after {previous:?}");
            return self.fail(at, "ballots-unique", detail);
        }
        *previous = ballot;
        *rebooted = false;
    }

    /// A device restarted: its next ballot must be new.
    pub fn on_device_restart(&mut self, device: NodeId) {
        for ((node, _), (_, rebooted)) in self.prepared.iter_mut() {
            if *node == device {
                *rebooted = true;
            }
        }
    }

    /// An acceptor restarted: its promises must not have gone backwards.
    pub fn on_acceptor_restart(&mut self, at: Time, acceptor: &plait_kernel::Acceptor) {
        for view in acceptor.groups() {
            let key = (acceptor.id(), view.id(), view.incarnation());
            if let Some(shown) = self.shown_promises.get(&key)
                && view.promised() < *shown
            {
                let detail =
                    format!("{} promised {shown:?} in {:?} and restarted at {:?}", acceptor.id(), view.id(), view.promised());
                self.fail(at, "promises-never-decrease", detail);
            }
        }
    }

    /// Per-event structural checks of an acceptor's state.
    pub fn check_acceptor(&mut self, at: Time, acceptor: &plait_kernel::Acceptor) {
        self.checks += 1;
        for view in acceptor.groups() {
            if let Some((slot, ballot)) = view.accepted().find(|(_, ballot)| *ballot > view.promised()) {
                let detail =
                    format!("{} accepted {ballot:?} at slot {} above its promise {:?}", acceptor.id(), slot.0, view.promised());
                return self.fail(at, "accepted-at-most-promised", detail);
            }
        }
    }

    /// Per-event structural checks of a device's state.
    pub fn check_device(&mut self, at: Time, device: &plait_kernel::Device) {
        self.checks += 1;
        for view in device.groups() {
            let frontier = self.frontier(view.id());
            if view.next_slot() > frontier {
                let detail =
                    format!("{} applied up to slot {} but only {} are chosen", device.id(), view.next_slot().0, frontier.0);
                return self.fail(at, "learn-only-chosen-values", detail);
            }
        }
    }
}
