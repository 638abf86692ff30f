//! Reads the durable state back: the whole [`Restored`] at start, and bounded [`LoadQuery`]s.

use std::collections::BTreeMap;

use plait_kernel::storage::{AcceptedValue, LoadQuery, LoadResult, Restored, RestoredGroup};
use plait_kernel::updates::{Cursor, StoredMessage, UpdateId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::codec::{Column, u64_to_column, verify_row};
use crate::error::StoreError;

/// The most chosen entries one [`LoadQuery::ChosenEntries`] returns, whatever `count` asks: a
/// load is a bounded read. The kernel asks again from the next slot when it needs more. The cap
/// is the kernel's, so the simulator's reference answer and this store agree.
pub const CHOSEN_ENTRIES_PER_LOAD_MAX: usize = plait_kernel::storage::LOAD_ROWS_MAX;

/// Reads every table into a [`Restored`]. Each table is one statement scanned in key order, and
/// every row is checked against its checksum.
pub(crate) async fn load(connection: &mut SqliteConnection) -> Result<Restored, StoreError> {
    let mut restored = Restored::empty();
    for row in fetch(connection, "SELECT group_id, genesis, checksum FROM groups").await? {
        let [group, genesis] = checked(&row, "groups")?;
        let group = Column("groups.group_id").group_id(group)?;
        let genesis = Column("groups.genesis").genesis(genesis)?;
        restored.groups.insert(group, RestoredGroup::new(genesis));
    }
    for row in fetch(connection, "SELECT group_id, incarnation, checksum FROM incarnations").await? {
        let [group, incarnation] = checked(&row, "incarnations")?;
        let incarnation = Column("incarnations.incarnation").incarnation(incarnation)?;
        group_of(&mut restored, "incarnations", group)?.incarnation = Some(incarnation);
    }
    for row in fetch(connection, "SELECT group_id, checksum FROM recovered").await? {
        let [group] = checked(&row, "recovered")?;
        group_of(&mut restored, "recovered", group)?.recovered = true;
    }
    for row in fetch(connection, "SELECT group_id, ballot, checksum FROM promised").await? {
        let [group, ballot] = checked(&row, "promised")?;
        group_of(&mut restored, "promised", group)?.promised = Column("promised.ballot").ballot(ballot)?;
    }
    let accepted = "SELECT group_id, slot, ballot, value_hash, entry, checksum FROM accepted";
    for row in fetch(connection, accepted).await? {
        let [group, slot, ballot, value_hash, entry] = checked(&row, "accepted")?;
        let slot = Column("accepted.slot").slot(slot)?;
        let value = AcceptedValue {
            ballot: Column("accepted.ballot").ballot(ballot)?,
            value_hash: Column("accepted.value_hash").value_hash(value_hash)?,
            entry: Column("accepted.entry").entry(entry)?,
            proof: Vec::new(),
        };
        group_of(&mut restored, "accepted", group)?.accepted.insert(slot, value);
    }
    for row in fetch(connection, "SELECT group_id, slot, proof, checksum FROM accept_proofs").await? {
        let [group, slot, proof] = checked(&row, "accept_proofs")?;
        let slot = Column("accept_proofs.slot").slot(slot)?;
        let value = group_of(&mut restored, "accept_proofs", group)?.accepted.get_mut(&slot).ok_or_else(|| {
            StoreError::Corrupt { detail: format!("accept_proofs has a row for slot {} that has no accepted value", slot.0) }
        })?;
        value.proof = proof.to_vec();
    }
    let peers = "SELECT group_id, acceptor, incarnation, checksum FROM peer_incarnations";
    for row in fetch(connection, peers).await? {
        let [group, acceptor, incarnation] = checked(&row, "peer_incarnations")?;
        let acceptor = Column("peer_incarnations.acceptor").node_id(acceptor)?;
        let incarnation = Column("peer_incarnations.incarnation").incarnation(incarnation)?;
        group_of(&mut restored, "peer_incarnations", group)?.peer_incarnations.insert(acceptor, incarnation);
    }
    for row in fetch(connection, "SELECT group_id, slot, entry, checksum FROM chosen").await? {
        let [group, slot, entry] = checked(&row, "chosen")?;
        let slot = Column("chosen.slot").slot(slot)?;
        let entry = Column("chosen.entry").entry(entry)?;
        group_of(&mut restored, "chosen", group)?.chosen.insert(slot, entry);
    }
    for row in fetch(connection, "SELECT group_id, round, checksum FROM round_floors").await? {
        let [group, round] = checked(&row, "round_floors")?;
        group_of(&mut restored, "round_floors", group)?.round_floor = Column("round_floors.round").u64(round)?;
    }
    for row in fetch(connection, "SELECT group_id, key, value, checksum FROM mls_state").await? {
        let [group, key, value] = checked(&row, "mls_state")?;
        group_of(&mut restored, "mls_state", group)?.mls.insert(key.to_vec(), value.to_vec());
    }
    load_documents(connection, &mut restored).await?;
    load_compaction(connection, &mut restored).await?;
    for row in fetch(connection, "SELECT mailbox, redeeming, checksum FROM redeeming").await? {
        let [mailbox, redeeming] = checked(&row, "redeeming")?;
        let mailbox = Column("redeeming.mailbox").mailbox(mailbox)?;
        restored.redeeming.insert(mailbox, Column("redeeming.redeeming").redeeming(redeeming)?);
    }
    Ok(restored)
}

/// Reads the document tables (schema version 4) into `restored`, whose groups are loaded.
async fn load_documents(connection: &mut SqliteConnection, restored: &mut Restored) -> Result<(), StoreError> {
    for row in fetch(connection, "SELECT group_id, position, sender, seq, ciphertext, checksum FROM stored").await? {
        let [group, position, sender, seq, ciphertext] = checked(&row, "stored")?;
        let position = Column("stored.position").u64(position)?;
        let id = UpdateId { sender: Column("stored.sender").node_id(sender)?, seq: Column("stored.seq").u64(seq)? };
        let message = StoredMessage { id, ciphertext: ciphertext.to_vec() };
        let state = group_of(restored, "stored", group)?;
        state.stored.insert(position, message);
        // Stored records do not write `unstored_below`: a stored row itself shows that its
        // position was given out.
        state.positions_below = state.positions_below.max(position + 1);
    }
    for row in fetch(connection, "SELECT group_id, sender, seq, body, checksum FROM updates").await? {
        let [group, sender, seq, body] = checked(&row, "updates")?;
        let id = UpdateId { sender: Column("updates.sender").node_id(sender)?, seq: Column("updates.seq").u64(seq)? };
        group_of(restored, "updates", group)?.updates.insert(id, body.to_vec());
    }
    for row in fetch(connection, "SELECT group_id, sender, seq, epoch, checksum FROM undecryptable").await? {
        let [group, sender, seq, epoch] = checked(&row, "undecryptable")?;
        let id = UpdateId { sender: Column("undecryptable.sender").node_id(sender)?, seq: Column("undecryptable.seq").u64(seq)? };
        group_of(restored, "undecryptable", group)?.undecryptable.insert(id, Column("undecryptable.epoch").u64(epoch)?);
    }
    for row in fetch(connection, "SELECT group_id, sender, seq, part, body, checksum FROM batch_parts").await? {
        let [group, sender, seq, part, body] = checked(&row, "batch_parts")?;
        let id = UpdateId { sender: Column("batch_parts.sender").node_id(sender)?, seq: Column("batch_parts.seq").u64(seq)? };
        let part = Column("batch_parts.part").u32(part)?;
        group_of(restored, "batch_parts", group)?.batch_parts.insert((id, part), body.to_vec());
    }
    for row in fetch(connection, "SELECT group_id, seq, checksum FROM safe_below").await? {
        let [group, seq] = checked(&row, "safe_below")?;
        group_of(restored, "safe_below", group)?.safe_below = Column("safe_below.seq").u64(seq)?;
    }
    let cursors = "SELECT group_id, acceptor, incarnation, position, checksum FROM read_cursors";
    for row in fetch(connection, cursors).await? {
        let [group, acceptor, incarnation, position] = checked(&row, "read_cursors")?;
        let acceptor = Column("read_cursors.acceptor").node_id(acceptor)?;
        let cursor = Cursor {
            incarnation: Column("read_cursors.incarnation").incarnation(incarnation)?,
            position: Column("read_cursors.position").u64(position)?,
        };
        group_of(restored, "read_cursors", group)?.cursors.insert(acceptor, cursor);
    }
    Ok(())
}

/// Reads the compaction tables (schema version 5) into `restored`, whose groups and stored
/// messages are loaded.
async fn load_compaction(connection: &mut SqliteConnection, restored: &mut Restored) -> Result<(), StoreError> {
    for row in fetch(connection, "SELECT group_id, position, checksum FROM unstored_below").await? {
        let [group, position] = checked(&row, "unstored_below")?;
        let position = Column("unstored_below.position").u64(position)?;
        let state = group_of(restored, "unstored_below", group)?;
        state.positions_below = state.positions_below.max(position);
    }
    for row in fetch(connection, "SELECT group_id, hash, chunk_count, checksum FROM snapshots").await? {
        let [group, hash, count] = checked(&row, "snapshots")?;
        let hash = Column("snapshots.hash").snapshot_hash(hash)?;
        let count = Column("snapshots.chunk_count").u32(count)?;
        group_of(restored, "snapshots", group)?.snapshots.insert(hash, (count, BTreeMap::new()));
    }
    let chunks = "SELECT group_id, hash, chunk_index, bytes, checksum FROM snapshot_chunks";
    for row in fetch(connection, chunks).await? {
        let [group, hash, index, bytes] = checked(&row, "snapshot_chunks")?;
        let hash = Column("snapshot_chunks.hash").snapshot_hash(hash)?;
        let index = Column("snapshot_chunks.chunk_index").u32(index)?;
        let (_, held) = group_of(restored, "snapshot_chunks", group)?.snapshots.get_mut(&hash).ok_or_else(|| {
            StoreError::Corrupt { detail: format!("snapshot_chunks has a chunk of {hash:?} that has no row in snapshots") }
        })?;
        held.insert(index, bytes.to_vec());
    }
    // Every `SnapshotChunk` writes a chunk with its count, so a count alone is damage.
    for state in restored.groups.values() {
        if let Some(hash) = state.snapshots.iter().find(|(_, (_, held))| held.is_empty()).map(|(hash, _)| hash) {
            return Err(StoreError::Corrupt { detail: format!("snapshots has a row for {hash:?} that has no chunks") });
        }
    }
    for row in fetch(connection, "SELECT group_id, compaction, content_key, checksum FROM compacted").await? {
        let [group, compaction, key] = checked(&row, "compacted")?;
        let compaction = Column("compacted.compaction").compaction(compaction)?;
        let key = Column("compacted.content_key").content_key(key)?;
        group_of(restored, "compacted", group)?.compacted = Some((compaction, key));
    }
    for row in fetch(connection, "SELECT group_id, covered, snapshot, checksum FROM imported_snapshots").await? {
        let [group, covered, snapshot] = checked(&row, "imported_snapshots")?;
        let covered = Column("imported_snapshots.covered").covered(covered)?;
        group_of(restored, "imported_snapshots", group)?.imported = Some((covered, snapshot.to_vec()));
    }
    Ok(())
}

/// Answers a bounded read with one range scan over the table's primary key.
pub(crate) async fn answer(connection: &mut SqliteConnection, query: &LoadQuery) -> Result<LoadResult, StoreError> {
    match query {
        LoadQuery::ChosenEntries { group, from, count } => {
            let limit = (*count).min(CHOSEN_ENTRIES_PER_LOAD_MAX);
            let rows = sqlx::query(
                "SELECT group_id, slot, entry, checksum FROM chosen \
                 WHERE group_id = ? AND slot >= ? ORDER BY group_id, slot LIMIT ?",
            )
            .bind(group.0.as_slice())
            .bind(u64_to_column(from.0).as_slice())
            .bind(i64::try_from(limit).expect("invariant: CHOSEN_ENTRIES_PER_LOAD_MAX fits in i64"))
            .fetch_all(&mut *connection)
            .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                let [_group, slot, entry] = checked(&row, "chosen")?;
                let slot = Column("chosen.slot").slot(slot)?;
                entries.push((slot, Column("chosen.entry").entry(entry)?));
            }
            Ok(LoadResult::ChosenEntries(entries))
        }
    }
}

async fn fetch(connection: &mut SqliteConnection, sql: &'static str) -> Result<Vec<SqliteRow>, StoreError> {
    Ok(sqlx::query(sql).fetch_all(&mut *connection).await?)
}

/// The first `N` columns of `row` as bytes, after checking them against the checksum that
/// follows them.
fn checked<'row, const N: usize>(row: &'row SqliteRow, table: &'static str) -> Result<[&'row [u8]; N], StoreError> {
    let mut columns: [&[u8]; N] = [&[]; N];
    for (index, column) in columns.iter_mut().enumerate() {
        *column = row.try_get(index)?;
    }
    let checksum: &[u8] = row.try_get(N)?;
    verify_row(table, &columns, checksum)?;
    Ok(columns)
}

/// The group a row belongs to. Foreign keys make a row without its group impossible, so one is
/// reported as corruption rather than ignored.
fn group_of<'a>(restored: &'a mut Restored, table: &'static str, group: &[u8]) -> Result<&'a mut RestoredGroup, StoreError> {
    let group = Column(table).group_id(group)?;
    restored
        .groups
        .get_mut(&group)
        .ok_or_else(|| StoreError::Corrupt { detail: format!("{table} has a row for group {group} that has no row in groups") })
}
