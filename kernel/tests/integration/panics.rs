//! A panic inside the document library on another member's update is contained: the device
//! refuses the update, is built again from its storage, and goes on with every other edit.

use crate::support;

use plait_kernel::faults;
use plait_kernel::{Command, GroupId, NodeId};

use support::Net;
use support::groups::*;

fn edit(net: &mut Net, device: NodeId, group: GroupId, insert: &str) {
    net.command(device, Command::Edit { group, position: 0, delete: 0, insert: insert.into() });
}

fn text(net: &Net, device: NodeId, group: GroupId) -> String {
    net.device(device).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

fn rebuilds(net: &Net, device: NodeId) -> usize {
    net.log.iter().filter(|line| **line == format!("{device} rebuilt from storage")).count()
}

#[test]
fn an_update_the_document_library_panics_on_is_refused_and_the_reader_goes_on() {
    cov_mark::check_count!(device_rebuilds_after_its_document_library_panicked, 2);
    let (mut net, group, [admin, writer, third]) = group_of_three();
    edit(&mut net, admin, group, "hello");
    settle(&mut net);

    // Every replica but its author panics importing it, as on a Loro bug (the marker is this
    // test's own: the switch is one for the process).
    faults::panic_on_updates_containing(b"POISON-kernel ");
    edit(&mut net, writer, group, "POISON-kernel ");
    settle(&mut net);
    faults::stop_panicking();
    assert_eq!(text(&net, writer, group), "POISON-kernel hello");
    for reader in [admin, third] {
        assert_eq!(rebuilds(&net, reader), 1, "built again once: the copies other acceptors push do not reach the library");
        assert_eq!(text(&net, reader, group), "hello", "the rebuilt document holds what was merged before");
    }

    // The readers go on: their own edits, and another member's that does not build on the
    // refused update, reach each other.
    edit(&mut net, third, group, "world ");
    settle(&mut net);
    edit(&mut net, admin, group, "again ");
    settle(&mut net);
    assert_eq!(text(&net, admin, group), "again world hello");
    assert_eq!(text(&net, third, group), text(&net, admin, group));
    assert!(net.device(admin).group(group).is_some_and(|g| g.unsafe_messages() == 0), "the admin's edit is safe");
}
