//! Anti-entropy slows down while a group is idle: devices sync, and acceptors ask their peers,
//! ever less often up to a ceiling, and news brings the base pace back.

use crate::support;

use plait_kernel::{Command, GroupId, NodeId};

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
