//! A device's own document messages for one group, from the first edit to safety.
//!
//! ```text
//!   edit --> Open (durable at every edit) --20 ms or 64 KiB--> Unsafe (posted, re-posted)
//!        --write quorum of acknowledgements--> safe (forgotten; `SafeBelow` advances)
//! ```
//!
//! Every edit rewrites the open batch's durable record before the command returns, so a crash
//! loses no edit the app was told about. A message keeps its id and content for ever; only its
//! ciphertext changes when it must be sealed again in a later epoch.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::NodeId;
use crate::time::Time;

/// The batch local edits are going into.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) seq: u64,
    /// When it closes at the latest (`flush_after_ms` after its first edit).
    pub(crate) flush_at: Time,
    /// Its update so far (as last made durable).
    pub(crate) update: Vec<u8>,
}

/// A closed message no write quorum has acknowledged yet.
#[derive(Debug)]
pub(crate) struct Unsafe {
    pub(crate) update: Vec<u8>,
    /// Acceptors that stored it.
    pub(crate) acks: BTreeSet<NodeId>,
    /// Acceptors that refused it (over their limits); not asked again until a restart.
    pub(crate) refused: BTreeSet<NodeId>,
    /// The ciphertext and the epoch it was sealed in.
    pub(crate) sealed: Option<(u64, Vec<u8>)>,
    /// An epoch an acceptor had already left when this message, sealed in it, reached it: the
    /// message waits for this device to move on, then is sealed again.
    pub(crate) stale_epoch: Option<u64>,
    /// When to post it again to acceptors that have not acknowledged it.
    pub(crate) post_at: Time,
}

/// Own messages of one group.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) open: Option<Open>,
    /// At most `unsafe_messages_max`.
    pub(crate) unsafe_messages: BTreeMap<u64, Unsafe>,
    /// The next sequence number to give a batch.
    pub(crate) next_seq: u64,
    /// Every own message below this is safe (durable as `SafeBelow`).
    pub(crate) safe_below: u64,
}

impl Outbox {
    /// The outbox rebuilt from disk: every own update at or above `safe_below` is unsafe.
    pub(crate) fn restore(now: Time, own: BTreeMap<u64, Vec<u8>>, safe_below: u64) -> Outbox {
        let next_seq = own.last_key_value().map_or(0, |(seq, _)| seq + 1).max(safe_below);
        let unsafe_messages =
            own.into_iter().filter(|(seq, _)| *seq >= safe_below).map(|(seq, update)| (seq, Unsafe::new(update, now))).collect();
        Outbox { open: None, unsafe_messages, next_seq, safe_below }
    }

    /// Messages not safe yet, the open batch included.
    pub(crate) fn unsafe_count(&self) -> usize {
        self.unsafe_messages.len() + usize::from(self.open.is_some())
    }

    /// Puts `update` (everything edited since the last batch closed) in the open batch, opening
    /// one if none is open; returns its sequence number.
    pub(crate) fn write_open(&mut self, flush_at: Time, update: Vec<u8>) -> u64 {
        let next_seq = &mut self.next_seq;
        let open = self.open.get_or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            Open { seq, flush_at, update: Vec::new() }
        });
        open.update = update;
        open.seq
    }

    /// Closes the open batch; it is posted from now on.
    pub(crate) fn close(&mut self, now: Time) -> Option<u64> {
        let open = self.open.take()?;
        self.unsafe_messages.insert(open.seq, Unsafe::new(open.update, now));
        Some(open.seq)
    }

    /// Records an acknowledgement; returns `true` when `needed` acceptors of `set` stored it,
    /// and then forgets it.
    pub(crate) fn acknowledge(&mut self, seq: u64, from: NodeId, set: &[NodeId], needed: usize) -> bool {
        let Some(message) = self.unsafe_messages.get_mut(&seq) else { return false };
        message.acks.insert(from);
        if message.acks.iter().filter(|a| set.contains(a)).count() < needed {
            return false;
        }
        self.unsafe_messages.remove(&seq);
        true
    }

    /// The first own sequence number that may not be safe.
    pub(crate) fn first_unsafe(&self) -> u64 {
        let open = self.open.as_ref().map_or(self.next_seq, |open| open.seq);
        self.unsafe_messages.first_key_value().map_or(open, |(seq, _)| (*seq).min(open))
    }

    /// When the next flush or post is due.
    pub(crate) fn wake_at(&self) -> Option<Time> {
        let flush = self.open.as_ref().map(|open| open.flush_at);
        let post = self.unsafe_messages.values().map(|m| m.post_at).min();
        crate::time::earliest(flush, post)
    }
}

impl Unsafe {
    /// Whether to post it now, this device being at `epoch`.
    pub(crate) fn is_due(&self, now: Time, epoch: u64) -> bool {
        match self.stale_epoch {
            Some(stale) if stale >= epoch => false,
            Some(_) => true,
            None => self.post_at <= now,
        }
    }

    fn new(update: Vec<u8>, now: Time) -> Unsafe {
        Unsafe { update, acks: BTreeSet::new(), refused: BTreeSet::new(), sealed: None, stale_epoch: None, post_at: now }
    }
}
