//! The simulated disk. A `Persist` batch is applied whole when the barrier runs; a crash loses
//! only batches whose `Persist` effect had not run yet; a restart sees exactly the durable image.
//!
//! The durable image is a `Restored`, and a batch means what `Restored::apply` says it means —
//! the same reference store-sqlite is tested against.

use plait_kernel::{Restored, WriteBatch};

/// One node's disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    durable: Restored,
    batches_written: u64,
}

impl Disk {
    /// Makes `batch` durable.
    pub fn persist(&mut self, batch: &WriteBatch) {
        self.durable.apply(batch);
        self.batches_written += 1;
    }

    /// Everything durable, as a restart would load it.
    pub fn durable(&self) -> &Restored {
        &self.durable
    }

    /// Loses everything (a disk replaced after a failure).
    pub fn wipe(&mut self) {
        self.durable = Restored::empty();
    }

    /// Batches made durable since the simulation started.
    pub fn batches_written(&self) -> u64 {
        self.batches_written
    }
}
