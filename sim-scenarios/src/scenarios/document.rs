//! `document/`: members edit one document concurrently under faults. Every run ends with every
//! member holding the same text, every update its sender was told is safe applied everywhere,
//! and no acceptor ever sent a byte of plaintext (inserted text carries the simulator's marker).

use plait_io_sim::{Chance, Cluster, FaultProfile, PLAINTEXT_MARKER, SimRng};
use plait_kernel::mls::Role;
use plait_kernel::{Command, GroupId, Time};

use crate::outline::{LIVENESS_MS_MAX, Session};
use crate::scenarios::mls::{FOUNDERS, crashing_between_effects, invite_code, lossy, rotations, start_configured};
use crate::{Outcome, RunOptions, Scenario};

/// Every `document/` scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "document/four-devices-editing-at-once-converge-under-faults",
            description: "four members type into one document at random places under a seed's swarm of faults (acceptors may lose their disks, one at a time); every member ends with the same text and no safe edit is lost",
            run: concurrent_editing_under_faults,
        },
        Scenario {
            name: "document/edits-made-offline-reach-everyone-after-reconnecting",
            description: "one member is cut off for most of the run and keeps typing while the others type too; after it reconnects every member holds every edit",
            run: offline_editing_then_reconnect,
        },
        Scenario {
            name: "document/a-device-crashing-between-an-edit-and-its-send-loses-nothing",
            description: "devices crash between any two effects while typing; an edit that was durable when it was made reaches every member after the restart",
            run: crash_between_edit_and_send,
        },
        Scenario {
            name: "document/a-device-crashing-at-any-point-restarts-from-its-checkpoint-with-every-edit",
            description: "as above, with checkpoints every few updates: a device restarts from a snapshot of its own document and the updates after it, and still loses nothing",
            run: crash_with_checkpoints,
        },
        Scenario {
            name: "document/losing-a-minority-of-acceptors-loses-no-safe-edit",
            description: "two of five acceptors are lost for good in the middle of typing on a lossy network; the other three still hold every safe edit and everyone converges",
            run: minority_of_acceptors_lost,
        },
        Scenario {
            name: "document/edits-in-flight-survive-epoch-changes",
            description: "members rotate their keys again and again while typing on a lossy, duplicating network; messages sealed in one epoch are stored, re-sealed or read in the next, and nothing is lost",
            run: epoch_changes_in_flight,
        },
        Scenario {
            name: "document/a-removed-member-cannot-change-the-document",
            description: "a member cut off and then removed keeps typing, and reconnects; none of its later edits reaches any member",
            run: removed_member_keeps_editing,
        },
        Scenario {
            name: "document/a-removed-member-invited-again-gets-back-in-and-its-edits-reach-everyone",
            description: "a member cut off and removed keeps typing; an admin invites it again, and it redeems the code as it reconnects (learning of its removal before or after the Welcome); it drops its old copy of the group with the edits the group refused and joins while nodes crash between any two effects, and types with the others once it is back: every member ends with the same text, nothing safe is lost, none of its refused edits reaches anyone, and none of its ballots or update ids is used twice",
            run: removed_member_joins_again,
        },
        Scenario {
            name: "document/a-reader-cannot-change-the-document",
            description: "a member made a reader tries to type; the edits are refused on the device and nothing of them reaches anyone",
            run: reader_tries_to_edit,
        },
    ]
}

/// Text no legitimate edit contains: inserted by members that must not be able to edit.
const FORBIDDEN: &str = "<forbidden edit>";

/// Updates after which devices write a checkpoint in these scenarios: a few, so that crashes,
/// restarts and reconnections meet checkpoints often.
const CHECKPOINT_AFTER_UPDATES: u64 = 6;

/// Starts four members on `acceptors` acceptors (all in the group's set).
fn start(options: &RunOptions, acceptors: usize, profile: FaultProfile) -> Result<Session, Box<Outcome>> {
    start_checkpointing(options, acceptors, profile, CHECKPOINT_AFTER_UPDATES)
}

/// [`start`] with devices that write a checkpoint every `checkpoint_after_updates` updates.
fn start_checkpointing(
    options: &RunOptions,
    acceptors: usize,
    profile: FaultProfile,
    checkpoint_after_updates: u64,
) -> Result<Session, Box<Outcome>> {
    let config = plait_kernel::Config { checkpoint_after_updates, ..options.kernel_config() };
    start_configured(options, (acceptors, 4, acceptors), profile, 0, (config, FOUNDERS))
}

/// Runs `edits` edits by random `typists` at random times until `until`, each at a position valid
/// in the typist's text at that moment (so the clock advances edit by edit). Every fifth edit
/// carries the plaintext marker. Typists that are down or no longer members skip their turn.
pub(crate) fn typing(session: &mut Session, typists: &[usize], edits: u64, until: Time, text: &str) {
    let from = session.cluster.now().0;
    let mut times: Vec<u64> = (0..edits).map(|_| session.rng.between(from, until.0.max(from))).collect();
    times.sort_unstable();
    for (number, at) in times.into_iter().enumerate() {
        session.cluster.run_until(Time(at));
        let device = typists[session.rng.index(typists.len())];
        let Some(len) = text_of(&session.cluster, device, session.group).map(|t| t.chars().count()) else { continue };
        let position = session.rng.between(0, len as u64) as usize;
        let delete = if session.rng.happens(Chance::percent(25)) {
            session.rng.between(0, (len - position).min(4) as u64) as usize
        } else {
            0
        };
        let mut insert = format!("{text}{device}.{number} ");
        if number % 5 == 0 {
            insert.push_str(std::str::from_utf8(PLAINTEXT_MARKER).expect("the marker is text"));
        }
        session.cluster.command(device, Command::Edit { group: session.group, position, delete, insert });
        if number % 10 == 0 {
            session.cluster.check_documents_agree(session.group);
        }
    }
    session.cluster.run_until(until);
}

/// A device's text, if it is up, follows the group and is still a member.
fn text_of(cluster: &Cluster, device: usize, group: GroupId) -> Option<String> {
    cluster.device(device)?.group(group).filter(|g| g.is_member())?.text()
}

/// Runs the safety phase, then the liveness phase for the log and for documents.
pub(crate) fn finish(mut session: Session) -> Outcome {
    session.run_safety();
    session.run_liveness();
    settle_documents(&mut session);
    session.outcome()
}

/// After the log converged: every member's document converges, and every message its sender
/// was told is safe has been applied by every member.
pub(crate) fn settle_documents(session: &mut Session) {
    if session.cluster.checker.violation().is_some() {
        return;
    }
    let (group, deadline) = (session.group, session.cluster.now().plus_ms(LIVENESS_MS_MAX));
    if !session.cluster.run_until_condition(deadline, |c| c.documents_settled(group)) {
        let detail = describe_documents(&session.cluster, group);
        return session.fail("documents-converge-after-heal", detail);
    }
    session.cluster.check_documents_agree(group);
    let safe: Vec<_> = session.cluster.checker.documents.safe(group).collect();
    for device in session.cluster.devices() {
        let Some(view) = session.cluster.device(device).and_then(|d| d.group(group)).filter(|g| g.is_member()) else { continue };
        if let Some(missing) = safe.iter().find(|id| !view.has_applied(id)) {
            let detail = format!("device {device} never applied {missing:?}, which its sender was told is safe");
            return session.fail("no-safe-update-is-lost", detail);
        }
    }
}

/// One line per device: unsafe messages, updates applied, text length and hash.
fn describe_documents(cluster: &Cluster, group: GroupId) -> String {
    let mut lines = vec![format!("documents of {group:?} did not converge within {LIVENESS_MS_MAX}ms of healing")];
    for device in cluster.devices() {
        let line = match cluster.device(device).and_then(|d| d.group(group)) {
            None => "down or not following".to_string(),
            Some(view) => {
                let text = view.text().unwrap_or_default();
                format!(
                    "member={} unsafe={} applied={} chars={} text-hash={} rejected={:?}",
                    view.is_member(),
                    view.unsafe_messages(),
                    view.updates_applied(),
                    text.chars().count(),
                    &blake3::hash(text.as_bytes()).to_hex()[..16],
                    cluster.device(device).map(|d| d.counters().nonzero()).unwrap_or_default(),
                )
            }
        };
        lines.push(format!("  device {device}: {line}"));
    }
    lines.join("\n")
}

/// Fails the run if any member's text holds [`FORBIDDEN`].
fn refuse_forbidden_text(session: &mut Session, who: usize) {
    for device in session.cluster.devices().into_iter().filter(|d| *d != who) {
        if text_of(&session.cluster, device, session.group).is_some_and(|text| text.contains(FORBIDDEN)) {
            let detail = format!("device {device}'s document holds an edit device {who} made without the right to");
            return session.fail("only-writers-change-the-document", detail);
        }
    }
}

/// Proves convergence and no loss under every fault class at once.
fn concurrent_editing_under_faults(options: &RunOptions) -> Outcome {
    let profile = FaultProfile::swarm(&mut SimRng::new(options.seed));
    let mut session = match start(options, 3, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 2);
    session.cluster.start_faults();
    let (devices, end) = (session.cluster.devices(), session.safety_end);
    typing(&mut session, &devices, 150, end, "");
    finish(session)
}

/// Proves offline edits are kept and delivered after reconnecting.
fn offline_editing_then_reconnect(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, 3, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let devices = session.cluster.devices();
    let away = devices[1 + session.rng.index(devices.len() - 1)];
    session.cluster.isolate(away);
    let end = session.safety_end;
    typing(&mut session, &devices, 120, end, "");
    session.cluster.heal();
    finish(session)
}

/// Proves a crash between an edit's persist and its send loses nothing, with the default
/// checkpoints (none in a run this short: its seeds keep the paths they had before checkpoints).
fn crash_between_edit_and_send(options: &RunOptions) -> Outcome {
    crashing_while_typing(options, plait_kernel::Config::default().checkpoint_after_updates)
}

/// Proves a device that crashes at any point restarts from its checkpoint with every edit.
fn crash_with_checkpoints(options: &RunOptions) -> Outcome {
    crashing_while_typing(options, CHECKPOINT_AFTER_UPDATES)
}

/// Devices crash between any two effects while typing.
fn crashing_while_typing(options: &RunOptions, checkpoint_after_updates: u64) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = lossy(&mut rng);
    crashing_between_effects(&mut profile, &mut rng);
    let mut session = match start_checkpointing(options, 3, profile, checkpoint_after_updates) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    session.cluster.start_faults();
    let (devices, end) = (session.cluster.devices(), session.safety_end);
    typing(&mut session, &devices, 150, end, "");
    finish(session)
}

/// Proves a write quorum survives the loss of any minority of acceptors.
fn minority_of_acceptors_lost(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, 5, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (devices, acceptors) = (session.cluster.devices(), session.cluster.acceptors());
    let middle = Time(session.rng.between(session.cluster.now().0, session.safety_end.0));
    typing(&mut session, &devices, 60, middle, "");
    let first = session.rng.index(acceptors.len());
    let second = (first + 1 + session.rng.index(acceptors.len() - 1)) % acceptors.len();
    session.cluster.lose(acceptors[first]);
    session.cluster.lose(acceptors[second]);
    let end = session.safety_end;
    typing(&mut session, &devices, 60, end, "");
    finish(session)
}

/// Proves messages survive epoch changes while they are in flight.
fn epoch_changes_in_flight(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, 3, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    rotations(&mut session, 8);
    let (devices, end) = (session.cluster.devices(), session.safety_end);
    typing(&mut session, &devices, 150, end, "");
    finish(session)
}

/// Proves a removed member's edits never reach the others.
fn removed_member_keeps_editing(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, 3, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices) = (session.group, session.cluster.devices());
    let (admin, target) = (devices[0], devices[3]);
    let quarter = Time(session.cluster.now().0 + (session.safety_end.0 - session.cluster.now().0) / 4);
    typing(&mut session, &devices, 30, quarter, "");
    session.cluster.isolate(target);
    session.cluster.command(admin, Command::RemoveMember { group, member: session.cluster.id(target) });
    let half = Time(quarter.0 + (session.safety_end.0 - quarter.0) / 2);
    typing(&mut session, &[target], 30, half, FORBIDDEN);
    session.cluster.heal();
    let end = session.safety_end;
    typing(&mut session, &devices, 60, end, "");
    typing(&mut session, &[target], 10, end.plus_ms(1_000), FORBIDDEN);
    session.safety_end = end.plus_ms(1_000);
    session.run_liveness();
    settle_documents(&mut session);
    refuse_forbidden_text(&mut session, target);
    session.outcome()
}

/// Proves a removed device can be invited back: it forgets the group (`Record::GroupForgotten`)
/// but not the rounds and sequence numbers it gave out.
fn removed_member_joins_again(options: &RunOptions) -> Outcome {
    let mut rng = SimRng::new(options.seed);
    let mut profile = lossy(&mut rng);
    // From the redemption on, nodes also crash between any two effects (and now and then
    // outright): forgetting the group and keeping what it must is one write or none.
    crashing_between_effects(&mut profile, &mut rng);
    // No compaction comes from the count here (the run types too little): what the target
    // cannot decrypt, sealed before it joined again, reaches it only through the compaction it
    // asks for, and it goes on asking across its restarts (`Record::Undecryptable`; without it
    // 120 of 400 seeds never converged).
    let config = plait_kernel::Config { checkpoint_after_updates: CHECKPOINT_AFTER_UPDATES, ..options.kernel_config() };
    let mut session = match start_configured(options, (3, 4, 3), profile, 0, (config, FOUNDERS)) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices) = (session.group, session.cluster.devices());
    let (admin, target) = (devices[0], devices[3]);
    let acceptors = session.cluster.checker.acceptors(group).cloned().expect("the group is known");
    let fifth = Time(session.cluster.now().0 + (session.safety_end.0 - session.cluster.now().0) / 5);
    // It proposes before it is removed and after it is back, so that a ballot used twice would
    // show (`ballots-unique`).
    session.cluster.command(target, Command::RotateKeys { group });
    typing(&mut session, &devices, 20, fifth, "");
    session.cluster.isolate(target);
    let member = session.cluster.id(target);
    session.cluster.command(admin, Command::RemoveMember { group, member });
    typing(&mut session, &[target], 10, fifth.plus_ms(2_000), FORBIDDEN);
    let deadline = session.cluster.now().plus_ms(30_000);
    let removed = |c: &Cluster| {
        c.device(admin).and_then(|d| d.group(group)).is_some_and(|g| !g.members().iter().any(|(id, _)| *id == member))
    };
    if !session.cluster.run_until_condition(deadline, removed) {
        session.fail("a-removed-member-gets-back-in-through-an-invite", "the admin's removal was not chosen".into());
        return session.outcome();
    }
    let removal_epoch = session.cluster.device(admin).and_then(|d| d.group(group)?.epoch()).expect("checked above");
    session.cluster.notices.clear();
    session.cluster.command(admin, Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Writer });
    let until = session.cluster.now().plus_ms(2_000);
    session.cluster.run_until(until);
    let Some(code) = invite_code(&mut session) else { return session.outcome() };
    session.cluster.heal();
    session.cluster.command(target, Command::AcceptInvite { code, acceptors });
    // Faults from the moment the redemption is on disk (a command lost to a crash is the app's
    // to repeat).
    let redeeming = session.cluster.now().plus_ms(1);
    session.cluster.run_until(redeeming);
    session.cluster.start_faults();
    let end = session.safety_end.max(session.cluster.now().plus_ms(10_000));
    session.safety_end = end;
    typing(&mut session, &devices, 40, end, "");
    session.run_liveness();
    // Until it opens the Welcome, a device that has not heard of its removal still counts itself
    // a member, of an epoch before the removal: it is back once it is a member after it.
    let back = |c: &Cluster| {
        c.device(target).and_then(|d| d.group(group)).is_some_and(|g| g.is_member() && g.epoch() > Some(removal_epoch))
    };
    let deadline = session.cluster.now().plus_ms(LIVENESS_MS_MAX);
    if session.cluster.checker.violation().is_none() && !session.cluster.run_until_condition(deadline, back) {
        session.fail("a-removed-member-gets-back-in-through-an-invite", "the removed device never got back in".into());
        return session.outcome();
    }
    session.cluster.command(target, Command::RotateKeys { group });
    let until = session.cluster.now().plus_ms(5_000);
    typing(&mut session, &devices, 20, until, "");
    settle_documents(&mut session);
    refuse_forbidden_text(&mut session, target);
    session.outcome()
}

/// Proves a reader's edits are refused where they are made.
fn reader_tries_to_edit(options: &RunOptions) -> Outcome {
    let profile = lossy(&mut SimRng::new(options.seed));
    let mut session = match start(options, 3, profile) {
        Ok(session) => session,
        Err(outcome) => return *outcome,
    };
    let (group, devices) = (session.group, session.cluster.devices());
    let reader = devices[3];
    let member = session.cluster.id(reader);
    session.cluster.command(devices[0], Command::SetRole { group, member, role: plait_kernel::mls::Role::Reader });
    let deadline = session.cluster.now().plus_ms(30_000);
    let demoted = |c: &Cluster| c.device(reader).and_then(|d| d.group(group)?.epoch()).is_some_and(|e| e >= 4);
    session.cluster.run_until_condition(deadline, demoted);
    let end = session.safety_end.max(session.cluster.now().plus_ms(10_000));
    session.safety_end = end;
    typing(&mut session, &devices[..3], 80, end, "");
    let attempts = session.cluster.stats.command_errors;
    let until = end.plus_ms(2_000);
    typing(&mut session, &[reader], 20, until, FORBIDDEN);
    if session.cluster.stats.command_errors < attempts + 20 {
        let detail = format!("{} of 20 edits by a reader were refused", session.cluster.stats.command_errors - attempts);
        session.fail("readers-cannot-edit", detail);
    }
    if text_of(&session.cluster, reader, group).is_some_and(|text| text.contains(FORBIDDEN)) {
        session.fail("readers-cannot-edit", "the reader's own document took its edit".into());
    }
    session.safety_end = until;
    session.run_liveness();
    settle_documents(&mut session);
    refuse_forbidden_text(&mut session, reader);
    session.outcome()
}
