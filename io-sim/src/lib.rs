//! A seeded discrete-event simulator for the Plait kernel.
//!
//! One seed decides everything: latency, loss, duplication, reordering, partitions, clogging,
//! crash points (between any two effects), restarts with lost or empty disks, and which fault
//! classes are off (swarm testing). A run has a safety phase with faults, checked after every
//! event, then a liveness phase with faults off in which everything must converge.

pub mod chance;
pub mod checker;
pub mod cluster;
pub mod disk;
pub mod documents;
pub mod faults;
pub mod network;
pub mod trace;

pub use chance::{Chance, SimRng};
pub use checker::{Checker, Violation};
pub use cluster::{Cluster, PLAINTEXT_MARKER, Role, Stats};
pub use faults::FaultProfile;
pub use network::{Latency, Network};
