//! A device's replica of one group's document: the CRDT, its own outgoing messages, which
//! updates it has applied, and how far it has read each acceptor's store.

use std::collections::{BTreeMap, BTreeSet};

use crate::device::group::compaction::{Compactor, SEALED_TRACKED_MAX};
use crate::device::outbox::Outbox;
use crate::document::{Document, LoroDocument};
use crate::ids::NodeId;
use crate::snapshot::{Covered, CoveredSender, KeyedCompaction};
use crate::storage::RestoredGroup;
use crate::time::Time;
use crate::updates::{Cursor, UpdateId};

/// One sender's applied updates: every seq below `below`, and some above it.
#[derive(Debug, Default)]
struct SenderApplied {
    below: u64,
    /// At most `updates_out_of_order_max`; beyond it an update may be applied twice, which
    /// changes nothing in a CRDT.
    beyond: BTreeSet<u64>,
}

/// The ids of updates a device has applied.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// One entry per sender ever seen (bounded by the group's members over time).
    senders: BTreeMap<NodeId, SenderApplied>,
}

impl Applied {
    /// Whether the update was applied.
    pub(crate) fn contains(&self, id: &UpdateId) -> bool {
        self.senders.get(&id.sender).is_some_and(|s| id.seq < s.below || s.beyond.contains(&id.seq))
    }

    /// Records an applied update.
    pub(crate) fn insert(&mut self, id: UpdateId, out_of_order_max: usize) {
        let sender = self.senders.entry(id.sender).or_default();
        if id.seq < sender.below {
            return;
        }
        if id.seq == sender.below {
            sender.below += 1;
            while sender.beyond.remove(&sender.below) {
                sender.below += 1;
            }
        } else if sender.beyond.len() < out_of_order_max {
            sender.beyond.insert(id.seq);
        }
    }

    /// A digest of exactly which updates were applied: equal digests, equal sets.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for (sender, applied) in &self.senders {
            hasher.update(&sender.0);
            hasher.update(&applied.below.to_le_bytes());
            hasher.update(&(applied.beyond.len() as u64).to_le_bytes());
            for seq in &applied.beyond {
                hasher.update(&seq.to_le_bytes());
            }
        }
        *hasher.finalize().as_bytes()
    }

    /// The first of `sender`'s seqs above every one applied.
    pub(crate) fn next_of(&self, sender: NodeId) -> u64 {
        self.senders.get(&sender).map_or(0, |s| s.beyond.last().map_or(s.below, |last| s.below.max(last + 1)))
    }

    /// Updates applied per sender (for status and the checker).
    pub(crate) fn count(&self) -> u64 {
        self.senders.values().map(|s| s.below + s.beyond.len() as u64).sum()
    }

    /// Exactly the applied ids, as a compaction names what it covers.
    pub(crate) fn covered(&self) -> Covered {
        let senders = self
            .senders
            .iter()
            .map(|(sender, s)| CoveredSender { sender: *sender, below: s.below, beyond: s.beyond.iter().copied().collect() })
            .collect();
        Covered { senders }
    }

    /// Whether every id `covered` names was applied.
    pub(crate) fn includes(&self, covered: &Covered) -> bool {
        self.covered().includes(covered)
    }

    /// Records every id `covered` names as applied (its snapshot was imported).
    pub(crate) fn absorb(&mut self, covered: &Covered, out_of_order_max: usize) {
        for covered in &covered.senders {
            let sender = self.senders.entry(covered.sender).or_default();
            if covered.below > sender.below {
                sender.below = covered.below;
                sender.beyond.retain(|seq| *seq >= covered.below);
            }
            for seq in &covered.beyond {
                if *seq >= sender.below && sender.beyond.len() < out_of_order_max {
                    sender.beyond.insert(*seq);
                }
            }
            while sender.beyond.remove(&sender.below) {
                sender.below += 1;
            }
        }
    }
}

/// The document of one MLS group on a device.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) doc: LoroDocument,
    pub(crate) outbox: Outbox,
    pub(crate) applied: Applied,
    /// How far this device has read each acceptor's store (one per acceptor ever in the set).
    pub(crate) cursors: BTreeMap<NodeId, Cursor>,
    /// Acceptors whose cursor moved since it was last persisted (a subset of `cursors`' keys).
    /// A cursor that only passed duplicates waits for the next page that writes: after a restart it
    /// costs at most a re-read of messages that are skipped as applied.
    pub(crate) cursors_unsaved: BTreeSet<NodeId>,
    /// Compaction: the latest snapshot, ours under way, catching up.
    pub(crate) compactor: Compactor,
    /// Whether the Loro peer id is durable (`PEER_KEY`); it is written with the first update
    /// made under it.
    pub(crate) peer_recorded: bool,
    /// What the durable snapshot of the document covers (`Record::ImportedSnapshot`: a
    /// compaction's or our own checkpoint); empty if there is none.
    pub(crate) checkpoint: Covered,
}

/// Where a device keeps its replica's Loro peer id, in the group's key-value state.
///
/// The id is kept across restarts: one drawn at every boot made each restart a new Loro peer,
/// and Loro's version vectors and imports grow with peers (driven by the command line, a process
/// per command, 1,000 appends made 1,000 peers and took 51 s, each append slower than the last).
/// Keeping it never reuses an operation id anyone saw: an update leaves the node only once it is
/// durable, and a restart imports every durable update before the next edit, so the counter
/// goes on past each of them. If one of our own updates fails to import, a fresh id is used.
pub(crate) const PEER_KEY: &[u8] = b"\xffplait/loro-peer";

/// Why a replica could not be built.
pub(crate) type ReplicaError = crate::document::DocumentError;

impl Replica {
    /// An empty replica whose edits carry `peer`.
    pub(crate) fn new(peer: u64) -> Result<Replica, ReplicaError> {
        Ok(Replica {
            doc: LoroDocument::new(peer)?,
            outbox: Outbox::default(),
            applied: Applied::default(),
            cursors: BTreeMap::new(),
            cursors_unsaved: BTreeSet::new(),
            compactor: Compactor::default(),
            peer_recorded: false,
            checkpoint: Covered::default(),
        })
    }

    /// The record that makes this replica's peer id durable, the first time it is asked.
    pub(crate) fn record_peer(&mut self, group: crate::ids::GroupId) -> Option<crate::storage::Record> {
        if std::mem::replace(&mut self.peer_recorded, true) {
            return None;
        }
        let value = Some(self.doc.peer().to_le_bytes().to_vec());
        Some(crate::storage::Record::MlsState { group, key: PEER_KEY.to_vec(), value })
    }

    /// Merges the first update of one of our batches that had not closed and its later parts.
    fn merge_batch(&mut self, first: &[u8], parts: &[&[u8]]) -> Result<(), ReplicaError> {
        for update in std::iter::once(first).chain(parts.iter().copied()) {
            self.doc.merge_own(update)?;
        }
        Ok(())
    }

    /// The replica rebuilt from disk, its future edits under its recorded peer id (`PEER_KEY`),
    /// or `fresh_peer` if it has none or one of its own updates does not import. Updates that do
    /// not import are counted and skipped (they were checked before they were stored).
    pub(crate) fn restore(
        now: Time,
        me: NodeId,
        fresh_peer: u64,
        restored: &RestoredGroup,
        out_of_order_max: usize,
    ) -> Result<(Replica, usize), ReplicaError> {
        let recorded = restored.mls.get(PEER_KEY).and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok());
        let recorded = recorded.map(u64::from_le_bytes);
        let mut replica = Replica::new(recorded.unwrap_or(fresh_peer))?;
        let mut refused = 0;
        let mut own_refused = false;
        // The snapshot first: it holds the updates of every id it covers, and a checkpoint's
        // were deleted. If it does not import, our own operations in it are lost here while
        // others may hold them: a fresh peer id, so no operation id is reused.
        if let Some((covered, snapshot)) = &restored.imported {
            if replica.doc.merge_snapshot(snapshot).is_ok() {
                cov_mark::hit!(device_restores_its_document_from_a_snapshot);
                replica.applied.absorb(covered, out_of_order_max);
                replica.checkpoint = covered.clone();
            } else {
                refused += 1;
                own_refused = true;
            }
        }
        // The updates left on disk that the snapshot covers are our own not yet safe (kept for
        // the outbox): they need no import, but for our last one it covers, which may have been
        // our open batch and grown with more edits since, and any batch saved in parts.
        let last_own_covered = replica.checkpoint.last_of(me);
        let mut own = BTreeMap::new();
        let mut batches = Vec::new();
        for (id, update) in &restored.updates {
            let parts: Vec<&[u8]> = if id.sender == me {
                restored.batch_parts.range((*id, 0)..=(*id, u32::MAX)).map(|(_, part)| part.as_slice()).collect()
            } else {
                Vec::new()
            };
            if !parts.is_empty() {
                // Joined once every update is merged: an edit's operations depend on others'
                // that may come later in this loop, and Loro exports only what it applied. Its
                // id counts as applied even if a part does not merge, so that its sequence
                // number is not given again (its rows stay on disk until it is dropped).
                replica.applied.insert(*id, out_of_order_max);
                if replica.merge_batch(update, &parts).is_ok() {
                    batches.push((id.seq, std::iter::once(update.as_slice()).chain(parts).collect::<Vec<_>>()));
                } else {
                    refused += 1;
                    own_refused = true;
                }
                continue;
            }
            let rewritable = id.sender == me && Some(id.seq) == last_own_covered;
            if replica.checkpoint.contains(id) && !rewritable {
                cov_mark::hit!(device_restores_an_update_its_snapshot_holds_without_importing_it);
                if id.sender == me {
                    own.insert(id.seq, update.clone());
                }
                continue;
            }
            let merged = if id.sender == me { replica.doc.merge_own(update) } else { replica.doc.merge(update) };
            if merged.is_err() {
                refused += 1;
                own_refused |= id.sender == me;
                continue;
            }
            replica.applied.insert(*id, out_of_order_max);
            if id.sender == me {
                own.insert(id.seq, update.clone());
            }
        }
        for (seq, updates) in batches {
            match replica.doc.joined(&updates) {
                Ok(whole) => {
                    cov_mark::hit!(device_joins_the_parts_of_a_batch_it_had_not_closed);
                    own.insert(seq, whole);
                }
                Err(_) => {
                    refused += 1;
                    own_refused = true;
                }
            }
        }
        let peer = match recorded {
            Some(peer) if !own_refused => peer,
            _ => fresh_peer,
        };
        replica.doc.continue_as(peer)?;
        replica.peer_recorded = recorded == Some(peer);
        replica.outbox = Outbox::restore(now, own, restored.safe_below, replica.applied.next_of(me));
        replica.cursors = restored.cursors.clone();
        let latest = restored.compacted.clone().and_then(|(compaction, key)| Some(KeyedCompaction { compaction, key: key? }));
        let confirming = crate::device::group::confirming::Confirming::restore(&restored.mls);
        // Ids a checkpoint holds count as stored updates: whether a joiner can read them decides
        // whether a compaction is due, as it does for the updates still on disk.
        let checkpointed: Vec<UpdateId> =
            replica.checkpoint.ids_outside(latest.as_ref().map(|l| &l.compaction.covered)).take(SEALED_TRACKED_MAX).collect();
        let stored = restored.updates.keys().copied().chain(checkpointed);
        let undecryptable = restored.undecryptable.iter().filter(|(id, _)| !replica.applied.contains(id));
        replica.compactor = Compactor::restore(latest, stored, undecryptable.map(|(id, epoch)| (*id, *epoch)), confirming);
        Ok((replica, refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Absorbing a covered set applies exactly its ids on top of what was applied, whatever
        /// the order updates arrived in.
        #[test]
        fn absorbing_a_covered_set_is_a_union(
            applied in proptest::collection::vec((0u64..3, 0u64..40), 0..60),
            covered in proptest::collection::vec((0u64..3, 0u64..40), 0..60),
        ) {
            let id = |(sender, seq): (u64, u64)| UpdateId { sender: NodeId::from_index(sender), seq };
            let mut ours = Applied::default();
            let mut theirs = Applied::default();
            for pair in &applied {
                ours.insert(id(*pair), 64);
            }
            for pair in &covered {
                theirs.insert(id(*pair), 64);
            }
            ours.absorb(&theirs.covered(), 64);
            let mut union = Applied::default();
            for pair in applied.iter().chain(&covered) {
                union.insert(id(*pair), 64);
            }
            prop_assert_eq!(ours.digest(), union.digest());
            prop_assert!(ours.includes(&theirs.covered()));
        }
    }
}
