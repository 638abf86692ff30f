//! MLS commits ordered by the Paxos log: acceptors validate them with their public view, every
//! member walks through the same epochs, and refused commits come back as typed errors.

use crate::support;

use plait_kernel::mls::Role;
use plait_kernel::{Command, CommandError, Event, GroupId, NodeId};

use support::Net;
use support::groups::*;

#[test]
fn members_join_rotate_and_leave_through_the_log_and_agree_on_every_epoch() {
    let (mut net, _) = support::net(3);
    let (admin, second, third) = (NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103));
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    let group = genesis.group_id();

    add(&mut net, admin, second, &genesis);
    add(&mut net, admin, third, &genesis);
    net.command(third, Command::RotateKeys { group });
    settle(&mut net);

    let reported = epochs(&net, group);
    let at_three: Vec<_> = reported.iter().filter(|(_, epoch, _)| *epoch == 3).collect();
    assert_eq!(at_three.len(), 3, "all three members reached epoch 3: {reported:?}");
    assert!(at_three.windows(2).all(|w| w[0].2 == w[1].2), "and agree on its authenticator");

    // A writer may not remove anyone: the acceptors refuse, and the device says so.
    cov_mark::check!(acceptor_refuses_an_invalid_commit);
    net.command(second, Command::RemoveMember { group, member: third });
    settle(&mut net);
    let refused = net.events.iter().any(|(id, event)| {
        *id == second && matches!(event, Event::CommandFailed { error: CommandError::Refused(g) } if *g == group)
    });
    assert!(refused, "the writer's removal was refused with a typed error");

    // The admin may.
    net.command(admin, Command::RemoveMember { group, member: third });
    settle(&mut net);
    let reported = epochs(&net, group);
    let at_four: Vec<_> = reported.iter().filter(|(_, epoch, _)| *epoch == 4).collect();
    assert_eq!(at_four.len(), 2, "the two remaining members reached epoch 4: {reported:?}");
    assert_eq!(at_four[0].2, at_four[1].2);
    assert!(reported.iter().all(|(id, epoch, _)| *id != third || *epoch == 3), "the removed member stays behind");
}

/// The application messages `device` read, as (epoch, sender, data).
fn read_by(net: &Net, device: NodeId) -> Vec<(u64, NodeId, Vec<u8>)> {
    net.events
        .iter()
        .filter_map(|(id, event)| match event {
            Event::Message { epoch, sender, data, .. } if *id == device => Some((*epoch, *sender, data.clone())),
            _ => None,
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn members_read_each_message_once_and_acceptors_see_only_ciphertext() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    let data = b"an edit nobody else may read".to_vec();
    let log_before = net.log.len();
    net.command(admin, Command::SendMessage { group, data: data.clone() });

    let to_acceptors: Vec<&Vec<u8>> =
        net.queue.iter().filter(|(_, to, _)| acceptors().contains(*to)).map(|(_, _, frame)| frame).collect();
    assert!(!to_acceptors.is_empty(), "the message leaves for the acceptors");
    assert!(to_acceptors.iter().all(|frame| !contains(frame, &data)), "no acceptor is sent the plaintext");
    let steps = &net.log[log_before..];
    let persisted = steps.iter().position(|line| line.contains("persist")).expect("the ratchet is persisted");
    let sent = steps.iter().position(|line| line.contains("Application")).expect("the message is sent");
    assert!(persisted < sent, "the advanced ratchet is durable before the ciphertext leaves: {steps:#?}");

    settle(&mut net);
    for reader in [second, third] {
        assert_eq!(
            read_by(&net, reader),
            vec![(2, admin, data.clone())],
            "{reader} reads it once, though every acceptor relays it"
        );
    }
    assert!(read_by(&net, admin).is_empty(), "the sender is not sent its own message");
}

#[test]
fn a_message_sent_while_the_senders_commit_is_undecided_leaves_in_the_next_epoch() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    net.command(admin, Command::RotateKeys { group });
    // The admin still leads with its last ballot, so the commit is made at once and is pending.
    cov_mark::check!(device_holds_a_message_while_its_commit_is_undecided);
    net.command(admin, Command::SendMessage { group, data: b"after the rotation".to_vec() });
    settle(&mut net);
    assert_eq!(read_by(&net, second), vec![(3, admin, b"after the rotation".to_vec())]);
}

#[test]
fn a_message_from_an_epoch_not_reached_yet_is_read_once_the_device_gets_there() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    // Hold back everything for the third member while the admin rotates and the second member
    // writes in the new epoch; then hand it over with the application data first.
    let mut held = Vec::new();
    let mut deliver_all_but_third = |net: &mut Net| {
        while let Some((from, to, frame)) = net.queue.pop_front() {
            if to == third {
                held.push((from, to, frame));
            } else {
                net.input(to, plait_kernel::Input::Received { from, frame });
            }
        }
    };
    net.command(admin, Command::RotateKeys { group });
    deliver_all_but_third(&mut net);
    net.command(second, Command::SendMessage { group, data: b"from epoch 3".to_vec() });
    deliver_all_but_third(&mut net);
    let is_application = |frame: &Vec<u8>| {
        matches!(
            plait_kernel::wire::decode(frame, usize::MAX).map(|e| e.message),
            Ok(plait_kernel::wire::Message::Application { .. })
        )
    };
    let (application, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, _, frame)| is_application(frame));
    assert!(!application.is_empty(), "the message was relayed to the third member");
    cov_mark::check!(device_holds_a_message_from_a_future_epoch);
    net.queue.extend(application.into_iter().chain(rest));
    settle(&mut net);
    assert_eq!(read_by(&net, third), vec![(3, second, b"from epoch 3".to_vec())]);
}

#[test]
fn readers_removed_members_and_oversized_messages_are_refused_with_typed_errors() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    net.command(admin, Command::SetRole { group, member: second, role: Role::Reader });
    net.command(admin, Command::RemoveMember { group, member: third });
    settle(&mut net);
    net.command(second, Command::SendMessage { group, data: b"x".to_vec() });
    assert!(failed_with(&net, second, &CommandError::ReadOnly(group)));
    net.command(third, Command::SendMessage { group, data: b"x".to_vec() });
    assert!(failed_with(&net, third, &CommandError::NotAMember(group)));
    let limit = support::config().application_bytes_max;
    net.command(admin, Command::SendMessage { group, data: vec![0; limit + 1] });
    assert!(failed_with(&net, admin, &CommandError::ValueTooLarge { size: limit + 1, limit }));
    settle(&mut net);
    assert!(read_by(&net, second).is_empty() && read_by(&net, third).is_empty(), "nothing was sent");
}

/// The text of the last invite code `device` created.
fn last_invite(net: &Net, device: NodeId) -> String {
    net.events
        .iter()
        .rev()
        .find_map(|(id, event)| match event {
            Event::InviteCreated { code, .. } if *id == device => Some(code.clone()),
            _ => None,
        })
        .expect("an invite code")
}

fn joined(net: &Net, device: NodeId, group: GroupId) -> bool {
    net.events.iter().any(|(id, event)| *id == device && matches!(event, Event::Joined { group: g, .. } if *g == group))
}

fn mailboxes_at_acceptors(net: &Net) -> Vec<usize> {
    (1..=3).map(|i| net.acceptor(NodeId::from_index(i)).mailboxes()).collect()
}

/// n101 founds a group of `devices` devices' net and opens an invite for `role`: the net, the
/// group and the code.
fn founded_with_an_invite(devices: u64, role: Role) -> (Net, GroupId, String) {
    let (mut net, _) = support::net(devices);
    let admin = NodeId::from_index(101);
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let group = created(&net).group_id();
    net.command(admin, Command::CreateInvite { group, lifetime_ms: 600_000, role });
    let code = last_invite(&net, admin);
    (net, group, code)
}

#[test]
fn an_offline_joiner_gets_in_through_an_invite_while_the_admin_is_away() {
    let (admin, joiner) = (NodeId::from_index(101), NodeId::from_index(102));
    let (mut net, group, code) = founded_with_an_invite(2, Role::Writer);
    settle(&mut net);
    assert_eq!(mailboxes_at_acceptors(&net), vec![1, 1, 1], "the mailbox is open at every acceptor");

    // The joiner redeems the code while the admin is away, then goes away itself.
    net.offline = vec![admin];
    net.command(joiner, Command::AcceptInvite { code: code.clone(), acceptors: acceptors() });
    settle(&mut net);
    net.offline = vec![joiner];
    cov_mark::check!(admin_adds_the_joiner_of_an_invite);
    settle(&mut net);
    assert_eq!(net.device(admin).group(group).and_then(|g| g.epoch()), Some(1), "the admin added the joiner");

    // The admin leaves before the joiner is back: the Welcome waits at the acceptors.
    net.offline = vec![admin];
    cov_mark::check!(joiner_joins_through_an_invite);
    settle(&mut net);
    assert!(joined(&net, joiner, group), "the joiner is in: {:#?}", &net.log[net.log.len().saturating_sub(30)..]);
    assert_eq!(net.device(joiner).group(group).and_then(|g| g.epoch()), Some(1));
}

/// A joiner that restarts after posting its key package, while its admin adds it, makes the same
/// key package again from its disk: only that one opens the Welcome (the code works once, so a new
/// key package would have left it out for good). The group remembers the code it was joined
/// through. A restart after it joined, before the invitation was deleted, opens the Welcome
/// again, finds itself in the group, and forgets the invitation.
#[test]
fn a_joiner_that_restarts_before_its_welcome_still_gets_in() {
    let (admin, joiner) = (NodeId::from_index(101), NodeId::from_index(102));
    let (mut net, group, code) = founded_with_an_invite(2, Role::Writer);
    settle(&mut net);
    fn image(net: &mut Net, joiner: NodeId) -> &mut plait_kernel::Restored {
        &mut net.members.iter_mut().find(|m| m.id == joiner).expect("the joiner").durable
    }

    let mailbox = plait_kernel::invite::InviteCode::parse(&code).expect("valid").mailbox;
    net.offline = vec![admin];
    net.command(joiner, Command::AcceptInvite { code, acceptors: acceptors() });
    settle(&mut net);
    let invitation = image(&mut net, joiner).redeeming.clone();
    assert_eq!(invitation.len(), 1, "the invitation is durable");
    net.offline = vec![joiner];
    net.restart(joiner, 555, false);
    settle(&mut net);
    assert_eq!(net.device(admin).group(group).and_then(|g| g.epoch()), Some(1), "the admin added the joiner");

    net.offline = vec![admin];
    settle(&mut net);
    assert!(joined(&net, joiner, group), "the joiner is in: {:#?}", &net.log[net.log.len().saturating_sub(30)..]);
    assert!(image(&mut net, joiner).redeeming.is_empty(), "the invitation is deleted once the joiner is in");
    let through = |net: &Net| net.device(joiner).group(group).and_then(|g| g.joined_through());
    assert_eq!(through(&net), Some(mailbox), "the group knows the code it was joined through");
    net.restart(joiner, 557, false);
    assert_eq!(through(&net), Some(mailbox), "and remembers it after a restart");

    // As if it had crashed between the group's records and the invitation's deletion.
    image(&mut net, joiner).redeeming = invitation;
    net.restart(joiner, 556, false);
    cov_mark::check!(joiner_welcomed_into_a_group_it_already_holds);
    settle(&mut net);
    assert!(image(&mut net, joiner).redeeming.is_empty());
    assert_eq!(net.device(joiner).group(group).and_then(|g| g.epoch()), Some(1), "still in, once");
    assert_eq!(through(&net), Some(mailbox));
}

/// Neither side waits for its next poll when both are online: the acceptors hand the key package
/// to the admin and the Welcome to the joiner as they arrive. (No timer fires in this test.)
#[test]
fn a_joiner_online_with_its_admin_is_in_without_polling() {
    let joiner = NodeId::from_index(102);
    let (mut net, group, code) = founded_with_an_invite(2, Role::Writer);
    net.deliver_all(10_000);

    cov_mark::check!(acceptor_hands_the_joiner_its_welcome);
    net.command(joiner, Command::AcceptInvite { code, acceptors: acceptors() });
    net.deliver_all(10_000);
    assert!(joined(&net, joiner, group), "the joiner is in: {:#?}", &net.log[net.log.len().saturating_sub(30)..]);
}

/// A code whose mailbox no acceptor holds (never opened, or expired there) is reported once every
/// acceptor has said so; a code whose mailbox is open is not, even while its admin is away.
#[test]
fn a_joiner_hears_when_no_acceptor_holds_its_mailbox() {
    let (admin, joiner, other) = (NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103));
    let (mut net, _, code) = founded_with_an_invite(3, Role::Writer);
    settle(&mut net);
    let unknown = |net: &Net, device: NodeId| {
        net.events.iter().filter(|(id, event)| *id == device && matches!(event, Event::InviteUnknown { .. })).count()
    };

    net.offline = vec![admin];
    net.command(joiner, Command::AcceptInvite { code, acceptors: acceptors() });
    settle(&mut net);
    assert_eq!(unknown(&net, joiner), 0, "the mailbox is open, the admin merely away");

    let never_opened = plait_kernel::invite::InviteCode::generate(&mut plait_kernel::rng::NodeRng::from_seed(9));
    cov_mark::check!(joiner_hears_no_acceptor_holds_its_mailbox);
    net.command(other, Command::AcceptInvite { code: never_opened.to_text(), acceptors: acceptors() });
    settle(&mut net);
    let mailbox = never_opened.mailbox;
    assert!(
        net.events
            .iter()
            .any(|(id, event)| *id == other && matches!(event, Event::InviteUnknown { mailbox: m } if *m == mailbox))
    );
}

#[test]
fn an_invite_code_works_once() {
    let (first, second) = (NodeId::from_index(102), NodeId::from_index(103));
    let (mut net, group, code) = founded_with_an_invite(3, Role::Writer);
    net.command(first, Command::AcceptInvite { code: code.clone(), acceptors: acceptors() });
    settle(&mut net);
    assert!(joined(&net, first, group));

    cov_mark::check!(mailbox_refuses_a_second_key_package);
    cov_mark::check!(joiner_finds_its_invite_already_used);
    net.command(second, Command::AcceptInvite { code, acceptors: acceptors() });
    settle(&mut net);
    assert!(!joined(&net, second, group), "a code admits one device");
    assert!(failed_with(&net, second, &CommandError::InvalidInvite("the code was already used".into())));
}

#[test]
fn invites_expire_refuse_forged_key_packages_and_rate_limit_the_mailbox() {
    use plait_kernel::wire::{Envelope, Message, encode};
    let (mut net, _) = support::net(3);
    let (admin, writer, stranger) = (NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103));
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    let group = genesis.group_id();
    add(&mut net, admin, writer, &genesis);

    net.command(writer, Command::CreateInvite { group, lifetime_ms: 60_000, role: Role::Writer });
    assert!(failed_with(&net, writer, &CommandError::NotAnAdmin(group)));
    net.command(stranger, Command::AcceptInvite { code: "plait-not-a-code".into(), acceptors: acceptors() });
    assert!(
        net.events
            .iter()
            .any(|(id, e)| *id == stranger && matches!(e, Event::CommandFailed { error: CommandError::InvalidInvite(_) }))
    );

    // Someone who learned only the mailbox (an acceptor, say) posts a key package of its own.
    net.command(admin, Command::CreateInvite { group, lifetime_ms: 10_000, role: Role::Writer });
    let code = plait_kernel::invite::InviteCode::parse(&last_invite(&net, admin)).expect("valid");
    settle(&mut net);
    net.command(stranger, Command::MakeKeyPackage);
    let key_package = last_key_package(&net, stranger);
    let forged = Message::PostKeyPackage { mailbox: code.mailbox, key_package, mac: [7; 32] };
    let frame = encode(&Envelope { group: GroupId([0; 16]), message: forged }, usize::MAX).expect("encodes");
    for acceptor in acceptors().members() {
        net.queue.push_back((stranger, *acceptor, frame.clone()));
    }
    cov_mark::check!(admin_refuses_a_key_package_without_the_codes_mac);
    settle(&mut net);
    assert_eq!(net.device(admin).group(group).and_then(|g| g.epoch()), Some(1), "nobody was added");

    // The invite's lifetime passes: every acceptor deletes the mailbox.
    assert_eq!(mailboxes_at_acceptors(&net), vec![1, 1, 1]);
    for _ in 0..20 {
        net.tick(500);
        net.deliver_all(10_000);
    }
    assert_eq!(mailboxes_at_acceptors(&net), vec![0, 0, 0]);

    // A flood of fetches from one peer is cut off by the rate limit.
    cov_mark::check!(acceptor_rate_limits_mailbox_requests);
    let fetch = encode(&Envelope { group: GroupId([0; 16]), message: Message::FetchMailbox { mailbox: code.mailbox } }, 1 << 20)
        .expect("encodes");
    let limit = u64::from(support::config().mailbox_requests_per_peer_per_second);
    for _ in 0..limit * 3 {
        net.queue.push_back((stranger, NodeId::from_index(1), fetch.clone()));
    }
    net.deliver_all(10_000);
    let over_limit = |net: &Net| net.acceptor(NodeId::from_index(1)).counters().of(plait_kernel::Rejection::OverLimit);
    assert!(over_limit(&net) >= limit);

    // A member polling its own group's mailboxes is not cut off (its polls are bounded by
    // `invites_max`).
    let before = over_limit(&net);
    let poll = encode(&Envelope { group, message: Message::FetchMailbox { mailbox: code.mailbox } }, 1 << 20).expect("encodes");
    for _ in 0..limit * 3 {
        net.queue.push_back((admin, NodeId::from_index(1), poll.clone()));
    }
    net.deliver_all(10_000);
    assert_eq!(over_limit(&net), before);
}

/// With three acceptors (none may lie), a learner believes one acceptor. If one does lie, the
/// members still find out: the member fed a false chosen commit signs a different epoch
/// authenticator, acceptors relay the signed digests, and the others raise `ForkDetected`.
#[test]
fn a_fork_caused_by_a_lying_acceptor_is_detected_on_the_wire() {
    use plait_kernel::wire::{Envelope, Message, decode, encode};
    let (mut net, group, [admin, second, third]) = group_of_three();
    // The second member's rotation never reaches the acceptors (its accepts are lost), so its
    // commit for this epoch is never chosen; the admin's is. The third member is away.
    net.offline = vec![third];
    net.command(second, Command::RotateKeys { group });
    let mut offered = None;
    for round in 0..20 {
        if round == 5 {
            net.command(admin, Command::RotateKeys { group });
        }
        while let Some((from, to, frame)) = net.queue.pop_front() {
            let message = decode(&frame, usize::MAX).map(|e| e.message);
            if let Ok(Message::Accept { slot, entry, .. }) = message
                && from == second
            {
                offered.get_or_insert((slot, entry));
                continue;
            }
            if !net.offline.contains(&to) && !net.offline.contains(&from) {
                net.input(to, plait_kernel::Input::Received { from, frame });
            }
        }
        net.tick(100);
    }
    let (slot, losing) = offered.expect("the second member offered its commit");
    let chosen = net.events.iter().find_map(|(id, event)| match event {
        Event::Applied { slot: s, entry, .. } if *id == admin && *s == slot => Some(entry.clone()),
        _ => None,
    });
    assert!(chosen.is_some_and(|chosen| chosen != losing), "the admin's commit took the slot");

    // An acceptor tells the third member that the losing commit was chosen for that slot.
    net.offline.clear();
    let lie = encode(&Envelope { group, message: Message::Chosen { slot, entry: losing } }, usize::MAX).expect("encodes");
    net.queue.push_front((NodeId::from_index(1), third, lie));
    cov_mark::check!(device_detects_a_fork);
    settle(&mut net);
    let detected =
        net.events.iter().any(|(id, event)| *id != third && matches!(event, Event::ForkDetected { group: g, .. } if *g == group));
    assert!(detected, "a member raised ForkDetected from the relayed digest");
}

#[test]
fn a_replayed_welcome_changes_nothing() {
    let (mut net, _) = support::net(3);
    let (admin, joiner, other) = (NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103));
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    add(&mut net, admin, joiner, &genesis);
    let welcome = last_welcome(&net);
    let events = net.events.len();
    net.command(joiner, Command::JoinGroup { genesis: genesis.clone(), welcome: welcome.clone() });
    assert_eq!(net.events.len(), events, "the member is in already: nothing happens");
    net.command(other, Command::JoinGroup { genesis, welcome });
    assert!(failed_with(&net, other, &CommandError::NoMatchingKeyPackage), "a Welcome is for its key package's owner only");
    assert!(net.device(other).group(created(&net).group_id()).is_none());
}

/// An admin (n101) founds a group and opens an invite for `role`; n102 redeems it and settles.
fn join_by_invite_as(role: Role) -> (Net, GroupId, [NodeId; 2]) {
    let (admin, joiner) = (NodeId::from_index(101), NodeId::from_index(102));
    let (mut net, group, code) = founded_with_an_invite(2, role);
    net.command(joiner, Command::AcceptInvite { code, acceptors: acceptors() });
    settle(&mut net);
    assert!(joined(&net, joiner, group), "the joiner is in");
    (net, group, [admin, joiner])
}

fn role_at(net: &Net, device: NodeId, group: GroupId) -> Option<Role> {
    net.device(device).group(group).and_then(|g| g.role())
}

/// An invite for a reader admits a member that may only read: the admin commits the role right
/// after the add, and every member sees it.
#[test]
fn an_invite_for_a_reader_admits_a_member_that_may_only_read() {
    cov_mark::check!(admin_gives_an_invitee_its_role);
    let (mut net, group, [admin, joiner]) = join_by_invite_as(Role::Reader);
    assert_eq!(role_at(&net, joiner, group), Some(Role::Reader));
    let expected = vec![(admin, Role::Admin), (joiner, Role::Reader)];
    assert_eq!(net.device(admin).group(group).map(|g| g.members()), Some(expected.clone()));
    assert_eq!(net.device(joiner).group(group).map(|g| g.members()), Some(expected));
    net.command(joiner, Command::Edit { group, position: 0, delete: 0, insert: "no".into() });
    assert!(failed_with(&net, joiner, &CommandError::ReadOnly(group)), "the reader's edit is refused");
}

/// An invite for an admin admits a member that may invite others in turn.
#[test]
fn an_invite_for_an_admin_admits_a_member_that_may_invite() {
    let (mut net, group, [admin, joiner]) = join_by_invite_as(Role::Admin);
    assert_eq!(role_at(&net, joiner, group), Some(Role::Admin));
    assert_eq!(role_at(&net, admin, group), Some(Role::Admin));
    net.command(joiner, Command::CreateInvite { group, lifetime_ms: 60_000, role: Role::Writer });
    assert!(!failed_with(&net, joiner, &CommandError::NotAnAdmin(group)), "the new admin may invite");
    assert!(net.events.iter().any(|(id, event)| *id == joiner && matches!(event, Event::InviteCreated { .. })));
}

/// An invite for a writer (the default role) commits nothing after the add.
#[test]
fn an_invite_for_a_writer_needs_no_role_commit() {
    let (net, group, [admin, joiner]) = join_by_invite_as(Role::Writer);
    assert_eq!(role_at(&net, joiner, group), Some(Role::Writer));
    assert_eq!(net.device(admin).group(group).and_then(|g| g.epoch()), Some(1), "only the add was committed");
}

/// The role change is durable with the invite: an admin that restarts right after its add
/// commit is chosen still gives the joiner its role, with one role commit only.
#[test]
fn an_invites_role_survives_the_admin_restarting_after_the_add() {
    let (mut net, _) = support::net(2);
    let (admin, joiner) = (NodeId::from_index(101), NodeId::from_index(102));
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let group = created(&net).group_id();
    net.command(admin, Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Reader });
    let code = last_invite(&net, admin);
    net.command(joiner, Command::AcceptInvite { code, acceptors: acceptors() });
    let epoch = |net: &Net| net.device(admin).group(group).and_then(|g| g.epoch());
    for _ in 0..100 {
        if epoch(&net) == Some(1) {
            break;
        }
        net.deliver_all(1);
        if net.queue.is_empty() {
            net.tick(100);
        }
    }
    assert_eq!(epoch(&net), Some(1), "the admin's add was chosen");
    net.restart(admin, 7, false);
    settle(&mut net);
    settle(&mut net);
    assert_eq!(role_at(&net, joiner, group), Some(Role::Reader));
    assert_eq!(epoch(&net), Some(2), "one role commit after the add");
}
