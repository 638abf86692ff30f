//! How an acceptor learns chosen entries: from members at once, from peer acceptors once
//! enough of them agree; each is applied to the public view, persisted, and pushed on.

use crate::acceptor::group::AcceptorGroup;
use crate::canary::canary;
use crate::context::Context;
use crate::ids::{NodeId, Slot};
use crate::io::Rejection;
use crate::log::Entry;
use crate::storage::Record;
use crate::wire::Message;

impl AcceptorGroup {
    /// Learns chosen entries: at once from a member (a proposer saw a quorum accept them, or a
    /// device hands over what it applied); from a peer acceptor only once enough peers agree
    /// (see `vouches.rs`).
    pub(super) fn on_chosen(&mut self, cx: &mut Context<'_>, from: NodeId, entries: Vec<(Slot, Entry)>) {
        let entries = if self.allows_member(from) {
            entries
        } else if self.is_known_acceptor(from) {
            if entries
                .iter()
                .any(|(_, entry)| entry.encoded_len() > cx.config.entry_bytes_max || !self.entry_is_well_formed(cx, entry))
            {
                cx.reject(Rejection::Invalid);
                return;
            }
            let window = cx.config.catch_up_entries_max as u64 * 2;
            for (slot, entry) in entries {
                self.vouches.record(from, slot, entry, self.chosen_next, window);
            }
            loop {
                let believe_one = canary!(cx.config, LearnerBelievesOneAcceptor);
                let believed = self.vouches.take_believed(self.chosen_next, &self.history, self.mls.is_some(), believe_one);
                if believed.is_empty() {
                    return;
                }
                self.learn_run(cx, from, believed);
            }
        } else {
            cx.reject(Rejection::Unauthorised);
            return;
        };
        self.learn_run(cx, from, entries);
    }

    /// Learns a run of chosen entries from `chosen_next` on, persists them, and pushes them to
    /// subscribers.
    pub(super) fn learn_run(&mut self, cx: &mut Context<'_>, from: NodeId, entries: Vec<(Slot, Entry)>) {
        let mut learned = Vec::new();
        let mut compactions = Vec::new();
        for (slot, entry) in entries {
            if slot < self.chosen_next {
                continue;
            }
            if slot > self.chosen_next {
                // A gap: peer sync fills it; pull now rather than at the next tick.
                self.next_peer_sync_at = cx.now;
                break;
            }
            if entry.encoded_len() > cx.config.entry_bytes_max || !self.entry_is_well_formed(cx, &entry) {
                cx.reject(Rejection::Invalid);
                break;
            }
            compactions.extend(self.learn(slot, entry.clone()));
            learned.push((slot, entry));
        }
        if learned.is_empty() {
            return;
        }
        let records = learned.iter().map(|(slot, entry)| Record::Chosen { group: cx.group, slot: *slot, entry: entry.clone() });
        cx.persist(records.collect());
        for (compaction, committer) in compactions {
            self.on_compaction_chosen(cx, compaction, committer);
        }
        for (slot, entry) in learned {
            let subscribers: Vec<NodeId> = self.subscribers.iter().copied().filter(|s| *s != from).collect();
            cx.send_all(&subscribers, &Message::Chosen { slot, entry });
        }
        self.advance_recovery(cx);
    }

    /// Learns one chosen entry; returns the compaction it makes, if any.
    pub(super) fn learn(&mut self, slot: Slot, entry: Entry) -> Option<(crate::snapshot::Compaction, NodeId)> {
        assert_eq!(slot, self.chosen_next, "chosen entries are learned in slot order");
        self.history.record(slot, &entry);
        let mut compaction = None;
        if let (Some(view), Entry::Value(bytes)) = (self.mls.as_mut(), &entry) {
            // A chosen commit every member refuses is skipped the same way here.
            compaction = view.apply_commit(bytes).ok().and_then(|checked| compaction_and_committer(&checked));
            if view.is_broken() {
                // openmls panicked merging it (contained): this group's view refuses everything
                // from now on, and the acceptor serves its other groups (see `PublicView`).
                cov_mark::hit!(acceptor_stops_following_a_group_its_mls_library_panicked_in);
            }
            self.history.record_settings(slot, view.settings().ok().and_then(|s| s.acceptors).as_ref());
            self.remember_members();
        }
        if let Some(value) = self.accepted.remove(&slot).filter(|value| value.value_hash == entry.hash()) {
            self.chosen_accepts.insert(slot, value);
        }
        self.recent.insert(slot, entry);
        self.chosen_next = slot.next();
        self.snapshots.unpin_before(self.chosen_next);
        compaction
    }

    /// Keeps `recent` within its limit. Called once per handled input.
    pub(crate) fn trim(&mut self, chosen_in_memory_max: usize) {
        while self.recent.len() > chosen_in_memory_max {
            self.recent.pop_first();
        }
        while self.chosen_accepts.len() > chosen_in_memory_max {
            self.chosen_accepts.pop_first();
        }
    }
}

/// The compaction a checked commit makes, with the node that made it.
pub(crate) fn compaction_and_committer(checked: &crate::mls::CheckedCommit) -> Option<(crate::snapshot::Compaction, NodeId)> {
    let committer = NodeId(checked.summary.committer.as_slice().try_into().ok()?);
    Some((crate::snapshot::Compaction::from_aad(&checked.aad)?, committer))
}
