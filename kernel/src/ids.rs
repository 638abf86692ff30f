//! Identifiers and the small ordered values of the protocol: nodes, groups, slots, ballots.

use serde::{Deserialize, Serialize};

/// A node's identity: for real nodes, the iroh endpoint's public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// A readable identity for tests and the simulator: `index` in the first eight bytes.
    pub fn from_index(index: u64) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&index.to_le_bytes());
        bytes[31] = 0x5e; // marks a simulated id so it never equals the all-zero "nobody"
        NodeId(bytes)
    }

    /// The index given to [`NodeId::from_index`], if this id was made that way.
    pub fn index(&self) -> Option<u64> {
        let is_indexed = self.0[8..31].iter().all(|b| *b == 0) && self.0[31] == 0x5e;
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[..8]);
        is_indexed.then(|| u64::from_le_bytes(low))
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index() {
            Some(index) => write!(f, "n{index}"),
            None => write!(f, "{}", hex(&self.0[..6])),
        }
    }
}

/// A group (one document) is named by a hash of its genesis, so its founding acceptor and
/// proposer lists can be checked by anyone who is shown them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub [u8; 16]);

impl std::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "g{}", hex(&self.0[..4]))
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A position in a group's commit log. Slot `s` holds the value chosen for it by Paxos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot(pub u64);

impl Slot {
    /// The slot after this one.
    pub fn next(self) -> Slot {
        Slot(self.0 + 1)
    }
}

/// A Paxos ballot. Ordered by round, then by proposer, so two proposers never share one.
///
/// A ballot is bound to the hash of the value it carries in each slot: an acceptor that sees one
/// ballot carry two different values for a slot rejects the second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Increases with every new attempt by a proposer; never reused across restarts.
    pub round: u64,
    /// The proposer that owns this ballot.
    pub proposer: NodeId,
}

impl Ballot {
    /// Below every real ballot: "nothing promised yet". Real ballots have `round >= 1`.
    pub const ZERO: Ballot = Ballot { round: 0, proposer: NodeId([0; 32]) };
}

/// Numbers an acceptor's lives in one group. An acceptor that creates fresh state (new, or after
/// losing its disk) takes one more than any incarnation its peers recorded for it, and peers
/// refuse accepts that counted a promise of an older incarnation: it may have forgotten them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

/// BLAKE3 hash of an encoded log entry.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValueHash(pub [u8; 32]);

impl std::fmt::Debug for ValueHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", hex(&self.0[..4]))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
