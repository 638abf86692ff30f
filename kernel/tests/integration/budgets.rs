//! An acceptor's node-wide budgets: what all its groups hold together is bounded, a full node
//! refuses new messages of any group, and a refused message gets in once room comes back.

use crate::support;

use plait_kernel::updates::PostRefusal;
use plait_kernel::wire::GroupRefusal;
use plait_kernel::{Command, Config, Event, GroupId, NodeId, Rejection};

use support::Net;
use support::groups::*;

/// Messages of ~700 bytes (one edit each): a group holds 8 of them, and so does the node.
fn config() -> Config {
    Config {
        update_bytes_max: 1_000,
        flush_bytes: 1_000,
        stored_message_bytes_max: 5_096,
        group_store_bytes_max: 6_000,
        node_store_bytes_max: 6_000,
        compact_after_messages: 8,
        snapshot_chunk_bytes: 256,
        ..Config::default()
    }
}

fn device() -> NodeId {
    NodeId::from_index(101)
}

/// One device founds two groups on the same three acceptors.
fn two_groups(config: Config) -> (Net, GroupId, GroupId) {
    let (mut net, _) = support::net_with(1, config.validate().expect("valid"));
    for nonce in 1..=2 {
        net.command(device(), Command::CreateGroup { acceptors: acceptors(), nonce, rotation_interval_ms: 0 });
        settle(&mut net);
    }
    let created = groups_created(&net);
    let [a, b] = created[..] else { panic!("two groups, got {created:?}") };
    (net, a, b)
}

/// The groups the device created, in order.
fn groups_created(net: &Net) -> Vec<GroupId> {
    net.events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::GroupCreated { genesis, .. } => Some(genesis.group_id()),
            _ => None,
        })
        .collect()
}

fn edit(net: &mut Net, group: GroupId, round: usize) {
    let insert = format!("{round:03}{}", "x".repeat(450));
    net.command(device(), Command::Edit { group, position: 0, delete: 0, insert });
}

fn refusals(net: &Net, group: GroupId) -> Vec<(NodeId, PostRefusal)> {
    net.events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::PostRefused { group: g, acceptor, reason, .. } if *g == group => Some((*acceptor, *reason)),
            _ => None,
        })
        .collect()
}

fn is_safe(net: &Net, group: GroupId, seq: u64) -> bool {
    net.events.iter().any(|(_, event)| matches!(event, Event::DocumentSafe { group: g, seq: s, .. } if *g == group && *s == seq))
}

fn text(net: &Net, group: GroupId) -> String {
    net.device(device()).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

#[test]
fn a_full_acceptor_refuses_every_groups_posts_and_takes_them_once_a_compaction_frees_room() {
    let (mut net, a, b) = two_groups(config());
    for round in 0..7 {
        edit(&mut net, a, round);
        settle(&mut net);
    }
    // The eighth message of `a` fills the node; `b`'s first, posted right after it, finds no
    // room although `b` stores nothing.
    edit(&mut net, a, 7);
    edit(&mut net, b, 0);
    {
        cov_mark::check_count!(acceptor_refuses_a_message_when_the_node_is_full, 3);
        cov_mark::check_count!(device_keeps_posting_to_an_acceptor_that_was_full, 3);
        net.tick(25);
        net.deliver_all(10_000);
    }
    let acceptors: Vec<NodeId> = (1..=3).map(NodeId::from_index).collect();
    let full: Vec<(NodeId, PostRefusal)> = acceptors.iter().map(|id| (*id, PostRefusal::QuotaExceeded)).collect();
    assert_eq!(refusals(&net, b), full, "each acceptor said once that it is full");
    assert!(is_safe(&net, a, 7) && !is_safe(&net, b, 0));
    for id in &acceptors {
        let acceptor = net.acceptor(*id);
        let stats = acceptor.stats();
        assert!(stats.stored_bytes > 5_000 && stats.stored_bytes <= 6_000, "{id} is full: {stats:?}");
        assert_eq!(acceptor.group(b).expect("hosts b").stored_messages(), (0, 0));
        assert!(acceptor.counters().of(Rejection::OverLimit) >= 1);
    }

    // `a` passed its compaction threshold: its snapshot is stored (snapshots have their own
    // budget), the acceptors delete what it covers, and the device, still posting to the full
    // acceptors, gets `b`'s message in: not at the resend pace (1 s) but after 5 s.
    let refused_at = net.log.len();
    for _ in 0..45 {
        net.tick(100);
        net.deliver_all(10_000);
    }
    let posts = |net: &Net| net.log[refused_at..].iter().filter(|line| line.starts_with("n101 -> n1 Post")).count();
    assert_eq!(posts(&net), 0, "no post to a full acceptor for 4.5 s");
    for _ in 0..5 {
        settle(&mut net);
    }
    assert!(posts(&net) >= 1);
    assert!(is_safe(&net, b, 0), "b's message was stored once room came back");
    assert_eq!(refusals(&net, b).len(), 3, "and the app was not told again");
    for id in &acceptors {
        let acceptor = net.acceptor(*id);
        let view = acceptor.group(a).expect("hosts a");
        assert!(view.confirmed().is_some(), "{id}: a's compaction is confirmed");
        assert_eq!(view.stored_messages().0, 0, "{id} deleted what a's snapshot covers");
        assert_eq!(acceptor.group(b).expect("hosts b").stored_messages().0, 1);
        let stats = acceptor.stats();
        assert!(stats.snapshot_bytes > 0 && stats.stored_bytes < 1_000, "{id}: {stats:?}");
    }
    assert!(text(&net, b).starts_with("000x"));
    assert_eq!(text(&net, a).matches('x').count(), 8 * 450);
}

#[test]
fn a_snapshot_beyond_the_nodes_snapshot_budget_is_refused_and_its_group_keeps_its_messages() {
    // Each group's snapshot is ~450 bytes: the node holds one.
    let config = Config { node_store_bytes_max: 1 << 20, snapshot_bytes_max: 700, node_snapshot_bytes_max: 700, ..config() };
    let (mut net, a, b) = two_groups(config);
    for round in 0..8 {
        edit(&mut net, a, round);
        settle(&mut net);
    }
    settle(&mut net);
    {
        cov_mark::check!(acceptor_refuses_a_snapshot_chunk_when_the_node_is_full);
        for round in 0..8 {
            edit(&mut net, b, round);
            settle(&mut net);
        }
        for _ in 0..3 {
            settle(&mut net);
        }
    }
    for id in (1..=3).map(NodeId::from_index) {
        let acceptor = net.acceptor(id);
        let stats = acceptor.stats();
        assert!(stats.snapshot_bytes > 0 && stats.snapshot_bytes <= 700, "{id}: {stats:?}");
        assert!(acceptor.group(a).expect("hosts a").confirmed().is_some(), "{id}: a compacted");
        let view = acceptor.group(b).expect("hosts b");
        assert!(view.compaction().is_none(), "{id}: b's compaction could not be stored, so it was never chosen");
        assert_eq!(view.stored_messages().0, 8, "{id} keeps every message of b");
        assert!(acceptor.counters().of(Rejection::OverLimit) >= 1);
    }
    for round in 0..8 {
        assert!(is_safe(&net, b, round));
    }
    assert_eq!(text(&net, b).matches('x').count(), 8 * 450);
}

#[test]
fn an_acceptor_at_its_maximum_of_groups_refuses_a_new_one_and_the_device_tells_its_app_once() {
    let (mut net, _) = support::net_with(1, config().validate().expect("valid"));
    net.config = Config { groups_max: 1, ..config() }.validate().expect("valid");
    for (seed, id) in (1..=3).map(NodeId::from_index).enumerate() {
        net.restart(id, 10 + seed as u64, true);
    }
    net.command(device(), Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    {
        cov_mark::check_count!(device_tells_its_app_an_acceptor_will_not_host_the_group, 3);
        cov_mark::check!(acceptor_refuses_a_group_beyond_its_maximum);
        net.command(device(), Command::CreateGroup { acceptors: acceptors(), nonce: 2, rotation_interval_ms: 0 });
        for _ in 0..10 {
            settle(&mut net);
        }
    }
    let created = groups_created(&net);
    let refused: Vec<(GroupId, NodeId, GroupRefusal)> = net
        .events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::GroupRefused { group, acceptor, reason } => Some((*group, *acceptor, *reason)),
            _ => None,
        })
        .collect();
    let expected: Vec<(GroupId, NodeId, GroupRefusal)> =
        (1..=3).map(|i| (created[1], NodeId::from_index(i), GroupRefusal::Full)).collect();
    assert_eq!(refused, expected, "each acceptor refused the second group, and the app heard it once each");
    for id in (1..=3).map(NodeId::from_index) {
        let acceptor = net.acceptor(id);
        assert_eq!(acceptor.stats().groups, 1);
        assert!(acceptor.group(created[0]).is_some() && acceptor.group(created[1]).is_none());
        assert!(acceptor.counters().of(Rejection::OverLimit) >= 2, "{id} refused the device's syncs again and again");
    }
    assert!(net.device(device()).counters().of(Rejection::Duplicate) >= 3, "later refusals were counted, not told");
}
