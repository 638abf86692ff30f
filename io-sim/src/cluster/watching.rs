//! What acceptors may see and relay: checks the cluster makes on frames, beside the checker's
//! ghost (they need the cluster's view of roles and of acceptors' epochs).

use super::{Cluster, Machine};

/// Bytes the workload writes into every application message. No frame sent to an acceptor may
/// contain them: acceptors must only ever see ciphertext. (Checking every frame an acceptor
/// receives covers its state too: an acceptor's state is built from nothing else.)
pub const PLAINTEXT_MARKER: &[u8] = b"<plait plaintext marker>";

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

impl Cluster {
    /// Judges an application message an acceptor relays against the members of its epoch.
    pub(super) fn check_relay(&mut self, from: usize, frame: &[u8]) {
        use plait_kernel::wire::{Envelope, Message, decode, kind, peek};
        if peek(frame).is_none_or(|(_, k)| k != kind::APPLICATION) {
            return;
        }
        let Ok(Envelope { group, message: Message::Application { sender, .. } }) = decode(frame, usize::MAX) else { return };
        let Some(Machine::Acceptor(acceptor)) = &self.nodes[from].machine else { return };
        let Some(epoch) = acceptor.group(group).and_then(|view| view.epoch()) else { return };
        self.checker.on_relay(self.now, self.nodes[from].id, group, epoch, sender);
    }
}

impl Cluster {
    /// A device was told its document message is safe: a write quorum of the acceptors it
    /// counts on must hold it durably right now. That is the set the device knew when the last
    /// acknowledgement came: one of the sets the group has had, perhaps not the latest (it may
    /// have moved on in the same input, or before the device heard of it); the acceptors of later
    /// sets copy from earlier ones (the scenario that replaces every acceptor checks they end up
    /// holding it).
    pub(super) fn check_safe(&mut self, group: plait_kernel::GroupId, id: plait_kernel::updates::UpdateId) {
        let sets: Vec<_> = self.checker.acceptor_sets(group).cloned().collect();
        let liars = self.checker.byzantine.clone();
        let mut held_by_latest = None;
        for set in &sets {
            match self.checker.documents.on_safe(group, id, self.config.write_quorum, set, &liars) {
                Ok(()) => return,
                Err(held) => {
                    held_by_latest.get_or_insert(held);
                }
            }
        }
        if let Some(held) = held_by_latest {
            let detail = format!("{} was told {id:?} is safe while {held} acceptor(s) of {group:?} held it", id.sender);
            self.checker.fail(self.now, "safe-means-stored-by-a-write-quorum", detail);
        }
    }
}
