//! A group moved to a whole new acceptor set: the new acceptors copy what the old ones stored,
//! and the old ones delete it once a write quorum of the new set holds it.

use crate::support;

use plait_kernel::updates::UpdateId;
use plait_kernel::{AcceptorSet, Command, Config, GroupId, NodeId};

use support::Net;
use support::groups::*;

fn stored(net: &Net, acceptor: u64, group: GroupId) -> Vec<UpdateId> {
    let node = net.acceptor(NodeId::from_index(acceptor));
    node.group(group).map(|view| view.messages().map(|(_, message)| message.id).collect()).unwrap_or_default()
}

/// Lets `seconds` pass in steps, delivering everything between them (peer copying runs on the
/// peer-sync timer, which slows down while nothing happens).
fn run(net: &mut Net, seconds: u64) {
    for _ in 0..seconds * 10 {
        net.tick(100);
        net.deliver_all(10_000);
    }
}

#[test]
fn a_new_acceptor_set_copies_the_old_ones_store_and_the_old_ones_then_delete_it() {
    let config = Config { compact_after_messages: 1_000, ..Config::default() }.validate().expect("valid");
    let (net, _) = support::net_with_acceptors(6, 3, config);
    let (mut net, group, [admin, writer, _]) = group_of_three_in(net);
    for round in 0..4 {
        net.command(writer, Command::Edit { group, position: 0, delete: 0, insert: format!("before {round} ") });
        settle(&mut net);
    }
    let written = stored(&net, 1, group);
    assert_eq!(written.len(), 4, "the old set stores every edit");
    assert!(stored(&net, 4, group).is_empty(), "the new acceptors do not host the group yet");

    let new_set = AcceptorSet::new((4..=6).map(NodeId::from_index).collect(), 16).expect("three");
    net.command(admin, Command::ChangeAcceptors { group, acceptors: new_set });
    run(&mut net, 40);
    for acceptor in 4..=6 {
        let held = stored(&net, acceptor, group);
        assert!(written.iter().all(|id| held.contains(id)), "n{acceptor} copied every message the old set stored: {held:?}");
    }
    for acceptor in 1..=3 {
        assert!(stored(&net, acceptor, group).is_empty(), "n{acceptor}, replaced, deleted what the new set copied");
    }
    // The members read on from the new set.
    net.command(writer, Command::Edit { group, position: 0, delete: 0, insert: "after ".into() });
    settle(&mut net);
    let text = |device: u64| net.device(NodeId::from_index(device)).group(group).and_then(|view| view.text());
    assert_eq!(text(101), text(102));
    assert!(text(101).is_some_and(|text| text.starts_with("after before 3")), "{:?}", text(101));
}

/// A device welcomed once every genesis acceptor was replaced and gone reads the log from the set
/// its Welcome names. From the genesis set it could never read slot 0 and waited for ever (seed
/// 2260 of `compaction/every-acceptor-replaced-while-acceptors-crash-and-lose-disks-loses-nothing`,
/// where the replaced acceptors had lost their disks).
#[test]
fn a_device_welcomed_after_the_genesis_acceptors_are_gone_reads_the_log_from_the_set_in_force() {
    let (net, _) = support::net_with_acceptors(6, 4, support::config());
    let (mut net, group, [admin, writer, _]) = group_of_three_in(net);
    let genesis = created(&net);
    net.command(writer, Command::Edit { group, position: 0, delete: 0, insert: "before ".into() });
    settle(&mut net);
    let new_set = AcceptorSet::new((4..=6).map(NodeId::from_index).collect(), 16).expect("three");
    net.command(admin, Command::ChangeAcceptors { group, acceptors: new_set });
    run(&mut net, 40);
    net.offline = (1..=3).map(NodeId::from_index).collect();

    let joiner = NodeId::from_index(104);
    add(&mut net, admin, joiner, &genesis);
    run(&mut net, 20);
    let text = |net: &Net, device: NodeId| net.device(device).group(group).and_then(|view| view.text());
    assert_eq!(text(&net, joiner).as_deref(), Some("before "));
    net.command(joiner, Command::Edit { group, position: 0, delete: 0, insert: "joined ".into() });
    run(&mut net, 5);
    assert_eq!(text(&net, writer).as_deref(), Some("joined before "));
}
