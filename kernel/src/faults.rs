//! Fault injection for tests: a panic inside the document library, on demand.
//!
//! Compiled in only with the `fault-injection` feature; without it the hooks are empty.

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::Mutex;

    /// One for the whole process, so that it reaches the threads a driver runs nodes on. Tests
    /// that run at once choose markers no other test types.
    static MARKER: Mutex<Option<Vec<u8>>> = Mutex::new(None);

    /// From now on, importing an update whose bytes contain `marker` panics inside the document
    /// library's call, as a Loro bug that every replica meets would (tests only: the feature is
    /// enabled by the kernel's own tests and io-iroh's). Text typed into a small update appears
    /// in its bytes as it is.
    pub fn panic_on_updates_containing(marker: &[u8]) {
        *MARKER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(marker.to_vec());
    }

    /// Imports stop panicking.
    pub fn stop_panicking() {
        *MARKER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    pub(crate) fn panic_if_armed(update: &[u8]) {
        let hit = MARKER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|marker| !marker.is_empty() && update.windows(marker.len()).any(|window| window == marker));
        if hit {
            panic!("fault injected: the document library panics importing an update");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::*;

/// Without the feature: nothing to inject.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn panic_if_armed(_update: &[u8]) {}
