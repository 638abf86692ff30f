//! The acceptor node: hosts many groups, each with its own Paxos acceptor state.

mod group;
mod mailbox;
mod recovery;
mod snapshots;
mod store;
mod subscribers;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::ValidConfig;
use crate::context::{Context, Room};
use crate::deadlines::Deadlines;
use crate::ids::{Ballot, GroupId, NodeId, Slot};
use crate::io::{Counters, Effect, Effects, Input, Node, Outputs, Rejection};
use crate::rng::NodeRng;
use crate::storage::{LoadId, LoadResult, Restored};
use crate::time::Time;
use crate::wire::{DecodeError, Envelope, Message, decode};

pub(crate) use group::AcceptorGroup;
use group::{LoadWanted, Phase};
pub(crate) use store::positions_follow;

/// A Paxos acceptor for many groups. It stores and orders; it never proposes.
#[derive(Debug)]
pub struct Acceptor {
    me: NodeId,
    config: ValidConfig,
    rng: NodeRng,
    groups: BTreeMap<GroupId, AcceptorGroup>,
    mailboxes: mailbox::Mailboxes,
    loads: BTreeMap<LoadId, (GroupId, NodeId)>,
    next_load: u64,
    counters: Counters,
    /// Groups holding acknowledgements and pushes for the next `Input::Flush` (at most every
    /// group).
    flush_wanted: BTreeSet<GroupId>,
    /// Each group's `wake_at`, recorded again after every input that touched the group.
    deadlines: Deadlines,
    /// What every group holds, added up: what the node-wide budgets are checked against.
    held: Held,
}

/// Bytes held in memory: document messages and snapshots (whole and being stored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Held {
    messages: u64,
    snapshots: u64,
}

impl Held {
    fn of(group: &AcceptorGroup) -> Held {
        Held { messages: group.store.bytes() as u64, snapshots: group.snapshots.bytes() as u64 }
    }

    /// What the node may still take in.
    fn room(self, config: &ValidConfig) -> Room {
        Room {
            messages: config.node_store_bytes_max.saturating_sub(self.messages),
            snapshots: config.node_snapshot_bytes_max.saturating_sub(self.snapshots),
        }
    }

    /// A group went from holding `before` to holding `after`.
    fn replace(&mut self, before: Held, after: Held) {
        self.messages = self.messages - before.messages + after.messages;
        self.snapshots = self.snapshots - before.snapshots + after.snapshots;
    }
}

impl Acceptor {
    /// Builds an acceptor from its durable state. `seed` must differ between boots.
    pub fn new(config: ValidConfig, me: NodeId, seed: u64, restored: Restored) -> (Acceptor, Outputs) {
        let mut acceptor = Acceptor {
            me,
            config,
            rng: NodeRng::from_seed(seed),
            groups: BTreeMap::new(),
            mailboxes: mailbox::Mailboxes::restore(restored.groups.iter().map(|(id, state)| (*id, &state.mls))),
            loads: BTreeMap::new(),
            next_load: 0,
            counters: Counters::default(),
            flush_wanted: BTreeSet::new(),
            deadlines: Deadlines::default(),
            held: Held::default(),
        };
        let mut effects = Effects::default();
        for (group, state) in restored.groups {
            let mut cx =
                Context::new(Time::ZERO, me, group, &acceptor.config, &mut acceptor.rng, &mut acceptor.counters, &mut effects);
            let restored = AcceptorGroup::restore(&mut cx, state);
            acceptor.deadlines.set(group, restored.wake_at());
            acceptor.held.replace(Held::default(), Held::of(&restored));
            acceptor.groups.insert(group, restored);
        }
        let wake_at = acceptor.wake_at();
        (acceptor, Outputs { effects: effects.list, wake_at, wants_flush: false, rebuild_from_storage: false })
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Counts of rejected input.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Read-only views of the groups, for checkers and status pages.
    pub fn groups(&self) -> impl Iterator<Item = AcceptorGroupView<'_>> {
        self.groups.iter().map(|(id, group)| AcceptorGroupView { id: *id, group })
    }

    /// A read-only view of one group.
    pub fn group(&self, id: GroupId) -> Option<AcceptorGroupView<'_>> {
        self.groups.get(&id).map(|group| AcceptorGroupView { id, group })
    }

    fn wake_at(&self) -> Option<Time> {
        debug_assert!(
            self.groups.iter().all(|(id, group)| self.deadlines.of(*id) == Some(group.wake_at())),
            "invariant: every group's deadline is recorded after each input that touched it"
        );
        debug_assert_eq!(
            self.held,
            self.groups.values().fold(Held::default(), |mut total, group| {
                total.replace(Held::default(), Held::of(group));
                total
            }),
            "invariant: the held totals are updated after each input that could change them"
        );
        crate::time::earliest(self.deadlines.earliest(), self.mailboxes.wake_at())
    }

    /// Invite mailboxes open at this acceptor.
    pub fn mailboxes(&self) -> usize {
        self.mailboxes.len()
    }

    /// Totals over every group this acceptor hosts, for a metrics exporter.
    pub fn stats(&self) -> AcceptorStats {
        let stored_messages = self.groups.values().map(|group| group.store.len()).sum();
        AcceptorStats {
            groups: self.groups.len(),
            stored_messages,
            stored_bytes: self.held.messages,
            stored_bytes_max: self.config.node_store_bytes_max,
            snapshot_bytes: self.held.snapshots,
            snapshot_bytes_max: self.config.node_snapshot_bytes_max,
            mailboxes: self.mailboxes.len(),
        }
    }

    fn on_frame(&mut self, now: Time, from: NodeId, frame: &[u8], effects: &mut Effects) {
        let envelope = match decode(frame, self.config.message_bytes_max) {
            Ok(envelope) => envelope,
            Err(error) => return self.counters.count(rejection_of(&error)),
        };
        let Envelope { group, message } = envelope;
        if from == self.me {
            return self.counters.count(Rejection::Unauthorised);
        }
        if mailbox::is_mailbox_message(&message) {
            let mut node = mailbox::Node {
                now,
                me: self.me,
                config: &self.config,
                rng: &mut self.rng,
                counters: &mut self.counters,
                effects,
            };
            return self.mailboxes.on_message(&mut node, &self.groups, from, group, message);
        }
        if !self.groups.contains_key(&group) && !self.create_group(now, from, group, &message, effects) {
            return;
        }
        let me = self.me;
        let Some(state) = self.groups.get_mut(&group) else { return };
        let held_before = Held::of(state);
        let mut cx = Context::new(now, me, group, &self.config, &mut self.rng, &mut self.counters, effects)
            .with_room(self.held.room(&self.config));
        let wanted = state.on_message(&mut cx, from, message);
        state.quicken_peer_syncs_on_news(&cx);
        state.trim(self.config.chosen_in_memory_max);
        self.held.replace(held_before, Held::of(state));
        self.deadlines.set(group, state.wake_at());
        if state.store.holds_unsent() {
            self.flush_wanted.insert(group);
        }
        if let Some(wanted) = wanted {
            self.start_load(group, wanted, effects);
        }
    }

    /// Creates state for a group on the first message that carries its genesis.
    fn create_group(&mut self, now: Time, from: NodeId, group: GroupId, message: &Message, effects: &mut Effects) -> bool {
        let (genesis, hint) = match message {
            Message::Sync { genesis, acceptors, .. } => (genesis, Some(acceptors.clone())),
            Message::Recover { genesis, .. } => (genesis, None),
            Message::IncarnationQuery { .. } => {
                // We never recorded an incarnation of anyone in a group we do not host.
                let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
                cx.send(from, Message::IncarnationKnown { incarnation: None });
                return false;
            }
            _ => {
                self.counters.count(Rejection::UnknownGroup);
                let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
                cx.send(from, Message::UnknownGroup);
                return false;
            }
        };
        let well_formed = genesis.is_well_formed(self.config.acceptors_max, self.config.proposers_max)
            && genesis.group_id() == group
            && hint.as_ref().is_none_or(|h| h.is_well_formed(self.config.acceptors_max));
        let view = match &genesis.group_info {
            Some(info) => match crate::mls::PublicView::from_group_info(info) {
                Ok(view) => Some(view),
                Err(_) => {
                    self.counters.count(Rejection::Invalid);
                    return false;
                }
            },
            None => None,
        };
        if !well_formed {
            self.counters.count(Rejection::Invalid);
            return false;
        }
        if self.groups.len() >= self.config.groups_max {
            self.counters.count(Rejection::OverLimit);
            if hint.is_some() {
                // A device's `Sync`: tell it, so its user learns why the document is not hosted.
                cov_mark::hit!(acceptor_refuses_a_group_beyond_its_maximum);
                let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
                cx.send(from, Message::GroupRefused { reason: crate::wire::GroupRefusal::Full });
            }
            return false;
        }
        let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
        let state = AcceptorGroup::create(&mut cx, genesis.clone(), hint, view);
        self.deadlines.set(group, state.wake_at());
        self.groups.insert(group, state);
        true
    }

    fn start_load(&mut self, group: GroupId, wanted: LoadWanted, effects: &mut Effects) {
        if self.loads.len() >= self.config.loads_pending_max {
            return self.counters.count(Rejection::OverLimit);
        }
        let request = LoadId(self.next_load);
        self.next_load += 1;
        self.loads.insert(request, (group, wanted.to));
        effects.list.push(Effect::Load { request, query: wanted.query });
    }

    fn on_loaded(&mut self, now: Time, request: LoadId, result: LoadResult, effects: &mut Effects) {
        let Some((group, to)) = self.loads.remove(&request) else {
            return self.counters.count(Rejection::Invalid);
        };
        let Some(state) = self.groups.get(&group) else { return };
        let LoadResult::ChosenEntries(entries) = result;
        let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
        state.serve_loaded(&mut cx, to, entries);
    }

    /// Lets out the acknowledgements and pushes the groups held since the last flush.
    fn on_flush(&mut self, now: Time, effects: &mut Effects) {
        for group in std::mem::take(&mut self.flush_wanted) {
            let Some(state) = self.groups.get_mut(&group) else { continue };
            let mut cx = Context::new(now, self.me, group, &self.config, &mut self.rng, &mut self.counters, effects);
            state.send_held(&mut cx);
            self.deadlines.set(group, state.wake_at());
        }
    }

    fn on_timer(&mut self, now: Time, effects: &mut Effects) {
        let mut node =
            mailbox::Node { now, me: self.me, config: &self.config, rng: &mut self.rng, counters: &mut self.counters, effects };
        self.mailboxes.expire(&mut node);
        let me = self.me;
        for group in self.deadlines.due(now) {
            let Some(state) = self.groups.get_mut(&group) else { continue };
            let mut cx = Context::new(now, me, group, &self.config, &mut self.rng, &mut self.counters, effects);
            state.on_timer(&mut cx);
            self.deadlines.set(group, state.wake_at());
        }
    }
}

impl Node for Acceptor {
    fn handle(&mut self, now: Time, input: Input) -> Outputs {
        let mut effects = Effects::default();
        match input {
            Input::Received { from, frame } => self.on_frame(now, from, &frame, &mut effects),
            Input::Timer => self.on_timer(now, &mut effects),
            Input::Loaded { request, result } => self.on_loaded(now, request, result, &mut effects),
            Input::Command(_) => self.counters.count(Rejection::Invalid),
            Input::Flush => self.on_flush(now, &mut effects),
            // Peers are asked on their own pace; a hint changes nothing here.
            Input::LinkUp { .. } => {}
        }
        Outputs {
            effects: effects.list,
            wake_at: self.wake_at(),
            wants_flush: !self.flush_wanted.is_empty(),
            rebuild_from_storage: false,
        }
    }
}

/// Totals over an acceptor's groups (see [`Acceptor::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptorStats {
    /// Groups hosted.
    pub groups: usize,
    /// Document messages stored, over every group.
    pub stored_messages: usize,
    /// Their ciphertext bytes (what `group_store_bytes_max` bounds per group).
    pub stored_bytes: u64,
    /// What they may reach (`node_store_bytes_max`); posts beyond it are refused.
    pub stored_bytes_max: u64,
    /// Snapshot bytes held, whole and being stored, over every group.
    pub snapshot_bytes: u64,
    /// What they may reach (`node_snapshot_bytes_max`); chunks beyond it are refused.
    pub snapshot_bytes_max: u64,
    /// Invite mailboxes open.
    pub mailboxes: usize,
}

/// What a checker or status page may read about one group on an acceptor.
#[derive(Debug, Clone, Copy)]
pub struct AcceptorGroupView<'a> {
    id: GroupId,
    group: &'a AcceptorGroup,
}

impl AcceptorGroupView<'_> {
    /// The group.
    pub fn id(&self) -> GroupId {
        self.id
    }
    /// Highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.group.promised
    }
    /// Accepted ballots of slots not known chosen.
    pub fn accepted(&self) -> impl Iterator<Item = (Slot, Ballot)> + '_ {
        self.group.accepted.iter().map(|(s, v)| (*s, v.ballot))
    }
    /// First slot not known chosen.
    pub fn chosen_next(&self) -> Slot {
        self.group.chosen_next
    }
    /// Whether it votes yet.
    pub fn is_voting(&self) -> bool {
        matches!(self.group.phase, Phase::Voting)
    }
    /// Its incarnation for the group.
    pub fn incarnation(&self) -> crate::ids::Incarnation {
        self.group.incarnation
    }
    /// The acceptor set after the chosen prefix it knows.
    pub fn acceptors(&self) -> &crate::log::AcceptorSet {
        self.group.acceptors()
    }
    /// A chosen entry still held in memory.
    pub fn chosen(&self, slot: Slot) -> Option<&crate::log::Entry> {
        self.group.recent_chosen(slot)
    }
    /// For an MLS group: the epoch of its public view (after every chosen entry it knows).
    pub fn epoch(&self) -> Option<u64> {
        self.group.epoch()
    }
    /// Whether it stores the document message with this id.
    pub fn holds_message(&self, id: &crate::updates::UpdateId) -> bool {
        self.group.store.holds(id)
    }
    /// Document messages stored, and their ciphertext bytes.
    pub fn stored_messages(&self) -> (usize, usize) {
        (self.group.store.len(), self.group.store.bytes())
    }
    /// Every stored document message, by position.
    pub fn messages(&self) -> impl Iterator<Item = (u64, &crate::updates::StoredMessage)> {
        self.group.store.messages()
    }
    /// Snapshot bytes held (the latest compaction's, the confirmed one's and any being stored).
    pub fn snapshot_bytes(&self) -> usize {
        self.group.snapshots.bytes()
    }
    /// The compaction in force, if any.
    pub fn compaction(&self) -> Option<&crate::snapshot::Compaction> {
        self.group.snapshots.latest.as_ref()
    }
    /// The latest compaction a member confirmed here (what deletion follows), if any.
    pub fn confirmed(&self) -> Option<&crate::snapshot::Compaction> {
        self.group.snapshots.confirmed.as_ref()
    }
    /// Whether it holds every chunk of the snapshot with this name.
    pub fn holds_snapshot(&self, hash: &crate::snapshot::SnapshotHash) -> bool {
        self.group.snapshots.holds(hash)
    }
}

pub(crate) fn rejection_of(error: &DecodeError) -> Rejection {
    match error {
        DecodeError::Oversized { .. } => Rejection::Oversized,
        DecodeError::WrongVersion(_) => Rejection::WrongVersion,
        DecodeError::Empty | DecodeError::Malformed | DecodeError::Trailing(_) => Rejection::Malformed,
    }
}
