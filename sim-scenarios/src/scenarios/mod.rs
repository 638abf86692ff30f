//! Scenario families.

pub mod mls;
pub mod paxos;
