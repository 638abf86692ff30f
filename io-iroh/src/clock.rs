//! The kernel's time, read by the driver (the kernel reads no clock).

use std::time::Duration;

use plait_kernel::Time;
use tokio::time::Instant;

/// Milliseconds since the Unix epoch at start, advanced by tokio's monotonic clock, so a node's
/// time never goes backwards within a run and is comparable across nodes (invite expiry is
/// judged by each acceptor's own clock). Under turmoil, tokio's clock is virtual and `base_ms`
/// is 0, so a test run is reproducible.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_ms: u64,
    started: Instant,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Clock { base_ms: since_epoch.as_millis() as u64, started: Instant::now() }
    }

    /// Time that starts at `base_ms` now (tests).
    pub fn starting_at(base_ms: u64) -> Clock {
        Clock { base_ms, started: Instant::now() }
    }

    /// Now.
    pub fn now(&self) -> Time {
        Time(self.base_ms + self.started.elapsed().as_millis() as u64)
    }

    /// The instant at which it will be `time`.
    pub fn instant_of(&self, time: Time) -> Instant {
        self.started + Duration::from_millis(time.0.saturating_sub(self.base_ms))
    }
}
