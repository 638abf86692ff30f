//! A device group's document: local edits into the durable outbox, posts to the acceptors until
//! a write quorum has stored them, and reading the acceptors' stores (pushes and backfill).

use std::collections::BTreeMap;

use crate::acceptor::positions_follow;
use crate::canary::canary;
use crate::context::Context;
use crate::device::group::DeviceGroup;
use crate::device::group::messaging::Read;
use crate::device::replica::Replica;
use crate::document::{Document, DocumentError};
use crate::ids::NodeId;
use crate::io::{CommandError, Event, Rejection};
use crate::storage::Record;
use crate::updates::{Cursor, Payload, PostRefusal, Posted, StoredMessage, UpdateId, frame_full, framed_cost};
use crate::wire::Message;

/// How long a device waits before posting again a message an acceptor had no room for. Room
/// comes back with a compaction or an operator, not within a second: waiting longer than
/// `post_resend_ms` keeps a device with many such messages from sending a full acceptor up to
/// `posts_per_round_max` large messages every second for nothing.
const FULL_RETRY_MS: u64 = 5_000;

/// The writes of a page's messages, gathered while it is read: openmls's state is compared with
/// what is durable once per page instead of once per message (a copy of its ~5 KiB of message
/// secrets each time), and the page's updates become durable in one batch with it, before any
/// of them is announced.
#[derive(Debug, Default)]
pub(crate) struct PageWrites {
    /// The page's `Record::Update`s, and a `Record::Undecryptable` for each message it could not
    /// decrypt for being too old.
    pub(crate) records: Vec<Record>,
    /// The updates applied, to announce once durable.
    pub(crate) changed: Vec<crate::updates::UpdateId>,
    /// Whether openmls read any of the page's messages (a page of copies already applied
    /// writes nothing: see `save_cursors`).
    pub(crate) decrypted: bool,
}

impl DeviceGroup {
    /// The document (MLS groups only).
    pub(crate) fn replica(&self) -> &Replica {
        self.replica.as_ref().expect("invariant: MLS groups have a replica")
    }

    fn replica_mut(&mut self) -> &mut Replica {
        self.replica.as_mut().expect("invariant: MLS groups have a replica")
    }

    /// Applies a local edit and makes the open batch durable with it.
    pub(crate) fn edit(
        &mut self,
        cx: &mut Context<'_>,
        position: usize,
        delete: usize,
        insert: &str,
    ) -> Result<(), CommandError> {
        let Some(mls) = self.mls.as_ref() else { return Err(CommandError::NotMls(cx.group)) };
        mls.may_write(cx.group, cx.me)?;
        // A Loro update carries the inserted text plus a little; half the limit leaves room.
        let limit = cx.config.update_bytes_max / 2;
        if insert.len() > limit {
            return Err(CommandError::ValueTooLarge { size: insert.len(), limit });
        }
        if delete == 0 && insert.is_empty() {
            return Ok(());
        }
        let replica = self.replica_mut();
        if replica.outbox.open.is_none() && replica.outbox.unsafe_len() >= cx.config.unsafe_messages_max {
            return Err(CommandError::QueueFull(replica.outbox.unsafe_len()));
        }
        // A batch this edit would push past the flush size leaves first.
        if replica.outbox.open.as_ref().is_some_and(|open| open.bytes + insert.len() > cx.config.flush_bytes) {
            self.flush(cx).map_err(CommandError::Document)?;
        }
        let replica = self.replica_mut();
        replica.doc.splice(position, delete, insert).map_err(CommandError::Document)?;
        let update = match replica.doc.unsaved_local_update() {
            Ok(Some(update)) => update,
            Ok(None) => return Ok(()),
            Err(error) => return Err(CommandError::Document(error)),
        };
        let (seq, part) = replica.outbox.add_to_open(cx.now.plus_ms(cx.config.flush_after_ms), &update);
        let full = replica.outbox.open.as_ref().is_some_and(|open| open.bytes >= cx.config.flush_bytes);
        let id = UpdateId { sender: cx.me, seq };
        replica.applied.insert(id, cx.config.updates_out_of_order_max);
        let epoch = self.mls.as_ref().map_or(0, |mls| mls.member.epoch());
        self.note_uncovered(id, epoch, 0);
        if !canary!(cx.config, OutboxNotPersisted) {
            let peer = self.replica_mut().record_peer(cx.group);
            let record = match part {
                0 => Record::Update { group: cx.group, id, update },
                part => Record::BatchPart { group: cx.group, id, part, update },
            };
            cx.persist(peer.into_iter().chain([record]).collect());
        }
        if full {
            self.flush(cx).map_err(CommandError::Document)?;
        }
        self.checkpoint_when_due(cx);
        Ok(())
    }

    /// Closes the open batch; it is posted on the next `Input::Flush`. A batch of several edits
    /// is exported whole and written over its parts (in one batch with the sealing that follows,
    /// when the driver joins consecutive writes).
    pub(super) fn flush(&mut self, cx: &mut Context<'_>) -> Result<(), crate::document::DocumentError> {
        let replica = self.replica_mut();
        let Some(open) = replica.outbox.open.as_ref() else { return Ok(()) };
        let (seq, several) = (open.seq, open.parts > 1);
        let whole = if several { replica.doc.pending_local_update()? } else { None };
        replica.doc.mark_local_update_sent();
        if let Some(update) = whole.clone() {
            cx.persist(vec![Record::BatchClosed { group: cx.group, id: UpdateId { sender: cx.me, seq }, update }]);
        }
        if replica.outbox.close(cx.now, whole).is_some() {
            self.post_on_flush = true;
        }
        Ok(())
    }

    /// Document work on the group's timer: close a batch that waited long enough, post again.
    pub(super) fn document_timer(&mut self, cx: &mut Context<'_>) {
        let Some(replica) = self.replica.as_ref() else { return };
        if replica.outbox.open.as_ref().is_none_or(|open| cx.now < open.flush_at) {
            self.post_due(cx);
            return;
        }
        if self.flush(cx).is_err() {
            // Loro could not export operations it holds: our own invariant broke, or Loro's. The
            // batch stays open (and durable, part by part) and is tried again a little later,
            // rather than the timer firing at once, again and again.
            if let Some(open) = self.replica_mut().outbox.open.as_mut() {
                open.flush_at = cx.now.plus_ms(cx.config.flush_after_ms.max(1));
            }
        }
    }

    /// When the document next needs the timer.
    pub(super) fn document_wake_at(&self) -> Option<crate::time::Time> {
        let posting_in = self.mls.as_ref().filter(|mls| mls.may_post()).map(|mls| mls.member.epoch());
        self.replica.as_ref().and_then(|replica| replica.outbox.wake_at(posting_in))
    }

    /// Posts unsafe messages whose time has come to the acceptors that have not stored them,
    /// sealing them for the current epoch first (the advanced ratchet is durable before any
    /// ciphertext leaves). Nothing is sealed while our own commit is undecided.
    pub(crate) fn post_due(&mut self, cx: &mut Context<'_>) {
        let (Some(mls), Some(replica)) = (self.mls.as_mut(), self.replica.as_mut()) else { return };
        if !mls.may_post() {
            return;
        }
        let epoch = mls.member.epoch();
        let due = replica.outbox.due(cx.now, epoch, cx.config.posts_per_round_max);
        if due.is_empty() {
            return;
        }
        let mut sealed_any = false;
        for seq in &due {
            let message = replica.outbox.message_mut(*seq).expect("listed above");
            if message.sealed.as_ref().is_some_and(|(at, _)| *at == epoch) {
                continue;
            }
            let payload = Payload::Update { seq: *seq, update: message.update.clone() }.encode();
            let sealed = if canary!(cx.config, AcceptorSeesPlaintext) { Ok(payload) } else { mls.encrypt(&payload) };
            match sealed {
                Ok(ciphertext) => {
                    message.sealed = Some((epoch, ciphertext));
                    sealed_any = true;
                    replica.compactor.note_sealed(UpdateId { sender: cx.me, seq: *seq }, epoch);
                }
                Err(error) => cx.effects.notify(Event::CommandFailed { error: CommandError::Mls(error.to_string()) }),
            }
        }
        if sealed_any {
            let records = mls.changes(cx.group, false);
            cx.persist(records);
        }
        // To each acceptor, what it has not stored, a frame's worth at a time.
        let acceptors = self.history.latest().members().to_vec();
        let mut posts: BTreeMap<NodeId, (Vec<Posted>, usize)> = BTreeMap::new();
        for seq in due {
            replica.outbox.posted(seq, cx.now.plus_ms(cx.config.post_resend_ms));
            let message = replica.outbox.message_mut(seq).expect("listed above");
            let Some((_, ciphertext)) = &message.sealed else { continue };
            let cost = framed_cost(ciphertext);
            for acceptor in acceptors.iter().filter(|a| !message.acks.contains(a) && !message.refused.contains(a)) {
                let (post, used) = posts.entry(*acceptor).or_default();
                if frame_full(cx.config, post.len(), *used + cost) {
                    cov_mark::hit!(device_posts_a_full_frame_and_starts_another);
                    cx.send(*acceptor, Message::Post { messages: std::mem::take(post) });
                    *used = 0;
                }
                *used += cost;
                post.push(Posted { seq, ciphertext: ciphertext.clone() });
            }
        }
        for (acceptor, (messages, _)) in posts {
            cx.send(acceptor, Message::Post { messages });
        }
    }

    /// An acceptor stored some of our messages.
    pub(super) fn on_post_ack(&mut self, cx: &mut Context<'_>, from: NodeId, seqs: Vec<u64>) {
        let acceptors = self.history.latest().members().to_vec();
        let Some(replica) = self.replica.as_mut() else { return cx.reject(Rejection::Unauthorised) };
        if seqs.len() > cx.config.page_messages_max {
            return cx.reject(Rejection::OverLimit);
        }
        let needed = if canary!(cx.config, SafeAfterOneAck) { 1 } else { cx.config.write_quorum.of(acceptors.len()) };
        let safe: Vec<u64> = seqs.into_iter().filter(|seq| replica.outbox.acknowledge(*seq, from, &acceptors, needed)).collect();
        if safe.is_empty() {
            return;
        }
        let below = replica.outbox.first_unsafe();
        replica.outbox.advance_safe_below(below, cx.now.plus_ms(cx.config.safe_below_write_ms));
        let unsafe_messages = replica.outbox.unsafe_count();
        for seq in safe {
            cx.effects.notify(Event::DocumentSafe { group: cx.group, seq, unsafe_messages });
        }
    }

    /// Writes a lagging `SafeBelow` when this input writes anyway (`writing`: the commit is
    /// happening, and the record costs it a row) or once it is due.
    pub(crate) fn write_safe_mark(&mut self, cx: &mut Context<'_>, writing: bool) {
        let Some(replica) = self.replica.as_mut() else { return };
        if let Some(seq) = replica.outbox.take_safe_mark(cx.now, writing) {
            if !writing {
                cov_mark::hit!(device_writes_its_safe_mark_alone_once_due);
            }
            cx.persist(vec![Record::SafeBelow { group: cx.group, seq }]);
        }
    }

    /// Whether the durable `SafeBelow` lags the one in memory.
    pub(crate) fn safe_mark_behind(&self) -> bool {
        self.replica.as_ref().is_some_and(|replica| replica.outbox.safe_mark_behind())
    }

    /// An acceptor will not store one of our messages. Sealed in an epoch it has left: catch
    /// up, then seal it again. Busy: ask again soon, then less and less often. Out of room: say so once, and keep asking
    /// every `FULL_RETRY_MS`. Too large for it: say so once, and stop asking it.
    pub(super) fn on_post_refused(&mut self, cx: &mut Context<'_>, from: NodeId, seq: u64, reason: PostRefusal) {
        let Some(replica) = self.replica.as_mut() else { return cx.reject(Rejection::Unauthorised) };
        let Some(message) = replica.outbox.message_mut(seq) else { return cx.reject(Rejection::Duplicate) };
        if let PostRefusal::StaleEpoch { current } = reason {
            // About our latest sealing only if it is older than the acceptor's epoch (a late
            // copy of an earlier post says nothing).
            if let Some(&(sealed, _)) = message.sealed.as_ref().filter(|(sealed, _)| *sealed < current) {
                cov_mark::hit!(device_seals_again_after_its_epoch_was_stale);
                replica.outbox.mark_stale(seq, sealed);
                self.next_sync_at = cx.now;
            }
            return;
        }
        if reason == PostRefusal::Busy {
            cov_mark::hit!(device_posts_again_soon_after_an_acceptor_was_busy);
            replica.outbox.post_after_busy(seq, cx.now, cx.config.post_resend_ms);
            return;
        }
        let first = if reason == PostRefusal::QuotaExceeded {
            cov_mark::hit!(device_keeps_posting_to_an_acceptor_that_was_full);
            message.full.insert(from)
        } else {
            message.refused.insert(from)
        };
        if first {
            cx.effects.notify(Event::PostRefused { group: cx.group, seq, acceptor: from, reason });
        }
        if reason == PostRefusal::QuotaExceeded {
            replica.outbox.post_later(seq, cx.now.plus_ms(FULL_RETRY_MS));
        }
    }

    /// Asks every acceptor for the messages after our cursor for it.
    pub(super) fn fetch(&mut self, cx: &mut Context<'_>) {
        let Some(replica) = self.replica.as_ref() else { return };
        if !self.mls.as_ref().is_some_and(|mls| mls.member.is_active()) {
            return;
        }
        for acceptor in self.history.latest().members().to_vec() {
            let after = replica.cursors.get(&acceptor).copied().unwrap_or_default();
            cx.send(acceptor, Message::Fetch { after });
        }
    }

    /// A page of an acceptor's store (a push carries one message). Messages are read in any
    /// order, but the cursor advances only over a contiguous run that needs no second look.
    pub(super) fn on_page(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        after: Cursor,
        messages: Vec<(u64, StoredMessage)>,
        more: bool,
    ) {
        if self.replica.is_none() || !self.mls.as_ref().is_some_and(|mls| mls.member.is_active()) {
            return cx.reject(Rejection::Unauthorised);
        }
        if !positions_follow(after, messages.iter().map(|(position, _)| *position)) {
            cov_mark::hit!(device_refuses_a_page_with_forged_positions);
            return cx.reject(Rejection::Invalid);
        }
        let stored = self.replica().cursors.get(&from).copied().unwrap_or_default();
        let known = if stored.incarnation == after.incarnation {
            stored
        } else {
            // The acceptor started over on an empty disk: its old positions mean nothing.
            Cursor { incarnation: after.incarnation, position: 0 }
        };
        let contiguous = after.position == known.position;
        let (mut reached, mut held) = (known.position, false);
        let writes_before = cx.effects.persists();
        self.page_writes = Some(PageWrites::default());
        for (position, message) in messages {
            let read = self.read_stored(cx, message);
            held |= read == Read::Held;
            if contiguous && !held {
                reached = position;
            }
            if self.replica().doc.is_broken() || self.mls.as_ref().is_some_and(|mls| mls.member.is_broken()) {
                // The rest of the page waits for the rebuilt node: the cursor stops after the
                // message that broke the document or the MLS member, so they are fetched again.
                break;
            }
        }
        self.finish_page(cx);
        let cursor = Cursor { incarnation: after.incarnation, position: reached };
        if cursor != stored {
            let replica = self.replica_mut();
            replica.cursors.insert(from, cursor);
            replica.cursors_unsaved.insert(from);
        }
        // A cursor that passed a message openmls panicked on is saved even when nothing else
        // is written: the node is built again from storage next, and would read it again.
        self.save_cursors(cx, cx.effects.persists() > writes_before || self.mls_is_broken());
        self.checkpoint_when_due(cx);
        let gap = after.position > known.position;
        if (contiguous && more && !held) || gap {
            cov_mark::hit!(device_fetches_the_rest_of_an_acceptors_store);
            cx.send(from, Message::Fetch { after: cursor });
        }
    }

    /// Announces the page's updates and makes what its messages wrote durable in one batch.
    /// The announcements come first: they need not wait for the write (see
    /// [`Event::waits_for_writes`]).
    fn finish_page(&mut self, cx: &mut Context<'_>) {
        let Some(PageWrites { records, changed, decrypted }) = self.page_writes.take() else { return };
        if !decrypted {
            return;
        }
        for id in changed {
            cx.effects.notify(Event::DocumentChanged { group: cx.group, id });
        }
        let mls = self.mls.as_mut().expect("invariant: only MLS groups read pages");
        let mut batch = mls.changes(cx.group, false);
        batch.extend(records);
        cx.persist(batch);
    }

    /// Persists the cursors that moved, when this input writes anyway (`writing`: it read a
    /// message, or changed MLS state). A page of duplicates alone (every acceptor pushes each
    /// message, and only the first copy is read) writes nothing: that saves a commit per
    /// copy, and a restart re-reads at most what the unsaved cursors passed, as duplicates.
    fn save_cursors(&mut self, cx: &mut Context<'_>, writing: bool) {
        let replica = self.replica_mut();
        if replica.cursors_unsaved.is_empty() {
            return;
        }
        if !writing {
            cov_mark::hit!(device_defers_a_cursor_that_passed_only_duplicates);
            return;
        }
        let unsaved = std::mem::take(&mut replica.cursors_unsaved);
        let records = unsaved
            .into_iter()
            .filter_map(|acceptor| {
                Some(Record::ReadCursor { group: cx.group, acceptor, cursor: *replica.cursors.get(&acceptor)? })
            })
            .collect();
        cx.persist(records);
    }

    /// One stored message: skipped if applied (or ours), else decrypted and applied.
    fn read_stored(&mut self, cx: &mut Context<'_>, message: StoredMessage) -> Read {
        let id = message.id;
        if id.sender == cx.me || self.replica().applied.contains(&id) {
            cx.reject(Rejection::Duplicate);
            return Read::Done;
        }
        if self.replica().compactor.awaits_snapshot_of(&id) {
            // Known unreadable (too old, or openmls panicked on it): only a snapshot brings it.
            cov_mark::hit!(device_skips_a_message_it_knows_it_cannot_read);
            cx.reject(Rejection::Duplicate);
            return Read::Done;
        }
        self.read_message(cx, id.sender, message.ciphertext, Some(id))
    }

    /// Merges a decrypted update into the document; returns the record that keeps it.
    pub(super) fn apply_update(&mut self, cx: &mut Context<'_>, id: UpdateId, update: Vec<u8>) -> Option<Record> {
        let replica = self.replica_mut();
        if replica.applied.contains(&id) {
            cx.reject(Rejection::Duplicate);
            return None;
        }
        match replica.doc.merge(&update) {
            Ok(()) => {}
            Err(DocumentError::Broken) => {
                // Loro panicked on it. The update is refused like any that does not import;
                // the document is gone from memory, so the node is built again from storage,
                // which holds everything merged before it (see `LoroDocument::import`).
                cov_mark::hit!(device_rebuilds_after_its_document_library_panicked);
                cx.reject(Rejection::Invalid);
                cx.effects.rebuild_from_storage = true;
                return None;
            }
            Err(_) => {
                cov_mark::hit!(device_refuses_an_update_that_does_not_import);
                cx.reject(Rejection::Invalid);
                return None;
            }
        }
        replica.applied.insert(id, cx.config.updates_out_of_order_max);
        Some(Record::Update { group: cx.group, id, update })
    }
}
