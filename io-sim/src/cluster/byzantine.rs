//! A Byzantine acceptor: it runs the honest kernel, then lies about what it does.
//!
//! Everything it sends passes through [`Cluster::corrupt`]: it withholds frames, replays old
//! ones, sends garbage, hides accepted values from its promises, claims values it saw other
//! proposers offer (with their real signatures, or with a ballot of its own that no signature
//! covers), tells learners another commit was chosen for a slot, and acknowledges accepts it
//! never made durable. It cannot forge members' signatures or another node's identity (the
//! transport authenticates senders). Its own votes are not votes: the checker judges
//! choices by honest acceptors only. Its disk is never wiped (recovery is out of its repertoire).

use std::collections::{BTreeMap, VecDeque};

use plait_kernel::storage::AcceptedValue;
use plait_kernel::wire::{Envelope, Message, decode, encode};
use plait_kernel::{Entry, GroupId, NodeId, Slot};

use crate::chance::Chance;

use super::Cluster;

/// Frames and accepts a liar remembers at most, to replay and to claim.
const LIAR_MEMORY_MAX: usize = 64;

/// What a Byzantine acceptor has seen, to lie with.
#[derive(Debug, Default)]
pub(super) struct Liar {
    /// Frames it sent or received, newest last.
    frames: VecDeque<Vec<u8>>,
    /// Values proposers offered it, per group and slot.
    offered: BTreeMap<(GroupId, Slot), Vec<AcceptedValue>>,
}

impl Liar {
    fn remember_frame(&mut self, frame: &[u8]) {
        self.frames.push_back(frame.to_vec());
        if self.frames.len() > LIAR_MEMORY_MAX {
            self.frames.pop_front();
        }
    }

    fn remember_offer(&mut self, group: GroupId, slot: Slot, value: AcceptedValue) {
        let offers = self.offered.entry((group, slot)).or_default();
        if offers.iter().all(|o| o.value_hash != value.value_hash || o.ballot != value.ballot) {
            offers.push(value);
        }
        while self.offered.values().map(Vec::len).sum::<usize>() > LIAR_MEMORY_MAX {
            self.offered.pop_first();
        }
    }
}

impl Cluster {
    /// A frame arrives at a Byzantine acceptor: it remembers what proposers offered, and
    /// sometimes acknowledges an accept before (or instead of) making it durable.
    pub(super) fn liar_receives(&mut self, index: usize, from: NodeId, frame: &[u8]) {
        let Ok(Envelope { group, message }) = decode(frame, usize::MAX) else { return };
        let Some(liar) = self.nodes[index].liar.as_mut() else { return };
        liar.remember_frame(frame);
        if let Message::Accept { ballot, slot, entry, value_hash, proof, .. } = message {
            liar.remember_offer(group, slot, AcceptedValue { ballot, value_hash, entry, proof });
            if self.rng.happens(Chance::percent(50)) {
                let ack = Message::Accepted { ballot, slot, value_hash };
                let frame = encode(&Envelope { group, message: ack }, usize::MAX).expect("encodes");
                self.deliver_frame(index, from, frame);
            }
        }
    }

    /// What a Byzantine acceptor sends instead of `frame`.
    pub(super) fn corrupt(&mut self, index: usize, frame: Vec<u8>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.rng.happens(Chance::percent(10)) {
            let replay = self.nodes[index].liar.as_ref().and_then(|liar| {
                let frames = &liar.frames;
                (!frames.is_empty()).then(|| frames[self.rng.index(frames.len())].clone())
            });
            out.extend(replay);
        }
        if self.rng.happens(Chance::percent(5)) {
            let len = self.rng.between(1, 64) as usize;
            out.push((0..len).map(|_| self.rng.between(0, 255) as u8).collect());
            return out;
        }
        if self.rng.happens(Chance::percent(20)) {
            return out;
        }
        let lie = match decode(&frame, usize::MAX) {
            Ok(Envelope { group, message }) => self.lie(index, group, message).map(|message| Envelope { group, message }),
            Err(_) => None,
        };
        out.push(match lie {
            Some(envelope) => encode(&envelope, usize::MAX).expect("encodes"),
            None => frame,
        });
        if let Some(liar) = self.nodes[index].liar.as_mut() {
            for frame in &out {
                liar.remember_frame(frame);
            }
        }
        out
    }

    /// A false version of `message`, or `None` to send the truth.
    fn lie(&mut self, index: usize, group: GroupId, message: Message) -> Option<Message> {
        match message {
            Message::Promise { ballot, incarnation, accepted } => {
                if self.rng.happens(Chance::percent(30)) {
                    return Some(Message::Promise { ballot, incarnation, accepted: Vec::new() });
                }
                let (slot, mut claimed) = match accepted.first() {
                    Some((slot, value)) => (*slot, self.offer_other_than(index, group, *slot, value)?),
                    None => self.latest_offer(index, group)?,
                };
                if self.rng.happens(Chance::percent(50)) {
                    // Claim it at the promised ballot, which outranks everything honest acceptors report.
                    claimed.ballot = ballot;
                }
                Some(Message::Promise { ballot, incarnation, accepted: vec![(slot, claimed)] })
            }
            Message::Chosen { slot, entry } => {
                let other = self.offer_other_than_entry(index, group, slot, &entry)?;
                Some(Message::Chosen { slot, entry: other })
            }
            Message::Entries { mut entries, chosen_next, accepted_pending } => {
                let (slot, entry) = entries.first().cloned()?;
                let other = self.offer_other_than_entry(index, group, slot, &entry)?;
                entries[0] = (slot, other);
                Some(Message::Entries { entries, chosen_next, accepted_pending })
            }
            _ => None,
        }
    }

    /// Something offered for the highest slot of `group` it saw offers for.
    fn latest_offer(&mut self, index: usize, group: GroupId) -> Option<(Slot, AcceptedValue)> {
        let offered = &self.nodes[index].liar.as_ref()?.offered;
        let ((_, slot), offers) = offered.range((group, Slot(0))..=(group, Slot(u64::MAX))).next_back()?;
        let slot = *slot;
        let offers = offers.clone();
        (!offers.is_empty()).then(|| (slot, offers[self.rng.index(offers.len())].clone()))
    }

    fn offer_other_than(&mut self, index: usize, group: GroupId, slot: Slot, value: &AcceptedValue) -> Option<AcceptedValue> {
        let offers = self.nodes[index].liar.as_ref()?.offered.get(&(group, slot))?;
        let others: Vec<&AcceptedValue> = offers.iter().filter(|o| o.value_hash != value.value_hash).collect();
        (!others.is_empty()).then(|| others[self.rng.index(others.len())].clone())
    }

    fn offer_other_than_entry(&mut self, index: usize, group: GroupId, slot: Slot, entry: &Entry) -> Option<Entry> {
        let offers = self.nodes[index].liar.as_ref()?.offered.get(&(group, slot))?;
        let hash = entry.hash();
        let others: Vec<&AcceptedValue> = offers.iter().filter(|o| o.value_hash != hash).collect();
        (!others.is_empty()).then(|| others[self.rng.index(others.len())].entry.clone())
    }
}
