//! `mls/`: MLS groups whose commits the Paxos log orders, under faults. Founding members are
//! admitted with key packages and Welcomes handed over by the scenario (quick to set up); the
//! invite scenario admits its joiner through the acceptors' mailboxes. Members also write application messages, each carrying
//! the simulator's plaintext marker, which no acceptor may ever be sent.

use plait_io_sim::{Chance, Cluster, FaultProfile, PLAINTEXT_MARKER, SimRng};
use plait_kernel::mls::Role;
use plait_kernel::{AcceptorSet, Command, Event, GroupGenesis, Time};

use crate::outline::Session;
use crate::{Outcome, RunOptions, Scenario};

/// Every `mls/` scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "mls/members-join-rotate-and-leave-through-the-log-under-faults",
            description: "an admin admits three members, members rotate keys and the admin removes one under a seed's faults; every member agrees on every epoch",
            run: members_join_rotate_and_leave,
        },
        Scenario {
            name: "mls/a-device-crashing-between-the-effects-of-a-commit-still-follows-the-group",
            description: "devices crash between any two effects while their commits are in flight; a restarted device recognises its own chosen commit and no member forks",
            run: device_crashes_mid_commit,
        },
        Scenario {
            name: "mls/members-rotate-their-keys-on-schedule-under-loss-and-duplication",
            description: "with a rotation interval in the group's settings, every member commits fresh keys on its own timer through a lossy network; all agree on every epoch",
            run: members_rotate_on_schedule,
        },
        Scenario {
            name: "mls/two-admins-change-membership-concurrently-under-faults",
            description: "the founder promotes a second admin; both then remove and rotate at once under a seed's faults; one order is chosen and every member agrees on every epoch",
            run: two_admins_concurrently,
        },
        Scenario {
            name: "mls/a-member-removed-during-a-partition-learns-of-it-after-healing",
            description: "a member cut off from everyone is removed; after healing it reads the log, learns of its removal and stops following the group",
            run: removed_during_partition,
        },
        Scenario {
            name: "mls/every-member-reads-every-message-across-epoch-changes",
            description: "members write while keys rotate on a calm network; each message is read exactly once by every other member, including messages from epochs a reader has not reached yet",
            run: every_member_reads_every_message,
        },
        Scenario {
            name: "mls/an-admin-replaces-an-acceptor-under-faults",
            description: "an admin commits a settings change that hands the log from acceptors 1-3 to 2-4 while members rotate and write under a seed's faults; the new set orders every later slot and the group converges on it",
            run: acceptor_replaced_under_faults,
        },
        Scenario {
            name: "mls/an-offline-joiner-gets-in-through-an-invite",
            description: "a joiner redeems an invite code while the admin is away; the admin, restarted, adds it while the joiner is away; the joiner then finds its Welcome at the acceptors — on a lossy, duplicating network",
            run: offline_joiner_through_an_invite,
        },
        Scenario {
            name: "mls/a-joiner-that-restarts-before-its-welcome-still-gets-in",
            description: "as an offline joiner's invite, but the joiner crashes after posting its key package and restarts from its disk only after the admin added it; it makes the same key package again and opens its Welcome",
            run: joiner_restarts_before_its_welcome,
        },
        Scenario {
            name: "mls/a-byzantine-acceptor-cannot-fork-the-group",
            description: "one of four acceptors lies (hides and invents accepted values, acknowledges accepts it never made durable, reports false chosen values), withholds, replays and sends garbage, while two admins change membership and members rotate and write under a seed's faults; no member forks and the group converges",
            run: byzantine_acceptor,
        },
        Scenario {
            name: "mls/only-admins-change-membership",
            description: "a writer's removal of another member is refused by the acceptors and reported as an error; the group is unchanged",
            run: only_admins_change_membership,
        },
    ]
}

/// Devices [`start_with`] admits to the group at its start (any others stand by).
pub(crate) const FOUNDERS: usize = 4;

/// How long founding and admitting members may take (simulated).
const SETUP_MS_MAX: u64 = 120_000;

/// Founds a group on the first `set_size` acceptors (any others stand by for the group to move
/// to) at device 0, and admits the next devices (`founders` in all), one at a time.
pub(crate) fn found(
    cluster: &mut Cluster,
    seed: u64,
    rotation_interval_ms: u64,
    set_size: usize,
    founders: usize,
) -> Result<GroupGenesis, String> {
    let devices: Vec<usize> = cluster.devices().into_iter().take(founders).collect();
    let acceptors =
        AcceptorSet::new(cluster.acceptors().iter().take(set_size).map(|a| cluster.id(*a)).collect(), 16).expect("acceptors");
    let deadline = Time(SETUP_MS_MAX);
    cluster.command(devices[0], Command::CreateGroup { acceptors, nonce: seed, rotation_interval_ms });
    if !cluster.run_until_condition(deadline, |c| c.notices.iter().any(|(_, e)| matches!(e, Event::GroupCreated { .. }))) {
        return Err("the group was never created".into());
    }
    let genesis = cluster.notices.iter().find_map(|(_, e)| match e {
        Event::GroupCreated { genesis, .. } => Some(genesis.clone()),
        _ => None,
    });
    let genesis = genesis.expect("checked above");
    cluster.know_group(&genesis);
    let group = genesis.group_id();
    for joiner in devices.iter().skip(1).copied() {
        cluster.notices.clear();
        cluster.command(joiner, Command::MakeKeyPackage);
        cluster.run_until_condition(deadline, |c| {
            c.notices.iter().any(|(n, e)| *n == joiner && matches!(e, Event::KeyPackage { .. }))
        });
        let Some(key_package) = cluster.notices.iter().find_map(|(_, e)| match e {
            Event::KeyPackage { key_package } => Some(key_package.clone()),
            _ => None,
        }) else {
            return Err("no key package".into());
        };
        cluster.command(devices[0], Command::AddMember { group, key_package });
        if !cluster.run_until_condition(deadline, |c| c.notices.iter().any(|(_, e)| matches!(e, Event::Welcome { .. }))) {
            return Err(format!("device {joiner} was never added"));
        }
        let welcome = cluster.notices.iter().find_map(|(_, e)| match e {
            Event::Welcome { welcome, .. } => Some(welcome.clone()),
            _ => None,
        });
        cluster.command(joiner, Command::JoinGroup { genesis: genesis.clone(), welcome: welcome.expect("checked above") });
        if !cluster.run_until_condition(deadline, |c| c.device(joiner).is_some_and(|d| d.group(group).is_some())) {
            return Err(format!("device {joiner} never joined"));
        }
    }
    Ok(genesis)
}

/// A cluster of three acceptors and four devices with a founded group; faults not started.
pub(crate) fn start(options: &RunOptions, profile: FaultProfile, rotation_interval_ms: u64) -> Result<Session, Box<Outcome>> {
    start_with(options, (3, 4, 3), profile, rotation_interval_ms)
}

/// [`start`] with `acceptors` acceptors and `devices` devices in the cluster; the group uses the
/// first `set_size` acceptors.
pub(crate) fn start_with(
    options: &RunOptions,
    shape: (usize, usize, usize),
    profile: FaultProfile,
    rotation_interval_ms: u64,
) -> Result<Session, Box<Outcome>> {
    start_configured(options, shape, profile, rotation_interval_ms, (options.kernel_config(), FOUNDERS))
}

/// [`start_with`] with its own kernel configuration and number of founding members (the other
/// devices join later, or never).
pub(crate) fn start_configured(
    options: &RunOptions,
    (acceptors, devices, set_size): (usize, usize, usize),
    profile: FaultProfile,
    rotation_interval_ms: u64,
    (config, founders): (plait_kernel::Config, usize),
) -> Result<Session, Box<Outcome>> {
    let mut cluster = Cluster::new(options.seed, acceptors, devices, config, profile, options.keep_trace_text);
    match found(&mut cluster, options.seed, rotation_interval_ms, set_size, founders) {
        Ok(genesis) => {
            let rng = SimRng::new(options.seed ^ 0x006d_6c73);
            let safety_end = cluster.now().plus_ms(10_000);
            Ok(Session { cluster, group: genesis.group_id(), rng, safety_end })
        }
        Err(detail) => {
            let now = cluster.now();
            cluster.checker.fail(now, "mls-setup", detail);
            Err(Box::new(
                Session { group: plait_kernel::GroupId([0; 16]), rng: SimRng::new(0), safety_end: now, cluster }.outcome(),
            ))
        }
    }
}

/// [`start_with`] under the seed's swarm of faults, less disk wipes (these scenarios test groups
/// and keys; acceptor recovery has its own).
pub(crate) fn swarm_start(options: &RunOptions, shape: (usize, usize, usize)) -> Result<Session, Box<Outcome>> {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile::swarm(&mut rng);
    profile.wipes = false;
    start_with(options, shape, profile, 0)
}

/// The founder makes device 1 an admin too; waits until device 1 has applied it.
pub(crate) fn promote_second_admin(session: &mut Session) {
    let (group, devices) = (session.group, session.cluster.devices());
    let second = session.cluster.id(devices[1]);
    session.cluster.command(devices[0], Command::SetRole { group, member: second, role: plait_kernel::mls::Role::Admin });
    let deadline = session.cluster.now().plus_ms(30_000);
    let promoted = |c: &Cluster| c.device(devices[1]).and_then(|d| d.group(group)?.epoch()).is_some_and(|e| e >= 4);
    session.cluster.run_until_condition(deadline, promoted);
}

/// A network that loses, duplicates and delays (with jitter) by seed-chosen amounts, and
/// nothing else.
pub(crate) fn lossy(rng: &mut SimRng) -> FaultProfile {
    let mut profile = FaultProfile::calm();
    profile.latency.min_ms = rng.between(2, 15);
    profile.latency.spread_ms = rng.between(0, 20);
    profile.loss = Chance(rng.between(0, 100_000) as u32);
    profile.duplicate = Chance(rng.between(0, 100_000) as u32);
    profile
}

/// Adds crashes to `profile`: whole nodes now and then, and between any two effects of an
/// input (a write and the sends after it, or two writes, cut apart), at seed-chosen rates.
pub(crate) fn crashing_between_effects(profile: &mut FaultProfile, rng: &mut SimRng) {
    profile.crashes = true;
    profile.crash_mid_effects = Chance(rng.between(20_000, 80_000) as u32);
    profile.fault_interval_ms = rng.between(300, 1_500);
}

/// [`start`] on a calm network with a fixed, seed-chosen latency and no rotation timer.
fn calm_start(options: &RunOptions) -> Result<Session, Box<Outcome>> {
    let mut rng = SimRng::new(options.seed);
    let latency = plait_io_sim::Latency { min_ms: rng.between(2, 15), ..FaultProfile::calm().latency };
    start(options, FaultProfile { latency, ..FaultProfile::calm() }, 0)
}

/// Schedules key rotations by random members during the safety phase.
pub(crate) fn rotations(session: &mut Session, count: u64) {
    let devices = session.cluster.devices();
    let (from, until) = (session.cluster.now().0, session.safety_end.0);
    for _ in 0..count {
        let at = Time(session.rng.between(from, until));
        let device = devices[session.rng.index(devices.len())];
        session.cluster.command_at(at, device, Command::RotateKeys { group: session.group });
    }
}

/// A message body the checker can recognise: the plaintext marker, then who wrote it and when.
fn message_body(device: usize, at: Time, number: u64) -> Vec<u8> {
    let mut data = PLAINTEXT_MARKER.to_vec();
    data.extend_from_slice(format!(" {number} from device {device} at {}", at.0).as_bytes());
    data
}

/// Schedules `count` application messages by random members during the safety phase; returns
/// (device, body) of each.
fn chatter(session: &mut Session, count: u64) -> Vec<(usize, Vec<u8>)> {
    let devices = session.cluster.devices();
    let (from, until) = (session.cluster.now().0, session.safety_end.0);
    let mut sent = Vec::new();
    for number in 0..count {
        let at = Time(session.rng.between(from, until));
        let device = devices[session.rng.index(devices.len())];
        let data = message_body(device, at, number);
        session.cluster.command_at(at, device, Command::SendMessage { group: session.group, data: data.clone() });
        sent.push((device, data));
    }
    sent
}

/// Proves membership changes and rotations stay fork-free and converge under any fault mix.
fn members_join_rotate_and_leave(options: &RunOptions) -> Outcome {
    let mut session = match swarm_start(options, (3, 4, 3)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 6);
    chatter(&mut session, 40);
    let devices = session.cluster.devices();
    let at = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    let member = session.cluster.id(devices[3]);
    session.cluster.command_at(at, devices[0], Command::RemoveMember { group: session.group, member });
    session.cluster.start_faults();
    session.finish()
}

/// Proves a commit's pending state survives crashes between effects.
fn device_crashes_mid_commit(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = FaultProfile::calm();
    profile.latency.min_ms = rng.between(2, 15);
    crashing_between_effects(&mut profile, &mut rng);
    let mut session = match start(options, profile, 0) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 10);
    chatter(&mut session, 40);
    session.cluster.start_faults();
    session.finish()
}

/// Proves the rotation timer: every member rotates on its own within a few intervals.
fn members_rotate_on_schedule(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = lossy(&mut rng);
    let interval_ms = rng.between(1_000, 3_000);
    let mut session = match start(options, profile, interval_ms) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let epoch_at_start = session.cluster.device(session.cluster.devices()[0]).and_then(|d| d.group(session.group)?.epoch());
    session.safety_end = session.cluster.now().plus_ms(6 * interval_ms);
    chatter(&mut session, 40);
    session.run_safety();
    let group = session.group;
    let devices = session.cluster.devices();
    let epoch_now = session.cluster.device(devices[0]).and_then(|d| d.group(group)?.epoch());
    // Four members, each rotating at least once in six intervals (allowing for lost rounds).
    if epoch_now.unwrap_or(0) < epoch_at_start.unwrap_or(0) + 4 {
        let detail = format!("epoch went from {epoch_at_start:?} to {epoch_now:?} in six rotation intervals");
        session.fail("members-rotate-on-schedule", detail);
    }
    session.run_liveness();
    session.outcome()
}

/// Proves concurrent membership changes by two admins serialise through the log.
fn two_admins_concurrently(options: &RunOptions) -> Outcome {
    let mut session = match swarm_start(options, (3, 4, 3)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    promote_second_admin(&mut session);
    let (group, devices) = (session.group, session.cluster.devices());
    // Both admins act at the same moment: one removes device 3, the other device 2; both rotate.
    let (third, fourth) = (session.cluster.id(devices[2]), session.cluster.id(devices[3]));
    session.cluster.command(devices[0], Command::RemoveMember { group, member: fourth });
    session.cluster.command(devices[1], Command::RemoveMember { group, member: third });
    session.cluster.command(devices[0], Command::RotateKeys { group });
    session.cluster.command(devices[1], Command::RotateKeys { group });
    session.safety_end = session.cluster.now().plus_ms(8_000);
    chatter(&mut session, 40);
    session.cluster.start_faults();
    session.finish()
}

/// Proves a removed member learns of its removal even if it was away when it happened.
fn removed_during_partition(options: &RunOptions) -> Outcome {
    let mut session = match calm_start(options) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let group = session.group;
    let devices = session.cluster.devices();
    let target = devices[3];
    session.cluster.isolate(target);
    let member = session.cluster.id(target);
    session.cluster.command(devices[0], Command::RemoveMember { group, member });
    let deadline = session.cluster.now().plus_ms(20_000);
    let removed = |c: &Cluster| c.device(devices[0]).and_then(|d| d.group(group)?.epoch()).is_some_and(|e| e >= 4);
    if !session.cluster.run_until_condition(deadline, removed) {
        session.fail("removal-commits-without-the-removed-member", "the admin's removal was not chosen".into());
    }
    // The removed member keeps writing (it does not know yet) through the heal and after: its
    // messages reach acceptors that already know of the removal, which must refuse them.
    let now = session.cluster.now();
    for k in 0..60 {
        let at = now.plus_ms(50 * k);
        session.cluster.command_at(at, target, Command::SendMessage { group, data: message_body(target, at, k) });
    }
    session.safety_end = session.cluster.now();
    session.run_liveness();
    let still_member = session.cluster.device(target).and_then(|d| d.group(group)).is_some_and(|g| g.is_member());
    if session.cluster.checker.violation().is_none() && still_member {
        session.fail("a-removed-member-learns-of-its-removal", "the removed device still believes it is a member".into());
    }
    session.outcome()
}

/// Proves roles are enforced by acceptors: a writer cannot remove a member.
fn only_admins_change_membership(options: &RunOptions) -> Outcome {
    let mut session = match calm_start(options) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let devices = session.cluster.devices();
    let (writer, target) = (devices[1], devices[2]);
    let member = session.cluster.id(target);
    let errors_before = session.cluster.stats.command_errors;
    session.cluster.command(writer, Command::RemoveMember { group: session.group, member });
    let deadline = session.cluster.now().plus_ms(30_000);
    if !session.cluster.run_until_condition(deadline, |c| c.stats.command_errors > errors_before) {
        session.fail("a-refused-commit-is-reported", "the writer's removal was neither refused nor reported".into());
    }
    let group = session.group;
    if session.cluster.device(target).and_then(|d| d.group(group)).is_none_or(|g| !g.is_member()) {
        session.fail("only-admins-change-membership", "a writer removed a member".into());
    }
    session.safety_end = session.cluster.now();
    session.finish()
}

/// Proves application messages survive epoch changes: held while the sender's commit is
/// undecided, held at readers that have not reached their epoch, read once despite every
/// acceptor relaying them. (A calm network with one fixed latency: no loss, no reordering.)
fn every_member_reads_every_message(options: &RunOptions) -> Outcome {
    let mut session = match calm_start(options) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    // Messages from before a member joined are not for it: start once every member is in.
    let (group, devices) = (session.group, session.cluster.devices());
    let deadline = session.cluster.now().plus_ms(10_000);
    let epoch_of = |c: &Cluster, d: usize| c.device(d).and_then(|device| device.group(group)?.epoch());
    session.cluster.run_until_condition(deadline, |c| devices.iter().all(|d| epoch_of(c, *d) == epoch_of(c, devices[0])));
    session.safety_end = session.cluster.now().plus_ms(10_000);
    rotations(&mut session, 6);
    let sent = chatter(&mut session, 30);
    session.run_safety();
    session.run_liveness();
    // Let the last relays land.
    let until = session.cluster.now().plus_ms(5_000);
    session.cluster.run_until(until);
    for (sender, data) in &sent {
        let readers: Vec<usize> = session.cluster.messages.iter().filter(|(_, _, d)| d == data).map(|(r, _, _)| *r).collect();
        let mut expected: Vec<usize> = devices.iter().copied().filter(|d| d != sender).collect();
        let mut actual = readers.clone();
        expected.sort_unstable();
        actual.sort_unstable();
        if actual != expected {
            let text = String::from_utf8_lossy(&data[PLAINTEXT_MARKER.len()..]).into_owned();
            session.fail("every-member-reads-every-message-once", format!("message{text} was read by devices {readers:?}"));
            break;
        }
    }
    session.outcome()
}

/// Proves acceptor replacement is an ordinary commit: chosen by the old set, in force for every
/// later slot, and survivable under any fault mix.
fn acceptor_replaced_under_faults(options: &RunOptions) -> Outcome {
    let mut session = match swarm_start(options, (4, 4, 3)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 4);
    chatter(&mut session, 20);
    let (group, devices, acceptors) = (session.group, session.cluster.devices(), session.cluster.acceptors());
    let replaced = AcceptorSet::new(acceptors[1..].iter().map(|a| session.cluster.id(*a)).collect(), 16).expect("three");
    let at = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    let change = Command::ChangeAcceptors { group, acceptors: replaced.clone() };
    session.cluster.command_at(at, devices[0], change.clone());
    session.cluster.start_faults();
    session.run_safety();
    session.begin_liveness();
    if session.cluster.checker.acceptors(group) != Some(&replaced) {
        // The admin crashed before its commit was chosen (its intent was in memory): ask again,
        // and let the command land before convergence is judged.
        session.cluster.command(devices[0], change);
        let next = session.cluster.now().plus_ms(1);
        session.cluster.run_until(next);
    }
    session.await_convergence();
    if session.cluster.checker.violation().is_none() {
        let behind: Vec<usize> = devices
            .iter()
            .copied()
            .filter(|d| {
                session.cluster.device(*d).and_then(|device| device.group(group)).is_some_and(|g| g.acceptors() != &replaced)
            })
            .collect();
        if session.cluster.checker.acceptors(group) != Some(&replaced) || !behind.is_empty() {
            let detail = format!("the log never moved to {replaced:?} (devices still on the old set: {behind:?})");
            session.fail("acceptor-replacement-takes-effect", detail);
        }
    }
    session.outcome()
}

/// Proves invites work when inviter and joiner are never online together: everything passes
/// through the acceptors' mailbox, and the admin's invite survives its restart.
fn offline_joiner_through_an_invite(options: &RunOptions) -> Outcome {
    joiner_through_an_invite(options, false)
}

/// Proves a joiner's invitation survives its restart: the admin adds the key package the joiner
/// posted before it crashed, so only that key package opens the Welcome.
fn joiner_restarts_before_its_welcome(options: &RunOptions) -> Outcome {
    joiner_through_an_invite(options, true)
}

fn joiner_through_an_invite(options: &RunOptions, joiner_restarts: bool) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let profile = lossy(&mut rng);
    let mut session = match start_with(options, (3, 5, 3), profile, 0) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices) = (session.group, session.cluster.devices());
    let (admin, joiner) = (devices[0], devices[4]);
    let acceptors = session.cluster.checker.acceptors(group).cloned().expect("the group is known");
    session.cluster.start_faults();
    session.cluster.notices.clear();
    session.cluster.command(admin, Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Writer });
    let step = |session: &mut Session, ms: u64| {
        let until = session.cluster.now().plus_ms(ms);
        session.cluster.run_until(until);
    };
    step(&mut session, 2_000);
    let Some(code) = invite_code(&mut session) else { return session.outcome() };
    // The admin is away while the joiner redeems the code; it restarts from its disk.
    session.cluster.isolate(admin);
    session.cluster.crash(admin);
    session.cluster.command(joiner, Command::AcceptInvite { code, acceptors });
    step(&mut session, 3_000);
    session.cluster.restart(admin, false);
    // The joiner is away while the admin adds it (down, if it restarts).
    session.cluster.heal();
    session.cluster.isolate(joiner);
    if joiner_restarts {
        session.cluster.crash(joiner);
    }
    let epoch_of = |c: &Cluster, d: usize| c.device(d).and_then(|device| device.group(group)?.epoch());
    let before = epoch_of(&session.cluster, devices[1]);
    let deadline = session.cluster.now().plus_ms(30_000);
    if !session.cluster.run_until_condition(deadline, |c| epoch_of(c, admin) > before) {
        session.fail("the-admin-adds-the-joiner-of-an-invite", "the admin never added the joiner".into());
        return session.outcome();
    }
    step(&mut session, 2_000);
    // The admin is away when the joiner comes back for its Welcome.
    session.cluster.heal();
    if joiner_restarts {
        session.cluster.restart(joiner, false);
    }
    session.cluster.isolate(admin);
    let deadline = session.cluster.now().plus_ms(30_000);
    let in_group = |c: &Cluster| c.device(joiner).and_then(|d| d.group(group)).is_some_and(|g| g.is_member());
    if !session.cluster.run_until_condition(deadline, in_group) {
        session.fail("an-offline-joiner-finds-its-welcome", "the joiner never joined".into());
        return session.outcome();
    }
    session.safety_end = session.cluster.now();
    session.run_liveness();
    session.outcome()
}

/// Proves a Byzantine minority cannot fork a group: with four acceptors (one may lie), promises
/// must show signed accepts, quorums overlap in an honest acceptor, and learners believe a
/// chosen value only when two acceptors report it.
fn byzantine_acceptor(options: &RunOptions) -> Outcome {
    let mut session = match swarm_start(options, (4, 4, 4)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices, acceptors) = (session.group, session.cluster.devices(), session.cluster.acceptors());
    let liar = acceptors[session.rng.index(acceptors.len())];
    session.cluster.make_byzantine(liar);
    promote_second_admin(&mut session);
    session.safety_end = session.cluster.now().plus_ms(10_000);
    rotations(&mut session, 8);
    chatter(&mut session, 20);
    // Both admins act at once now and then, so the liar has competing commits to lie with.
    let (third, fourth) = (session.cluster.id(devices[2]), session.cluster.id(devices[3]));
    let at = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    session.cluster.command_at(at, devices[0], Command::RemoveMember { group, member: fourth });
    session.cluster.command_at(at, devices[1], Command::RemoveMember { group, member: third });
    session.cluster.start_faults();
    session.finish()
}

/// The code of the invite an admin just created (its notice), or a failed run without one.
pub(crate) fn invite_code(session: &mut Session) -> Option<String> {
    let code = session.cluster.notices.iter().find_map(|(_, event)| match event {
        Event::InviteCreated { code, .. } => Some(code.clone()),
        _ => None,
    });
    if code.is_none() {
        session.fail("an-admin-opens-an-invite", "no invite code was created".into());
    }
    code
}
