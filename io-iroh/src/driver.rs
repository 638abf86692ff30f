//! The driver: one tokio task around one kernel node.
//!
//! It feeds the node its inputs (frames, commands, timers, finished loads) with the time read
//! from a [`Clock`], and carries out the effects in order. `Persist` is a barrier: the effects
//! after it run only once the batch is durable.
//!
//! Group commit, pipelined: the inputs handled since the last commit started form a *round*.
//! Its writes go to storage as one commit (one fsync) while the driver goes on handling the
//! next round's inputs, so the node never idles on the disk; one commit is in flight at a time.
//! A round's sends and notifications are let out, in order, once its own commit and every
//! earlier one are durable. That only holds sends back, never lets one out early: a send of a
//! round with no writes still waits for the commit in flight, since it may depend on its
//! writes. The one exception is an event the kernel says need not wait
//! ([`Event::waits_for_writes`]: another member's update, which an acceptor already holds):
//! the app hears of it at once. A load settles every write first and is answered from storage
//! as the node's next input; an inspection by the host settles first too, a peek does not.
//!
//! If storage fails the driver stops: an fsync that failed leaves unknown what is durable, and
//! continuing could send a promise the disk does not hold. The host restarts the node.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use plait_kernel::{Command, Effect, Event, Input, Node, Outputs, Restored, Time, WriteBatch, wire};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::Clock;
use crate::links::{Inbound, LinkLimits, LinkStats, Links};
use crate::network::Network;
use crate::storage::{Storage, StorageError};
use crate::timeline::{Step, Timeline};

/// Requests from the host, waiting for the driver.
pub const REQUESTS_QUEUED_MAX: usize = 256;
/// Events kept for slow subscribers; one that falls further behind misses some (and is told).
pub const EVENTS_BUFFERED_MAX: usize = 4096;
/// Inputs queued inside one step (answers to loads) before the driver stops with an error.
pub const PENDING_INPUTS_MAX: usize = 1024;
/// Inputs handled in one pass before the driver looks at its commit in flight again.
pub const INPUTS_PER_PASS_MAX: usize = 64;
/// Inputs one round may take while the previous round's commit is in flight; beyond it the
/// driver waits for that commit (bounds the writes and sends a slow disk makes the node hold).
pub const INPUTS_PER_ROUND_MAX: usize = 1024;

enum Next<K, S> {
    Request(Request<K>),
    Inbound(Inbound),
    Timer,
    Committed(S, Result<(), StorageError>),
}

/// A commit under way. It owns the storage and hands it back when it ends. The driver polls it
/// between passes; the work itself runs on the storage's own thread (sqlx's worker runs a whole
/// commit from one request), so it goes on while the driver handles inputs.
type Commit<S> = Pin<Box<dyn Future<Output = (S, Result<(), StorageError>)> + Send>>;

/// A round: the writes of the inputs handled since the last commit started, and what waits
/// for them (and for every earlier commit) to be durable.
#[derive(Default)]
struct Round {
    /// Writes, not handed to storage yet.
    writes: Vec<WriteBatch>,
    /// Sends and notifications, in order.
    held: Vec<Effect>,
    /// Hosts waiting for durability (bounded by `REQUESTS_QUEUED_MAX` per pass).
    waiting: Vec<oneshot::Sender<()>>,
    /// Inputs handled in it.
    inputs: usize,
}

impl Round {
    fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.held.is_empty() && self.waiting.is_empty()
    }
}

/// The round whose commit storage is carrying out.
struct InFlight<S> {
    commit: Commit<S>,
    round: Round,
    batches: usize,
    records: usize,
    started: tokio::time::Instant,
}

type Inspection<K> = Box<dyn FnOnce(&K) + Send>;

enum Request<K> {
    Command(Command),
    /// A command, answered with the events the node told while handling it.
    CommandTelling(Command, oneshot::Sender<Vec<Event>>),
    Inspect(Inspection<K>),
    /// Like `Inspect`, without waiting for the writes so far.
    Peek(Inspection<K>),
    /// Answered once everything handled before it is durable (after the round's commit).
    Durable(oneshot::Sender<()>),
    /// Mark what the driver does on this timeline from now on; answered with the node's number.
    RecordOn(Timeline, oneshot::Sender<u32>),
    Stop(oneshot::Sender<()>),
}

/// What the driver did, for status and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DriverStatus {
    /// Inputs handled.
    pub inputs: u64,
    /// Time spent in the node's `handle`, in microseconds.
    pub handle_micros_total: u64,
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
    /// Other members' updates applied (`Event::DocumentChanged` told), in every document. Unlike
    /// a subscriber's count of those events, this one misses none when the host falls behind.
    pub updates_applied: u64,
    /// Snapshots imported by a device that fell behind a compaction (`Event::SnapshotImported`).
    pub snapshots_imported: u64,
    /// Times the node was built again from storage because it asked to: a library it uses
    /// panicked on an input, and the panic was contained (`Outputs::rebuild_from_storage`).
    pub rebuilds: u64,
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
    /// The node asked to be built again from storage (`Outputs::rebuild_from_storage`), and
    /// this driver was started without a way to build one ([`Rebuild`]).
    #[error("the node asked to be rebuilt from storage, and this driver cannot build one")]
    CannotRebuild,
}

/// Builds the node again from what storage holds, for a node that asks to be
/// (`Outputs::rebuild_from_storage`): as the host built it at start, from a [`Restored`].
pub type Rebuild<K> = Box<dyn FnMut(Restored) -> (K, Outputs) + Send>;

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

    /// Sends a command and returns the events the node told while handling it: its refusal
    /// (`Event::CommandFailed`), or what it made (`GroupCreated`, `InviteCreated`). Only this
    /// command's, unlike a subscription, which also sees every other command's at the same time.
    /// They are not durable yet (a subscriber hears them once they are): see [`DriverHandle::durable`].
    pub async fn command_telling(&self, command: Command) -> Result<Vec<Event>, NotRunning> {
        let (answer, answered) = oneshot::channel();
        self.requests.send(Request::CommandTelling(command, answer)).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Reads the node's state between two inputs, once everything before is durable.
    pub async fn inspect<R: Send + 'static>(&self, read: impl FnOnce(&K) -> R + Send + 'static) -> Result<R, NotRunning> {
        self.read(Request::Inspect, read).await
    }

    /// Reads the node's state between two inputs as it is, without waiting for its writes: it
    /// may show another member's update this node has not made durable yet (a crash takes it
    /// back until the node reads it again). For what the app shows, not for what it hands on.
    pub async fn peek<R: Send + 'static>(&self, read: impl FnOnce(&K) -> R + Send + 'static) -> Result<R, NotRunning> {
        self.read(Request::Peek, read).await
    }

    async fn read<R: Send + 'static>(
        &self,
        request: fn(Inspection<K>) -> Request<K>,
        read: impl FnOnce(&K) -> R + Send + 'static,
    ) -> Result<R, NotRunning> {
        let (answer, answered) = oneshot::channel();
        let read: Inspection<K> = Box::new(move |node| {
            let _ = answer.send(read(node));
        });
        self.requests.send(request(read)).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Returns once every command sent before is durable and its events are out. Unlike an
    /// inspection it does not force a commit of its own: concurrent callers share one.
    pub async fn durable(&self) -> Result<(), NotRunning> {
        let (answer, answered) = oneshot::channel();
        self.requests.send(Request::Durable(answer)).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Marks what the driver does on `timeline` from now on (see [`crate::timeline`]); returns
    /// the number its marks carry.
    pub async fn record_on(&self, timeline: &Timeline) -> Result<u32, NotRunning> {
        let (answer, answered) = oneshot::channel();
        self.requests.send(Request::RecordOn(timeline.clone(), answer)).await.map_err(|_| NotRunning)?;
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
    /// `None` while a commit holds it.
    storage: Option<S>,
    links: Links<N>,
    inbound: mpsc::Receiver<Inbound>,
    requests: mpsc::Receiver<Request<K>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<DriverStatus>>,
    wake_at: Option<Time>,
    /// The node asked for `Input::Flush` once the inputs waiting are handled.
    wants_flush: bool,
    pending: VecDeque<Input>,
    /// The round being handled.
    round: Round,
    /// The previous round, while storage commits it.
    in_flight: Option<InFlight<S>>,
    /// Where to mark what it does, and as which node (off unless the host asks).
    timeline: Option<(Timeline, u32)>,
    timers: Timers,
    /// How to build the node again from storage, if the host gave a way.
    rebuild: Option<Rebuild<K>>,
}

/// Whether the driver feeds the node the inputs it asks for itself (`Input::Timer` at `wake_at`,
/// `Input::Flush` when `wants_flush`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timers {
    /// As the node asks.
    Fed,
    /// Never: the node handles only what the host gives it. For a node opened offline for one
    /// local command: its timers would start work it cannot finish (after a restart every
    /// unsafe message is due, and each timer sealed the next 64 for posts nobody received,
    /// spending ratchet generations and a write each time: two thirds of an offline `append`'s
    /// time with 3,000 unsafe messages).
    Held,
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
        Driver::start_with(node, first, (clock, network, storage), limits, seed, (Timers::Fed, None))
    }

    /// [`Driver::start`], feeding the node its timers or not, and with a way to build the node
    /// again from storage or without one (a node that then asks stops the driver:
    /// [`DriverError::CannotRebuild`]).
    pub fn start_with(
        node: K,
        first: Outputs,
        (clock, network, storage): (Clock, N, S),
        limits: LinkLimits,
        seed: u64,
        (timers, rebuild): (Timers, Option<Rebuild<K>>),
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
            storage: Some(storage),
            links: links.clone(),
            inbound,
            requests,
            events,
            status: status.clone(),
            wake_at: None,
            wants_flush: false,
            pending: VecDeque::new(),
            round: Round::default(),
            in_flight: None,
            timeline: None,
            timers,
            rebuild,
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
        self.settle().await?;
        loop {
            // A round that took its share while a commit is in flight waits for that commit.
            if self.round.inputs >= INPUTS_PER_ROUND_MAX {
                self.finish_in_flight().await?;
            }
            // Timers fire strictly after now, so a node cannot spin the loop in place.
            let wake_at = self.wake_at.filter(|_| self.timers == Timers::Fed);
            let sleep_until = wake_at.map(|time| self.clock.instant_of(time.max(self.clock.now().plus_ms(1))));
            let commit = self.in_flight.as_mut().map(|in_flight| &mut in_flight.commit);
            let first = tokio::select! {
                biased;
                (storage, result) = commit_done(commit) => Next::Committed(storage, result),
                request = self.requests.recv() => match request {
                    Some(request) => Next::Request(request),
                    None => return Ok(()),
                },
                Some(inbound) = self.inbound.recv() => Next::Inbound(inbound),
                _ = sleep(sleep_until) => Next::Timer,
            };
            // Handle what is already waiting (up to a limit), then commit the round if storage
            // is free; otherwise the round grows until the commit in flight is durable.
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(item) = next.take() {
                match item {
                    Next::Committed(storage, result) => {
                        let in_flight = self.in_flight.take().expect("a commit was in flight");
                        self.finish_commit(in_flight, storage, result)?;
                    }
                    Next::Request(Request::Command(command)) => self.step(Input::Command(command)).await?,
                    Next::Request(Request::CommandTelling(command, answer)) => {
                        let mut told = Vec::new();
                        self.step_telling(Input::Command(command), Some(&mut told)).await?;
                        let _ = answer.send(told);
                    }
                    Next::Request(Request::Inspect(read)) => {
                        // An inspection sees only durable state's consequences: settle first
                        // (the facade uses it as the barrier after a command).
                        self.settle().await?;
                        read(&self.node);
                    }
                    Next::Request(Request::Peek(read)) => read(&self.node),
                    Next::Request(Request::Durable(answer)) => self.round.waiting.push(answer),
                    Next::Request(Request::RecordOn(timeline, answer)) => {
                        let node = timeline.join();
                        self.timeline = Some((timeline, node));
                        let _ = answer.send(node);
                    }
                    Next::Request(Request::Stop(done)) => {
                        self.settle().await?;
                        let _ = done.send(());
                        return Ok(());
                    }
                    Next::Inbound(Inbound::Frame { from, frame }) => self.step(Input::Received { from, frame }).await?,
                    Next::Inbound(Inbound::LinkUp { peer }) => self.step(Input::LinkUp { peer }).await?,
                    Next::Timer => {
                        self.wake_at = None;
                        self.step(Input::Timer).await?;
                    }
                }
                handled += 1;
                if handled < INPUTS_PER_PASS_MAX && self.round.inputs < INPUTS_PER_ROUND_MAX {
                    next = self.ready();
                }
            }
            // Nothing else is waiting (or the pass is full): what the node gathered goes out
            // with this round.
            if self.wants_flush && self.timers == Timers::Fed {
                self.step(Input::Flush).await?;
            }
            if self.in_flight.is_none() {
                self.start_commit();
            }
        }
    }

    /// An input that is waiting already, without waiting for one.
    fn ready(&mut self) -> Option<Next<K, S>> {
        if let Ok(request) = self.requests.try_recv() {
            return Some(Next::Request(request));
        }
        if let Ok(inbound) = self.inbound.try_recv() {
            return Some(Next::Inbound(inbound));
        }
        let due = self.timers == Timers::Fed && self.wake_at.is_some_and(|time| time < self.clock.now());
        due.then_some(Next::Timer)
    }

    /// Handles one input and every input its effects lead to (answers to loads).
    async fn step(&mut self, input: Input) -> Result<(), DriverError> {
        self.step_telling(input, None).await
    }

    /// [`Driver::step`], copying into `told` the events the node tells meanwhile.
    async fn step_telling(&mut self, input: Input, mut told: Option<&mut Vec<Event>>) -> Result<(), DriverError> {
        self.round.inputs += 1;
        self.pending.push_back(input);
        while let Some(input) = self.pending.pop_front() {
            if matches!(input, Input::Received { .. }) {
                self.mark(Step::Received);
            }
            let started = tokio::time::Instant::now();
            let outputs = self.node.handle(self.clock.now(), input);
            let micros = started.elapsed().as_micros() as u64;
            let rebuild = outputs.rebuild_from_storage;
            if let Some(told) = told.as_deref_mut() {
                told.extend(outputs.effects.iter().filter_map(|effect| match effect {
                    Effect::Notify(event) => Some(event.clone()),
                    _ => None,
                }));
            }
            {
                let mut status = self.status.lock().expect("status lock");
                status.inputs += 1;
                status.handle_micros_total += micros;
            }
            self.carry_out(outputs).await?;
            if rebuild {
                self.rebuild().await?;
            }
        }
        Ok(())
    }

    /// Builds the node again from storage, as it asked, once what it wrote so far is durable
    /// (and what that held back let out): its last writes are its last word.
    async fn rebuild(&mut self) -> Result<(), DriverError> {
        self.settle().await?;
        let Some(make) = self.rebuild.as_mut() else { return Err(DriverError::CannotRebuild) };
        let storage = self.storage.as_mut().expect("settled: no commit holds the storage");
        let restored = storage.load().await?;
        let (node, first) = make(restored);
        // The old node's memory goes (what panicked in it was leaked where it panicked), and
        // with it the answers to its loads: the new node asks for what it needs.
        self.node = node;
        self.pending.clear();
        self.status.lock().expect("status lock").rebuilds += 1;
        self.carry_out(first).await
    }

    /// Carries out effects in order. Writes collect into the round; every send and
    /// notification after one, or while an earlier round is not durable, waits with the round
    /// (holding a send back is always safe: the network may delay it anyway), but for an event
    /// that does not wait for writes. A load settles first, so it reads everything written
    /// before it.
    async fn carry_out(&mut self, outputs: Outputs) -> Result<(), DriverError> {
        // `rebuild_from_storage` is the caller's to act on, once these effects are carried out.
        let Outputs { effects, wake_at, wants_flush, rebuild_from_storage: _ } = outputs;
        // The node's latest answer replaces its earlier one: each `wake_at` covers all its timers.
        self.wake_at = wake_at;
        self.wants_flush = wants_flush;
        for effect in effects {
            match effect {
                Effect::Persist(batch) => self.round.writes.push(batch),
                Effect::Load { request, query } => {
                    self.settle().await?;
                    let storage = self.storage.as_mut().expect("settled: no commit holds the storage");
                    let result = storage.answer(&query).await?;
                    if self.pending.len() >= PENDING_INPUTS_MAX {
                        return Err(DriverError::TooManyPendingInputs);
                    }
                    self.pending.push_back(Input::Loaded { request, result });
                }
                Effect::Notify(event) if !event.waits_for_writes() => self.release(Effect::Notify(event)),
                effect if self.round.is_empty() && self.in_flight.is_none() => self.release(effect),
                effect => self.round.held.push(effect),
            }
        }
        Ok(())
    }

    /// Hands the round's writes to storage as one commit; a round without writes is let out at
    /// once. Only while no commit is in flight.
    fn start_commit(&mut self) {
        assert!(self.in_flight.is_none(), "one commit in flight at a time");
        let mut round = std::mem::take(&mut self.round);
        if round.writes.is_empty() {
            self.let_out(round);
            return;
        }
        let writes = std::mem::take(&mut round.writes);
        let (batches, records) = (writes.len(), writes.iter().map(|batch| batch.records.len()).sum());
        let mut storage = self.storage.take().expect("no commit in flight holds the storage");
        self.mark(Step::CommitStarted);
        let commit: Commit<S> = Box::pin(async move {
            let result = storage.apply(&writes).await;
            (storage, result)
        });
        self.in_flight = Some(InFlight { commit, round, batches, records, started: tokio::time::Instant::now() });
    }

    /// Waits for the commit in flight, if any, and lets its round out.
    async fn finish_in_flight(&mut self) -> Result<(), DriverError> {
        if let Some(mut in_flight) = self.in_flight.take() {
            let (storage, result) = commit_done(Some(&mut in_flight.commit)).await;
            self.finish_commit(in_flight, storage, result)?;
        }
        Ok(())
    }

    /// A commit finished: counts it and lets its round out.
    fn finish_commit(&mut self, in_flight: InFlight<S>, storage: S, result: Result<(), StorageError>) -> Result<(), DriverError> {
        self.storage = Some(storage);
        result?;
        self.mark(Step::CommitDone);
        let InFlight { round, batches, records, started, .. } = in_flight;
        let micros = started.elapsed().as_micros() as u64;
        {
            let mut status = self.status.lock().expect("status lock");
            status.commits += 1;
            status.batches += batches as u64;
            status.records += records as u64;
            status.commit_micros_total += micros;
            status.commit_micros_max = status.commit_micros_max.max(micros);
            let bucket = match batches {
                1 => 0,
                2..=3 => 1,
                4..=7 => 2,
                _ => 3,
            };
            status.batches_per_commit[bucket] += 1;
        }
        self.let_out(round);
        Ok(())
    }

    /// Waits until every write so far is durable and everything held is let out.
    async fn settle(&mut self) -> Result<(), DriverError> {
        loop {
            self.finish_in_flight().await?;
            if self.round.is_empty() {
                return Ok(());
            }
            self.start_commit();
        }
    }

    /// Lets out a durable round's sends and notifications, in order, and answers its waiters.
    fn let_out(&mut self, round: Round) {
        for effect in round.held {
            self.release(effect);
        }
        for answer in round.waiting {
            let _ = answer.send(());
        }
    }

    fn mark(&self, step: Step) {
        if let Some((timeline, node)) = &self.timeline {
            timeline.mark(*node, step);
        }
    }

    fn release(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, frame } => {
                self.mark(Step::Sent);
                if let Some((_, kind)) = wire::peek(&frame) {
                    *self.status.lock().expect("status lock").sent_by_kind.entry(kind).or_default() += 1;
                }
                self.links.send(to, &frame);
            }
            Effect::Notify(event) => {
                self.mark(Step::Notified);
                match event {
                    Event::DocumentChanged { .. } => self.status.lock().expect("status lock").updates_applied += 1,
                    Event::SnapshotImported { .. } => self.status.lock().expect("status lock").snapshots_imported += 1,
                    _ => {}
                }
                let _ = self.events.send(event);
            }
            Effect::Persist(_) | Effect::Load { .. } => unreachable!("writes and loads are not held"),
        }
    }
}

/// The commit in flight's end; never ready without one.
async fn commit_done<S>(commit: Option<&mut Commit<S>>) -> (S, Result<(), StorageError>) {
    match commit {
        Some(commit) => commit.await,
        None => std::future::pending().await,
    }
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(instant) => tokio::time::sleep_until(instant).await,
        None => std::future::pending().await,
    }
}
