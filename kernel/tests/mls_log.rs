//! MLS commits ordered by the Paxos log: acceptors validate them with their public view, every
//! member walks through the same epochs, and refused commits come back as typed errors.

mod support;

use plait_kernel::{AcceptorSet, Command, CommandError, Event, GroupGenesis, GroupId, NodeId};

use support::Net;

fn acceptors() -> AcceptorSet {
    AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three")
}

fn created(net: &Net) -> GroupGenesis {
    net.events
        .iter()
        .find_map(|(_, event)| match event {
            Event::GroupCreated { genesis, .. } => Some(genesis.clone()),
            _ => None,
        })
        .expect("the founder created the group")
}

fn last_key_package(net: &Net, device: NodeId) -> Vec<u8> {
    net.events
        .iter()
        .rev()
        .find_map(|(id, event)| match event {
            Event::KeyPackage { key_package } if *id == device => Some(key_package.clone()),
            _ => None,
        })
        .expect("a key package")
}

fn last_welcome(net: &Net) -> Vec<u8> {
    net.events
        .iter()
        .rev()
        .find_map(|(_, event)| match event {
            Event::Welcome { welcome, .. } => Some(welcome.clone()),
            _ => None,
        })
        .expect("a welcome")
}

/// The epoch and authenticator hash each device last reported for `group`.
fn epochs(net: &Net, group: GroupId) -> Vec<(NodeId, u64, [u8; 32])> {
    let mut last = std::collections::BTreeMap::new();
    for (id, event) in &net.events {
        if let Event::EpochChanged { group: g, epoch, authenticator_hash, .. } = event
            && *g == group
        {
            last.insert(*id, (*epoch, *authenticator_hash));
        }
    }
    last.into_iter().map(|(id, (epoch, hash))| (id, epoch, hash)).collect()
}

/// Delivers everything, then lets two seconds pass in steps so backoffs and syncs run.
fn settle(net: &mut Net) {
    net.deliver_all(10_000);
    for _ in 0..20 {
        net.tick(100);
        net.deliver_all(10_000);
    }
}

fn add(net: &mut Net, admin: NodeId, joiner: NodeId, genesis: &GroupGenesis) {
    net.command(joiner, Command::MakeKeyPackage);
    let key_package = last_key_package(net, joiner);
    net.command(admin, Command::AddMember { group: genesis.group_id(), key_package });
    settle(net);
    let welcome = last_welcome(net);
    net.command(joiner, Command::JoinGroup { genesis: genesis.clone(), welcome });
    settle(net);
}

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

/// An admin (n101) and two writers (n102, n103) in one group.
fn group_of_three() -> (Net, GroupId, [NodeId; 3]) {
    let (mut net, _) = support::net(3);
    let ids = [NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103)];
    net.command(ids[0], Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    add(&mut net, ids[0], ids[1], &genesis);
    add(&mut net, ids[0], ids[2], &genesis);
    (net, genesis.group_id(), ids)
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

fn failed_with(net: &Net, device: NodeId, error: &CommandError) -> bool {
    net.events.iter().any(|(id, event)| *id == device && matches!(event, Event::CommandFailed { error: e } if e == error))
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
    net.command(admin, Command::SetRole { group, member: second, role: plait_kernel::mls::Role::Reader });
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
