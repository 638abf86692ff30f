//! Believing a chosen value only when enough acceptors report it.
//!
//! A Byzantine acceptor can claim any validly signed commit was chosen for a slot. A learner
//! that applies a value reported by one acceptor could then apply a different commit than the
//! rest of the group: a fork. So a learner collects reports per slot and applies a value once
//! `f + 1` distinct acceptors of the set in force there report it (at least one is honest, and
//! honest acceptors report only values that were chosen). With `f = 0` one report is enough,
//! which is the crash-fault behaviour.
//!
//! Reports from members (a proposer that saw a quorum accept its value) are not collected
//! here: members are trusted to say what they saw; acceptors are not.

use std::collections::BTreeMap;

use crate::ids::{NodeId, Slot, ValueHash};
use crate::log::{AcceptorHistory, Entry};

/// One slot's reports.
#[derive(Debug, Default)]
struct Reports {
    /// Each acceptor's first report for the slot.
    by_acceptor: BTreeMap<NodeId, ValueHash>,
    /// The values reported (at most one per reporter).
    values: BTreeMap<ValueHash, Entry>,
}

/// Reports of chosen values for slots a learner has not applied yet.
#[derive(Debug, Default)]
pub(crate) struct Vouches {
    slots: BTreeMap<Slot, Reports>,
}

impl Vouches {
    /// Records `from`'s report that `entry` was chosen at `slot`. Reports outside
    /// `next..next + window` are dropped (the window bounds memory).
    pub(crate) fn record(&mut self, from: NodeId, slot: Slot, entry: Entry, next: Slot, window: u64) {
        if slot < next || slot.0 >= next.0.saturating_add(window) {
            return;
        }
        let reports = self.slots.entry(slot).or_default();
        if reports.by_acceptor.contains_key(&from) {
            return;
        }
        let hash = entry.hash();
        reports.by_acceptor.insert(from, hash);
        reports.values.entry(hash).or_insert(entry);
    }

    /// The contiguous entries from `next` that enough acceptors of the set in force at each
    /// slot agree on (`history` is the learner's, up to `next`; `believe_one` is the canary
    /// that trusts any single report). They are removed. In an MLS
    /// group (`stop_after_value`) a commit may change the acceptor set, which only the caller
    /// can tell, so the run ends after the first value.
    pub(crate) fn take_believed(
        &mut self,
        next: Slot,
        history: &AcceptorHistory,
        stop_after_value: bool,
        believe_one: bool,
    ) -> Vec<(Slot, Entry)> {
        self.slots.retain(|slot, _| *slot >= next);
        let mut history = history.clone();
        let mut believed = Vec::new();
        let mut slot = next;
        while let Some(reports) = self.slots.get(&slot) {
            let set = history.at(slot);
            let mut counts: BTreeMap<ValueHash, usize> = BTreeMap::new();
            for (acceptor, hash) in &reports.by_acceptor {
                if set.contains(*acceptor) {
                    *counts.entry(*hash).or_default() += 1;
                }
            }
            let needed = if believe_one { 1 } else { set.vouches_needed() };
            let Some((hash, _)) = counts.into_iter().find(|(_, count)| *count >= needed) else { break };
            let entry = reports.values[&hash].clone();
            if reports.by_acceptor.len() > 1 && reports.values.len() > 1 {
                cov_mark::hit!(learner_outvotes_a_false_chosen_report);
            }
            history.record(slot, &entry);
            let value = matches!(entry, Entry::Value(_));
            believed.push((slot, entry));
            self.slots.remove(&slot);
            slot = slot.next();
            if value && stop_after_value {
                break;
            }
        }
        believed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{AcceptorSet, GroupGenesis};

    fn history(acceptors: u64) -> AcceptorHistory {
        let set = AcceptorSet::new((1..=acceptors).map(NodeId::from_index).collect(), 16).expect("set");
        AcceptorHistory::new(&GroupGenesis { nonce: 0, acceptors: set, proposers: vec![NodeId::from_index(9)], group_info: None })
    }

    #[test]
    fn one_report_is_enough_without_byzantine_tolerance_and_two_are_needed_with_it() {
        let mut vouches = Vouches::default();
        vouches.record(NodeId::from_index(1), Slot(0), Entry::Value(b"a".to_vec()), Slot(0), 8);
        assert_eq!(vouches.take_believed(Slot(0), &history(3), false, false).len(), 1);

        let mut vouches = Vouches::default();
        let (honest, liar) = (Entry::Value(b"chosen".to_vec()), Entry::Value(b"forged".to_vec()));
        vouches.record(NodeId::from_index(4), Slot(0), liar.clone(), Slot(0), 8);
        vouches.record(NodeId::from_index(4), Slot(0), liar, Slot(0), 8);
        assert!(
            vouches.take_believed(Slot(0), &history(4), false, false).is_empty(),
            "one acceptor, however often, is not enough"
        );
        vouches.record(NodeId::from_index(1), Slot(0), honest.clone(), Slot(0), 8);
        assert!(vouches.take_believed(Slot(0), &history(4), false, false).is_empty());
        vouches.record(NodeId::from_index(9), Slot(0), honest.clone(), Slot(0), 8);
        assert!(vouches.take_believed(Slot(0), &history(4), false, false).is_empty(), "a non-member's report does not count");
        vouches.record(NodeId::from_index(2), Slot(0), honest.clone(), Slot(0), 8);
        assert_eq!(vouches.take_believed(Slot(0), &history(4), false, false), vec![(Slot(0), honest)]);
    }

    #[test]
    fn reports_outside_the_window_are_dropped() {
        let mut vouches = Vouches::default();
        vouches.record(NodeId::from_index(1), Slot(8), Entry::Noop, Slot(0), 8);
        assert!(vouches.slots.is_empty());
    }
}
