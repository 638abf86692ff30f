//! Scenario families.

pub mod document;
pub mod mls;
pub mod paxos;
