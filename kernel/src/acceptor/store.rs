//! An acceptor's store of one group's document messages.
//!
//! Members post MLS ciphertexts; the acceptor checks what it can without secrets (a current
//! writer, a PrivateMessage of this group from a kept epoch, size and quota), makes the message
//! durable under its next position, and only then acknowledges it and pushes it to the group's
//! other members. Readers ask for "everything after my cursor" and get bounded pages.
//!
//! Acknowledgements and pushes wait for `Input::Flush`, which the host delivers once it handled
//! every input that was waiting: the messages stored in between are acknowledged to each sender
//! in one frame and go to each reader as one page (at most one page is held). Under load that is
//! one frame and one input per burst instead of one per message; alone, a message waits for
//! nothing but its own commit, which holds its acknowledgement and push anyway.
//!
//! Acceptors also copy each other's stores (a `FetchIds` to every peer on the peer-sync timer), so
//! a message a write quorum acknowledged spreads to every acceptor: an acceptor that lost its disk
//! fills up again before a second one fails. Peers first compare ids, and an acceptor fetches
//! messages in full only from the first it lacks: every acceptor usually holds every message
//! (members post to all of them), and copying each peer's whole last interval in full cost as
//! much as the posts themselves. Copies are de-duplicated by id.
//!
//! The store is held in memory, bounded by `group_store_bytes_max` per group (compaction, which
//! bounds it by the snapshot size, is the next step; see ARCHITECTURE.md).

use std::collections::BTreeMap;

use crate::acceptor::group::{AcceptorGroup, Phase};
use crate::canary::canary;
use crate::context::Context;
use crate::ids::NodeId;
use crate::io::Rejection;
use crate::mls::{MlsError, PublicView};
use crate::snapshot::Covered;
use crate::storage::Record;
use crate::updates::{
    Cursor, ID_COST, IDS_PER_PAGE_MAX, PostRefusal, Posted, StoredId, StoredMessage, UpdateId, frame_full, framed_cost,
};
use crate::wire::Message;

/// The window an acceptor uses for copies from peers: any epoch the group ever had is fine
/// (readers decide what they can still decrypt); only the shape and the group are checked.
const PEER_COPY_EPOCHS: usize = u32::MAX as usize;

/// One group's stored document messages at one acceptor.
#[derive(Debug, Default)]
pub(crate) struct MessageStore {
    by_position: BTreeMap<u64, StoredMessage>,
    /// The latest copy of each id: its position and the epoch it was sealed in. A message
    /// sealed again in a later epoch is stored again (readers take whichever they can read).
    by_id: BTreeMap<UpdateId, (u64, u64)>,
    bytes: usize,
    /// How far this node has copied each peer's store (in memory: after a restart it copies from
    /// the start again, skipping what it holds). At most one per acceptor of the group.
    peer_cursors: BTreeMap<NodeId, Cursor>,
    /// Once this node is no longer in the group's set: how far each acceptor of the set has
    /// copied its store, by the cursor of its last copying request (each position up to it is
    /// held there durably, or covered by its confirmed compaction). At most one per acceptor of
    /// the set; in memory.
    handed_over: BTreeMap<NodeId, u64>,
    /// Every position below this was given out (deleted ones are never given out again).
    positions_below: u64,
    /// Messages posted since the last flush, by position, waiting to be acknowledged and pushed
    /// (at most one page: `held_bytes` within half a frame and at most `page_messages_max`).
    held: Vec<(u64, StoredMessage)>,
    held_bytes: usize,
}

impl MessageStore {
    /// The store rebuilt from disk.
    pub(crate) fn restore(stored: BTreeMap<u64, StoredMessage>, positions_below: u64) -> MessageStore {
        let by_id = stored
            .iter()
            .map(|(position, message)| (message.id, (*position, PublicView::epoch_of(&message.ciphertext).unwrap_or(0))))
            .collect();
        let bytes = stored.values().map(|message| message.ciphertext.len()).sum();
        MessageStore {
            by_position: stored,
            by_id,
            bytes,
            peer_cursors: BTreeMap::new(),
            handed_over: BTreeMap::new(),
            positions_below,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Deletes every copy of every message `covered` names; returns what went.
    pub(crate) fn delete_covered(&mut self, covered: &Covered) -> Vec<(u64, UpdateId)> {
        let deleted: Vec<(u64, UpdateId)> =
            self.by_position.iter().filter(|(_, m)| covered.contains(&m.id)).map(|(p, m)| (*p, m.id)).collect();
        for (position, id) in &deleted {
            if let Some(message) = self.by_position.remove(position) {
                self.bytes -= message.ciphertext.len();
            }
            self.by_id.remove(id);
        }
        deleted
    }

    /// Deletes every message stored at or before `position`; returns what went.
    fn delete_through(&mut self, position: u64) -> Vec<(u64, UpdateId)> {
        let kept = self.by_position.split_off(&(position + 1));
        let deleted: Vec<(u64, UpdateId)> = self.by_position.iter().map(|(p, m)| (*p, m.id)).collect();
        for message in std::mem::replace(&mut self.by_position, kept).into_values() {
            self.bytes -= message.ciphertext.len();
        }
        // A later copy of an id (sealed again in a later epoch) has a later position: keep it.
        self.by_id.retain(|_, (held_at, _)| *held_at > position);
        deleted
    }

    /// Positions given out so far: grows with every message stored, never shrinks.
    pub(crate) fn positions_given(&self) -> u64 {
        self.positions_below
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.by_position.len()
    }

    /// Ciphertext bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the message with this id is held.
    pub(crate) fn holds(&self, id: &UpdateId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether a copy of the message sealed in `epoch` or later is held.
    fn holds_from(&self, id: &UpdateId, epoch: u64) -> bool {
        self.by_id.get(id).is_some_and(|(_, held)| *held >= epoch)
    }

    /// Every held message, by position.
    pub(crate) fn messages(&self) -> impl Iterator<Item = (u64, &StoredMessage)> {
        self.by_position.iter().map(|(position, message)| (*position, message))
    }

    fn next_position(&self) -> u64 {
        self.by_position.last_key_value().map_or(1, |(position, _)| position + 1).max(self.positions_below)
    }

    /// Checks size and quota, then adds the message; returns the record to persist and its
    /// position.
    fn add(&mut self, cx: &mut Context<'_>, message: StoredMessage, epoch: u64) -> Result<(u64, Record), PostRefusal> {
        let size = message.ciphertext.len();
        if size > cx.config.stored_message_bytes_max {
            return Err(PostRefusal::TooLarge);
        }
        if self.bytes + size > cx.config.group_store_bytes_max {
            return Err(PostRefusal::QuotaExceeded);
        }
        if !cx.room.take_messages(size) {
            // The node's other groups hold the rest of its budget.
            cov_mark::hit!(acceptor_refuses_a_message_when_the_node_is_full);
            return Err(PostRefusal::QuotaExceeded);
        }
        let position = self.next_position();
        self.positions_below = position + 1;
        self.bytes += size;
        self.by_id.insert(message.id, (position, epoch));
        self.by_position.insert(position, message.clone());
        Ok((position, Record::Stored { group: cx.group, position, message }))
    }

    /// The messages after `position` that fit one frame, and whether more follow.
    fn page(&self, cx: &Context<'_>, position: u64) -> (Vec<(u64, StoredMessage)>, bool) {
        let (mut page, mut used) = (Vec::new(), 0);
        for (at, message) in self.by_position.range(position + 1..) {
            used += page_cost(message);
            if page_full(cx, page.len(), used) {
                return (page, true);
            }
            page.push((*at, message.clone()));
        }
        (page, false)
    }

    /// The ids of the messages after `position`, and whether more follow.
    fn ids_page(&self, cx: &Context<'_>, position: u64) -> (Vec<StoredId>, bool) {
        let count_max = IDS_PER_PAGE_MAX.min(cx.config.message_bytes_max / 2 / ID_COST).max(1);
        let mut ids = Vec::new();
        for (at, message) in self.by_position.range(position + 1..) {
            if ids.len() == count_max {
                return (ids, true);
            }
            let epoch = self.by_id.get(&message.id).map_or(0, |(_, epoch)| *epoch);
            ids.push(StoredId { position: *at, id: message.id, epoch });
        }
        (ids, false)
    }

    /// Whether acknowledgements and pushes wait for a flush.
    pub(crate) fn holds_unsent(&self) -> bool {
        !self.held.is_empty()
    }
}

fn page_cost(message: &StoredMessage) -> usize {
    framed_cost(&message.ciphertext)
}

fn page_full(cx: &Context<'_>, messages: usize, used: usize) -> bool {
    frame_full(cx.config, messages, used)
}

impl AcceptorGroup {
    /// A member's document messages: each stored, then acknowledged and pushed.
    pub(super) fn on_posts(&mut self, cx: &mut Context<'_>, from: NodeId, messages: Vec<Posted>) {
        if messages.len() > cx.config.page_messages_max {
            return cx.reject(Rejection::OverLimit);
        }
        for Posted { seq, ciphertext } in messages {
            self.on_post(cx, from, seq, ciphertext);
        }
    }

    /// A member's document message: store it, then acknowledge and push it.
    fn on_post(&mut self, cx: &mut Context<'_>, from: NodeId, seq: u64, ciphertext: Vec<u8>) {
        let Some(view) = &self.mls else { return cx.reject(Rejection::Unauthorised) };
        if !matches!(self.phase, Phase::Voting) {
            // Until it has caught up, its view of who may write is stale; the sender retries.
            return cx.reject(Rejection::NotReady);
        }
        let skip_membership = canary!(cx.config, RemovedMemberStillAccepted);
        if !skip_membership && !view.is_writer(&from.0) {
            return cx.reject(Rejection::Unauthorised);
        }
        if self.accepted.contains_key(&self.chosen_next) {
            // A commit may be chosen that we have not learned: if it starts a new epoch, a
            // message of the current one could be unreadable to members it adds. Wait, and say
            // so: the slot is decided within a few round trips, and the sender's next try would
            // otherwise come only after `post_resend_ms`.
            cov_mark::hit!(acceptor_holds_off_posts_while_a_slot_is_undecided);
            cx.reject(Rejection::NotReady);
            return cx.send(from, Message::PostRefused { seq, reason: PostRefusal::Busy });
        }
        let id = UpdateId { sender: from, seq };
        let epoch = match view.check_application(&ciphertext, cx.config.mls_past_epochs_max) {
            Ok(epoch) => epoch,
            Err(MlsError::FutureEpoch(_)) => return cx.reject(Rejection::NotReady),
            Err(MlsError::TooOld(_)) => return cx.reject(Rejection::Expired),
            Err(_) => return cx.reject(Rejection::Invalid),
        };
        // Only the current epoch, even for a message held already (a copy from a peer may be
        // older): one stored from an older epoch would be unreadable to whoever joined since.
        let current = view.epoch();
        if epoch < current {
            cov_mark::hit!(acceptor_refuses_a_post_sealed_in_an_earlier_epoch);
            cx.reject(Rejection::Expired);
            return cx.send(from, Message::PostRefused { seq, reason: PostRefusal::StaleEpoch { current } });
        }
        if self.snapshots.confirmed_covers(&id) {
            // Its update is inside a confirmed snapshot, which a quorum held when it was chosen.
            cov_mark::hit!(acceptor_acknowledges_a_post_a_compaction_covers);
            cx.reject(Rejection::Duplicate);
            return cx.send(from, Message::PostAck { seqs: vec![seq] });
        }
        if self.store.holds_from(&id, epoch) {
            cov_mark::hit!(acceptor_acknowledges_a_repeated_post);
            cx.reject(Rejection::Duplicate);
            return cx.send(from, Message::PostAck { seqs: vec![seq] });
        }
        let message = StoredMessage { id, ciphertext };
        let (position, record) = match self.store.add(cx, message.clone(), epoch) {
            Ok(added) => added,
            Err(reason) => {
                cov_mark::hit!(acceptor_refuses_a_post_over_its_limits);
                cx.reject(Rejection::OverLimit);
                return cx.send(from, Message::PostRefused { seq, reason });
            }
        };
        cx.persist(vec![record]);
        self.hold(cx, position, message);
    }

    /// Holds a stored message's acknowledgement and pushes for the next flush; a full page is
    /// sent at once.
    fn hold(&mut self, cx: &mut Context<'_>, position: u64, message: StoredMessage) {
        let store = &mut self.store;
        if page_full(cx, store.held.len(), store.held_bytes + page_cost(&message)) {
            cov_mark::hit!(acceptor_sends_a_full_page_before_the_flush);
            self.send_held(cx);
        }
        self.store.held_bytes += page_cost(&message);
        self.store.held.push((position, message));
    }

    /// Sends what the posts since the last flush held back: to each sender one acknowledgement
    /// of its messages, then to each member the messages as pages, one per run of consecutive
    /// positions, without the member's own (it skips those anyway). A run ends where positions
    /// skip (a peer's copy took one, and is not pushed): the reader then sees a gap after its
    /// cursor and fetches, as for any push it missed. What is held fits one page, so a run needs
    /// no splitting, and one acknowledgement holds at most `page_messages_max` messages.
    pub(super) fn send_held(&mut self, cx: &mut Context<'_>) {
        let held = std::mem::take(&mut self.store.held);
        self.store.held_bytes = 0;
        let Some((first, _)) = held.first() else { return };
        let mut acknowledged: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
        for (_, message) in &held {
            acknowledged.entry(message.id.sender).or_default().push(message.id.seq);
        }
        for (sender, seqs) in acknowledged {
            cx.send(sender, Message::PostAck { seqs });
        }
        for reader in self.member_subscribers() {
            let mut after = first - 1;
            let mut last = after;
            let mut page = Vec::new();
            for (position, message) in &held {
                assert!(*position > last, "held pushes are in position order");
                if *position != last + 1 {
                    self.push_page(cx, reader, after, std::mem::take(&mut page));
                    after = position - 1;
                }
                last = *position;
                if message.id.sender != reader {
                    page.push((*position, message.clone()));
                }
            }
            self.push_page(cx, reader, after, page);
        }
    }

    fn push_page(&self, cx: &mut Context<'_>, reader: NodeId, after: u64, messages: Vec<(u64, StoredMessage)>) {
        if !messages.is_empty() {
            let after = Cursor { incarnation: self.incarnation, position: after };
            cx.send(reader, Message::Page { after, messages, more: false });
        }
    }

    /// A reader (a current member, or a peer acceptor copying) asks for messages after a cursor,
    /// or a peer acceptor for their ids (`ids_only`).
    pub(super) fn on_fetch(&mut self, cx: &mut Context<'_>, from: NodeId, after: Cursor, ids_only: bool) {
        if !self.is_known_acceptor(from) && (ids_only || !self.allows_member(from)) {
            return cx.reject(Rejection::Unauthorised);
        }
        if !matches!(self.phase, Phase::Voting) {
            return cx.reject(Rejection::NotReady);
        }
        // A cursor from another incarnation of ours means nothing now: start over. (A copying
        // acceptor that restarted, or lost its disk, starts over too: it vouches for nothing.)
        let position = if after.incarnation == self.incarnation { after.position } else { 0 };
        self.note_handed_over(cx, from, position);
        let after = Cursor { incarnation: self.incarnation, position };
        let answer = if ids_only {
            let (ids, more) = self.store.ids_page(cx, position);
            Message::Ids { after, ids, more }
        } else {
            let (messages, more) = self.store.page(cx, position);
            Message::Page { after, messages, more }
        };
        cx.send(from, answer);
    }

    /// An acceptor of the set copying from us says it has every message of our store up to
    /// `position` (its cursor). Once we are out of the set, what a write quorum of the set has
    /// copied is held there durably and nobody reads it from us any more: we delete it, so an
    /// acceptor replaced in a group does not keep its messages for good.
    fn note_handed_over(&mut self, cx: &mut Context<'_>, from: NodeId, position: u64) {
        let set = self.history.latest();
        if set.contains(cx.me) || !set.contains(from) || self.mls.is_none() {
            return;
        }
        self.store.handed_over.retain(|node, _| set.contains(*node));
        self.store.handed_over.insert(from, position);
        let needed = if canary!(cx.config, HandOverToOneAcceptor) { 1 } else { cx.config.write_quorum.of(set.members().len()) };
        let mut copied: Vec<u64> = self.store.handed_over.values().copied().collect();
        copied.sort_unstable_by(|a, b| b.cmp(a));
        let Some(through) = needed.checked_sub(1).and_then(|index| copied.get(index).copied()) else { return };
        let deleted = self.store.delete_through(through);
        if !deleted.is_empty() {
            cov_mark::hit!(removed_acceptor_deletes_what_the_new_set_copied);
            cx.persist(vec![Record::Unstored { group: cx.group, deleted }]);
        }
    }

    /// The ids a peer acceptor stores after our cursor: pass over what we hold, and fetch in full
    /// from the first message we lack (the copy then goes on with ids).
    pub(super) fn on_peer_ids(&mut self, cx: &mut Context<'_>, from: NodeId, after: Cursor, ids: Vec<StoredId>, more: bool) {
        if !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        if self.mls.is_none() || !matches!(self.phase, Phase::Voting) {
            return cx.reject(Rejection::NotReady);
        }
        if ids.len() > IDS_PER_PAGE_MAX {
            return cx.reject(Rejection::OverLimit);
        }
        if !positions_follow(after, ids.iter().map(|stored| stored.position)) {
            return cx.reject(Rejection::Invalid);
        }
        if !self.continues_peer_cursor(from, after) {
            return;
        }
        let mut reached = after.position;
        for stored in &ids {
            if !self.store.holds_from(&stored.id, stored.epoch) && !self.snapshots.confirmed_covers(&stored.id) {
                cov_mark::hit!(acceptor_fetches_in_full_from_the_first_message_it_lacks);
                let cursor = Cursor { incarnation: after.incarnation, position: reached };
                self.store.peer_cursors.insert(from, cursor);
                return cx.send(from, Message::Fetch { after: cursor });
            }
            reached = stored.position;
        }
        let cursor = Cursor { incarnation: after.incarnation, position: reached };
        self.store.peer_cursors.insert(from, cursor);
        if more && reached > after.position {
            cx.send(from, Message::FetchIds { after: cursor });
        }
    }

    /// Whether a peer's page continues our cursor there (not an answer to an older ask, which
    /// must not move it back).
    fn continues_peer_cursor(&self, from: NodeId, after: Cursor) -> bool {
        let known = self.store.peer_cursors.get(&from).copied().unwrap_or_default();
        known.incarnation != after.incarnation || known.position == after.position
    }

    /// A page from a peer acceptor's store: copy what we lack.
    pub(super) fn on_peer_page(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        after: Cursor,
        messages: Vec<(u64, StoredMessage)>,
        more: bool,
    ) {
        if !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let (Some(view), Phase::Voting) = (&self.mls, &self.phase) else { return cx.reject(Rejection::NotReady) };
        if !positions_follow(after, messages.iter().map(|(position, _)| *position)) {
            return cx.reject(Rejection::Invalid);
        }
        let contiguous = self.continues_peer_cursor(from, after);
        let mut reached = after.position;
        let mut records = Vec::new();
        for (position, message) in messages {
            let epoch = PublicView::epoch_of(&message.ciphertext).unwrap_or(0);
            if !self.store.holds_from(&message.id, epoch) && !self.snapshots.confirmed_covers(&message.id) {
                let from_member = self.former_members.contains(message.id.sender.0.as_slice());
                match view.check_application(&message.ciphertext, PEER_COPY_EPOCHS) {
                    Ok(_) if from_member => {}
                    // Not ours to judge yet (our view lags) or not a member's: stop here.
                    Ok(_) | Err(MlsError::FutureEpoch(_)) => break,
                    Err(_) => {
                        cx.reject(Rejection::Invalid);
                        reached = position;
                        continue;
                    }
                }
                match self.store.add(cx, message, epoch) {
                    Ok((_, record)) => records.push(record),
                    Err(_) => {
                        cx.reject(Rejection::OverLimit);
                        break;
                    }
                }
                cov_mark::hit!(acceptor_copies_a_message_from_a_peer);
            }
            reached = position;
        }
        cx.persist(records);
        if contiguous {
            let cursor = Cursor { incarnation: after.incarnation, position: reached };
            self.store.peer_cursors.insert(from, cursor);
            if more && reached > after.position {
                cx.send(from, Message::FetchIds { after: cursor });
            }
        }
    }

    /// On the peer-sync timer: ask every acceptor we copy from (see `copy_sources`) for
    /// messages we have not copied.
    pub(super) fn fetch_from_peers(&mut self, cx: &mut Context<'_>) {
        if self.mls.is_none() || !matches!(self.phase, Phase::Voting) {
            return;
        }
        let peers = self.copy_sources(cx.me);
        self.store.peer_cursors.retain(|peer, _| peers.contains(peer));
        for peer in peers {
            let after = self.store.peer_cursors.get(&peer).copied().unwrap_or_default();
            cx.send(peer, Message::FetchIds { after });
        }
    }
}

/// Whether a page's positions are strictly increasing and all after its cursor.
pub(crate) fn positions_follow(after: Cursor, positions: impl IntoIterator<Item = u64>) -> bool {
    let mut last = after.position;
    for position in positions {
        if position <= last {
            return false;
        }
        last = position;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::context::Room;
    use crate::ids::GroupId;
    use crate::io::{Counters, Effects};
    use crate::rng::NodeRng;
    use crate::time::Time;

    fn message(seq: u64, size: usize) -> StoredMessage {
        StoredMessage { id: UpdateId { sender: NodeId::from_index(9), seq }, ciphertext: vec![1; size] }
    }

    #[test]
    fn the_store_refuses_what_is_over_its_limits_and_pages_stay_in_order_and_bounded() {
        let config = Config {
            update_bytes_max: 1_000,
            flush_bytes: 1_000,
            stored_message_bytes_max: 5_096,
            group_store_bytes_max: 10_000,
            page_messages_max: 2,
            ..Config::default()
        }
        .validate()
        .expect("valid");
        let (mut rng, mut counters, mut effects) = (NodeRng::from_seed(1), Counters::default(), Effects::default());
        let mut cx =
            Context::new(Time::ZERO, NodeId::from_index(1), GroupId([1; 16]), &config, &mut rng, &mut counters, &mut effects)
                .with_room(Room { messages: 9_500, snapshots: 0 });
        let mut store = MessageStore::default();
        assert_eq!(store.add(&mut cx, message(0, 5_097), 0).map(|(p, _)| p), Err(PostRefusal::TooLarge));
        assert_eq!(store.add(&mut cx, message(0, 4_000), 0).map(|(p, _)| p), Ok(1));
        assert_eq!(store.add(&mut cx, message(1, 4_000), 0).map(|(p, _)| p), Ok(2));
        assert_eq!(store.add(&mut cx, message(2, 4_000), 0).map(|(p, _)| p), Err(PostRefusal::QuotaExceeded));
        assert_eq!(store.add(&mut cx, message(2, 1_000), 0).map(|(p, _)| p), Ok(3));
        // Within the group's quota (9,600 of 10,000) but past the node's room (500 left).
        {
            cov_mark::check!(acceptor_refuses_a_message_when_the_node_is_full);
            assert_eq!(store.add(&mut cx, message(3, 600), 0).map(|(p, _)| p), Err(PostRefusal::QuotaExceeded));
        }
        assert_eq!(cx.room.messages, 500, "a refused message takes no room");
        let (page, more) = store.page(&cx, 0);
        assert_eq!(page.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1, 2]);
        assert!(more, "a page holds page_messages_max messages");
        let (page, more) = store.page(&cx, 2);
        assert_eq!((page.len(), more), (1, false));
        let restored = MessageStore::restore(store.by_position.clone(), 4);
        assert_eq!((restored.len(), restored.bytes()), (3, 9_000));
        assert!(restored.holds(&UpdateId { sender: NodeId::from_index(9), seq: 1 }));
    }
}
