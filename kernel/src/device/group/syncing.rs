//! How often a device syncs with a group's acceptors: at the base pace while there is work the
//! rounds help finish, ever less often while nothing happens (see [`crate::idle`]), sooner on
//! news or when a link to an acceptor comes back.

use crate::context::Context;
use crate::device::group::DeviceGroup;
use crate::document::Document;
use crate::ids::Slot;

/// What a device's sync rounds count as progress in a group (see [`crate::idle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SyncProgress {
    next_slot: Slot,
    updates_applied: u64,
}

impl DeviceGroup {
    /// What the sync pace counts as progress.
    pub(super) fn sync_progress(&self) -> SyncProgress {
        SyncProgress {
            next_slot: self.next_slot,
            updates_applied: self.replica.as_ref().map_or(0, |replica| replica.applied.count()),
        }
    }

    /// Whether there is work the sync rounds help finish, so they keep their base pace: a
    /// proposal or a slot in doubt, unsafe messages, a snapshot or an update's dependencies
    /// missing, an invite waiting for its joiner.
    pub(super) fn needs_rounds(&self) -> bool {
        let document = self.replica.as_ref().is_some_and(|replica| {
            replica.outbox.unsafe_count() > 0 || replica.compactor.is_catching_up() || replica.doc.has_pending()
        });
        !self.is_idle()
            || self.proposer.deadline().is_some()
            || self.undecided_since.is_some()
            || document
            || self.invites.need_rounds(self.history.latest())
    }

    /// After an input: if syncs were slowed down and the group moved since the last one, the
    /// next comes within the base interval (news may mean more is on its way).
    pub(crate) fn quicken_syncs_on_news(&mut self, cx: &Context<'_>) {
        if self.sync_pace.woken(&self.sync_progress()) {
            cov_mark::hit!(device_quickens_its_syncs_on_news);
            self.next_sync_at = self.next_sync_at.min(cx.now.plus_ms(cx.config.sync_interval_ms));
        }
    }

    /// Syncs with the acceptors at the next timer, which is due now (or a sync interval after the
    /// last sync, if that is later): a link to one of them came back, and what it pushed while
    /// there was none was lost.
    pub(crate) fn sync_soon(&mut self, cx: &Context<'_>) {
        let at = cx.now.max(self.synced_at.plus_ms(cx.config.sync_interval_ms));
        if self.next_sync_at > at {
            cov_mark::hit!(device_syncs_at_once_with_an_acceptor_it_reaches_again);
            self.next_sync_at = at;
        }
    }
}
