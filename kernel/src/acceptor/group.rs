//! One group as an acceptor sees it: Paxos acceptor state, the chosen log, and recovery.
//!
//! States of an acceptor for a group:
//!
//! ```text
//!   (no state) --first Sync or Recover--> Choosing --peers' records--> Fencing --caught up--> Voting
//!   restart: each state is rebuilt from disk (Choosing if no incarnation was written yet)
//! ```
//!
//! A node that creates state for a group cannot tell "new group" from "I lost my disk", so it
//! always recovers first (see `recovery.rs`). Only then does it vote.

use std::collections::{BTreeMap, BTreeSet};

use crate::canary::canary;
use crate::context::{Context, page};
use crate::idle::IdlePace;
use crate::ids::{Ballot, Incarnation, NodeId, Slot};
use crate::io::Rejection;
use crate::log::{AcceptorHistory, AcceptorSet, Entry, GroupGenesis};
use crate::mls::PublicView;
use crate::storage::{AcceptedValue, LoadQuery, Record, RestoredGroup};
use crate::time::Time;
use crate::wire::{Message, RejectReason};

mod learning;

/// Earlier acceptor sets whose acceptors the current set copies from (see
/// [`AcceptorGroup::copy_sources`]): what only an acceptor removed more changes ago than this
/// is not handed over.
pub(crate) const HANDOVER_SETS_MAX: usize = 4;

/// Whether the acceptor may vote for this group yet.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Asking peers which incarnation they last recorded for us.
    Choosing(Choosing),
    /// Peers fence older incarnations and report what they hold; we catch up.
    Fencing(Fencing),
    /// Caught up; answers prepares and accepts.
    Voting,
}

/// Recovery step 1.
#[derive(Debug, Default)]
pub(crate) struct Choosing {
    pub(crate) answers: BTreeMap<NodeId, Option<Incarnation>>,
}

/// Recovery step 2.
#[derive(Debug, Default)]
pub(crate) struct Fencing {
    pub(crate) reports: BTreeMap<NodeId, PeerReport>,
}

/// What a peer reported after fencing our older incarnations.
#[derive(Debug)]
pub(crate) struct PeerReport {
    pub(crate) promised: Ballot,
    pub(crate) accepted: Vec<(Slot, AcceptedValue)>,
    pub(crate) chosen_next: Slot,
    pub(crate) incarnations: Vec<(NodeId, Incarnation)>,
}

/// An acceptor's state for one group.
#[derive(Debug)]
pub(crate) struct AcceptorGroup {
    pub(crate) genesis: GroupGenesis,
    pub(crate) incarnation: Incarnation,
    pub(crate) phase: Phase,
    pub(crate) promised: Ballot,
    /// Accepted values of slots at or after `chosen_next`.
    pub(crate) accepted: BTreeMap<Slot, AcceptedValue>,
    pub(crate) peer_incarnations: BTreeMap<NodeId, Incarnation>,
    /// The first slot not known chosen; every slot before it is chosen and known.
    pub(crate) chosen_next: Slot,
    /// The most recent chosen entries (at most `chosen_in_memory_max`); older ones are on disk.
    recent: BTreeMap<Slot, Entry>,
    /// What this node had accepted for recent slots it then learned chosen with that value (at
    /// most `chosen_in_memory_max`; in memory only), to show in promises (see `on_prepare`).
    chosen_accepts: BTreeMap<Slot, AcceptedValue>,
    pub(crate) history: AcceptorHistory,
    /// The acceptor set a device last told us about; used to find peers before we know the log.
    pub(crate) hint: Option<AcceptorSet>,
    /// Nodes told of the group's news (see `subscribers.rs`).
    pub(crate) subscribers: BTreeSet<NodeId>,
    /// Document messages stored for the group.
    pub(crate) store: crate::acceptor::store::MessageStore,
    /// Snapshots stored for the group, and the compaction in force.
    pub(crate) snapshots: crate::acceptor::snapshots::Snapshots,
    /// Chosen values peer acceptors reported for slots this node has not learned.
    vouches: crate::vouches::Vouches,
    pub(crate) next_peer_sync_at: Time,
    /// How far apart rounds with peers are while nothing happens (see [`crate::idle`]).
    peer_sync_pace: IdlePace<PeerSyncProgress>,
    /// For an MLS group: the public view, at the epoch after every chosen entry this node knows.
    pub(crate) mls: Option<PublicView>,
    /// For an MLS group: everyone who was ever a member. They may read the log (commits are
    /// public), so a removed device learns of its removal; only current members may propose.
    pub(crate) former_members: BTreeSet<Vec<u8>>,
}

impl AcceptorGroup {
    /// Fresh state for a group this node did not host: it must recover before it votes.
    pub(crate) fn create(
        cx: &mut Context<'_>,
        genesis: GroupGenesis,
        hint: Option<AcceptorSet>,
        mls: Option<PublicView>,
    ) -> AcceptorGroup {
        cx.persist(vec![Record::Group { group: cx.group, genesis: genesis.clone() }]);
        let history = AcceptorHistory::new(&genesis);
        let mut group = AcceptorGroup {
            genesis,
            incarnation: Incarnation(0),
            phase: Phase::Choosing(Choosing::default()),
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            peer_incarnations: BTreeMap::new(),
            chosen_next: Slot(0),
            recent: BTreeMap::new(),
            chosen_accepts: BTreeMap::new(),
            history,
            hint,
            subscribers: BTreeSet::new(),
            store: crate::acceptor::store::MessageStore::default(),
            snapshots: crate::acceptor::snapshots::Snapshots::default(),
            vouches: crate::vouches::Vouches::default(),
            next_peer_sync_at: cx.now,
            peer_sync_pace: IdlePace::default(),
            former_members: BTreeSet::new(),
            mls,
        };
        group.remember_members();
        group.ask_peers(cx);
        group.advance_recovery(cx);
        group
    }

    /// State rebuilt from disk. A group whose incarnation was never written counts as fresh.
    pub(crate) fn restore(cx: &mut Context<'_>, restored: RestoredGroup) -> AcceptorGroup {
        let mut history = AcceptorHistory::new(&restored.genesis);
        let mut chosen_next = Slot(0);
        // The public view is rebuilt by replaying the chosen log from genesis: deterministic,
        // and it needs no MLS state of its own on disk.
        let mut mls = restored.genesis.group_info.as_ref().and_then(|info| PublicView::from_group_info(info).ok());
        let mut former_members: BTreeSet<Vec<u8>> = mls.iter().flat_map(PublicView::members).collect();
        let mut latest_committer = None;
        for (slot, entry) in &restored.chosen {
            assert_eq!(*slot, chosen_next, "invariant: an acceptor persists chosen entries contiguously");
            history.record(*slot, entry);
            if let (Some(view), Entry::Value(bytes)) = (mls.as_mut(), entry) {
                if let Some((_, committer)) = view.apply_commit(bytes).ok().and_then(|c| learning::compaction_and_committer(&c)) {
                    latest_committer = Some(committer);
                }
                former_members.extend(view.members());
                history.record_settings(*slot, view.settings().ok().and_then(|s| s.acceptors).as_ref());
            }
            chosen_next = slot.next();
        }
        let keep = cx.config.chosen_in_memory_max;
        let recent = restored.chosen.iter().rev().take(keep).map(|(s, e)| (*s, e.clone())).collect();
        let phase = match (restored.incarnation, restored.recovered) {
            (None, _) => Phase::Choosing(Choosing::default()),
            (Some(_), false) => Phase::Fencing(Fencing::default()),
            (Some(_), true) => Phase::Voting,
        };
        let incarnation = restored.incarnation.unwrap_or(Incarnation(0));
        let mut group = AcceptorGroup {
            genesis: restored.genesis,
            incarnation,
            phase,
            promised: restored.promised,
            accepted: restored.accepted.into_iter().filter(|(slot, _)| *slot >= chosen_next).collect(),
            peer_incarnations: restored.peer_incarnations,
            chosen_next,
            recent,
            chosen_accepts: BTreeMap::new(),
            history,
            hint: None,
            subscribers: crate::acceptor::subscribers::restore(&restored.mls),
            store: crate::acceptor::store::MessageStore::restore(restored.stored, restored.positions_below),
            snapshots: crate::acceptor::snapshots::Snapshots::restore(
                restored.snapshots,
                restored.compacted.map(|(compaction, _)| compaction),
                latest_committer,
                &restored.mls,
            ),
            vouches: crate::vouches::Vouches::default(),
            next_peer_sync_at: cx.now,
            peer_sync_pace: IdlePace::default(),
            mls,
            former_members,
        };
        group.pin_accepted_compactions();
        group
    }

    /// After a restart: pins the snapshot of a compaction this node accepted for its next slot
    /// (the pins themselves live in memory).
    fn pin_accepted_compactions(&mut self) {
        let (Some(view), Some(value)) = (self.mls.as_ref(), self.accepted.get(&self.chosen_next)) else { return };
        let Entry::Value(bytes) = &value.entry else { return };
        let aad = view.check_commit(bytes).map(|checked| checked.aad).unwrap_or_default();
        if let Some(compaction) = crate::snapshot::Compaction::from_aad(&aad) {
            self.snapshots.pin(self.chosen_next, compaction.hash);
        }
    }

    fn remember_members(&mut self) {
        if let Some(view) = &self.mls {
            self.former_members.extend(view.members());
        }
    }

    /// Whether `node` may read the log: a proposer or member now, or a member before.
    fn allows_reader(&self, node: NodeId) -> bool {
        self.allows_member(node) || self.former_members.contains(node.0.as_slice())
    }

    /// When this group next needs a timer.
    pub(crate) fn wake_at(&self) -> Time {
        self.next_peer_sync_at
    }

    /// The acceptor set in force after the chosen prefix this node knows.
    pub(crate) fn acceptors(&self) -> &AcceptorSet {
        self.history.latest()
    }

    /// For an MLS group: the epoch of the public view.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.mls.as_ref().map(PublicView::epoch)
    }

    /// A chosen entry this node holds in memory.
    pub(crate) fn recent_chosen(&self, slot: Slot) -> Option<&Entry> {
        self.recent.get(&slot)
    }

    pub(crate) fn peers(&self, me: NodeId) -> BTreeSet<NodeId> {
        let mut peers: BTreeSet<NodeId> = self.history.latest().members().iter().copied().collect();
        if let Some(hint) = &self.hint {
            peers.extend(hint.members().iter().copied());
        }
        peers.remove(&me);
        peers
    }

    /// Acceptors to copy stored messages and snapshots from: the other acceptors of the
    /// current set, and those of the [`HANDOVER_SETS_MAX`] sets before it, which hold what
    /// was stored before the group moved (a set may be replaced whole, and a device may still
    /// post to the set it knew). None once this node is no longer in the current set: nobody
    /// reads from it then, so it copies nothing more.
    pub(crate) fn copy_sources(&self, me: NodeId) -> Vec<NodeId> {
        if !self.history.latest().contains(me) {
            return Vec::new();
        }
        let mut sources = Vec::new();
        for set in self.history.latest_first().take(1 + HANDOVER_SETS_MAX) {
            for node in set.members() {
                if *node != me && !sources.contains(node) {
                    sources.push(*node);
                }
            }
        }
        sources
    }

    /// Whether `node` may propose and subscribe: a current MLS member, or a listed proposer.
    pub(crate) fn allows_member(&self, node: NodeId) -> bool {
        match &self.mls {
            Some(view) => view.members().iter().any(|name| name.as_slice() == node.0.as_slice()),
            None => self.genesis.allows_proposer(node),
        }
    }

    /// Whether `node` is a current member with the admin role (MLS groups only).
    pub(crate) fn is_admin(&self, node: NodeId) -> bool {
        self.mls.as_ref().is_some_and(|view| {
            view.members().iter().any(|name| name.as_slice() == node.0.as_slice())
                && view.roles().is_ok_and(|roles| roles.of(&node.0) == crate::mls::Role::Admin)
        })
    }

    pub(crate) fn is_known_acceptor(&self, node: NodeId) -> bool {
        self.history.ever_contained(node) || self.hint.as_ref().is_some_and(|h| h.contains(node))
    }

    // ----- inputs ---------------------------------------------------------------------------

    /// Routes one decoded message.
    pub(crate) fn on_message(&mut self, cx: &mut Context<'_>, from: NodeId, message: Message) -> Option<LoadWanted> {
        match message {
            Message::Sync { genesis, from_slot, acceptors } => return self.on_sync(cx, from, &genesis, from_slot, acceptors),
            Message::Prepare { ballot, from_slot } => return self.on_prepare(cx, from, ballot, from_slot),
            Message::Accept { ballot, slot, entry, value_hash, promised_by, proof } => {
                return self.on_accept(cx, from, Proposed { ballot, slot, entry, value_hash, proof }, &promised_by);
            }
            Message::Chosen { slot, entry } => self.on_chosen(cx, from, vec![(slot, entry)]),
            Message::Entries { entries, .. } => self.on_chosen(cx, from, entries),
            Message::IncarnationQuery { genesis } => self.on_incarnation_query(cx, from, &genesis),
            Message::IncarnationKnown { incarnation } => self.on_incarnation_known(cx, from, incarnation),
            Message::Recover { incarnation, genesis } => self.on_recover(cx, from, incarnation, &genesis),
            Message::Recovery { incarnation, promised, accepted, chosen_next, incarnations } => {
                self.on_recovery(cx, from, incarnation, PeerReport { promised, accepted, chosen_next, incarnations });
            }
            Message::CatchUp { from_slot } => {
                if !self.is_known_acceptor(from) {
                    cx.reject(Rejection::Unauthorised);
                    return None;
                }
                return self.serve(cx, from, from_slot, false);
            }
            Message::EpochDigest { digest } => self.relay_digest(cx, from, digest),
            Message::OpenMailbox { .. }
            | Message::PostKeyPackage { .. }
            | Message::PostWelcome { .. }
            | Message::FetchMailbox { .. }
            | Message::MailboxContents { .. }
            | Message::MailboxUnknown { .. } => cx.reject(Rejection::Unauthorised),
            Message::Application { sender, message } => self.relay_application(cx, from, sender, message),
            Message::Post { messages } => self.on_posts(cx, from, messages),
            Message::Fetch { after } => self.on_fetch(cx, from, after, false),
            Message::Page { after, messages, more } => self.on_peer_page(cx, from, after, messages, more),
            Message::FetchIds { after } => self.on_fetch(cx, from, after, true),
            Message::Ids { after, ids, more } => self.on_peer_ids(cx, from, after, ids, more),
            Message::SnapshotChunk { hash, index, count, bytes } => self.on_snapshot_chunk(cx, from, hash, index, count, bytes),
            Message::FetchSnapshot { hash, index } => self.on_fetch_snapshot(cx, from, hash, index),
            Message::SnapshotConfirmed { hash } => self.on_snapshot_confirmed(cx, from, hash),
            Message::Promise { .. }
            | Message::Accepted { .. }
            | Message::Rejected { .. }
            | Message::UnknownGroup
            | Message::GroupRefused { .. }
            | Message::PostAck { .. }
            | Message::SnapshotStored { .. }
            | Message::PostRefused { .. } => {
                cx.reject(Rejection::Unauthorised);
            }
        }
        None
    }

    /// Relays a member's epoch digest to the group's other subscribers; nothing is stored.
    fn relay_digest(&mut self, cx: &mut Context<'_>, from: NodeId, digest: crate::mls::SignedDigest) {
        if self.mls.is_none() || !self.allows_member(from) || digest.signer != from.0 {
            return cx.reject(Rejection::Unauthorised);
        }
        let others: Vec<NodeId> = self.subscribers.iter().copied().filter(|s| *s != from).collect();
        cx.send_all(&others, &Message::EpochDigest { digest });
    }

    /// Relays a member's application message to the group's other current members. Only
    /// current members who may write are relayed, and only MLS PrivateMessages of a recent
    /// epoch; nothing is stored (document sync will keep them).
    fn relay_application(&mut self, cx: &mut Context<'_>, from: NodeId, sender: NodeId, message: Vec<u8>) {
        let Some(view) = &self.mls else { return cx.reject(Rejection::Unauthorised) };
        let skip_membership = canary!(cx.config, RemovedMemberStillAccepted);
        // Readers too: they may ask for a compaction (members refuse anything else of theirs).
        let member = view.members().iter().any(|name| name.as_slice() == from.0.as_slice());
        if sender != from || (!skip_membership && !member) {
            return cx.reject(Rejection::Unauthorised);
        }
        match view.check_application(&message, cx.config.mls_past_epochs_max) {
            Ok(_) => {}
            Err(crate::mls::MlsError::FutureEpoch(_)) => return cx.reject(Rejection::NotReady),
            Err(crate::mls::MlsError::TooOld(_)) => return cx.reject(Rejection::Duplicate),
            Err(_) => return cx.reject(Rejection::Invalid),
        }
        let others: Vec<NodeId> = self.member_subscribers().into_iter().filter(|s| *s != from).collect();
        cx.send_all(&others, &Message::Application { sender, message });
    }

    /// Subscribers that are current members of the MLS group.
    pub(crate) fn member_subscribers(&self) -> Vec<NodeId> {
        let Some(view) = &self.mls else { return Vec::new() };
        let members: BTreeSet<Vec<u8>> = view.members().into_iter().collect();
        self.subscribers.iter().copied().filter(|s| members.contains(s.0.as_slice())).collect()
    }

    fn on_sync(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        genesis: &GroupGenesis,
        from_slot: Slot,
        acceptors: AcceptorSet,
    ) -> Option<LoadWanted> {
        if *genesis != self.genesis || !acceptors.is_well_formed(cx.config.acceptors_max) {
            cx.reject(Rejection::Invalid);
            return None;
        }
        if !self.allows_reader(from) {
            cx.reject(Rejection::Unauthorised);
            return None;
        }
        if self.hint.as_ref() != Some(&acceptors) && !matches!(self.phase, Phase::Voting) {
            self.hint = Some(acceptors);
            self.ask_peers(cx);
        }
        let load = self.serve(cx, from, from_slot, true);
        self.subscribe(cx, from);
        load
    }

    fn on_prepare(&mut self, cx: &mut Context<'_>, from: NodeId, ballot: Ballot, from_slot: Slot) -> Option<LoadWanted> {
        if !self.allows_member(from) || ballot.proposer != from {
            cx.reject(Rejection::Unauthorised);
            return None;
        }
        if !matches!(self.phase, Phase::Voting) {
            cx.reject(Rejection::NotReady);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::NotReady, promised: self.promised });
            return None;
        }
        let mut wanted = None;
        let accepted = if from_slot < self.chosen_next {
            // A stale proposer: answer with what is chosen so it catches up in one round trip.
            wanted = self.serve(cx, from, from_slot, true);
            // A learner that must hear a chosen value from f + 1 acceptors may find that only
            // this one (and liars) know it. So we promise as well, showing what we accepted for
            // the slot, and a proposer can finish it again with the same value and tell
            // everyone. Only when the promise is then complete: the slot is our last chosen one
            // and we accepted nothing after it (a promise shows the prepared slot alone, see
            // the device's `on_promise`).
            let complete = from_slot.next() == self.chosen_next && self.accepted.range(self.chosen_next..).next().is_none();
            if self.history.at(from_slot).byzantine_tolerated() == 0 || !complete {
                return wanted;
            }
            cov_mark::hit!(acceptor_promises_for_a_slot_it_knows_chosen);
            self.chosen_accepts.get(&from_slot).map(|value| vec![(from_slot, value.clone())]).unwrap_or_default()
        } else {
            self.accepted.range(from_slot..).map(|(s, v)| (*s, v.clone())).collect()
        };
        if ballot < self.promised {
            cx.reject(Rejection::StaleBallot);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::BallotTooLow, promised: self.promised });
            return wanted;
        }
        if ballot > self.promised {
            self.promised = ballot;
            if !canary!(cx.config, PromiseNotPersisted) {
                cx.persist(vec![Record::Promised { group: cx.group, ballot }]);
            }
        }
        cx.send(from, Message::Promise { ballot, incarnation: self.incarnation, accepted });
        wanted
    }

    fn on_accept(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        proposed: Proposed,
        promised_by: &[(NodeId, Incarnation)],
    ) -> Option<LoadWanted> {
        let Proposed { ballot, slot, entry, value_hash, proof } = proposed;
        if !self.allows_member(from) || ballot.proposer != from {
            cx.reject(Rejection::Unauthorised);
            return None;
        }
        if let Some(view) = &self.mls
            && !view.verifies(&from.0, &crate::wire::accept_signed_bytes(cx.group, ballot, slot, &value_hash), &proof)
        {
            cx.reject(Rejection::Invalid);
            return None;
        }
        if entry.encoded_len() > cx.config.entry_bytes_max || entry.hash() != value_hash || !self.entry_is_well_formed(cx, &entry)
        {
            cx.reject(Rejection::Invalid);
            return None;
        }
        if !matches!(self.phase, Phase::Voting) {
            cx.reject(Rejection::NotReady);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::NotReady, promised: self.promised });
            return None;
        }
        if slot < self.chosen_next {
            let chosen_again = self.recent.get(&slot).is_some_and(|chosen| chosen.hash() == value_hash);
            if self.history.at(slot).byzantine_tolerated() > 0 && chosen_again && ballot >= self.promised {
                // The value is chosen already: accepting it again is safe, and lets a proposer
                // finish the slot where too few acceptors know it (see `on_prepare`).
                cov_mark::hit!(acceptor_acknowledges_a_chosen_value_again);
                if ballot > self.promised {
                    self.promised = ballot;
                    cx.persist(vec![Record::Promised { group: cx.group, ballot }]);
                }
                cx.send(from, Message::Accepted { ballot, slot, value_hash });
                return None;
            }
            cov_mark::hit!(accept_for_chosen_slot_answered_with_chosen_value);
            cx.reject(Rejection::Duplicate);
            return self.serve(cx, from, slot, false);
        }
        if ballot < self.promised {
            cx.reject(Rejection::StaleBallot);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::BallotTooLow, promised: self.promised });
            return None;
        }
        if slot.0 >= self.chosen_next.0 + cx.config.accepted_window_slots {
            cx.reject(Rejection::OverLimit);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::OutsideWindow, promised: self.promised });
            return None;
        }
        if let Some(reason) = self.refuses_value(cx, slot, &entry) {
            cx.send(from, Message::Rejected { ballot, reason, promised: self.promised });
            return None;
        }
        if self.counts_a_fenced_promise(cx.me, promised_by) {
            cov_mark::hit!(accept_counting_fenced_incarnation_refused);
            cx.reject(Rejection::StaleIncarnation);
            cx.send(from, Message::Rejected { ballot, reason: RejectReason::StaleIncarnation, promised: self.promised });
            return None;
        }
        if let Some(existing) = self.accepted.get(&slot).filter(|v| v.ballot == ballot) {
            if existing.value_hash != value_hash {
                cx.reject(Rejection::Equivocation);
                return None;
            }
            // A retransmission: the accept is already durable, so answering again is safe.
            cx.reject(Rejection::Duplicate);
            cx.send(from, Message::Accepted { ballot, slot, value_hash });
            return None;
        }
        self.promised = ballot;
        self.accepted.insert(slot, AcceptedValue { ballot, value_hash, entry: entry.clone(), proof: proof.clone() });
        let record = Record::Accepted { group: cx.group, slot, ballot, value_hash, entry, proof };
        if canary!(cx.config, SendBeforePersist) {
            cx.send(from, Message::Accepted { ballot, slot, value_hash });
            cx.persist(vec![record]);
        } else {
            cx.persist(vec![record]);
            cx.send(from, Message::Accepted { ballot, slot, value_hash });
        }
        None
    }

    /// For an MLS group, whether the value is refused: it is checked against the epoch after
    /// every earlier slot, so only at this node's chosen frontier, and must be a commit a member
    /// would accept. The sender need not be the committer: a new leader must re-propose the value
    /// it adopted from promises, whoever made it; the commit's signature names its committer and
    /// the role check applies to that committer. (Groups of opaque values accept anything
    /// well-formed.)
    fn refuses_value(&mut self, cx: &mut Context<'_>, slot: Slot, entry: &Entry) -> Option<RejectReason> {
        let view = self.mls.as_ref()?;
        if slot != self.chosen_next {
            cx.reject(Rejection::NotReady);
            return Some(RejectReason::NotReady);
        }
        if canary!(cx.config, AcceptorSkipsCommitValidation) {
            return None;
        }
        let valid = match entry {
            Entry::Noop => true,
            Entry::Value(bytes) => match view.check_commit(bytes) {
                Ok(checked) => match crate::snapshot::Compaction::from_aad(&checked.aad) {
                    Some(compaction) => return self.refuses_compaction(cx, slot, &compaction),
                    None => true,
                },
                Err(crate::mls::MlsError::Panicked) => {
                    // Contained: checking runs on `&self`, so the view is as it was.
                    cov_mark::hit!(acceptor_refuses_a_commit_its_mls_library_panicked_on);
                    false
                }
                Err(_) => false,
            },
            // MLS groups change acceptors by an admin's commit to their settings, which is
            // signed; a bare `SetAcceptors` entry is not, so anyone could forge one.
            Entry::SetAcceptors(_) => false,
        };
        if valid {
            return None;
        }
        cov_mark::hit!(acceptor_refuses_an_invalid_commit);
        cx.reject(Rejection::Invalid);
        Some(RejectReason::InvalidValue)
    }

    fn entry_is_well_formed(&self, cx: &Context<'_>, entry: &Entry) -> bool {
        match entry {
            Entry::SetAcceptors(set) => set.is_well_formed(cx.config.acceptors_max),
            Entry::Noop | Entry::Value(_) => true,
        }
    }

    /// Whether `promised_by` counts a promise of an incarnation (ours or a peer's) older than the
    /// one recorded: that incarnation may have forgotten the promise.
    fn counts_a_fenced_promise(&self, me: NodeId, promised_by: &[(NodeId, Incarnation)]) -> bool {
        promised_by.iter().any(|(node, incarnation)| {
            if *node == me {
                return *incarnation != self.incarnation;
            }
            self.peer_incarnations.get(node).is_some_and(|recorded| incarnation < recorded)
        })
    }

    /// Answers "chosen entries from `from_slot`", from memory or through a disk load.
    fn serve(&mut self, cx: &mut Context<'_>, to: NodeId, from_slot: Slot, always_answer: bool) -> Option<LoadWanted> {
        let accepted_pending = self.accepted.range(self.chosen_next..).next().is_some();
        if from_slot >= self.chosen_next {
            if always_answer {
                cx.send(to, Message::Entries { entries: Vec::new(), chosen_next: self.chosen_next, accepted_pending });
            }
            return None;
        }
        let in_memory = self.recent.first_key_value().is_some_and(|(first, _)| *first <= from_slot);
        if !in_memory {
            let count = cx.config.catch_up_entries_max;
            return Some(LoadWanted { to, query: LoadQuery::ChosenEntries { group: cx.group, from: from_slot, count } });
        }
        let entries = page(self.recent.range(from_slot..).map(|(s, e)| (*s, e)), cx.config);
        cx.send(to, Message::Entries { entries, chosen_next: self.chosen_next, accepted_pending });
        None
    }

    /// Answers a load issued by [`AcceptorGroup::serve`].
    pub(crate) fn serve_loaded(&self, cx: &mut Context<'_>, to: NodeId, entries: Vec<(Slot, Entry)>) {
        let accepted_pending = self.accepted.range(self.chosen_next..).next().is_some();
        let entries = page(entries.iter().map(|(s, e)| (*s, e)), cx.config);
        cx.send(to, Message::Entries { entries, chosen_next: self.chosen_next, accepted_pending });
    }

    /// What the peer-sync pace counts as progress.
    fn peer_sync_progress(&self) -> PeerSyncProgress {
        PeerSyncProgress {
            chosen_next: self.chosen_next,
            positions_given: self.store.positions_given(),
            compaction: self.snapshots.latest.as_ref().map(|latest| latest.hash),
        }
    }

    /// Whether there is work the rounds with peers help finish, so they keep their base pace:
    /// a recovery, a slot accepted but not known chosen, a snapshot to fetch.
    fn needs_rounds(&self) -> bool {
        !matches!(self.phase, Phase::Voting)
            || self.accepted.range(self.chosen_next..).next().is_some()
            || self.snapshots.is_fetching()
    }

    /// After an input: if rounds were slowed down and the group moved since the last one, the
    /// next comes within the base interval.
    pub(crate) fn quicken_peer_syncs_on_news(&mut self, cx: &Context<'_>) {
        if self.peer_sync_pace.woken(&self.peer_sync_progress()) {
            cov_mark::hit!(acceptor_quickens_its_peer_syncs_on_news);
            self.next_peer_sync_at = self.next_peer_sync_at.min(cx.now.plus_ms(cx.config.peer_sync_interval_ms));
        }
    }

    /// Periodic work: retry recovery, or ask peers for chosen entries we may have missed.
    pub(crate) fn on_timer(&mut self, cx: &mut Context<'_>) {
        if cx.now < self.next_peer_sync_at {
            return;
        }
        // Ask every peer for chosen entries we lack (peers answer only if they have more).
        let message = Message::CatchUp { from_slot: self.chosen_next };
        let peers: Vec<NodeId> = self.peers(cx.me).into_iter().collect();
        cx.send_all(&peers, &message);
        let (base, ceiling) = (cx.config.peer_sync_interval_ms, cx.config.idle_peer_sync_interval_max_ms);
        let interval = self.peer_sync_pace.next_interval(self.peer_sync_progress(), self.needs_rounds(), base, ceiling);
        if interval > base {
            cov_mark::hit!(acceptor_slows_its_peer_syncs_while_idle);
        }
        self.next_peer_sync_at = cx.now.plus_ms(interval);
        if !matches!(self.phase, Phase::Voting) {
            self.ask_peers(cx);
        }
        self.fetch_from_peers(cx);
        self.fetch_snapshot_from_peers(cx);
    }
}

/// What an acceptor's rounds with its peers count as progress in a group (see [`crate::idle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerSyncProgress {
    chosen_next: Slot,
    positions_given: u64,
    compaction: Option<crate::snapshot::SnapshotHash>,
}

/// What an accept proposes.
pub(crate) struct Proposed {
    ballot: Ballot,
    slot: Slot,
    entry: Entry,
    value_hash: crate::ids::ValueHash,
    proof: Vec<u8>,
}

/// A disk read the group needs before it can answer `to`.
#[derive(Debug)]
pub(crate) struct LoadWanted {
    pub(crate) to: NodeId,
    pub(crate) query: LoadQuery,
}
