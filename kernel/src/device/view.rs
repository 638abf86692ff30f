//! What a checker or the app may read about one group on a device.

use crate::device::group::DeviceGroup;
use crate::device::proposer;
use crate::ids::{GroupId, NodeId, Slot};
use crate::invite::Mailbox;
use crate::log::{AcceptorSet, GroupGenesis};

/// What a checker or the app may read about one group on a device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceGroupView<'a> {
    pub(super) id: GroupId,
    /// The device the view is on.
    pub(super) me: NodeId,
    pub(super) group: &'a DeviceGroup,
}

impl DeviceGroupView<'_> {
    /// The group.
    pub fn id(&self) -> GroupId {
        self.id
    }
    /// First slot not applied.
    pub fn next_slot(&self) -> Slot {
        self.group.next_slot
    }
    /// Own proposals not yet chosen.
    pub fn queued(&self) -> usize {
        self.group.queued()
    }
    /// Whether the device has no unfinished proposer work.
    pub fn is_idle(&self) -> bool {
        self.group.is_idle()
    }
    /// Whether what the device knows about which of its messages are safe is durable (it may
    /// lag by up to `safe_below_write_ms`; until then a restart posts those messages again).
    pub fn is_safe_mark_written(&self) -> bool {
        !self.group.safe_mark_behind()
    }
    /// The acceptor set in force for the next slot.
    pub fn acceptors(&self) -> &AcceptorSet {
        self.group.acceptors()
    }
    /// The mailbox of the invite code this device joined the group through, if it did.
    pub fn joined_through(&self) -> Option<Mailbox> {
        self.group.joined_through
    }

    /// Whether this device is a member: always for groups of opaque values; for MLS groups,
    /// until a commit removes it.
    pub fn is_member(&self) -> bool {
        self.group.mls.as_ref().is_none_or(|mls| mls.member.is_active())
    }

    /// The MLS epoch, for MLS groups.
    pub fn epoch(&self) -> Option<u64> {
        self.group.mls.as_ref().map(|mls| mls.member.epoch())
    }

    /// The proposer's state, for diagnostics.
    pub fn proposer_state(&self) -> String {
        match &self.group.proposer {
            proposer::Proposer::Idle => "idle".into(),
            proposer::Proposer::Backoff { until } => format!("backoff until {until}"),
            proposer::Proposer::Preparing(p) => format!("preparing {:?} promises={}", p.ballot, p.promises.len()),
            proposer::Proposer::Leading(l) => {
                format!("leading {:?} in_flight={:?}", l.ballot, l.in_flight.as_ref().map(|f| (f.slot.0, f.accepted_by.len())))
            }
        }
    }
    /// The genesis.
    pub fn genesis(&self) -> &GroupGenesis {
        &self.group.genesis
    }

    /// The document's text (MLS groups).
    pub fn text(&self) -> Option<String> {
        use crate::document::Document;
        self.group.replica.as_ref().map(|replica| replica.doc.text())
    }

    /// The whole document as a Loro snapshot (MLS groups), for a Loro client outside Plait:
    /// `LoroDoc::import` it and read the text named [`crate::document::TEXT_CONTAINER`].
    /// `None` for groups of opaque values, or if the document library fails to export.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        use crate::document::Document;
        self.group.replica.as_ref().and_then(|replica| replica.doc.export_snapshot().ok())
    }

    /// The members of the current MLS epoch in leaf order, with their roles. Empty for groups
    /// of opaque values (and if the group's settings cannot be read, which no accepted commit
    /// allows). A member whose credential names no node is left out, as in `EpochChanged`.
    pub fn members(&self) -> Vec<(NodeId, crate::mls::Role)> {
        let Some(mls) = self.group.mls.as_ref() else { return Vec::new() };
        let Ok(roles) = mls.member.roles() else { return Vec::new() };
        let names = mls.member.members();
        names.iter().filter_map(|name| Some((NodeId(name.as_slice().try_into().ok()?), roles.of(name)))).collect()
    }

    /// This device's role in the current MLS epoch; `None` for groups of opaque values and once
    /// a commit removed this device.
    pub fn role(&self) -> Option<crate::mls::Role> {
        let mls = self.group.mls.as_ref().filter(|mls| mls.member.is_active())?;
        Some(mls.member.roles().ok()?.of(&self.me.0))
    }

    /// This device's document messages not safe yet, the open batch included (MLS groups).
    pub fn unsafe_messages(&self) -> usize {
        self.group.replica.as_ref().map_or(0, |replica| replica.outbox.unsafe_count())
    }

    /// Whether the document update with this id was applied (or written) here.
    pub fn has_applied(&self, id: &crate::updates::UpdateId) -> bool {
        self.group.replica.as_ref().is_some_and(|replica| replica.applied.contains(id))
    }

    /// A digest of exactly which document updates were applied or written here.
    pub fn applied_digest(&self) -> Option<[u8; 32]> {
        self.group.replica.as_ref().map(|replica| replica.applied.digest())
    }

    /// Document updates applied or written here.
    pub fn updates_applied(&self) -> u64 {
        self.group.replica.as_ref().map_or(0, |replica| replica.applied.count())
    }

    /// The latest compaction this device knows of (its snapshot's name and what it covers).
    pub fn compaction(&self) -> Option<&crate::snapshot::Compaction> {
        self.group.replica.as_ref()?.compactor.latest.as_ref().map(|keyed| &keyed.compaction)
    }

    /// Whether it is fetching a snapshot because it lacks messages a compaction covers.
    pub fn is_catching_up(&self) -> bool {
        self.group.replica.as_ref().is_some_and(|replica| replica.compactor.is_catching_up())
    }
}
