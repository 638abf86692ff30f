//! What the cluster does with the events nodes raise: the checker's hooks, statistics, and the
//! notices scenarios route.

use plait_kernel::Event;

use super::{Cluster, MESSAGES_KEPT_MAX, NOTICES_MAX};

impl Cluster {
    pub(super) fn observe(&mut self, index: usize, event: Event) {
        let now = self.now;
        let id = self.nodes[index].id;
        match &event {
            Event::Applied { group, slot, value_hash, .. } => self.checker.on_applied(now, id, *group, *slot, value_hash),
            Event::Committed { .. } => self.stats.committed += 1,
            Event::CommandFailed { .. } => self.stats.command_errors += 1,
            Event::EpochChanged { group, epoch, authenticator_hash, members } => {
                self.checker.on_epoch(now, id, *group, *epoch, authenticator_hash, members);
            }
            Event::Message { group, epoch, sender, data } => {
                self.checker.on_message(now, id, *group, *epoch, *sender);
                self.stats.messages_read += 1;
                if self.messages.len() < MESSAGES_KEPT_MAX {
                    self.messages.push((index, *sender, data.clone()));
                }
            }
            Event::DocumentChanged { .. } => self.stats.updates_applied += 1,
            Event::SnapshotImported { .. } => self.stats.snapshots_imported += 1,
            Event::DocumentSafe { group, seq, .. } => {
                self.stats.updates_safe += 1;
                self.check_safe(*group, plait_kernel::updates::UpdateId { sender: id, seq: *seq });
            }
            // A joiner's scenario waits for it to join, or checks it did not.
            Event::PostRefused { .. } | Event::GroupRefused { .. } | Event::Presence { .. } | Event::InviteUnknown { .. } => {}
            Event::ForkDetected { group, epoch, theirs, .. } => {
                let signer = theirs.signer.get(..8).map(plait_kernel::ids::hex).unwrap_or_default();
                let detail = format!("{id} saw {signer}… sign another authenticator for epoch {epoch} of {group:?}");
                self.checker.fail(now, "no-fork-is-ever-detected", detail);
            }
            Event::GroupCreated { .. }
            | Event::KeyPackage { .. }
            | Event::Welcome { .. }
            | Event::InviteCreated { .. }
            | Event::GroupForgotten { .. }
            | Event::Joined { .. } => {
                if self.notices.len() < NOTICES_MAX {
                    self.notices.push((index, event.clone()));
                }
            }
        }
        let bytes = postcard::to_allocvec(&event).expect("events encode");
        self.trace.record(now, id, 23, &bytes);
        self.trace.line(|| format!("{now} {id} event {event:?}"));
    }
}
