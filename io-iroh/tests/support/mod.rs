//! One `Cluster` harness for the turmoil scenarios: three acceptors and a few devices, each a
//! turmoil host running the real [`Driver`] over [`TurmoilNetwork`], with a disk that outlives
//! the host's crashes. A scenario is a `Script` run as a turmoil client: it commands devices,
//! partitions hosts and asks the harness to crash and restart them, all on virtual time.
//!
//! Everything is seeded (turmoil's network, the nodes, the links' jitter) and nothing reads the
//! wall clock, so a seed replays the same run. A failure prints the seed and the trace's tail.

pub mod turmoil_net;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plait_io_iroh::clock::Clock;
use plait_io_iroh::links::{LinkLimits, LinkStats};
use plait_io_iroh::storage::{MemoryStorage, Storage, StorageError};
use plait_io_iroh::{Driver, DriverHandle};
use plait_kernel::mls::Role;
use plait_kernel::{
    Acceptor, AcceptorSet, Command, Config, Device, Event, GroupId, LoadQuery, LoadResult, Node, NodeId, Outputs, ValidConfig,
    WriteBatch,
};
use tokio::sync::broadcast;

use turmoil_net::{Tap, TurmoilNetwork, TurmoilOptions};

/// Acceptors in every cluster (n1..n3).
pub const ACCEPTORS: u64 = 3;
/// Virtual milliseconds between two polls of a waiting script.
pub const POLL_MS: u64 = 25;
/// Trace lines printed when a run fails.
pub const TRACE_TAIL_LINES: usize = 60;

/// The `index`-th acceptor (from 1): n1, n2, n3.
pub fn acceptor(index: u64) -> NodeId {
    assert!((1..=ACCEPTORS).contains(&index), "acceptors are n1..n3");
    NodeId::from_index(index)
}

/// The `index`-th device (from 1): n101, n102, ...
pub fn device(index: u64) -> NodeId {
    NodeId::from_index(100 + index)
}

/// The rogue's id (it is in the address book, so its hello is accepted).
pub fn rogue() -> NodeId {
    NodeId::from_index(66)
}

/// The scenario's seed: `default`, unless `PLAIT_TURMOIL_SEED` names another (to explore).
pub fn seed(default: u64) -> u64 {
    std::env::var("PLAIT_TURMOIL_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(default)
}

/// The kernel's configuration for every node.
pub fn config() -> ValidConfig {
    Config::default().validate().expect("the default config is valid")
}

/// The group's acceptors.
pub fn acceptor_set() -> AcceptorSet {
    AcceptorSet::new((1..=ACCEPTORS).map(acceptor).collect(), config().acceptors_max).expect("three acceptors")
}

/// Link limits scaled down so reconnects and backoffs happen within a short run.
pub fn link_limits() -> LinkLimits {
    LinkLimits { backoff_ms_min: 50, backoff_ms_max: 800, dial_timeout_ms: 300, write_timeout_ms: 300, ..LinkLimits::default() }
}

/// What a scenario's tap is shown: one kernel frame, as its sender writes it to a link, and the
/// sender's disk at that moment.
pub struct Sent<'a> {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The kernel frame.
    pub frame: &'a [u8],
    /// The sender's durable state.
    pub durable: &'a MemoryStorage,
}

/// Watches every kernel frame sent.
pub type SendTap = Arc<dyn Fn(Sent<'_>) + Send + Sync>;

/// How a cluster is built.
#[derive(Clone)]
pub struct Options {
    /// Seeds turmoil, every node and every link.
    pub seed: u64,
    /// Devices n101.. (besides the three acceptors).
    pub devices: u64,
    /// Most virtual milliseconds a segment spends on a healthy link.
    pub latency_ms_max: u64,
    /// Chance that sending a segment breaks its link (turmoil's random partitions).
    pub fail_rate: f64,
    /// Chance that sending a segment over a broken link repairs it.
    pub repair_rate: f64,
    /// Virtual milliseconds every commit takes before it is durable.
    pub apply_delay_ms: u64,
    /// The longest run, in virtual milliseconds.
    pub duration_ms: u64,
    /// Whether the rogue (n66, host "rogue") is in the address book.
    pub rogue: bool,
    /// Shown every kernel frame sent.
    pub tap: Option<SendTap>,
}

impl Options {
    /// A calm network: 2 devices, up to 20 ms latency, no loss, instant disks.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            devices: 2,
            latency_ms_max: 20,
            fail_rate: 0.0,
            repair_rate: 1.0,
            apply_delay_ms: 0,
            duration_ms: 90_000,
            rogue: false,
            tap: None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "seed={} devices={} latency_ms_max={} fail_rate={} repair_rate={} apply_delay_ms={} duration_ms={}",
            self.seed, self.devices, self.latency_ms_max, self.fail_rate, self.repair_rate, self.apply_delay_ms, self.duration_ms
        )
    }
}

/// A running node, as the registry holds it.
pub struct Booted<K> {
    /// Its driver.
    pub handle: DriverHandle<K>,
    /// Its network (for the accepting side's counters).
    pub network: TurmoilNetwork,
    /// How many times the host booted, this boot included.
    pub boots: u64,
}

impl<K> Clone for Booted<K> {
    fn clone(&self) -> Self {
        Booted { handle: self.handle.clone(), network: self.network.clone(), boots: self.boots }
    }
}

enum Fault {
    Crash(String),
    Restart(String),
}

#[derive(Default)]
struct Running {
    acceptors: BTreeMap<NodeId, Booted<Acceptor>>,
    devices: BTreeMap<NodeId, Booted<Device>>,
    boots: BTreeMap<NodeId, u64>,
}

/// What the hosts, the script and the harness share.
pub struct Registry {
    options: Options,
    book: Arc<BTreeMap<NodeId, String>>,
    disks: BTreeMap<NodeId, MemoryStorage>,
    running: Mutex<Running>,
    faults: Mutex<VecDeque<Fault>>,
    trace: Mutex<Vec<String>>,
}

impl Registry {
    fn name(&self, node: NodeId) -> String {
        self.book.get(&node).cloned().expect("a known node")
    }

    fn record(&self, line: String) {
        self.trace.lock().expect("trace lock").push(format!("{:>7} ms {line}", now_ms()));
    }

    fn network_tap(&self) -> Option<Tap> {
        let tap = self.options.tap.clone()?;
        let disks = self.disks.clone();
        Some(Arc::new(move |from, to, frame| {
            let durable = disks.get(&from).expect("every sender has a disk");
            tap(Sent { from, to, frame, durable });
        }))
    }
}

/// The cluster: the simulation and what its hosts share.
pub struct Cluster {
    sim: turmoil::Sim<'static>,
    registry: Arc<Registry>,
}

impl Cluster {
    /// Builds the simulation and registers every host (they boot on the first step).
    pub fn new(options: Options) -> Cluster {
        let mut book = BTreeMap::new();
        for index in 1..=ACCEPTORS {
            book.insert(acceptor(index), format!("acceptor-{index}"));
        }
        for index in 1..=options.devices {
            book.insert(device(index), format!("device-{index}"));
        }
        if options.rogue {
            book.insert(rogue(), "rogue".to_owned());
        }
        let disks = book.keys().map(|node| (*node, MemoryStorage::default())).collect();
        let sim = turmoil::Builder::new()
            .rng_seed(options.seed)
            .simulation_duration(Duration::from_millis(options.duration_ms))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(options.latency_ms_max))
            .fail_rate(options.fail_rate)
            .repair_rate(options.repair_rate)
            .build();
        let registry = Arc::new(Registry {
            options,
            book: Arc::new(book),
            disks,
            running: Mutex::default(),
            faults: Mutex::default(),
            trace: Mutex::default(),
        });
        let mut cluster = Cluster { sim, registry };
        for index in 1..=ACCEPTORS {
            let registry = cluster.registry.clone();
            cluster.sim.host(format!("acceptor-{index}"), move || boot_acceptor(registry.clone(), acceptor(index)));
        }
        for index in 1..=cluster.registry.options.devices {
            let registry = cluster.registry.clone();
            cluster.sim.host(format!("device-{index}"), move || boot_device(registry.clone(), device(index)));
        }
        cluster
    }

    /// Adds a client (a rogue, say) that runs beside the script.
    pub fn client(&mut self, name: &str, software: impl Future<Output = turmoil::Result> + 'static) {
        self.sim.client(name, software);
    }

    /// Runs `script` to its end, crashing and restarting hosts when it asks; returns its value
    /// and the trace. Panics with the seed and the trace's tail if anything fails.
    pub fn run<T: 'static, Fut>(mut self, script: impl FnOnce(Script) -> Fut) -> (T, Vec<String>)
    where
        Fut: Future<Output = turmoil::Result<T>> + 'static,
    {
        let value = Rc::new(RefCell::new(None));
        let slot = value.clone();
        let future = script(Script { registry: self.registry.clone() });
        self.sim.client("script", async move {
            let result = future.await?;
            *slot.borrow_mut() = Some(result);
            Ok(())
        });
        loop {
            match self.sim.step() {
                Ok(finished) => {
                    self.apply_faults();
                    if finished {
                        break;
                    }
                }
                Err(error) => panic!("{}: {error}\n{}", self.registry.options.describe(), self.trace_tail()),
            }
        }
        let trace = self.registry.trace.lock().expect("trace lock").clone();
        (value.take().expect("the script finished with a value"), trace)
    }

    fn apply_faults(&mut self) {
        let faults: Vec<Fault> = self.registry.faults.lock().expect("faults lock").drain(..).collect();
        for fault in faults {
            match fault {
                Fault::Crash(host) => self.sim.crash(host),
                Fault::Restart(host) => self.sim.bounce(host),
            }
        }
    }

    fn trace_tail(&self) -> String {
        let trace = self.registry.trace.lock().expect("trace lock");
        trace[trace.len().saturating_sub(TRACE_TAIL_LINES)..].join("\n")
    }
}

/// A scenario's view of the cluster, used from inside the turmoil client.
#[derive(Clone)]
pub struct Script {
    registry: Arc<Registry>,
}

impl Script {
    /// Virtual time since the simulation started.
    pub fn now_ms(&self) -> u64 {
        now_ms()
    }

    /// Lets `ms` of virtual time pass.
    pub async fn sleep_ms(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Notes a line in the trace.
    pub fn note(&self, line: impl std::fmt::Display) {
        self.registry.record(format!("script: {line}"));
    }

    /// The device's driver, once it booted.
    pub async fn device(&self, node: NodeId) -> DriverHandle<Device> {
        loop {
            if let Some(booted) = self.registry.running.lock().expect("running lock").devices.get(&node) {
                return booted.handle.clone();
            }
            self.sleep_ms(1).await;
        }
    }

    /// The acceptor's driver and network, once it booted.
    pub async fn acceptor(&self, node: NodeId) -> Booted<Acceptor> {
        loop {
            if let Some(booted) = self.registry.running.lock().expect("running lock").acceptors.get(&node) {
                return booted.clone();
            }
            self.sleep_ms(1).await;
        }
    }

    /// The device's link counters.
    pub async fn device_links(&self, node: NodeId) -> LinkStats {
        self.device(node).await.link_stats()
    }

    /// Crashes the node's host: its tasks and connections vanish; its disk stays.
    pub async fn crash(&self, node: NodeId) {
        {
            let mut running = self.registry.running.lock().expect("running lock");
            running.acceptors.remove(&node);
            running.devices.remove(&node);
        }
        self.note(format!("crash {node}"));
        self.registry.faults.lock().expect("faults lock").push_back(Fault::Crash(self.registry.name(node)));
        self.sleep_ms(1).await; // the harness crashes it between two steps
    }

    /// Restarts the node's host from its disk; returns once it booted again.
    pub async fn restart(&self, node: NodeId) {
        let boots = self.registry.running.lock().expect("running lock").boots.get(&node).copied().unwrap_or(0);
        self.note(format!("restart {node}"));
        self.registry.faults.lock().expect("faults lock").push_back(Fault::Restart(self.registry.name(node)));
        loop {
            self.sleep_ms(1).await;
            let running = self.registry.running.lock().expect("running lock");
            let booted = running.acceptors.get(&node).map(|b| b.boots).or_else(|| running.devices.get(&node).map(|b| b.boots));
            if booted.is_some_and(|now| now > boots) {
                return;
            }
        }
    }

    /// Cuts every link between the node's host and every other acceptor and device.
    pub fn isolate(&self, node: NodeId) {
        self.note(format!("isolate {node}"));
        for other in self.others(node) {
            turmoil::partition(self.registry.name(node), other);
        }
    }

    /// Repairs every link between the node's host and every other acceptor and device.
    pub fn heal(&self, node: NodeId) {
        self.note(format!("heal {node}"));
        for other in self.others(node) {
            turmoil::repair(self.registry.name(node), other);
        }
    }

    fn others(&self, node: NodeId) -> Vec<String> {
        self.registry.book.iter().filter(|(id, _)| **id != node && **id != rogue()).map(|(_, name)| name.clone()).collect()
    }

    /// The admin creates an MLS group on the three acceptors.
    pub async fn create_group(&self, admin: NodeId) -> turmoil::Result<GroupId> {
        let handle = self.device(admin).await;
        let mut events = handle.subscribe();
        handle.command(Command::CreateGroup { acceptors: acceptor_set(), nonce: 1, rotation_interval_ms: 0 }).await?;
        let group = wait_for(&mut events, 10_000, "the group to be created", |event| match event {
            Event::GroupCreated { group, .. } => Some(*group),
            _ => None,
        })
        .await?;
        self.note(format!("{admin} created {group:?}"));
        Ok(group)
    }

    /// The admin invites the joiner as a writer, and the joiner redeems the code.
    pub async fn invite(&self, admin: NodeId, joiner: NodeId, group: GroupId) -> turmoil::Result {
        let (admin_handle, joiner_handle) = (self.device(admin).await, self.device(joiner).await);
        let mut admin_events = admin_handle.subscribe();
        admin_handle.command(Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Writer }).await?;
        let code = wait_for(&mut admin_events, 10_000, "the invite", |event| match event {
            Event::InviteCreated { code, .. } => Some(code.clone()),
            _ => None,
        })
        .await?;
        let mut joiner_events = joiner_handle.subscribe();
        joiner_handle.command(Command::AcceptInvite { code, acceptors: acceptor_set() }).await?;
        wait_for(&mut joiner_events, 20_000, "the joiner to join", |event| match event {
            Event::Joined { group: joined, .. } if *joined == group => Some(()),
            _ => None,
        })
        .await?;
        self.note(format!("{joiner} joined {group:?}"));
        Ok(())
    }

    /// Inserts `text` at the start of the device's document.
    pub async fn edit(&self, node: NodeId, group: GroupId, text: &str) -> turmoil::Result {
        self.note(format!("{node} types {text:?}"));
        let command = Command::Edit { group, position: 0, delete: 0, insert: text.to_owned() };
        Ok(self.device(node).await.command(command).await?)
    }

    /// The device's text and its edits not yet stored by a write quorum.
    pub async fn document(&self, node: NodeId, group: GroupId) -> turmoil::Result<(String, usize)> {
        let view =
            self.device(node).await.inspect(move |device| device.group(group).map(|g| (g.text(), g.unsafe_messages()))).await?;
        match view {
            Some((Some(text), unsafe_messages)) => Ok((text, unsafe_messages)),
            _ => Err(format!("{node} has no document for {group:?}").into()),
        }
    }

    /// Waits until every device has the same text, containing every one of `snippets`, and
    /// no unsafe edit; returns the text.
    pub async fn converge(
        &self,
        devices: &[NodeId],
        group: GroupId,
        snippets: &[&str],
        within_ms: u64,
    ) -> turmoil::Result<String> {
        let deadline = self.now_ms() + within_ms;
        loop {
            let mut documents = Vec::new();
            for node in devices {
                documents.push(self.document(*node, group).await?);
            }
            let same = documents.windows(2).all(|pair| pair[0].0 == pair[1].0);
            let safe = documents.iter().all(|(_, unsafe_messages)| *unsafe_messages == 0);
            let complete = snippets.iter().all(|snippet| documents[0].0.contains(snippet));
            if same && safe && complete {
                self.note(format!("converged on {:?}", documents[0].0));
                return Ok(documents.swap_remove(0).0);
            }
            if self.now_ms() >= deadline {
                return Err(format!("no convergence within {within_ms} ms: {documents:?}").into());
            }
            self.sleep_ms(POLL_MS).await;
        }
    }

    /// Waits until `check` holds, polling every [`POLL_MS`].
    pub async fn until<F: Future<Output = turmoil::Result<bool>>>(
        &self,
        what: &str,
        within_ms: u64,
        mut check: impl FnMut() -> F,
    ) -> turmoil::Result {
        let deadline = self.now_ms() + within_ms;
        while !check().await? {
            if self.now_ms() >= deadline {
                return Err(format!("not within {within_ms} ms: {what}").into());
            }
            self.sleep_ms(POLL_MS).await;
        }
        Ok(())
    }
}

/// Waits for the first event `pick` recognises; a `CommandFailed` fails the wait.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    within_ms: u64,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> turmoil::Result<T> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::CommandFailed { error }) => return Err(format!("waiting for {what}: {error}").into()),
                Ok(event) => {
                    if let Some(value) = pick(&event) {
                        return Ok(value);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Err(format!("the node stopped before {what}").into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(within_ms), wait)
        .await
        .map_err(|_| -> Box<dyn std::error::Error> { format!("not within {within_ms} ms: {what}").into() })?
}

/// Virtual time since the simulation started (0 outside it).
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// A device's stable MLS identity seed.
pub fn identity_seed(node: NodeId) -> [u8; 32] {
    *blake3::hash(&node.0).as_bytes()
}

/// A seed for one boot of one node, derived from the run's seed.
fn boot_seed(seed: u64, node: NodeId, boots: u64) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes()).update(&node.0).update(&boots.to_le_bytes());
    u64::from_le_bytes(hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

async fn boot_acceptor(registry: Arc<Registry>, me: NodeId) -> turmoil::Result {
    let boots = next_boot(&registry, me);
    let seed = boot_seed(registry.options.seed, me, boots);
    let (node, first) = Acceptor::new(config(), me, seed, registry.disks[&me].restored());
    run_node(registry, me, node, first, seed, boots, |running, booted| {
        running.acceptors.insert(me, booted);
    })
    .await
}

async fn boot_device(registry: Arc<Registry>, me: NodeId) -> turmoil::Result {
    let boots = next_boot(&registry, me);
    let seed = boot_seed(registry.options.seed, me, boots);
    let (node, first) = Device::new(config(), me, identity_seed(me), seed, registry.disks[&me].restored());
    run_node(registry, me, node, first, seed, boots, |running, booted| {
        running.devices.insert(me, booted);
    })
    .await
}

fn next_boot(registry: &Registry, me: NodeId) -> u64 {
    let mut running = registry.running.lock().expect("running lock");
    let boots = running.boots.entry(me).or_default();
    *boots += 1;
    *boots
}

/// Runs one boot of a node until its driver stops (or the host crashes).
async fn run_node<K: Node + Send + 'static>(
    registry: Arc<Registry>,
    me: NodeId,
    node: K,
    first: Outputs,
    seed: u64,
    boots: u64,
    publish: impl FnOnce(&mut Running, Booted<K>),
) -> turmoil::Result {
    let network = TurmoilNetwork::bind(me, registry.book.clone(), TurmoilOptions::default(), registry.network_tap()).await?;
    let storage = SlowDisk { disk: registry.disks[&me].clone(), delay_ms: registry.options.apply_delay_ms };
    let clock = Clock::starting_at(now_ms());
    let (handle, _links, task) = Driver::start(node, first, clock, network.clone(), storage, link_limits(), seed);
    registry.record(format!("{me} boot {boots}"));
    tokio::spawn(record_events(registry.clone(), me, handle.subscribe()));
    publish(&mut registry.running.lock().expect("running lock"), Booted { handle, network, boots });
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("{me}'s driver stopped: {error}").into()),
        Err(error) => Err(format!("{me}'s driver panicked: {error}").into()),
    }
}

/// Copies a node's events into the trace, shortened.
async fn record_events(registry: Arc<Registry>, me: NodeId, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let line: String = format!("{event:?}").chars().take(120).collect();
                registry.record(format!("{me} {line}"));
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => registry.record(format!("{me} missed {missed} events")),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A `MemoryStorage` whose commits take `delay_ms` of virtual time before they are durable, as
/// an fsync does: a driver that sent before its persist finished would be caught in the act.
#[derive(Clone)]
pub struct SlowDisk {
    disk: MemoryStorage,
    delay_ms: u64,
}

impl SlowDisk {
    /// `disk`, each commit taking `delay_ms` of virtual time.
    pub fn new(disk: MemoryStorage, delay_ms: u64) -> SlowDisk {
        SlowDisk { disk, delay_ms }
    }
}

impl Storage for SlowDisk {
    async fn apply(&mut self, batches: &[WriteBatch]) -> Result<(), StorageError> {
        if self.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        }
        self.disk.apply(batches).await
    }

    async fn answer(&mut self, query: &LoadQuery) -> Result<LoadResult, StorageError> {
        self.disk.answer(query).await
    }

    async fn load(&mut self) -> Result<plait_kernel::Restored, StorageError> {
        self.disk.load().await
    }
}
