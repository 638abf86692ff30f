//! Wire messages: our own enum, postcard-encoded, behind a protocol version and a size limit.
//!
//! A frame is `[version: u8][postcard(Envelope)]`. [`decode`] checks size, version, and that the
//! whole frame was consumed; anything else is a typed [`DecodeError`], never a panic.
//!
//! Byte fields are marked `serde_bytes`. postcard writes a byte string exactly as it writes a
//! sequence of `u8` (a varint length, then the bytes), so the frames are the same; without the
//! mark it copies them one call per byte, which was a few percent of a busy node's CPU.

use serde::{Deserialize, Serialize};

use crate::ids::{Ballot, GroupId, Incarnation, NodeId, Slot, ValueHash};
use crate::invite::Mailbox;
use crate::log::{AcceptorSet, Entry, GroupGenesis};
use crate::storage::AcceptedValue;
use crate::updates::{Cursor, PostRefusal, Posted, StoredId, StoredMessage};

/// The protocol version this kernel speaks. Frames with another version are refused.
pub const PROTOCOL_VERSION: u8 = 1;

/// One message about one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The group the message is about.
    pub group: GroupId,
    /// The message.
    pub message: Message,
}

/// Everything nodes say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Device → acceptor: "I follow this group; send me chosen entries from `from_slot`".
    /// Also tells an acceptor that lost its disk about the group and who its peers are.
    Sync {
        /// The group's genesis (checked against the group id).
        genesis: GroupGenesis,
        /// The first slot the device has not applied.
        from_slot: Slot,
        /// The acceptor set the device believes is in force now.
        acceptors: AcceptorSet,
    },
    /// Proposer → acceptor: phase 1 for every slot from `from_slot` on.
    Prepare {
        /// The new ballot.
        ballot: Ballot,
        /// The first slot the proposer has not learned.
        from_slot: Slot,
    },
    /// Acceptor → proposer: phase 1b.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// The acceptor's incarnation for the group.
        incarnation: Incarnation,
        /// Accepted values for slots from the prepare's `from_slot` on, in slot order.
        accepted: Vec<(Slot, AcceptedValue)>,
    },
    /// Proposer → acceptor: phase 2a.
    Accept {
        /// The ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The value.
        entry: Entry,
        /// Hash of `entry`; the ballot is bound to it.
        value_hash: ValueHash,
        /// The acceptors (and their incarnations) whose promises make up this ballot's quorum.
        promised_by: Vec<(NodeId, Incarnation)>,
        /// In an MLS group, the proposer's signature over group, ballot, slot and value hash
        /// (see [`accept_signed_bytes`]); empty otherwise.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Acceptor → proposer: phase 2b.
    Accepted {
        /// The ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// Hash of the accepted value.
        value_hash: ValueHash,
    },
    /// Acceptor → proposer: the ballot was refused.
    Rejected {
        /// The refused ballot.
        ballot: Ballot,
        /// Why.
        reason: RejectReason,
        /// The acceptor's current promise, so the proposer can pick a higher round.
        promised: Ballot,
    },
    /// Anyone → anyone: the value chosen for a slot.
    Chosen {
        /// The slot.
        slot: Slot,
        /// The chosen value.
        entry: Entry,
    },
    /// Acceptor → device or acceptor: a page of chosen entries, contiguous from the first.
    Entries {
        /// The entries.
        entries: Vec<(Slot, Entry)>,
        /// The sender's first slot not known chosen.
        chosen_next: Slot,
        /// Whether the sender holds an accepted value for a slot not known chosen.
        accepted_pending: bool,
    },
    /// Acceptor → anyone: "I host no such group" (so a device re-sends `Sync`).
    UnknownGroup,
    /// Acceptor → peer acceptor: "I hold no state for this group; which incarnation of mine did
    /// you last record?" (A new incarnation must be higher than every recorded one.)
    IncarnationQuery {
        /// The group's genesis (checked against the group id).
        genesis: GroupGenesis,
    },
    /// Peer acceptor → asking acceptor: the incarnation of the asker it last recorded, if any.
    IncarnationKnown {
        /// The recorded incarnation.
        incarnation: Option<Incarnation>,
    },
    /// Acceptor → peer acceptor: "I created fresh state for this group with `incarnation`;
    /// fence my older promises and tell me what you hold".
    Recover {
        /// The sender's new incarnation.
        incarnation: Incarnation,
        /// The group's genesis (checked against the group id).
        genesis: GroupGenesis,
    },
    /// Peer acceptor → recovering acceptor: its state, after durably fencing older incarnations.
    Recovery {
        /// The incarnation this answers.
        incarnation: Incarnation,
        /// The peer's promise.
        promised: Ballot,
        /// The peer's accepted values for slots from its `chosen_next` on.
        accepted: Vec<(Slot, AcceptedValue)>,
        /// The peer's first slot not known chosen.
        chosen_next: Slot,
        /// The incarnations the peer has recorded, its own included, so the fence survives
        /// acceptors losing their disks one after another.
        incarnations: Vec<(NodeId, Incarnation)>,
    },
    /// Acceptor → peer acceptor: "send me chosen entries from `from_slot`".
    CatchUp {
        /// First slot wanted.
        from_slot: Slot,
    },
    /// Member → acceptor → other members: a signed digest of the sender's current epoch, for
    /// fork detection. Acceptors relay it to subscribers and keep nothing.
    EpochDigest {
        /// The digest.
        digest: crate::mls::SignedDigest,
    },
    /// Member → acceptor → other members: application data, an MLS PrivateMessage. Acceptors
    /// check that the sender is a current member allowed to write, then relay it; they cannot
    /// read it.
    Application {
        /// Who sent it (must be the transport's sender when a device sends it; the acceptor
        /// names the original sender when it relays, and members check that against MLS).
        sender: NodeId,
        /// The encoded MLS PrivateMessage.
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Admin device → acceptor: open a mailbox for an invite to the envelope's group, for
    /// `lifetime_ms` of the acceptor's own clock. Sent again until the invite is settled.
    OpenMailbox {
        /// The mailbox named by the invite code.
        mailbox: Mailbox,
        /// How long it stays open.
        lifetime_ms: u64,
    },
    /// Joiner → acceptor: a key package for the invite, with the MAC made with the code's secret.
    /// (The joiner does not know the group; the envelope's group is ignored.)
    PostKeyPackage {
        /// The mailbox.
        mailbox: Mailbox,
        /// The encoded key package.
        #[serde(with = "serde_bytes")]
        key_package: Vec<u8>,
        /// MAC of the key package under the invite's secret.
        mac: [u8; 32],
    },
    /// Admin device → acceptor: the Welcome for the key package in the mailbox.
    PostWelcome {
        /// The mailbox.
        mailbox: Mailbox,
        /// The encoded Welcome.
        #[serde(with = "serde_bytes")]
        welcome: Vec<u8>,
    },
    /// Anyone → acceptor: what does this mailbox hold? (The envelope's group is ignored.)
    FetchMailbox {
        /// The mailbox.
        mailbox: Mailbox,
    },
    /// Acceptor → asker: a mailbox's contents.
    MailboxContents {
        /// The mailbox.
        mailbox: Mailbox,
        /// The key package posted, with its MAC.
        key_package: Option<(Vec<u8>, [u8; 32])>,
        /// The Welcome posted, with the group's genesis.
        welcome: Option<(GroupGenesis, Vec<u8>)>,
    },
    /// Member → acceptor: store these document messages (MLS PrivateMessages) durably and
    /// push them to the group's other members. Each one's id is `(transport sender, seq)`.
    Post {
        /// The messages, at most `page_messages_max`.
        messages: Vec<Posted>,
    },
    /// Acceptor → member: the messages `seqs` are durable here (sent again for repeated posts).
    /// An acceptor gathers the acknowledgements of a burst of posts into one.
    PostAck {
        /// The sequence numbers (at most `page_messages_max`).
        seqs: Vec<u64>,
    },
    /// Acceptor → member: the message `seq` will not be stored here.
    PostRefused {
        /// The sequence number.
        seq: u64,
        /// Why.
        reason: PostRefusal,
    },
    /// Member or peer acceptor → acceptor: the stored messages after `after`, a page at a time.
    Fetch {
        /// The asker's cursor for this acceptor.
        after: Cursor,
    },
    /// Acceptor → reader: stored messages after `after`, in position order; pushes carry one.
    Page {
        /// The cursor the page continues (its incarnation is the sender's current one).
        after: Cursor,
        /// `(position, message)`, positions strictly increasing and above `after`.
        messages: Vec<(u64, StoredMessage)>,
        /// Whether more messages follow the page.
        more: bool,
    },
    /// One chunk of an encrypted snapshot: member → acceptor to store it, acceptor → member or
    /// peer acceptor when asked for it (a peer stores it too).
    SnapshotChunk {
        /// The snapshot's name (the hash of its whole ciphertext).
        hash: crate::snapshot::SnapshotHash,
        /// The chunk's index.
        index: u32,
        /// How many chunks make up the snapshot.
        count: u32,
        /// The chunk.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Acceptor → member: every chunk of the snapshot is durable here and matches its name.
    SnapshotStored {
        /// The snapshot.
        hash: crate::snapshot::SnapshotHash,
    },
    /// Member or peer acceptor → acceptor: send me this chunk of the snapshot.
    FetchSnapshot {
        /// The snapshot.
        hash: crate::snapshot::SnapshotHash,
        /// The chunk wanted.
        index: u32,
    },
    /// Member → acceptor: I opened the latest compaction's snapshot with the key it carried, so
    /// what it covers may be deleted. Acceptor → member: noted (durably).
    SnapshotConfirmed {
        /// The snapshot.
        hash: crate::snapshot::SnapshotHash,
    },
    /// Peer acceptor → acceptor: which messages are stored after `after`, ids only, a page at a
    /// time. The asker then fetches in full only from the first it lacks.
    FetchIds {
        /// The asker's cursor for this acceptor.
        after: Cursor,
    },
    /// Acceptor → peer acceptor: the ids of stored messages after `after`, in position order.
    Ids {
        /// The cursor the page continues (its incarnation is the sender's current one).
        after: Cursor,
        /// Positions strictly increasing and above `after`; at most [`crate::updates::IDS_PER_PAGE_MAX`].
        ids: Vec<StoredId>,
        /// Whether more messages follow the page.
        more: bool,
    },
    /// Acceptor → asker: it holds no such mailbox (it expired, or was never opened here). The
    /// envelope's group is the request's.
    MailboxUnknown {
        /// The mailbox.
        mailbox: Mailbox,
    },
    /// Acceptor → device: it will not host this group (the device's `Sync` asked it to).
    GroupRefused {
        /// Why.
        reason: GroupRefusal,
    },
}

/// Why an acceptor will not host a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRefusal {
    /// It hosts as many groups as it may (`groups_max`).
    Full,
}

/// The bytes a proposer signs for an accept: acceptors keep the signature with the value and
/// show it in promises, so an acceptor cannot claim that a ballot carried a value it did not.
pub fn accept_signed_bytes(group: GroupId, ballot: Ballot, slot: Slot, value_hash: &ValueHash) -> Vec<u8> {
    let mut bytes = b"plait accept v1".to_vec();
    bytes.extend_from_slice(&group.0);
    bytes.extend_from_slice(&ballot.round.to_be_bytes());
    bytes.extend_from_slice(&ballot.proposer.0);
    bytes.extend_from_slice(&slot.0.to_be_bytes());
    bytes.extend_from_slice(&value_hash.0);
    bytes
}

/// Why an acceptor refused a ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The acceptor promised a higher ballot.
    BallotTooLow,
    /// The accept named an incarnation of some acceptor that has since lost its state.
    StaleIncarnation,
    /// The acceptor is still recovering and does not vote yet.
    NotReady,
    /// The slot is too far past the acceptor's first unchosen slot.
    OutsideWindow,
    /// The value is not valid for this slot (an MLS commit that a member would refuse): the
    /// proposer should give up on it rather than retry.
    InvalidValue,
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame was empty.
    #[error("empty frame")]
    Empty,
    /// The frame was larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    Oversized {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The frame was from another protocol version.
    #[error("protocol version {0}, expected {PROTOCOL_VERSION}")]
    WrongVersion(u8),
    /// The bytes were not a message.
    #[error("malformed message")]
    Malformed,
    /// A message was followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("encoded message of {size} bytes exceeds the limit of {limit}")]
pub struct EncodeError {
    /// The encoded size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// Encodes a frame, refusing frames over `limit` bytes.
pub fn encode(envelope: &Envelope, limit: usize) -> Result<Vec<u8>, EncodeError> {
    let mut frame = Vec::with_capacity(64);
    frame.push(PROTOCOL_VERSION);
    let frame = postcard::to_extend(envelope, frame).expect("invariant: messages always encode into a Vec");
    if frame.len() > limit {
        return Err(EncodeError { size: frame.len(), limit });
    }
    Ok(frame)
}

/// The group and message kind of a frame, read without decoding the body: postcard encodes an
/// enum as its variant index (a varint) before its fields. Used by the simulator's checker to
/// skip frames it does not inspect. `None` for anything that is not a well-formed header.
pub fn peek(frame: &[u8]) -> Option<(GroupId, u32)> {
    let (&version, body) = frame.split_first()?;
    if version != PROTOCOL_VERSION {
        return None;
    }
    postcard::take_from_bytes::<(GroupId, u32)>(body).ok().map(|(header, _)| header)
}

/// Variant indexes of the messages, as [`peek`] reports them (checked by a test).
pub mod kind {
    /// `Message::Prepare`.
    pub const PREPARE: u32 = 1;
    /// `Message::Promise`.
    pub const PROMISE: u32 = 2;
    /// `Message::Accept`.
    pub const ACCEPT: u32 = 3;
    /// `Message::Accepted`.
    pub const ACCEPTED: u32 = 4;
    /// `Message::Application`.
    pub const APPLICATION: u32 = 15;
    /// `Message::Post`.
    pub const POST: u32 = 21;
    /// `Message::Page`.
    pub const PAGE: u32 = 25;
}

/// Decodes a frame of at most `limit` bytes.
pub fn decode(frame: &[u8], limit: usize) -> Result<Envelope, DecodeError> {
    if frame.len() > limit {
        return Err(DecodeError::Oversized { size: frame.len(), limit });
    }
    let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::WrongVersion(version));
    }
    let (envelope, rest) = postcard::take_from_bytes::<Envelope>(body).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            group: GroupId([3; 16]),
            message: Message::Prepare { ballot: Ballot { round: 4, proposer: NodeId::from_index(2) }, from_slot: Slot(9) },
        }
    }

    #[test]
    fn peek_reads_the_group_and_kind_without_decoding() {
        let ballot = Ballot { round: 1, proposer: NodeId::from_index(1) };
        let hash = crate::ids::ValueHash([0; 32]);
        let cases = [
            (Message::Prepare { ballot, from_slot: Slot(0) }, kind::PREPARE),
            (Message::Promise { ballot, incarnation: Incarnation(1), accepted: vec![] }, kind::PROMISE),
            (
                Message::Accept {
                    ballot,
                    slot: Slot(0),
                    entry: Entry::Noop,
                    value_hash: hash,
                    promised_by: vec![],
                    proof: vec![],
                },
                kind::ACCEPT,
            ),
            (Message::Accepted { ballot, slot: Slot(0), value_hash: hash }, kind::ACCEPTED),
            (Message::Application { sender: NodeId::from_index(1), message: vec![1] }, kind::APPLICATION),
            (Message::Post { messages: vec![Posted { seq: 1, ciphertext: vec![1] }] }, kind::POST),
            (Message::Page { after: Cursor::default(), messages: vec![], more: false }, kind::PAGE),
        ];
        for (message, expected) in cases {
            let frame = encode(&Envelope { group: GroupId([3; 16]), message }, 1024).expect("small");
            assert_eq!(peek(&frame), Some((GroupId([3; 16]), expected)));
        }
        assert_eq!(peek(&[]), None);
        assert_eq!(peek(&[9, 1, 2]), None);
    }

    #[test]
    fn byte_fields_encode_as_a_length_then_the_bytes() {
        // Pinned bytes: `serde_bytes` must not change the frame postcard wrote for a `Vec<u8>`.
        let message = Message::Post { messages: vec![Posted { seq: 300, ciphertext: vec![7, 8, 9] }] };
        let post = Envelope { group: GroupId([3; 16]), message };
        let frame = encode(&post, 1 << 10).expect("small");
        let variant = u8::try_from(kind::POST).expect("one varint byte");
        let mut expected = vec![PROTOCOL_VERSION];
        expected.extend([3; 16]);
        expected.extend([variant, 1, 0xac, 0x02, 3, 7, 8, 9]);
        assert_eq!(frame, expected);
        assert_eq!(decode(&frame, 1 << 10), Ok(post));
    }

    #[test]
    fn round_trips_and_refuses_bad_frames() {
        let frame = encode(&envelope(), 1024).expect("small");
        assert_eq!(decode(&frame, 1024), Ok(envelope()));
        assert_eq!(decode(&[], 1024), Err(DecodeError::Empty));
        assert_eq!(decode(&frame, 4), Err(DecodeError::Oversized { size: frame.len(), limit: 4 }));
        let mut wrong = frame.clone();
        wrong[0] = 9;
        assert_eq!(decode(&wrong, 1024), Err(DecodeError::WrongVersion(9)));
        assert_eq!(decode(&frame[..frame.len() - 1], 1024), Err(DecodeError::Malformed));
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(decode(&long, 1024), Err(DecodeError::Trailing(1)));
        assert!(encode(&envelope(), 4).is_err());
    }
}
