//! Real I/O benchmark: 3 acceptors and 3 devices in one process on loopback, iroh + SQLite
//! (durable: every acceptor fsyncs before it acknowledges). One device types; the benchmark
//! measures document messages delivered to both other replicas per second, and the latency
//! from an edit to its visibility at another device (one edit at a time, each once the last has
//! settled everywhere), with anchors measured in the same run:
//! a raw iroh round trip and a raw fsync, alone and issued together (the six nodes share one
//! disk, so their fsyncs queue behind each other, which the floor of independent disks ignores),
//! an edit's whole path done raw (`real/raw_path.rs`), and the cryptography and CRDT work an
//! edit cannot skip, done raw (`real/work.rs`).
//!
//! `cargo bench --workspace --bench real [-- MESSAGES]` (as README says: `-p` builds the
//! dependencies again with other features)

use std::time::{Duration, Instant};

/// The allocator the `plait` binary uses (see `src/main.rs`), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "real/raw_path.rs"]
mod raw_path;
#[path = "real/work.rs"]
mod work;

use futures_util::FutureExt;
use plait_io_iroh::app::{DeviceApp, NodeOptions};
use plait_io_iroh::links::LinkStats;
use plait_io_iroh::server::AcceptorServer;
use plait_io_iroh::timeline::{EDIT_STAGES, EditPath, HOST, Step, Timeline, edit_stages};
use plait_io_iroh::{DriverHandle, DriverStatus};
use plait_kernel::Event;
use plait_kernel::mls::Role;

const RUNS: usize = 3;
/// Edits of the latency phase, one at a time: enough that p99 is a rank of its own (the 990th of
/// 1,000; with 200 it was the second slowest) and that the phase spans several write-ahead-log
/// checkpoints of every node, as an app that edits for a while does.
const LATENCY_SAMPLES: usize = 1_000;
const IN_FLIGHT: usize = 64;
/// Edits of the raw path anchor (see `raw_path.rs`): as many as the latency phase, so that its
/// p99 is a rank of the same kind.
const RAW_PATH_EDITS: usize = LATENCY_SAMPLES;
/// The benchmark's own marks on the timeline: an edit started, and the reader saw it.
const EDIT_STARTED: u32 = 0;
const EDIT_VISIBLE: u32 = 1;

fn main() {
    // As the `plait` binary does (`src/main.rs`), so the figures are the binary's.
    plait_io_iroh::huge_pages::turn_off_transparent_huge_pages().expect("transparent huge pages turned off");
    let messages: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut raw_path = raw_path::raw_path_micros(RAW_PATH_EDITS).await;
        raw_path.sort_unstable();
        let (raw_p50, raw_p99) = (percentile(&raw_path, 50), percentile(&raw_path, 99));
        println!(
            "anchor: an edit's path done raw ({RAW_PATH_EDITS} edits one at a time: the author's write + fsync, 3 acceptors' at once, 2 iroh hops): p50 {raw_p50} µs, p99 {raw_p99} µs"
        );
        let work = work::edit_work_micros(RAW_PATH_EDITS);
        println!(
            "anchor: the work an edit cannot skip, done raw: {:.1} µs (median of {RAW_PATH_EDITS}; Loro's export of one insert {:.1}, AES-128-GCM seal {:.1}, Ed25519 sign {:.1}, verify {:.1}, open {:.1}, Loro's import into a replica of 1,000 edits {:.1})",
            work.total(),
            work.export,
            work.seal,
            work.sign,
            work.verify,
            work.open,
            work.import
        );
        let mut anchors = Anchors::default();
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        let mut stages = Vec::new();
        for run in 0..RUNS {
            anchors.measure().await;
            let Sample { edits_per_second, messages_per_second, mut latencies, stages: run_stages } = one_run(messages, false).await;
            stages.extend(run_stages);
            latencies.sort_unstable();
            let (p50, p99) = (percentile(&latencies, 50), percentile(&latencies, 99));
            println!(
                "run {run}: {messages} edits at {edits_per_second:.0}/s; {messages_per_second:.0} MLS messages/s applied at every replica; latency p50 {p50} µs p99 {p99} µs"
            );
            rates.push(messages_per_second as u64);
            p50s.push(p50);
            p99s.push(p99);
        }
        let batched = one_run(messages * 5, true).await;
        println!(
            "with the default batching (flush_after_ms 20): {:.0} edits/s applied at every replica, in {:.0} MLS messages/s",
            batched.edits_per_second, batched.messages_per_second
        );
        let (rate, p50, p99) = (median(&rates), median(&p50s), median(&p99s));
        let (fsync, first_of_three, rtt) = anchors.print();
        // An edit becomes visible elsewhere only after two durable writes (the author's before
        // it sends, an acceptor's before it pushes) and one round trip (author → acceptor →
        // reader); batching is off (flush_bytes = 1). The reader's own write is not on the way:
        // its app hears of another member's update at once (`Event::waits_for_writes`).
        let floor = 2 * fsync + rtt;
        // Here the six nodes share one disk, and fsyncs issued together wait for each other (the
        // anchor measures how much): the three acceptors' writes of an edit happen at once (the
        // reader takes the first push). So this run's own floor is higher; it is printed beside
        // the floor above, not instead of it.
        let shared_floor = fsync + first_of_three + rtt;
        println!("median: {rate} MLS messages/s applied at every replica (target ≥ 10,000)");
        println!(
            "median latency edit → visible at another device ({LATENCY_SAMPLES} edits a run, one at a time): p50 {p50} µs, p99 {p99} µs; floor = 2 fsyncs + 1 round trip = {floor} µs; p50 = {:.2}× the floor, p99 = {:.2}× (target ≤ 3×)",
            p50 as f64 / floor as f64,
            p99 as f64 / floor as f64
        );
        println!(
            "  with the nodes' fsyncs sharing this one disk as they do here, the floor is 1 fsync + the first of 3 at once + 1 round trip = {shared_floor} µs: p50 = {:.2}×, p99 = {:.2}×",
            p50 as f64 / shared_floor as f64,
            p99 as f64 / shared_floor as f64
        );
        println!(
            "  against the edit's path done raw in this run (its fsyncs and 2 hops, nothing else): p50 = {:.2}× its p50, p99 = {:.2}× its p99",
            p50 as f64 / raw_p50 as f64,
            p99 as f64 / raw_p99 as f64
        );
        // Not the target's floor (that counts the disk and the network): what is left of the
        // latency once the cryptography and the CRDT work that any design must do are counted too.
        let with_work = floor as f64 + work.total();
        println!(
            "  against the floor plus the work an edit cannot skip ({with_work:.0} µs): p50 = {:.2}×, p99 = {:.2}×",
            p50 as f64 / with_work,
            p99 as f64 / with_work
        );
        print_stages(&mut stages);
    });
}

/// Where the latency phase's time went, stage by stage, over every run's edits.
fn print_stages(stages: &mut [[u64; EDIT_STAGES.len()]]) {
    if stages.is_empty() {
        return;
    }
    stages.sort_by_key(|stages| stages.iter().sum::<u64>());
    let slowest = &stages[stages.len() - stages.len().div_ceil(100)..];
    println!(
        "where an edit's latency goes ({} edits whose every stage was seen): p50 and p99 of each stage, and its mean over the slowest 1% of edits (µs)",
        stages.len()
    );
    for (index, name) in EDIT_STAGES.iter().enumerate() {
        let mut times: Vec<u64> = stages.iter().map(|stages| stages[index]).collect();
        times.sort_unstable();
        let slow = slowest.iter().map(|stages| stages[index]).sum::<u64>() / slowest.len() as u64;
        println!("  {name:<24} p50 {:>5}  p99 {:>5}  slowest 1% {slow:>5}", percentile(&times, 50), percentile(&times, 99));
    }
}

/// One run: throughput and latencies (µs).
async fn one_run(messages: usize, batching: bool) -> Sample {
    let folder = tempfile::tempdir().expect("temporary folder");
    let mut acceptors = Vec::new();
    for index in 0..3 {
        acceptors.push(
            AcceptorServer::start(&folder.path().join(format!("a{index}")), NodeOptions::default()).await.expect("acceptor"),
        );
    }
    let tickets: Vec<_> = acceptors.iter().map(AcceptorServer::ticket).collect();
    let mut devices = Vec::new();
    for index in 0..3 {
        // Every edit is its own MLS message (a batch closes once it holds `flush_bytes`), so the
        // throughput counts messages, not batching.
        let mut options = NodeOptions::default();
        if !batching {
            options.config.flush_bytes = 1;
        }
        devices.push(DeviceApp::open(&folder.path().join(format!("d{index}")), options).await.expect("device"));
    }
    let writer = devices[0].create_document("bench", &tickets).await.expect("create");
    let mut readers = Vec::new();
    for device in &devices[1..] {
        let code = writer.invite(Role::Writer, Duration::from_secs(600), tickets.clone()).await.expect("invite");
        readers.push(device.join(&code, Duration::from_secs(30)).await.expect("join"));
    }
    // Latency: one edit at a time, timed until another device has applied it; the next starts
    // once it settled everywhere (below). (An insert at 0, not an append: an append first reads
    // the text's length, which is not part of the edit.)
    let mut latencies = Vec::new();
    let mut watcher = readers[0].subscribe();
    let mut other_reader = readers[1].subscribe();
    let mut author_events = writer.subscribe();
    let before = NodeCounts::read(&acceptors, &devices);
    let timeline = Timeline::new();
    let mut numbers = Vec::new();
    for driver in acceptors.iter().map(AcceptorServer::driver) {
        numbers.push(driver.record_on(&timeline).await.expect("acceptor running"));
    }
    for device in &devices {
        numbers.push(device.driver().record_on(&timeline).await.expect("device running"));
    }
    timeline.record(!batching);
    // With batching each edit would wait out `flush_after_ms` (20 ms): the phase took ~20 s and
    // nothing printed its figures, so the batched run measures throughput only.
    let latency_samples = if batching { 0 } else { LATENCY_SAMPLES };
    for index in 0..latency_samples {
        let started = Instant::now();
        timeline.mark(HOST, Step::Host(EDIT_STARTED));
        writer.insert(0, &format!("p{index} ")).await.expect("edit");
        wait_for_change(&mut watcher).await;
        timeline.mark(HOST, Step::Host(EDIT_VISIBLE));
        latencies.push(started.elapsed().as_micros() as u64);
        // Typing: the next keystroke comes after this edit settled everywhere. Without this the
        // previous edit's writes off its path (the readers', the third acceptor's) would run
        // on this one disk during the next edit's commits, which on separate machines they
        // would not (the floor assumes separate disks).
        wait_for_change(&mut other_reader).await;
        while let Some(event) = author_events.next().await {
            if let Event::DocumentSafe { unsafe_messages: 0, .. } = event {
                break;
            }
        }
        for driver in acceptors.iter().map(AcceptorServer::driver) {
            driver.durable().await.expect("acceptor running");
        }
        for device in &devices {
            device.driver().durable().await.expect("device running");
        }
    }
    timeline.record(false);
    let path = EditPath { author: numbers[3], acceptors: numbers[..3].to_vec(), reader: numbers[4] };
    let stages = edit_stages(&timeline.take().0, &path, EDIT_STARTED, EDIT_VISIBLE);
    if !batching {
        println!("  latency phase:");
        NodeCounts::read(&acceptors, &devices).print_since(&before, LATENCY_SAMPLES);
        println!("  throughput phase:");
    }
    // Throughput: edits in rounds of `IN_FLIGHT` at once (the driver commits each round's
    // writes together); count the messages every reader applies.
    // Every message a reader applies is one `DocumentChanged`, which its driver counts (a
    // subscriber counting the events itself would miss those it fell too far behind for). A
    // reader that falls behind a compaction catches up from its snapshot instead
    // (`SnapshotImported`): the messages it covers are not counted, and the run says how many
    // snapshots came.
    let reader_devices = &devices[1..];
    let progress = |device: &DeviceApp| {
        let status = device.driver().status();
        Progress { applied: status.updates_applied, imports: status.snapshots_imported }
    };
    let progress_before: Vec<Progress> = reader_devices.iter().map(progress).collect();
    let mut watchers: Vec<_> = readers.iter().map(|reader| reader.subscribe()).collect();
    let before = NodeCounts::read(&acceptors, &devices);
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    for round in 0..messages.div_ceil(IN_FLIGHT) {
        let edits = (round * IN_FLIGHT..messages.min((round + 1) * IN_FLIGHT)).map(|index| {
            let writer = writer.clone();
            async move { writer.insert(0, &format!("{index} ")).await }
        });
        for result in futures_util::future::join_all(edits).await {
            result.expect("edit");
        }
    }
    let expected = writer.text().await.expect("text");
    for (((reader, device), watcher), before) in readers.iter().zip(reader_devices).zip(&mut watchers).zip(&progress_before) {
        // Reading the whole text costs O(document) inside the reader's own driver, so without
        // batching (one message per edit) it is read only once the reader applied every
        // message, or caught up from a snapshot (whose messages the count cannot see); then,
        // and with batching, once per burst of changes.
        let caught_up = || {
            let now = progress(device).since(before);
            batching || now.applied >= messages as u64 || now.imports > 0
        };
        let mut stalled = Stalled::new();
        while !caught_up() {
            // The driver's counters wake nobody: the reader's events do, and a timeout in case
            // this watcher fell behind and the last of them were skipped.
            let _ = tokio::time::timeout(Duration::from_millis(100), wait_for_change(watcher)).await;
            stalled.check(progress(device).since(before).applied, messages);
        }
        while reader.text().await.expect("text") != expected {
            let _ = tokio::time::timeout(Duration::from_millis(100), wait_for_change(watcher)).await;
            while let Some(Some(_)) = watcher.next().now_or_never() {}
            stalled.check(reader.text().await.expect("text").len() as u64, expected.len());
        }
    }
    // A reader's text shows what it applied, durable on its disk or not yet; the run counts
    // messages delivered durably, so it ends once the readers' writes are.
    for device in &devices[1..] {
        device.driver().durable().await.expect("reader running");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done: Vec<Progress> =
        reader_devices.iter().map(progress).zip(&progress_before).map(|(now, before)| now.since(before)).collect();
    if !batching {
        NodeCounts::read(&acceptors, &devices).print_since(&before, messages);
        if let (Some(before), Some(after)) = (cpu_before, process_cpu_seconds()) {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            println!(
                "  process CPU: {:.0} µs per edit, {:.0}% of {cores} cores busy",
                (after - before) * 1e6 / messages as f64,
                100.0 * (after - before) / elapsed / cores as f64
            );
        }
    }
    for device in devices {
        device.shutdown().await;
    }
    for acceptor in acceptors {
        acceptor.shutdown().await;
    }
    let slowest = done.iter().map(|progress| progress.applied).min().unwrap_or(0);
    let imports: u64 = done.iter().map(|progress| progress.imports).sum();
    if imports > 0 {
        println!("  {imports} snapshot imports: a reader fell behind a compaction (the messages they cover are not counted)");
    }
    Sample { edits_per_second: messages as f64 / elapsed, messages_per_second: slowest as f64 / elapsed, latencies, stages }
}

/// What a reader received in the throughput phase.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Messages applied (`DocumentChanged`).
    applied: u64,
    /// Snapshots imported (`SnapshotImported`).
    imports: u64,
}

impl Progress {
    fn since(self, before: &Progress) -> Progress {
        Progress { applied: self.applied - before.applied, imports: self.imports - before.imports }
    }
}

/// How long a wait may go without progress before the run gives up, naming what it waited for
/// (a benchmark that hangs tells nothing).
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Watches a wait's progress: says so after `STALL_LIMIT / 6` without any, and panics after
/// `STALL_LIMIT`.
struct Stalled {
    reached: u64,
    since: Instant,
    told: bool,
}

impl Stalled {
    fn new() -> Stalled {
        Stalled { reached: 0, since: Instant::now(), told: false }
    }

    fn check(&mut self, reached: u64, wanted: usize) {
        if reached != self.reached {
            *self = Stalled { reached, since: Instant::now(), told: false };
            return;
        }
        let waited = self.since.elapsed();
        assert!(waited < STALL_LIMIT, "no progress for {waited:?}: a reader is at {reached} of {wanted}");
        if waited > STALL_LIMIT / 6 && !self.told {
            println!("  (waiting: a reader is at {reached} of {wanted}, no progress for {waited:?})");
            self.told = true;
        }
    }
}

/// What each node's driver and links did, to show where a run's time goes.
struct NodeCounts(Vec<(String, DriverStatus, LinkStats)>);

impl NodeCounts {
    fn read(acceptors: &[AcceptorServer], devices: &[DeviceApp]) -> NodeCounts {
        fn counts<K: Send + 'static>(name: String, driver: &DriverHandle<K>) -> (String, DriverStatus, LinkStats) {
            (name, driver.status(), driver.link_stats())
        }
        let acceptors = acceptors.iter().enumerate().map(|(index, server)| counts(format!("acceptor {index}"), server.driver()));
        let devices = devices.iter().enumerate().map(|(index, device)| counts(format!("device {index}"), device.driver()));
        NodeCounts(acceptors.chain(devices).collect())
    }

    /// Per edit of a phase: inputs handled, commits, frames and bytes sent and received.
    fn print_since(&self, before: &NodeCounts, edits: usize) {
        let per_edit = |count: u64| count as f64 / edits as f64;
        for ((name, status, links), (_, old, old_links)) in self.0.iter().zip(&before.0) {
            let commits = status.commits - old.commits;
            let commit_micros = (status.commit_micros_total - old.commit_micros_total) / commits.max(1);
            println!(
                "  {name}: per edit {:.2} inputs ({:.0} µs in the kernel), {:.2} commits (mean {commit_micros} µs), {:.2} frames ({:.0} bytes) sent, {:.2} ({:.0} bytes) received",
                per_edit(status.inputs - old.inputs),
                per_edit(status.handle_micros_total - old.handle_micros_total),
                per_edit(commits),
                per_edit(links.frames_sent - old_links.frames_sent),
                per_edit(links.bytes_sent - old_links.bytes_sent),
                per_edit(links.frames_received - old_links.frames_received),
                per_edit(links.bytes_received - old_links.bytes_received),
            );
        }
    }
}

struct Sample {
    edits_per_second: f64,
    messages_per_second: f64,
    latencies: Vec<u64>,
    /// The latency phase's edits by stage (none in the batching run).
    stages: Vec<[u64; EDIT_STAGES.len()]>,
}

/// Waits for the next event that may change the text, and returns it.
async fn wait_for_change(watcher: &mut plait_io_iroh::app::DocumentEvents) -> Event {
    while let Some(event) = watcher.next().await {
        if plait_io_iroh::app::changes_text(&event) {
            return event;
        }
    }
    panic!("the node stopped");
}

/// User plus system CPU time of this process so far (Linux: `/proc/self/stat`; else `None`).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its `)`): utime is
    // the 12th, stime the 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Fsyncs (alone, and 3 at once) and round trips each anchor times before every run.
const FSYNC_SAMPLES: usize = 200;
const RTT_SAMPLES: usize = 500;

/// The floor's anchors, measured before every run (the disk and the network drift over an
/// invocation; one measurement at its start gave medians from 39 to 86 µs for the same fsync).
#[derive(Default)]
struct Anchors {
    fsync: Vec<u64>,
    first_of_three: Vec<u64>,
    rtt: Vec<u64>,
}

impl Anchors {
    async fn measure(&mut self) {
        self.fsync.extend(concurrent_fsync_micros(1, FSYNC_SAMPLES).into_iter().flatten());
        self.first_of_three.extend(first_of_three_fsyncs_micros(FSYNC_SAMPLES));
        self.rtt.extend(raw_iroh_rtt_micros(RTT_SAMPLES).await);
    }

    /// Prints the medians over every run's measurements, with each run's; returns the first.
    fn print(&self) -> (u64, u64, u64) {
        let each = |samples: &[u64], per_run: usize| -> String {
            let medians: Vec<String> = samples.chunks(per_run).map(|run| median(run).to_string()).collect();
            medians.join(", ")
        };
        let (fsync, first_of_three, rtt) = (median(&self.fsync), median(&self.first_of_three), median(&self.rtt));
        println!(
            "anchor: raw fsync (a 4 KiB page of a file written out in advance overwritten + fdatasync, as SQLite's log) median {fsync} µs (before each run: {})",
            each(&self.fsync, FSYNC_SAMPLES)
        );
        println!(
            "anchor: raw fsyncs at once on this one disk: the first of 3 done after {first_of_three} µs (median; before each run: {})",
            each(&self.first_of_three, FSYNC_SAMPLES)
        );
        println!(
            "anchor: raw iroh round trip on loopback (64-byte frame) median {rtt} µs (before each run: {})",
            each(&self.rtt, RTT_SAMPLES)
        );
        (fsync, first_of_three, rtt)
    }
}

/// Three raw fsyncs issued at the same moment on the one disk every node of the benchmark
/// shares, `rounds` times: per round, the time until the first of them is done (µs).
fn first_of_three_fsyncs_micros(rounds: usize) -> Vec<u64> {
    let three = concurrent_fsync_micros(3, rounds);
    three.iter().map(|round| round.iter().copied().min().unwrap_or(0)).collect()
}

/// `rounds` rounds of `writers` threads each overwriting a page of its own file and fsyncing
/// it, all starting together; per round, each writer's time (µs).
fn concurrent_fsync_micros(writers: usize, rounds: usize) -> Vec<Vec<u64>> {
    use std::sync::{Arc, Barrier};
    let folder = tempfile::tempdir().expect("temporary folder");
    let start = Arc::new(Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|index| {
            let mut page = raw_path::DiskPage::new(folder.path().join(format!("fsync{index}")));
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                (0..rounds)
                    .map(|_| {
                        start.wait();
                        let started = Instant::now();
                        page.write_and_sync();
                        started.elapsed().as_micros() as u64
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let per_writer: Vec<Vec<u64>> = threads.into_iter().map(|thread| thread.join().expect("fsync thread")).collect();
    (0..rounds).map(|round| per_writer.iter().map(|times| times[round]).collect()).collect()
}

async fn raw_iroh_rtt_micros(count: usize) -> Vec<u64> {
    let (server, client) = (loopback_endpoint(b"rtt").await, loopback_endpoint(b"rtt").await);
    let address = loopback_address(&server);
    let echo = tokio::spawn(async move {
        let connection = server.accept().await.expect("incoming").await.expect("connection");
        let (mut send, mut recv) = connection.accept_bi().await.expect("stream");
        let mut buffer = [0u8; 64];
        while recv.read_exact(&mut buffer).await.is_ok() {
            if send.write_all(&buffer).await.is_err() {
                break;
            }
        }
    });
    let connection = client.connect(address, b"rtt").await.expect("connect");
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    let mut buffer = [1u8; 64];
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        send.write_all(&buffer).await.expect("write");
        recv.read_exact(&mut buffer).await.expect("read");
        samples.push(started.elapsed().as_micros() as u64);
    }
    drop(send);
    echo.abort();
    samples
}

/// A bare iroh endpoint on loopback for the raw anchors (no relays, no lookup), with a fresh key.
async fn loopback_endpoint(alpn: &[u8]) -> iroh::Endpoint {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("randomness");
    plait_io_iroh::iroh_net::bare_endpoint(key, alpn, &Default::default()).await.expect("endpoint")
}

/// Where to reach `endpoint` directly.
fn loopback_address(endpoint: &iroh::Endpoint) -> iroh::EndpointAddr {
    iroh::EndpointAddr::from_parts(endpoint.id(), endpoint.bound_sockets().into_iter().map(iroh::TransportAddr::Ip))
}

/// The nearest-rank percentile of sorted `values`: the smallest value at least `percent`% of them
/// do not exceed.
fn percentile(sorted: &[u64], percent: usize) -> u64 {
    sorted[(sorted.len() * percent).div_ceil(100).max(1) - 1]
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}
