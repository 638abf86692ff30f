//! The driver: one tokio task around one kernel node.
//!
//! It feeds the node its inputs (frames, commands, timers, finished loads) with the time read
//! from a [`Clock`], and carries out the effects in order. `Persist` is a barrier: the effects
//! after it run only once the batch is durable. Group commit: the driver handles every input
//! already waiting (up to `INPUTS_PER_COMMIT_MAX`) before one commit (one fsync) of all their
//! writes, then lets out the sends and notifications that waited for it, in order. That only
//! holds sends back, never lets one out early. A load commits first and is answered from
//! storage as the node's next input; an inspection by the host commits first too.
//!
//! If storage fails the driver stops: an fsync that failed leaves unknown what is durable, and
//! continuing could send a promise the disk does not hold. The host restarts the node.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use plait_kernel::{Command, Effect, Event, Input, Node, Outputs, Time, WriteBatch, wire};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::Clock;
use crate::links::{Inbound, LinkLimits, LinkStats, Links};
use crate::network::Network;
use crate::storage::{Storage, StorageError};

/// Requests from the host, waiting for the driver.
pub const REQUESTS_QUEUED_MAX: usize = 256;
/// Events kept for slow subscribers; one that falls further behind misses some (and is told).
pub const EVENTS_BUFFERED_MAX: usize = 4096;
/// Inputs queued inside one step (answers to loads) before the driver stops with an error.
pub const PENDING_INPUTS_MAX: usize = 1024;
/// Inputs handled before one commit (group commit across inputs).
pub const INPUTS_PER_COMMIT_MAX: usize = 64;

enum Next<K> {
    Request(Request<K>),
    Inbound(Inbound),
    Timer,
}

type Inspection<K> = Box<dyn FnOnce(&K) + Send>;

enum Request<K> {
    Command(Command),
    Inspect(Inspection<K>),
    /// Answered once everything handled before it is durable (after the round's commit).
    Durable(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// What the driver did, for status and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DriverStatus {
    /// Inputs handled.
    pub inputs: u64,
    /// Storage commits (each one fsync).
    pub commits: u64,
    /// Batches written (several may share a commit).
    pub batches: u64,
    /// Records written.
    pub records: u64,
    /// Time spent in commits, in microseconds.
    pub commit_micros_total: u64,
    /// The slowest commit, in microseconds.
    pub commit_micros_max: u64,
    /// Commits by how many batches they carried: 1, 2–3, 4–7, 8 or more.
    pub batches_per_commit: [u64; 4],
    /// Frames sent, by kernel message kind (Paxos promises and accepts among them).
    pub sent_by_kind: std::collections::BTreeMap<u32, u64>,
    /// Why the driver stopped, if it did.
    pub stopped: Option<String>,
}

/// The driver stopped on a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Storage failed; restart the node (it resumes from what is durable).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node asked for more loads in one step than the driver keeps.
    #[error("more than {PENDING_INPUTS_MAX} inputs pending in one step")]
    TooManyPendingInputs,
}

/// The host's handle on a running driver.
pub struct DriverHandle<K> {
    requests: mpsc::Sender<Request<K>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<DriverStatus>>,
    links: LinkStatsSource,
}

impl<K> Clone for DriverHandle<K> {
    fn clone(&self) -> Self {
        DriverHandle {
            requests: self.requests.clone(),
            events: self.events.clone(),
            status: self.status.clone(),
            links: self.links.clone(),
        }
    }
}

type LinkStatsSource = Arc<dyn Fn() -> LinkStats + Send + Sync>;

/// The driver is gone (stopped, or failed: see its join handle).
#[derive(Debug, thiserror::Error)]
#[error("the node is not running")]
pub struct NotRunning;

impl<K: Send + 'static> DriverHandle<K> {
    /// Hands the node a command; its answer comes as events.
    pub async fn command(&self, command: Command) -> Result<(), NotRunning> {
        self.requests.send(Request::Command(command)).await.map_err(|_| NotRunning)
    }

    /// Reads the node's state between two inputs.
    pub async fn inspect<R: Send + 'static>(&self, read: impl FnOnce(&K) -> R + Send + 'static) -> Result<R, NotRunning> {
        let (answer, answered) = oneshot::channel();
        let read: Inspection<K> = Box::new(move |node| {
            let _ = answer.send(read(node));
        });
        self.requests.send(Request::Inspect(read)).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Returns once every command sent before is durable and its events are out. Unlike an
    /// inspection it does not force a commit of its own: concurrent callers share one.
    pub async fn durable(&self) -> Result<(), NotRunning> {
        let (answer, answered) = oneshot::channel();
        self.requests.send(Request::Durable(answer)).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// What the driver did so far.
    pub fn status(&self) -> DriverStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// The link layer's counters.
    pub fn link_stats(&self) -> LinkStats {
        (self.links)()
    }

    /// Stops the driver after the input it is handling; returns once it stopped.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// One node, its storage and its links.
pub struct Driver<K, N: Network, S> {
    node: K,
    clock: Clock,
    storage: S,
    links: Links<N>,
    inbound: mpsc::Receiver<Inbound>,
    requests: mpsc::Receiver<Request<K>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<DriverStatus>>,
    wake_at: Option<Time>,
    pending: VecDeque<Input>,
    /// Writes of this round, not durable yet.
    uncommitted: Vec<WriteBatch>,
    /// Sends and notifications waiting for `uncommitted` to be durable, in order.
    held: Vec<Effect>,
    /// Hosts waiting for this round's commit (bounded by `REQUESTS_QUEUED_MAX` per round).
    waiting: Vec<oneshot::Sender<()>>,
}

impl<K: Node + Send + 'static, N: Network, S: Storage> Driver<K, N, S> {
    /// Starts driving `node`, first carrying out the outputs its constructor returned. `seed`
    /// drives the links' backoff jitter.
    pub fn start(
        node: K,
        first: Outputs,
        clock: Clock,
        network: N,
        storage: S,
        limits: LinkLimits,
        seed: u64,
    ) -> (DriverHandle<K>, Links<N>, tokio::task::JoinHandle<Result<(), DriverError>>) {
        let (links, inbound) = Links::start(network, limits, seed);
        let (request_sender, requests) = mpsc::channel(REQUESTS_QUEUED_MAX);
        let (events, _) = broadcast::channel(EVENTS_BUFFERED_MAX);
        let status = Arc::new(Mutex::new(DriverStatus::default()));
        let source = links.clone();
        let handle = DriverHandle {
            requests: request_sender,
            events: events.clone(),
            status: status.clone(),
            links: Arc::new(move || source.stats()),
        };
        let driver = Driver {
            node,
            clock,
            storage,
            links: links.clone(),
            inbound,
            requests,
            events,
            status: status.clone(),
            wake_at: None,
            pending: VecDeque::new(),
            uncommitted: Vec::new(),
            held: Vec::new(),
            waiting: Vec::new(),
        };
        let task = tokio::spawn(async move {
            let links = driver.links.clone();
            let result = driver.run(first).await;
            links.close();
            if let Err(error) = &result {
                status.lock().expect("status lock").stopped = Some(error.to_string());
            }
            result
        });
        (handle, links, task)
    }

    async fn run(mut self, first: Outputs) -> Result<(), DriverError> {
        self.carry_out(first).await?;
        self.commit().await?;
        loop {
            // Timers fire strictly after now, so a node cannot spin the loop in place.
            let sleep_until = self.wake_at.map(|time| self.clock.instant_of(time.max(self.clock.now().plus_ms(1))));
            let first = tokio::select! {
                biased;
                request = self.requests.recv() => match request {
                    Some(request) => Next::Request(request),
                    None => return Ok(()),
                },
                Some(inbound) = self.inbound.recv() => Next::Inbound(inbound),
                _ = sleep(sleep_until) => Next::Timer,
            };
            // Group commit: handle what is already waiting (up to a limit) before one commit.
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(item) = next.take() {
                match item {
                    Next::Request(Request::Command(command)) => self.step(Input::Command(command)).await?,
                    Next::Request(Request::Inspect(read)) => {
                        // An inspection sees only durable state's consequences: commit first
                        // (the facade uses it as the barrier after a command).
                        self.commit().await?;
                        read(&self.node);
                    }
                    Next::Request(Request::Durable(answer)) => self.waiting.push(answer),
                    Next::Request(Request::Stop(done)) => {
                        self.commit().await?;
                        let _ = done.send(());
                        return Ok(());
                    }
                    Next::Inbound(Inbound::Frame { from, frame }) => self.step(Input::Received { from, frame }).await?,
                    Next::Timer => {
                        self.wake_at = None;
                        self.step(Input::Timer).await?;
                    }
                }
                handled += 1;
                if handled < INPUTS_PER_COMMIT_MAX {
                    next = self.ready();
                }
            }
            self.commit().await?;
        }
    }

    /// An input that is waiting already, without waiting for one.
    fn ready(&mut self) -> Option<Next<K>> {
        if let Ok(request) = self.requests.try_recv() {
            return Some(Next::Request(request));
        }
        if let Ok(inbound) = self.inbound.try_recv() {
            return Some(Next::Inbound(inbound));
        }
        let due = self.wake_at.is_some_and(|time| time < self.clock.now());
        due.then_some(Next::Timer)
    }

    /// Handles one input and every input its effects lead to (answers to loads).
    async fn step(&mut self, input: Input) -> Result<(), DriverError> {
        self.pending.push_back(input);
        while let Some(input) = self.pending.pop_front() {
            let outputs = self.node.handle(self.clock.now(), input);
            self.status.lock().expect("status lock").inputs += 1;
            self.carry_out(outputs).await?;
        }
        Ok(())
    }

    /// Carries out effects in order. Writes collect into the round's commit; every later send
    /// and notification waits for that commit (holding a send back is always safe: the network
    /// may delay it anyway). A load commits first, so it reads everything written before it.
    async fn carry_out(&mut self, outputs: Outputs) -> Result<(), DriverError> {
        let Outputs { effects, wake_at } = outputs;
        // The node's latest answer replaces its earlier one: each `wake_at` covers all its timers.
        self.wake_at = wake_at;
        for effect in effects {
            match effect {
                Effect::Persist(batch) => self.uncommitted.push(batch),
                Effect::Load { request, query } => {
                    self.commit().await?;
                    let result = self.storage.answer(&query).await?;
                    if self.pending.len() >= PENDING_INPUTS_MAX {
                        return Err(DriverError::TooManyPendingInputs);
                    }
                    self.pending.push_back(Input::Loaded { request, result });
                }
                effect if self.uncommitted.is_empty() => self.release(effect),
                effect => self.held.push(effect),
            }
        }
        Ok(())
    }

    /// Makes the round's writes durable in one commit, then lets out what waited for them.
    async fn commit(&mut self) -> Result<(), DriverError> {
        if !self.uncommitted.is_empty() {
            let batches = std::mem::take(&mut self.uncommitted);
            self.persist(&batches).await?;
        }
        for effect in std::mem::take(&mut self.held) {
            self.release(effect);
        }
        for answer in std::mem::take(&mut self.waiting) {
            let _ = answer.send(());
        }
        Ok(())
    }

    fn release(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, frame } => {
                if let Some((_, kind)) = wire::peek(&frame) {
                    *self.status.lock().expect("status lock").sent_by_kind.entry(kind).or_default() += 1;
                }
                self.links.send(to, &frame);
            }
            Effect::Notify(event) => {
                let _ = self.events.send(event);
            }
            Effect::Persist(_) | Effect::Load { .. } => unreachable!("writes and loads are not held"),
        }
    }

    async fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), DriverError> {
        let started = tokio::time::Instant::now();
        self.storage.apply(batches).await?;
        let micros = started.elapsed().as_micros() as u64;
        let mut status = self.status.lock().expect("status lock");
        status.commits += 1;
        status.batches += batches.len() as u64;
        status.records += batches.iter().map(|batch| batch.records.len() as u64).sum::<u64>();
        status.commit_micros_total += micros;
        status.commit_micros_max = status.commit_micros_max.max(micros);
        let bucket = match batches.len() {
            1 => 0,
            2..=3 => 1,
            4..=7 => 2,
            _ => 3,
        };
        status.batches_per_commit[bucket] += 1;
        Ok(())
    }
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(instant) => tokio::time::sleep_until(instant).await,
        None => std::future::pending().await,
    }
}
