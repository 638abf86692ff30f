//! Document messages: what a member sends, what an acceptor stores, and how far a device has
//! read each acceptor's store.
//!
//! A member's document updates leave in MLS application messages, each named by `(sender, seq)`
//! ([`UpdateId`]). The id travels twice: in the clear, so acceptors can de-duplicate and devices
//! can skip copies before decrypting; and inside the ciphertext ([`Payload`]), where MLS
//! authenticates it, so an acceptor that relabels a message is caught.

use serde::{Deserialize, Serialize};

use crate::ids::{Incarnation, NodeId};

/// Names one document message: its sender and the sender's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UpdateId {
    /// Who wrote it.
    pub sender: NodeId,
    /// The sender's number for it: 0, 1, 2, ... with no gaps and never reused.
    pub seq: u64,
}

/// A document message as an acceptor stores it: the id and the MLS ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Its id, as the sender named it (checked against the plaintext by readers).
    pub id: UpdateId,
    /// The encoded MLS PrivateMessage.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// At most this many ids in one `Message::Ids` (and within half a frame, at `ID_COST` each).
pub const IDS_PER_PAGE_MAX: usize = 4_096;

/// What one `StoredId` adds to a frame at most: a 32-byte sender and three varints.
pub(crate) const ID_COST: usize = 64;

/// Where an acceptor stores a document message, without the message: what peers compare before
/// they copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredId {
    /// Its position in the acceptor's store.
    pub position: u64,
    /// The message's id.
    pub id: UpdateId,
    /// The epoch of the latest copy the acceptor holds (a copy at `position` may be older).
    pub epoch: u64,
}

/// A document message as its sender posts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// The sender's sequence number (with the transport's sender, the message's id).
    pub seq: u64,
    /// The encoded MLS PrivateMessage.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// What a message adds to a page's or a post's size: its ciphertext and a generous envelope.
pub(crate) fn framed_cost(ciphertext: &[u8]) -> usize {
    ciphertext.len() + 64
}

/// Whether a page or post of `messages` that would cost `used` bytes with the next one is full:
/// half a frame, or `page_messages_max`. One holds at least one message.
pub(crate) fn frame_full(config: &crate::config::ValidConfig, messages: usize, used: usize) -> bool {
    messages == config.page_messages_max || (used > config.message_bytes_max / 2 && messages > 0)
}

/// A position in one acceptor's store for one group: every message stored there gets the next
/// position. The incarnation changes when the acceptor starts over on an empty disk, so a reader
/// can tell its old positions mean nothing any more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The acceptor's incarnation for the group.
    pub incarnation: Incarnation,
    /// The last position read (0: nothing read yet; positions start at 1).
    pub position: u64,
}

/// Why an acceptor did not store a message. Sent back to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostRefusal {
    /// The message is larger than the acceptor's per-message limit.
    TooLarge,
    /// The group's storage quota at this acceptor is used up.
    QuotaExceeded,
    /// The message was sealed in an epoch before the acceptor's current one: members who
    /// joined since could never read it. The sender catches up and seals it again.
    StaleEpoch {
        /// The acceptor's epoch.
        current: u64,
    },
    /// The acceptor holds off posts for a moment (a slot it voted in is undecided, and a commit
    /// chosen there may start a new epoch): post again soon.
    Busy,
}

/// The plaintext of an MLS application message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Document updates, stored by acceptors and applied by every member.
    Update {
        /// The sender's sequence number (must equal the clear-text id's).
        seq: u64,
        /// The encoded CRDT update.
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
    },
    /// Presence (cursor position, "who is here"): relayed to members online now, never stored.
    Presence(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Other application data: relayed, never stored.
    Message(#[serde(with = "serde_bytes")] Vec<u8>),
    /// "I hold stored messages sealed before this epoch that I can no longer decrypt": members
    /// make a compaction due, so a snapshot brings them to me. Relayed, never stored.
    CompactionWanted {
        /// Messages sealed before this epoch are unreadable to the sender.
        before_epoch: u64,
    },
}

impl Payload {
    /// Encodes for encryption.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("invariant: a payload always encodes")
    }

    /// Decodes a decrypted plaintext; `None` if it is not a payload (the sender is broken).
    pub fn decode(bytes: &[u8]) -> Option<Payload> {
        postcard::from_bytes(bytes).ok()
    }
}
