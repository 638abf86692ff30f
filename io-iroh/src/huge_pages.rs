//! Transparent huge pages, turned off for the whole process.
//!
//! mimalloc asks Linux for transparent huge pages on the regions it maps, so the first touch of
//! fresh memory faults in and zeroes 2 MiB at once, and on a kernel whose `defrag` setting is
//! `madvise` (the common default) it may compact memory first. A node grows its memory with every
//! message it keeps (Loro's text tree splits a leaf, a QUIC receive buffer is replaced), so that
//! cost lands on the message path. `benches/real.rs`, 6 interleaved pairs of invocations on a
//! 2-core host: 9,705–10,455 MLS messages/s (median ~9,990) with huge pages off against
//! 8,975–9,339 (median ~9,250) with them on, process CPU per message 190–205 µs against
//! 200–260 (the first run of an invocation, on fresh memory, gained most); latency p50 within
//! the spread (1,058–1,125 against 1,040–1,163 µs). `perf` showed 27% of a reader's Loro import
//! zeroing huge pages before.
//!
//! This is what `MIMALLOC_ALLOW_THP=0` does, done by the program so that operators need not set
//! it. It is a flag of the process (`prctl(PR_SET_THP_DISABLE)`), inherited by children; memory
//! already backed by huge pages keeps them, so call it first thing in `main`.

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do). A host
/// app linking the facade may call it too; it changes no behaviour, only what memory costs.
pub fn turn_off_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn turning_huge_pages_off_sets_the_process_flag() {
        use rustix::thread::{disable_transparent_huge_pages, transparent_huge_pages_are_disabled};
        // The flag is the process's (tests share it); it changes only what memory costs.
        disable_transparent_huge_pages(false).expect("prctl accepts it");
        assert!(!transparent_huge_pages_are_disabled().expect("prctl answers"));
        super::turn_off_transparent_huge_pages().expect("prctl accepts it");
        assert!(transparent_huge_pages_are_disabled().expect("prctl answers"));
        disable_transparent_huge_pages(false).expect("prctl accepts it");
    }
}
