//! `compaction/`: members snapshot the document while others type, under faults. Every run ends
//! with every member (joiners included) holding the same text, no safe update unrecoverable at
//! any moment (the checker's ghost counts a snapshot an acceptor holds whole as a copy of every
//! message its compaction covers), and, where the run is long enough, a compaction in force and
//! every acceptor's storage bounded by its snapshot and the tail it does not cover.

use plait_io_sim::{Cluster, FaultProfile, SimRng};
use plait_kernel::mls::Role;
use plait_kernel::{Command, Event, NodeId, Time};

use crate::outline::Session;
use crate::scenarios::document::{finish, settle_documents, typing};
use crate::scenarios::mls::{crashing_between_effects, invite_code, lossy, rotations, start_configured};
use crate::{Outcome, RunOptions, Scenario};

/// Every `compaction/` scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "compaction/snapshots-race-with-typing-and-key-rotations",
            description: "four members type on a lossy, duplicating network while keys rotate; members snapshot the document as history grows, acceptors delete what each snapshot covers, and everyone converges with nothing safe lost",
            run: racing_with_typing,
        },
        Scenario {
            name: "compaction/joiners-at-any-point-reach-the-same-text",
            description: "a device is invited and admitted at a random moment while three members type; it starts from the snapshot named in its Welcome, gets later snapshots for what it cannot decrypt, and ends with the same text",
            run: joiner_reaches_the_same_text,
        },
        Scenario {
            name: "compaction/acceptors-crashing-between-storing-a-snapshot-and-its-commit-lose-nothing",
            description: "acceptors and devices crash between any two effects while snapshots are stored and committed; no covered update is deleted before a quorum holds its snapshot",
            run: crashes_between_snapshot_and_commit,
        },
        Scenario {
            name: "compaction/a-silent-compactor-is-replaced",
            description: "a random member, possibly the one whose turn it is, is cut off for most of the run; another member takes over compaction and the history still gets compacted",
            run: silent_compactor_is_replaced,
        },
        Scenario {
            name: "compaction/a-minority-of-acceptors-losing-their-disks-loses-nothing",
            description: "acceptors lose their disks, one at a time, while snapshots are made; a wiped acceptor fetches the snapshot in force from its peers and no safe update becomes unrecoverable",
            run: disks_lost_while_compacting,
        },
        Scenario {
            name: "compaction/a-member-back-after-many-epochs-recovers-what-it-cannot-decrypt",
            description: "a member is away while keys rotate many times and the others type, with thresholds too high to compact on their own; back, it cannot decrypt what it missed, asks for a compaction, and catches up from the snapshot",
            run: |options| back_after_many_epochs(options, Role::Writer),
        },
        Scenario {
            name: "compaction/a-reader-back-after-many-epochs-recovers-what-it-cannot-decrypt",
            description: "as above, but the member away was made a reader first: readers may ask for a compaction too, and it catches up from the snapshot",
            run: |options| back_after_many_epochs(options, Role::Reader),
        },
        Scenario {
            name: "compaction/every-acceptor-replaced-while-typing-loses-nothing",
            description: "three members type while an admin replaces the whole acceptor set with three new acceptors; the new set copies what the old one held, a device invited afterwards reaches the same text, and the old acceptors delete what the new set copied",
            run: |options| every_acceptor_replaced(options, lossy(&mut SimRng::new(options.seed))),
        },
        Scenario {
            name: "compaction/every-acceptor-replaced-while-acceptors-crash-and-lose-disks-loses-nothing",
            description: "as above, while nodes crash and restart, and acceptors of both sets lose their disks (one at a time), as the new set copies and the old one deletes: the new set still ends holding every safe message, the old one none",
            run: |options| every_acceptor_replaced(options, losing_disks(options.seed)),
        },
        Scenario {
            name: "compaction/long-typing-keeps-acceptor-storage-bounded",
            description: "four members type for a long run; at the end every acceptor holds the snapshot in force, no message it covers, and at most a bounded multiple of its size",
            run: long_typing_stays_bounded,
        },
    ]
}

/// The kernel configuration of these scenarios: compaction after a few messages, devices'
/// checkpoints after fewer, a quick takeover, and chunks small enough that every snapshot takes
/// several.
fn config(options: &RunOptions) -> plait_kernel::Config {
    plait_kernel::Config {
        compact_after_messages: 12,
        checkpoint_after_updates: 5,
        compaction_takeover_ms: 800,
        snapshot_chunk_bytes: 1_024,
        ..options.kernel_config()
    }
}

/// Four devices on three acceptors, `founders` of them members from the start.
fn start(options: &RunOptions, profile: FaultProfile, founders: usize) -> Result<Session, Box<Outcome>> {
    start_configured(options, (3, 4, 3), profile, 0, (config(options), founders))
}

/// Fails the run unless every running acceptor of the group has a compaction confirmed.
fn require_a_compaction(session: &mut Session) {
    if session.cluster.checker.violation().is_some() {
        return;
    }
    for acceptor in session.cluster.acceptors() {
        let Some(view) = session.cluster.acceptor(acceptor).and_then(|a| a.group(session.group)) else { continue };
        if view.confirmed().is_none() {
            let detail = format!("acceptor {acceptor} has no compaction confirmed after the whole run");
            return session.fail("history-gets-compacted", detail);
        }
    }
}

/// After settling: every running acceptor has the compaction in force confirmed, holds its
/// snapshot and no message it covers, and snapshots of at most `snapshots_per_group_max` times
/// the size of the one in force plus what it does not cover.
fn check_storage_bounded(session: &mut Session, options: &RunOptions) {
    if session.cluster.checker.violation().is_some() {
        return;
    }
    let limit = config(options).snapshots_per_group_max as u64;
    for acceptor in session.cluster.acceptors() {
        let Some(view) = session.cluster.acceptor(acceptor).and_then(|a| a.group(session.group)) else { continue };
        let Some(compaction) = view.compaction() else { continue };
        let confirmed = view.confirmed().map(|confirmed| confirmed.hash);
        let covered_held = view.messages().filter(|(_, m)| compaction.covered.contains(&m.id)).count();
        let tail: u64 = view.messages().map(|(_, m)| m.ciphertext.len() as u64).sum();
        let snapshots = view.snapshot_bytes() as u64;
        let detail = if confirmed != Some(compaction.hash) {
            format!("acceptor {acceptor} has the compaction in force {:?} not confirmed ({confirmed:?} is)", compaction.hash)
        } else if !view.holds_snapshot(&compaction.hash) {
            format!("acceptor {acceptor} does not hold the snapshot in force {:?}", compaction.hash)
        } else if covered_held > 0 {
            format!("acceptor {acceptor} still stores {covered_held} messages the compaction in force covers")
        } else if snapshots > limit * (compaction.size + tail) {
            format!(
                "acceptor {acceptor} holds {snapshots} snapshot bytes for a snapshot of {} and a tail of {tail}",
                compaction.size
            )
        } else {
            continue;
        };
        return session.fail("acceptor-storage-is-bounded-by-the-snapshot-and-its-tail", detail);
    }
}

/// Proves compaction is safe while everyone types and keys rotate.
fn racing_with_typing(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, profile, 4) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 4);
    let (devices, end) = (session.cluster.devices(), session.safety_end);
    typing(&mut session, &devices, 200, end, "");
    session.run_safety();
    session.run_liveness();
    settle_documents(&mut session);
    require_a_compaction(&mut session);
    session.outcome()
}

/// Proves a joiner admitted at any point reaches the text everyone else has, the part typed
/// before it joined included.
fn joiner_reaches_the_same_text(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, profile, 3) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices) = (session.group, session.cluster.devices());
    let (admin, joiner) = (devices[0], devices[3]);
    let typists = &devices[..3];
    let moment = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    typing(&mut session, typists, 100, moment, "");
    let acceptors = session.cluster.checker.acceptors(group).cloned().expect("the group is known");
    if !admit_while_typing(&mut session, (admin, joiner), acceptors, &devices, 100) {
        return session.outcome();
    }
    finish(session)
}

/// The admin invites `joiner` as a writer through `acceptors`; `typists` type `edits` edits while
/// it redeems the code, until 5 s from now or the end of the safety phase, whichever is later.
/// `false` if the run failed: no invite, or the joiner never became a member.
fn admit_while_typing(
    session: &mut Session,
    (admin, joiner): (usize, usize),
    acceptors: plait_kernel::AcceptorSet,
    typists: &[usize],
    edits: u64,
) -> bool {
    let group = session.group;
    session.cluster.notices.clear();
    session.cluster.command(admin, Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Writer });
    let deadline = session.cluster.now().plus_ms(10_000);
    let invited = |c: &Cluster| c.notices.iter().any(|(_, e)| matches!(e, Event::InviteCreated { .. }));
    session.cluster.run_until_condition(deadline, invited);
    let Some(code) = invite_code(session) else { return false };
    session.cluster.command(joiner, Command::AcceptInvite { code, acceptors });
    let end = session.safety_end.max(session.cluster.now().plus_ms(5_000));
    session.safety_end = end;
    typing(session, typists, edits, end, "");
    let deadline = end.plus_ms(30_000);
    let joined = |c: &Cluster| c.device(joiner).and_then(|d| d.group(group)).is_some_and(|g| g.is_member());
    if !session.cluster.run_until_condition(deadline, joined) {
        session.fail("an-invited-device-joins", "the invited device never became a member".into());
        return false;
    }
    true
}

/// Proves crashes in the middle of storing and committing snapshots lose nothing.
fn crashes_between_snapshot_and_commit(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = lossy(&mut rng);
    crashing_between_effects(&mut profile, &mut rng);
    typing_under_faults(options, profile)
}

/// Four members type 200 edits while `profile`'s faults run, then heal and settle.
fn typing_under_faults(options: &RunOptions, profile: FaultProfile) -> Outcome {
    let mut session = match start(options, profile, 4) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    session.cluster.start_faults();
    let (devices, end) = (session.cluster.devices(), session.safety_end);
    typing(&mut session, &devices, 200, end, "");
    finish(session)
}

/// Proves another member compacts when the one whose turn it is stays silent.
fn silent_compactor_is_replaced(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, profile, 4) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let devices = session.cluster.devices();
    let silent = devices[session.rng.index(devices.len())];
    session.cluster.isolate(silent);
    let others: Vec<usize> = devices.iter().copied().filter(|d| *d != silent).collect();
    let end = session.safety_end;
    typing(&mut session, &others, 160, end, "");
    require_a_compaction(&mut session);
    session.cluster.heal();
    finish(session)
}

/// Proves disk loss at a minority of acceptors loses nothing while snapshots are made.
fn disks_lost_while_compacting(options: &RunOptions) -> Outcome {
    typing_under_faults(options, losing_disks(options.seed))
}

/// A [`lossy`] network where nodes crash and restart, acceptors sometimes with an empty disk.
fn losing_disks(seed: u64) -> FaultProfile {
    let mut rng = SimRng::new(seed);
    let mut profile = lossy(&mut rng);
    profile.crashes = true;
    profile.wipes = true;
    profile.fault_interval_ms = rng.between(400, 2_000);
    profile
}

/// Proves a member (a writer, or a reader) that missed more epochs than it keeps secrets for
/// still recovers the text.
fn back_after_many_epochs(options: &RunOptions, role: Role) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let config = plait_kernel::Config { compact_after_messages: 100_000, compact_after_bytes: 1 << 40, ..config(options) };
    let mut session = match start_configured(options, (3, 4, 3), profile, 0, (config, 4)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let devices = session.cluster.devices();
    let away = devices[1 + session.rng.index(devices.len() - 1)];
    if role != Role::Writer {
        let (group, member) = (session.group, session.cluster.id(away));
        session.cluster.command(devices[0], Command::SetRole { group, member, role });
        let deadline = session.cluster.now().plus_ms(30_000);
        let given = |c: &Cluster| c.device(away).and_then(|d| d.group(group)?.role()) == Some(role);
        if !session.cluster.run_until_condition(deadline, given) {
            session.fail("roles-take-effect", format!("the member away never became a {role:?}"));
            return session.outcome();
        }
        session.safety_end = session.safety_end.max(session.cluster.now().plus_ms(10_000));
    }
    session.cluster.isolate(away);
    let others: Vec<usize> = devices.iter().copied().filter(|d| *d != away).collect();
    let end = session.safety_end;
    // More rotations than `mls_past_epochs_max` (4), spread over the run, by members still here.
    let (from, group) = (session.cluster.now().0, session.group);
    for _ in 0..8 {
        let at = Time(session.rng.between(from, end.0));
        let device = others[session.rng.index(others.len())];
        session.cluster.command_at(at, device, Command::RotateKeys { group });
    }
    typing(&mut session, &others, 120, end, "");
    session.cluster.heal();
    finish(session)
}

/// Proves a whole acceptor set can be replaced without losing what it held: the new acceptors
/// never talked to the members before, and a device invited afterwards joins through them.
fn every_acceptor_replaced(options: &RunOptions, profile: FaultProfile) -> Outcome {
    let mut session = match start_configured(options, (6, 4, 3), profile, 0, (config(options), 3)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices, acceptors) = (session.group, session.cluster.devices(), session.cluster.acceptors());
    let (admin, joiner) = (devices[0], devices[3]);
    let typists = &devices[..3];
    let new_set: Vec<_> = acceptors[3..].iter().map(|a| session.cluster.id(*a)).collect();
    let new_set = plait_kernel::AcceptorSet::new(new_set, 16).expect("three acceptors");
    let moment = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    typing(&mut session, typists, 80, moment, "");
    session.cluster.command(admin, Command::ChangeAcceptors { group, acceptors: new_set.clone() });
    let deadline = session.cluster.now().plus_ms(30_000);
    let moved = |c: &Cluster| {
        typists.iter().all(|d| c.device(*d).and_then(|d| d.group(group)).is_some_and(|g| g.acceptors() == &new_set))
    };
    if !session.cluster.run_until_condition(deadline, moved) {
        session.fail("acceptor-replacement-takes-effect", "the members never moved to the new set".into());
        return session.outcome();
    }
    if session.cluster.profile.crashes {
        // Crashes (and disk losses) hit the handover, the new set copying and the old one
        // deleting, while the members type; then the network heals and every node is back, and
        // only then a device joins (a joiner's key package is in memory: a crash loses it).
        session.cluster.start_faults();
        let end = session.cluster.now().plus_ms(10_000);
        session.safety_end = end;
        typing(&mut session, typists, 60, end, "");
        session.run_safety();
        session.run_liveness();
        if !admit_while_typing(&mut session, (admin, joiner), new_set.clone(), &devices, 40) {
            return session.outcome();
        }
        session.await_convergence();
    } else {
        // The device joins while the new set is still catching up.
        let end = session.cluster.now().plus_ms(5_000);
        typing(&mut session, typists, 40, end, "");
        if !admit_while_typing(&mut session, (admin, joiner), new_set.clone(), &devices, 40) {
            return session.outcome();
        }
        session.run_safety();
        session.run_liveness();
    }
    settle_documents(&mut session);
    // Every safe update reaches the new set (a copy, or a snapshot that covers it), copied from
    // the old one at the pace of idle peer rounds.
    let new_acceptors: Vec<NodeId> = new_set.members().to_vec();
    let deadline = session.cluster.now().plus_ms(60_000);
    let handed_over = |c: &Cluster| new_acceptors.iter().all(|a| !c.checker.documents.lacks_safe(*a, group));
    if session.cluster.checker.violation().is_none() && !session.cluster.run_until_condition(deadline, handed_over) {
        let lacking: Vec<_> = new_acceptors.iter().filter(|a| session.cluster.checker.documents.lacks_safe(**a, group)).collect();
        session.fail(
            "every-safe-update-reaches-the-new-acceptors",
            format!("{lacking:?} lack safe updates a minute after settling"),
        );
    }
    // And the acceptors replaced delete what the new set copied from them: all of it.
    let old_acceptors = &acceptors[..3];
    let holding = |c: &Cluster| -> Vec<usize> {
        let holds = |a: &usize| c.acceptor(*a).and_then(|node| node.group(group)).is_some_and(|g| g.messages().next().is_some());
        old_acceptors.iter().copied().filter(holds).collect()
    };
    let deadline = session.cluster.now().plus_ms(60_000);
    if session.cluster.checker.violation().is_none() && !session.cluster.run_until_condition(deadline, |c| holding(c).is_empty())
    {
        let detail = format!(
            "replaced acceptors {:?} still store messages a minute after the new set copied them",
            holding(&session.cluster)
        );
        session.fail("a-replaced-acceptor-deletes-what-the-new-set-copied", detail);
    }
    session.outcome()
}

/// Proves acceptor storage stays bounded by the snapshot and the tail it does not cover.
fn long_typing_stays_bounded(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, profile, 4) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let end = session.cluster.now().plus_ms(30_000);
    session.safety_end = end;
    let devices = session.cluster.devices();
    typing(&mut session, &devices, 500, end, "");
    session.run_safety();
    session.run_liveness();
    settle_documents(&mut session);
    require_a_compaction(&mut session);
    // Let the last compaction spread: acceptors fetch the snapshot in force from their peers.
    let until = session.cluster.now().plus_ms(5_000);
    session.cluster.run_until(until);
    check_storage_bounded(&mut session, options);
    session.outcome()
}
