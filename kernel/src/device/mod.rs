//! The device node: a member of many groups, each with a learner and a proposer.

mod group;
mod proposer;

use std::collections::BTreeMap;

use crate::acceptor::rejection_of;
use crate::config::ValidConfig;
use crate::context::Context;
use crate::ids::{GroupId, NodeId, Slot};
use crate::io::{Command, CommandError, Counters, Effects, Event, Input, Node, Outputs, Rejection};
use crate::log::{AcceptorSet, Entry, GroupGenesis};
use crate::rng::NodeRng;
use crate::storage::Restored;
use crate::time::Time;
use crate::wire::{Envelope, decode};

use group::DeviceGroup;

/// A device: proposes values and learns what is chosen, in many groups.
#[derive(Debug)]
pub struct Device {
    me: NodeId,
    config: ValidConfig,
    rng: NodeRng,
    groups: BTreeMap<GroupId, DeviceGroup>,
    counters: Counters,
}

impl Device {
    /// Builds a device from its durable state. `seed` must differ between boots.
    pub fn new(config: ValidConfig, me: NodeId, seed: u64, restored: Restored) -> (Device, Outputs) {
        let groups: BTreeMap<GroupId, DeviceGroup> = restored
            .groups
            .into_iter()
            .map(|(id, state)| (id, DeviceGroup::restore(Time::ZERO, state, config.chosen_in_memory_max)))
            .collect();
        let device = Device { me, config, rng: NodeRng::from_seed(seed), groups, counters: Counters::default() };
        let wake_at = device.wake_at();
        (device, Outputs { effects: Vec::new(), wake_at })
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Counts of rejected input.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Read-only views of the groups, for checkers and status pages.
    pub fn groups(&self) -> impl Iterator<Item = DeviceGroupView<'_>> {
        self.groups.iter().map(|(id, group)| DeviceGroupView { id: *id, group })
    }

    /// A read-only view of one group.
    pub fn group(&self, id: GroupId) -> Option<DeviceGroupView<'_>> {
        self.groups.get(&id).map(|group| DeviceGroupView { id, group })
    }

    fn wake_at(&self) -> Option<Time> {
        self.groups.values().map(DeviceGroup::wake_at).min()
    }

    fn on_command(&mut self, now: Time, command: Command, effects: &mut Effects) {
        let result = match command {
            Command::OpenGroup { genesis } => self.open_group(now, genesis, effects),
            Command::Propose { group, value } => self.propose(now, group, Entry::Value(value), effects),
            Command::ChangeAcceptors { group, acceptors } => {
                if acceptors.is_well_formed(self.config.acceptors_max) {
                    self.propose(now, group, Entry::SetAcceptors(acceptors), effects)
                } else {
                    Err(CommandError::InvalidGenesis)
                }
            }
        };
        if let Err(error) = result {
            effects.notify(Event::CommandFailed { error });
        }
    }

    fn open_group(&mut self, now: Time, genesis: GroupGenesis, effects: &mut Effects) -> Result<(), CommandError> {
        if !genesis.is_well_formed(self.config.acceptors_max, self.config.proposers_max) {
            return Err(CommandError::InvalidGenesis);
        }
        let id = genesis.group_id();
        if self.groups.contains_key(&id) {
            return Ok(());
        }
        if self.groups.len() >= self.config.groups_max {
            return Err(CommandError::TooManyGroups(self.groups.len()));
        }
        let mut cx = Context::new(now, self.me, id, &self.config, &mut self.rng, &mut self.counters, effects);
        let mut group = DeviceGroup::open(&mut cx, genesis);
        group.on_timer(&mut cx);
        self.groups.insert(id, group);
        Ok(())
    }

    fn propose(&mut self, now: Time, id: GroupId, entry: Entry, effects: &mut Effects) -> Result<(), CommandError> {
        let group = self.groups.get_mut(&id).ok_or(CommandError::UnknownGroup(id))?;
        let mut cx = Context::new(now, self.me, id, &self.config, &mut self.rng, &mut self.counters, effects);
        group.propose(&mut cx, entry)
    }

    fn on_frame(&mut self, now: Time, from: NodeId, frame: &[u8], effects: &mut Effects) {
        let Envelope { group: id, message } = match decode(frame, self.config.message_bytes_max) {
            Ok(envelope) => envelope,
            Err(error) => return self.counters.count(rejection_of(&error)),
        };
        let Some(group) = self.groups.get_mut(&id) else {
            return self.counters.count(Rejection::UnknownGroup);
        };
        let mut cx = Context::new(now, self.me, id, &self.config, &mut self.rng, &mut self.counters, effects);
        group.on_message(&mut cx, from, message);
    }

    fn on_timer(&mut self, now: Time, effects: &mut Effects) {
        for (id, group) in self.groups.iter_mut().filter(|(_, g)| g.wake_at() <= now) {
            let mut cx = Context::new(now, self.me, *id, &self.config, &mut self.rng, &mut self.counters, effects);
            group.on_timer(&mut cx);
        }
    }
}

impl Node for Device {
    fn handle(&mut self, now: Time, input: Input) -> Outputs {
        let mut effects = Effects::default();
        match input {
            Input::Command(command) => self.on_command(now, command, &mut effects),
            Input::Received { from, frame } => self.on_frame(now, from, &frame, &mut effects),
            Input::Timer => self.on_timer(now, &mut effects),
            Input::Loaded { .. } => self.counters.count(Rejection::Invalid),
        }
        Outputs { effects: effects.list, wake_at: self.wake_at() }
    }
}

/// What a checker or the app may read about one group on a device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceGroupView<'a> {
    id: GroupId,
    group: &'a DeviceGroup,
}

impl DeviceGroupView<'_> {
    /// The group.
    pub fn id(&self) -> GroupId {
        self.id
    }
    /// First slot not applied.
    pub fn next_slot(&self) -> Slot {
        self.group.next_slot
    }
    /// Own proposals not yet chosen.
    pub fn queued(&self) -> usize {
        self.group.queued()
    }
    /// Whether the device has no unfinished proposer work.
    pub fn is_idle(&self) -> bool {
        self.group.is_idle()
    }
    /// The acceptor set in force for the next slot.
    pub fn acceptors(&self) -> &AcceptorSet {
        self.group.acceptors()
    }
    /// The proposer's state, for diagnostics.
    pub fn proposer_state(&self) -> String {
        match &self.group.proposer {
            proposer::Proposer::Idle => "idle".into(),
            proposer::Proposer::Backoff { until } => format!("backoff until {until}"),
            proposer::Proposer::Preparing(p) => format!("preparing {:?} promises={}", p.ballot, p.promises.len()),
            proposer::Proposer::Leading(l) => {
                format!("leading {:?} in_flight={:?}", l.ballot, l.in_flight.as_ref().map(|f| (f.slot.0, f.accepted_by.len())))
            }
        }
    }
    /// The genesis.
    pub fn genesis(&self) -> &GroupGenesis {
        &self.group.genesis
    }
}
