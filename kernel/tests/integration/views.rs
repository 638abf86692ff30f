//! What a host reads without driving the kernel: a group's members and roles, a snapshot of
//! its document for any Loro client, an acceptor's totals and the named rejection counters a
//! metrics exporter publishes.

use crate::support;

use plait_kernel::document::TEXT_CONTAINER;
use plait_kernel::mls::Role;
use plait_kernel::{Command, GroupGenesis, GroupId, Input, NodeId, Rejection};

use support::Net;
use support::groups::*;

/// A group of opaque values with n101 as its only proposer, opened on n101 and holding one value.
fn opaque_group(net: &mut Net) -> GroupId {
    let genesis = GroupGenesis { nonce: 99, acceptors: acceptors(), proposers: vec![NodeId::from_index(101)], group_info: None };
    let group = genesis.group_id();
    net.command(NodeId::from_index(101), Command::OpenGroup { genesis });
    net.command(NodeId::from_index(101), Command::Propose { group, value: b"value".to_vec() });
    settle(net);
    group
}

/// Every member lists the same members in leaf order with the same roles, each knows its own
/// role, a removed member has none, and a group of opaque values has neither.
#[test]
fn a_group_view_lists_members_with_their_roles_and_this_devices_own_role() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    net.command(admin, Command::SetRole { group, member: second, role: Role::Reader });
    settle(&mut net);
    let expected = vec![(admin, Role::Admin), (second, Role::Reader), (third, Role::Writer)];
    for device in [admin, second, third] {
        let view = net.device(device).group(group).expect("a member");
        assert_eq!(view.members(), expected, "{device} lists the members");
    }
    let role = |net: &Net, device| net.device(device).group(group).and_then(|g| g.role());
    assert_eq!(
        [role(&net, admin), role(&net, second), role(&net, third)],
        [Some(Role::Admin), Some(Role::Reader), Some(Role::Writer)]
    );

    net.command(admin, Command::RemoveMember { group, member: third });
    settle(&mut net);
    assert_eq!(role(&net, third), None, "a removed device has no role");
    assert_eq!(net.device(admin).group(group).map(|g| g.members()), Some(expected[..2].to_vec()));

    let opaque = opaque_group(&mut net);
    let view = net.device(admin).group(opaque).expect("opened");
    assert_eq!((view.members(), view.role()), (Vec::new(), None), "a group of opaque values has no MLS members");
}

/// A snapshot is the whole document: a fresh Loro document that imports it reads the same text
/// under the container name the kernel uses.
#[test]
fn a_snapshot_imports_into_a_fresh_loro_document_with_the_same_text() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: "hello".into() });
    net.command(second, Command::Edit { group, position: 0, delete: 0, insert: "¡ ".into() });
    settle(&mut net);
    let view = net.device(third).group(group).expect("a member");
    let text = view.text().expect("an MLS group has a document");
    assert!(text.contains("hello") && text.contains("¡ "), "both edits arrived: {text:?}");

    let snapshot = view.snapshot().expect("an MLS group has a document");
    let doc = loro::LoroDoc::new();
    doc.import(&snapshot).expect("a Loro snapshot");
    assert_eq!(doc.get_text(TEXT_CONTAINER).to_string(), text);

    let opaque = opaque_group(&mut net);
    assert_eq!(net.device(admin).group(opaque).and_then(|g| g.snapshot()), None, "no document without MLS");
}

/// An acceptor's totals are the sums over the groups it hosts.
#[test]
fn acceptor_stats_sum_stored_messages_and_bytes_over_every_group() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: "one".into() });
    settle(&mut net);
    net.command(second, Command::Edit { group, position: 0, delete: 0, insert: "two".into() });
    settle(&mut net);
    opaque_group(&mut net);
    for acceptor in (1..=3).map(NodeId::from_index) {
        let acceptor = net.acceptor(acceptor);
        let stats = acceptor.stats();
        assert_eq!(stats.groups, 2, "the MLS group and the group of opaque values");
        let (messages, bytes) = acceptor.groups().map(|g| g.stored_messages()).fold((0, 0), |(m, b), (n, c)| (m + n, b + c));
        assert_eq!((stats.stored_messages, stats.stored_bytes), (messages, bytes as u64));
        let (in_document, _) = acceptor.group(group).expect("hosts the group").stored_messages();
        assert_eq!(stats.stored_messages, in_document, "only the MLS group stores messages");
        assert!(stats.stored_messages >= 2 && stats.stored_bytes > 0, "both edits are stored: {stats:?}");
        assert_eq!(stats.mailboxes, acceptor.mailboxes());
    }
}

/// The counters list every reason under a stable snake_case name, in `Rejection::ALL` order,
/// zero counts included, with the same counts `of` reports.
#[test]
fn counters_list_every_reason_by_stable_name_in_a_fixed_order() {
    let (mut net, _) = support::net(1);
    let acceptor = NodeId::from_index(1);
    net.input(acceptor, Input::Received { from: NodeId::from_index(101), frame: Vec::new() });
    net.input(acceptor, Input::Command(Command::MakeKeyPackage));
    let counters = net.acceptor(acceptor).counters();
    let listed: Vec<(&str, u64)> = counters.iter().collect();
    let names: Vec<&str> = listed.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "oversized",
            "wrong_version",
            "unknown_group",
            "unauthorised",
            "invalid",
            "stale_ballot",
            "equivocation",
            "stale_incarnation",
            "not_ready",
            "duplicate",
            "over_limit",
            "expired",
        ]
    );
    let counts: Vec<u64> = Rejection::ALL.iter().map(|reason| counters.of(*reason)).collect();
    assert_eq!(listed.iter().map(|(_, count)| *count).collect::<Vec<_>>(), counts);
    assert_eq!(listed.iter().map(|(_, count)| count).sum::<u64>(), counters.total());
    let nonzero: Vec<(&str, u64)> = listed.into_iter().filter(|(_, count)| *count > 0).collect();
    assert_eq!(nonzero, [("malformed", 1), ("invalid", 1)], "an empty frame, and a command sent to an acceptor");
}
