//! Anti-entropy slows down while a group is idle: devices sync, and acceptors ask their peers,
//! ever less often up to a ceiling, and news brings the base pace back.

use crate::support;

use plait_kernel::{Command, Config, Event, GroupId, Input, NodeId};

use support::Net;
use support::groups::*;

/// Frames of `kind` (the message's name) that `from` sent so far.
fn sent(net: &Net, from: NodeId, kind: &str) -> usize {
    let prefix = format!("{from} -> ");
    let kind = format!(" {kind} {{");
    net.log.iter().filter(|line| line.starts_with(&prefix) && line.contains(&kind)).count()
}

/// Lets `ms` pass in steps of 100 ms, delivering everything after each.
fn idle_for(net: &mut Net, ms: u64) {
    for _ in 0..ms / 100 {
        net.tick(100);
        net.deliver_all(10_000);
    }
}

fn edit(net: &mut Net, device: NodeId, group: GroupId, insert: &str) {
    net.command(device, Command::Edit { group, position: 0, delete: 0, insert: insert.into() });
}

#[test]
fn an_idle_group_syncs_ever_less_often_down_to_the_ceilings_pace() {
    let (mut net, group, [admin, _, _]) = group_of_three();
    edit(&mut net, admin, group, "hello");
    settle(&mut net);
    let acceptor = NodeId::from_index(1);
    // Two minutes of nothing. At the base pace that is 240 syncs to each of 3 acceptors and 120
    // rounds with peers; at the ceilings' (8 s and 16 s) 15 and 8, after a few doublings.
    let (syncs, rounds) = (sent(&net, admin, "Sync"), sent(&net, acceptor, "CatchUp"));
    idle_for(&mut net, 120_000);
    let syncs = sent(&net, admin, "Sync") - syncs;
    let rounds = sent(&net, acceptor, "CatchUp") - rounds;
    assert!((3 * 15..=3 * 20).contains(&syncs), "{syncs} syncs");
    assert!((2 * 8..=2 * 12).contains(&rounds), "{rounds} rounds");
    // Still in sync with nothing to do: every round now waits for the ceiling.
    let syncs = sent(&net, admin, "Sync");
    idle_for(&mut net, 16_000);
    assert_eq!(sent(&net, admin, "Sync") - syncs, 3 * 2);
}

#[test]
fn news_brings_back_the_base_pace() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    settle(&mut net);
    idle_for(&mut net, 60_000);
    let syncs = sent(&net, admin, "Sync");
    // Another member's edit reaches the admin (pushed): its next sync comes within the base
    // interval, and the next ones double from there (0.5, 1, 2 s: 3 rounds in 4 s, where the
    // slowed pace has at most one).
    edit(&mut net, second, group, "news");
    net.deliver_all(10_000);
    idle_for(&mut net, 4_000);
    assert!(sent(&net, admin, "Sync") - syncs >= 3 * 3, "{} syncs", sent(&net, admin, "Sync") - syncs);
}

/// `author` edits and posts at once, and only what that sends is delivered: no other timer fires.
fn edit_and_post(net: &mut Net, author: NodeId, group: GroupId, insert: &str) {
    edit(net, author, group, insert);
    // Only the author's timer: it closes the batch, and the flush posts it.
    net.now = net.now.plus_ms(net.config.flush_after_ms);
    net.input(author, Input::Timer);
    net.flush(author);
    net.deliver_all(10_000);
}

/// Whether `member` applied an edit of `author`'s.
fn heard_from(net: &Net, member: NodeId, group: GroupId, author: NodeId) -> bool {
    net.events.iter().any(|(node, event)| {
        *node == member && matches!(event, Event::DocumentChanged { group: g, id } if *g == group && id.sender == author)
    })
}

/// Every acceptor restarts (an upgrade, say) while the group is idle. They still know whom to
/// tell: an edit reaches the other members at once, pushed, not at their next sync (up to the
/// ceiling's 8 s later).
#[test]
fn acceptors_that_restart_push_news_to_their_subscribers_at_once() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    settle(&mut net);
    idle_for(&mut net, 60_000);
    for (index, acceptor) in [1, 2, 3].map(NodeId::from_index).into_iter().enumerate() {
        net.restart(acceptor, 7 + index as u64, false);
    }
    edit_and_post(&mut net, second, group, "news");
    for member in [admin, third] {
        assert!(heard_from(&net, member, group, second), "{member} heard of the edit without a sync");
    }
}

/// The host has a link to an acceptor again (it had none: what the acceptor pushed meanwhile
/// was lost): the device syncs at once, not at its next round, up to the ceiling's 8 s later.
#[test]
fn a_device_syncs_at_once_with_an_acceptor_it_reaches_again() {
    let (mut net, _, [admin, _, _]) = group_of_three();
    settle(&mut net);
    idle_for(&mut net, 60_000);
    let syncs = sent(&net, admin, "Sync");
    cov_mark::check!(device_syncs_at_once_with_an_acceptor_it_reaches_again);
    net.input(admin, Input::LinkUp { peer: NodeId::from_index(2) });
    net.input(admin, Input::Timer);
    assert_eq!(sent(&net, admin, "Sync") - syncs, 3, "a sync to each acceptor, at once");
    // A link that flaps brings no more than one sync per interval.
    for _ in 0..5 {
        net.input(admin, Input::LinkUp { peer: NodeId::from_index(3) });
        net.input(admin, Input::Timer);
    }
    assert_eq!(sent(&net, admin, "Sync") - syncs, 3, "no sync again within the interval");
    net.now = net.now.plus_ms(net.config.sync_interval_ms);
    net.input(admin, Input::LinkUp { peer: NodeId::from_index(3) });
    net.input(admin, Input::Timer);
    assert_eq!(sent(&net, admin, "Sync") - syncs, 6, "a sync again an interval later");
}

/// Subscribers are durable, so a set full of members that left would stay full: at the limit,
/// they make room for a member who syncs.
#[test]
fn members_that_left_make_room_for_new_subscribers() {
    let config = Config { subscribers_max: 3, ..Config::default() }.validate().expect("valid");
    let (mut net, group, [admin, _, third]) = group_of_three_in(support::net_with(4, config).0);
    net.command(admin, Command::RemoveMember { group, member: third });
    settle(&mut net);
    let fourth = NodeId::from_index(104);
    let genesis = created(&net);
    cov_mark::check!(acceptor_drops_subscribers_that_left_to_make_room);
    add(&mut net, admin, fourth, &genesis);
    edit_and_post(&mut net, admin, group, "welcome");
    assert!(heard_from(&net, fourth, group, admin), "the new member is told of edits");
}
