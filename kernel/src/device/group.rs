//! One group as a device sees it: the learned log, the proposal queue and the proposer.

use std::collections::{BTreeSet, VecDeque};

use crate::canary::canary;
use crate::context::Context;
use crate::device::invites::Invites;
use crate::device::membership::{Intent, Membership};
use crate::device::messages::Messages;
use crate::device::proposer::{Leading, Proposer};
use crate::idle::IdlePace;
use crate::ids::{Ballot, Incarnation, NodeId, Slot};
use crate::io::{CommandError, Event, Rejection};
use crate::log::{AcceptorHistory, AcceptorSet, Entry, GroupGenesis};
use crate::storage::{AcceptedValue, Record, RestoredGroup};
use crate::time::{Time, earliest};
use crate::wire::{Message, RejectReason};

mod checkpoint;
pub(crate) mod compaction;
pub(crate) mod confirming;
mod document;
mod messaging;
mod proposing;
mod rejoining;
mod syncing;

pub(crate) use rejoining::Carried;
use syncing::SyncProgress;

/// Something this device wants in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Proposal {
    /// An opaque value (groups without MLS).
    Value(Entry),
    /// An MLS change, made into a commit when the proposer reaches a slot.
    Intent(Intent),
}

/// A device's state for one group.
#[derive(Debug)]
pub(crate) struct DeviceGroup {
    pub(crate) genesis: GroupGenesis,
    /// The first slot not applied; every earlier slot is applied and durable.
    pub(crate) next_slot: Slot,
    history: AcceptorHistory,
    /// Highest round durably reserved; every ballot this device sends has a round at or below it.
    round_floor: u64,
    highest_round_seen: u64,
    pub(crate) proposer: Proposer,
    queue: VecDeque<Proposal>,
    /// For an MLS group: this device's membership.
    pub(crate) mls: Option<Membership>,
    /// For an MLS group: application messages waiting to leave or to be read.
    messages: Messages,
    /// For an MLS group: invites this device opened.
    pub(crate) invites: Invites,
    /// For an MLS group this device joined through an invite code: the code's mailbox (durable
    /// under `JOINED_THROUGH_KEY`), so a host that stopped waiting can still tell which group the
    /// code led to.
    pub(crate) joined_through: Option<crate::invite::Mailbox>,
    /// For an MLS group: its document.
    pub(crate) replica: Option<crate::device::replica::Replica>,
    /// Chosen values acceptors reported for slots not applied yet.
    vouches: crate::vouches::Vouches,
    /// When this device next rotates its keys (MLS groups with a rotation interval).
    next_rotation_at: Option<Time>,
    /// Consecutive failed ballots, for backoff.
    failures: u32,
    next_sync_at: Time,
    /// When the last sync went out (a link coming up brings the next one no sooner than
    /// `sync_interval_ms` after it, so links that flap cannot make a device sync on and on).
    synced_at: Time,
    /// How far apart syncs are while nothing happens (see [`crate::idle`]).
    sync_pace: IdlePace<SyncProgress>,
    /// Since when acceptors report an accepted-but-undecided slot at our frontier.
    undecided_since: Option<Time>,
    /// Set when a stuck slot must be finished with a new ballot even without local work.
    finish_stuck_slot: bool,
    /// Closed batches wait for `Input::Flush` to be posted, so that the batches of a burst of
    /// edits leave together: sealed in one go, one frame to each acceptor.
    pub(crate) post_on_flush: bool,
    /// While a page is read: what its messages wrote, made durable together at its end.
    page_writes: Option<document::PageWrites>,
    /// The most recently applied entries (at most `chosen_in_memory_max`), to hand to an
    /// acceptor that missed them (for example because the proposer that chose them crashed).
    recent: std::collections::BTreeMap<Slot, Entry>,
    /// Acceptors of the group that said they will not host it (at most the acceptor set), so
    /// the app is told once each.
    not_hosted_by: std::collections::BTreeSet<NodeId>,
}

impl DeviceGroup {
    /// A group opened for the first time.
    /// A new group; `carried` if this device held it before and forgot it (see [`Carried`]),
    /// which the same batch forgets on disk first.
    pub(crate) fn open(
        cx: &mut Context<'_>,
        genesis: GroupGenesis,
        mls: Option<Membership>,
        carried: Option<Carried>,
    ) -> DeviceGroup {
        let mut records = Vec::new();
        if carried.is_some() {
            records.push(Record::GroupForgotten { group: cx.group });
        }
        records.push(Record::Group { group: cx.group, genesis: genesis.clone() });
        let history = AcceptorHistory::for_joiner(&genesis, mls.as_ref().and_then(Membership::acceptors).as_ref());
        let mut group = DeviceGroup::with(genesis, Slot(0), history, 0, cx.now);
        if mls.is_some() {
            let peer = cx.rng.next_u64();
            group.replica = crate::device::replica::Replica::new(peer).ok();
        }
        group.mls = mls;
        if let Some(mls) = group.mls.as_mut() {
            records.extend(mls.changes(cx.group, true));
        }
        if let Some(carried) = carried {
            records.extend(group.carry_over(cx.group, carried));
        }
        cx.persist(records);
        group
    }

    /// A group rebuilt from disk.
    pub(crate) fn restore(
        now: Time,
        restored: RestoredGroup,
        chosen_in_memory_max: usize,
        mls: Option<Membership>,
    ) -> DeviceGroup {
        let mut history = AcceptorHistory::new(&restored.genesis);
        let mut next_slot = Slot(0);
        for (slot, entry) in &restored.chosen {
            assert_eq!(*slot, next_slot, "invariant: a device persists applied entries contiguously");
            history.record(*slot, entry);
            next_slot = slot.next();
        }
        // An MLS member restarts at its latest epoch without replaying the log, so the acceptor
        // set its settings name is taken as in force from the next slot (earlier slots are
        // applied and need no quorum any more).
        let settings = mls.as_ref().and_then(Membership::acceptors);
        match next_slot.0.checked_sub(1) {
            Some(previous) => history.record_settings(Slot(previous), settings.as_ref()),
            None => history = AcceptorHistory::for_joiner(&restored.genesis, settings.as_ref()),
        }
        let mut group = DeviceGroup::with(restored.genesis, next_slot, history, restored.round_floor, now);
        group.recent = restored.chosen.into_iter().rev().take(chosen_in_memory_max).collect();
        if mls.as_ref().is_some_and(|mls| mls.pending.is_some()) {
            group.queue.push_back(Proposal::Intent(Intent::Resume));
        }
        group.mls = mls;
        group
    }

    fn with(genesis: GroupGenesis, next_slot: Slot, history: AcceptorHistory, round_floor: u64, now: Time) -> DeviceGroup {
        DeviceGroup {
            genesis,
            next_slot,
            history,
            round_floor,
            highest_round_seen: round_floor,
            proposer: Proposer::Idle,
            queue: VecDeque::new(),
            mls: None,
            messages: Messages::default(),
            invites: Invites::default(),
            joined_through: None,
            replica: None,
            vouches: crate::vouches::Vouches::default(),
            next_rotation_at: None,
            failures: 0,
            next_sync_at: now,
            synced_at: Time::ZERO,
            sync_pace: IdlePace::default(),
            undecided_since: None,
            finish_stuck_slot: false,
            post_on_flush: false,
            page_writes: None,
            recent: std::collections::BTreeMap::new(),
            not_hosted_by: std::collections::BTreeSet::new(),
        }
    }

    /// Whether openmls panicked inside this group's member (see `Member`).
    pub(crate) fn mls_is_broken(&self) -> bool {
        self.mls.as_ref().is_some_and(|mls| mls.member.is_broken())
    }

    /// When this group next needs a timer.
    pub(crate) fn wake_at(&self) -> Time {
        let wake = earliest(Some(self.next_sync_at), self.proposer.deadline());
        let wake = earliest(wake, self.invites.wake_at());
        let wake = earliest(wake, self.document_wake_at());
        let wake = earliest(wake, self.compaction_wake_at());
        earliest(wake, self.next_rotation_at).expect("the sync deadline is always set")
    }

    /// Proposals waiting (including the one in flight, if it is ours).
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The acceptor set in force for the next slot.
    pub(crate) fn acceptors(&self) -> &AcceptorSet {
        self.history.latest()
    }

    /// Whether there is work the proposer has not finished.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.finish_stuck_slot
    }

    /// Queues an MLS change.
    pub(crate) fn intend(&mut self, cx: &mut Context<'_>, intent: Intent) -> Result<(), CommandError> {
        let Some(mls) = self.mls.as_ref() else { return Err(CommandError::NotMls(cx.group)) };
        // Readers and former members commit nothing; say so now rather than after a refusal.
        mls.may_write(cx.group, cx.me)?;
        if self.queue.len() >= cx.config.proposals_queued_max {
            return Err(CommandError::QueueFull(self.queue.len()));
        }
        self.queue.push_back(Proposal::Intent(intent));
        self.drive(cx);
        Ok(())
    }

    /// Queues a value for the log.
    pub(crate) fn propose(&mut self, cx: &mut Context<'_>, entry: Entry) -> Result<(), CommandError> {
        if self.mls.is_some() {
            return Err(CommandError::NotOpaque(cx.group));
        }
        if !self.genesis.allows_proposer(cx.me) {
            return Err(CommandError::NotAProposer(cx.group));
        }
        if self.queue.len() >= cx.config.proposals_queued_max {
            return Err(CommandError::QueueFull(self.queue.len()));
        }
        let size = entry.encoded_len();
        if size > cx.config.entry_bytes_max {
            return Err(CommandError::ValueTooLarge { size, limit: cx.config.entry_bytes_max });
        }
        if self.next_slot.0 + self.queue.len() as u64 >= cx.config.slots_per_group_max {
            return Err(CommandError::LogFull);
        }
        self.queue.push_back(Proposal::Value(entry));
        self.drive(cx);
        Ok(())
    }

    // ----- messages -------------------------------------------------------------------------

    /// Routes one decoded message from `from`.
    pub(crate) fn on_message(&mut self, cx: &mut Context<'_>, from: NodeId, message: Message) {
        if !self.history.ever_contained(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        match message {
            Message::Promise { ballot, incarnation, accepted } => self.on_promise(cx, from, ballot, incarnation, accepted),
            Message::Accepted { ballot, slot, value_hash } => self.on_accepted(cx, from, ballot, slot, value_hash),
            Message::Rejected { ballot, reason, promised } => self.on_rejected(cx, from, ballot, reason, promised),
            Message::Chosen { slot, entry } => self.on_entries(cx, from, vec![(slot, entry)], None),
            Message::Entries { entries, chosen_next, accepted_pending } => {
                self.on_entries(cx, from, entries, Some((chosen_next, accepted_pending)));
                self.help_lagging_acceptor(cx, from, chosen_next);
            }
            Message::EpochDigest { digest } => match self.mls.as_ref().map(|mls| mls.check_digest(cx.group, &digest)) {
                Some(Ok(Some(fork))) => cx.effects.notify(fork),
                Some(Ok(None)) => {}
                Some(Err(())) | None => cx.reject(Rejection::Invalid),
            },
            Message::Application { sender, message } => self.on_application(cx, sender, message),
            Message::MailboxContents { mailbox, key_package, welcome } => {
                self.on_mailbox(cx, from, mailbox, key_package, welcome.is_some());
            }
            // An admin polling a mailbox that expired: its invite expires by its own clock.
            Message::MailboxUnknown { .. } => {}
            Message::OpenMailbox { .. }
            | Message::PostKeyPackage { .. }
            | Message::PostWelcome { .. }
            | Message::FetchMailbox { .. } => {
                cx.reject(Rejection::Unauthorised);
            }
            Message::PostAck { seqs } => self.on_post_ack(cx, from, seqs),
            Message::PostRefused { seq, reason } => self.on_post_refused(cx, from, seq, reason),
            Message::Page { after, messages, more } => self.on_page(cx, from, after, messages, more),
            // Snapshots are of a document: a group of opaque values has none.
            Message::SnapshotStored { .. } | Message::SnapshotChunk { .. } | Message::SnapshotConfirmed { .. }
                if self.replica.is_none() =>
            {
                cov_mark::hit!(device_without_a_document_refuses_snapshot_messages);
                cx.reject(Rejection::Unauthorised);
            }
            Message::SnapshotStored { hash } => self.on_snapshot_stored(cx, from, hash),
            Message::SnapshotChunk { hash, index, count, bytes } => self.on_snapshot_chunk(cx, hash, index, count, bytes),
            Message::SnapshotConfirmed { hash } => self.on_snapshot_confirmed(cx, from, hash),
            Message::UnknownGroup => {
                // The acceptor lost its state (or never had it): tell it about the group now.
                self.next_sync_at = cx.now;
            }
            Message::GroupRefused { reason } => self.on_group_refused(cx, from, reason),
            Message::Sync { .. }
            | Message::Prepare { .. }
            | Message::Accept { .. }
            | Message::Recover { .. }
            | Message::IncarnationQuery { .. }
            | Message::IncarnationKnown { .. }
            | Message::Recovery { .. }
            | Message::CatchUp { .. }
            | Message::Post { .. }
            | Message::FetchSnapshot { .. }
            | Message::Fetch { .. }
            | Message::FetchIds { .. }
            | Message::Ids { .. } => cx.reject(Rejection::Unauthorised),
        }
    }

    fn on_promise(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        ballot: Ballot,
        incarnation: Incarnation,
        accepted: Vec<(Slot, AcceptedValue)>,
    ) {
        let Proposer::Preparing(preparing) = &mut self.proposer else {
            return cx.reject(Rejection::Duplicate);
        };
        if ballot != preparing.ballot || !preparing.acceptors.contains(from) {
            return cx.reject(Rejection::StaleBallot);
        }
        if accepted.iter().any(|(_, value)| value.entry.hash() != value.value_hash) {
            return cx.reject(Rejection::Invalid);
        }
        // In an MLS group an acceptor accepts only at its chosen frontier, so an honest promise
        // for `from_slot` reports values for that slot alone, each signed by the member whose
        // ballot carried it. Anything else is a lie: a Byzantine acceptor could otherwise get
        // a second value chosen for a slot.
        let from_slot = preparing.from_slot;
        if let Some(mls) = &self.mls
            && !canary!(cx.config, PromiseProofsUnchecked)
            && accepted.iter().any(|(slot, value)| *slot != from_slot || !mls.accept_is_signed(cx.group, *slot, value))
        {
            cov_mark::hit!(device_refuses_a_promise_with_an_unsigned_accepted_value);
            return cx.reject(Rejection::Invalid);
        }
        preparing.promises.insert(from, (incarnation, accepted));
        let Some(quorum) = preparing.tally(canary!(cx.config, QuorumTooSmall)) else { return };
        // `failures` resets only when a value is chosen: two proposers that keep winning phase 1
        // and losing phase 2 to each other must keep backing off longer.
        self.proposer = Proposer::Leading(Leading::from_quorum(quorum));
        self.drive(cx);
    }

    fn on_accepted(&mut self, cx: &mut Context<'_>, from: NodeId, ballot: Ballot, slot: Slot, value_hash: crate::ids::ValueHash) {
        let Proposer::Leading(leading) = &mut self.proposer else {
            return cx.reject(Rejection::Duplicate);
        };
        let Some(in_flight) = leading.in_flight.as_mut() else {
            return cx.reject(Rejection::Duplicate);
        };
        if ballot != leading.ballot || slot != in_flight.slot || value_hash != in_flight.value_hash {
            return cx.reject(Rejection::StaleBallot);
        }
        in_flight.accepted_by.insert(from);
        if !in_flight.is_chosen(self.history.at(slot), canary!(cx.config, QuorumTooSmall)) {
            return;
        }
        let in_flight = leading.in_flight.take().expect("checked above");
        let mut entry = in_flight.entry;
        let mut own = in_flight.own;
        if !own
            && canary!(cx.config, ApplyOwnValueInsteadOfChosen)
            && let Some(Proposal::Value(front)) = self.queue.front()
        {
            entry = front.clone();
            own = true;
        }
        // Tell the acceptors of both the old and (after a change) the new set.
        let mut targets: BTreeSet<NodeId> = self.history.at(slot).members().iter().copied().collect();
        if let Entry::SetAcceptors(next) = &entry {
            targets.extend(next.members().iter().copied());
        }
        self.failures = 0;
        // Acceptors hear of the choice before anything we send in the epoch it starts.
        cx.send_all(&targets, &Message::Chosen { slot, entry: entry.clone() });
        self.apply(cx, vec![(slot, entry)], own.then_some(slot));
        self.drive(cx);
    }

    fn on_rejected(&mut self, cx: &mut Context<'_>, from: NodeId, ballot: Ballot, reason: RejectReason, promised: Ballot) {
        if self.proposer.ballot() != Some(ballot) {
            return cx.reject(Rejection::Duplicate);
        }
        if reason == RejectReason::InvalidValue {
            return self.on_refused(cx, from);
        }
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        if matches!(reason, RejectReason::OutsideWindow | RejectReason::NotReady) {
            // That acceptor is behind or still recovering; the others may still make a quorum.
            if reason == RejectReason::NotReady {
                self.resend_snapshot_to(cx, from);
            }
            return;
        }
        self.back_off(cx);
    }

    /// An acceptor of the group will not host it: tell the app, once per acceptor. The device
    /// keeps syncing with it at the idle pace (an operator may make room and restart it).
    fn on_group_refused(&mut self, cx: &mut Context<'_>, from: NodeId, reason: crate::wire::GroupRefusal) {
        if !self.history.latest().members().contains(&from) {
            return cx.reject(Rejection::Unauthorised);
        }
        if !self.not_hosted_by.insert(from) {
            return cx.reject(Rejection::Duplicate);
        }
        cov_mark::hit!(device_tells_its_app_an_acceptor_will_not_host_the_group);
        cx.effects.notify(Event::GroupRefused { group: cx.group, acceptor: from, reason });
    }

    /// An acceptor refused our in-flight value as invalid. Once a quorum refuses, our own MLS
    /// intent is dropped with an error (it can never be chosen); one refusal alone may come from
    /// a faulty acceptor.
    fn on_refused(&mut self, cx: &mut Context<'_>, from: NodeId) {
        let Proposer::Leading(leading) = &mut self.proposer else { return };
        let Some(in_flight) = leading.in_flight.as_mut() else { return };
        in_flight.refused_by.insert(from);
        let quorum = self.history.at(in_flight.slot).is_quorum(in_flight.refused_by.iter());
        if !quorum {
            return;
        }
        let own = in_flight.own;
        leading.in_flight = None;
        if own && matches!(self.queue.front(), Some(Proposal::Intent(_))) {
            cov_mark::hit!(device_drops_an_intent_the_acceptors_refuse);
            self.queue.pop_front();
            if let Some(mls) = self.mls.as_mut() {
                mls.drop_pending();
                let records = mls.changes(cx.group, false);
                cx.persist(records);
            }
            cx.effects.notify(Event::CommandFailed { error: CommandError::Refused(cx.group) });
            self.after_mls_change(cx);
        }
        self.back_off(cx);
    }

    fn back_off(&mut self, cx: &mut Context<'_>) {
        self.failures = self.failures.saturating_add(1);
        let delay = cx.backoff_ms(self.failures);
        self.proposer = Proposer::Backoff { until: cx.now.plus_ms(delay) };
    }

    /// Applies chosen entries an acceptor reports (a page or a push) once enough acceptors
    /// agree (see `vouches.rs`), and notes whether acceptors hold undecided slots.
    fn on_entries(&mut self, cx: &mut Context<'_>, from: NodeId, entries: Vec<(Slot, Entry)>, frontier: Option<(Slot, bool)>) {
        let valid = entries.iter().all(|(_, entry)| match entry {
            Entry::SetAcceptors(set) => set.is_well_formed(cx.config.acceptors_max),
            Entry::Noop | Entry::Value(_) => entry.encoded_len() <= cx.config.entry_bytes_max,
        });
        if !valid {
            return cx.reject(Rejection::Invalid);
        }
        if !entries.is_empty() && entries.iter().all(|(slot, _)| *slot < self.next_slot) {
            cx.reject(Rejection::Duplicate);
        }
        let window = cx.config.catch_up_entries_max as u64 * 2;
        for (slot, entry) in entries {
            self.vouches.record(from, slot, entry, self.next_slot, window);
        }
        loop {
            let believe_one = canary!(cx.config, LearnerBelievesOneAcceptor);
            let believed = self.vouches.take_believed(self.next_slot, &self.history, self.mls.is_some(), believe_one);
            if believed.is_empty() {
                break;
            }
            let own_slot = self.own_slot_among(&believed);
            self.apply(cx, believed, own_slot);
        }
        if let Some((chosen_next, accepted_pending)) = frontier {
            self.watch_for_stuck_slot(cx, chosen_next, accepted_pending);
        }
        self.drive(cx);
    }

    /// Hands an acceptor the chosen entries it lacks, if we still hold them in memory. Acceptors
    /// otherwise learn only from the proposer that chose a value, which may have crashed.
    fn help_lagging_acceptor(&mut self, cx: &mut Context<'_>, acceptor: NodeId, chosen_next: Slot) {
        if chosen_next >= self.next_slot || !self.recent.contains_key(&chosen_next) {
            return;
        }
        cov_mark::hit!(device_hands_chosen_entries_to_a_lagging_acceptor);
        let entries = crate::context::page(self.recent.range(chosen_next..).map(|(s, e)| (*s, e)), cx.config);
        cx.send(acceptor, Message::Entries { entries, chosen_next: self.next_slot, accepted_pending: false });
    }

    /// The slot among `entries` that settles our in-flight proposal, if it was chosen as sent.
    fn own_slot_among(&self, entries: &[(Slot, Entry)]) -> Option<Slot> {
        let Proposer::Leading(Leading { in_flight: Some(in_flight), .. }) = &self.proposer else { return None };
        entries
            .iter()
            .find(|(slot, entry)| *slot == in_flight.slot && in_flight.own && entry.hash() == in_flight.value_hash)
            .map(|(slot, _)| *slot)
    }

    fn watch_for_stuck_slot(&mut self, cx: &mut Context<'_>, chosen_next: Slot, accepted_pending: bool) {
        if chosen_next > self.next_slot {
            // The acceptor knows more than it sent in this page; ask again soon.
            self.next_sync_at = self.next_sync_at.min(cx.now.plus_ms(cx.config.backoff_ms_min));
            return;
        }
        if !accepted_pending || chosen_next < self.next_slot {
            return;
        }
        let since = *self.undecided_since.get_or_insert(cx.now);
        if cx.now.since(since) >= cx.config.stuck_slot_ms && !self.finish_stuck_slot {
            cov_mark::hit!(device_finishes_a_stuck_slot);
            self.finish_stuck_slot = true;
        }
    }

    /// Applies contiguous chosen entries from `next_slot`: MLS state follows each one; all of it
    /// is made durable in one batch, then the app is told.
    fn apply(&mut self, cx: &mut Context<'_>, entries: Vec<(Slot, Entry)>, own_slot: Option<Slot>) {
        let mut records = Vec::new();
        let mut events = Vec::new();
        let mut welcomes = Vec::new();
        let mut compactions = Vec::new();
        let first_slot = self.next_slot;
        for (slot, entry) in entries {
            assert_eq!(slot, self.next_slot, "entries are applied in slot order");
            records.push(Record::Chosen { group: cx.group, slot, entry: entry.clone() });
            self.history.record(slot, &entry);
            self.next_slot = slot.next();
            self.undecided_since = None;
            if entry == Entry::Noop {
                self.finish_stuck_slot = false;
            }
            let value_hash = entry.hash();
            let mut committed = own_slot == Some(slot);
            if let Some(mls) = self.mls.as_mut() {
                if slot != first_slot {
                    // What the entries before this one changed, taken now: if openmls panics
                    // on this one, the member writes nothing more (see `Member`).
                    records.extend(mls.changes(cx.group, false));
                }
                let invite = mls.pending.as_ref().and_then(|pending| pending.mailbox);
                let members_before = mls.member.members();
                let followed = mls.follow(cx, &entry, value_hash);
                if let Some(replica) = self.replica.as_mut()
                    && mls.member.members().iter().any(|member| !members_before.contains(member))
                {
                    replica.compactor.unreadable_before = replica.compactor.unreadable_before.max(mls.member.epoch());
                }
                let (ours, mls_events) = (followed.ours, followed.events);
                compactions.extend(followed.compaction.map(|compaction| (compaction, ours)));
                if let (true, Some(mailbox)) = (ours, invite) {
                    welcomes.extend(mls_events.iter().filter_map(|event| match event {
                        Event::Welcome { welcome, .. } => Some((mailbox, welcome.clone())),
                        _ => None,
                    }));
                }
                self.history.record_settings(slot, mls.acceptors().as_ref());
                // After a restart our in-flight state is gone but the pending commit is not.
                committed |= ours && matches!(self.queue.front(), Some(Proposal::Intent(_)));
                events.extend(mls_events);
            }
            self.recent.insert(slot, entry.clone());
            if self.recent.len() > cx.config.chosen_in_memory_max {
                self.recent.pop_first();
            }
            events.push(Event::Applied { group: cx.group, slot, entry, value_hash });
            if committed {
                self.queue.pop_front();
                events.push(Event::Committed { group: cx.group, slot });
            }
            if self.mls_is_broken() {
                // openmls panicked on this commit: it counts as skipped, as an invalid one is
                // (this slot's record is kept, none of the MLS state), and the entries after it
                // are learned again by the node built again from storage.
                cov_mark::hit!(device_skips_a_commit_its_mls_library_panicked_on);
                break;
            }
        }
        // Welcomes first: once the records below are durable our pending commit is gone, and
        // with it the Welcome, so a crash in between would leave a joiner added that never
        // gets in. (A crash before the records resumes the commit, and finds the Welcome kept.)
        self.on_invitees_added(cx, welcomes);
        if let Some(mls) = self.mls.as_mut() {
            records.extend(mls.changes(cx.group, false));
        }
        cx.persist(records);
        for (compaction, ours) in compactions {
            self.on_compaction_chosen(cx, compaction, ours);
        }
        let epoch_changed = events.iter().any(|e| matches!(e, Event::EpochChanged { .. }));
        for event in events {
            cx.effects.notify(event);
        }
        if let Some(digest) = self.mls.as_ref().filter(|_| epoch_changed).and_then(Membership::digest) {
            let acceptors = self.history.latest().clone();
            cx.send_all(acceptors.members(), &Message::EpochDigest { digest });
        }
        self.after_mls_change(cx);
        if let Proposer::Leading(leading) = &mut self.proposer {
            if leading.in_flight.as_ref().is_some_and(|f| f.slot < self.next_slot) {
                leading.in_flight = None;
            }
            leading.adopted.retain(|slot, _| *slot >= self.next_slot);
        }
        if let Proposer::Preparing(preparing) = &self.proposer
            && preparing.from_slot < self.next_slot
        {
            // Promises were for slots now decided; ask again from the new frontier.
            self.proposer = Proposer::Idle;
        }
    }

    /// Periodic work: sync with acceptors; retry or abandon ballots that timed out; rotate keys;
    /// send and re-send document messages.
    pub(crate) fn on_timer(&mut self, cx: &mut Context<'_>) {
        self.rotate_when_due(cx);
        self.give_invitees_their_roles(cx);
        self.document_timer(cx);
        self.compaction_timer(cx);
        if cx.now >= self.next_sync_at {
            let sync = Message::Sync {
                genesis: self.genesis.clone(),
                from_slot: self.next_slot,
                acceptors: self.history.latest().clone(),
            };
            let acceptors = self.history.latest().clone();
            cx.send_all(acceptors.members(), &sync);
            self.fetch(cx);
            self.invites.on_timer(cx, &acceptors);
            let (base, ceiling) = (cx.config.sync_interval_ms, cx.config.idle_sync_interval_max_ms);
            let interval = self.sync_pace.next_interval(self.sync_progress(), self.needs_rounds(), base, ceiling);
            if interval > base {
                cov_mark::hit!(device_slows_its_syncs_while_idle);
            }
            self.next_sync_at = cx.now.plus_ms(interval);
            self.synced_at = cx.now;
        } else if self.invites.wake_at().is_some_and(|at| at <= cx.now) {
            let acceptors = self.history.latest().clone();
            self.invites.on_timer(cx, &acceptors);
        }
        let timed_out = self.proposer.deadline().is_some_and(|deadline| cx.now >= deadline);
        if timed_out {
            match &mut self.proposer {
                Proposer::Preparing(_) => self.back_off(cx),
                Proposer::Leading(leading) => {
                    let in_flight = leading.in_flight.as_mut().expect("a leader's deadline belongs to its in-flight slot");
                    if in_flight.retransmits < cx.config.accept_retransmits_max {
                        in_flight.retransmits += 1;
                        in_flight.deadline = cx.now.plus_ms(cx.config.ballot_timeout_ms);
                        let accept = Message::Accept {
                            ballot: leading.ballot,
                            slot: in_flight.slot,
                            entry: in_flight.entry.clone(),
                            value_hash: in_flight.value_hash,
                            promised_by: leading.promised_by.clone(),
                            proof: in_flight.proof.clone(),
                        };
                        let silent: Vec<NodeId> =
                            leading.acceptors.members().iter().copied().filter(|a| !in_flight.accepted_by.contains(a)).collect();
                        cx.send_all(&silent, &accept);
                    } else {
                        self.back_off(cx);
                    }
                }
                Proposer::Backoff { .. } | Proposer::Idle => {}
            }
        }
        self.drive(cx);
    }
}
