//! Deliberately broken kernels, compiled only with the `canary` feature.
//!
//! Each canary removes one thing the protocol relies on. The simulator's checkers must catch
//! every one of them within the CI seed budget; if one survives, the checkers are too weak.

use serde::{Deserialize, Serialize};

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Canary {
    /// Acceptors reply to a prepare without persisting the promise.
    PromiseNotPersisted,
    /// Proposers never persist their round counter, so a restart reuses ballots.
    BallotCounterNotPersisted,
    /// Quorums are one acceptor too small.
    QuorumTooSmall,
    /// Acceptors send their reply before the persist it depends on.
    SendBeforePersist,
    /// A proposer that adopted another value applies its own when its ballot wins.
    ApplyOwnValueInsteadOfChosen,
    /// Acceptors accept MLS commits without checking them against their public view.
    AcceptorSkipsCommitValidation,
    /// Acceptors relay application messages without checking that the sender is still a member.
    RemovedMemberStillAccepted,
    /// Devices send application data unencrypted.
    AcceptorSeesPlaintext,
    /// Learners believe one acceptor's report that a value was chosen.
    LearnerBelievesOneAcceptor,
    /// Proposers adopt accepted values from promises without checking their signatures.
    PromiseProofsUnchecked,
    /// Devices count a document message safe after one acceptor's acknowledgement.
    SafeAfterOneAck,
    /// Devices keep local edits in memory only until they are sent.
    OutboxNotPersisted,
    /// A compactor proposes its compaction without waiting for a write quorum to store the
    /// snapshot, and acceptors accept it and delete what it covers without holding the snapshot.
    DeleteBeforeSnapshotStored,
    /// A compactor covers its own messages still open or unsafe (it keeps typing into a batch
    /// the snapshot already covers), and acceptors accept a compaction covering messages they
    /// do not hold.
    CompactionCoversUnsafeMessages,
    /// An acceptor removed from a group's set deletes what any one acceptor of the new set
    /// copied from it, not a write quorum.
    HandOverToOneAcceptor,
}

impl Canary {
    /// Every canary, with its command-line name.
    pub const ALL: [(&'static str, Canary); 15] = [
        ("promise-not-persisted", Canary::PromiseNotPersisted),
        ("ballot-counter-not-persisted", Canary::BallotCounterNotPersisted),
        ("quorum-too-small", Canary::QuorumTooSmall),
        ("send-before-persist", Canary::SendBeforePersist),
        ("apply-own-value-instead-of-chosen", Canary::ApplyOwnValueInsteadOfChosen),
        ("acceptor-skips-commit-validation", Canary::AcceptorSkipsCommitValidation),
        ("removed-member-still-accepted", Canary::RemovedMemberStillAccepted),
        ("acceptor-sees-plaintext", Canary::AcceptorSeesPlaintext),
        ("learner-believes-one-acceptor", Canary::LearnerBelievesOneAcceptor),
        ("promise-proofs-unchecked", Canary::PromiseProofsUnchecked),
        ("safe-after-one-ack", Canary::SafeAfterOneAck),
        ("outbox-not-persisted", Canary::OutboxNotPersisted),
        ("delete-before-snapshot-stored", Canary::DeleteBeforeSnapshotStored),
        ("compaction-covers-unsafe-messages", Canary::CompactionCoversUnsafeMessages),
        ("hand-over-to-one-acceptor", Canary::HandOverToOneAcceptor),
    ];

    /// The canary with this command-line name.
    pub fn from_name(name: &str) -> Option<Canary> {
        Canary::ALL.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }
}

/// `true` when the named canary is switched on; a constant `false` without the feature.
#[cfg(feature = "canary")]
macro_rules! canary {
    ($config:expr, $name:ident) => {
        $config.canary == Some($crate::canary::Canary::$name)
    };
}

/// `true` when the named canary is switched on; a constant `false` without the feature.
#[cfg(not(feature = "canary"))]
macro_rules! canary {
    ($config:expr, $name:ident) => {
        false
    };
}

pub(crate) use canary;
