//! Garbage, truncated, oversized, wrong-version, unknown-group, unauthorised and replayed
//! messages are rejected and counted, never a panic.

use crate::support;

use plait_kernel::wire::{Envelope, Message, PROTOCOL_VERSION, encode};
use plait_kernel::{Ballot, Command, Config, Input, Node, NodeId, Rejection, Slot};

fn frame(group: plait_kernel::GroupId, message: Message) -> Vec<u8> {
    encode(&Envelope { group, message }, 1 << 20).expect("small")
}

#[test]
fn bad_frames_are_counted_by_reason() {
    let (mut net, genesis) = support::net(1);
    let group = genesis.group_id();
    let device = NodeId::from_index(101);
    net.command(device, Command::OpenGroup { genesis });
    net.deliver_all(1_000);
    let acceptor = NodeId::from_index(1);
    let stranger = NodeId::from_index(666);
    let good = frame(group, Message::Prepare { ballot: Ballot { round: 9, proposer: device }, from_slot: Slot(0) });
    let mut wrong_version = good.clone();
    wrong_version[0] = PROTOCOL_VERSION + 1;
    let oversized = vec![PROTOCOL_VERSION; Config::default().message_bytes_max + 1];
    let unknown_group = frame(
        plait_kernel::GroupId([9; 16]),
        Message::Prepare { ballot: Ballot { round: 1, proposer: device }, from_slot: Slot(0) },
    );
    let unauthorised = frame(group, Message::Prepare { ballot: Ballot { round: 10, proposer: stranger }, from_slot: Slot(0) });
    let inputs = [
        (device, vec![]),
        (device, vec![PROTOCOL_VERSION, 0xde, 0xad, 0xbe, 0xef]),
        (device, good[..good.len() - 2].to_vec()),
        (device, wrong_version),
        (device, oversized),
        (device, unknown_group),
        (stranger, unauthorised),
        (device, good.clone()),
        (device, good),
    ];
    for (from, frame) in inputs {
        net.input(acceptor, Input::Received { from, frame });
    }
    let counters = net.acceptor(acceptor).counters();
    assert_eq!(counters.of(Rejection::Malformed), 3, "empty, garbage and truncated");
    assert_eq!(counters.of(Rejection::WrongVersion), 1);
    assert_eq!(counters.of(Rejection::Oversized), 1);
    assert_eq!(counters.of(Rejection::UnknownGroup), 1);
    assert_eq!(counters.of(Rejection::Unauthorised), 1);
    let promises = net.log.iter().filter(|line| line.starts_with("n1 -> n101 Promise")).count();
    assert_eq!(promises, 2, "a replayed prepare is answered again, without a second persist");
    let persists = net.log.iter().filter(|line| line.starts_with("n1 persist [Promised") && line.contains("round: 9")).count();
    assert_eq!(persists, 1);
}

#[test]
fn a_device_ignores_votes_from_strangers_and_random_frames() {
    let (mut net, genesis) = support::net(1);
    let group = genesis.group_id();
    let device = NodeId::from_index(101);
    net.command(device, Command::OpenGroup { genesis });
    let stranger = NodeId::from_index(55);
    let forged = frame(group, Message::Chosen { slot: Slot(0), entry: plait_kernel::Entry::Value(b"forged".to_vec()) });
    net.input(device, Input::Received { from: stranger, frame: forged });
    for seed in 0..200u64 {
        let garbage: Vec<u8> = (0..seed % 64).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8).collect();
        net.input(device, Input::Received { from: NodeId::from_index(1), frame: garbage });
    }
    let view = net.device(device).group(group).expect("open");
    assert_eq!(view.next_slot(), Slot(0), "nothing forged was applied");
    assert_eq!(net.device(device).counters().of(Rejection::Unauthorised), 1);
    assert!(net.device(device).counters().total() >= 200);
}

#[test]
fn impossible_commands_return_typed_errors() {
    let (mut net, genesis) = support::net(1);
    let device = NodeId::from_index(101);
    net.command(device, Command::Propose { group: genesis.group_id(), value: vec![1] });
    net.command(device, Command::OpenGroup { genesis: genesis.clone() });
    let huge = vec![0u8; Config::default().entry_bytes_max + 1];
    net.command(device, Command::Propose { group: genesis.group_id(), value: huge });
    let errors: Vec<&String> = net.log.iter().filter(|line| line.contains("CommandFailed")).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("UnknownGroup"));
    assert!(errors[1].contains("ValueTooLarge"));
    let (mut device_node, _) = plait_kernel::Device::new(support::config(), device, [1; 32], 1, plait_kernel::Restored::empty());
    let outputs = device_node.handle(
        plait_kernel::Time(0),
        Input::Command(Command::OpenGroup { genesis: plait_kernel::GroupGenesis { proposers: vec![], ..genesis } }),
    );
    assert!(format!("{:?}", outputs.effects).contains("InvalidGenesis"));
}

#[test]
fn a_delayed_recover_from_an_older_incarnation_cannot_roll_the_fence_back() {
    let (mut net, genesis) = support::net(1);
    let group = genesis.group_id();
    net.command(NodeId::from_index(101), Command::OpenGroup { genesis: genesis.clone() });
    net.deliver_all(1_000);
    let (acceptor, peer) = (NodeId::from_index(1), NodeId::from_index(2));
    let recover = |incarnation| {
        frame(group, Message::Recover { incarnation: plait_kernel::Incarnation(incarnation), genesis: genesis.clone() })
    };
    net.input(acceptor, Input::Received { from: peer, frame: recover(5) });
    let before = net.acceptor(acceptor).counters().of(Rejection::StaleIncarnation);
    let log_before = net.log.len();
    cov_mark::check!(recover_from_an_older_incarnation_refused);
    net.input(acceptor, Input::Received { from: peer, frame: recover(4) });
    assert_eq!(net.acceptor(acceptor).counters().of(Rejection::StaleIncarnation), before + 1);
    assert_eq!(net.log.len(), log_before, "no persist and no reply: {:?}", &net.log[log_before..]);
}

#[test]
fn snapshot_messages_to_a_group_without_a_document_are_refused() {
    // Found by the `handle_frames` fuzzer: a device panicked on these in a group of opaque
    // values, which has no document and so no snapshots.
    cov_mark::check_count!(device_without_a_document_refuses_snapshot_messages, 3);
    let (mut net, genesis) = support::net(1);
    let group = genesis.group_id();
    let device = NodeId::from_index(101);
    net.command(device, Command::OpenGroup { genesis });
    net.deliver_all(1_000);
    let hash = plait_kernel::snapshot::SnapshotHash([3; 32]);
    let messages = [
        Message::SnapshotStored { hash },
        Message::SnapshotChunk { hash, index: 0, count: 1, bytes: vec![1, 2, 3] },
        Message::SnapshotConfirmed { hash },
    ];
    for message in messages {
        net.input(device, Input::Received { from: NodeId::from_index(1), frame: frame(group, message) });
    }
    assert_eq!(net.device(device).counters().of(Rejection::Unauthorised), 3);
}
