//! A device's checkpoint of its own document: a snapshot of it, written in place of the updates
//! it holds, so a restart imports one snapshot and a few updates instead of every update ever
//! applied (the command line starts a process per command, and each one restored the whole
//! history: ~20 µs an update).
//!
//! The snapshot is `Record::ImportedSnapshot`, the record a compaction's snapshot is kept in:
//! a restart imports it first and counts what it covers as applied. `Record::UpdatesDropped`
//! then deletes the updates it covers, but for our own that are not safe yet: the outbox posts
//! those again after a restart. Our own sequence numbers stay used (the outbox starts after the
//! highest applied), so no update id is given twice.
//!
//! A checkpoint covers exactly what was applied, so it waits while the CRDT holds updates it
//! could not apply yet (their dependencies missing): those are in no snapshot.

use crate::context::Context;
use crate::device::group::DeviceGroup;
use crate::device::replica::Applied;
use crate::document::Document;
use crate::snapshot::{Covered, CoveredSender};
use crate::storage::Record;

impl DeviceGroup {
    /// Writes a checkpoint once `checkpoint_after_updates` updates were applied since the last.
    pub(super) fn checkpoint_when_due(&mut self, cx: &mut Context<'_>) {
        let Some(replica) = self.replica.as_mut() else { return };
        let since = replica.applied.count().saturating_sub(replica.checkpoint.count());
        if since < cx.config.checkpoint_after_updates {
            return;
        }
        if replica.doc.has_pending() {
            cov_mark::hit!(device_checkpoints_only_once_every_update_applies);
            return;
        }
        let Ok(snapshot) = replica.doc.export_snapshot() else { return };
        cov_mark::hit!(device_checkpoints_its_document);
        let covered = replica.applied.covered();
        let dropped = without_own_unsafe(&covered, cx.me, replica.outbox.safe_below);
        cx.persist(vec![
            Record::ImportedSnapshot { group: cx.group, covered: covered.clone(), snapshot },
            Record::UpdatesDropped { group: cx.group, covered: dropped },
        ]);
        replica.checkpoint = covered;
    }

    /// A compaction's snapshot was imported: keeps it as the checkpoint, merged with the one
    /// before if there was one (whose updates may be gone from disk). It covers what both cover.
    pub(super) fn checkpoint_imported(&mut self, cx: &mut Context<'_>, covered: &Covered, snapshot: Vec<u8>) {
        let Some(replica) = self.replica.as_mut() else { return };
        let snapshot = if replica.checkpoint.senders.is_empty() {
            snapshot
        } else {
            // The document holds both snapshots' operations (and maybe more, which the covered
            // set does not claim). If it cannot be exported the old checkpoint stays: the
            // import is not durable, and a restart catches up again.
            let Ok(merged) = replica.doc.export_snapshot() else { return };
            cov_mark::hit!(device_merges_an_imported_snapshot_into_its_checkpoint);
            merged
        };
        let mut union = Applied::default();
        union.absorb(&replica.checkpoint, cx.config.updates_out_of_order_max);
        union.absorb(covered, cx.config.updates_out_of_order_max);
        let covered = union.covered();
        cx.persist(vec![Record::ImportedSnapshot { group: cx.group, covered: covered.clone(), snapshot }]);
        replica.checkpoint = covered;
    }
}

/// `covered` without our own updates from `safe_below` on: those stay on disk for the outbox.
fn without_own_unsafe(covered: &Covered, me: crate::ids::NodeId, safe_below: u64) -> Covered {
    let senders = covered
        .senders
        .iter()
        .map(|s| {
            if s.sender != me {
                return s.clone();
            }
            let beyond = s.beyond.iter().copied().filter(|seq| *seq < safe_below).collect();
            CoveredSender { sender: me, below: s.below.min(safe_below), beyond }
        })
        .collect();
    Covered { senders }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn own_updates_from_the_safe_mark_on_are_kept() {
        let (me, other) = (NodeId::from_index(1), NodeId::from_index(2));
        let covered = Covered {
            senders: vec![
                CoveredSender { sender: me, below: 10, beyond: vec![12] },
                CoveredSender { sender: other, below: 10, beyond: vec![12] },
            ],
        };
        let dropped = without_own_unsafe(&covered, me, 7);
        assert_eq!(dropped.senders[0], CoveredSender { sender: me, below: 7, beyond: vec![] });
        assert_eq!(dropped.senders[1], covered.senders[1], "others' updates are all dropped");
    }
}
