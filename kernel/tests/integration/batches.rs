//! A device's open batch is durable edit by edit: each edit writes its own update (the first as
//! the batch's `Update`, later ones as `BatchPart`s), the batch is exported whole once when it
//! closes, and a restart joins the parts of a batch that had not closed into the message it
//! posts.

use crate::support;

use plait_kernel::storage::Record;
use plait_kernel::updates::UpdateId;
use plait_kernel::{Command, GroupId, NodeId};

use support::Net;
use support::groups::*;

fn edit(net: &mut Net, device: NodeId, group: GroupId, insert: &str) {
    net.command(device, Command::Edit { group, position: 0, delete: 0, insert: insert.into() });
}

fn text(net: &Net, device: NodeId, group: GroupId) -> String {
    net.device(device).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

fn durable(net: &Net, node: NodeId) -> &plait_kernel::storage::Restored {
    &net.members.iter().find(|member| member.id == node).expect("a member").durable
}

/// The updates `device` wrote for its own batches since `since` (an index into `net.written`):
/// `(seq, place in the batch, bytes)`, where a `BatchClosed` counts as place `u32::MAX`.
fn batch_writes(net: &Net, device: NodeId, since: usize) -> Vec<(u64, u32, usize)> {
    let records = net.written[since..].iter().filter(|(node, _)| *node == device).flat_map(|(_, batch)| &batch.records);
    records
        .filter_map(|record| match record {
            Record::Update { id, update, .. } if id.sender == device => Some((id.seq, 0, update.len())),
            Record::BatchPart { id, part, update, .. } => Some((id.seq, *part, update.len())),
            Record::BatchClosed { id, update, .. } => Some((id.seq, u32::MAX, update.len())),
            _ => None,
        })
        .collect()
}

/// Writing the batch so far again at every edit made each edit cost as much as everything before
/// it in its batch: the hundredth edit wrote about a hundred times what the first did.
#[test]
fn every_edit_of_an_open_batch_writes_about_what_the_first_did_however_many_came_before() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    let since = net.written.len();
    for index in 0..100 {
        edit(&mut net, admin, group, &format!("edit {index:03} "));
    }
    let writes = batch_writes(&net, admin, since);
    assert_eq!(writes.len(), 100, "one write per edit, and the batch is still open: {writes:?}");
    let seq = writes[0].0;
    assert!(writes.iter().all(|(of, _, _)| *of == seq), "the edits went into one batch");
    let places: Vec<u32> = writes.iter().map(|(_, part, _)| *part).collect();
    assert_eq!(places, (0..100).collect::<Vec<_>>());
    let first = writes[0].2;
    let largest = writes.iter().map(|(_, _, bytes)| *bytes).max().expect("writes");
    assert!(largest <= 2 * first, "the largest edit's write is {largest} bytes, the first's {first}");
    assert_eq!(durable(&net, admin).groups[&group].batch_parts.len(), 99);

    // The batch closes: its whole update replaces the parts, and it is what the others apply.
    net.tick(support::config().flush_after_ms);
    settle(&mut net);
    let closed = batch_writes(&net, admin, since);
    let whole = closed.iter().filter(|(_, part, _)| *part == u32::MAX).count();
    assert_eq!(whole, 1, "one write of the whole batch, when it closed");
    let state = &durable(&net, admin).groups[&group];
    assert!(state.batch_parts.is_empty(), "the parts went with the close");
    assert!(state.updates.contains_key(&UpdateId { sender: admin, seq }));
    for device in [second, third] {
        assert_eq!(text(&net, device, group), text(&net, admin, group));
    }
    assert!(text(&net, second, group).contains("edit 000 ") && text(&net, second, group).contains("edit 099 "));
}

/// A batch of one edit is written once: the first edit's update is the batch's.
#[test]
fn a_batch_of_one_edit_is_not_written_again_when_it_closes() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    let since = net.written.len();
    edit(&mut net, admin, group, "alone ");
    net.tick(support::config().flush_after_ms);
    settle(&mut net);
    let writes = batch_writes(&net, admin, since);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(text(&net, second, group), "alone ");
}

/// A crash before the batch closed leaves its first edit's update and the later parts on disk:
/// the restart joins them into one message, which carries every edit (not only the first). The
/// edits follow another member's, which the restart merges after ours (by sender): joined
/// before it, our operations waited in Loro for it and the message came out empty (seed 0 of
/// `document/a-device-crashing-between-an-edit-and-its-send-loses-nothing`).
#[test]
fn a_device_that_crashed_with_a_batch_open_posts_every_edit_of_it_after_the_restart() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    assert!(admin < second, "the other member's update is restored after ours");
    edit(&mut net, second, group, "zero ");
    net.tick(1_000);
    settle(&mut net);
    assert_eq!(text(&net, admin, group), "zero ");
    for insert in ["one ", "two ", "three "] {
        net.command(admin, Command::Edit { group, position: 5, delete: 0, insert: insert.into() });
    }
    assert_eq!(durable(&net, admin).groups[&group].batch_parts.len(), 2);
    cov_mark::check!(device_joins_the_parts_of_a_batch_it_had_not_closed);
    net.restart(admin, 9, false);
    assert_eq!(text(&net, admin, group), "zero three two one ");
    for _ in 0..5 {
        net.tick(1_000);
        settle(&mut net);
    }
    for device in [second, third] {
        assert_eq!(text(&net, device, group), "zero three two one ");
    }
    // It goes on editing after it: the next batch is a new message.
    edit(&mut net, admin, group, "four ");
    net.tick(1_000);
    settle(&mut net);
    assert_eq!(text(&net, second, group), "four zero three two one ");
}
