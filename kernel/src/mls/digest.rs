//! Fork detection: members sign a digest of each epoch and compare.
//!
//! Members that reach the same epoch must agree on its epoch authenticator. A member signs
//! `(group, epoch, hash of the authenticator)` and others check it against their own record; a
//! valid signature over a different authenticator for an epoch is evidence of a fork.

use serde::{Deserialize, Serialize};

/// Epoch authenticators a member keeps to compare late digests with.
pub const AUTHENTICATORS_KEPT: usize = 64;

/// One member's signed statement about one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDigest {
    /// The MLS group id.
    pub group: Vec<u8>,
    /// The epoch.
    pub epoch: u64,
    /// BLAKE3 of the epoch authenticator (the authenticator itself stays secret).
    pub authenticator_hash: [u8; 32],
    /// The signer's name.
    pub signer: Vec<u8>,
    /// Ed25519 signature over [`SignedDigest::signed_bytes`].
    pub signature: Vec<u8>,
}

impl SignedDigest {
    /// The bytes the signature covers.
    pub fn signed_bytes(group: &[u8], epoch: u64, authenticator_hash: &[u8; 32]) -> Vec<u8> {
        let mut bytes = b"plait epoch digest v1".to_vec();
        bytes.extend_from_slice(&(group.len() as u64).to_le_bytes());
        bytes.extend_from_slice(group);
        bytes.extend_from_slice(&epoch.to_le_bytes());
        bytes.extend_from_slice(authenticator_hash);
        bytes
    }
}

/// The outcome of checking another member's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestCheck {
    /// Same authenticator: no fork.
    Agree,
    /// A validly signed, different authenticator for an epoch we know: a fork.
    Fork(ForkEvidence),
    /// We do not (or no longer) know that epoch.
    UnknownEpoch,
    /// Not signed by a current member, or not for this group: ignore and count.
    Invalid,
}

/// What proves a fork: our record and the other member's signed statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkEvidence {
    /// The epoch.
    pub epoch: u64,
    /// BLAKE3 of our authenticator.
    pub ours: [u8; 32],
    /// Their signed digest.
    pub theirs: SignedDigest,
}

/// BLAKE3 of an authenticator.
pub fn authenticator_hash(authenticator: &[u8]) -> [u8; 32] {
    *blake3::hash(authenticator).as_bytes()
}
