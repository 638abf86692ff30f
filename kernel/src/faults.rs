//! Fault injection for tests: a panic inside the document library or the MLS library, on
//! demand, as a bug that every replica meets would cause.
//!
//! Compiled in only with the `fault-injection` feature (enabled by the kernel's own tests and
//! io-iroh's); without it the hooks are empty.

/// Which library a hook stands in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    /// Loro, importing an update (the hook sees the update's bytes).
    Loro,
    /// openmls, reading application data (the hook sees the plaintext, after openmls advanced
    /// its state) or checking a commit (the hook sees the commit's bytes).
    Mls,
    /// openmls merging a chosen commit into an acceptor's view, after it passed the check (the
    /// hook sees the commit's bytes).
    MlsMerge,
}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::Mutex;

    use super::Library;

    /// One per library for the whole process, so that it reaches the threads a driver runs
    /// nodes on. Tests that run at once choose markers no other test types.
    static LORO_MARKER: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    static MLS_MARKER: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    static MLS_MERGE_MARKER: Mutex<Option<Vec<u8>>> = Mutex::new(None);

    fn marker(library: Library) -> &'static Mutex<Option<Vec<u8>>> {
        match library {
            Library::Loro => &LORO_MARKER,
            Library::Mls => &MLS_MARKER,
            Library::MlsMerge => &MLS_MERGE_MARKER,
        }
    }

    fn arm(library: Library, value: Option<Vec<u8>>) {
        *marker(library).lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = value;
    }

    /// From now on, importing an update whose bytes contain `marker` panics inside the document
    /// library's call. Text typed into a small update appears in its bytes as it is.
    pub fn panic_on_updates_containing(marker: &[u8]) {
        arm(Library::Loro, Some(marker.to_vec()));
    }

    /// From now on, reading application data whose plaintext contains `marker` panics inside
    /// the MLS library's call, after openmls has advanced the member's state (the worst case: a
    /// half-written state); so does checking a commit whose bytes contain it.
    pub fn panic_in_mls_on_messages_containing(marker: &[u8]) {
        arm(Library::Mls, Some(marker.to_vec()));
    }

    /// From now on, an acceptor merging a chosen commit whose bytes contain `marker` into its
    /// view panics inside the MLS library's call (checking the same commit does not).
    pub fn panic_in_mls_merging_commits_containing(marker: &[u8]) {
        arm(Library::MlsMerge, Some(marker.to_vec()));
    }

    /// `library` stops panicking (the other's marker stays: tests of each may run at once).
    pub fn stop_panicking(library: Library) {
        arm(library, None);
    }

    pub(crate) fn panic_if_armed(library: Library, bytes: &[u8]) {
        let hit = marker(library)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|marker| !marker.is_empty() && bytes.windows(marker.len()).any(|window| window == marker));
        if hit {
            panic!("fault injected: {library:?} panics on its input");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::*;

/// Without the feature: nothing to inject.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn panic_if_armed(_library: Library, _bytes: &[u8]) {}
