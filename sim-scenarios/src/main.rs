//! `plait-sim`: lists, runs, replays and benchmarks Plait's chaos scenarios.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plait_sim_scenarios::runner::{self, Batch};
use plait_sim_scenarios::{RunOptions, all, bench};

#[derive(Parser)]
#[command(name = "plait-sim", about = "Seeded chaos simulation of the Plait kernel")]
struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// One line per scenario: `NAME — description`.
    List,
    /// Runs seeds `S..S+N` of every scenario whose name starts with PREFIX.
    Run {
        /// Scenario name prefix (all scenarios by default).
        #[arg(long, default_value = "")]
        scenario: String,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        seed_start: u64,
        /// Stop at the first failure.
        #[arg(long)]
        fail_fast: bool,
        /// Run a deliberately broken kernel.
        #[cfg(feature = "canary")]
        #[arg(long)]
        canary: Option<String>,
    },
    /// Replays one run exactly; the last line is `trace-hash: <hex>`.
    Replay {
        /// The exact scenario name.
        #[arg(long)]
        scenario: String,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Write the readable trace here.
        #[arg(long)]
        trace_out: Option<std::path::PathBuf>,
        /// Write the trace as an HTML sequence diagram here.
        #[arg(long)]
        html_out: Option<std::path::PathBuf>,
        /// Run a deliberately broken kernel.
        #[cfg(feature = "canary")]
        #[arg(long)]
        canary: Option<String>,
    },
    /// Replays an editing trace (gzipped JSON, sequential or concurrent) through the simulator
    /// under the seed's network faults; every device must end with its `endContent`. The last
    /// lines are `text-hash: <hex>` and `N passed, M failed` (devices).
    Trace {
        /// The trace file.
        file: std::path::PathBuf,
        /// Devices (default: one per agent of a concurrent trace, three for a sequential one).
        #[arg(long)]
        devices: Option<usize>,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Prints simulated events per second per core and seeds per second per family, then MLS
    /// costs, each with its anchors; `bench compaction` prints the compaction figures instead.
    Bench {
        /// One benchmark on its own (one not run by default).
        #[command(subcommand)]
        only: Option<BenchOnly>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Skip the MLS figures (they take a minute in a debug build).
        #[arg(long)]
        no_mls: bool,
    },
}

/// Benchmarks that `plait-sim bench` runs only when named.
#[derive(Subcommand)]
enum BenchOnly {
    /// A new device catching up from the latest snapshot of automerge-paper and of a synthetic
    /// 1,000,000-operation document, and acceptor storage after compaction, with raw Loro
    /// anchors and the targets (about a minute in a release build).
    Compaction,
    /// What one input costs an acceptor and a device in 1 to 10,000 groups, with an anchor
    /// (seconds).
    Groups,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let scenarios = all();
    match cli.command {
        Verb::List => {
            for scenario in &scenarios {
                println!("{} — {}", scenario.name, scenario.description);
            }
            ExitCode::SUCCESS
        }
        #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
        Verb::Run {
            scenario,
            seeds,
            seed_start,
            fail_fast,
            #[cfg(feature = "canary")]
            canary,
        } => {
            let mut batch = Batch { prefix: scenario, seeds, seed_start, fail_fast, ..Batch::default() };
            #[cfg(feature = "canary")]
            if let Some(name) = canary {
                let Some(found) = plait_kernel::canary::Canary::from_name(&name) else { return unknown_canary(&name) };
                batch.options.canary = Some(found);
                batch.canary_name = Some(name);
            }
            if !scenarios.iter().any(|s| s.name.starts_with(&batch.prefix)) {
                eprintln!("no scenario starts with {:?}; see `plait-sim list`", batch.prefix);
                return ExitCode::from(2);
            }
            let summary = runner::run(&scenarios, &batch);
            println!("{} passed, {} failed", summary.passed, summary.failed);
            if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
        Verb::Replay {
            scenario,
            seed,
            trace_out,
            html_out,
            #[cfg(feature = "canary")]
            canary,
        } => {
            let Some(found) = scenarios.iter().find(|s| s.name == scenario) else {
                eprintln!("no scenario named {scenario:?}; see `plait-sim list`");
                return ExitCode::from(2);
            };
            let mut options = RunOptions::new(seed);
            options.keep_trace_text = trace_out.is_some() || html_out.is_some();
            #[cfg(feature = "canary")]
            if let Some(name) = canary {
                let Some(canary) = plait_kernel::canary::Canary::from_name(&name) else { return unknown_canary(&name) };
                options.canary = Some(canary);
            }
            let outcome = runner::replay(found, &options);
            if let (Some(path), Some(text)) = (trace_out, &outcome.trace_text) {
                if let Err(error) = std::fs::write(&path, text.join("\n") + "\n") {
                    eprintln!("cannot write the trace to {}: {error}", path.display());
                    return ExitCode::from(2);
                }
                println!("trace written to {} ({} lines)", path.display(), text.len());
            }
            if let (Some(path), Some(text)) = (html_out, &outcome.trace_text) {
                let page = plait_sim_scenarios::html::sequence_diagram(&format!("{scenario} seed {seed}"), text);
                if let Err(error) = std::fs::write(&path, page) {
                    eprintln!("cannot write the diagram to {}: {error}", path.display());
                    return ExitCode::from(2);
                }
                println!("sequence diagram written to {}", path.display());
            }
            println!("faults: {}", outcome.profile);
            println!("events: {}", outcome.events);
            let failed = outcome.violation.is_some();
            match &outcome.violation {
                Some(violation) => println!("FAILED invariant={} at {}: {}", violation.invariant, violation.at, violation.detail),
                None => println!("passed"),
            }
            println!("trace-hash: {}", outcome.trace_hash);
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Verb::Trace { file, devices, seed } => trace(&file, devices, seed),
        Verb::Bench { only: Some(BenchOnly::Compaction), .. } => match paper_trace() {
            Ok(trace) if plait_sim_scenarios::bench_compaction::run(&trace) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("cannot read the automerge-paper trace: {error}");
                ExitCode::from(2)
            }
        },
        Verb::Bench { only: Some(BenchOnly::Groups), .. } => {
            plait_sim_scenarios::bench_groups::run();
            ExitCode::SUCCESS
        }
        Verb::Bench { only: None, seeds, no_mls } => {
            bench::run(&scenarios, seeds);
            if !no_mls {
                plait_sim_scenarios::bench_mls::run();
            }
            match paper_trace() {
                Ok(trace) => plait_sim_scenarios::bench_document::run(&trace),
                Err(error) => eprintln!("document figures skipped: {error}"),
            }
            ExitCode::SUCCESS
        }
    }
}

/// The automerge-paper trace the benchmarks use (the kernel's test copy).
fn paper_trace() -> Result<plait_sim_scenarios::editing_trace::Trace, String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/tests/data/editing-traces/automerge-paper.json.gz");
    plait_sim_scenarios::editing_trace::Trace::load(&path)
}

/// `plait-sim trace`.
fn trace(file: &std::path::Path, devices: Option<usize>, seed: u64) -> ExitCode {
    use plait_sim_scenarios::editing_trace::Trace;
    let trace = match Trace::load(file) {
        Ok(trace) => trace,
        Err(error) => {
            eprintln!("cannot read the trace: {error}");
            return ExitCode::from(2);
        }
    };
    let devices = devices.unwrap_or(if trace.agents > 1 { trace.agents } else { 3 });
    if !(1..=16).contains(&devices) || devices < trace.agents.min(2) {
        eprintln!("--devices must be between 1 and 16 (and at least 2 for a concurrent trace)");
        return ExitCode::from(2);
    }
    println!(
        "trace {}: {} transactions, {} patches, {} agent(s), {} characters at the end; {devices} devices, seed {seed}",
        file.display(),
        trace.transactions.len(),
        trace.patch_count(),
        trace.agents,
        trace.end.chars().count()
    );
    let started = std::time::Instant::now();
    let mut shown = 0;
    let replayed = plait_sim_scenarios::trace_replay::replay(&trace, devices, seed, |done, total| {
        if done * 10 / total.max(1) > shown {
            shown = done * 10 / total.max(1);
            eprintln!("  {}% of transactions typed", shown * 10);
        }
    });
    let mut passed = 0;
    for (device, text) in replayed.texts.iter().enumerate() {
        let same = *text == trace.end && replayed.failure.is_none();
        passed += usize::from(same);
        let verdict = if same { "matches endContent" } else { "DIFFERS from endContent" };
        println!("device {device}: {} characters, {verdict}", text.chars().count());
    }
    if let Some(failure) = &replayed.failure {
        println!("FAILED {failure}");
    }
    println!(
        "{} messages safe, {} simulated events, {:.1} s simulated, {:.1} s wall",
        replayed.messages,
        replayed.events,
        replayed.simulated_ms as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    println!("text-hash: {}", replayed.text_hash);
    let failed = devices - passed;
    println!("{passed} passed, {failed} failed");
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(feature = "canary")]
fn unknown_canary(name: &str) -> ExitCode {
    let names: Vec<&str> = plait_kernel::canary::Canary::ALL.iter().map(|(n, _)| *n).collect();
    eprintln!("unknown canary {name:?}; known: {}", names.join(", "));
    ExitCode::from(2)
}
