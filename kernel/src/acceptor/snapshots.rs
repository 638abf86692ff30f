//! An acceptor's side of compaction: storing encrypted snapshots, voting on compaction commits,
//! and deleting what a chosen compaction covers.
//!
//! Deleting is safe because of what an acceptor checks before it accepts a compaction commit: it
//! holds the whole snapshot (checked against its name) and every message the commit covers
//! (apart from those an earlier compaction covered). A chosen commit was accepted by a quorum,
//! so a quorum held the snapshot and the messages when it was chosen. An acceptor deletes the
//! covered messages only once it holds the snapshot itself; until then it fetches the chunks
//! from its peers. So deleting never lowers the number of acceptors from which a covered update
//! can be recovered.
//!
//! Acceptors cannot check the key a compaction carries (they never see keys). So a chosen
//! compaction deletes nothing until a member other than its committer **confirms** it: it
//! unwrapped the key and opened the snapshot with it (`Message::SnapshotConfirmed`). Until then
//! the previous confirmed compaction stays the one deletion follows, and its snapshot is kept. A
//! committer may confirm itself only while it is the group's one member: nobody else could,
//! and its own device keeps every update.

use std::collections::BTreeMap;

use crate::acceptor::group::AcceptorGroup;
use crate::canary::canary;
use crate::context::Context;
use crate::ids::{NodeId, Slot};
use crate::io::Rejection;
use crate::snapshot::{Assembly, ChunkRefusal, Compaction, SnapshotHash};
use crate::storage::Record;
use crate::updates::UpdateId;
use crate::wire::{Message, RejectReason};

/// One group's snapshots at one acceptor.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// At most `snapshots_per_group_max`: the latest compaction's and ones being stored.
    held: BTreeMap<SnapshotHash, Assembly>,
    /// The latest compaction chosen in the log.
    pub(crate) latest: Option<Compaction>,
    /// Who committed `latest` (it cannot confirm it while others could).
    committer: Option<NodeId>,
    /// The latest compaction a member confirmed: what deletion follows.
    pub(crate) confirmed: Option<Compaction>,
    /// A snapshot we should hold but do not (the latest, or one an accept named): fetched
    /// from peers on the peer-sync timer.
    wanted: Option<(SnapshotHash, u32)>,
    /// Turns through the peers, so each chunk is asked of another one next time.
    round: usize,
    /// Snapshots of compactions this node accepted for slots not decided yet, by slot (at most
    /// `accepted_window_slots`). They are never evicted: a later leader must re-propose the
    /// value, and other acceptors fetch the snapshot from us to accept it.
    pinned: BTreeMap<Slot, SnapshotHash>,
}

impl Snapshots {
    /// Whether a snapshot this node should hold is still being fetched from peers.
    pub(crate) fn is_fetching(&self) -> bool {
        self.wanted.is_some()
    }

    /// Rebuilt from disk. Every assembly on disk that is complete was checked against its hash
    /// before it was acknowledged (a mismatch is dropped in the same batch).
    pub(crate) fn restore(
        held: BTreeMap<SnapshotHash, (u32, BTreeMap<u32, Vec<u8>>)>,
        latest: Option<Compaction>,
        committer: Option<NodeId>,
        state: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Snapshots {
        let held = held
            .into_iter()
            .map(|(hash, (count, chunks))| {
                let mut assembly = Assembly::new(hash, count);
                for (index, bytes) in chunks {
                    let _ = assembly.insert(index, count, bytes, usize::MAX);
                }
                (hash, assembly)
            })
            .collect();
        let wanted = latest.as_ref().map(|l| (l.hash, l.chunks));
        let confirmed = state.get(CONFIRMED_KEY).and_then(|bytes| postcard::from_bytes(bytes).ok());
        Snapshots { held, latest, committer, confirmed, wanted, round: 0, pinned: BTreeMap::new() }
    }

    /// We accepted a compaction for `slot`: keep its snapshot until the slot is decided.
    pub(crate) fn pin(&mut self, slot: Slot, hash: SnapshotHash) {
        self.pinned.insert(slot, hash);
    }

    /// Slots before `next` are decided: their snapshots need no pin.
    pub(crate) fn unpin_before(&mut self, next: Slot) {
        self.pinned.retain(|slot, _| *slot >= next);
    }

    /// Whether every chunk of `hash` is here.
    pub(crate) fn holds(&self, hash: &SnapshotHash) -> bool {
        self.held.get(hash).is_some_and(Assembly::is_complete)
    }

    /// Snapshot bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.held.values().map(Assembly::bytes).sum()
    }

    /// Whether `id` is covered by the compaction in force.
    pub(crate) fn covers(&self, id: &UpdateId) -> bool {
        self.latest.as_ref().is_some_and(|latest| latest.covered.contains(id))
    }

    /// Whether `id` is covered by a confirmed compaction (so its message is not kept).
    pub(crate) fn confirmed_covers(&self, id: &UpdateId) -> bool {
        self.confirmed.as_ref().is_some_and(|confirmed| confirmed.covered.contains(id))
    }

    /// The snapshots deletion may rely on: the confirmed one and the latest (until it is confirmed).
    fn kept(&self) -> impl Iterator<Item = SnapshotHash> + '_ {
        self.confirmed.iter().chain(&self.latest).map(|c| c.hash).chain(self.pinned.values().copied())
    }
}

/// Where an acceptor keeps its confirmed compaction, in the group's key-value state (openmls
/// never writes keys starting 0xff).
const CONFIRMED_KEY: &[u8] = b"\xffplait/confirmed-compaction";

impl AcceptorGroup {
    /// A snapshot chunk, from a member storing its snapshot or from a peer we asked.
    pub(super) fn on_snapshot_chunk(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        hash: SnapshotHash,
        index: u32,
        count: u32,
        bytes: Vec<u8>,
    ) {
        let from_member = self.mls.as_ref().is_some_and(|view| view.is_writer(&from.0));
        if !from_member && !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let chunks_max = cx.config.snapshot_bytes_max / cx.config.snapshot_chunk_bytes + 1;
        if bytes.len() > cx.config.snapshot_chunk_bytes || count == 0 || count as usize > chunks_max {
            return cx.reject(Rejection::OverLimit);
        }
        if !self.snapshots.held.contains_key(&hash) && !self.make_room_for_a_snapshot(cx) {
            return cx.reject(Rejection::OverLimit);
        }
        let assembly = self.snapshots.held.entry(hash).or_insert_with(|| Assembly::new(hash, count));
        let complete_before = assembly.is_complete();
        if !complete_before {
            if !cx.room.take_snapshots(bytes.len()) {
                // The node's other groups hold the rest of its snapshot budget.
                cov_mark::hit!(acceptor_refuses_a_snapshot_chunk_when_the_node_is_full);
                return cx.reject(Rejection::OverLimit);
            }
            match assembly.insert(index, count, bytes.clone(), cx.config.snapshot_bytes_max) {
                Ok(()) => cx.persist(vec![Record::SnapshotChunk { group: cx.group, hash, index, count, bytes }]),
                Err(ChunkRefusal::Inconsistent) => return cx.reject(Rejection::Invalid),
                Err(ChunkRefusal::TooLarge) => return cx.reject(Rejection::OverLimit),
            }
            if !assembly.is_complete() {
                return;
            }
            if assembly.ciphertext().is_none() {
                // A truncated or altered chunk: what we hold is not the snapshot it names.
                cov_mark::hit!(acceptor_drops_a_snapshot_that_does_not_match_its_hash);
                self.snapshots.held.remove(&hash);
                cx.persist(vec![Record::SnapshotDropped { group: cx.group, hash }]);
                return cx.reject(Rejection::Invalid);
            }
        } else {
            cx.reject(Rejection::Duplicate);
        }
        if from_member {
            cx.send(from, Message::SnapshotStored { hash });
        }
        if self.snapshots.wanted.is_some_and(|(wanted, _)| wanted == hash) {
            self.snapshots.wanted = None;
        }
        if !complete_before && self.snapshots.confirmed.as_ref().is_some_and(|confirmed| confirmed.hash == hash) {
            self.delete_what_the_confirmed_compaction_covers(cx);
        }
    }

    /// Frees a place for a new snapshot: drops one no compaction needs, incomplete ones first.
    /// False if every place holds the latest's, the confirmed one's or a pinned one.
    fn make_room_for_a_snapshot(&mut self, cx: &mut Context<'_>) -> bool {
        if self.snapshots.held.len() < cx.config.snapshots_per_group_max {
            return true;
        }
        let kept: Vec<SnapshotHash> = self.snapshots.kept().collect();
        let evictable = |(hash, _): &(&SnapshotHash, &Assembly)| !kept.contains(hash);
        let victim = self
            .snapshots
            .held
            .iter()
            .filter(evictable)
            .min_by_key(|(_, assembly)| assembly.is_complete())
            .map(|(hash, _)| *hash);
        let Some(victim) = victim else { return false };
        if let Some(dropped) = self.snapshots.held.remove(&victim) {
            cx.room.snapshots += dropped.bytes() as u64;
        }
        cx.persist(vec![Record::SnapshotDropped { group: cx.group, hash: victim }]);
        true
    }

    /// A member catching up, or a peer filling in, asks for one chunk.
    pub(super) fn on_fetch_snapshot(&mut self, cx: &mut Context<'_>, from: NodeId, hash: SnapshotHash, index: u32) {
        if !self.allows_member(from) && !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let Some(assembly) = self.snapshots.held.get(&hash).filter(|a| a.is_complete()) else {
            return cx.reject(Rejection::NotReady);
        };
        let Some((_, bytes)) = assembly.chunks().find(|(i, _)| *i == index) else { return cx.reject(Rejection::Invalid) };
        let message = Message::SnapshotChunk { hash, index, count: assembly.count, bytes: bytes.clone() };
        cx.send(from, message);
    }

    /// Whether we may accept a commit carrying `compaction`: it must cover all the compaction in
    /// force covers, and we must hold its snapshot and every message it newly covers.
    pub(super) fn refuses_compaction(
        &mut self,
        cx: &mut Context<'_>,
        slot: Slot,
        compaction: &Compaction,
    ) -> Option<RejectReason> {
        let well_formed = compaction.covered.is_well_formed(cx.config.covered_senders_max, cx.config.updates_out_of_order_max)
            && compaction.chunks > 0;
        let grows = self.snapshots.latest.as_ref().is_none_or(|latest| compaction.covered.includes(&latest.covered));
        if !well_formed || !grows {
            cov_mark::hit!(acceptor_refuses_a_compaction_that_covers_less);
            cx.reject(Rejection::Invalid);
            return Some(RejectReason::InvalidValue);
        }
        if canary!(cx.config, DeleteBeforeSnapshotStored) {
            return None;
        }
        if !self.snapshots.holds(&compaction.hash) {
            cov_mark::hit!(acceptor_waits_for_the_snapshot_before_accepting_its_compaction);
            self.snapshots.wanted = Some((compaction.hash, compaction.chunks));
            self.next_peer_sync_at = cx.now;
            cx.reject(Rejection::NotReady);
            return Some(RejectReason::NotReady);
        }
        if !canary!(cx.config, CompactionCoversUnsafeMessages) && self.first_uncovered_message_not_held(compaction).is_some() {
            cov_mark::hit!(acceptor_refuses_a_compaction_covering_messages_it_lacks);
            self.next_peer_sync_at = cx.now;
            cx.reject(Rejection::NotReady);
            return Some(RejectReason::NotReady);
        }
        self.snapshots.pin(slot, compaction.hash);
        None
    }

    /// A message `compaction` covers that no earlier compaction covered and we do not hold.
    fn first_uncovered_message_not_held(&self, compaction: &Compaction) -> Option<UpdateId> {
        let mut ids = compaction
            .covered
            .senders
            .iter()
            .flat_map(|s| (0..s.below).chain(s.beyond.iter().copied()).map(move |seq| UpdateId { sender: s.sender, seq }));
        ids.find(|id| !self.snapshots.covers(id) && !self.store.holds(id))
    }

    /// A compaction commit was chosen: it is in force from now on, and deletes once confirmed.
    pub(super) fn on_compaction_chosen(&mut self, cx: &mut Context<'_>, compaction: Compaction, committer: NodeId) {
        if self.snapshots.latest.as_ref().is_some_and(|latest| !compaction.covered.includes(&latest.covered)) {
            // Refused by every honest acceptor: only a faulty quorum could have chosen it.
            return cx.reject(Rejection::Invalid);
        }
        self.snapshots.latest = Some(compaction.clone());
        self.snapshots.committer = Some(committer);
        let mut records = vec![Record::Compacted { group: cx.group, compaction: compaction.clone(), key: None }];
        records.extend(self.drop_outdated_snapshots(cx));
        cx.persist(records);
        if !self.snapshots.holds(&compaction.hash) {
            cov_mark::hit!(acceptor_fetches_a_chosen_snapshot_from_peers);
            self.snapshots.wanted = Some((compaction.hash, compaction.chunks));
            self.next_peer_sync_at = cx.now;
        }
        if canary!(cx.config, DeleteBeforeSnapshotStored) {
            self.confirm(cx, compaction);
        }
    }

    /// Drops every snapshot no compaction needs: outdated ones, and any being stored for a
    /// compaction taken before the latest (its compactor abandons it).
    fn drop_outdated_snapshots(&mut self, cx: &Context<'_>) -> Vec<Record> {
        let kept: Vec<SnapshotHash> = self.snapshots.kept().collect();
        let outdated: Vec<SnapshotHash> = self.snapshots.held.keys().copied().filter(|h| !kept.contains(h)).collect();
        let mut records = Vec::new();
        for hash in outdated {
            self.snapshots.held.remove(&hash);
            records.push(Record::SnapshotDropped { group: cx.group, hash });
        }
        records
    }

    /// A member says it opened the latest snapshot with the key its compaction carried. We
    /// answer the same message once the confirmation is durable (and to a repeat of an older
    /// one), and tell the other members subscribed here, so those waiting their turn need not.
    pub(super) fn on_snapshot_confirmed(&mut self, cx: &mut Context<'_>, from: NodeId, hash: SnapshotHash) {
        if !self.allows_member(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        if self.snapshots.confirmed.as_ref().is_some_and(|confirmed| confirmed.hash == hash) {
            cx.reject(Rejection::Duplicate);
            return cx.send(from, Message::SnapshotConfirmed { hash });
        }
        let Some(latest) = self.snapshots.latest.clone().filter(|latest| latest.hash == hash) else {
            // Not chosen here yet, or outdated: the member asks again if it still matters.
            return cx.reject(Rejection::NotReady);
        };
        let alone = self.mls.as_ref().is_some_and(|view| view.members().len() == 1);
        if self.snapshots.committer == Some(from) && !alone {
            cov_mark::hit!(acceptor_refuses_a_committers_confirmation_of_its_own_compaction);
            return cx.reject(Rejection::Unauthorised);
        }
        cov_mark::hit!(acceptor_takes_a_members_confirmation);
        self.confirm(cx, latest);
        // The others waiting their turn to confirm it need not.
        let mut told: Vec<NodeId> = self.member_subscribers().into_iter().filter(|s| *s != from).collect();
        told.push(from);
        cx.send_all(&told, &Message::SnapshotConfirmed { hash });
    }

    /// `compaction` is confirmed: deletion follows it from now on, and the snapshot of the one
    /// confirmed before is no longer needed. (Snapshots being stored now are for the next
    /// compaction: they stay.)
    fn confirm(&mut self, cx: &mut Context<'_>, compaction: Compaction) {
        let value = postcard::to_allocvec(&compaction).expect("invariant: compactions encode");
        let before = self.snapshots.confirmed.replace(compaction).map(|c| c.hash);
        let mut records = vec![Record::MlsState { group: cx.group, key: CONFIRMED_KEY.to_vec(), value: Some(value) }];
        if let Some(before) = before.filter(|hash| !self.snapshots.kept().any(|kept| kept == *hash))
            && self.snapshots.held.remove(&before).is_some()
        {
            records.push(Record::SnapshotDropped { group: cx.group, hash: before });
        }
        cx.persist(records);
        self.delete_what_the_confirmed_compaction_covers(cx);
    }

    /// Deletes the stored messages the confirmed compaction covers, once we hold its snapshot.
    fn delete_what_the_confirmed_compaction_covers(&mut self, cx: &mut Context<'_>) {
        let Some(confirmed) = self.snapshots.confirmed.as_ref() else { return };
        if !self.snapshots.holds(&confirmed.hash) && !canary!(cx.config, DeleteBeforeSnapshotStored) {
            return;
        }
        let deleted = self.store.delete_covered(&confirmed.covered);
        if !deleted.is_empty() {
            cov_mark::hit!(acceptor_deletes_messages_a_held_snapshot_covers);
            cx.persist(vec![Record::Unstored { group: cx.group, deleted }]);
        }
    }

    /// On the peer-sync timer: ask peers for the chunks of a snapshot we should hold.
    pub(super) fn fetch_snapshot_from_peers(&mut self, cx: &mut Context<'_>) {
        let Some((hash, count)) = self.snapshots.wanted else { return };
        if self.snapshots.holds(&hash) {
            self.snapshots.wanted = None;
            return;
        }
        let peers = self.copy_sources(cx.me);
        if peers.is_empty() {
            return;
        }
        let held = self.snapshots.held.get(&hash);
        let missing = (0..count).filter(|index| !held.is_some_and(|a| a.holds(*index)));
        self.snapshots.round += 1;
        for (turn, index) in missing.take(cx.config.snapshot_chunks_per_round_max).enumerate() {
            let peer = peers[(turn + self.snapshots.round) % peers.len()];
            cx.send(peer, Message::FetchSnapshot { hash, index });
        }
    }
}
