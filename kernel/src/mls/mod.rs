//! MLS (openmls) inside the kernel, deterministic: a provider whose randomness is the node's
//! seed, an identity built from seeded bytes, a journal that turns openmls's storage writes into
//! durable records, and one device's membership in one group. Devices order their commits
//! through the Paxos log; acceptors check them with a public view of the group.

pub mod digest;
pub mod identity;
pub mod journal;
pub mod member;
pub mod provider;
pub mod public_view;
pub mod roles;
pub mod storage;
pub mod verifying_keys;

pub use digest::{DigestCheck, ForkEvidence, SignedDigest};
pub use identity::{CIPHERSUITE, Identity};
pub use journal::{Journal, StorageChange};
pub use member::{Decrypted, Joining, Member, MlsError, OwnCommit};
pub use provider::DeterministicProvider;
pub use public_view::{CheckedCommit, PublicView};
pub use roles::{CommitSummary, GroupSettings, Role, Roles};

/// Runs `call`, which hands openmls bytes from a peer, turning a panic inside it into
/// [`MlsError::Panicked`]: bad input must not end the process. What the panic left behind is the
/// caller's to judge (a call on `&self` left nothing; a member's call may have written half its
/// state, see [`Member`]).
pub(crate) fn contained<T>(call: impl FnOnce() -> Result<T, MlsError>) -> Result<T, MlsError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or(Err(MlsError::Panicked))
}
