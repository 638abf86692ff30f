//! The shape most scenarios share: set up a group, run a workload through a safety phase with
//! faults, then a liveness phase in which everything must converge.

use plait_io_sim::{Cluster, FaultProfile, SimRng};
use plait_kernel::{Command, GroupId, Time};

use crate::{Outcome, RunOptions};

/// Simulated time everything gets to converge once faults stop.
pub const LIVENESS_MS_MAX: u64 = 60_000;

/// A scenario's parameters.
pub struct Outline {
    /// Acceptors in the cluster.
    pub acceptors: usize,
    /// How many of them the genesis names (the first ones); `None` names all.
    pub genesis_acceptors: Option<usize>,
    /// Devices in the cluster.
    pub devices: usize,
    /// Faults of the safety phase.
    pub profile: FaultProfile,
    /// Proposals each device makes during the safety phase.
    pub proposals_per_device: u64,
    /// Length of the safety phase.
    pub safety_ms: u64,
}

/// A running scenario: the cluster, its group, and the scenario's own randomness.
pub struct Session {
    /// The cluster.
    pub cluster: Cluster,
    /// The one group under test.
    pub group: GroupId,
    /// Randomness for scenario decisions (separate from the cluster's).
    pub rng: SimRng,
    /// The safety phase ends here.
    pub safety_end: Time,
}

impl Outline {
    /// Builds the cluster, opens the group and schedules the workload.
    pub fn start(self, options: &RunOptions) -> Session {
        let mut rng = SimRng::new(options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd);
        let mut cluster = Cluster::new(
            options.seed,
            self.acceptors,
            self.devices,
            options.kernel_config(),
            self.profile,
            options.keep_trace_text,
        );
        let genesis = cluster.genesis(options.seed, self.genesis_acceptors.unwrap_or(self.acceptors));
        let group = cluster.open_group(&genesis);
        for (n, device) in cluster.devices().into_iter().enumerate() {
            for k in 0..self.proposals_per_device {
                let at = Time(rng.between(1, self.safety_ms));
                let value = format!("d{n}-v{k}").into_bytes();
                cluster.command_at(at, device, Command::Propose { group, value });
            }
        }
        Session { cluster, group, rng, safety_end: Time(self.safety_ms) }
    }
}

impl Session {
    /// Runs the safety phase to its end, then the liveness phase.
    pub fn finish(mut self) -> Outcome {
        self.run_safety();
        self.run_liveness();
        self.outcome()
    }

    /// Runs the safety phase to its end.
    pub fn run_safety(&mut self) {
        self.cluster.run_until(self.safety_end);
    }

    /// Runs the liveness phase: heal, stop faults, and require convergence in bounded time.
    pub fn run_liveness(&mut self) {
        self.begin_liveness();
        self.await_convergence();
    }

    /// Heals the network, stops faults and restarts every node that is not lost.
    pub fn begin_liveness(&mut self) {
        self.cluster.stop_faults_and_heal();
    }

    /// Requires convergence within [`LIVENESS_MS_MAX`].
    pub fn await_convergence(&mut self) {
        if self.cluster.checker.violation().is_none() {
            let deadline = self.cluster.now().plus_ms(LIVENESS_MS_MAX);
            let group = self.group;
            if !self.cluster.run_until_condition(deadline, |c| c.converged(group)) && self.cluster.checker.violation().is_none() {
                let now = self.cluster.now();
                let detail = format!(
                    "{group:?} did not converge within {LIVENESS_MS_MAX}ms of healing\n{}",
                    self.cluster.describe_group(group)
                );
                self.cluster.checker.fail(now, "liveness-after-heal", detail);
            }
        }
    }

    /// Fails the run with a scenario-specific invariant.
    pub fn fail(&mut self, invariant: &'static str, detail: String) {
        let now = self.cluster.now();
        self.cluster.checker.fail(now, invariant, detail);
    }

    /// The outcome so far.
    pub fn outcome(self) -> Outcome {
        Outcome {
            violation: self.cluster.checker.violation().cloned(),
            trace_hash: self.cluster.trace_hash(),
            events: self.cluster.stats.events,
            trace_text: self.cluster.trace_text().map(<[String]>::to_vec),
            profile: self.cluster.profile.describe(),
        }
    }
}
