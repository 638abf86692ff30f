//! Anti-entropy that slows down while nothing happens.
//!
//! Why: a device asks each acceptor for what it missed (`Sync`, `Fetch`) every
//! `sync_interval_ms`, and an acceptor asks its peers every `peer_sync_interval_ms`, per group.
//! Live traffic does not need those rounds (acceptors push what they store, proposers send
//! `Chosen`, a gap is fetched at once); they are there for what a lost frame or a partition
//! dropped. So while a group makes no progress and has no work of its own pending, each round
//! waits twice as long as the last, up to a ceiling; news (seen at a round or in any message)
//! brings the next round back to the base interval. An idle device with one document and three
//! acceptors sent 12 frames a second, forever.

/// Doublings at most: `base << QUIET_ROUNDS_MAX` is far past any ceiling, and the shift stays
/// in range.
const QUIET_ROUNDS_MAX: u32 = 16;

/// The pace of one group's anti-entropy rounds. `P` is what the group counts as progress
/// (slots learned, updates applied, ...): rounds that see the same value are quiet.
#[derive(Debug)]
pub(crate) struct IdlePace<P> {
    /// The progress at the last round.
    seen: Option<P>,
    /// Consecutive quiet rounds, at most [`QUIET_ROUNDS_MAX`].
    quiet_rounds: u32,
}

impl<P> Default for IdlePace<P> {
    fn default() -> IdlePace<P> {
        IdlePace { seen: None, quiet_rounds: 0 }
    }
}

impl<P: PartialEq> IdlePace<P> {
    /// At a round: how long until the next one. `busy`: the group has work pending that the
    /// rounds help finish (a ballot, unsafe messages, a recovery), so they keep the base pace.
    pub(crate) fn next_interval(&mut self, progress: P, busy: bool, base_ms: u64, ceiling_ms: u64) -> u64 {
        let quiet = !busy && self.seen.as_ref() == Some(&progress);
        self.quiet_rounds = if quiet { (self.quiet_rounds + 1).min(QUIET_ROUNDS_MAX) } else { 0 };
        self.seen = Some(progress);
        base_ms.saturating_mul(1 << self.quiet_rounds).min(ceiling_ms).max(base_ms)
    }

    /// Between rounds: whether the group moved since the last round while the rounds were
    /// slowed down, so the next one should come within the base interval. Counts as news once.
    pub(crate) fn woken(&mut self, progress: &P) -> bool {
        if self.quiet_rounds == 0 || self.seen.as_ref() == Some(progress) {
            return false;
        }
        self.quiet_rounds = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_rounds_double_the_interval_up_to_the_ceiling() {
        let mut pace = IdlePace::default();
        let intervals: Vec<u64> = (0..7).map(|_| pace.next_interval(7_u64, false, 500, 8_000)).collect();
        assert_eq!(intervals, [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        for _ in 0..100 {
            pace.next_interval(7, false, 500, u64::MAX);
        }
        assert_eq!(pace.next_interval(7, false, 500, u64::MAX), 500 << QUIET_ROUNDS_MAX, "the doublings stop");
    }

    #[test]
    fn progress_or_pending_work_keeps_the_base_interval() {
        let mut pace = IdlePace::default();
        pace.next_interval(1_u64, false, 500, 8_000);
        assert_eq!(pace.next_interval(1, false, 500, 8_000), 1_000);
        assert_eq!(pace.next_interval(2, false, 500, 8_000), 500, "progress");
        assert_eq!(pace.next_interval(2, true, 500, 8_000), 500, "busy");
        assert_eq!(pace.next_interval(2, false, 500, 8_000), 1_000);
    }

    #[test]
    fn news_between_rounds_wakes_a_slowed_pace_once() {
        let mut pace = IdlePace::default();
        pace.next_interval(1_u64, false, 500, 8_000);
        assert!(!pace.woken(&2), "the pace is not slowed yet");
        pace.next_interval(1, false, 500, 8_000);
        assert!(!pace.woken(&1), "no news");
        assert!(pace.woken(&2));
        assert!(!pace.woken(&3), "already woken");
        assert_eq!(pace.next_interval(3, false, 500, 8_000), 500);
    }
}
