//! A device's own document messages for one group, from the first edit to safety.
//!
//! ```text
//!   edit --> Open (durable at every edit) --20 ms or 64 KiB--> Unsafe (posted, re-posted)
//!        --write quorum of acknowledgements--> safe (forgotten; `SafeBelow` advances)
//! ```
//!
//! The durable `SafeBelow` may lag the one in memory ([`SafeMark`]): it goes with the group's
//! next write, or alone once `safe_below_write_ms` passed.
//!
//! Every edit is durable before the command returns, so a crash loses no edit the app was told
//! about: the first edit of a batch as the batch's update, each later one as a part of it
//! (`Record::BatchPart`: writing the batch so far again at every edit cost each edit an export
//! of everything before it in its batch). The batch is exported whole once, when it closes, and
//! written over its parts; a restart joins the parts of a batch that had not closed. A message
//! keeps its id and content for ever; only its ciphertext changes when it must be sealed again
//! in a later epoch.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::NodeId;
use crate::time::Time;

/// The batch local edits are going into.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) seq: u64,
    /// When it closes at the latest (`flush_after_ms` after its first edit).
    pub(crate) flush_at: Time,
    /// The update of its first edit: the batch's whole update while it has one part.
    pub(crate) first: Vec<u8>,
    /// How many edits' updates it holds (at least 1).
    pub(crate) parts: u32,
    /// The sizes of its parts added up: about the size of the batch's update.
    pub(crate) bytes: usize,
}

/// A closed message no write quorum has acknowledged yet.
#[derive(Debug)]
pub(crate) struct Unsafe {
    pub(crate) update: Vec<u8>,
    /// Acceptors that stored it.
    pub(crate) acks: BTreeSet<NodeId>,
    /// Acceptors that refused it for good (it is larger than they store); not asked again
    /// until a restart.
    pub(crate) refused: BTreeSet<NodeId>,
    /// Acceptors that had no room for it (`QuotaExceeded`). Still asked, every `FULL_RETRY_MS`: a
    /// compaction, or an operator, may free room. Kept so the app is told once per acceptor.
    pub(crate) full: BTreeSet<NodeId>,
    /// The ciphertext and the epoch it was sealed in.
    pub(crate) sealed: Option<(u64, Vec<u8>)>,
    /// An epoch an acceptor had already left when this message, sealed in it, reached it: the
    /// message waits for this device to move on, then is sealed again. Set only through
    /// [`Outbox::mark_stale`], which keeps the outbox's indexes.
    stale_epoch: Option<u64>,
    /// When to post it again to acceptors that have not acknowledged it. Set only through
    /// [`Outbox::posted`].
    post_at: Time,
    /// `Busy` refusals since an acceptor last acknowledged it: each doubles the wait before the
    /// next post (see [`Outbox::post_after_busy`]).
    busy_refusals: u32,
}

/// How soon a message goes again to an acceptor that was busy (`PostRefusal::Busy`) the first
/// time: its undecided slot is decided within a few round trips. Later refusals wait twice as
/// long each, up to the normal resend pace.
pub(crate) const BUSY_RETRY_MS: u64 = 20;

/// Own messages of one group.
///
/// Every unsafe message is in exactly one of two indexes: `stale` if it waits for an epoch to
/// pass, else `by_post_at`. They exist because the writer asks what is due after every edit and
/// the node asks when to wake after every input, with up to `unsafe_messages_max` messages
/// waiting for acknowledgements: scanning all of them each time was 2–3% of the real
/// benchmark's CPU (by a `perf` profile).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) open: Option<Open>,
    /// At most `unsafe_messages_max`.
    unsafe_messages: BTreeMap<u64, Unsafe>,
    /// Unsafe messages that are not stale, by when each is next posted.
    by_post_at: BTreeSet<(Time, u64)>,
    /// Unsafe messages waiting for this device to leave the epoch they were sealed in.
    stale: BTreeSet<u64>,
    /// The next sequence number to give a batch.
    pub(crate) next_seq: u64,
    /// Every own message below this is safe.
    pub(crate) safe_below: u64,
    /// Whether `SafeBelow` on disk says `safe_below` yet.
    safe_mark: SafeMark,
}

/// Whether the durable `SafeBelow` is current. It may lag, because a commit of its own after
/// every write quorum made two fsyncs per batch at a device that keeps typing (one for the edit,
/// one for its safety) where one will do. A crash while it lags loses nothing: after a restart
/// the messages at or above the durable mark are posted again, and acceptors acknowledge the
/// copies they hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum SafeMark {
    #[default]
    Written,
    /// Behind `safe_below`: written with the group's next write, or alone at `write_by`.
    Behind { write_by: Time },
}

impl Outbox {
    /// The outbox rebuilt from disk: every own update at or above `safe_below` is unsafe.
    /// `used_below`: own sequence numbers below it were given out (the updates of some may be
    /// gone from disk, held by a checkpoint), so none of them is given again.
    pub(crate) fn restore(now: Time, own: BTreeMap<u64, Vec<u8>>, safe_below: u64, used_below: u64) -> Outbox {
        let next_seq = own.last_key_value().map_or(0, |(seq, _)| seq + 1).max(safe_below).max(used_below);
        let mut outbox = Outbox { next_seq, safe_below, ..Outbox::default() };
        for (seq, update) in own.into_iter().filter(|(seq, _)| *seq >= safe_below) {
            outbox.insert(seq, update, now);
        }
        outbox
    }

    fn insert(&mut self, seq: u64, update: Vec<u8>, now: Time) {
        self.unsafe_messages.insert(seq, Unsafe::new(update, now));
        self.by_post_at.insert((now, seq));
    }

    /// Unsafe messages, the open batch not included.
    pub(crate) fn unsafe_len(&self) -> usize {
        self.unsafe_messages.len()
    }

    /// An unsafe message.
    pub(crate) fn message_mut(&mut self, seq: u64) -> Option<&mut Unsafe> {
        self.unsafe_messages.get_mut(&seq)
    }

    /// The messages to post now, this device being at `epoch`: at most `max`, those whose
    /// stale epoch has passed first, then by how long they have been due.
    pub(crate) fn due(&self, now: Time, epoch: u64, max: usize) -> Vec<u64> {
        let stale = self.stale.iter().copied().filter(|seq| self.unsafe_messages[seq].is_due(now, epoch));
        let timed = self.by_post_at.iter().take_while(|(at, _)| *at <= now).map(|(_, seq)| *seq);
        stale.chain(timed).take(max).collect()
    }

    /// `seq` was just posted (or would have been, had it been sealed): next time at `next`.
    pub(crate) fn posted(&mut self, seq: u64, next: Time) {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return };
        if message.stale_epoch.take().is_some() {
            self.stale.remove(&seq);
        } else {
            self.by_post_at.remove(&(message.post_at, seq));
        }
        message.post_at = next;
        self.by_post_at.insert((next, seq));
    }

    /// Posts `seq` again at `at` if that is sooner than planned (and it needs no new sealing).
    pub(crate) fn post_sooner(&mut self, seq: u64, at: Time) {
        self.post_again_at(seq, at, |planned| at < planned);
    }

    /// An acceptor was busy (a slot of its undecided) when `seq` reached it: post it again soon,
    /// but each time later while it stays busy (up to `resend_ms`, the normal pace), and at a
    /// multiple of [`BUSY_RETRY_MS`], so that the messages one busy spell refused go again
    /// together. Without either, an acceptor kept busy for seconds (cut off from a quorum while
    /// it held an accepted value) had each of a device's unsafe messages posted every 20 ms on a
    /// timer of its own: hundreds of wake-ups a second (seed 1087 of
    /// `document/four-devices-editing-at-once-converge-under-faults`, `timers-never-spin`).
    pub(crate) fn post_after_busy(&mut self, seq: u64, now: Time, resend_ms: u64) {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return };
        let wait = BUSY_RETRY_MS.saturating_mul(1 << message.busy_refusals.min(16)).min(resend_ms.max(BUSY_RETRY_MS));
        message.busy_refusals = message.busy_refusals.saturating_add(1);
        let at = now.plus_ms(wait).0.div_ceil(BUSY_RETRY_MS).saturating_mul(BUSY_RETRY_MS);
        self.post_sooner(seq, Time(at));
    }

    /// Posts `seq` again at `at` if that is later than planned (and it needs no new sealing).
    pub(crate) fn post_later(&mut self, seq: u64, at: Time) {
        self.post_again_at(seq, at, |planned| at > planned);
    }

    fn post_again_at(&mut self, seq: u64, at: Time, moves: impl FnOnce(Time) -> bool) {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return };
        if message.stale_epoch.is_some() || !moves(message.post_at) {
            return;
        }
        self.by_post_at.remove(&(message.post_at, seq));
        message.post_at = at;
        self.by_post_at.insert((at, seq));
    }

    /// An acceptor had left `epoch`, the epoch `seq` was sealed in, when the message reached it.
    pub(crate) fn mark_stale(&mut self, seq: u64, epoch: u64) {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return };
        if message.stale_epoch.replace(epoch).is_none() {
            self.by_post_at.remove(&(message.post_at, seq));
            self.stale.insert(seq);
        }
    }

    /// Messages not safe yet, the open batch included.
    pub(crate) fn unsafe_count(&self) -> usize {
        self.unsafe_messages.len() + usize::from(self.open.is_some())
    }

    /// Adds `update` (one edit's) to the open batch, opening one if none is open; returns the
    /// batch's sequence number and the update's place in it (0 for the first).
    pub(crate) fn add_to_open(&mut self, flush_at: Time, update: &[u8]) -> (u64, u32) {
        if let Some(open) = self.open.as_mut() {
            let part = open.parts;
            open.parts += 1;
            open.bytes += update.len();
            return (open.seq, part);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.open = Some(Open { seq, flush_at, first: update.to_vec(), parts: 1, bytes: update.len() });
        (seq, 0)
    }

    /// Closes the open batch, whose whole update is `whole` (`None` if it has one part, its
    /// first); it is posted from now on.
    pub(crate) fn close(&mut self, now: Time, whole: Option<Vec<u8>>) -> Option<u64> {
        let open = self.open.take()?;
        debug_assert_eq!(whole.is_some(), open.parts > 1, "a batch of several edits is exported whole when it closes");
        self.insert(open.seq, whole.unwrap_or(open.first), now);
        Some(open.seq)
    }

    /// Own messages below `below` are safe. Returns whether that is news; the durable record
    /// then lags until [`Outbox::take_safe_mark`] gives it out, `write_by` at the latest.
    pub(crate) fn advance_safe_below(&mut self, below: u64, write_by: Time) -> bool {
        if below <= self.safe_below {
            return false;
        }
        self.safe_below = below;
        if self.safe_mark == SafeMark::Written {
            self.safe_mark = SafeMark::Behind { write_by };
        }
        true
    }

    /// Whether the durable `SafeBelow` lags the one in memory.
    pub(crate) fn safe_mark_behind(&self) -> bool {
        self.safe_mark != SafeMark::Written
    }

    /// The `SafeBelow` to write now, if it lags and either the node writes anyway (`writing`)
    /// or it is due; it counts as written from here on.
    pub(crate) fn take_safe_mark(&mut self, now: Time, writing: bool) -> Option<u64> {
        match self.safe_mark {
            SafeMark::Behind { write_by } if writing || now >= write_by => {
                self.safe_mark = SafeMark::Written;
                Some(self.safe_below)
            }
            _ => None,
        }
    }

    /// Records an acknowledgement; returns `true` when `needed` acceptors of `set` stored it,
    /// and then forgets it.
    pub(crate) fn acknowledge(&mut self, seq: u64, from: NodeId, set: &[NodeId], needed: usize) -> bool {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return false };
        message.acks.insert(from);
        message.busy_refusals = 0;
        if message.acks.iter().filter(|a| set.contains(a)).count() < needed {
            return false;
        }
        let message = self.unsafe_messages.remove(&seq).expect("found above");
        if message.stale_epoch.is_some() {
            self.stale.remove(&seq);
        } else {
            self.by_post_at.remove(&(message.post_at, seq));
        }
        true
    }

    /// The first own sequence number that may not be safe.
    pub(crate) fn first_unsafe(&self) -> u64 {
        let open = self.open.as_ref().map_or(self.next_seq, |open| open.seq);
        self.unsafe_messages.first_key_value().map_or(open, |(seq, _)| (*seq).min(open))
    }

    /// When the next flush, post or write of the safe mark is due. Posts count only if the
    /// device can post, in the epoch `posting_in` (see `Membership::may_post`), and a stale
    /// message only once that epoch is past its own: until then nothing would change, and a
    /// deadline in the past made the node wake every millisecond in the simulator (a real
    /// driver would spin). Leaving the epoch touches the group, which asks again.
    pub(crate) fn wake_at(&self, posting_in: Option<u64>) -> Option<Time> {
        let flush = self.open.as_ref().map(|open| open.flush_at);
        let post = posting_in.and_then(|epoch| {
            // Stale messages are rarely many.
            let stale = self.stale.iter().map(|seq| &self.unsafe_messages[seq]);
            let stale = stale.filter(|message| message.stale_epoch.is_some_and(|at| at < epoch)).map(|m| m.post_at).min();
            crate::time::earliest(self.by_post_at.first().map(|(at, _)| *at), stale)
        });
        let mark = match self.safe_mark {
            SafeMark::Behind { write_by } => Some(write_by),
            SafeMark::Written => None,
        };
        crate::time::earliest(crate::time::earliest(flush, post), mark)
    }
}

impl Unsafe {
    /// Whether to post it now, this device being at `epoch`.
    fn is_due(&self, now: Time, epoch: u64) -> bool {
        match self.stale_epoch {
            Some(stale) if stale >= epoch => false,
            Some(_) => true,
            None => self.post_at <= now,
        }
    }

    fn new(update: Vec<u8>, now: Time) -> Unsafe {
        Unsafe {
            update,
            acks: BTreeSet::new(),
            refused: BTreeSet::new(),
            full: BTreeSet::new(),
            sealed: None,
            stale_epoch: None,
            post_at: now,
            busy_refusals: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes hold every unsafe message exactly once, each where its state says.
    fn assert_indexed(outbox: &Outbox) {
        assert_eq!(outbox.by_post_at.len() + outbox.stale.len(), outbox.unsafe_messages.len());
        for (seq, message) in &outbox.unsafe_messages {
            match message.stale_epoch {
                Some(_) => assert!(outbox.stale.contains(seq)),
                None => assert!(outbox.by_post_at.contains(&(message.post_at, *seq))),
            }
        }
    }

    fn closed(outbox: &mut Outbox, at: u64) -> u64 {
        outbox.add_to_open(Time(at + 20), &[1]);
        outbox.close(Time(at), None).expect("a batch was open")
    }

    #[test]
    fn messages_a_busy_acceptor_refused_go_again_together_and_less_often_while_it_stays_busy() {
        let mut outbox = Outbox::default();
        let (first, second) = (closed(&mut outbox, 0), closed(&mut outbox, 0));
        for seq in [first, second] {
            outbox.posted(seq, Time(1_000));
        }
        // Refused at 103 and 109 ms: both go again at 140 ms, not at 123 and 129.
        outbox.post_after_busy(first, Time(103), 1_000);
        outbox.post_after_busy(second, Time(109), 1_000);
        assert_eq!(outbox.wake_at(Some(0)), Some(Time(140)));
        assert_eq!(outbox.due(Time(140), 0, 64), vec![first, second]);
        // Refused again and again: 40, 80, 160 ms later (rounded up to 20), then the resend pace.
        let mut waits = Vec::new();
        let mut now = Time(140);
        for _ in 0..7 {
            outbox.posted(first, now.plus_ms(1_000));
            outbox.post_after_busy(first, now, 1_000);
            let at = outbox.unsafe_messages[&first].post_at;
            waits.push(at.0 - now.0);
            now = at;
        }
        assert_eq!(waits, vec![40, 80, 160, 320, 640, 1_000, 1_000]);
        // An acknowledgement from another acceptor starts the doubling over.
        assert!(!outbox.acknowledge(first, NodeId::from_index(1), &[NodeId::from_index(1), NodeId::from_index(2)], 2));
        outbox.posted(first, now.plus_ms(1_000));
        outbox.post_after_busy(first, now, 1_000);
        assert_eq!(outbox.unsafe_messages[&first].post_at, now.plus_ms(20));
        assert_indexed(&outbox);
    }

    #[test]
    fn due_messages_come_from_the_indexes_and_leave_them_when_safe() {
        let mut outbox = Outbox::default();
        let (first, second, third) = (closed(&mut outbox, 10), closed(&mut outbox, 11), closed(&mut outbox, 12));
        assert_eq!(outbox.wake_at(Some(0)), Some(Time(10)));
        assert_eq!(outbox.wake_at(None), None, "a device that cannot post is not woken to post");
        assert_eq!(outbox.due(Time(11), 0, 64), vec![first, second]);
        assert_eq!(outbox.due(Time(12), 0, 2), vec![first, second], "at most `max`, longest due first");

        outbox.posted(first, Time(100));
        assert_eq!(outbox.due(Time(12), 0, 64), vec![second, third]);
        outbox.mark_stale(second, 3);
        assert_eq!(outbox.due(Time(12), 3, 64), vec![third], "stale until the device leaves epoch 3");
        assert_eq!(outbox.due(Time(12), 4, 64), vec![second, third], "then due at once, first");
        assert_eq!(outbox.wake_at(Some(3)), Some(Time(12)), "a stale message does not wake the node in its epoch");
        assert_eq!(outbox.wake_at(Some(4)), Some(Time(11)), "but once the node left it");
        assert_indexed(&outbox);

        let acceptors = [NodeId::from_index(1)];
        assert!(outbox.acknowledge(second, acceptors[0], &acceptors, 1));
        assert!(outbox.acknowledge(third, acceptors[0], &acceptors, 1));
        assert_indexed(&outbox);
        assert_eq!(outbox.due(Time(99), 4, 64), Vec::<u64>::new());
        assert_eq!(outbox.wake_at(Some(0)), Some(Time(100)));
        outbox.posted(first, Time(200));
        assert_eq!(outbox.wake_at(Some(0)), Some(Time(200)));
        assert_indexed(&outbox);
    }

    #[test]
    fn the_safe_mark_is_given_out_once_with_a_write_or_when_due() {
        let mut outbox = Outbox::default();
        assert!(outbox.advance_safe_below(3, Time(500)));
        assert!(!outbox.advance_safe_below(2, Time(900)), "never backwards");
        assert_eq!(outbox.take_safe_mark(Time(100), false), None, "neither writing nor due");
        assert!(outbox.advance_safe_below(5, Time(900)));
        assert_eq!(outbox.wake_at(Some(0)), Some(Time(500)), "due since it first fell behind");
        assert_eq!(outbox.take_safe_mark(Time(100), true), Some(5), "a write carries the latest");
        assert_eq!(outbox.take_safe_mark(Time(600), true), None, "once");
        assert_eq!(outbox.wake_at(Some(0)), None);
        assert!(outbox.advance_safe_below(6, Time(700)));
        assert_eq!(outbox.take_safe_mark(Time(700), false), Some(6), "alone once due");
    }

    #[test]
    fn a_restored_outbox_indexes_every_unsafe_message() {
        let own = BTreeMap::from([(0, vec![0]), (1, vec![1]), (2, vec![2])]);
        let outbox = Outbox::restore(Time(5), own, 1, 0);
        assert_eq!(outbox.due(Time(5), 0, 64), vec![1, 2]);
        assert_eq!(outbox.next_seq, 3);
        assert_indexed(&outbox);
    }

    #[test]
    fn a_restored_outbox_gives_no_used_number_again() {
        let outbox = Outbox::restore(Time(5), BTreeMap::new(), 3, 7);
        assert_eq!(outbox.next_seq, 7, "seqs 3..7 are held by a checkpoint, not on disk as updates");
    }
}
