//! What Plait reads of a Loro update before Loro does: whose operations it holds, and which.
//!
//! Why: Loro 1.17.1 panics ("counter should be continuous", in its change store) importing
//! operations that overlap ones the document holds when a change waits for a predecessor or
//! comes beside another peer's (the snapshots in `document.rs`'s tests do both), and the panic
//! poisons the document for good. An update is a member's message: one crafted to overlap
//! would have crashed every other device, again at each restart. So `LoroDocument::merge`
//! takes only one replica's operations, and never some it holds or waits on already.
//!
//! The layout read here is Loro's stable binary encoding (1.x): a header of magic (4 bytes),
//! checksum (16) and mode (2, big-endian); for updates, a body of blocks, each with its LEB128
//! length; a block is one peer's consecutive changes, encoded by postcard as `counter_start`,
//! `counter_len`, `lamport_start`, `lamport_len`, `n_changes` (varints), then its header
//! bytes (a varint length), which start with the number of peers (LEB128) and the peers (8
//! bytes each, little-endian), the block's own first. A property test checks every field read
//! here against `LoroDoc::decode_import_blob_meta`.

/// Where a blob's body starts.
const HEADER_BYTES: usize = 22;
/// The encoding mode of an update blob (`EncodeMode::FastUpdates`), which Loro's own exports of
/// updates use.
const UPDATES_MODE: [u8; 2] = [0, 4];

/// One peer's operations `start..end` (Loro's counters), all an update holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operations {
    pub peer: u64,
    pub start: i32,
    pub end: i32,
}

/// Why an update was refused before Loro saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("not a Loro encoding")]
    NotLoro,
    /// A snapshot, or Loro's outdated encoding of updates.
    #[error("not Loro's encoding of updates")]
    NotUpdates,
    #[error("a malformed Loro block")]
    Malformed,
    /// Not one peer's consecutive operations.
    #[error("not one replica's consecutive operations")]
    SeveralReplicas,
}

/// The operations `update` holds (`None`: an update with no block).
pub(crate) fn operations(update: &[u8]) -> Result<Option<Operations>, Unreadable> {
    if update.len() < HEADER_BYTES || &update[..4] != b"loro" {
        return Err(Unreadable::NotLoro);
    }
    if update[20..HEADER_BYTES] != UPDATES_MODE {
        return Err(Unreadable::NotUpdates);
    }
    let mut body = &update[HEADER_BYTES..];
    let mut all: Option<Operations> = None;
    while !body.is_empty() {
        let (length, rest) = leb128(body).ok_or(Unreadable::Malformed)?;
        let block = rest.get(..length).ok_or(Unreadable::Malformed)?;
        body = &rest[length..];
        let next = block_operations(block).ok_or(Unreadable::Malformed)?;
        all = Some(match all {
            None => next,
            Some(so_far) if so_far.peer == next.peer && so_far.end == next.start => Operations { end: next.end, ..so_far },
            Some(_) => return Err(Unreadable::SeveralReplicas),
        });
    }
    Ok(all)
}

/// The peer and counters of one block.
fn block_operations(block: &[u8]) -> Option<Operations> {
    let (counter_start, rest) = leb128(block)?;
    let (counter_len, mut rest) = leb128(rest)?;
    for _lamport_start_lamport_len_changes in 0..3 {
        rest = leb128(rest)?.1;
    }
    let (header_len, rest) = leb128(rest)?;
    let header = rest.get(..header_len)?;
    let (peers, rest) = leb128(header)?;
    let peer = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let start = i32::try_from(counter_start).ok()?;
    let end = start.checked_add(i32::try_from(counter_len).ok()?)?;
    (peers > 0 && counter_len > 0).then_some(Operations { peer, start, end })
}

/// An unsigned LEB128 number at the start of `bytes` (at most 10 bytes), and what follows it.
fn leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f).checked_shl(7 * index as u32)?;
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, &bytes[index + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use loro::{ExportMode, LoroDoc, VersionVector};
    use proptest::prelude::*;

    proptest! {
        /// Whatever a replica's edits, the operations read from each of its updates are those
        /// Loro's own decoder finds.
        #[test]
        fn reads_what_loro_decodes(edits in proptest::collection::vec((0usize..100, 0usize..4, "[a-z ]{0,300}"), 1..40), every in 1usize..8) {
            let doc = LoroDoc::new();
            doc.set_peer_id(0xfeed_beef_0123).expect("peer");
            let text = doc.get_text("text");
            let mut since = VersionVector::new();
            for (index, (position, delete, insert)) in edits.iter().enumerate() {
                let len = text.len_unicode();
                let position = position % (len + 1);
                let delete = (*delete).min(len - position);
                text.splice(position, delete, insert).expect("edit");
                doc.commit();
                if index % every != 0 {
                    continue;
                }
                let update = doc.export(ExportMode::updates(&since)).expect("export");
                let meta = LoroDoc::decode_import_blob_meta(&update, false).expect("meta");
                let read = operations(&update).expect("readable");
                let expected = meta.partial_end_vv.iter().next().map(|(peer, end)| Operations {
                    peer: *peer,
                    start: meta.partial_start_vv.get(peer).copied().unwrap_or(0),
                    end: *end,
                });
                prop_assert_eq!(read, expected);
                since = doc.oplog_vv();
            }
        }

        /// No input makes the reader panic.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut blob = b"loro".to_vec();
            blob.extend([0; 16]);
            blob.extend(UPDATES_MODE);
            blob.extend(&bytes);
            let _ = operations(&blob);
            let _ = operations(&bytes);
        }
    }

    #[test]
    fn a_snapshot_and_an_update_of_two_peers_are_refused() {
        let doc = LoroDoc::new();
        doc.set_peer_id(1).expect("peer");
        doc.get_text("text").insert(0, "one").expect("edit");
        doc.commit();
        doc.set_peer_id(2).expect("peer");
        doc.get_text("text").insert(0, "two").expect("edit");
        doc.commit();
        let both = doc.export(ExportMode::all_updates()).expect("export");
        assert_eq!(operations(&both), Err(Unreadable::SeveralReplicas));
        let snapshot = doc.export(ExportMode::Snapshot).expect("export");
        assert_eq!(operations(&snapshot), Err(Unreadable::NotUpdates));
        assert_eq!(operations(b"not loro at all, but long enough"), Err(Unreadable::NotLoro));
    }
}
