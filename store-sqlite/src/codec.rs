//! How kernel values become column values and back.
//!
//! SQLite's INTEGER is a signed 64-bit number, so a `u64` above `i64::MAX` would sort below zero.
//! Every `u64` is therefore stored as 8 big-endian bytes: SQLite compares BLOBs with `memcmp`, so
//! byte order equals numeric order and range scans and `>` comparisons stay correct over all of
//! `u64`. A `u32` (snapshot chunk index and count) is 4 big-endian bytes for the same reason.
//! Structured values (genesis, entries, compactions, covered sets, content keys) use postcard,
//! the kernel's own encoding.

use plait_kernel::ids::{Ballot, GroupId, Incarnation, NodeId, Slot, ValueHash};
use plait_kernel::invite::{Mailbox, Redeeming};
use plait_kernel::log::{Entry, GroupGenesis};
use plait_kernel::snapshot::{Compaction, ContentKey, Covered, SnapshotHash};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// Bytes of an encoded ballot: round (8) then proposer (32).
pub(crate) const BALLOT_LEN: usize = 8 + 32;

/// A `u64` as 8 big-endian bytes.
pub(crate) fn u64_to_column(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// A `u32` as 4 big-endian bytes.
pub(crate) fn u32_to_column(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

/// A ballot as round then proposer, so byte order is ballot order.
pub(crate) fn ballot_to_column(ballot: Ballot) -> [u8; BALLOT_LEN] {
    let mut bytes = [0u8; BALLOT_LEN];
    bytes[..8].copy_from_slice(&ballot.round.to_be_bytes());
    bytes[8..].copy_from_slice(&ballot.proposer.0);
    bytes
}

/// Bytes of a row checksum.
pub(crate) const CHECKSUM_LEN: usize = 8;

/// The checksum stored with a row: BLAKE3 over the table name and each column, length-prefixed
/// so that moving bytes between columns changes it. SQLite verifies its b-tree structure but not
/// the bytes inside a row; this catches a damaged row that still parses.
pub(crate) fn row_checksum(table: &str, columns: &[&[u8]]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"plait store row v1");
    for part in std::iter::once(table.as_bytes()).chain(columns.iter().copied()) {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut checksum = [0u8; CHECKSUM_LEN];
    checksum.copy_from_slice(&hasher.finalize().as_bytes()[..CHECKSUM_LEN]);
    checksum
}

/// Fails with [`StoreError::Corrupt`] unless `checksum` is the checksum of `columns`.
pub(crate) fn verify_row(table: &'static str, columns: &[&[u8]], checksum: &[u8]) -> Result<(), StoreError> {
    if row_checksum(table, columns).as_slice() == checksum {
        Ok(())
    } else {
        Err(StoreError::Corrupt { detail: format!("a row of {table} does not match its checksum") })
    }
}

/// Encodes a value with postcard.
pub(crate) fn to_postcard<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("invariant: kernel types always encode with postcard")
}

/// Reads one column back, naming the table and column if the bytes are not what we wrote.
pub(crate) struct Column(
    /// `table.column`, for the error message.
    pub(crate) &'static str,
);

impl Column {
    fn fixed<const N: usize>(&self, bytes: &[u8]) -> Result<[u8; N], StoreError> {
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt { detail: format!("{} holds {} bytes, expected {N}", self.0, bytes.len()) })
    }

    pub(crate) fn u64(&self, bytes: &[u8]) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.fixed(bytes)?))
    }

    pub(crate) fn u32(&self, bytes: &[u8]) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.fixed(bytes)?))
    }

    pub(crate) fn slot(&self, bytes: &[u8]) -> Result<Slot, StoreError> {
        Ok(Slot(self.u64(bytes)?))
    }

    pub(crate) fn incarnation(&self, bytes: &[u8]) -> Result<Incarnation, StoreError> {
        Ok(Incarnation(self.u64(bytes)?))
    }

    pub(crate) fn group_id(&self, bytes: &[u8]) -> Result<GroupId, StoreError> {
        Ok(GroupId(self.fixed(bytes)?))
    }

    pub(crate) fn node_id(&self, bytes: &[u8]) -> Result<NodeId, StoreError> {
        Ok(NodeId(self.fixed(bytes)?))
    }

    pub(crate) fn snapshot_hash(&self, bytes: &[u8]) -> Result<SnapshotHash, StoreError> {
        Ok(SnapshotHash(self.fixed(bytes)?))
    }

    pub(crate) fn value_hash(&self, bytes: &[u8]) -> Result<ValueHash, StoreError> {
        Ok(ValueHash(self.fixed(bytes)?))
    }

    pub(crate) fn ballot(&self, bytes: &[u8]) -> Result<Ballot, StoreError> {
        let bytes: [u8; BALLOT_LEN] = self.fixed(bytes)?;
        let (round, proposer) = bytes.split_at(8);
        Ok(Ballot { round: self.u64(round)?, proposer: self.node_id(proposer)? })
    }

    pub(crate) fn entry(&self, bytes: &[u8]) -> Result<Entry, StoreError> {
        self.postcard(bytes)
    }

    pub(crate) fn genesis(&self, bytes: &[u8]) -> Result<GroupGenesis, StoreError> {
        self.postcard(bytes)
    }

    pub(crate) fn compaction(&self, bytes: &[u8]) -> Result<Compaction, StoreError> {
        self.postcard(bytes)
    }

    pub(crate) fn content_key(&self, bytes: &[u8]) -> Result<Option<ContentKey>, StoreError> {
        self.postcard(bytes)
    }

    pub(crate) fn covered(&self, bytes: &[u8]) -> Result<Covered, StoreError> {
        self.postcard(bytes)
    }

    pub(crate) fn mailbox(&self, bytes: &[u8]) -> Result<Mailbox, StoreError> {
        Ok(Mailbox(self.fixed(bytes)?))
    }

    pub(crate) fn redeeming(&self, bytes: &[u8]) -> Result<Redeeming, StoreError> {
        self.postcard(bytes)
    }

    fn postcard<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|error| StoreError::Corrupt { detail: format!("{} does not decode: {error}", self.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_column_bytes_sort_like_numbers_across_the_sign_bit() {
        let values = [0, 1, 255, 256, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX];
        for pair in values.windows(2) {
            assert!(u64_to_column(pair[0]) < u64_to_column(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn ballot_column_bytes_sort_like_ballots() {
        let low = NodeId::from_index(1);
        let high = NodeId::from_index(2);
        let ballots = [
            Ballot::ZERO,
            Ballot { round: 1, proposer: low },
            Ballot { round: 1, proposer: high },
            Ballot { round: u64::MAX, proposer: low },
        ];
        for pair in ballots.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(ballot_to_column(pair[0]) < ballot_to_column(pair[1]), "{pair:?}");
        }
        let reader = Column("test.ballot");
        for ballot in ballots {
            assert_eq!(reader.ballot(&ballot_to_column(ballot)).expect("round trip"), ballot);
        }
    }

    #[test]
    fn a_changed_byte_or_a_byte_moved_between_columns_fails_the_row_checksum() {
        let checksum = row_checksum("chosen", &[b"group", b"slot"]);
        assert!(verify_row("chosen", &[b"group", b"slot"], &checksum).is_ok());
        assert!(verify_row("chosen", &[b"group", b"slou"], &checksum).is_err());
        assert!(verify_row("chosen", &[b"grou", b"pslot"], &checksum).is_err());
        assert!(verify_row("accepted", &[b"group", b"slot"], &checksum).is_err());
    }

    #[test]
    fn a_column_of_the_wrong_length_is_a_typed_corruption_error() {
        let reader = Column("chosen.slot");
        assert!(matches!(reader.slot(&[1, 2, 3]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(reader.entry(&[0xff, 0xff]), Err(StoreError::Corrupt { .. })));
    }
}
