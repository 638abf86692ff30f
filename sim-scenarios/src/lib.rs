//! Named chaos scenarios for Plait, and the code that runs them for `plait-sim`.
//!
//! A scenario is a sentence that says what Plait survives, and a function that drives a
//! [`Cluster`] through it for one seed. The list of scenarios is the documentation of the
//! fault model.

pub mod bench;
pub mod bench_compaction;
pub mod bench_document;
pub mod bench_groups;
pub mod bench_mls;
pub mod editing_trace;
pub mod html;
pub mod outline;
pub mod runner;
pub mod scenarios;
pub mod trace_replay;

use plait_io_sim::Violation;

/// One named scenario.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// `family/what-it-shows`, a sentence in kebab case.
    pub name: &'static str,
    /// What the scenario proves, in one line.
    pub description: &'static str,
    /// Runs one seed.
    pub run: fn(&RunOptions) -> Outcome,
}

/// How to run one seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The seed.
    pub seed: u64,
    /// Keep a readable trace.
    pub keep_trace_text: bool,
    /// A deliberately broken kernel to run.
    #[cfg(feature = "canary")]
    pub canary: Option<plait_kernel::canary::Canary>,
}

impl RunOptions {
    /// Options for one seed, with no trace text and no canary.
    pub fn new(seed: u64) -> RunOptions {
        RunOptions { seed, ..RunOptions::default() }
    }

    /// The kernel configuration scenarios start from (with the canary, if any).
    pub fn kernel_config(&self) -> plait_kernel::Config {
        #[allow(unused_mut)]
        let mut config = plait_kernel::Config::default();
        #[cfg(feature = "canary")]
        {
            config.canary = self.canary;
        }
        config
    }
}

/// What one seed of one scenario did.
#[derive(Debug)]
pub struct Outcome {
    /// The first broken invariant, if any.
    pub violation: Option<Violation>,
    /// Hash of the whole trace.
    pub trace_hash: String,
    /// Events processed.
    pub events: u64,
    /// Readable trace, if asked for.
    pub trace_text: Option<Vec<String>>,
    /// The derived fault options, for failure reports.
    pub profile: String,
}

/// Every scenario, in listing order.
pub fn all() -> Vec<Scenario> {
    let mut all = scenarios::paxos::all();
    all.extend(scenarios::mls::all());
    all.extend(scenarios::document::all());
    all.extend(scenarios::compaction::all());
    all
}
