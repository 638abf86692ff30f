//! The node's one source of randomness: a ChaCha generator seeded by the host.
//!
//! Architecture Invariant: nothing in the kernel draws randomness from anywhere else. The host
//! passes a fresh seed at every boot (the simulator derives it from the run's seed; a real driver
//! draws it from the OS), so two boots of one node never replay the same random stream.

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// Seeded randomness for one node.
#[derive(Clone, Debug)]
pub struct NodeRng {
    inner: ChaCha12Rng,
}

impl NodeRng {
    /// A generator whose whole stream is decided by `seed`.
    pub fn from_seed(seed: u64) -> NodeRng {
        NodeRng { inner: ChaCha12Rng::seed_from_u64(seed) }
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniformly random value in `low..=high` (`low` if the range is empty).
    pub fn in_range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low + 1;
        // Rejection sampling keeps the draw unbiased; the loop ends with probability 1 and in
        // practice after one draw, because the rejected zone is smaller than half the space.
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let draw = self.inner.next_u64();
            if draw < zone {
                return low + draw % span;
            }
        }
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        self.inner.fill_bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_ranges_stay_in_bounds() {
        let mut a = NodeRng::from_seed(7);
        let mut b = NodeRng::from_seed(7);
        for _ in 0..100 {
            let x = a.in_range(10, 20);
            assert_eq!(x, b.in_range(10, 20));
            assert!((10..=20).contains(&x));
        }
        assert_ne!(NodeRng::from_seed(7).next_u64(), NodeRng::from_seed(8).next_u64());
    }
}
