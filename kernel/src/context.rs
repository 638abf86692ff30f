//! The context one `handle` call passes down to the group it is about.

use crate::config::ValidConfig;
use crate::ids::{GroupId, NodeId};
use crate::io::{Counters, Effect, Effects, Rejection};
use crate::log::Entry;
use crate::rng::NodeRng;
use crate::storage::{Record, WriteBatch};
use crate::time::Time;
use crate::wire::{Envelope, Message, encode};

/// Everything a group's state machine may touch while handling one input.
pub(crate) struct Context<'a> {
    pub(crate) now: Time,
    pub(crate) me: NodeId,
    pub(crate) group: GroupId,
    pub(crate) config: &'a ValidConfig,
    pub(crate) rng: &'a mut NodeRng,
    pub(crate) counters: &'a mut Counters,
    pub(crate) effects: &'a mut Effects,
    /// What an acceptor may still take in for this group. Zero unless the input's path set it
    /// ([`Context::with_room`]): only frames bring an acceptor new bytes.
    pub(crate) room: Room,
}

/// Bytes an acceptor may still take in for the group at hand: its node-wide budgets
/// (`node_store_bytes_max`, `node_snapshot_bytes_max`) less what its other groups hold, and less
/// what this input took in so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Room {
    pub(crate) messages: u64,
    pub(crate) snapshots: u64,
}

impl Room {
    /// Takes `bytes` of message room; false (and nothing taken) if there is not that much.
    pub(crate) fn take_messages(&mut self, bytes: usize) -> bool {
        take(&mut self.messages, bytes)
    }

    /// Takes `bytes` of snapshot room; false (and nothing taken) if there is not that much.
    pub(crate) fn take_snapshots(&mut self, bytes: usize) -> bool {
        take(&mut self.snapshots, bytes)
    }
}

fn take(room: &mut u64, bytes: usize) -> bool {
    match room.checked_sub(bytes as u64) {
        Some(left) => {
            *room = left;
            true
        }
        None => false,
    }
}

impl<'a> Context<'a> {
    /// The context for handling one input about `group`.
    pub(crate) fn new(
        now: Time,
        me: NodeId,
        group: GroupId,
        config: &'a ValidConfig,
        rng: &'a mut NodeRng,
        counters: &'a mut Counters,
        effects: &'a mut Effects,
    ) -> Context<'a> {
        Context { now, me, group, config, rng, counters, effects, room: Room::default() }
    }

    /// The same context, allowed to take in up to `room`.
    pub(crate) fn with_room(self, room: Room) -> Context<'a> {
        Context { room, ..self }
    }

    /// Encodes and queues a message to `to` about this context's group.
    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        debug_assert_ne!(to, self.me, "a node never sends to itself");
        let envelope = Envelope { group: self.group, message };
        match encode(&envelope, self.config.message_bytes_max) {
            Ok(frame) => self.effects.list.push(Effect::Send { to, frame }),
            // Pages are sized below the limit and entries are capped at half of it, so this
            // only happens if a limit is misconfigured; refusing to send keeps the peer safe.
            Err(_) => self.counters.count(Rejection::OverLimit),
        }
    }

    /// Queues one message to each of `peers` (except this node), encoding it once.
    pub(crate) fn send_all<'p>(&mut self, peers: impl IntoIterator<Item = &'p NodeId>, message: &Message) {
        let envelope = Envelope { group: self.group, message: message.clone() };
        let frame = match encode(&envelope, self.config.message_bytes_max) {
            Ok(frame) => frame,
            Err(_) => return self.counters.count(Rejection::OverLimit),
        };
        for peer in peers {
            if *peer != self.me {
                self.effects.list.push(Effect::Send { to: *peer, frame: frame.clone() });
            }
        }
    }

    /// Queues a durable write of `records`; later effects wait for it.
    pub(crate) fn persist(&mut self, records: Vec<Record>) {
        self.effects.persist(WriteBatch { records });
    }

    /// Counts a dropped message.
    pub(crate) fn reject(&mut self, reason: Rejection) {
        self.counters.count(reason);
    }

    /// A random delay for attempt `failures`: exponential, capped, fully jittered.
    pub(crate) fn backoff_ms(&mut self, failures: u32) -> u64 {
        let ceiling = self.config.backoff_ms_min.saturating_mul(1u64 << failures.min(20)).min(self.config.backoff_ms_max);
        self.rng.in_range(self.config.backoff_ms_min, ceiling.max(self.config.backoff_ms_min))
    }
}

/// Builds a page of chosen entries that fits in one message.
pub(crate) fn page<'e>(
    entries: impl Iterator<Item = (crate::ids::Slot, &'e Entry)>,
    config: &ValidConfig,
) -> Vec<(crate::ids::Slot, Entry)> {
    let budget = config.message_bytes_max / 2;
    let mut used = 0;
    let mut page = Vec::new();
    for (slot, entry) in entries.take(config.catch_up_entries_max) {
        used += entry.encoded_len() + 10;
        if used > budget && !page.is_empty() {
            break;
        }
        page.push((slot, entry.clone()));
    }
    page
}
