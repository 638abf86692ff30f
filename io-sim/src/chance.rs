//! Integer-only randomness helpers, so a seed gives the same run on every machine.
//!
//! Probabilities are parts per million; no floating point reaches a decision.

use plait_kernel::rng::NodeRng;

/// A probability in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Chance(pub u32);

impl Chance {
    /// Never.
    pub const NEVER: Chance = Chance(0);

    /// `percent` out of 100.
    pub const fn percent(percent: u32) -> Chance {
        Chance(percent * 10_000)
    }
}

/// The simulator's own randomness (separate from every node's).
#[derive(Clone, Debug)]
pub struct SimRng(NodeRng);

impl SimRng {
    /// A generator decided by `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(NodeRng::from_seed(seed ^ 0x5157_5157_5157_5157))
    }

    /// True with probability `chance`.
    pub fn happens(&mut self, chance: Chance) -> bool {
        chance.0 > 0 && self.0.in_range(0, 999_999) < u64::from(chance.0)
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0.in_range(low, high)
    }

    /// A uniformly chosen index below `len` (`len` must be positive).
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "cannot pick from nothing");
        self.0.in_range(0, len as u64 - 1) as usize
    }

    /// A fresh seed for a node boot.
    pub fn seed(&mut self) -> u64 {
        self.0.next_u64()
    }
}
