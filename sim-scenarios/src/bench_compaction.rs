//! `plait-sim bench compaction`: how a new device catches up on a long document from its latest
//! snapshot — host CPU inside its `handle` calls, simulated wall time, bytes it downloads — and
//! what the acceptors keep once history is compacted, for the automerge-paper trace and a
//! synthetic 1,000,000-operation document. Raw Loro snapshot import and a full history replay
//! in raw Loro are the anchors, measured in the same run.
//!
//! One founder types each document through the whole kernel path (edit, durable outbox, MLS,
//! three acceptors) in rounds; a round closes on the flush timer, so each round is one message.
//! The founder compacts automatically every `compact_after_messages` messages; the rounds are a
//! multiple of that, so the last compaction covers the whole history and a joiner needs its
//! snapshot and nothing else (a joiner arriving with an uncovered tail is another case).

use std::time::Instant;

use loro::{ExportMode, LoroDoc};
use plait_io_sim::{Chance, Cluster, FaultProfile, Latency, SimRng};
use plait_kernel::mls::Role;
use plait_kernel::{Command, Config, Event, GroupId};

use crate::editing_trace::{Patch, Trace};
use crate::scenarios::mls::found;

/// One-way latency, without loss or jitter: devices and acceptors in one region.
const LATENCY_MS: u64 = 20;

/// The seed of the cluster and of the synthetic document.
const SEED: u64 = 7;

/// Fresh devices admitted one after another to each built document: the catch-up samples.
const JOINERS: usize = 3;

/// Operations of the synthetic document, and the rounds (messages) they are typed in.
const SYNTHETIC_OPERATIONS: usize = 1_000_000;
const SYNTHETIC_ROUNDS: usize = 4_000;

/// Rounds (messages) the automerge-paper trace is typed in.
const PAPER_ROUNDS: usize = 2_000;

/// Longest any one wait may take (simulated).
const WAIT_MS_MAX: u64 = 120_000;

/// Targets for the 1M-operation document's joiner, and for both documents' byte ratios.
const CPU_MS_TARGET: f64 = 100.0;
const WALL_MS_TARGET: u64 = 250;
const RATIO_TARGET: f64 = 1.25;

/// The kernel's defaults, with compaction every 1,000 messages and 128 KiB chunks (so both
/// snapshots take several).
fn config() -> Config {
    Config { compact_after_messages: 1_000, snapshot_chunk_bytes: 128 << 10, ..Config::default() }
}

/// A document to build: its edits in order, typed in `rounds` rounds of equal size.
struct Workload {
    name: &'static str,
    patches: Vec<Patch>,
    rounds: usize,
    /// Whether the CPU and wall-time targets apply (the 1M-operation document).
    targeted: bool,
}

/// A document typed into a cluster whose latest compaction covers all of it.
struct Built {
    cluster: Cluster,
    group: GroupId,
    founder: usize,
    compactions: u32,
}

/// What one joiner's catch-up took.
struct CatchUp {
    cpu_ms: f64,
    wall_ms: u64,
    wall_after_welcome_ms: u64,
    received_bytes: u64,
}

/// Prints the figures; `paper` is the automerge-paper trace. False if a document could not be
/// measured (a missed target is a figure, not a failure).
pub fn run(paper: &Trace) -> bool {
    let config = config();
    println!(
        "compaction: 3 acceptors, one founder typing, {LATENCY_MS} ms one-way latency, no faults (the simulator models latency, not bandwidth); flush_after_ms={} flush_bytes={} message_bytes_max={} compact_after_messages={} compact_after_bytes={} snapshot_chunk_bytes={} snapshot_chunks_per_round_max={}",
        config.flush_after_ms,
        config.flush_bytes,
        config.message_bytes_max,
        config.compact_after_messages,
        config.compact_after_bytes,
        config.snapshot_chunk_bytes,
        config.snapshot_chunks_per_round_max
    );
    println!(
        "compaction: each document is built once; then {JOINERS} fresh devices are invited and admitted one after another, and each joiner figure is the median over them"
    );
    let patches = paper.transactions.iter().flat_map(|t| t.patches.iter().cloned()).collect();
    let workloads = [
        Workload { name: "automerge-paper", patches, rounds: PAPER_ROUNDS, targeted: false },
        Workload { name: "synthetic-1M", patches: synthetic(), rounds: SYNTHETIC_ROUNDS, targeted: true },
    ];
    let mut measured = true;
    for workload in &workloads {
        if let Err(error) = measure(workload) {
            println!("{}: FAILED {error}", workload.name);
            measured = false;
        }
    }
    measured
}

/// Single-character inserts (three in four) and deletes at uniformly random positions.
fn synthetic() -> Vec<Patch> {
    let mut rng = SimRng::new(SEED);
    let mut len = 0usize;
    let mut patches = Vec::with_capacity(SYNTHETIC_OPERATIONS);
    for _ in 0..SYNTHETIC_OPERATIONS {
        if len > 0 && rng.happens(Chance::percent(25)) {
            patches.push(Patch { position: rng.index(len), delete: 1, insert: String::new() });
            len -= 1;
        } else {
            let letter = char::from(b'a' + rng.between(0, 25) as u8);
            patches.push(Patch { position: rng.between(0, len as u64) as usize, delete: 0, insert: letter.to_string() });
            len += 1;
        }
    }
    patches
}

/// Builds one document, measures the acceptors and the anchors, admits the joiners, prints.
fn measure(workload: &Workload) -> Result<(), String> {
    let name = workload.name;
    let started = Instant::now();
    let mut built = build(workload)?;
    let build_s = started.elapsed().as_secs_f64();
    let (group, founder) = (built.group, built.founder);
    let view = built.cluster.device(founder).and_then(|d| d.group(group)).ok_or("the founder left the group")?;
    let (text, messages) = (view.text().unwrap_or_default(), view.updates_applied());
    let snapshot = view.snapshot().ok_or("the founder cannot export a snapshot")?;
    let compaction = view.compaction().cloned().ok_or("no compaction")?;
    let size = compaction.size;
    println!(
        "{name}: {} operations typed in {messages} messages, built once in {build_s:.1} s wall ({:.1} s simulated); {} compactions, the last covering all {} messages: snapshot {size} bytes sealed ({} bytes of Loro snapshot) in {} chunks; text {} characters",
        workload.patches.len(),
        built.cluster.now().0 as f64 / 1000.0,
        built.compactions,
        compaction.covered.count(),
        snapshot.len(),
        compaction.chunks,
        text.chars().count()
    );
    for acceptor in built.cluster.acceptors() {
        let stored = built.cluster.acceptor(acceptor).and_then(|a| a.group(group)).ok_or("an acceptor lost the group")?;
        let (count, message_bytes) = stored.stored_messages();
        let total = message_bytes + stored.snapshot_bytes();
        let ratio = total as f64 / size as f64;
        println!(
            "{name}: acceptor {acceptor} after compaction: {count} messages ({message_bytes} bytes) + {} snapshot bytes = {total} bytes = {ratio:.3}x the snapshot (target <= {RATIO_TARGET}x: {})",
            stored.snapshot_bytes(),
            verdict(ratio <= RATIO_TARGET)
        );
    }
    let (import_ms, read_ms) = snapshot_import_ms(&snapshot, &text);
    println!(
        "{name}: anchor: raw Loro LoroDoc::import of the founder's Loro snapshot ({} bytes): {import_ms:.2} ms (reading the text afterwards takes {read_ms:.2} ms more), median of 3",
        snapshot.len()
    );
    let updates = history_updates(workload);
    let replay_ms = replay_ms(&updates, &text);
    println!(
        "{name}: anchor: full history replay: the same edits re-typed in raw Loro, one update per kernel message ({} updates, {} bytes), imported in order into a fresh LoroDoc: {replay_ms:.1} ms, median of 3",
        updates.len(),
        updates.iter().map(Vec::len).sum::<usize>()
    );
    let joiners: Vec<usize> = built.cluster.devices().into_iter().filter(|d| *d != founder).collect();
    let mut samples = Vec::new();
    for joiner in joiners {
        samples.push(admit(&mut built, joiner, &text)?);
    }
    print_catch_up(workload, &samples, size, (import_ms, replay_ms));
    Ok(())
}

/// The joiners' lines: medians, each sample, ratios to the anchors, and the targets.
fn print_catch_up(workload: &Workload, samples: &[CatchUp], size: u64, (import_ms, replay_ms): (f64, f64)) {
    let name = workload.name;
    let cpu = median(samples.iter().map(|s| s.cpu_ms).collect());
    let wall = median(samples.iter().map(|s| s.wall_ms as f64).collect());
    let after_welcome = median(samples.iter().map(|s| s.wall_after_welcome_ms as f64).collect());
    let received = median(samples.iter().map(|s| s.received_bytes as f64).collect());
    let list = |f: &dyn Fn(&CatchUp) -> String| samples.iter().map(f).collect::<Vec<_>>().join(", ");
    let cpu_target = if workload.targeted {
        format!("target <= {CPU_MS_TARGET} ms: {}", verdict(cpu <= CPU_MS_TARGET))
    } else {
        "no target for this document".to_string()
    };
    println!(
        "{name}: joiner CPU (host time inside its handle calls, from accepting the invite to holding the founder's text): median {cpu:.1} ms [{}] = {:.2}x raw snapshot import, {:.3}x full history replay ({cpu_target})",
        list(&|s| format!("{:.1}", s.cpu_ms)),
        cpu / import_ms,
        cpu / replay_ms
    );
    let wall_target = |ms: f64| {
        if workload.targeted {
            format!("target <= {WALL_MS_TARGET} ms: {}", verdict(ms <= WALL_MS_TARGET as f64))
        } else {
            "no target for this document".to_string()
        }
    };
    println!(
        "{name}: joiner simulated wall from the Welcome arriving to caught up: median {after_welcome:.0} ms [{}] ({})",
        list(&|s| s.wall_after_welcome_ms.to_string()),
        wall_target(after_welcome)
    );
    println!(
        "{name}: joiner simulated wall from accepting the invite to caught up (the invite handshake included; the acceptors hand the key package to the admin and the Welcome to the joiner as they arrive): median {wall:.0} ms [{}] ({})",
        list(&|s| s.wall_ms.to_string()),
        wall_target(wall)
    );
    let ratio = received / size as f64;
    println!(
        "{name}: joiner received (every frame delivered to it from accepting the invite to caught up): median {received:.0} bytes [{}] = {ratio:.3}x the snapshot's {size} bytes (target <= {RATIO_TARGET}x: {})",
        list(&|s| s.received_bytes.to_string()),
        verdict(ratio <= RATIO_TARGET)
    );
}

/// Founds the group, types the workload round by round, and waits for each automatic
/// compaction and then for the last one to be in force, confirmed and held whole, at every
/// acceptor.
fn build(workload: &Workload) -> Result<Built, String> {
    let config = config();
    let every = config.compact_after_messages;
    assert!((workload.rounds as u64).is_multiple_of(every), "the last compaction must cover the whole history");
    let latency = Latency { min_ms: LATENCY_MS, ..FaultProfile::calm().latency };
    let profile = FaultProfile { latency, ..FaultProfile::calm() };
    let mut cluster = Cluster::new(SEED, 3, 1 + JOINERS, config.clone(), profile, false);
    let group = found(&mut cluster, SEED, 0, 3, 1)?.group_id();
    let founder = cluster.devices()[0];
    let (total, mut compactions) = (workload.patches.len(), 0);
    for round in 0..workload.rounds {
        let range = round * total / workload.rounds..(round + 1) * total / workload.rounds;
        for patch in &workload.patches[range] {
            let edit = Command::Edit { group, position: patch.position, delete: patch.delete, insert: patch.insert.clone() };
            cluster.command(founder, edit);
        }
        // The batch closes on the flush timer: one round, one message.
        let next = cluster.now().plus_ms(config.flush_after_ms + 1);
        cluster.run_until(next);
        if (round as u64 + 1).is_multiple_of(every) {
            wait_for(&mut cluster, "a compaction covering the founder's whole history", |c| covers_all(c, founder, group))?;
            compactions += 1;
        }
    }
    if cluster.stats.command_errors > 0 {
        return Err(format!("{} edits were refused", cluster.stats.command_errors));
    }
    let view = cluster.device(founder).and_then(|d| d.group(group)).ok_or("the founder left the group")?;
    if view.updates_applied() != workload.rounds as u64 {
        return Err(format!("{} rounds made {} messages; a round must be one message", workload.rounds, view.updates_applied()));
    }
    let hash = view.compaction().map(|c| c.hash).ok_or("no compaction")?;
    wait_for(&mut cluster, "the last compaction in force and confirmed at every acceptor", |c| {
        c.acceptors().iter().all(|a| {
            let view = c.acceptor(*a).and_then(|a| a.group(group));
            view.is_some_and(|g| g.confirmed().is_some_and(|k| k.hash == hash) && g.holds_snapshot(&hash))
        })
    })?;
    Ok(Built { cluster, group, founder, compactions })
}

/// Whether the founder's latest compaction covers every message it wrote.
fn covers_all(cluster: &Cluster, founder: usize, group: GroupId) -> bool {
    let Some(view) = cluster.device(founder).and_then(|d| d.group(group)) else { return false };
    view.compaction().is_some_and(|c| c.covered.count() == view.updates_applied())
}

/// Invites and admits `joiner`, and runs until it holds the founder's text.
fn admit(built: &mut Built, joiner: usize, text: &str) -> Result<CatchUp, String> {
    let (cluster, group, founder) = (&mut built.cluster, built.group, built.founder);
    cluster.notices.clear();
    cluster.command(founder, Command::CreateInvite { group, lifetime_ms: 600_000, role: Role::Writer });
    wait_for(cluster, "the invite", |c| c.notices.iter().any(|(_, e)| matches!(e, Event::InviteCreated { .. })))?;
    let code = cluster.notices.iter().find_map(|(_, event)| match event {
        Event::InviteCreated { code, .. } => Some(code.clone()),
        _ => None,
    });
    let code = code.expect("waited for above");
    let acceptors = cluster.checker.acceptors(group).cloned().ok_or("the group's acceptors are unknown")?;
    let messages = cluster.device(founder).and_then(|d| d.group(group)).map_or(0, |g| g.updates_applied());
    let (accepted_at, nanos, bytes) = (cluster.now(), cluster.handle_nanos(joiner), cluster.received_bytes(joiner));
    cluster.command(joiner, Command::AcceptInvite { code, acceptors });
    let welcomed = |c: &Cluster| c.notices.iter().any(|(n, e)| *n == joiner && matches!(e, Event::Joined { .. }));
    wait_for(cluster, "the joiner's Welcome", welcomed)?;
    let welcomed_at = cluster.now();
    wait_for(cluster, "the joiner's catch-up", |c| {
        let view = c.device(joiner).and_then(|d| d.group(group));
        view.is_some_and(|g| g.is_member() && !g.is_catching_up() && g.updates_applied() == messages)
    })?;
    let catch_up = CatchUp {
        cpu_ms: (cluster.handle_nanos(joiner) - nanos) as f64 / 1e6,
        wall_ms: cluster.now().since(accepted_at),
        wall_after_welcome_ms: cluster.now().since(welcomed_at),
        received_bytes: cluster.received_bytes(joiner) - bytes,
    };
    let joined = cluster.device(joiner).and_then(|d| d.group(group)?.text()).unwrap_or_default();
    if joined != text {
        return Err(format!("joiner {joiner} holds {} characters, not the founder's text", joined.chars().count()));
    }
    Ok(catch_up)
}

/// Runs until `done` holds; an error naming `what` if the deadline, the event limit or a broken
/// invariant comes first.
fn wait_for(cluster: &mut Cluster, what: &str, done: impl Fn(&Cluster) -> bool) -> Result<(), String> {
    let deadline = cluster.now().plus_ms(WAIT_MS_MAX);
    if cluster.run_until_condition(deadline, done) {
        return Ok(());
    }
    Err(match cluster.checker.violation() {
        Some(violation) => format!("invariant {} broke: {}", violation.invariant, violation.detail),
        None => format!("{what} did not happen within {WAIT_MS_MAX} ms simulated ({} events so far)", cluster.stats.events),
    })
}

/// Raw Loro: `LoroDoc::import` of a snapshot into a fresh document, and reading its text
/// afterwards (Loro may decode a snapshot's state lazily); medians of 3, in ms.
fn snapshot_import_ms(snapshot: &[u8], text: &str) -> (f64, f64) {
    let mut import = Vec::new();
    let mut read = Vec::new();
    for _ in 0..3 {
        let doc = LoroDoc::new();
        let started = Instant::now();
        doc.import(snapshot).expect("the founder's snapshot imports");
        import.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let imported = doc.get_text(plait_kernel::document::TEXT_CONTAINER).to_string();
        read.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(imported, text, "the snapshot holds the founder's text");
    }
    (median(import), median(read))
}

/// The workload re-typed in raw Loro, one update per round (as the kernel sends it).
fn history_updates(workload: &Workload) -> Vec<Vec<u8>> {
    let doc = LoroDoc::new();
    doc.set_peer_id(1).expect("a valid peer id");
    let text = doc.get_text(plait_kernel::document::TEXT_CONTAINER);
    let total = workload.patches.len();
    let mut version = doc.oplog_vv();
    let mut updates = Vec::with_capacity(workload.rounds);
    for round in 0..workload.rounds {
        for patch in &workload.patches[round * total / workload.rounds..(round + 1) * total / workload.rounds] {
            text.splice(patch.position, patch.delete, &patch.insert).expect("positions are in range");
        }
        doc.commit();
        updates.push(doc.export(ExportMode::updates(&version)).expect("updates export"));
        version = doc.oplog_vv();
    }
    updates
}

/// Raw Loro: every update imported in order into a fresh document; median of 3, in ms.
fn replay_ms(updates: &[Vec<u8>], text: &str) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..3 {
        let doc = LoroDoc::new();
        let started = Instant::now();
        for update in updates {
            doc.import(update).expect("the history imports");
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(doc.get_text(plait_kernel::document::TEXT_CONTAINER).to_string(), text, "the history is the founder's text");
    }
    median(samples)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
