//! `plait-sim bench groups`: what one input costs a node that hosts many groups.
//!
//! Why: an acceptor serves every group whose members chose it, up to `groups_max` (10,000). An
//! input touches one group (or the few whose timers are due), so its cost should not grow with
//! the groups that sleep. Anchor: the codec round trip of `plait-sim bench`, measured here too.

use std::time::Instant;

use plait_kernel::wire::{Envelope, Message, encode};
use plait_kernel::{AcceptorSet, Command, Config, GroupGenesis, Input, Node, NodeId, Restored, Slot, Time};

use crate::bench::{codec_anchor_ns, median_of_rounds};

/// Groups the acceptor hosts in each measurement.
const GROUP_COUNTS: [u64; 4] = [1, 100, 1_000, 10_000];

/// Inputs timed per round.
const INPUTS_PER_ROUND: u32 = 2_000;

/// Prints the figures.
pub fn run() {
    println!("anchor: postcard encode+decode of a Prepare frame: {:.0} ns (median of 5 rounds)", codec_anchor_ns());
    for groups in GROUP_COUNTS {
        let (sync, timer) = acceptor_input_ns(groups);
        println!(
            "an acceptor hosting {groups} groups: a Sync for one of them {sync:.0} ns, a Timer with nothing due {timer:.0} ns (medians of 5 rounds of {INPUTS_PER_ROUND})"
        );
    }
    for groups in GROUP_COUNTS {
        let (entries, timer) = device_input_ns(groups);
        println!(
            "a device in {groups} groups: an empty Entries for one of them {entries:.0} ns, a Timer with nothing due {timer:.0} ns (medians of 5 rounds of {INPUTS_PER_ROUND})"
        );
    }
}

/// The three acceptors of every group here.
fn acceptors() -> AcceptorSet {
    AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 3).expect("three acceptors")
}

/// The median cost of handling `input` at `node`, over 5 rounds of [`INPUTS_PER_ROUND`].
fn input_ns(node: &mut impl Node, now: Time, input: &Input) -> f64 {
    median_of_rounds(|| {
        let started = Instant::now();
        for _ in 0..INPUTS_PER_ROUND {
            std::hint::black_box(node.handle(now, input.clone()));
        }
        started.elapsed().as_nanos() as f64 / f64::from(INPUTS_PER_ROUND)
    })
}

/// The cost of an empty `Entries` from an acceptor for one group and of a timer with nothing
/// due, at a device in `groups` groups of opaque values.
fn device_input_ns(groups: u64) -> (f64, f64) {
    let config = Config::default().validate().expect("the defaults are valid");
    let me = NodeId::from_index(100);
    let (mut device, _) = plait_kernel::Device::new(config, me, [9; 32], 7, Restored::default());
    let now = Time(1);
    let genesis = |nonce: u64| GroupGenesis { nonce, acceptors: acceptors(), proposers: vec![me], group_info: None };
    for nonce in 0..groups {
        device.handle(now, Input::Command(Command::OpenGroup { genesis: genesis(nonce) }));
    }
    assert_eq!(device.groups().count() as u64, groups, "every group is open");
    let message = Message::Entries { entries: Vec::new(), chosen_next: Slot(0), accepted_pending: false };
    let frame = encode(&Envelope { group: genesis(0).group_id(), message }, 1 << 20).expect("a small frame");
    let entries = Input::Received { from: NodeId::from_index(1), frame };
    (input_ns(&mut device, now, &entries), input_ns(&mut device, now, &Input::Timer))
}

/// The cost of a `Sync` to one group and of a timer with nothing due, at an acceptor hosting
/// `groups` groups of opaque values.
fn acceptor_input_ns(groups: u64) -> (f64, f64) {
    let config = Config::default().validate().expect("the defaults are valid");
    let me = NodeId::from_index(1);
    let device = NodeId::from_index(100);
    let acceptors = acceptors();
    let (mut acceptor, _) = plait_kernel::Acceptor::new(config, me, 7, Restored::default());
    let now = Time(1);
    let sync = |nonce: u64| {
        let genesis = GroupGenesis { nonce, acceptors: acceptors.clone(), proposers: vec![device], group_info: None };
        let group = genesis.group_id();
        let message = Message::Sync { genesis, from_slot: Slot(0), acceptors: acceptors.clone() };
        encode(&Envelope { group, message }, 1 << 20).expect("a small frame")
    };
    for nonce in 0..groups {
        acceptor.handle(now, Input::Received { from: device, frame: sync(nonce) });
    }
    assert_eq!(acceptor.groups().count() as u64, groups, "every group is hosted");
    // Every new group's first peer round is due at once; after it, none is for a while.
    acceptor.handle(now, Input::Timer);
    let input = Input::Received { from: device, frame: sync(0) };
    (input_ns(&mut acceptor, now, &input), input_ns(&mut acceptor, now, &Input::Timer))
}
