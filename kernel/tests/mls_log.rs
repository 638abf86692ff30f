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
        if let Event::EpochChanged { group: g, epoch, authenticator_hash } = event
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
