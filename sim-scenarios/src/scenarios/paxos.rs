//! `paxos/`: the commit log over opaque values, under every fault the simulator has.

use plait_io_sim::{Chance, FaultProfile, Latency, SimRng};
use plait_kernel::{AcceptorSet, Command, Entry, Time};

use crate::outline::Outline;
use crate::{Outcome, RunOptions, Scenario};

/// Every `paxos/` scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "paxos/uncontended-commits-take-one-round-trip-each",
            description: "one proposer on a calm network pays phase 1 once, then commits every value in exactly one round trip",
            run: uncontended_commits_take_one_round_trip_each,
        },
        Scenario {
            name: "paxos/dueling-proposers-converge-under-loss-duplication-and-reordering",
            description: "three devices propose at once through a lossy, duplicating, reordering network; one value per slot, all converge",
            run: dueling_proposers_converge,
        },
        Scenario {
            name: "paxos/a-minority-partitioned-during-accept-does-not-stop-commits",
            description: "cutting one of three acceptors off while accepts are in flight leaves the majority committing",
            run: minority_partition_during_accept,
        },
        Scenario {
            name: "paxos/a-majority-partition-stalls-commits-until-healed",
            description: "with a majority of acceptors unreachable nothing is chosen; after healing everything converges",
            run: majority_partition_then_heal,
        },
        Scenario {
            name: "paxos/acceptors-crashing-mid-accept-restart-from-their-disks",
            description: "acceptors crash between any two effects and restart from durable state without breaking a promise",
            run: acceptor_crash_and_restart_mid_accept,
        },
        Scenario {
            name: "paxos/an-acceptor-restarted-with-an-empty-disk-rejoins-safely",
            description: "an acceptor that lost its disk fences its old promises, catches up and votes again without a second value per slot",
            run: acceptor_restart_with_empty_disk,
        },
        Scenario {
            name: "paxos/a-proposer-crashing-after-an-accept-quorum-leaves-its-value-chosen",
            description: "a device crashes after a quorum accepted its value; another device finishes the slot with that same value",
            run: proposer_crash_after_accept_quorum,
        },
        Scenario {
            name: "paxos/an-asymmetric-partition-does-not-livelock-proposers",
            description: "two devices that each reach a different majority through one-way links still commit, thanks to jittered backoff",
            run: asymmetric_partition_does_not_livelock,
        },
        Scenario {
            name: "paxos/an-acceptor-set-change-under-faults-moves-the-quorum",
            description: "replacing an acceptor through the log under random faults: the new set rules from the next slot and catches up",
            run: acceptor_set_change_under_faults,
        },
        Scenario {
            name: "paxos/a-random-swarm-keeps-every-invariant",
            description: "a seed-chosen mix of every fault class against 3 or 5 acceptors and 2 to 4 devices; some seeds lose an acceptor for good",
            run: random_swarm,
        },
    ]
}

/// Three acceptors and `devices` devices on a calm network with a fixed, seed-chosen latency and
/// no background workload: the scenario scripts everything.
fn calm_session(options: &RunOptions, devices: usize) -> crate::outline::Session {
    let mut rng = SimRng::new(options.seed);
    let profile = FaultProfile { latency: fixed_latency(&mut rng), ..FaultProfile::calm() };
    Outline { genesis_acceptors: None, acceptors: 3, devices, profile, proposals_per_device: 0, safety_ms: 0 }.start(options)
}

fn fixed_latency(rng: &mut SimRng) -> Latency {
    Latency { min_ms: rng.between(2, 20), spread_ms: 0, tail: Chance::NEVER, tail_ms_max: 0 }
}

/// Proves the multi-Paxos fast path: after the first commit, each commit costs one round trip.
fn uncontended_commits_take_one_round_trip_each(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = FaultProfile { latency: fixed_latency(&mut rng), ..FaultProfile::calm() };
    let one_way_ms = profile.latency.min_ms;
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 1, profile, proposals_per_device: 0, safety_ms: 0 }
            .start(options);
    let device = session.cluster.devices()[0];
    let group = session.group;
    for k in 0..20u64 {
        session.cluster.command(device, Command::Propose { group, value: k.to_le_bytes().to_vec() });
        let started = session.cluster.now();
        let target = k + 1;
        if !session.cluster.run_until_condition(started.plus_ms(60_000), |c| c.stats.committed >= target) {
            session.fail("liveness-after-heal", format!("proposal {k} was never committed"));
            break;
        }
        let took_ms = session.cluster.now().since(started);
        if k > 0 && took_ms != 2 * one_way_ms {
            let detail = format!("commit {k} took {took_ms}ms, one round trip is {}ms", 2 * one_way_ms);
            session.fail("uncontended-commit-takes-one-round-trip", detail);
            break;
        }
    }
    session.safety_end = session.cluster.now();
    session.finish()
}

/// Proves agreement when proposers race and the network misbehaves (no partitions or crashes).
fn dueling_proposers_converge(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile::swarm(&mut rng);
    profile.loss = Chance(rng.between(0, 150_000) as u32);
    profile.duplicate = Chance(rng.between(0, 100_000) as u32);
    profile.latency.spread_ms = rng.between(5, 60);
    let profile = FaultProfile {
        partitions: false,
        asymmetric: false,
        isolate: false,
        clogging: false,
        crashes: false,
        wipes: false,
        ..profile
    };
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 3, profile, proposals_per_device: 8, safety_ms: 5_000 }
            .start(options);
    session.cluster.start_faults();
    session.finish()
}

/// Proves that a minority partition does not stop a majority from committing.
fn minority_partition_during_accept(options: &RunOptions) -> Outcome {
    let mut session = calm_session(options, 2);
    let group = session.group;
    let devices = session.cluster.devices();
    session.cluster.command(devices[0], Command::Propose { group, value: b"warm-up".to_vec() });
    session.cluster.run_until_condition(Time(30_000), |c| c.stats.committed >= 1);
    // Send a value and cut one acceptor off while its accepts are in flight.
    let cut = session.cluster.acceptors()[session.rng.index(3)];
    let before = session.cluster.stats.committed;
    session.cluster.command(devices[1], Command::Propose { group, value: b"during-partition".to_vec() });
    let at = session.cluster.now().plus_ms(session.rng.between(0, 20));
    session.cluster.run_until(at);
    session.cluster.isolate(cut);
    for k in 0..5u64 {
        session.cluster.command(devices[(k % 2) as usize], Command::Propose { group, value: vec![k as u8; 4] });
    }
    let deadline = session.cluster.now().plus_ms(20_000);
    if !session.cluster.run_until_condition(deadline, |c| c.stats.committed >= before + 6) {
        session.fail("majority-commits-despite-minority-partition", "the majority side stopped committing".to_string());
    }
    session.safety_end = session.cluster.now();
    session.finish()
}

/// Proves that nothing is chosen without a majority, and that healing restores progress.
fn majority_partition_then_heal(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = FaultProfile { latency: fixed_latency(&mut rng), ..FaultProfile::calm() };
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 2, profile, proposals_per_device: 4, safety_ms: 8_000 }
            .start(options);
    let acceptors = session.cluster.acceptors();
    let devices = session.cluster.devices();
    let keep = acceptors[session.rng.index(3)];
    let cut: Vec<usize> = acceptors.iter().copied().filter(|a| *a != keep).collect();
    let mut reachable = devices.clone();
    reachable.push(keep);
    let at = Time(session.rng.between(0, 3_000));
    session.cluster.run_until(at);
    session.cluster.partition(&cut, &reachable);
    let frontier = session.cluster.checker.frontier(session.group);
    session.cluster.run_until(session.safety_end);
    let stalled = session.cluster.checker.frontier(session.group);
    // A slot whose accepts were already durable at a majority may still be decided; no more.
    if stalled.0 > frontier.0 + 1 {
        let detail = format!("slots advanced from {} to {} without a reachable majority", frontier.0, stalled.0);
        session.fail("no-progress-without-a-majority", detail);
    }
    session.finish()
}

/// Proves promises and accepts survive crashes at any point between effects.
fn acceptor_crash_and_restart_mid_accept(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile { latency: fixed_latency(&mut rng), ..FaultProfile::calm() };
    profile.crashes = true;
    profile.crash_mid_effects = Chance(rng.between(20_000, 100_000) as u32);
    profile.fault_interval_ms = rng.between(200, 1_000);
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 2, profile, proposals_per_device: 10, safety_ms: 8_000 }
            .start(options);
    session.cluster.start_faults();
    session.finish()
}

/// Proves the recovery protocol: an acceptor with an empty disk never helps choose a second value.
fn acceptor_restart_with_empty_disk(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile::swarm(&mut rng);
    profile.wipes = true;
    profile.crashes = true;
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 3, profile, proposals_per_device: 10, safety_ms: 10_000 }
            .start(options);
    session.cluster.start_faults();
    // Also wipe one acceptor at a scripted moment, so every seed exercises recovery.
    let at = Time(session.rng.between(500, 6_000));
    session.cluster.run_until(at);
    let victim = session.cluster.acceptors()[session.rng.index(3)];
    session.cluster.crash(victim);
    let back = session.cluster.now().plus_ms(session.rng.between(10, 1_000));
    session.cluster.run_until(back);
    let may_wipe = session.cluster.may_wipe(victim);
    session.cluster.restart(victim, may_wipe);
    session.finish()
}

/// Proves a value accepted by a quorum survives its proposer's crash.
fn proposer_crash_after_accept_quorum(options: &RunOptions) -> Outcome {
    let mut session = calm_session(options, 2);
    let group = session.group;
    let devices = session.cluster.devices();
    let warm_up = session.rng.between(0, 3);
    for k in 0..warm_up {
        session.cluster.command(devices[0], Command::Propose { group, value: vec![k as u8] });
    }
    session.cluster.run_until_condition(Time(30_000), |c| c.stats.committed >= warm_up);
    let slot = session.cluster.checker.frontier(group);
    let value = b"survives-its-proposer".to_vec();
    session.cluster.command(devices[0], Command::Propose { group, value: value.clone() });
    // Crash the proposer the moment a quorum has durably accepted, before it can learn that.
    let chosen = session.cluster.run_until_condition(Time(60_000), |c| c.checker.frontier(group) > slot);
    session.cluster.crash(devices[0]);
    let hold = session.cluster.now().plus_ms(5_000);
    session.cluster.run_until(hold);
    session.safety_end = session.cluster.now();
    let mut outcome_session = session;
    let chosen_entry = outcome_session.cluster.checker.chosen(group).get(slot.0 as usize).cloned();
    if chosen && chosen_entry != Some(Entry::Value(value)) {
        outcome_session.fail("accepted-quorum-value-survives", format!("slot {} holds {chosen_entry:?}", slot.0));
    }
    outcome_session.finish()
}

/// Proves randomized backoff breaks the duel that one-way links invite.
fn asymmetric_partition_does_not_livelock(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = FaultProfile {
        latency: Latency { min_ms: 2, spread_ms: rng.between(0, 10), tail: Chance::NEVER, tail_ms_max: 0 },
        ..FaultProfile::calm()
    };
    let mut session =
        Outline { genesis_acceptors: None, acceptors: 3, devices: 2, profile, proposals_per_device: 0, safety_ms: 0 }
            .start(options);
    let group = session.group;
    let acceptors = session.cluster.acceptors();
    let devices = session.cluster.devices();
    // Device 0 cannot hear acceptor 2's replies; device 1 cannot hear acceptor 0's. Each still
    // reaches a majority, so they keep preempting each other unless backoff separates them.
    session.cluster.network.block_one_way(acceptors[2], devices[0]);
    session.cluster.network.block_one_way(acceptors[0], devices[1]);
    for k in 0..10u64 {
        for (n, device) in devices.iter().enumerate() {
            session.cluster.command(*device, Command::Propose { group, value: format!("d{n}-{k}").into_bytes() });
        }
    }
    let deadline = Time(60_000);
    if !session.cluster.run_until_condition(deadline, |c| c.stats.committed >= 20) {
        let committed = session.cluster.stats.committed;
        session.fail("asymmetric-partition-makes-progress", format!("only {committed} of 20 committed in 60s of one-way links"));
    }
    session.safety_end = session.cluster.now();
    session.finish()
}

/// Proves reconfiguration through the log is safe and live under faults.
fn acceptor_set_change_under_faults(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile::swarm(&mut rng);
    profile.wipes = false;
    let mut session =
        Outline { genesis_acceptors: Some(3), acceptors: 4, devices: 2, profile, proposals_per_device: 6, safety_ms: 8_000 }
            .start(options);
    let group = session.group;
    // The genesis names acceptors 1-3; acceptor 4 waits to be added in place of a random one.
    let all = session.cluster.acceptors();
    let ids: Vec<_> = all.iter().map(|a| session.cluster.id(*a)).collect();
    let dropped = session.rng.index(3);
    let mut next: Vec<_> = ids[..3].to_vec();
    next[dropped] = ids[3];
    let next = AcceptorSet::new(next, 16).expect("three acceptors");
    let at = Time(session.rng.between(100, 4_000));
    let device = session.cluster.devices()[session.rng.index(2)];
    session.cluster.command_at(at, device, Command::ChangeAcceptors { group, acceptors: next.clone() });
    session.cluster.start_faults();
    session.run_safety();
    session.begin_liveness();
    // The proposal is lost if its device crashed first; ask again now that faults stopped.
    let applied =
        |c: &plait_io_sim::Cluster| c.device(c.devices()[0]).and_then(|d| d.group(group)).is_some_and(|g| g.acceptors() == &next);
    if !applied(&session.cluster) {
        let device = session.cluster.devices()[0];
        session.cluster.command(device, Command::ChangeAcceptors { group, acceptors: next.clone() });
        let deadline = session.cluster.now().plus_ms(30_000);
        session.cluster.run_until_condition(deadline, applied);
    }
    session.await_convergence();
    if session.cluster.checker.violation().is_none() && session.cluster.checker.acceptors(group) != Some(&next) {
        session
            .fail("acceptor-set-change-takes-effect", format!("the set is still {:?}", session.cluster.checker.acceptors(group)));
    }
    session.outcome()
}

/// Proves every invariant under a seed-chosen mix of all faults.
fn random_swarm(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = FaultProfile::swarm(&mut rng);
    let acceptors = if rng.happens(Chance::percent(50)) { 3 } else { 5 };
    let devices = rng.between(2, 4) as usize;
    let mut session =
        Outline { genesis_acceptors: None, acceptors, devices, profile, proposals_per_device: 8, safety_ms: 10_000 }
            .start(options);
    session.cluster.start_faults();
    session.finish()
}
