//! A document's events for an app: [`DocumentEvents`], which events change the text, and
//! waiting for one.

use std::time::Duration;

use plait_kernel::{Event, GroupId};
use tokio::sync::broadcast;

use super::AppError;
use crate::driver::NotRunning;

/// The events of one document.
pub struct DocumentEvents {
    group: GroupId,
    events: broadcast::Receiver<Event>,
    skipped: u64,
}

impl DocumentEvents {
    /// The events of `group` among a node's.
    pub(super) fn new(group: GroupId, events: broadcast::Receiver<Event>) -> DocumentEvents {
        DocumentEvents { group, events, skipped: 0 }
    }

    /// The next event of this document; `None` once the node stopped. After falling more than
    /// `EVENTS_BUFFERED_MAX` behind, some events are skipped ([`DocumentEvents::skipped`] says
    /// how many; read the text again). The text changes on the events [`changes_text`] names.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.events.recv().await {
                Ok(event) if event_group(&event) == Some(self.group) => return Some(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => self.skipped += missed,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many of the node's events (of any document) this subscriber missed so far by falling
    /// behind: an app that counts events cannot trust its count once this grows (the driver's
    /// own counters, `DriverStatus`, miss none).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// Whether `event` may have changed a document's text: another member's update was applied
/// (`DocumentChanged`, told as soon as it is applied, before this device's write of it is
/// durable: an acceptor holds it, and a restart reads it again), or a snapshot was imported
/// (`SnapshotImported`: this device fell behind a compaction and caught up from its snapshot
/// instead of message by message), or this device, removed from the group earlier, dropped its
/// copy to join again (`GroupForgotten`: the text is empty until the group's snapshot comes).
/// An app that redraws on `DocumentChanged` alone misses the last two.
pub fn changes_text(event: &Event) -> bool {
    matches!(event, Event::DocumentChanged { .. } | Event::SnapshotImported { .. } | Event::GroupForgotten { .. })
}

/// The group an event is about.
pub fn event_group(event: &Event) -> Option<GroupId> {
    match event {
        Event::Applied { group, .. }
        | Event::Committed { group, .. }
        | Event::GroupCreated { group, .. }
        | Event::InviteCreated { group, .. }
        | Event::Joined { group, .. }
        | Event::GroupForgotten { group, .. }
        | Event::Welcome { group, .. }
        | Event::EpochChanged { group, .. }
        | Event::Message { group, .. }
        | Event::DocumentChanged { group, .. }
        | Event::SnapshotImported { group, .. }
        | Event::DocumentSafe { group, .. }
        | Event::PostRefused { group, .. }
        | Event::GroupRefused { group, .. }
        | Event::Presence { group, .. }
        | Event::ForkDetected { group, .. } => Some(*group),
        Event::KeyPackage { .. } | Event::CommandFailed { .. } | Event::InviteUnknown { .. } => None,
    }
}

/// Waits until `pick` returns something for an event.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    what: &'static str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T, AppError> {
    let waiting = async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return Ok(found);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Err(AppError::NotRunning(NotRunning)),
            }
        }
    };
    tokio::time::timeout(timeout, waiting).await.map_err(|_| AppError::Timeout(timeout, what))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that fell behind is told how many events it missed, and goes on with the
    /// oldest one still buffered.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_counts_what_it_missed() {
        let group = GroupId([3; 16]);
        let (sender, receiver) = broadcast::channel(2);
        let mut events = DocumentEvents::new(group, receiver);
        for seq in 1..=5 {
            let id = plait_kernel::updates::UpdateId { sender: plait_kernel::NodeId([7; 32]), seq };
            sender.send(Event::DocumentChanged { group, id }).expect("a subscriber");
        }
        let next = events.next().await;
        assert!(matches!(next, Some(Event::DocumentChanged { id, .. }) if id.seq == 4), "the oldest kept: {next:?}");
        assert_eq!(events.skipped(), 3);
    }
}
