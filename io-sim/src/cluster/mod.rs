//! The `Cluster` harness: nodes on one virtual clock, a seeded network and disks, fault
//! injection, and the invariant checker run after every event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use plait_kernel::{
    Acceptor, Command, Config, Device, Effect, Event, GroupGenesis, GroupId, Input, Node, NodeId, Outputs, Time, ValidConfig,
};

use crate::chance::SimRng;
use crate::checker::Checker;
use crate::disk::Disk;
use crate::faults::FaultProfile;
use crate::network::{Fate, Network};
use crate::trace::Trace;

mod byzantine;
mod events;
mod injection;
mod lifecycle;
mod metering;
mod progress;
mod schedule;
mod tracing;
mod watching;

pub use watching::PLAINTEXT_MARKER;
use watching::contains;

use schedule::{Scheduled, SimEvent};
use tracing::{describe_input, record_input, trace_form};

/// A node's role in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Proposes and learns.
    Device,
    /// Votes and stores.
    Acceptor,
}

/// A running node.
#[derive(Debug)]
enum Machine {
    Device(Box<Device>),
    Acceptor(Box<Acceptor>),
}

impl Machine {
    fn handle(&mut self, now: Time, input: Input) -> Outputs {
        match self {
            Machine::Device(device) => device.handle(now, input),
            Machine::Acceptor(acceptor) => acceptor.handle(now, input),
        }
    }
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    role: Role,
    machine: Option<Machine>,
    disk: Disk,
    boot: u32,
    timer: Option<(Time, u64)>,
    timer_generation: u64,
    /// Timers fired in one simulated second: `(second, count)`.
    timers_fired: (u64, u32),
    /// An `Input::Flush` is scheduled (the node asked for one).
    flush_due: bool,
    /// Kept down through the liveness phase (a lost minority).
    lost: bool,
    /// For a Byzantine acceptor: what it lies with.
    liar: Option<byzantine::Liar>,
    /// Host wall time spent inside this node's `handle` calls, for benchmarks (see
    /// `metering.rs`); no simulation decision reads it.
    handle_nanos: u64,
    /// Bytes of the frames delivered to this node.
    received_bytes: u64,
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed (deliveries, timers, commands, loads, faults).
    pub events: u64,
    /// Frames sent.
    pub sent: u64,
    /// Frames lost to faults or partitions.
    pub lost: u64,
    /// Crashes.
    pub crashes: u64,
    /// Restarts with an empty disk.
    pub wipes: u64,
    /// Own proposals chosen, over all devices.
    pub committed: u64,
    /// Commands refused with an error event.
    pub command_errors: u64,
    /// Application messages decrypted, over all devices.
    pub messages_read: u64,
    /// Document updates applied from other members, over all devices.
    pub updates_applied: u64,
    /// Document messages that became safe.
    pub updates_safe: u64,
    /// Snapshots devices imported to catch up.
    pub snapshots_imported: u64,
}

/// Decrypted application messages kept for the scenario to inspect at most.
pub const MESSAGES_KEPT_MAX: usize = 100_000;

/// Notices (key packages, Welcomes, created groups) kept for the scenario to route at most.
pub const NOTICES_MAX: usize = 10_000;

/// Events a run may process at most; a run that needs more is reported as a liveness failure.
pub const EVENTS_PER_RUN_MAX: u64 = 5_000_000;

/// Timers one node may fire in one simulated second. A node's own work wakes it a few times a
/// second at most (syncs, posts, flushes, backoffs); a deadline that stays in the past makes it
/// fire every millisecond (the simulator's floor), and a real driver would spin on it: a
/// removed device did so until 2026-12-07 (its unsafe messages stayed due).
pub const TIMERS_PER_SECOND_MAX: u32 = 200;

/// Nodes, network, disks and checker on one virtual clock.
#[derive(Debug)]
pub struct Cluster {
    now: Time,
    rng: SimRng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    nodes: Vec<SimNode>,
    config: ValidConfig,
    /// The network, open to scenarios for scripted partitions.
    pub network: Network,
    /// Invariants.
    pub checker: Checker,
    /// Faults injected while `faults_on`.
    pub profile: FaultProfile,
    faults_on: bool,
    /// Frames, commands and loads scheduled but not yet handled: work that is not a timer.
    in_flight: u64,
    trace: Trace,
    /// What happened.
    pub stats: Stats,
    /// How long a disk read takes.
    pub load_delay_ms: u64,
    genesis_opened: Option<GroupGenesis>,
    /// Events the scenario routes by hand (key packages to admins, Welcomes to joiners), with the
    /// index of the node that raised them.
    pub notices: Vec<(usize, Event)>,
    /// Application messages devices decrypted: (device index, sender, plaintext).
    pub messages: Vec<(usize, NodeId, Vec<u8>)>,
}

impl Cluster {
    /// A cluster of `acceptors` acceptors (ids 1..) and `devices` devices (ids 101..), all up.
    pub fn new(
        seed: u64,
        acceptors: usize,
        devices: usize,
        config: Config,
        profile: FaultProfile,
        keep_trace_text: bool,
    ) -> Cluster {
        let config = config.validate().expect("scenario configs are valid");
        let mut nodes = Vec::new();
        for i in 0..acceptors {
            nodes.push(SimNode::new(NodeId::from_index(1 + i as u64), Role::Acceptor));
        }
        for i in 0..devices {
            nodes.push(SimNode::new(NodeId::from_index(101 + i as u64), Role::Device));
        }
        let mut network = Network::new(profile.latency);
        network.loss = profile.loss;
        network.duplicate = profile.duplicate;
        let mut cluster = Cluster {
            now: Time::ZERO,
            rng: SimRng::new(seed),
            queue: BinaryHeap::new(),
            next_seq: 0,
            nodes,
            config,
            network,
            checker: Checker::default(),
            profile,
            faults_on: false,
            in_flight: 0,
            trace: Trace::new(keep_trace_text),
            stats: Stats::default(),
            load_delay_ms: 1,
            genesis_opened: None,
            notices: Vec::new(),
            messages: Vec::new(),
        };
        for index in 0..cluster.nodes.len() {
            cluster.boot(index);
        }
        cluster
    }

    // ----- topology -------------------------------------------------------------------------

    /// The current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Indexes of every acceptor.
    pub fn acceptors(&self) -> Vec<usize> {
        self.indexes_of(Role::Acceptor)
    }

    /// Indexes of every device.
    pub fn devices(&self) -> Vec<usize> {
        self.indexes_of(Role::Device)
    }

    fn indexes_of(&self, role: Role) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].role == role).collect()
    }

    /// The node id at `index`.
    pub fn id(&self, index: usize) -> NodeId {
        self.nodes[index].id
    }

    /// Whether the node is running.
    pub fn is_up(&self, index: usize) -> bool {
        self.nodes[index].machine.is_some()
    }

    /// The device at `index`, if it is a running device.
    pub fn device(&self, index: usize) -> Option<&Device> {
        match &self.nodes[index].machine {
            Some(Machine::Device(device)) => Some(device),
            _ => None,
        }
    }

    /// The acceptor at `index`, if it is a running acceptor.
    pub fn acceptor(&self, index: usize) -> Option<&Acceptor> {
        match &self.nodes[index].machine {
            Some(Machine::Acceptor(acceptor)) => Some(acceptor),
            _ => None,
        }
    }

    /// A genesis naming the first `acceptors` acceptors and every device.
    pub fn genesis(&self, nonce: u64, acceptors: usize) -> GroupGenesis {
        let acceptors = self.acceptors().iter().take(acceptors).map(|i| self.id(*i)).collect();
        let acceptors = plait_kernel::AcceptorSet::new(acceptors, self.config.acceptors_max).expect("at least one acceptor");
        let mut proposers: Vec<NodeId> = self.devices().iter().map(|i| self.id(*i)).collect();
        proposers.sort_unstable();
        GroupGenesis { nonce, acceptors, proposers, group_info: None }
    }

    /// Registers a group some device created (MLS), so the checker judges its votes.
    pub fn know_group(&mut self, genesis: &GroupGenesis) {
        self.checker.know_group(genesis);
    }

    /// Opens the group on every device now. Opening is idempotent, so scenarios repeat it the way
    /// an app opens its documents at every start.
    pub fn open_group(&mut self, genesis: &GroupGenesis) -> GroupId {
        self.checker.know_group(genesis);
        self.genesis_opened = Some(genesis.clone());
        for device in self.devices() {
            self.command(device, Command::OpenGroup { genesis: genesis.clone() });
        }
        genesis.group_id()
    }

    // ----- the harness verbs ----------------------------------------------------------------

    /// Delivers a command to a node at the current time (dropped if the node is down).
    pub fn command(&mut self, node: usize, command: Command) {
        self.command_at(self.now, node, command);
    }

    /// Delivers a command to a node at time `at`.
    pub fn command_at(&mut self, at: Time, node: usize, command: Command) {
        self.schedule(at, SimEvent::Command { node, command });
    }

    /// Cuts every link between the two sides.
    pub fn partition(&mut self, side: &[usize], other: &[usize]) {
        self.network.partition(side, other);
        self.trace.line(|| format!("{} partition {side:?} | {other:?}", self.now));
    }

    /// Cuts one node off from everyone.
    pub fn isolate(&mut self, node: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|i| *i != node).collect();
        self.partition(&[node], &others);
    }

    /// Makes an acceptor Byzantine (see `byzantine.rs`): from now on it lies.
    pub fn make_byzantine(&mut self, node: usize) {
        assert_eq!(self.nodes[node].role, Role::Acceptor, "only acceptors are Byzantine here");
        self.nodes[node].liar = Some(byzantine::Liar::default());
        let id = self.nodes[node].id;
        self.checker.byzantine.insert(id);
        self.trace.line(|| format!("{} {id} turns Byzantine", self.now));
    }

    /// Removes every partition and clog.
    pub fn heal(&mut self) {
        self.network.heal();
        self.trace.line(|| format!("{} heal", self.now));
    }

    /// Turns random fault injection on (the safety phase).
    pub fn start_faults(&mut self) {
        self.faults_on = true;
        let at = self.now.plus_ms(self.rng.between(1, self.profile.fault_interval_ms));
        self.schedule(at, SimEvent::Fault);
    }

    /// Starts the liveness phase: no more faults, a healed and calm network, every node that is
    /// not lost restarted.
    pub fn stop_faults_and_heal(&mut self) {
        self.faults_on = false;
        self.network.heal();
        self.network.calm();
        for node in 0..self.nodes.len() {
            if !self.nodes[node].lost {
                self.restart(node, false);
            }
        }
        if let Some(genesis) = self.genesis_opened.clone() {
            self.open_group(&genesis);
        }
        self.trace.line(|| format!("{} liveness phase: faults off, network healed", self.now));
    }

    /// Processes events up to and including time `until`, stopping at the first violation.
    pub fn run_until(&mut self, until: Time) {
        while self.checker.violation().is_none() {
            match self.queue.peek() {
                Some(Reverse(next)) if next.at <= until => {}
                _ => break,
            }
            if !self.step() {
                break;
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs until nothing but periodic timers is left: no frame, command or load pending and
    /// every device idle. Returns false if `deadline` came first.
    pub fn run_until_idle(&mut self, deadline: Time) -> bool {
        self.run_until_condition(deadline, |cluster| {
            cluster.in_flight == 0
                && cluster.devices().iter().all(|d| cluster.device(*d).is_none_or(|dev| dev.groups().all(|g| g.is_idle())))
        })
    }

    /// Runs until `done` holds (checked after each event) or `deadline` passes.
    pub fn run_until_condition(&mut self, deadline: Time, done: impl Fn(&Cluster) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.checker.violation().is_some() || self.stats.events >= EVENTS_PER_RUN_MAX {
                return false;
            }
            match self.queue.peek() {
                Some(Reverse(next)) if next.at <= deadline => {}
                _ => return false,
            }
            self.step();
        }
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }

    /// The readable trace, if kept.
    pub fn trace_text(&self) -> Option<&[String]> {
        self.trace.text()
    }

    // ----- the event loop -------------------------------------------------------------------

    fn schedule(&mut self, at: Time, event: SimEvent) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if matches!(event, SimEvent::Deliver { .. } | SimEvent::Command { .. } | SimEvent::Loaded { .. } | SimEvent::Flush { .. })
        {
            self.in_flight += 1;
        }
        self.queue.push(Reverse(Scheduled { at, seq, event }));
    }

    /// Processes the next event. Returns false if there was none.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else { return false };
        debug_assert!(at >= self.now, "time never runs backwards");
        self.now = at;
        self.stats.events += 1;
        match event {
            SimEvent::Deliver { from, to, frame } => {
                self.in_flight -= 1;
                if self.network.is_blocked(from, to) {
                    self.stats.lost += 1;
                } else {
                    let from_id = self.nodes[from].id;
                    self.input(to, 1, Input::Received { from: from_id, frame });
                }
            }
            SimEvent::Timer { node, boot, generation } => {
                let current = self.nodes[node].boot == boot && self.nodes[node].timer_generation == generation;
                if current {
                    self.nodes[node].timer = None;
                    self.count_timer(node);
                    self.input(node, 2, Input::Timer);
                }
            }
            SimEvent::Command { node, command } => {
                self.in_flight -= 1;
                self.input(node, 3, Input::Command(command));
            }
            SimEvent::Loaded { node, boot, request, result } => {
                self.in_flight -= 1;
                if self.nodes[node].boot == boot {
                    self.input(node, 4, Input::Loaded { request, result });
                }
            }
            SimEvent::Restart { node, wipe } => {
                if self.faults_on {
                    self.restart(node, wipe && self.may_wipe(node));
                }
            }
            SimEvent::Fault => self.inject_fault(),
            SimEvent::Flush { node, boot } => {
                self.in_flight -= 1;
                if self.nodes[node].boot == boot {
                    self.nodes[node].flush_due = false;
                    self.input(node, 5, Input::Flush);
                }
            }
        }
        true
    }

    fn input(&mut self, index: usize, kind: u8, input: Input) {
        let now = self.now;
        let id = self.nodes[index].id;
        let heard_by_liar = match (&self.nodes[index].liar, &input) {
            (Some(_), Input::Received { from, frame }) => Some((*from, frame.clone())),
            _ => None,
        };
        let Some(machine) = self.nodes[index].machine.as_mut() else { return };
        if self.trace.wants_text() {
            let text = describe_input(&input);
            self.trace.line(|| format!("{now} {id} <- {text}"));
        }
        record_input(&mut self.trace, now, id, kind, &input);
        let received = match &input {
            Input::Received { frame, .. } => frame.len() as u64,
            _ => 0,
        };
        let started = std::time::Instant::now();
        let outputs = machine.handle(now, input);
        let node = &mut self.nodes[index];
        node.handle_nanos += started.elapsed().as_nanos() as u64;
        node.received_bytes += received;
        if let Some((from, frame)) = heard_by_liar {
            self.liar_receives(index, from, &frame);
        }
        let wants_flush = outputs.wants_flush;
        let rebuild = outputs.rebuild_from_storage;
        let boot = self.nodes[index].boot;
        self.execute(index, outputs);
        if rebuild && self.nodes[index].machine.is_some() && self.nodes[index].boot == boot {
            // The node asked to be built again from its disk (a contained panic), as a driver
            // does at once: what `execute` persisted is durable already.
            self.trace.line(|| format!("{now} {} REBUILD", self.nodes[index].id));
            self.crash(index);
            self.restart(index, false);
        }
        // After what is due now, as a driver flushes once the inputs waiting are handled.
        let node = &mut self.nodes[index];
        if wants_flush && !node.flush_due && node.machine.is_some() && node.boot == boot {
            node.flush_due = true;
            self.schedule(now, SimEvent::Flush { node: index, boot });
        }
        self.check(index);
    }

    /// Carries out effects in order; `Persist` is applied before anything after it runs.
    fn execute(&mut self, index: usize, outputs: Outputs) {
        let now = self.now;
        let id = self.nodes[index].id;
        let mut writes_left = outputs.effects.iter().filter(|effect| matches!(effect, Effect::Persist(_))).count();
        let mut told_before_writing = false;
        for effect in outputs.effects {
            if self.faults_on && self.profile.crashes && self.rng.happens(self.profile.crash_mid_effects) {
                if told_before_writing && writes_left > 0 {
                    // The app heard of an update its node then lost: a restart must read it again.
                    cov_mark::hit!(node_crashes_after_telling_its_app_before_its_write);
                }
                self.crash(index);
                self.schedule_restart(index);
                return;
            }
            match effect {
                Effect::Persist(batch) => {
                    writes_left -= 1;
                    if self.nodes[index].role == Role::Acceptor {
                        self.checker.on_acceptor_persist(now, id, &batch, self.config.write_quorum);
                    }
                    self.nodes[index].disk.persist(&batch);
                    let bytes = postcard::to_allocvec(&trace_form(&batch)).expect("batches encode");
                    self.trace.record(now, id, 20, &bytes);
                    self.trace.line(|| format!("{now} {id} persist {batch:?}"));
                }
                Effect::Send { to, frame } => self.send(index, to, frame),
                Effect::Load { request, query } => {
                    let result = query.answer(self.nodes[index].disk.durable());
                    let boot = self.nodes[index].boot;
                    self.schedule(now.plus_ms(self.load_delay_ms), SimEvent::Loaded { node: index, boot, request, result });
                    self.trace.record(now, id, 22, &request.0.to_le_bytes());
                }
                Effect::Notify(event) => {
                    told_before_writing |= !event.waits_for_writes();
                    self.observe(index, event);
                }
            }
        }
        self.set_timer(index, outputs.wake_at);
    }

    fn send(&mut self, from: usize, to: NodeId, frame: Vec<u8>) {
        if self.nodes[from].liar.is_some() {
            for frame in self.corrupt(from, frame) {
                self.deliver_frame(from, to, frame);
            }
            return;
        }
        let now = self.now;
        let id = self.nodes[from].id;
        self.checker.on_send(now, id, &frame, self.nodes[from].disk.durable());
        self.deliver_frame(from, to, frame);
    }

    /// Puts a frame on the network (the checker has seen it, or its sender is Byzantine).
    fn deliver_frame(&mut self, from: usize, to: NodeId, frame: Vec<u8>) {
        let now = self.now;
        let id = self.nodes[from].id;
        self.trace.record(now, id, 21, &frame);
        self.stats.sent += 1;
        let Some(target) = self.nodes.iter().position(|n| n.id == to) else {
            self.stats.lost += 1;
            return;
        };
        if self.nodes[target].role == Role::Acceptor && contains(&frame, PLAINTEXT_MARKER) {
            let detail = format!("{id} sent {to} a frame holding the workload's plaintext marker");
            self.checker.fail(now, "no-acceptor-sees-plaintext", detail);
        }
        if self.nodes[from].role == Role::Acceptor && self.nodes[from].liar.is_none() {
            self.check_relay(from, &frame);
        }
        self.trace.line(|| {
            let text = plait_kernel::wire::decode(&frame, usize::MAX).map(|e| format!("{:?}", e.message)).unwrap_or_default();
            format!("{now} {id} -> {to} {text}")
        });
        match self.network.fate(&mut self.rng, from, target) {
            Fate::Lost => self.stats.lost += 1,
            Fate::Delivered(delays) => {
                let (last, copies) = delays.split_last().expect("a delivered frame has at least one delay");
                for delay in copies {
                    self.schedule(now.plus_ms(*delay), SimEvent::Deliver { from, to: target, frame: frame.clone() });
                }
                self.schedule(now.plus_ms(*last), SimEvent::Deliver { from, to: target, frame });
            }
        }
    }

    /// Fails the run if the node fired more than [`TIMERS_PER_SECOND_MAX`] timers this second.
    fn count_timer(&mut self, index: usize) {
        let second = self.now.0 / 1_000;
        let fired = &mut self.nodes[index].timers_fired;
        *fired = if fired.0 == second { (second, fired.1 + 1) } else { (second, 1) };
        if fired.1 == TIMERS_PER_SECOND_MAX + 1 {
            let (now, id) = (self.now, self.nodes[index].id);
            let detail =
                format!("{id} fired more than {TIMERS_PER_SECOND_MAX} timers within a second: a deadline stays in the past");
            self.checker.fail(now, "timers-never-spin", detail);
        }
    }

    fn set_timer(&mut self, index: usize, wake_at: Option<Time>) {
        let Some(wake_at) = wake_at else {
            self.nodes[index].timer = None;
            return;
        };
        // Timers fire strictly later than now so a node cannot spin the clock in place.
        let at = wake_at.max(self.now.plus_ms(1));
        if self.nodes[index].timer.is_some_and(|(t, _)| t == at) {
            return;
        }
        let node = &mut self.nodes[index];
        node.timer_generation += 1;
        node.timer = Some((at, node.timer_generation));
        let (boot, generation) = (node.boot, node.timer_generation);
        self.schedule(at, SimEvent::Timer { node: index, boot, generation });
    }

    fn check(&mut self, index: usize) {
        let now = self.now;
        if self.nodes[index].liar.is_some() {
            return;
        }
        match &self.nodes[index].machine {
            Some(Machine::Acceptor(acceptor)) => self.checker.check_acceptor(now, acceptor),
            Some(Machine::Device(device)) => self.checker.check_device(now, device),
            None => {}
        }
    }
}

impl SimNode {
    fn new(id: NodeId, role: Role) -> SimNode {
        SimNode {
            id,
            role,
            machine: None,
            disk: Disk::default(),
            boot: 0,
            timer: None,
            timer_generation: 0,
            timers_fired: (0, 0),
            flush_due: false,
            lost: false,
            liar: None,
            handle_nanos: 0,
            received_bytes: 0,
        }
    }
}
