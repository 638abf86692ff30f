//! Runs scenarios over seed ranges on every core, with progress and failure lines.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Outcome, RunOptions, Scenario};

/// A request to run seeds.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Scenarios whose name starts with this.
    pub prefix: String,
    /// How many seeds per scenario.
    pub seeds: u64,
    /// The first seed.
    pub seed_start: u64,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// The canary's command-line name, if any (for replay lines).
    pub canary_name: Option<String>,
    /// Template for each run's options.
    pub options: RunOptions,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds × scenarios that passed.
    pub passed: u64,
    /// Seeds × scenarios that failed.
    pub failed: u64,
    /// The failure lines, in the order printed.
    pub failures: Vec<String>,
}

/// The exact command that replays one run.
pub fn replay_command(scenario: &str, seed: u64, canary: Option<&str>) -> String {
    match canary {
        Some(canary) => format!(
            "cargo run --release -p plait-sim-scenarios --features canary -- replay --scenario {scenario} --seed {seed} --canary {canary}"
        ),
        None => format!("cargo run --release -p plait-sim-scenarios -- replay --scenario {scenario} --seed {seed}"),
    }
}

/// Runs every selected scenario for every seed, on all cores. Prints each failure as it happens.
pub fn run(scenarios: &[Scenario], batch: &Batch) -> Summary {
    let selected: Vec<Scenario> = scenarios.iter().copied().filter(|s| s.name.starts_with(&batch.prefix)).collect();
    let jobs: Vec<(Scenario, u64)> =
        (0..batch.seeds).flat_map(|i| selected.iter().map(move |s| (*s, batch.seed_start + i))).collect();
    let total = jobs.len() as u64;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    let progress = Progress::new(total);
    name_the_run_that_panics(batch.canary_name.clone());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (scenario, seed) = jobs[index as usize];
                    let options = RunOptions { seed, ..batch.options.clone() };
                    RUNNING.set(Some((scenario.name, seed)));
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (scenario.run)(&options)));
                    RUNNING.set(None);
                    let failure = match outcome {
                        Ok(Outcome { violation: None, .. }) => None,
                        Ok(Outcome { violation: Some(violation), profile, .. }) => Some((
                            violation.invariant,
                            format!("  at {}: {}", violation.at, violation.detail),
                            format!("  faults: {profile}"),
                        )),
                        Err(payload) => Some(("panic", format!("  panic: {}", panic_message(&*payload)), String::new())),
                    };
                    let mut summary = summary.lock().expect("no thread panics while holding the summary");
                    match failure {
                        None => summary.passed += 1,
                        Some((invariant, detail, faults)) => {
                            summary.failed += 1;
                            let line = format!(
                                "FAILED scenario={} seed={seed} invariant={invariant} replay: {}",
                                scenario.name,
                                replay_command(scenario.name, seed, batch.canary_name.as_deref())
                            );
                            progress.println(&line);
                            progress.println(&detail);
                            if !faults.is_empty() {
                                progress.println(&faults);
                            }
                            summary.failures.push(line);
                            if batch.fail_fast {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    drop(summary);
                    progress.tick(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
            });
        }
    });
    progress.finish();
    summary.into_inner().expect("no thread panicked")
}

thread_local! {
    /// The scenario and seed this thread is running, for the panic hook.
    static RUNNING: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
}

/// Makes a panic print which run it came from before anything else. A run that panics is
/// caught and counted as failed (`invariant=panic`), but a panic can also abort the process
/// before it is caught (a Loro document poisoned by a panic panics again when dropped), and
/// then this line is all that names the seed.
fn name_the_run_that_panics(canary: Option<String>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some((scenario, seed)) = RUNNING.get() {
            eprintln!("PANICKED scenario={scenario} seed={seed} replay: {}", replay_command(scenario, seed, canary.as_deref()));
        }
        previous(info);
    }));
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// Runs one seed of one scenario, keeping the trace text if asked.
pub fn replay(scenario: &Scenario, options: &RunOptions) -> Outcome {
    (scenario.run)(options)
}

/// A progress bar on a terminal; a plain line every 10% otherwise.
struct Progress {
    total: u64,
    terminal: bool,
    lock: Mutex<()>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress { total, terminal: std::io::stderr().is_terminal(), lock: Mutex::new(()) }
    }

    fn tick(&self, done: u64) {
        let _guard = self.lock.lock();
        if self.terminal {
            let width = 40;
            let filled = (done * width / self.total.max(1)) as usize;
            eprint!("\r[{}{}] {done}/{}", "#".repeat(filled), " ".repeat(width as usize - filled), self.total);
            let _ = std::io::stderr().flush();
        } else if self.total >= 10 && done.is_multiple_of(self.total / 10) {
            eprintln!("progress: {done}/{} runs", self.total);
        }
    }

    fn println(&self, line: &str) {
        let _guard = self.lock.lock();
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        println!("{line}");
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(_: &RunOptions) -> Outcome {
        Outcome { violation: None, trace_hash: String::new(), events: 0, trace_text: None, profile: String::new() }
    }

    fn panics_on_odd_seeds(options: &RunOptions) -> Outcome {
        assert!(options.seed.is_multiple_of(2), "seed {} is odd", options.seed);
        passes(options)
    }

    /// A run that panics is one failed run, named with its seed; the others go on.
    #[test]
    fn a_panicking_run_counts_as_failed_and_the_rest_still_run() {
        let scenarios = [
            Scenario { name: "test/panics-on-odd-seeds", description: "", run: panics_on_odd_seeds },
            Scenario { name: "test/passes", description: "", run: passes },
        ];
        let batch = Batch { prefix: "test/".into(), seeds: 4, ..Batch::default() };
        let summary = run(&scenarios, &batch);
        assert_eq!((summary.passed, summary.failed), (6, 2));
        let mut failures = summary.failures.clone();
        failures.sort();
        assert!(
            failures[0].starts_with("FAILED scenario=test/panics-on-odd-seeds seed=1 invariant=panic replay: "),
            "{failures:?}"
        );
        assert!(failures[1].contains("seed=3 invariant=panic"), "{failures:?}");
    }
}
