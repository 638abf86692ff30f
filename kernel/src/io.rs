//! The kernel's one door in and one door out.
//!
//! `node.handle(now, input) -> Outputs`. Effects are carried out in order; `Persist` is a
//! barrier: it must be durable before any later effect of the same node is carried out.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, NodeId, Slot, ValueHash};
use crate::log::{AcceptorSet, Entry, GroupGenesis};
use crate::storage::{LoadId, LoadQuery, LoadResult, WriteBatch};
use crate::time::Time;

/// Something that happened to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// The local app asked for something.
    Command(Command),
    /// A frame arrived from a peer. Its bytes are untrusted.
    Received {
        /// The authenticated sender (the transport vouches for it).
        from: NodeId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// The time the node asked to be woken at (or later) has come.
    Timer,
    /// A `Load` finished.
    Loaded {
        /// The request it answers.
        request: LoadId,
        /// The rows.
        result: LoadResult,
    },
    /// The host handled every input that was waiting. A node that said
    /// [`Outputs::wants_flush`] gathers some sends across inputs (an acceptor's pushes go out as
    /// one page per reader instead of one frame per message) and lets them out now. A host
    /// delivers it once the inputs already waiting are handled, without waiting for new ones.
    Flush,
    /// The host has a link to `peer` again, after it had none. A hint, never needed for
    /// correctness: a device syncs with its acceptors at once rather than at its next round,
    /// since what an acceptor pushed while there was no link was lost. (A simulator need not
    /// deliver it.)
    LinkUp {
        /// The peer.
        peer: NodeId,
    },
}

/// A request from the local app to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Start following a group (the creator and every other member alike).
    OpenGroup {
        /// The group's genesis; its hash is the group id.
        genesis: GroupGenesis,
    },
    /// Append an opaque value to the group's log.
    Propose {
        /// Which group.
        group: GroupId,
        /// The value.
        value: Vec<u8>,
    },
    /// Found an MLS group with this device as its only member and admin.
    CreateGroup {
        /// The acceptors.
        acceptors: AcceptorSet,
        /// Makes the group distinct from others with the same acceptors.
        nonce: u64,
        /// Each member commits a fresh leaf key this often (0: only on demand).
        rotation_interval_ms: u64,
    },
    /// Make a key package to hand to an admin (answered with `Event::KeyPackage`).
    MakeKeyPackage,
    /// Join an MLS group with a Welcome made for one of this device's key packages.
    JoinGroup {
        /// The group's genesis.
        genesis: GroupGenesis,
        /// The Welcome.
        welcome: Vec<u8>,
    },
    /// Add a member (admins only), by its encoded key package.
    AddMember {
        /// Which group.
        group: GroupId,
        /// The member's key package.
        key_package: Vec<u8>,
    },
    /// Remove a member (admins only).
    RemoveMember {
        /// Which group.
        group: GroupId,
        /// The member.
        member: NodeId,
    },
    /// Give a member a role (admins only).
    SetRole {
        /// Which group.
        group: GroupId,
        /// The member.
        member: NodeId,
        /// The role.
        role: crate::mls::Role,
    },
    /// Rotate this device's keys in a group.
    RotateKeys {
        /// Which group.
        group: GroupId,
    },
    /// Open an invite to the group (admins only); answered with `Event::InviteCreated`. The
    /// code works once, until `lifetime_ms` has passed; this device adds whoever redeems it,
    /// then (for any role but `Writer`, which members have by default) commits its `role`.
    CreateInvite {
        /// Which group.
        group: GroupId,
        /// How long the code stays valid.
        lifetime_ms: u64,
        /// The role the joiner ends with.
        role: crate::mls::Role,
    },
    /// Join a group with an invite code (text or URI) through the acceptors that hold its
    /// mailbox; answered with `Event::Joined` once the inviter has added this device.
    AcceptInvite {
        /// The code.
        code: String,
        /// The acceptors of the group (given with the code).
        acceptors: AcceptorSet,
    },
    /// Send application data to the group's other members, encrypted for the current epoch.
    SendMessage {
        /// Which group.
        group: GroupId,
        /// The plaintext.
        data: Vec<u8>,
    },
    /// Edit the group's document: replace `delete` characters at `position` with `insert`. The
    /// edit applies at once and is durable when the command's `Persist` is; it reaches the
    /// other members within `flush_after_ms`, and is safe once a write quorum stored it.
    Edit {
        /// Which group.
        group: GroupId,
        /// Where (characters).
        position: usize,
        /// How many characters to delete.
        delete: usize,
        /// What to insert.
        insert: String,
    },
    /// Tell the members online now where this device is (cursor position, "who is here").
    /// Relayed, never stored.
    SetPresence {
        /// Which group.
        group: GroupId,
        /// The app's presence state.
        state: Vec<u8>,
    },
    /// Replace the group's acceptor set (takes effect from the slot after the one it is chosen in).
    ChangeAcceptors {
        /// Which group.
        group: GroupId,
        /// The new set.
        acceptors: AcceptorSet,
    },
}

/// Something the host must do, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Make the batch durable before carrying out any later effect, but for telling the app of
    /// an event that does not [`Event::waits_for_writes`]: that may go at once.
    Persist(WriteBatch),
    /// Send a frame to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The encoded frame.
        frame: Vec<u8>,
    },
    /// Read from durable storage and answer with `Input::Loaded`.
    Load {
        /// Echoed back.
        request: LoadId,
        /// What to read.
        query: LoadQuery,
    },
    /// Tell the local app.
    Notify(Event),
}

/// What a node tells its host app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A chosen entry was applied to the local log (durably).
    Applied {
        /// Which group.
        group: GroupId,
        /// Which slot.
        slot: Slot,
        /// The chosen entry.
        entry: Entry,
        /// Its hash.
        value_hash: ValueHash,
    },
    /// One of this device's own proposals was chosen.
    Committed {
        /// Which group.
        group: GroupId,
        /// The slot it was chosen for.
        slot: Slot,
    },
    /// This device founded an MLS group; hand the genesis to joiners with their Welcome.
    GroupCreated {
        /// The group.
        group: GroupId,
        /// Its genesis.
        genesis: GroupGenesis,
    },
    /// An invite this device opened: hand the code (or its URI, for a QR code) to the joiner.
    InviteCreated {
        /// The group.
        group: GroupId,
        /// The code as text.
        code: String,
        /// The code as a URI.
        uri: String,
    },
    /// This device joined a group (by Welcome or by invite).
    Joined {
        /// The group.
        group: GroupId,
        /// Its genesis.
        genesis: GroupGenesis,
    },
    /// A key package this device made (for `Command::MakeKeyPackage`).
    KeyPackage {
        /// The encoded key package.
        key_package: Vec<u8>,
    },
    /// Our commit adding members was chosen: the Welcome for them.
    Welcome {
        /// The group.
        group: GroupId,
        /// The encoded Welcome.
        welcome: Vec<u8>,
    },
    /// The MLS group moved to a new epoch.
    EpochChanged {
        /// The group.
        group: GroupId,
        /// The new epoch.
        epoch: u64,
        /// BLAKE3 of the epoch authenticator (equal at every member in this epoch).
        authenticator_hash: [u8; 32],
        /// The members in this epoch, in leaf order.
        members: Vec<NodeId>,
    },
    /// Application data from another member, decrypted.
    Message {
        /// The group.
        group: GroupId,
        /// The epoch it was encrypted in.
        epoch: u64,
        /// Who sent it (authenticated by MLS).
        sender: NodeId,
        /// The plaintext.
        data: Vec<u8>,
    },
    /// A snapshot was imported: the document now holds every message a compaction covers.
    SnapshotImported {
        /// The group.
        group: GroupId,
        /// How many messages the snapshot covers.
        covered_messages: u64,
    },
    /// Another member's document update was applied.
    DocumentChanged {
        /// The group.
        group: GroupId,
        /// The update.
        id: crate::updates::UpdateId,
    },
    /// One of this device's document messages is safe: a write quorum of acceptors stored it.
    DocumentSafe {
        /// The group.
        group: GroupId,
        /// Its sequence number.
        seq: u64,
        /// Messages of this device not safe yet (the open batch included).
        unsafe_messages: usize,
    },
    /// An acceptor of the group will not host it (told once per acceptor while the device runs;
    /// the device keeps asking at its sync pace, in case it makes room).
    GroupRefused {
        /// The group.
        group: GroupId,
        /// The acceptor.
        acceptor: NodeId,
        /// Why.
        reason: crate::wire::GroupRefusal,
    },
    /// An acceptor refused to store one of this device's document messages.
    PostRefused {
        /// The group.
        group: GroupId,
        /// Its sequence number.
        seq: u64,
        /// The acceptor.
        acceptor: NodeId,
        /// Why.
        reason: crate::updates::PostRefusal,
    },
    /// Another member's presence.
    Presence {
        /// The group.
        group: GroupId,
        /// The member.
        sender: NodeId,
        /// Its presence state.
        state: Vec<u8>,
    },
    /// Another member signed a different authenticator for an epoch this device knows: the
    /// group has forked. The evidence is the other member's signed digest and our own hash.
    ForkDetected {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u64,
        /// BLAKE3 of our epoch authenticator.
        ours: [u8; 32],
        /// The other member's signed digest.
        theirs: crate::mls::SignedDigest,
    },
    /// A command could not be carried out.
    CommandFailed {
        /// Why.
        error: CommandError,
    },
    /// Every acceptor of an invite this device is redeeming last answered that it holds no
    /// mailbox for it: the code expired, was never opened, or is wrong, unless the admin's
    /// open is still on its way. The device keeps trying; the host decides when to give up.
    InviteUnknown {
        /// The invite's mailbox.
        mailbox: crate::invite::Mailbox,
    },
    /// This device, removed from a group earlier, forgot what it held of it to join it again
    /// through an invite (`Joined` follows). Its messages that no write quorum stored go with
    /// it: the group does not hold them. (Last, so that the encoding of the others stays.)
    GroupForgotten {
        /// The group.
        group: GroupId,
        /// Its document messages dropped (the open batch included).
        unsafe_dropped: usize,
    },
}

impl Event {
    /// Whether the app may hear of this event only once every write before it is durable.
    ///
    /// Only another member's document update does not wait: the acceptor it came from holds it
    /// durably (an acceptor sends a stored message only once its write is durable), and its
    /// author keeps it until a write quorum does, so if this node crashes before its own
    /// write, it reads the update again after the restart. Showing it at once takes this
    /// node's fsync off the path from an edit to another device's screen. Everything else
    /// waits, because what the app learns can leave the node through the user (an invite
    /// code, a Welcome, a key package, "your edit is safe") or must never be seen to go back
    /// (an epoch, a chosen slot).
    pub fn waits_for_writes(&self) -> bool {
        !matches!(self, Event::DocumentChanged { .. })
    }
}

/// Why a local command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// The group is not open on this device.
    #[error("unknown group {0:?}")]
    UnknownGroup(GroupId),
    /// The genesis is malformed or over the limits.
    #[error("invalid genesis")]
    InvalidGenesis,
    /// This device is not allowed to propose in the group.
    #[error("this device may not propose in group {0:?}")]
    NotAProposer(GroupId),
    /// Too many proposals are already waiting.
    #[error("proposal queue full ({0} waiting)")]
    QueueFull(usize),
    /// The value is larger than `entry_bytes_max`.
    #[error("value of {size} bytes exceeds the limit of {limit}")]
    ValueTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node already hosts `groups_max` groups.
    #[error("group limit reached ({0})")]
    TooManyGroups(usize),
    /// The log reached `slots_per_group_max`.
    #[error("log full")]
    LogFull,
    /// An MLS command for a group of opaque values.
    #[error("group {0:?} is not an MLS group")]
    NotMls(GroupId),
    /// An opaque value for an MLS group.
    #[error("group {0:?} is an MLS group: it takes MLS commands, not opaque values")]
    NotOpaque(GroupId),
    /// The MLS operation failed.
    #[error("MLS: {0}")]
    Mls(String),
    /// A quorum of acceptors refused the commit (for example: not an admin).
    #[error("the acceptors of group {0:?} refused the commit")]
    Refused(GroupId),
    /// No outstanding key package of this device matches the Welcome.
    #[error("the Welcome matches none of this device's key packages")]
    NoMatchingKeyPackage,
    /// The command needs an admin of the group.
    #[error("this device is not an admin of group {0:?}")]
    NotAnAdmin(GroupId),
    /// The invite code is malformed.
    #[error("invalid invite code: {0}")]
    InvalidInvite(String),
    /// The invite expired before this device was added.
    #[error("the invite expired before this device was added")]
    InviteExpired,
    /// The group already has `invites_max` open invites.
    #[error("too many open invites ({0})")]
    TooManyInvites(usize),
    /// This device is no longer a member of the group (a commit removed it).
    #[error("this device is not a member of group {0:?}")]
    NotAMember(GroupId),
    /// This device's role in the group is read-only.
    #[error("this device is a reader in group {0:?}: it may not edit")]
    ReadOnly(GroupId),
    /// The document refused the edit.
    #[error("document: {0}")]
    Document(crate::document::DocumentError),
    /// Too many key packages are outstanding.
    #[error("too many outstanding key packages ({0})")]
    TooManyKeyPackages(usize),
}

/// What one `handle` call returns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Effects, to be carried out in order.
    pub effects: Vec<Effect>,
    /// When to deliver the next `Input::Timer`, if ever.
    pub wake_at: Option<Time>,
    /// The node holds sends back until `Input::Flush` (which the host must then deliver once
    /// the inputs already waiting are handled).
    pub wants_flush: bool,
    /// The node's memory can no longer be trusted (a library it uses panicked, and the panic
    /// was contained): the host carries out these effects, waits until their writes are
    /// durable, and then builds the node again from what storage holds, as after a restart.
    pub rebuild_from_storage: bool,
}

/// A node of either kind, as a host drives it.
pub trait Node {
    /// Handles one input at time `now`.
    fn handle(&mut self, now: Time, input: Input) -> Outputs;
}

/// Why an incoming message was dropped. Counted per node; see [`Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(usize)]
pub enum Rejection {
    /// The frame was not a message.
    Malformed,
    /// The frame was over the size limit.
    Oversized,
    /// The frame was from another protocol version.
    WrongVersion,
    /// The message was about a group this node does not host.
    UnknownGroup,
    /// The sender has no business sending this message for this group.
    Unauthorised,
    /// The message's contents break the protocol's shape (bad hash, bad genesis, bad set).
    Invalid,
    /// A ballot below the current promise.
    StaleBallot,
    /// A ballot carried two different values for one slot.
    Equivocation,
    /// An accept counted a promise of a fenced incarnation.
    StaleIncarnation,
    /// The message arrived while the acceptor was still recovering.
    NotReady,
    /// The message repeats or answers something already settled.
    Duplicate,
    /// A limit in `Config` was reached.
    OverLimit,
    /// Application data from an MLS epoch whose secrets were deleted (forward secrecy).
    Expired,
}

impl Rejection {
    /// Every reason, in counter order.
    pub const ALL: [Rejection; 13] = [
        Rejection::Malformed,
        Rejection::Oversized,
        Rejection::WrongVersion,
        Rejection::UnknownGroup,
        Rejection::Unauthorised,
        Rejection::Invalid,
        Rejection::StaleBallot,
        Rejection::Equivocation,
        Rejection::StaleIncarnation,
        Rejection::NotReady,
        Rejection::Duplicate,
        Rejection::OverLimit,
        Rejection::Expired,
    ];

    /// The reason's stable snake_case name, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Oversized => "oversized",
            Rejection::WrongVersion => "wrong_version",
            Rejection::UnknownGroup => "unknown_group",
            Rejection::Unauthorised => "unauthorised",
            Rejection::Invalid => "invalid",
            Rejection::StaleBallot => "stale_ballot",
            Rejection::Equivocation => "equivocation",
            Rejection::StaleIncarnation => "stale_incarnation",
            Rejection::NotReady => "not_ready",
            Rejection::Duplicate => "duplicate",
            Rejection::OverLimit => "over_limit",
            Rejection::Expired => "expired",
        }
    }
}

/// Counts of dropped messages by reason: the node's status view of bad input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters([u64; Rejection::ALL.len()]);

impl Counters {
    /// Counts one rejection.
    pub fn count(&mut self, reason: Rejection) {
        self.0[reason as usize] += 1;
    }

    /// How many messages were rejected for `reason`.
    pub fn of(&self, reason: Rejection) -> u64 {
        self.0[reason as usize]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn nonzero(&self) -> Vec<(Rejection, u64)> {
        Rejection::ALL.iter().map(|r| (*r, self.of(*r))).filter(|(_, n)| *n > 0).collect()
    }

    /// `(name, count)` for every reason, zero counts included, in the fixed order of
    /// [`Rejection::ALL`], named by [`Rejection::name`]: ready for a metrics exporter.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Rejection::ALL.iter().map(|reason| (reason.name(), self.of(*reason)))
    }
}

/// Collects effects during one `handle` call.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) list: Vec<Effect>,
    /// See [`Outputs::rebuild_from_storage`].
    pub(crate) rebuild_from_storage: bool,
}

impl Effects {
    /// How many `Persist` effects are queued (to tell whether a step wrote anything).
    pub(crate) fn persists(&self) -> usize {
        self.list.iter().filter(|effect| matches!(effect, Effect::Persist(_))).count()
    }

    pub(crate) fn persist(&mut self, batch: WriteBatch) {
        if !batch.is_empty() {
            self.list.push(Effect::Persist(batch));
        }
    }

    pub(crate) fn notify(&mut self, event: Event) {
        self.list.push(Effect::Notify(event));
    }
}
