//! A tiny deterministic network for kernel tests: FIFO delivery, a durable image per node, and a
//! readable log of every step. (Fault injection lives in io-sim; this is for exact scripts.)

#![allow(dead_code, missing_docs)]

pub mod groups;

use std::collections::VecDeque;

use plait_kernel::wire::decode;
use plait_kernel::{Acceptor, AcceptorSet, Command, Config, Device, Effect, GroupGenesis, Input, Node, NodeId, Restored, Time};

pub enum Machine {
    Device(Device),
    Acceptor(Acceptor),
}

pub struct Member {
    pub id: NodeId,
    pub machine: Machine,
    pub durable: Restored,
}

pub struct Net {
    pub now: Time,
    pub members: Vec<Member>,
    pub queue: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    pub log: Vec<String>,
    /// Every write batch any node persisted, in order.
    pub written: Vec<(NodeId, plait_kernel::storage::WriteBatch)>,
    /// Frames to these nodes are dropped.
    pub unreachable: Vec<NodeId>,
    /// These nodes are off the network: frames to and from them are dropped and their timers
    /// do not fire.
    pub offline: Vec<NodeId>,
    /// Every event any node raised, in order.
    pub events: Vec<(NodeId, plait_kernel::Event)>,
    /// Every node's configuration.
    pub config: plait_kernel::ValidConfig,
    /// Off (the default): a node that asks for `Input::Flush` gets it right after its input, as
    /// if nothing else were waiting. On: it is listed in `flushes_wanted` until [`Net::flush`].
    pub hold_flushes: bool,
    pub flushes_wanted: Vec<NodeId>,
}

/// A device's stable MLS identity seed, derived from its id.
pub fn identity_seed(id: NodeId) -> [u8; 32] {
    *blake3::hash(&id.0).as_bytes()
}

pub fn config() -> plait_kernel::ValidConfig {
    Config::default().validate().expect("default config is valid")
}

/// Three acceptors n1..n3 and `devices` devices n101..
pub fn net(devices: u64) -> (Net, GroupGenesis) {
    net_with(devices, config())
}

/// [`net`] with every node on `config`.
pub fn net_with(devices: u64, config: plait_kernel::ValidConfig) -> (Net, GroupGenesis) {
    net_with_acceptors(3, devices, config)
}

/// [`net_with`] with `acceptors` acceptors n1.. (the genesis still names n1..n3).
pub fn net_with_acceptors(acceptors: u64, devices: u64, config: plait_kernel::ValidConfig) -> (Net, GroupGenesis) {
    let mut members = Vec::new();
    for i in 1..=acceptors {
        let id = NodeId::from_index(i);
        let (acceptor, _) = Acceptor::new(config.clone(), id, i, Restored::empty());
        members.push(Member { id, machine: Machine::Acceptor(acceptor), durable: Restored::empty() });
    }
    let mut proposers = Vec::new();
    for i in 0..devices {
        let id = NodeId::from_index(101 + i);
        let (device, _) = Device::new(config.clone(), id, identity_seed(id), 100 + i, Restored::empty());
        members.push(Member { id, machine: Machine::Device(device), durable: Restored::empty() });
        proposers.push(id);
    }
    let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three");
    let genesis = GroupGenesis { nonce: 7, acceptors, proposers, group_info: None };
    (
        Net {
            now: Time(0),
            members,
            queue: VecDeque::new(),
            log: Vec::new(),
            written: Vec::new(),
            unreachable: Vec::new(),
            offline: Vec::new(),
            events: Vec::new(),
            config,
            hold_flushes: false,
            flushes_wanted: Vec::new(),
        },
        genesis,
    )
}

impl Net {
    fn index(&self, id: NodeId) -> usize {
        self.members.iter().position(|m| m.id == id).expect("known node")
    }

    pub fn device(&self, id: NodeId) -> &Device {
        match &self.members[self.index(id)].machine {
            Machine::Device(device) => device,
            Machine::Acceptor(_) => panic!("{id} is an acceptor"),
        }
    }

    pub fn acceptor(&self, id: NodeId) -> &Acceptor {
        match &self.members[self.index(id)].machine {
            Machine::Acceptor(acceptor) => acceptor,
            Machine::Device(_) => panic!("{id} is a device"),
        }
    }

    /// Hands `input` to `id` and carries out the effects (persists apply at once).
    pub fn input(&mut self, id: NodeId, input: Input) {
        let now = self.now;
        let index = self.index(id);
        let member = &mut self.members[index];
        let outputs = match &mut member.machine {
            Machine::Device(device) => device.handle(now, input),
            Machine::Acceptor(acceptor) => acceptor.handle(now, input),
        };
        for effect in outputs.effects {
            match effect {
                Effect::Persist(batch) => {
                    self.log.push(format!("{id} persist {:?}", batch.records));
                    member.durable.apply(&batch);
                    self.written.push((id, batch));
                }
                Effect::Send { to, frame } => {
                    let message = decode(&frame, usize::MAX).expect("nodes send valid frames").message;
                    self.log.push(format!("{id} -> {to} {message:?}"));
                    self.queue.push_back((id, to, frame));
                }
                Effect::Notify(event) => {
                    self.log.push(format!("{id} notify {event:?}"));
                    self.events.push((id, event));
                }
                Effect::Load { request, query } => self.log.push(format!("{id} load {request:?} {query:?}")),
            }
        }
        if outputs.rebuild_from_storage {
            // As a driver does: at once, from what the node made durable (seeded by the log's
            // length, so a run is repeatable).
            self.log.push(format!("{id} rebuilt from storage"));
            let seed = self.log.len() as u64;
            return self.restart(id, seed, false);
        }
        if outputs.wants_flush && !self.hold_flushes {
            self.input(id, Input::Flush);
        } else if outputs.wants_flush && !self.flushes_wanted.contains(&id) {
            self.flushes_wanted.push(id);
        }
    }

    /// Delivers `Input::Flush` to `id`.
    pub fn flush(&mut self, id: NodeId) {
        self.flushes_wanted.retain(|wanted| *wanted != id);
        self.input(id, Input::Flush);
    }

    pub fn command(&mut self, id: NodeId, command: Command) {
        self.input(id, Input::Command(command));
    }

    /// Delivers queued frames in order until none are left (or `limit` deliveries).
    pub fn deliver_all(&mut self, limit: usize) {
        for _ in 0..limit {
            let Some((from, to, frame)) = self.queue.pop_front() else { return };
            if self.unreachable.contains(&to) || self.offline.contains(&to) || self.offline.contains(&from) {
                continue;
            }
            self.input(to, Input::Received { from, frame });
        }
    }

    /// Advances time and fires every node's timer.
    pub fn tick(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        let ids: Vec<NodeId> = self.members.iter().map(|m| m.id).filter(|id| !self.offline.contains(id)).collect();
        for id in ids {
            self.input(id, Input::Timer);
        }
    }

    /// Crashes and restarts a node from its durable image (or from nothing with `wipe`).
    pub fn restart(&mut self, id: NodeId, seed: u64, wipe: bool) {
        let index = self.index(id);
        let member = &mut self.members[index];
        if wipe {
            member.durable = Restored::empty();
        }
        let restored = member.durable.clone();
        let config = self.config.clone();
        member.machine = match member.machine {
            Machine::Device(_) => Machine::Device(Device::new(config, id, identity_seed(id), seed, restored).0),
            Machine::Acceptor(_) => Machine::Acceptor(Acceptor::new(config, id, seed, restored).0),
        };
        self.log.push(format!("{id} restarted (wipe: {wipe})"));
    }
}
