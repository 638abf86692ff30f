//! A device's side of compaction: making a snapshot when history grows, and catching up from
//! one when it lacks messages a compaction covers.
//!
//! ```text
//!   making:    Idle --threshold, my turn, nothing of mine in flight--> Storing
//!              Storing --write quorum acknowledged the snapshot--> Committing (a Compact intent)
//!              Committing --commit chosen (ours or a newer one)--> Idle
//!   catching up: a chosen compaction covers messages we never applied --> fetch its chunks,
//!              check the hash, open with the key, import, count the covered ids as applied
//! ```
//!
//! The snapshot holds exactly the covered messages: the compactor starts only when its own
//! messages are all safe and closed and its document holds no update waiting for a
//! predecessor, so "applied" and "in the document" are the same set. One member is chosen
//! deterministically (by a hash of the latest snapshot's name and its own); each next one in
//! that order waits `compaction_takeover_ms` longer, so another takes over if it stays silent.

use std::collections::{BTreeMap, BTreeSet};

use crate::canary::canary;
use crate::context::Context;
use crate::device::group::{DeviceGroup, Proposal};
use crate::device::membership::Intent;
use crate::document::Document;
use crate::ids::NodeId;
use crate::io::{Event, Rejection};
use crate::snapshot::{Assembly, Compaction, ContentKey, KeyedCompaction, SnapshotHash, open, seal, split};
use crate::storage::Record;
use crate::time::{Time, earliest};
use crate::updates::UpdateId;
use crate::wire::Message;

/// A device's compaction state for one group.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    /// The latest compaction chosen in the log, with its key.
    pub(crate) latest: Option<KeyedCompaction>,
    /// Our own compaction under way.
    making: Option<Making>,
    /// Fetching the latest snapshot because we lack messages it covers, or to confirm it.
    pub(super) catching_up: Option<CatchingUp>,
    /// When we first saw uncovered history pass the threshold (our turn is counted from it).
    due_since: Option<Time>,
    /// Bytes of other members' updates applied since the latest compaction (an estimate: what
    /// the snapshot did not cover is counted as covered).
    uncovered_bytes: u64,
    /// The epoch each applied message not covered yet was sealed in (ours: written in), at
    /// most [`SEALED_TRACKED_MAX`].
    sealed_in: BTreeMap<UpdateId, u64>,
    /// Messages sealed before this epoch are unreadable to some member (one added in it, or
    /// one that asked), so they make a compaction due however few they are.
    pub(crate) unreadable_before: u64,
    /// Stored messages we cannot decrypt and no compaction we know covers, at most
    /// [`WANTED_TRACKED_MAX`]: we ask for a compaction until one covers them.
    wanted: BTreeSet<UpdateId>,
    /// The latest epoch before which we cannot decrypt.
    wanted_before: u64,
    /// When we may next ask the others for a compaction.
    next_request_at: Time,
    /// The latest chosen compaction, if its key did not unwrap or its snapshot (matching its
    /// name) did not open or import: it is not fetched again, and a compaction covering at
    /// least as much is due, so joiners get a snapshot they can open.
    pub(super) unusable: Option<Compaction>,
    /// Our confirmation of the latest snapshot, if we opened it (see `confirming.rs`).
    pub(super) confirming: Option<super::confirming::Confirming>,
}

/// Uncovered messages whose epochs a compactor tracks (beyond it the count threshold is passed
/// anyway, as long as it is below this).
pub(crate) const SEALED_TRACKED_MAX: usize = 1 << 16;

/// Undecryptable messages a member tracks while it asks for a compaction (beyond it, it asks
/// until those it tracks are covered, and the compaction that covers them covers the rest).
const WANTED_TRACKED_MAX: usize = 4_096;

/// A snapshot we made, being stored and then committed.
#[derive(Debug)]
struct Making {
    keyed: KeyedCompaction,
    /// The compaction in force when the snapshot was taken.
    base: Option<SnapshotHash>,
    chunks: Vec<Vec<u8>>,
    /// Acceptors that hold every chunk.
    stored_by: BTreeSet<NodeId>,
    resend_at: Time,
    /// Windows of chunks sent again since the commit was queued (see `resend_snapshot_to`).
    resent: usize,
    /// The compaction intent is queued.
    committing: bool,
}

/// The latest snapshot, being fetched.
#[derive(Debug)]
pub(super) struct CatchingUp {
    pub(super) assembly: Assembly,
    /// Whether we lack messages it covers (else we fetch it only to confirm it).
    pub(super) import: bool,
    ask_at: Time,
    /// Turns through the acceptors, so each chunk is asked of another one next time.
    round: usize,
}

impl Compactor {
    /// The state rebuilt from disk: the latest compaction, the applied messages it does not
    /// cover, and the messages we could not decrypt that it does not cover either (we go on
    /// asking for those at once). The applied messages' epochs were in memory, so each counts as
    /// sealed in epoch 0: the next member added makes them due. (Catching up is decided by the
    /// group.)
    pub(crate) fn restore(
        latest: Option<KeyedCompaction>,
        applied: impl Iterator<Item = UpdateId>,
        undecryptable: impl Iterator<Item = (UpdateId, u64)>,
        confirming: Option<super::confirming::Confirming>,
    ) -> Compactor {
        let covered = |id: &UpdateId| latest.as_ref().is_some_and(|l| l.compaction.covered.contains(id));
        let sealed_in = applied.filter(|id| !covered(id)).take(SEALED_TRACKED_MAX).map(|id| (id, 0)).collect();
        let mut wanted = BTreeSet::new();
        let mut wanted_before = 0;
        for (id, epoch) in undecryptable.filter(|(id, _)| !covered(id)).take(WANTED_TRACKED_MAX) {
            wanted.insert(id);
            wanted_before = wanted_before.max(epoch + 1);
        }
        if !wanted.is_empty() {
            cov_mark::hit!(device_restarts_still_wanting_a_compaction);
        }
        Compactor { latest, sealed_in, wanted, wanted_before, confirming, ..Compactor::default() }
    }

    /// Whether `id` is a stored message we know we cannot read, waiting for a snapshot.
    pub(crate) fn awaits_snapshot_of(&self, id: &UpdateId) -> bool {
        self.wanted.contains(id)
    }

    /// When the compactor next needs the timer.
    pub(crate) fn wake_at(&self) -> Option<Time> {
        let making = self.making.as_ref().filter(|m| !m.committing).map(|m| m.resend_at);
        let confirming = self.confirming.as_ref().map(super::confirming::Confirming::wake_at);
        earliest(earliest(making, self.catching_up.as_ref().map(|c| c.ask_at)), confirming)
    }

    /// Our own message `id` was sealed (again) in `epoch`: readers take the latest copy, so
    /// that is the epoch that decides who can read it.
    pub(crate) fn note_sealed(&mut self, id: UpdateId, epoch: u64) {
        if let Some(sealed) = self.sealed_in.get_mut(&id) {
            *sealed = epoch;
        }
    }

    /// Whether a snapshot is being fetched to catch up.
    pub(crate) fn is_catching_up(&self) -> bool {
        self.catching_up.as_ref().is_some_and(|c| c.import)
    }
}

impl DeviceGroup {
    /// An applied message, sealed in `epoch`, that no compaction covers yet.
    pub(super) fn note_uncovered(&mut self, id: UpdateId, epoch: u64, bytes: usize) {
        let compactor = self.compactor();
        compactor.uncovered_bytes += bytes as u64;
        if compactor.sealed_in.len() < SEALED_TRACKED_MAX {
            compactor.sealed_in.entry(id).or_insert(epoch);
        }
    }

    pub(super) fn compactor(&mut self) -> &mut Compactor {
        &mut self.replica.as_mut().expect("invariant: MLS groups have a replica").compactor
    }

    /// Compaction work on the group's timer.
    pub(super) fn compaction_timer(&mut self, cx: &mut Context<'_>) {
        if self.replica.is_none() || !self.mls.as_ref().is_some_and(|mls| mls.member.is_active()) {
            return;
        }
        // After a restart, catching up and confirming start over from what is durable.
        self.catch_up_if_behind(cx);
        self.confirming_timer(cx);
        self.ask_for_a_compaction(cx);
        self.ask_for_chunks(cx);
        self.resend_chunks(cx);
        self.start_compaction_when_due(cx);
    }

    /// Starts our compaction if history passed the threshold, it is our turn, and nothing of
    /// ours is in flight (so the snapshot holds exactly what we applied).
    fn start_compaction_when_due(&mut self, cx: &mut Context<'_>) {
        let (Some(mls), Some(replica)) = (self.mls.as_ref(), self.replica.as_mut()) else { return };
        let compactor = &mut replica.compactor;
        let covered = compactor.latest.as_ref().map_or(0, |l| l.compaction.covered.count());
        let uncovered = replica.applied.count().saturating_sub(covered);
        let unreadable_to_someone = compactor.sealed_in.values().any(|epoch| *epoch < compactor.unreadable_before);
        // The latest snapshot cannot be opened: replace it (once we hold all it covers).
        let repair = compactor.unusable.as_ref().is_some_and(|unusable| replica.applied.includes(&unusable.covered));
        let due = uncovered >= cx.config.compact_after_messages
            || compactor.uncovered_bytes >= cx.config.compact_after_bytes
            || unreadable_to_someone
            || repair;
        if !due || (uncovered == 0 && !repair) {
            compactor.due_since = None;
            return;
        }
        let since = *compactor.due_since.get_or_insert(cx.now);
        if compactor.making.is_some() || compactor.is_catching_up() || mls.may_write(cx.group, cx.me).is_err() {
            return;
        }
        // Members that could not unwrap the latest key still know it: they agree on the order.
        let unusable = compactor.unusable.as_ref().map(|u| u.hash);
        let latest = unusable.or(compactor.latest.as_ref().map(|l| l.compaction.hash)).map_or([0; 32], |hash| hash.0);
        let turn = mls.compaction_turn(&latest, &cx.me.0);
        if cx.now < since.plus_ms(cx.config.compaction_takeover_ms.saturating_mul(turn)) {
            return;
        }
        let quiet = replica.outbox.open.is_none() && replica.outbox.unsafe_len() == 0;
        let own_commit = mls.pending.is_some() || self.queue.iter().any(|p| matches!(p, Proposal::Intent(_)));
        if (!quiet && !canary!(cx.config, CompactionCoversUnsafeMessages)) || own_commit || replica.doc.has_pending() {
            cov_mark::hit!(compactor_waits_until_its_own_messages_are_safe);
            return;
        }
        let Ok(snapshot) = replica.doc.export_snapshot() else { return };
        let mut key = [0; 32];
        cx.rng.fill(&mut key);
        let key = ContentKey(key);
        let ciphertext = seal(&key, &snapshot);
        if ciphertext.len() > cx.config.snapshot_bytes_max {
            cov_mark::hit!(compactor_skips_a_snapshot_over_the_limit);
            compactor.due_since = Some(cx.now);
            return;
        }
        let compaction = Compaction {
            hash: SnapshotHash::of(&ciphertext),
            size: ciphertext.len() as u64,
            chunks: 0,
            covered: replica.applied.covered(),
            wrapped_key: Vec::new(),
        };
        let chunks = split(&ciphertext, cx.config.snapshot_chunk_bytes);
        let compaction = Compaction { chunks: chunks.len() as u32, ..compaction };
        // The commit carries the covered set, and a Welcome carries it again: both must fit an
        // entry (a set this large means many updates arrived out of order; they fill in later).
        if compaction.to_aad().len() + 64 > cx.config.entry_bytes_max / 2 {
            cov_mark::hit!(compactor_waits_while_the_covered_set_is_too_large);
            return;
        }
        cov_mark::hit!(compactor_starts_a_snapshot);
        let base = compactor.latest.as_ref().map(|latest| latest.compaction.hash);
        compactor.making = Some(Making {
            keyed: KeyedCompaction { compaction, key },
            base,
            chunks,
            stored_by: BTreeSet::new(),
            resend_at: cx.now,
            resent: 0,
            committing: false,
        });
        if canary!(cx.config, DeleteBeforeSnapshotStored) {
            self.commit_compaction(cx);
        }
        self.resend_chunks(cx);
    }

    /// Sends our snapshot's chunks to the acceptors that have not stored it.
    fn resend_chunks(&mut self, cx: &mut Context<'_>) {
        let acceptors = self.acceptors().members().to_vec();
        let Some(making) = self.compactor().making.as_mut().filter(|m| !m.committing && cx.now >= m.resend_at) else { return };
        making.resend_at = cx.now.plus_ms(cx.config.post_resend_ms);
        let hash = making.keyed.compaction.hash;
        let count = making.chunks.len() as u32;
        let waiting: Vec<NodeId> = acceptors.into_iter().filter(|a| !making.stored_by.contains(a)).collect();
        for (index, bytes) in making.chunks.iter().enumerate().take(cx.config.snapshot_chunks_per_round_max) {
            let chunk = Message::SnapshotChunk { hash, index: index as u32, count, bytes: bytes.clone() };
            cx.send_all(&waiting, &chunk);
        }
    }

    /// An acceptor answered `NotReady` while our compaction's commit is on its way. It may lack
    /// our snapshot although it said it stored it: an acceptor that learns a compaction chosen
    /// drops every snapshot but the ones in force, and one still catching up the log takes ours
    /// for one that compaction superseded. Only we can send it again (peers dropped it too, or
    /// never held it), so we do, at the resend pace, a window of chunks at a time.
    pub(super) fn resend_snapshot_to(&mut self, cx: &mut Context<'_>, acceptor: NodeId) {
        let Some(replica) = self.replica.as_mut() else { return };
        let Some(making) = replica.compactor.making.as_mut().filter(|m| m.committing && cx.now >= m.resend_at) else { return };
        cov_mark::hit!(compactor_sends_its_snapshot_again_to_an_acceptor_not_ready);
        making.resend_at = cx.now.plus_ms(cx.config.post_resend_ms);
        making.stored_by.remove(&acceptor);
        let (hash, count) = (making.keyed.compaction.hash, making.chunks.len() as u32);
        let window = cx.config.snapshot_chunks_per_round_max.max(1);
        let first = making.resent * window % making.chunks.len().max(1);
        making.resent += 1;
        for (index, bytes) in making.chunks.iter().enumerate().skip(first).take(window) {
            cx.send(acceptor, Message::SnapshotChunk { hash, index: index as u32, count, bytes: bytes.clone() });
        }
    }

    /// An acceptor holds our whole snapshot. Once a write quorum does, and a quorum of the log
    /// (which must hold it to accept the commit), commit it. Waiting for the log's quorum keeps
    /// a group whose log has lost its quorum from a commit that would stay pending, and with it
    /// our document messages, which cannot be sealed while a commit of ours is undecided.
    pub(super) fn on_snapshot_stored(&mut self, cx: &mut Context<'_>, from: NodeId, hash: SnapshotHash) {
        let acceptors = self.acceptors().clone();
        let needed = cx.config.write_quorum.of(acceptors.members().len()).max(acceptors.quorum_size());
        let Some(making) = self.compactor().making.as_mut().filter(|m| m.keyed.compaction.hash == hash) else {
            return cx.reject(Rejection::Duplicate);
        };
        if !acceptors.contains(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        making.stored_by.insert(from);
        if making.stored_by.len() >= needed && !making.committing {
            self.commit_compaction(cx);
        }
    }

    fn commit_compaction(&mut self, cx: &mut Context<'_>) {
        let Some(making) = self.compactor().making.as_mut() else { return };
        making.committing = true;
        let intent = Intent::Compact(making.keyed.clone(), making.base);
        if self.queue.len() >= cx.config.proposals_queued_max {
            self.compactor().making = None;
            return;
        }
        self.queue.push_back(Proposal::Intent(intent));
        self.drive(cx);
    }

    /// Our compaction intent could not become a commit (a newer compaction covers more).
    pub(super) fn compaction_abandoned(&mut self) {
        cov_mark::hit!(compactor_abandons_a_superseded_snapshot);
        self.compactor().making = None;
    }

    /// A compaction was chosen in the log (`ours`: we committed it). `Err`: its key did not
    /// unwrap (the committer sent a key for another snapshot); it is counted, and replaced.
    pub(super) fn on_compaction_chosen(&mut self, cx: &mut Context<'_>, chosen: Result<KeyedCompaction, Compaction>, ours: bool) {
        let Some(replica) = self.replica.as_mut() else { return };
        let compactor = &mut replica.compactor;
        let compaction = match &chosen {
            Ok(keyed) => &keyed.compaction,
            Err(compaction) => compaction,
        };
        if compactor.latest.as_ref().is_some_and(|latest| !compaction.covered.includes(&latest.compaction.covered)) {
            // Acceptors refuse such a commit; only a faulty quorum could have chosen it.
            return cx.reject(Rejection::Invalid);
        }
        // Ours, opened with the key we wrapped: what we confirm if nobody else can.
        let opened_ours = compactor
            .making
            .as_ref()
            .filter(|m| ours && m.keyed.compaction.hash == compaction.hash)
            .is_some_and(|m| open(&m.keyed.key, &m.chunks.concat()).is_some());
        if compactor.making.as_ref().is_some_and(|m| !m.committing || m.keyed.compaction.hash == compaction.hash) {
            // Ours is done, or one still being stored is outdated by this one (a queued one is
            // abandoned when its commit would be made).
            compactor.making = None;
        }
        compactor.due_since = None;
        compactor.uncovered_bytes = 0;
        compactor.sealed_in.retain(|id, _| !compaction.covered.contains(id));
        compactor.wanted.retain(|id| !compaction.covered.contains(id));
        compactor.confirming = None;
        // Acceptors drop an outdated snapshot: fetching one would never finish.
        compactor.catching_up.take_if(|c| c.assembly.hash != compaction.hash);
        let keyed = match chosen {
            Ok(keyed) => keyed,
            Err(compaction) => {
                cov_mark::hit!(device_replaces_a_compaction_whose_key_does_not_unwrap);
                compactor.unusable = Some(compaction);
                return cx.reject(Rejection::Invalid);
            }
        };
        if compactor.unusable.as_ref().is_some_and(|unusable| keyed.compaction.covered.includes(&unusable.covered)) {
            compactor.unusable = None;
        }
        cx.persist(vec![Record::Compacted { group: cx.group, compaction: keyed.compaction.clone(), key: Some(keyed.key) }]);
        let hash = keyed.compaction.hash;
        compactor.latest = Some(keyed);
        self.catch_up_if_behind(cx);
        self.start_confirming(cx, hash, ours, opened_ours);
    }

    /// A stored message sealed in `epoch` is too old for us to decrypt. Unless a compaction
    /// we know of covers it, ask the others to make one: now, and on the timer (at most once per
    /// sync interval) until one covers it, so a request nobody was online to hear is repeated.
    pub(super) fn want_compaction(&mut self, cx: &mut Context<'_>, id: UpdateId, epoch: u64) {
        let Some(replica) = self.replica.as_mut() else { return };
        let compactor = &mut replica.compactor;
        if compactor.latest.as_ref().is_some_and(|latest| latest.compaction.covered.contains(&id)) {
            return;
        }
        // Durable, since our cursor moves past the message: a restart goes on asking. Read from
        // a page, it goes in the page's one batch, which comes before the cursor's.
        if compactor.wanted.len() < WANTED_TRACKED_MAX && compactor.wanted.insert(id) {
            let record = Record::Undecryptable { group: cx.group, id, epoch };
            match self.page_writes.as_mut() {
                Some(page) => page.records.push(record),
                None => cx.persist(vec![record]),
            }
        }
        compactor.wanted_before = compactor.wanted_before.max(epoch + 1);
        self.ask_for_a_compaction(cx);
    }

    /// Asks the members for a compaction of what we cannot decrypt, at most once per sync
    /// interval, while we know of such messages.
    fn ask_for_a_compaction(&mut self, cx: &mut Context<'_>) {
        let compactor = self.compactor();
        if compactor.wanted.is_empty() || cx.now < compactor.next_request_at {
            return;
        }
        compactor.next_request_at = cx.now.plus_ms(cx.config.sync_interval_ms);
        let before_epoch = compactor.wanted_before;
        cov_mark::hit!(device_asks_for_a_compaction_of_what_it_cannot_decrypt);
        let _ = self.send_message(cx, crate::updates::Payload::CompactionWanted { before_epoch });
    }

    /// A member cannot decrypt messages sealed before `before_epoch`: they make a compaction
    /// due. (No later than our own epoch: a member cannot ask for more than has happened.)
    pub(super) fn on_compaction_wanted(&mut self, cx: &mut Context<'_>, before_epoch: u64) {
        let epoch = self.mls.as_ref().map_or(0, |mls| mls.member.epoch());
        let Some(replica) = self.replica.as_mut() else { return cx.reject(Rejection::Unauthorised) };
        let compactor = &mut replica.compactor;
        compactor.unreadable_before = compactor.unreadable_before.max(before_epoch.min(epoch));
    }

    /// A joiner's Welcome named the latest compaction (the inviter put it in the GroupInfo):
    /// start from its snapshot.
    pub(crate) fn adopt_welcomed_compaction(&mut self, cx: &mut Context<'_>, bytes: &[u8]) {
        let Ok(keyed) = postcard::from_bytes::<KeyedCompaction>(bytes) else { return cx.reject(Rejection::Invalid) };
        let well_formed =
            keyed.compaction.covered.is_well_formed(cx.config.covered_senders_max, cx.config.updates_out_of_order_max);
        if !well_formed || keyed.compaction.chunks == 0 {
            return cx.reject(Rejection::Invalid);
        }
        cov_mark::hit!(joiner_starts_from_the_welcomed_snapshot);
        cx.persist(vec![Record::Compacted { group: cx.group, compaction: keyed.compaction.clone(), key: Some(keyed.key) }]);
        self.compactor().latest = Some(keyed);
        self.catch_up_if_behind(cx);
    }

    /// Starts fetching the latest snapshot if it covers messages we never applied.
    pub(crate) fn catch_up_if_behind(&mut self, cx: &mut Context<'_>) {
        let Some(replica) = self.replica.as_mut() else { return };
        let Some(latest) = replica.compactor.latest.as_ref() else { return };
        if replica.applied.includes(&latest.compaction.covered) {
            replica.compactor.catching_up.take_if(|c| c.import);
            return;
        }
        let hash = latest.compaction.hash;
        if replica.compactor.catching_up.as_ref().is_some_and(|c| c.assembly.hash == hash && c.import)
            || replica.compactor.unusable.as_ref().is_some_and(|unusable| unusable.hash == hash)
        {
            return;
        }
        cov_mark::hit!(device_catches_up_from_a_snapshot);
        self.fetch_latest_snapshot(cx, true);
    }

    /// Starts fetching the latest snapshot: to import it, or only to open it and confirm.
    pub(super) fn fetch_latest_snapshot(&mut self, cx: &mut Context<'_>, import: bool) {
        let compactor = self.compactor();
        let Some(latest) = compactor.latest.as_ref() else { return };
        let assembly = Assembly::new(latest.compaction.hash, latest.compaction.chunks);
        compactor.catching_up = Some(CatchingUp { assembly, import, ask_at: cx.now, round: 0 });
        self.ask_for_chunks(cx);
    }

    /// Asks the acceptors for the chunks we lack, each of a different one, turning each time.
    fn ask_for_chunks(&mut self, cx: &mut Context<'_>) {
        let acceptors = self.acceptors().members().to_vec();
        let Some(catching_up) = self.compactor().catching_up.as_mut().filter(|c| cx.now >= c.ask_at) else { return };
        catching_up.ask_at = cx.now.plus_ms(cx.config.post_resend_ms);
        catching_up.round += 1;
        let hash = catching_up.assembly.hash;
        let missing = (0..catching_up.assembly.count).filter(|i| !catching_up.assembly.holds(*i));
        for (turn, index) in missing.take(cx.config.snapshot_chunks_per_round_max).enumerate() {
            let acceptor = acceptors[(turn + catching_up.round) % acceptors.len()];
            cx.send(acceptor, Message::FetchSnapshot { hash, index });
        }
    }

    /// A chunk of the snapshot we are fetching. Once all are here: check, open, import.
    pub(super) fn on_snapshot_chunk(&mut self, cx: &mut Context<'_>, hash: SnapshotHash, index: u32, count: u32, bytes: Vec<u8>) {
        let size_max = cx.config.snapshot_bytes_max;
        let Some(catching_up) = self.compactor().catching_up.as_mut().filter(|c| c.assembly.hash == hash) else {
            return cx.reject(Rejection::Duplicate);
        };
        if catching_up.assembly.insert(index, count, bytes, size_max).is_err() {
            return cx.reject(Rejection::Invalid);
        }
        if !catching_up.assembly.is_complete() {
            return;
        }
        let Some(ciphertext) = catching_up.assembly.ciphertext() else {
            // A chunk was altered or truncated: start over (from other acceptors, in turn).
            cov_mark::hit!(device_refuses_a_snapshot_that_does_not_match_its_hash);
            catching_up.assembly = Assembly::new(hash, catching_up.assembly.count);
            return cx.reject(Rejection::Invalid);
        };
        let import = catching_up.import;
        let replica = self.replica.as_mut().expect("checked above");
        let latest = replica.compactor.latest.clone().expect("we fetch only a known compaction's snapshot");
        replica.compactor.catching_up = None;
        let Some(snapshot) = open(&latest.key, &ciphertext) else {
            cov_mark::hit!(device_refuses_a_snapshot_its_key_does_not_open);
            replica.compactor.unusable = Some(latest.compaction);
            return cx.reject(Rejection::Invalid);
        };
        if import {
            if replica.doc.merge_snapshot(&snapshot).is_err() {
                replica.compactor.unusable = Some(latest.compaction);
                return cx.reject(Rejection::Invalid);
            }
            replica.applied.absorb(&latest.compaction.covered, cx.config.updates_out_of_order_max);
            self.checkpoint_imported(cx, &latest.compaction.covered, snapshot);
            let covered_messages = latest.compaction.covered.count();
            cx.effects.notify(Event::SnapshotImported { group: cx.group, covered_messages });
        }
        self.confirm(cx, hash);
    }

    /// The wake time of compaction work: none for a device no longer a member, whose timer
    /// does none (`compaction_timer`), or a deadline left in the past would wake it at once,
    /// again and again.
    pub(super) fn compaction_wake_at(&self) -> Option<Time> {
        if !self.mls.as_ref().is_some_and(|mls| mls.member.is_active()) {
            return None;
        }
        self.replica.as_ref().and_then(|replica| replica.compactor.wake_at())
    }
}
