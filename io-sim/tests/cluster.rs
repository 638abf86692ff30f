//! The `Cluster` harness verbs do what they say.

use plait_io_sim::{Cluster, FaultProfile};
use plait_kernel::{Command, Config, Time};

fn cluster(seed: u64) -> (Cluster, plait_kernel::GroupId) {
    let mut cluster = Cluster::new(seed, 3, 2, Config::default(), FaultProfile::calm(), false);
    let genesis = cluster.genesis(seed, 3);
    let group = cluster.open_group(&genesis);
    (cluster, group)
}

#[test]
fn run_until_idle_returns_once_every_proposal_is_chosen() {
    let (mut cluster, group) = cluster(1);
    let device = cluster.devices()[0];
    for k in 0..5u8 {
        cluster.command(device, Command::Propose { group, value: vec![k] });
    }
    assert!(cluster.run_until_idle(Time(60_000)));
    assert_eq!(cluster.stats.committed, 5);
    assert_eq!(cluster.checker.frontier(group).0, 5);
    assert!(cluster.checker.violation().is_none());
}

#[test]
fn a_partitioned_majority_stops_progress_until_healed() {
    let (mut cluster, group) = cluster(2);
    assert!(cluster.run_until_idle(Time(10_000)));
    let acceptors = cluster.acceptors();
    let devices = cluster.devices();
    cluster.partition(&acceptors[..2], &devices);
    cluster.command(devices[0], Command::Propose { group, value: b"stuck".to_vec() });
    assert!(!cluster.run_until_idle(Time(20_000)), "no majority is reachable");
    assert_eq!(cluster.checker.frontier(group).0, 0);
    cluster.heal();
    assert!(cluster.run_until_idle(Time(40_000)));
    assert_eq!(cluster.checker.frontier(group).0, 1);
}

#[test]
fn a_crashed_device_loses_its_queue_but_keeps_what_it_applied() {
    let (mut cluster, group) = cluster(3);
    let device = cluster.devices()[0];
    cluster.command(device, Command::Propose { group, value: b"kept".to_vec() });
    assert!(cluster.run_until_idle(Time(10_000)));
    cluster.crash(device);
    assert!(!cluster.is_up(device));
    cluster.command(device, Command::Propose { group, value: b"lost".to_vec() });
    cluster.run_until(Time(12_000));
    cluster.restart(device, false);
    let view = cluster.device(device).expect("up").group(group).expect("restored from disk");
    assert_eq!(view.next_slot().0, 1, "the applied entry survived the crash");
    assert_eq!(view.queued(), 0, "a command sent while down never arrived");
}

#[test]
fn an_acceptor_restarted_with_an_empty_disk_votes_again_after_recovery() {
    let (mut cluster, group) = cluster(4);
    let device = cluster.devices()[0];
    cluster.command(device, Command::Propose { group, value: b"before".to_vec() });
    assert!(cluster.run_until_idle(Time(10_000)));
    let victim = cluster.acceptors()[0];
    cluster.crash(victim);
    cluster.restart(victim, true);
    assert!(cluster.acceptor(victim).expect("up").group(group).is_none(), "the disk was empty");
    cluster.command(device, Command::Propose { group, value: b"after".to_vec() });
    assert!(cluster.run_until_condition(Time(60_000), |c| c.converged(group)));
    let view = cluster.acceptor(victim).expect("up").group(group).expect("relearned the group");
    assert!(view.is_voting());
    assert_eq!(view.chosen_next().0, 2);
    assert!(cluster.checker.violation().is_none());
}
