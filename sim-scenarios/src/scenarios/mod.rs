//! Scenario families.

pub mod compaction;
pub mod document;
pub mod mls;
pub mod paxos;
