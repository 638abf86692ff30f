//! A panic inside the document library or the MLS library on another member's message is
//! contained: the device refuses the message, is built again from its storage, and goes on with
//! every other edit; an acceptor refuses a commit the MLS library panics on while checking it.

use crate::support;

use plait_kernel::faults;
use plait_kernel::{Command, Config, GroupId, NodeId};

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
    faults::stop_panicking(faults::Library::Loro);
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

/// openmls panicking on a message is contained too, in the worst case: after it advanced the
/// ratchet, so the member's state is half written. Each reader refuses the message, writes
/// none of that state, is built again from storage, skips the copies other acceptors push, and
/// gets the edit from the snapshot of the member who could read it: its author.
#[test]
fn a_message_the_mls_library_panics_on_is_refused_and_a_snapshot_brings_its_edit() {
    cov_mark::check_count!(device_refuses_a_message_its_mls_library_panicked_on, 2);
    cov_mark::check_count!(device_rebuilds_after_its_mls_library_panicked, 2);
    cov_mark::check!(device_skips_a_message_it_knows_it_cannot_read);
    let config = Config { compact_after_messages: 4, compaction_takeover_ms: 200, ..Config::default() };
    let (net, _) = support::net_with(3, config.validate().expect("valid"));
    let (mut net, group, [admin, writer, third]) = group_of_three_in(net);
    edit(&mut net, admin, group, "hello ");
    settle(&mut net);

    faults::panic_in_mls_on_messages_containing(b"MLS-POISON-kernel ");
    edit(&mut net, writer, group, "MLS-POISON-kernel ");
    settle(&mut net);
    faults::stop_panicking(faults::Library::Mls);
    for reader in [admin, third] {
        assert_eq!(rebuilds(&net, reader), 1, "built again once: the copies other acceptors push are skipped");
        assert_eq!(text(&net, reader, group), "hello ", "the refused message's edit is not applied");
    }

    // The writer's next edits build on the refused one, so the readers' document holds them
    // back until a snapshot brings it; compactions are due after a few messages here.
    for insert in ["one ", "two ", "three ", "four "] {
        edit(&mut net, writer, group, insert);
        settle(&mut net);
    }
    let expected = "four three two one MLS-POISON-kernel hello ";
    assert_eq!(text(&net, writer, group), expected);
    for reader in [admin, third] {
        assert_eq!(text(&net, reader, group), expected, "the snapshot brought the refused edit and what built on it");
        assert_eq!(rebuilds(&net, reader), 1);
    }
    edit(&mut net, third, group, "after ");
    settle(&mut net);
    assert_eq!(text(&net, admin, group), format!("after {expected}"));
}

/// A commit that makes openmls panic while an acceptor checks it is refused like an invalid
/// one (checking changes nothing, so nothing needs building again); the acceptors go on
/// serving, and the same add goes through once the library no longer panics on it.
#[test]
fn a_commit_the_mls_library_panics_on_is_refused_by_the_acceptors_who_go_on() {
    cov_mark::check!(acceptor_refuses_a_commit_its_mls_library_panicked_on);
    let (mut net, _) = support::net(3);
    let [admin, writer, third] = [101, 102, 103].map(NodeId::from_index);
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    add(&mut net, admin, writer, &genesis);
    let group = genesis.group_id();
    let epoch = |net: &Net| net.device(admin).group(group).map(|g| g.epoch());

    // The add carries the joiner's key package, and with it the joiner's id.
    let before = epoch(&net);
    faults::panic_in_mls_on_messages_containing(&third.0);
    net.command(third, Command::MakeKeyPackage);
    let key_package = last_key_package(&net, third);
    net.command(admin, Command::AddMember { group, key_package: key_package.clone() });
    settle(&mut net);
    assert_eq!(epoch(&net), before, "no acceptor accepted the add");
    faults::stop_panicking(faults::Library::Mls);

    net.command(admin, Command::AddMember { group, key_package });
    settle(&mut net);
    let welcome = last_welcome(&net);
    net.command(third, Command::JoinGroup { genesis: genesis.clone(), welcome });
    settle(&mut net);
    edit(&mut net, third, group, "joined ");
    settle(&mut net);
    assert_eq!(text(&net, writer, group), "joined ");
}

/// A chosen commit that makes openmls panic while an acceptor merges it into its view (it passed
/// the same check first) is contained too: that group's view is broken, and the acceptor
/// stores nothing more of the group, while it goes on serving its other groups.
#[test]
fn an_acceptor_whose_mls_library_panics_merging_a_commit_stops_that_group_and_serves_the_others() {
    cov_mark::check!(acceptor_stops_following_a_group_its_mls_library_panicked_in);
    let (mut net, _) = support::net(4);
    let [admin, writer, other, joiner] = [101, 102, 103, 104].map(NodeId::from_index);
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    let group = genesis.group_id();
    add(&mut net, admin, writer, &genesis);
    net.command(other, Command::CreateGroup { acceptors: acceptors(), nonce: 2, rotation_interval_ms: 0 });
    settle(&mut net);
    let second = net
        .events
        .iter()
        .rev()
        .find_map(|(id, event)| match event {
            plait_kernel::Event::GroupCreated { group, .. } if *id == other => Some(*group),
            _ => None,
        })
        .expect("the second group was created");

    // The add carries the joiner's key package, and with it the joiner's id.
    faults::panic_in_mls_merging_commits_containing(&joiner.0);
    net.command(joiner, Command::MakeKeyPackage);
    let key_package = last_key_package(&net, joiner);
    net.command(admin, Command::AddMember { group, key_package });
    settle(&mut net);
    faults::stop_panicking(faults::Library::MlsMerge);

    edit(&mut net, writer, group, "after the add ");
    edit(&mut net, other, second, "elsewhere ");
    settle(&mut net);
    let stored = |net: &Net, group: GroupId| {
        acceptors()
            .members()
            .iter()
            .map(|acceptor| net.acceptor(*acceptor).group(group).map_or(0, |view| view.stored_messages().0))
            .sum::<usize>()
    };
    assert_eq!(stored(&net, group), 0, "no acceptor stores the broken group's messages");
    assert_eq!(stored(&net, second), 3, "every acceptor stores the other group's");
    assert!(net.device(other).group(second).is_some_and(|g| g.unsafe_messages() == 0), "and acknowledges them");
}
