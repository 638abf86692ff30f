//! Scenario families.

pub mod paxos;
