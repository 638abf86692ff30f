//! The simulator's event queue: what can happen to a node, and at which (time, sequence) it
//! happens; events at one time run in the order they were scheduled.

use plait_kernel::storage::LoadResult;
use plait_kernel::{Command, LoadId, Time};

#[derive(Debug)]
pub(super) enum SimEvent {
    Deliver { from: usize, to: usize, frame: Vec<u8> },
    Timer { node: usize, boot: u32, generation: u64 },
    Command { node: usize, command: Command },
    Loaded { node: usize, boot: u32, request: LoadId, result: LoadResult },
    Restart { node: usize, wipe: bool },
    Fault,
    // `Input::Flush`, after the events already due at its time.
    Flush { node: usize, boot: u32 },
}

#[derive(Debug)]
pub(super) struct Scheduled {
    pub(super) at: Time,
    pub(super) seq: u64,
    pub(super) event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
