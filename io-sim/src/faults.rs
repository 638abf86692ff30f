//! Which faults a run injects, chosen from its seed (swarm testing: each seed also switches
//! whole fault classes off, so rare combinations get explored without drowning in noise).

use crate::chance::{Chance, SimRng};
use crate::network::Latency;

/// The fault classes a run may switch on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultProfile {
    /// Message loss.
    pub loss: Chance,
    /// Message duplication.
    pub duplicate: Chance,
    /// Latency model (a wide spread reorders messages).
    pub latency: Latency,
    /// Symmetric partitions between random halves.
    pub partitions: bool,
    /// One-way link cuts.
    pub asymmetric: bool,
    /// Cutting one node off from everyone.
    pub isolate: bool,
    /// Slow links.
    pub clogging: bool,
    /// Crashes (with restarts from durable state).
    pub crashes: bool,
    /// Chance of crashing between two effects of one `handle` call.
    pub crash_mid_effects: Chance,
    /// Acceptor restarts with an empty disk (one at a time, only while every other is healthy).
    pub wipes: bool,
    /// Mean time between fault actions.
    pub fault_interval_ms: u64,
}

impl FaultProfile {
    /// No faults at all, with a fixed small latency.
    pub fn calm() -> FaultProfile {
        FaultProfile {
            loss: Chance::NEVER,
            duplicate: Chance::NEVER,
            latency: Latency { min_ms: 5, spread_ms: 0, tail: Chance::NEVER, tail_ms_max: 0 },
            partitions: false,
            asymmetric: false,
            isolate: false,
            clogging: false,
            crashes: false,
            crash_mid_effects: Chance::NEVER,
            wipes: false,
            fault_interval_ms: 1_000,
        }
    }

    /// A profile drawn from the seed: each class on with probability one half.
    pub fn swarm(rng: &mut SimRng) -> FaultProfile {
        let mut on = || rng.happens(Chance::percent(50));
        let (loss, duplicate, reorder, partitions, asymmetric, isolate, clogging, crashes, mid, wipes) =
            (on(), on(), on(), on(), on(), on(), on(), on(), on(), on());
        FaultProfile {
            loss: if loss { Chance(rng.between(10_000, 200_000) as u32) } else { Chance::NEVER },
            duplicate: if duplicate { Chance(rng.between(10_000, 100_000) as u32) } else { Chance::NEVER },
            latency: Latency {
                min_ms: rng.between(1, 10),
                spread_ms: if reorder { rng.between(10, 100) } else { rng.between(0, 3) },
                tail: if reorder { Chance::percent(5) } else { Chance::NEVER },
                tail_ms_max: 400,
            },
            partitions,
            asymmetric,
            isolate,
            clogging,
            crashes,
            crash_mid_effects: if mid { Chance(rng.between(1_000, 20_000) as u32) } else { Chance::NEVER },
            wipes,
            fault_interval_ms: rng.between(100, 1_500),
        }
    }

    /// One line naming every derived option, printed with failures so a run explains itself.
    pub fn describe(&self) -> String {
        format!(
            "loss={}ppm dup={}ppm latency={}+{}ms tail={}ppm partitions={} asymmetric={} isolate={} clog={} crashes={} mid-effect-crash={}ppm wipes={} every~{}ms",
            self.loss.0,
            self.duplicate.0,
            self.latency.min_ms,
            self.latency.spread_ms,
            self.latency.tail.0,
            self.partitions,
            self.asymmetric,
            self.isolate,
            self.clogging,
            self.crashes,
            self.crash_mid_effects.0,
            self.wipes,
            self.fault_interval_ms
        )
    }
}
