//! MLS groups for kernel tests: three acceptors, devices founded and admitted through the log.

use plait_kernel::{AcceptorSet, Command, CommandError, Event, GroupGenesis, GroupId, NodeId};

use super::Net;

pub fn acceptors() -> AcceptorSet {
    AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three")
}

pub fn created(net: &Net) -> GroupGenesis {
    net.events
        .iter()
        .find_map(|(_, event)| match event {
            Event::GroupCreated { genesis, .. } => Some(genesis.clone()),
            _ => None,
        })
        .expect("the founder created the group")
}

pub fn last_key_package(net: &Net, device: NodeId) -> Vec<u8> {
    net.events
        .iter()
        .rev()
        .find_map(|(id, event)| match event {
            Event::KeyPackage { key_package } if *id == device => Some(key_package.clone()),
            _ => None,
        })
        .expect("a key package")
}

pub fn last_welcome(net: &Net) -> Vec<u8> {
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
pub fn epochs(net: &Net, group: GroupId) -> Vec<(NodeId, u64, [u8; 32])> {
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
pub fn settle(net: &mut Net) {
    net.deliver_all(10_000);
    for _ in 0..20 {
        net.tick(100);
        net.deliver_all(10_000);
    }
}

pub fn add(net: &mut Net, admin: NodeId, joiner: NodeId, genesis: &GroupGenesis) {
    net.command(joiner, Command::MakeKeyPackage);
    let key_package = last_key_package(net, joiner);
    net.command(admin, Command::AddMember { group: genesis.group_id(), key_package });
    settle(net);
    let welcome = last_welcome(net);
    net.command(joiner, Command::JoinGroup { genesis: genesis.clone(), welcome });
    settle(net);
}

/// An admin (n101) and two writers (n102, n103) in one group.
pub fn group_of_three() -> (Net, GroupId, [NodeId; 3]) {
    group_of_three_in(super::net(3).0)
}

/// [`group_of_three`] in `net` (whose devices n101..n103 are not in a group yet).
pub fn group_of_three_in(mut net: Net) -> (Net, GroupId, [NodeId; 3]) {
    let ids = [NodeId::from_index(101), NodeId::from_index(102), NodeId::from_index(103)];
    net.command(ids[0], Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let genesis = created(&net);
    add(&mut net, ids[0], ids[1], &genesis);
    add(&mut net, ids[0], ids[2], &genesis);
    (net, genesis.group_id(), ids)
}

pub fn failed_with(net: &Net, device: NodeId, error: &CommandError) -> bool {
    net.events.iter().any(|(id, event)| *id == device && matches!(event, Event::CommandFailed { error: e } if e == error))
}
