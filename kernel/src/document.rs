//! The document a group edits: a CRDT behind a small trait, with Loro as its implementation.
//!
//! Local edits apply at once and come out as encoded updates; updates from other replicas merge
//! in any order and any number of times. The trait is all the rest of the kernel may use, so
//! another CRDT can take Loro's place.
//!
//! Determinism: a replica's peer id is drawn from the node's seeded RNG (once per replica, and
//! kept across restarts: see `device/replica.rs`), and Loro records no timestamps unless asked,
//! so the same edits give the same update bytes. `LoroDoc::new` draws a random peer id of its own from the
//! OS before we replace it; no operation runs under that id (see ARCHITECTURE.md).

use std::collections::BTreeMap;

use loro::{ExportMode, IdSpan, LoroDoc, VersionVector};

use crate::faults::{self, Library};
use crate::loro_blob::{self, Operations};

/// Why a document refused an edit or an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum DocumentError {
    /// The edit's range lies outside the text.
    #[error("edit at {position}+{delete} is outside a text of {len} characters")]
    OutOfRange {
        /// Where the edit starts (characters).
        position: usize,
        /// How many characters it deletes.
        delete: usize,
        /// The text's length (characters).
        len: usize,
    },
    /// An update from another replica could not be decoded or applied.
    #[error("update refused: {0}")]
    BadUpdate(String),
    /// The CRDT library failed on something that is not the input's fault.
    #[error("document library failure: {0}")]
    Internal(String),
    /// The CRDT library panicked importing an update: the document is gone from memory and
    /// must be built again from what storage holds (the node asks its host to, see
    /// `Outputs::rebuild_from_storage`). Every call refuses until then.
    #[error("the document library panicked; the document must be rebuilt from storage")]
    Broken,
}

impl DocumentError {
    /// An update or a snapshot refused, and why.
    fn bad_update(why: impl std::fmt::Display) -> Self {
        DocumentError::BadUpdate(why.to_string())
    }
}

/// A replicated text document.
pub trait Document {
    /// Replaces `delete` characters at `position` with `insert`.
    fn splice(&mut self, position: usize, delete: usize, insert: &str) -> Result<(), DocumentError>;
    /// The local edits not yet marked sent, encoded for other replicas as one update (`None` if
    /// there are none). Asking again without new edits gives the same bytes.
    fn pending_local_update(&mut self) -> Result<Option<Vec<u8>>, DocumentError>;
    /// The local edits since the last call (or since they were last marked sent), encoded as one
    /// update (`None` if there were none): what a pending update gained, to save alone.
    fn unsaved_local_update(&mut self) -> Result<Option<Vec<u8>>, DocumentError>;
    /// Marks every local edit so far as sent: the next pending update starts after them.
    fn mark_local_update_sent(&mut self);
    /// One update with exactly the operations of `updates`, which were merged already and applied
    /// (not waiting for a predecessor: an error then): how the unsaved updates of one pending
    /// update, saved one by one, become that update again.
    fn joined(&self, updates: &[&[u8]]) -> Result<Vec<u8>, DocumentError>;
    /// The local edits since the last call, encoded for other replicas (`None` if there were none).
    fn take_local_update(&mut self) -> Result<Option<Vec<u8>>, DocumentError> {
        let update = self.pending_local_update()?;
        self.mark_local_update_sent();
        Ok(update)
    }
    /// Merges an update from another replica. Order and repetition do not matter; an update whose
    /// causal predecessors have not arrived waits inside the document until they do.
    fn merge(&mut self, update: &[u8]) -> Result<(), DocumentError>;
    /// Merges one of our own updates read back from our own disk, which may overlap operations
    /// the document holds: a checkpoint can hold the start of our open batch, which grew on
    /// disk with later edits. Another replica's update never may (`merge` refuses it).
    fn merge_own(&mut self, update: &[u8]) -> Result<(), DocumentError>;
    /// Merges a whole document (another replica's `export_snapshot`), which may hold operations
    /// this one has too. On an error this document is as it was.
    fn merge_snapshot(&mut self, snapshot: &[u8]) -> Result<(), DocumentError>;
    /// The current text.
    fn text(&self) -> String;
    /// Whether an update merged earlier waits for a predecessor (it is not in the text, nor in
    /// a snapshot, yet).
    fn has_pending(&self) -> bool;
    /// The whole document (every operation merged so far) in the CRDT library's own snapshot
    /// format, for a client outside Plait to import (for Loro: `LoroDoc::import`).
    fn export_snapshot(&self) -> Result<Vec<u8>, DocumentError>;
}

/// The name of the text container every Plait document uses (a Loro client reading a
/// snapshot finds the text under `LoroDoc::get_text(TEXT_CONTAINER)`).
pub const TEXT_CONTAINER: &str = "text";

/// A [`Document`] on Loro.
#[derive(Debug)]
pub struct LoroDocument {
    /// Empty once `broken`: the document Loro panicked in is leaked (see `import`).
    doc: LoroDoc,
    /// Loro panicked importing an update; every call refuses with `DocumentError::Broken`.
    broken: bool,
    /// The operations of updates Loro holds back, waiting for a predecessor.
    waiting: Waiting,
    peer: u64,
    /// Our own operations below this counter have been sent; later ones go in the next update
    /// (only ours: imported operations are other replicas' to send).
    sent: i32,
    /// Our own operations below this counter were handed out to be saved (at or above `sent`).
    saved: i32,
}

impl LoroDocument {
    /// An empty document whose local edits carry `peer` (draw it from the node's seeded RNG).
    pub fn new(peer: u64) -> Result<LoroDocument, DocumentError> {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer).map_err(|error| DocumentError::Internal(error.to_string()))?;
        Ok(LoroDocument { doc, broken: false, waiting: Waiting::default(), peer, sent: 0, saved: 0 })
    }
}

impl LoroDocument {
    /// The peer id its local edits carry.
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// Whether Loro panicked in this document (see [`DocumentError::Broken`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Refuses every call once the document is broken.
    fn intact(&self) -> Result<(), DocumentError> {
        if self.broken { Err(DocumentError::Broken) } else { Ok(()) }
    }

    /// Goes on editing as `peer` after a restore: every operation of `peer` the document holds
    /// came from a durable update, so none goes in the next one.
    pub fn continue_as(&mut self, peer: u64) -> Result<(), DocumentError> {
        self.intact()?;
        self.doc.commit();
        if peer != self.peer {
            self.doc.set_peer_id(peer).map_err(|error| DocumentError::Internal(error.to_string()))?;
            self.peer = peer;
        }
        self.sent = self.own_counter();
        self.saved = self.sent;
        Ok(())
    }

    /// Hands `update` to Loro, noting the operations it holds back.
    ///
    /// A panic inside Loro is contained here: it poisons the document's locks, so the document
    /// is leaked (dropping it would panic again) and replaced by an empty one that nothing may
    /// use: the document is `broken` until the node is built again from storage. The update
    /// was not saved (it is saved only once merged), so the rebuilt document lacks it.
    fn import(&mut self, update: &[u8]) -> Result<(), DocumentError> {
        self.intact()?;
        let imported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            faults::panic_if_armed(Library::Loro, update);
            self.doc.import(update)
        }));
        let Ok(imported) = imported else {
            std::mem::forget(std::mem::replace(&mut self.doc, LoroDoc::new()));
            self.broken = true;
            return Err(DocumentError::Broken);
        };
        let status = imported.map_err(DocumentError::bad_update)?;
        if let Some(pending) = status.pending {
            for (peer, (start, end)) in pending.iter() {
                self.waiting.insert(*peer, *start, *end);
            }
        }
        Ok(())
    }

    /// Fills `fresh` (an empty document) with `snapshot`, under our peer id.
    fn filled_with(&self, fresh: &LoroDoc, snapshot: &[u8]) -> Result<(), DocumentError> {
        fresh.set_peer_id(self.peer).map_err(|error| DocumentError::Internal(error.to_string()))?;
        fresh.import(snapshot).map_err(DocumentError::bad_update)?;
        Ok(())
    }

    /// Fills `merged` (an empty document) with `snapshot` and then with every operation of ours
    /// it lacks, imported in the forms Loro handles (see `merge_snapshot`).
    fn merged_with(&self, merged: &LoroDoc, snapshot: &[u8]) -> Result<(), DocumentError> {
        fn internal(error: impl std::fmt::Display) -> DocumentError {
            DocumentError::Internal(error.to_string())
        }
        merged.set_peer_id(self.peer).map_err(internal)?;
        merged.import(snapshot).map_err(DocumentError::bad_update)?;
        let missing = self.doc.export(ExportMode::updates(&merged.oplog_vv())).map_err(internal)?;
        merged.import(&missing).map_err(internal)?;
        if let Some(waiting) = self.doc.export_pending_updates().map_err(internal)? {
            merged.import(&waiting).map_err(internal)?;
        }
        Ok(())
    }

    /// The counter after our own last operation (committing any open transaction first).
    fn own_counter(&self) -> i32 {
        self.doc.commit();
        self.doc.oplog_vv().get(&self.peer).copied().unwrap_or(0)
    }

    /// Our own operations from counter `from` to our last, as one update (`None` if none).
    fn own_update_from(&self, from: i32) -> Result<Option<Vec<u8>>, DocumentError> {
        let ours = self.own_counter();
        if ours == from {
            return Ok(None);
        }
        let span = [IdSpan::new(self.peer, from, ours)];
        let update = self
            .doc
            .export(ExportMode::updates_in_range(&span[..]))
            .map_err(|error| DocumentError::Internal(error.to_string()))?;
        Ok(Some(update))
    }
}

impl Document for LoroDocument {
    fn splice(&mut self, position: usize, delete: usize, insert: &str) -> Result<(), DocumentError> {
        self.intact()?;
        let text = self.doc.get_text(TEXT_CONTAINER);
        let len = text.len_unicode();
        if position.checked_add(delete).is_none_or(|end| end > len) {
            return Err(DocumentError::OutOfRange { position, delete, len });
        }
        text.splice(position, delete, insert).map_err(|error| DocumentError::Internal(error.to_string()))?;
        Ok(())
    }

    fn pending_local_update(&mut self) -> Result<Option<Vec<u8>>, DocumentError> {
        self.intact()?;
        self.own_update_from(self.sent)
    }

    fn unsaved_local_update(&mut self) -> Result<Option<Vec<u8>>, DocumentError> {
        self.intact()?;
        let update = self.own_update_from(self.saved)?;
        self.saved = self.own_counter();
        Ok(update)
    }

    fn mark_local_update_sent(&mut self) {
        if self.broken {
            return;
        }
        self.sent = self.own_counter();
        self.saved = self.sent;
    }

    fn joined(&self, updates: &[&[u8]]) -> Result<Vec<u8>, DocumentError> {
        self.intact()?;
        // Each peer's operations from the earliest start to the latest end: the updates of one
        // pending update are consecutive, so this is exactly theirs.
        let mut spans: BTreeMap<u64, (i32, i32)> = BTreeMap::new();
        for update in updates {
            let meta = LoroDoc::decode_import_blob_meta(update, false).map_err(DocumentError::bad_update)?;
            for (peer, end) in meta.partial_end_vv.iter() {
                let start = meta.partial_start_vv.get(peer).copied().unwrap_or(0);
                let span = spans.entry(*peer).or_insert((start, *end));
                *span = (span.0.min(start), span.1.max(*end));
            }
        }
        self.doc.commit();
        let applied = self.doc.oplog_vv();
        if let Some((peer, _)) = spans.iter().find(|(peer, (_, end))| applied.get(peer).copied().unwrap_or(0) < *end) {
            return Err(DocumentError::Internal(format!("operations of peer {peer} to join are not applied")));
        }
        let spans: Vec<IdSpan> = spans.into_iter().map(|(peer, (start, end))| IdSpan::new(peer, start, end)).collect();
        self.doc.export(ExportMode::updates_in_range(&spans[..])).map_err(|error| DocumentError::Internal(error.to_string()))
    }

    fn merge(&mut self, update: &[u8]) -> Result<(), DocumentError> {
        self.intact()?;
        let refused = |why: &str| Err(DocumentError::bad_update(why));
        let Some(operations) = one_replicas_operations(update)? else { return Ok(()) };
        // See `loro_blob` for why Loro must not see operations it holds or waits on already.
        self.doc.commit();
        let applied = self.doc.oplog_vv().get(&operations.peer).copied().unwrap_or(0);
        if operations.end <= applied {
            return Ok(());
        }
        if operations.start < applied {
            return refused("overlaps operations the document holds");
        }
        if let Some(waiting) = self.waiting.waiting_beside(operations) {
            return if waiting { Ok(()) } else { refused("overlaps operations waiting for a predecessor") };
        }
        if operations.start > applied && !self.waiting.has_room(&self.doc.oplog_vv()) {
            return refused("too many updates wait for a predecessor");
        }
        self.import(update)
    }

    fn merge_own(&mut self, update: &[u8]) -> Result<(), DocumentError> {
        self.intact()?;
        if one_replicas_operations(update)?.is_none() {
            return Ok(());
        }
        self.doc.commit();
        self.import(update)
    }

    fn merge_snapshot(&mut self, snapshot: &[u8]) -> Result<(), DocumentError> {
        self.intact()?;
        self.doc.commit();
        // Into an empty document the snapshot alone (the common case: a joiner, a restart).
        let empty = self.doc.oplog_vv().is_empty() && !self.has_pending();
        // Loro 1.17.1 can panic ("counter should be continuous", in its change store) importing
        // a snapshot whose operations overlap ones the document holds, and a panic poisons the
        // document for good (found by the simulator: two snapshots of one document, a test
        // below). Importing into an empty document, and importing only the operations the other
        // side lacks, do not. So the merged document is built aside: the snapshot, then ours it
        // lacks, then ours still waiting for a predecessor; it replaces this one only whole. A
        // panic inside Loro all the same is contained there: that document is leaked, not
        // dropped (dropping a poisoned one panics again), and the snapshot refused. An empty
        // document is filled aside too, so that no panic leaves this one broken.
        let merged = std::mem::ManuallyDrop::new(LoroDoc::new());
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if empty { self.filled_with(&merged, snapshot) } else { self.merged_with(&merged, snapshot) }
        }));
        match built {
            Ok(Ok(())) => {
                self.doc = std::mem::ManuallyDrop::into_inner(merged);
                Ok(())
            }
            Ok(Err(error)) => {
                drop(std::mem::ManuallyDrop::into_inner(merged));
                Err(error)
            }
            Err(_) => Err(DocumentError::Internal("the document library panicked merging a snapshot".into())),
        }
    }

    fn text(&self) -> String {
        // Broken, the document is empty: the node is rebuilt before anyone reads it again.
        self.doc.get_text(TEXT_CONTAINER).to_string()
    }

    fn has_pending(&self) -> bool {
        // Broken counts as waiting, so that nothing snapshots the empty stand-in.
        self.broken || !matches!(self.doc.export_pending_updates(), Ok(None))
    }

    fn export_snapshot(&self) -> Result<Vec<u8>, DocumentError> {
        self.intact()?;
        // No transaction is open here (every call above commits its own), so exporting changes
        // nothing the next update would carry.
        self.doc.export(ExportMode::Snapshot).map_err(|error| DocumentError::Internal(error.to_string()))
    }
}

/// The operations `update` holds, if it is one replica's in Loro's update encoding.
fn one_replicas_operations(update: &[u8]) -> Result<Option<Operations>, DocumentError> {
    loro_blob::operations(update).map_err(DocumentError::bad_update)
}

/// At most this many ranges of operations waiting for a predecessor (`Config::
/// updates_out_of_order_max` is 4,096 by default): one more update that would wait is refused.
const WAITING_RANGES_MAX: usize = 8_192;

/// The operations handed to Loro that wait for a predecessor, by peer and first counter. No two
/// overlap: `merge` refuses an update that overlaps one.
#[derive(Debug, Default)]
struct Waiting {
    ranges: BTreeMap<(u64, i32), i32>,
}

impl Waiting {
    fn insert(&mut self, peer: u64, start: i32, end: i32) {
        self.ranges.insert((peer, start), end);
    }

    /// Whether `operations` are all waiting already (`Some(true)`), overlap waiting ones
    /// without being all of them (`Some(false)`), or touch none (`None`).
    fn waiting_beside(&self, operations: Operations) -> Option<bool> {
        let ((peer, start), end) = self.ranges.range(..(operations.peer, operations.end)).next_back()?;
        (*peer == operations.peer && *end > operations.start).then_some(*start <= operations.start && operations.end <= *end)
    }

    /// Forgets the ranges Loro has applied since (below `applied`); whether one more fits.
    fn has_room(&mut self, applied: &VersionVector) -> bool {
        if self.ranges.len() >= WAITING_RANGES_MAX {
            self.ranges.retain(|(peer, _), end| *end > applied.get(peer).copied().unwrap_or(0));
        }
        self.ranges.len() < WAITING_RANGES_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edits saved one by one and joined give one update with every one of them, which a
    /// replica that saw none of them applies to the same text.
    #[test]
    fn unsaved_updates_joined_are_the_pending_update() {
        let mut doc = LoroDocument::new(1).expect("doc");
        doc.splice(0, 0, "before ").expect("edit");
        let sent = doc.take_local_update().expect("export").expect("an update");
        let mut parts = Vec::new();
        for (index, insert) in ["a", "bc", "def"].iter().enumerate() {
            doc.splice(index, 0, insert).expect("edit");
            parts.push(doc.unsaved_local_update().expect("export").expect("an update"));
        }
        let pending = doc.pending_local_update().expect("export").expect("an update");
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let joined = doc.joined(&parts).expect("joined");
        for update in [pending, joined] {
            let mut other = LoroDocument::new(2).expect("doc");
            other.merge(&sent).expect("merge");
            other.merge(&update).expect("merge");
            assert!(!other.has_pending());
            assert_eq!(other.text(), doc.text());
        }
    }

    /// Two snapshots of one document taken by the simulator (seed 87 of `compaction/every-
    /// acceptor-replaced-while-acceptors-crash-and-lose-disks-loses-nothing`), the second
    /// holding more of every peer's operations than the first.
    const EARLIER: &[u8] = include_bytes!("../tests/data/overlapping-snapshot-a.loro");
    const LATER: &[u8] = include_bytes!("../tests/data/overlapping-snapshot-b.loro");

    /// Why `merge_snapshot` builds the merged document aside: Loro panics importing the later
    /// snapshot into a document built from the earlier one. When this fails, Loro is mended
    /// and the plain import would do.
    #[test]
    fn loro_panics_importing_the_later_snapshot_over_the_earlier() {
        let doc = LoroDoc::new();
        doc.import(EARLIER).expect("import");
        let imported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.import(LATER).is_ok()));
        std::mem::forget(doc); // poisoned: dropping it would panic again
        assert!(imported.is_err(), "Loro imported it: merge_snapshot's detour may go");
    }

    /// The panic above, reached through `import` (which `merge`'s check would not let it
    /// reach): contained, and the document refuses everything until it is rebuilt.
    #[test]
    fn a_panic_inside_loro_leaves_the_document_broken_not_the_node() {
        let mut doc = LoroDocument::new(7).expect("doc");
        doc.merge_snapshot(EARLIER).expect("into an empty document");
        assert_eq!(doc.import(LATER), Err(DocumentError::Broken));
        assert!(doc.is_broken());
        assert_eq!(doc.splice(0, 0, "x"), Err(DocumentError::Broken));
        assert_eq!(doc.merge(LATER), Err(DocumentError::Broken));
        assert_eq!(doc.export_snapshot(), Err(DocumentError::Broken));
        assert_eq!(doc.pending_local_update(), Err(DocumentError::Broken));
        assert!(doc.has_pending(), "nothing may snapshot a broken document");
        assert_eq!(doc.text(), "");
        drop(doc); // the poisoned Loro document was leaked: dropping ours does not panic
    }

    #[test]
    fn a_snapshot_overlapping_the_document_merges_with_our_own_edits() {
        let mut doc = LoroDocument::new(7).expect("doc");
        doc.merge_snapshot(EARLIER).expect("into an empty document");
        doc.splice(0, 0, "ours ").expect("edit");
        let ours = doc.take_local_update().expect("export").expect("an update");
        doc.merge_snapshot(LATER).expect("merge");

        let expected = LoroDocument::new(8).and_then(|mut other| {
            other.merge_snapshot(LATER)?;
            other.merge(&ours)?;
            Ok(other.text())
        });
        assert_eq!(Ok(doc.text()), expected);
        assert!(doc.text().starts_with("ours "));
        // Our next edit goes on from our counter: it is the only operation in the next update.
        doc.splice(0, 0, "!").expect("edit");
        let next = doc.take_local_update().expect("export").expect("an update");
        let meta = LoroDoc::decode_import_blob_meta(&next, false).expect("meta");
        assert_eq!(meta.partial_start_vv.get(&7).copied(), Some(5));
    }

    /// An update that waits for a predecessor still waits after a snapshot merges, and applies
    /// when the predecessor arrives.
    #[test]
    fn an_update_waiting_for_a_predecessor_survives_a_snapshot_merge() {
        let mut writer = LoroDocument::new(2).expect("doc");
        writer.splice(0, 0, "first ").expect("edit");
        let first = writer.take_local_update().expect("export").expect("an update");
        writer.splice(6, 0, "second").expect("edit");
        let second = writer.take_local_update().expect("export").expect("an update");
        let mut other = LoroDocument::new(3).expect("doc");
        other.splice(0, 0, "other ").expect("edit");
        let snapshot = other.export_snapshot().expect("snapshot");

        let mut doc = LoroDocument::new(1).expect("doc");
        doc.splice(0, 0, "mine ").expect("edit");
        doc.merge(&second).expect("merge");
        assert!(doc.has_pending());
        doc.merge_snapshot(&snapshot).expect("merge");
        assert!(doc.has_pending());
        doc.merge(&first).expect("merge");
        assert!(!doc.has_pending());
        let text = doc.text();
        for part in ["mine ", "other ", "first second"] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    /// Updates that would reach Loro's panic are refused before Loro sees them: operations of
    /// several peers, and one peer's that overlap what the document holds (exported from the
    /// later snapshot, over the earlier one: both reach the panic without the check).
    #[test]
    fn updates_overlapping_the_document_are_refused_before_loro_sees_them() {
        let later = LoroDoc::new();
        later.import(LATER).expect("import");
        let peers: Vec<(u64, i32)> = later.oplog_vv().iter().map(|(peer, end)| (*peer, *end)).collect();
        let export = |spans: &[IdSpan]| later.export(ExportMode::updates_in_range(spans)).expect("export");

        let mut doc = LoroDocument::new(7).expect("doc");
        doc.merge_snapshot(EARLIER).expect("into an empty document");
        let held = doc.doc.oplog_vv();
        let several: Vec<IdSpan> = peers.iter().map(|(peer, end)| IdSpan::new(*peer, 0, *end)).collect();
        assert!(matches!(doc.merge(&export(&several)), Err(DocumentError::BadUpdate(_))));
        assert!(matches!(doc.merge(LATER), Err(DocumentError::BadUpdate(_))), "a snapshot is not an update");
        for (peer, end) in &peers {
            let overlapping = export(&[IdSpan::new(*peer, 0, *end)]);
            assert!(matches!(doc.merge(&overlapping), Err(DocumentError::BadUpdate(_))));
            let held_already = export(&[IdSpan::new(*peer, 0, held.get(peer).copied().unwrap_or(0))]);
            assert_eq!(doc.merge(&held_already), Ok(()), "a repeat is harmless");
        }
        for (peer, end) in &peers {
            doc.merge(&export(&[IdSpan::new(*peer, held.get(peer).copied().unwrap_or(0), *end)])).expect("what it lacks");
        }
        assert!(!doc.has_pending());
        let expected = LoroDocument::new(8).and_then(|mut other| {
            other.merge_snapshot(LATER)?;
            Ok(other.text())
        });
        assert_eq!(Ok(doc.text()), expected);
    }

    /// An update waiting for a predecessor may come again, but none may overlap it otherwise.
    #[test]
    fn an_update_overlapping_one_that_waits_is_refused() {
        let mut writer = LoroDocument::new(2).expect("doc");
        let mut updates = Vec::new();
        for word in ["one ", "two ", "three "] {
            writer.splice(0, 0, word).expect("edit");
            updates.push(writer.take_local_update().expect("export").expect("an update"));
        }
        let mut doc = LoroDocument::new(1).expect("doc");
        doc.merge(&updates[1]).expect("waits");
        assert!(doc.has_pending());
        assert_eq!(doc.merge(&updates[1]), Ok(()), "the same again");
        let spanning = writer.doc.export(ExportMode::updates_in_range(&[IdSpan::new(2, 4, 14)][..])).expect("export");
        assert!(matches!(doc.merge(&spanning), Err(DocumentError::BadUpdate(_))));
        doc.merge(&updates[2]).expect("waits");
        doc.merge(&updates[0]).expect("applies every one");
        assert!(!doc.has_pending());
        assert_eq!(doc.text(), writer.text());
    }

    /// An update large enough for several blocks, all of one replica, merges.
    #[test]
    fn a_large_update_of_one_replica_merges() {
        let mut writer = LoroDocument::new(1).expect("doc");
        for round in 0..2_000 {
            writer.splice(0, 0, &format!("edit {round} ")).expect("edit");
        }
        let update = writer.take_local_update().expect("export").expect("an update");
        let meta = LoroDoc::decode_import_blob_meta(&update, false).expect("meta");
        assert!(meta.change_num > 1, "one change: make the update larger");
        let mut reader = LoroDocument::new(2).expect("doc");
        reader.merge(&update).expect("merge");
        assert_eq!(reader.text(), writer.text());
    }
}
