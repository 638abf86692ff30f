//! The simulated network: latency, loss, duplication, reordering, partitions and clogging.
//!
//! Links are directed. A message is dropped if its link is blocked when it is sent or when it
//! would arrive, so partitions cut messages already in flight too.

use std::collections::{BTreeMap, BTreeSet};

use crate::chance::{Chance, SimRng};

/// How long a message takes, in milliseconds. Integer-only so replays match on every machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// Every message takes at least this long.
    pub min_ms: u64,
    /// Plus a uniform extra of up to this much (wide spreads reorder messages).
    pub spread_ms: u64,
    /// With this chance, a message also gets a long tail delay...
    pub tail: Chance,
    /// ...of up to this much.
    pub tail_ms_max: u64,
}

/// The network's fault settings and current partitions.
#[derive(Clone, Debug)]
pub struct Network {
    /// Latency model.
    pub latency: Latency,
    /// Chance a message is lost.
    pub loss: Chance,
    /// Chance a message is delivered twice.
    pub duplicate: Chance,
    blocked: BTreeSet<(usize, usize)>,
    /// Extra delay per clogged directed link.
    clogged: BTreeMap<(usize, usize), u64>,
}

/// What the network decided for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Arrives after these delays (one, or two when duplicated).
    Delivered(Vec<u64>),
    /// Never arrives.
    Lost,
}

impl Network {
    /// A clean network with the given latency.
    pub fn new(latency: Latency) -> Network {
        Network { latency, loss: Chance::NEVER, duplicate: Chance::NEVER, blocked: BTreeSet::new(), clogged: BTreeMap::new() }
    }

    /// Decides delays for a message on `from → to`.
    pub fn fate(&self, rng: &mut SimRng, from: usize, to: usize) -> Fate {
        if self.is_blocked(from, to) || rng.happens(self.loss) {
            return Fate::Lost;
        }
        let copies = if rng.happens(self.duplicate) { 2 } else { 1 };
        let delays = (0..copies).map(|_| self.delay(rng, from, to)).collect();
        Fate::Delivered(delays)
    }

    fn delay(&self, rng: &mut SimRng, from: usize, to: usize) -> u64 {
        let mut delay = self.latency.min_ms + rng.between(0, self.latency.spread_ms);
        if rng.happens(self.latency.tail) {
            delay += rng.between(0, self.latency.tail_ms_max);
        }
        delay + self.clogged.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Whether `from → to` is cut.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Cuts `from → to` only (an asymmetric partition).
    pub fn block_one_way(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Cuts every link between `side` and `other` in both directions.
    pub fn partition(&mut self, side: &[usize], other: &[usize]) {
        for a in side {
            for b in other {
                self.blocked.insert((*a, *b));
                self.blocked.insert((*b, *a));
            }
        }
    }

    /// Slows `from → to` by `extra_ms`.
    pub fn clog(&mut self, from: usize, to: usize, extra_ms: u64) {
        self.clogged.insert((from, to), extra_ms);
    }

    /// Removes every partition and clog.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.clogged.clear();
    }

    /// Stops loss and duplication and narrows latency to its base (the liveness phase).
    pub fn calm(&mut self) {
        self.loss = Chance::NEVER;
        self.duplicate = Chance::NEVER;
        self.latency.tail = Chance::NEVER;
    }
}
