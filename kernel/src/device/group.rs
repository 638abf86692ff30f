//! One group as a device sees it: the learned log, the proposal queue and the proposer.

use std::collections::{BTreeSet, VecDeque};

use crate::canary::canary;
use crate::context::Context;
use crate::device::proposer::{InFlight, Leading, Preparing, Proposer};
use crate::ids::{Ballot, Incarnation, NodeId, Slot};
use crate::io::{CommandError, Event, Rejection};
use crate::log::{AcceptorHistory, AcceptorSet, Entry, GroupGenesis};
use crate::storage::{AcceptedValue, Record, RestoredGroup};
use crate::time::{Time, earliest};
use crate::wire::{Message, RejectReason};

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
    queue: VecDeque<Entry>,
    /// Consecutive failed ballots, for backoff.
    failures: u32,
    next_sync_at: Time,
    /// Since when acceptors report an accepted-but-undecided slot at our frontier.
    undecided_since: Option<Time>,
    /// Set when a stuck slot must be finished with a new ballot even without local work.
    finish_stuck_slot: bool,
    /// The most recently applied entries (at most `chosen_in_memory_max`), to hand to an
    /// acceptor that missed them (for example because the proposer that chose them crashed).
    recent: std::collections::BTreeMap<Slot, Entry>,
}

impl DeviceGroup {
    /// A group opened for the first time.
    pub(crate) fn open(cx: &mut Context<'_>, genesis: GroupGenesis) -> DeviceGroup {
        cx.persist(vec![Record::Group { group: cx.group, genesis: genesis.clone() }]);
        let history = AcceptorHistory::new(&genesis);
        DeviceGroup::with(genesis, Slot(0), history, 0, cx.now)
    }

    /// A group rebuilt from disk.
    pub(crate) fn restore(now: Time, restored: RestoredGroup, chosen_in_memory_max: usize) -> DeviceGroup {
        let mut history = AcceptorHistory::new(&restored.genesis);
        let mut next_slot = Slot(0);
        for (slot, entry) in &restored.chosen {
            assert_eq!(*slot, next_slot, "invariant: a device persists applied entries contiguously");
            history.record(*slot, entry);
            next_slot = slot.next();
        }
        let mut group = DeviceGroup::with(restored.genesis, next_slot, history, restored.round_floor, now);
        group.recent = restored.chosen.into_iter().rev().take(chosen_in_memory_max).collect();
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
            failures: 0,
            next_sync_at: now,
            undecided_since: None,
            finish_stuck_slot: false,
            recent: std::collections::BTreeMap::new(),
        }
    }

    /// When this group next needs a timer.
    pub(crate) fn wake_at(&self) -> Time {
        earliest(Some(self.next_sync_at), self.proposer.deadline()).expect("the sync deadline is always set")
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

    /// Queues a value for the log.
    pub(crate) fn propose(&mut self, cx: &mut Context<'_>, entry: Entry) -> Result<(), CommandError> {
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
        self.queue.push_back(entry);
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
            Message::Rejected { ballot, reason, promised } => self.on_rejected(cx, ballot, reason, promised),
            Message::Chosen { slot, entry } => self.on_entries(cx, vec![(slot, entry)], None),
            Message::Entries { entries, chosen_next, accepted_pending } => {
                self.on_entries(cx, entries, Some((chosen_next, accepted_pending)));
                self.help_lagging_acceptor(cx, from, chosen_next);
            }
            Message::UnknownGroup => {
                // The acceptor lost its state (or never had it): tell it about the group now.
                self.next_sync_at = cx.now;
            }
            Message::Sync { .. }
            | Message::Prepare { .. }
            | Message::Accept { .. }
            | Message::Recover { .. }
            | Message::IncarnationQuery { .. }
            | Message::IncarnationKnown { .. }
            | Message::Recovery { .. }
            | Message::CatchUp { .. } => cx.reject(Rejection::Unauthorised),
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
            && let Some(front) = self.queue.front()
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
        self.apply(cx, vec![(slot, entry.clone())], own.then_some(slot));
        cx.send_all(&targets, &Message::Chosen { slot, entry });
        self.drive(cx);
    }

    fn on_rejected(&mut self, cx: &mut Context<'_>, ballot: Ballot, reason: RejectReason, promised: Ballot) {
        if self.proposer.ballot() != Some(ballot) {
            return cx.reject(Rejection::Duplicate);
        }
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        if matches!(reason, RejectReason::OutsideWindow | RejectReason::NotReady) {
            // That acceptor is behind or still recovering; the others may still make a quorum.
            return;
        }
        self.back_off(cx);
    }

    fn back_off(&mut self, cx: &mut Context<'_>) {
        self.failures = self.failures.saturating_add(1);
        let delay = cx.backoff_ms(self.failures);
        self.proposer = Proposer::Backoff { until: cx.now.plus_ms(delay) };
    }

    /// Applies chosen entries (a page or a push) and notes whether acceptors hold undecided slots.
    fn on_entries(&mut self, cx: &mut Context<'_>, entries: Vec<(Slot, Entry)>, frontier: Option<(Slot, bool)>) {
        let valid = entries.iter().all(|(_, entry)| match entry {
            Entry::SetAcceptors(set) => set.is_well_formed(cx.config.acceptors_max),
            Entry::Noop | Entry::Value(_) => entry.encoded_len() <= cx.config.entry_bytes_max,
        });
        if !valid {
            return cx.reject(Rejection::Invalid);
        }
        let fresh: Vec<(Slot, Entry)> = entries.into_iter().skip_while(|(slot, _)| *slot < self.next_slot).collect();
        let contiguous = fresh.iter().enumerate().take_while(|(i, (slot, _))| slot.0 == self.next_slot.0 + *i as u64).count();
        if contiguous > 0 {
            let own_slot = self.own_slot_among(&fresh[..contiguous]);
            let applied: Vec<(Slot, Entry)> = fresh.into_iter().take(contiguous).collect();
            self.apply(cx, applied, own_slot);
        } else if fresh.is_empty() {
            cx.reject(Rejection::Duplicate);
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

    /// Applies contiguous chosen entries from `next_slot`: durably, then tells the app.
    fn apply(&mut self, cx: &mut Context<'_>, entries: Vec<(Slot, Entry)>, own_slot: Option<Slot>) {
        let records = entries.iter().map(|(slot, entry)| Record::Chosen { group: cx.group, slot: *slot, entry: entry.clone() });
        cx.persist(records.collect());
        for (slot, entry) in entries {
            assert_eq!(slot, self.next_slot, "entries are applied in slot order");
            self.history.record(slot, &entry);
            self.next_slot = slot.next();
            self.recent.insert(slot, entry.clone());
            if self.recent.len() > cx.config.chosen_in_memory_max {
                self.recent.pop_first();
            }
            self.undecided_since = None;
            if entry == Entry::Noop {
                self.finish_stuck_slot = false;
            }
            let value_hash = entry.hash();
            cx.effects.notify(Event::Applied { group: cx.group, slot, entry, value_hash });
            if own_slot == Some(slot) {
                self.queue.pop_front();
                cx.effects.notify(Event::Committed { group: cx.group, slot });
            }
        }
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

    // ----- driving the proposer -------------------------------------------------------------

    /// Moves the proposer forward as far as it can without waiting.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Proposer::Backoff { until } = self.proposer {
            if cx.now < until {
                return;
            }
            self.proposer = Proposer::Idle;
        }
        if let Proposer::Leading(leading) = &self.proposer
            && &leading.acceptors != self.history.at(self.next_slot)
        {
            cov_mark::hit!(leader_reprepares_after_acceptor_change);
            self.proposer = Proposer::Idle;
        }
        match &mut self.proposer {
            Proposer::Idle => {
                if !self.is_idle() {
                    self.start_prepare(cx);
                }
            }
            Proposer::Leading(leading) if leading.in_flight.is_none() => self.propose_next(cx),
            Proposer::Backoff { .. } | Proposer::Preparing(_) | Proposer::Leading(_) => {}
        }
    }

    fn start_prepare(&mut self, cx: &mut Context<'_>) {
        let round = self.round_floor.max(self.highest_round_seen) + 1;
        if !canary!(cx.config, BallotCounterNotPersisted) {
            cx.persist(vec![Record::RoundFloor { group: cx.group, round }]);
            self.round_floor = round;
        }
        let ballot = Ballot { round, proposer: cx.me };
        let acceptors = self.history.at(self.next_slot).clone();
        cx.send_all(acceptors.members(), &Message::Prepare { ballot, from_slot: self.next_slot });
        self.proposer = Proposer::Preparing(Preparing {
            ballot,
            from_slot: self.next_slot,
            acceptors,
            promises: Default::default(),
            deadline: cx.now.plus_ms(cx.config.ballot_timeout_ms),
        });
    }

    /// As leader with nothing in flight: propose the adopted value for the next slot, else our own.
    fn propose_next(&mut self, cx: &mut Context<'_>) {
        let Proposer::Leading(leading) = &mut self.proposer else { return };
        let slot = self.next_slot;
        let (entry, own) = if let Some(adopted) = leading.adopted.remove(&slot) {
            cov_mark::hit!(leader_proposes_adopted_value);
            (adopted.entry, false)
        } else if let Some(front) = self.queue.front() {
            (front.clone(), true)
        } else if self.finish_stuck_slot {
            (Entry::Noop, false)
        } else {
            return;
        };
        let value_hash = entry.hash();
        let accept = Message::Accept {
            ballot: leading.ballot,
            slot,
            entry: entry.clone(),
            value_hash,
            promised_by: leading.promised_by.clone(),
        };
        cx.send_all(leading.acceptors.members(), &accept);
        leading.in_flight = Some(InFlight {
            slot,
            entry,
            value_hash,
            own,
            accepted_by: BTreeSet::new(),
            deadline: cx.now.plus_ms(cx.config.ballot_timeout_ms),
            retransmits: 0,
        });
    }

    /// Periodic work: sync with acceptors; retry or abandon ballots that timed out.
    pub(crate) fn on_timer(&mut self, cx: &mut Context<'_>) {
        if cx.now >= self.next_sync_at {
            let sync = Message::Sync {
                genesis: self.genesis.clone(),
                from_slot: self.next_slot,
                acceptors: self.history.latest().clone(),
            };
            let acceptors = self.history.latest().clone();
            cx.send_all(acceptors.members(), &sync);
            self.next_sync_at = cx.now.plus_ms(cx.config.sync_interval_ms);
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
