//! What a node cost the host, for benchmarks: wall time inside its `handle` calls and bytes of
//! the frames delivered to it.
//!
//! The wall time is the one host measurement in the simulator. It is only counted and read
//! back here; no simulation decision depends on it, so runs stay deterministic.

use super::Cluster;

impl Cluster {
    /// Host wall time, in nanoseconds, spent inside `handle` of the node at `index` since the
    /// cluster started (over all its boots).
    pub fn handle_nanos(&self, index: usize) -> u64 {
        self.nodes[index].handle_nanos
    }

    /// Bytes of the frames delivered to the node at `index` since the cluster started (frames
    /// lost, blocked or sent while it was down are not counted).
    pub fn received_bytes(&self, index: usize) -> u64 {
        self.nodes[index].received_bytes
    }
}
