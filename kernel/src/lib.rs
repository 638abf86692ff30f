//! Plait's deterministic, sans-IO protocol kernel.
//!
//! A host drives a node with `handle(now, input) -> Outputs` and carries out the returned effects
//! in order; `Persist` is a barrier. The kernel does no I/O, reads no clock and draws no OS
//! randomness: the same seed and inputs give the same effects, byte for byte.
//!
//! Two node kinds host many groups each: a [`Device`] proposes and learns, an [`Acceptor`] votes
//! and stores. Paxos orders each group's log of opaque values.

pub mod acceptor;
pub mod canary;
pub mod config;
mod context;
mod deadlines;
pub mod device;
pub mod document;
pub mod faults;
pub mod fuzzing;
mod idle;
pub mod ids;
pub mod invite;
pub mod io;
pub mod log;
mod loro_blob;
pub mod mls;
pub mod rng;
pub mod snapshot;
pub mod storage;
pub mod time;
pub mod updates;
mod vouches;
pub mod wire;

pub use acceptor::Acceptor;
pub use config::{Config, ConfigError, ValidConfig, WriteQuorum};
pub use device::Device;
pub use ids::{Ballot, GroupId, Incarnation, NodeId, Slot, ValueHash};
pub use io::{Command, CommandError, Counters, Effect, Event, Input, Node, Outputs, Rejection};
pub use log::{AcceptorSet, Entry, GroupGenesis};
pub use storage::{LoadId, LoadQuery, LoadResult, Record, Restored, WriteBatch};
pub use time::Time;
