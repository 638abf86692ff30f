//! Compaction's data: encrypted document snapshots and the record a compaction commit carries.
//!
//! A compactor exports its document, seals it under a fresh content key, and stores the
//! ciphertext at the acceptors in chunks, named by the BLAKE3 hash of the whole ciphertext (so
//! an acceptor or a peer cannot swap it: every chunk set is checked against the name). The
//! commit that makes the snapshot count carries a [`Compaction`] in its MLS authenticated data:
//! acceptors read the hash and the covered messages; the content key travels wrapped under the
//! epoch's exporter secret, which only members have.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;
use crate::updates::UpdateId;

/// The name of a stored snapshot: the BLAKE3 hash of its ciphertext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotHash(pub [u8; 32]);

impl SnapshotHash {
    /// The hash of a snapshot's whole ciphertext.
    pub fn of(ciphertext: &[u8]) -> SnapshotHash {
        SnapshotHash(*blake3::hash(ciphertext).as_bytes())
    }
}

impl std::fmt::Debug for SnapshotHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snap-{}", crate::ids::hex(&self.0[..4]))
    }
}

/// A snapshot's content key: drawn fresh for every snapshot, never reused, never shown to an
/// acceptor.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentKey(pub [u8; 32]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentKey(..)")
    }
}

/// Seals `plaintext` under a key used for nothing else (a content key, or an exporter secret
/// bound to one snapshot hash), so a fixed nonce is safe.
pub fn seal(key: &ContentKey, plaintext: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(&Key::from(key.0))
        .encrypt(&Nonce::default(), plaintext)
        .expect("invariant: ChaCha20-Poly1305 encrypts any length we hand it")
}

/// Opens what [`seal`] sealed; `None` for the wrong key or tampered bytes.
pub fn open(key: &ContentKey, ciphertext: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(&Key::from(key.0)).decrypt(&Nonce::default(), ciphertext).ok()
}

/// One sender's covered messages: every seq below `below`, and the listed ones above it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoveredSender {
    /// The sender.
    pub sender: NodeId,
    /// Every seq below this is covered.
    pub below: u64,
    /// Covered seqs above `below`, strictly increasing.
    pub beyond: Vec<u64>,
}

/// Exactly which document messages a compaction covers: the ids whose updates are inside its
/// snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// By sender, strictly increasing.
    pub senders: Vec<CoveredSender>,
}

impl Covered {
    /// Whether the message `id` is covered.
    pub fn contains(&self, id: &UpdateId) -> bool {
        self.sender(id.sender).is_some_and(|s| id.seq < s.below || s.beyond.binary_search(&id.seq).is_ok())
    }

    fn sender(&self, sender: NodeId) -> Option<&CoveredSender> {
        self.senders.binary_search_by(|s| s.sender.cmp(&sender)).ok().map(|i| &self.senders[i])
    }

    /// The highest seq of `sender` covered, if any.
    pub fn last_of(&self, sender: NodeId) -> Option<u64> {
        let s = self.sender(sender)?;
        s.beyond.last().copied().or(s.below.checked_sub(1))
    }

    /// The ids covered here and not by `other`: each sender's run from `other`'s `below` for it
    /// on, then its listed seqs.
    pub fn ids_outside<'a>(&'a self, other: Option<&'a Covered>) -> impl Iterator<Item = UpdateId> + 'a {
        self.senders
            .iter()
            .flat_map(move |s| {
                let start = other.and_then(|o| o.sender(s.sender)).map_or(0, |o| o.below).min(s.below);
                (start..s.below).chain(s.beyond.iter().copied()).map(move |seq| UpdateId { sender: s.sender, seq })
            })
            .filter(move |id| !other.is_some_and(|o| o.contains(id)))
    }

    /// How many messages are covered.
    pub fn count(&self) -> u64 {
        self.senders.iter().map(|s| s.below + s.beyond.len() as u64).sum()
    }

    /// Whether every id covered by `other` is covered here.
    pub fn includes(&self, other: &Covered) -> bool {
        other.senders.iter().all(|o| {
            let covers = |seq: u64| self.contains(&UpdateId { sender: o.sender, seq });
            let below = self.sender(o.sender).map_or(0, |s| s.below);
            // Every seq of `other`'s run below `below` that ours does not cover in its own run
            // must be listed in ours; more of them than we list cannot all be.
            let gap = o.below.saturating_sub(below);
            let listed = self.sender(o.sender).map_or(0, |s| s.beyond.len() as u64);
            (gap == 0 || (gap <= listed && (below..o.below).all(covers))) && o.beyond.iter().all(|seq| covers(*seq))
        })
    }

    /// Whether the set is in canonical form (sorted senders, sorted explicit seqs above
    /// `below`) and within `senders_max` senders and `beyond_max` explicit seqs each.
    pub fn is_well_formed(&self, senders_max: usize, beyond_max: usize) -> bool {
        self.senders.len() <= senders_max
            && self.senders.windows(2).all(|w| w[0].sender < w[1].sender)
            && self.senders.iter().all(|s| {
                s.beyond.len() <= beyond_max
                    && s.beyond.first().is_none_or(|first| *first > s.below)
                    && s.beyond.windows(2).all(|w| w[0] < w[1])
            })
    }
}

/// What a compaction commit says, in its MLS authenticated data: public to acceptors, signed by
/// the committer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// The snapshot's name.
    pub hash: SnapshotHash,
    /// The ciphertext's size in bytes.
    pub size: u64,
    /// How many chunks it is stored in.
    pub chunks: u32,
    /// The messages whose updates the snapshot holds; acceptors may delete them.
    pub covered: Covered,
    /// The content key sealed under the commit epoch's exporter secret for this hash.
    pub wrapped_key: Vec<u8>,
}

/// Marks authenticated data as a compaction, so other uses of it cannot be mistaken for one.
const AAD_MAGIC: &[u8] = b"plait compaction v1";

impl Compaction {
    /// Encodes for a commit's authenticated data.
    pub fn to_aad(&self) -> Vec<u8> {
        postcard::to_extend(self, AAD_MAGIC.to_vec()).expect("invariant: compactions encode")
    }

    /// The compaction a commit's authenticated data names, if it names one.
    pub fn from_aad(aad: &[u8]) -> Option<Compaction> {
        postcard::from_bytes(aad.strip_prefix(AAD_MAGIC)?).ok()
    }

    /// The label and context of the exporter secret that wraps the content key.
    pub fn exporter_context(hash: &SnapshotHash) -> (&'static str, [u8; 32]) {
        ("plait snapshot key", hash.0)
    }
}

/// A compaction with its content key, as a member keeps it and as a joiner gets it inside its
/// Welcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedCompaction {
    /// The compaction.
    pub compaction: Compaction,
    /// Its content key.
    pub key: ContentKey,
}

/// Splits a ciphertext into chunks of at most `chunk_bytes` (at least one chunk).
pub fn split(ciphertext: &[u8], chunk_bytes: usize) -> Vec<Vec<u8>> {
    assert!(chunk_bytes > 0);
    if ciphertext.is_empty() {
        return vec![Vec::new()];
    }
    ciphertext.chunks(chunk_bytes).map(<[u8]>::to_vec).collect()
}

/// The chunks of one snapshot, collected in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembly {
    /// The snapshot's name.
    pub hash: SnapshotHash,
    /// How many chunks make it up.
    pub count: u32,
    chunks: BTreeMap<u32, Vec<u8>>,
    bytes: usize,
}

/// Why a chunk was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkRefusal {
    /// The index is outside the count, or the count disagrees with earlier chunks.
    Inconsistent,
    /// The snapshot would grow past the size limit.
    TooLarge,
}

impl Assembly {
    /// An empty assembly of `count` chunks.
    pub fn new(hash: SnapshotHash, count: u32) -> Assembly {
        Assembly { hash, count, chunks: BTreeMap::new(), bytes: 0 }
    }

    /// Takes one chunk (a repeat replaces nothing); refuses what cannot belong.
    pub fn insert(&mut self, index: u32, count: u32, bytes: Vec<u8>, size_max: usize) -> Result<(), ChunkRefusal> {
        if count != self.count || index >= count {
            return Err(ChunkRefusal::Inconsistent);
        }
        if self.chunks.contains_key(&index) {
            return Ok(());
        }
        if self.bytes + bytes.len() > size_max {
            return Err(ChunkRefusal::TooLarge);
        }
        self.bytes += bytes.len();
        self.chunks.insert(index, bytes);
        Ok(())
    }

    /// Whether every chunk is here.
    pub fn is_complete(&self) -> bool {
        self.chunks.len() == self.count as usize
    }

    /// The chunks held, by index.
    pub fn chunks(&self) -> impl Iterator<Item = (u32, &Vec<u8>)> {
        self.chunks.iter().map(|(index, bytes)| (*index, bytes))
    }

    /// Whether chunk `index` is held.
    pub fn holds(&self, index: u32) -> bool {
        self.chunks.contains_key(&index)
    }

    /// The first chunk index not held.
    pub fn first_missing(&self) -> Option<u32> {
        (0..self.count).find(|index| !self.chunks.contains_key(index))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The whole ciphertext, if every chunk is here and it matches its name.
    pub fn ciphertext(&self) -> Option<Vec<u8>> {
        if !self.is_complete() {
            return None;
        }
        let whole: Vec<u8> = self.chunks.values().flatten().copied().collect();
        (SnapshotHash::of(&whole) == self.hash).then_some(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_snapshots_open_only_with_their_key() {
        let key = ContentKey([7; 32]);
        let sealed = seal(&key, b"the text");
        assert_eq!(open(&key, &sealed).as_deref(), Some(&b"the text"[..]));
        assert_eq!(open(&ContentKey([8; 32]), &sealed), None);
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert_eq!(open(&key, &tampered), None);
    }

    #[test]
    fn chunks_reassemble_in_any_order_and_are_checked_against_the_hash() {
        let ciphertext: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let hash = SnapshotHash::of(&ciphertext);
        let chunks = split(&ciphertext, 300);
        assert_eq!(chunks.len(), 4);
        let mut assembly = Assembly::new(hash, 4);
        for index in [3, 1, 0] {
            assembly.insert(index, 4, chunks[index as usize].clone(), 10_000).expect("fits");
        }
        assert_eq!(assembly.first_missing(), Some(2));
        assert_eq!(assembly.ciphertext(), None);
        assert_eq!(assembly.insert(4, 4, vec![], 10_000), Err(ChunkRefusal::Inconsistent));
        assert_eq!(assembly.insert(2, 5, vec![], 10_000), Err(ChunkRefusal::Inconsistent));
        assembly.insert(2, 4, chunks[2].clone(), 10_000).expect("fits");
        assert_eq!(assembly.ciphertext(), Some(ciphertext.clone()));

        // A truncated chunk assembles into something that is not the named snapshot.
        let mut bad = Assembly::new(hash, 4);
        for (index, chunk) in chunks.iter().enumerate() {
            let chunk = if index == 1 { chunk[..10].to_vec() } else { chunk.clone() };
            bad.insert(index as u32, 4, chunk, 10_000).expect("fits");
        }
        assert!(bad.is_complete());
        assert_eq!(bad.ciphertext(), None);
        let mut small = Assembly::new(hash, 4);
        assert_eq!(small.insert(0, 4, chunks[0].clone(), 100), Err(ChunkRefusal::TooLarge));
    }

    #[test]
    fn covered_sets_answer_membership_inclusion_and_shape() {
        let a = NodeId::from_index(1);
        let b = NodeId::from_index(2);
        let covered = Covered {
            senders: vec![
                CoveredSender { sender: a, below: 3, beyond: vec![5, 9] },
                CoveredSender { sender: b, below: 1, beyond: vec![] },
            ],
        };
        assert!(covered.is_well_formed(2, 2));
        assert!(!covered.is_well_formed(1, 2));
        assert!(!covered.is_well_formed(2, 1));
        for (sender, seq, expected) in [(a, 0, true), (a, 2, true), (a, 3, false), (a, 5, true), (a, 9, true), (b, 1, false)] {
            assert_eq!(covered.contains(&UpdateId { sender, seq }), expected, "{sender} {seq}");
        }
        assert_eq!(covered.count(), 6);
        let smaller = Covered { senders: vec![CoveredSender { sender: a, below: 2, beyond: vec![5] }] };
        assert!(covered.includes(&smaller));
        assert!(!smaller.includes(&covered));
        let unsorted = Covered { senders: vec![covered.senders[1].clone(), covered.senders[0].clone()] };
        assert!(!unsorted.is_well_formed(2, 2));
    }

    #[test]
    fn compactions_round_trip_through_authenticated_data_and_nothing_else_parses() {
        let compaction = Compaction {
            hash: SnapshotHash([1; 32]),
            size: 10,
            chunks: 1,
            covered: Covered::default(),
            wrapped_key: vec![2; 48],
        };
        assert_eq!(Compaction::from_aad(&compaction.to_aad()), Some(compaction));
        assert_eq!(Compaction::from_aad(b""), None);
        assert_eq!(Compaction::from_aad(b"plait compaction v1\xff"), None);
    }

    #[test]
    fn ids_outside_another_set_are_exactly_those_it_does_not_cover() {
        let (a, b) = (NodeId::from_index(1), NodeId::from_index(2));
        let ours = Covered {
            senders: vec![
                CoveredSender { sender: a, below: 5, beyond: vec![7, 9] },
                CoveredSender { sender: b, below: 2, beyond: vec![] },
            ],
        };
        let theirs = Covered { senders: vec![CoveredSender { sender: a, below: 3, beyond: vec![4, 9] }] };
        let id = |sender, seq| UpdateId { sender, seq };
        let outside: Vec<UpdateId> = ours.ids_outside(Some(&theirs)).collect();
        assert_eq!(outside, vec![id(a, 3), id(a, 7), id(b, 0), id(b, 1)]);
        assert_eq!(ours.ids_outside(None).count() as u64, ours.count());
    }
}
