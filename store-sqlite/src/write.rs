//! Writes a [`Changes`] inside the caller's transaction: a few multi-row statements per table.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::changes::Changes;
use crate::codec::{ballot_to_column, row_checksum, to_postcard, u32_to_column, u64_to_column};
use crate::error::StoreError;

/// Rows per statement. Each statement is one round trip to sqlx's worker thread, so fewer is
/// faster; the bound keeps bind parameters (at most 6 per row) far below SQLite's limit of
/// 32,766 and a statement's text small.
const ROWS_PER_STATEMENT_MAX: usize = 500;

/// One statement shape: `head VALUES (..), (..) tail`. An upsert's `head` names the columns in
/// the order the row's bytes come, followed by `checksum`, which [`write_rows`] appends.
struct Statement {
    table: &'static str,
    head: &'static str,
    tail: &'static str,
}

/// A row as the bytes of its columns, in the statement's column order.
type Columns = Vec<Vec<u8>>;

/// Writes every table's changes. Groups go first: the other tables refer to them.
pub(crate) async fn write_changes(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let statement =
        Statement { table: "groups", head: "INSERT INTO groups (group_id, genesis, checksum) ", tail: " ON CONFLICT DO NOTHING" };
    let rows = changes.groups.iter().map(|(group, genesis)| vec![group.0.to_vec(), to_postcard(genesis)]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "incarnations",
        head: "INSERT INTO incarnations (group_id, incarnation, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET incarnation = excluded.incarnation, checksum = excluded.checksum",
    };
    let rows =
        changes.incarnations.iter().map(|(group, incarnation)| vec![group.0.to_vec(), u64_to_column(incarnation.0).to_vec()]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement =
        Statement { table: "recovered", head: "INSERT INTO recovered (group_id, checksum) ", tail: " ON CONFLICT DO NOTHING" };
    let rows = changes.recovered.iter().map(|group| vec![group.0.to_vec()]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "promised",
        head: "INSERT INTO promised (group_id, ballot, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET ballot = excluded.ballot, checksum = excluded.checksum \
               WHERE excluded.ballot > promised.ballot",
    };
    let rows = changes.promised.iter().map(|(group, ballot)| vec![group.0.to_vec(), ballot_to_column(*ballot).to_vec()]);
    upsert(connection, &statement, rows.collect()).await?;

    write_accepted(connection, changes).await?;
    write_mls_state(connection, changes).await?;
    write_documents(connection, changes).await?;
    write_snapshots(connection, changes).await?;
    write_compaction(connection, changes).await?;

    let statement = Statement {
        table: "peer_incarnations",
        head: "INSERT INTO peer_incarnations (group_id, acceptor, incarnation, checksum) ",
        tail: " ON CONFLICT (group_id, acceptor) DO UPDATE \
               SET incarnation = excluded.incarnation, checksum = excluded.checksum",
    };
    let rows = changes.peer_incarnations.iter().map(|((group, acceptor), incarnation)| {
        vec![group.0.to_vec(), acceptor.0.to_vec(), u64_to_column(incarnation.0).to_vec()]
    });
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "chosen",
        head: "INSERT INTO chosen (group_id, slot, entry, checksum) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET entry = excluded.entry, checksum = excluded.checksum",
    };
    let rows = changes
        .chosen
        .iter()
        .map(|((group, slot), entry)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec(), to_postcard(entry)]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "round_floors",
        head: "INSERT INTO round_floors (group_id, round, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET round = excluded.round, checksum = excluded.checksum \
               WHERE excluded.round > round_floors.round",
    };
    let rows = changes.round_floors.iter().map(|(group, round)| vec![group.0.to_vec(), u64_to_column(*round).to_vec()]);
    upsert(connection, &statement, rows.collect()).await
}

/// Accepted values: upserts for slots last accepted, deletes for slots last chosen.
async fn write_accepted(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let statement = Statement {
        table: "accepted",
        head: "INSERT INTO accepted (group_id, slot, ballot, value_hash, entry, checksum) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET ballot = excluded.ballot, \
               value_hash = excluded.value_hash, entry = excluded.entry, checksum = excluded.checksum",
    };
    let rows = changes.accepted.iter().filter_map(|((group, slot), value)| {
        let value = value.as_ref()?;
        Some(vec![
            group.0.to_vec(),
            u64_to_column(slot.0).to_vec(),
            ballot_to_column(value.ballot).to_vec(),
            value.value_hash.0.to_vec(),
            to_postcard(&value.entry),
        ])
    });
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "accept_proofs",
        head: "INSERT INTO accept_proofs (group_id, slot, proof, checksum) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET proof = excluded.proof, checksum = excluded.checksum",
    };
    let proofs = changes.accepted.iter().filter_map(|((group, slot), value)| {
        let value = value.as_ref().filter(|value| !value.proof.is_empty())?;
        Some(vec![group.0.to_vec(), u64_to_column(slot.0).to_vec(), value.proof.clone()])
    });
    upsert(connection, &statement, proofs.collect()).await?;

    // A slot chosen, or accepted again without a proof, loses its old proof.
    let stale: Vec<Columns> = changes
        .accepted
        .iter()
        .filter(|(_, value)| value.as_ref().is_none_or(|value| value.proof.is_empty()))
        .map(|((group, slot), _)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec()])
        .collect();
    delete(connection, "DELETE FROM accept_proofs WHERE (group_id, slot) IN (", stale).await?;

    let keys: Vec<Columns> = changes
        .accepted
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|((group, slot), _)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec()])
        .collect();
    delete(connection, "DELETE FROM accepted WHERE (group_id, slot) IN (", keys).await
}

/// MLS state: upserts for keys last written, deletes for keys last deleted.
async fn write_mls_state(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let statement = Statement {
        table: "mls_state",
        head: "INSERT INTO mls_state (group_id, key, value, checksum) ",
        tail: " ON CONFLICT (group_id, key) DO UPDATE SET value = excluded.value, checksum = excluded.checksum",
    };
    let rows =
        changes.mls_state.iter().filter_map(|((group, key), value)| Some(vec![group.0.to_vec(), key.clone(), value.clone()?]));
    upsert(connection, &statement, rows.collect()).await?;
    let keys: Vec<Columns> = changes
        .mls_state
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|((group, key), _)| vec![group.0.to_vec(), key.clone()])
        .collect();
    delete(connection, "DELETE FROM mls_state WHERE (group_id, key) IN (", keys).await
}

/// Document messages: stored messages (upserted or deleted), updates, `SafeBelow` (highest wins)
/// and read cursors.
async fn write_documents(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let statement = Statement {
        table: "stored",
        head: "INSERT INTO stored (group_id, position, sender, seq, ciphertext, checksum) ",
        tail: " ON CONFLICT (group_id, position) DO UPDATE SET sender = excluded.sender, seq = excluded.seq, \
               ciphertext = excluded.ciphertext, checksum = excluded.checksum",
    };
    let rows = changes.stored.iter().filter_map(|((group, position), message)| {
        let message = message.as_ref()?;
        Some(vec![
            group.0.to_vec(),
            u64_to_column(*position).to_vec(),
            message.id.sender.0.to_vec(),
            u64_to_column(message.id.seq).to_vec(),
            message.ciphertext.clone(),
        ])
    });
    upsert(connection, &statement, rows.collect()).await?;
    let keys: Vec<Columns> = changes
        .stored
        .iter()
        .filter(|(_, message)| message.is_none())
        .map(|((group, position), _)| vec![group.0.to_vec(), u64_to_column(*position).to_vec()])
        .collect();
    delete(connection, "DELETE FROM stored WHERE (group_id, position) IN (", keys).await?;

    let statement = Statement {
        table: "updates",
        head: "INSERT INTO updates (group_id, sender, seq, body, checksum) ",
        tail: " ON CONFLICT (group_id, sender, seq) DO UPDATE SET body = excluded.body, checksum = excluded.checksum",
    };
    let rows = changes.updates.iter().map(|((group, id), update)| {
        vec![group.0.to_vec(), id.sender.0.to_vec(), u64_to_column(id.seq).to_vec(), update.clone()]
    });
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "safe_below",
        head: "INSERT INTO safe_below (group_id, seq, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET seq = excluded.seq, checksum = excluded.checksum \
               WHERE excluded.seq > safe_below.seq",
    };
    let rows = changes.safe_below.iter().map(|(group, seq)| vec![group.0.to_vec(), u64_to_column(*seq).to_vec()]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "read_cursors",
        head: "INSERT INTO read_cursors (group_id, acceptor, incarnation, position, checksum) ",
        tail: " ON CONFLICT (group_id, acceptor) DO UPDATE SET incarnation = excluded.incarnation, \
               position = excluded.position, checksum = excluded.checksum",
    };
    let rows = changes.read_cursors.iter().map(|((group, acceptor), cursor)| {
        vec![
            group.0.to_vec(),
            acceptor.0.to_vec(),
            u64_to_column(cursor.incarnation.0).to_vec(),
            u64_to_column(cursor.position).to_vec(),
        ]
    });
    upsert(connection, &statement, rows.collect()).await
}

/// Snapshot chunks: a dropped snapshot loses its count and every chunk first, then the chunks
/// (and count) written since are upserted.
async fn write_snapshots(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let dropped: Vec<Columns> = changes
        .snapshots
        .iter()
        .filter(|(_, change)| change.is_dropped)
        .map(|((group, hash), _)| vec![group.0.to_vec(), hash.0.to_vec()])
        .collect();
    delete(connection, "DELETE FROM snapshot_chunks WHERE (group_id, hash) IN (", dropped.clone()).await?;
    delete(connection, "DELETE FROM snapshots WHERE (group_id, hash) IN (", dropped).await?;

    let statement = Statement {
        table: "snapshots",
        head: "INSERT INTO snapshots (group_id, hash, chunk_count, checksum) ",
        tail: " ON CONFLICT (group_id, hash) DO UPDATE SET chunk_count = excluded.chunk_count, checksum = excluded.checksum",
    };
    let rows = changes.snapshots.iter().filter_map(|((group, hash), change)| {
        Some(vec![group.0.to_vec(), hash.0.to_vec(), u32_to_column(change.count?).to_vec()])
    });
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "snapshot_chunks",
        head: "INSERT INTO snapshot_chunks (group_id, hash, chunk_index, bytes, checksum) ",
        tail: " ON CONFLICT (group_id, hash, chunk_index) DO UPDATE SET bytes = excluded.bytes, checksum = excluded.checksum",
    };
    let rows = changes.snapshots.iter().flat_map(|((group, hash), change)| {
        change
            .chunks
            .iter()
            .map(|(index, bytes)| vec![group.0.to_vec(), hash.0.to_vec(), u32_to_column(*index).to_vec(), bytes.clone()])
    });
    upsert(connection, &statement, rows.collect()).await
}

/// Compaction: deleted positions (highest wins), the latest compaction and the latest imported
/// snapshot (last wins).
async fn write_compaction(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let statement = Statement {
        table: "unstored_below",
        head: "INSERT INTO unstored_below (group_id, position, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET position = excluded.position, checksum = excluded.checksum \
               WHERE excluded.position > unstored_below.position",
    };
    let rows = changes.unstored_below.iter().map(|(group, position)| vec![group.0.to_vec(), u64_to_column(*position).to_vec()]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "compacted",
        head: "INSERT INTO compacted (group_id, compaction, content_key, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET compaction = excluded.compaction, \
               content_key = excluded.content_key, checksum = excluded.checksum",
    };
    let rows = changes
        .compacted
        .iter()
        .map(|(group, (compaction, key))| vec![group.0.to_vec(), to_postcard(compaction), to_postcard(key)]);
    upsert(connection, &statement, rows.collect()).await?;

    let statement = Statement {
        table: "imported_snapshots",
        head: "INSERT INTO imported_snapshots (group_id, covered, snapshot, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET covered = excluded.covered, snapshot = excluded.snapshot, \
               checksum = excluded.checksum",
    };
    let rows = changes
        .imported
        .iter()
        .map(|(group, (covered, snapshot))| vec![group.0.to_vec(), to_postcard(covered), snapshot.clone()]);
    upsert(connection, &statement, rows.collect()).await
}

/// Deletes the rows whose key columns are `keys`, [`ROWS_PER_STATEMENT_MAX`] at a time; `head`
/// is the statement up to its `IN (`.
async fn delete(connection: &mut SqliteConnection, head: &str, keys: Vec<Columns>) -> Result<(), StoreError> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut builder = QueryBuilder::<Sqlite>::new(head);
        builder.push_values(chunk, |mut row, columns| {
            for column in columns {
                row.push_bind(column.as_slice());
            }
        });
        builder.push(")");
        builder.build().execute(&mut *connection).await?;
    }
    Ok(())
}

/// Runs `statement` over `rows`, [`ROWS_PER_STATEMENT_MAX`] rows at a time, appending each
/// row's checksum as its last column.
async fn upsert(connection: &mut SqliteConnection, statement: &Statement, rows: Vec<Columns>) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut builder = QueryBuilder::<Sqlite>::new(statement.head);
        builder.push_values(chunk, |mut row, columns| {
            let parts: Vec<&[u8]> = columns.iter().map(Vec::as_slice).collect();
            for column in &parts {
                row.push_bind(*column);
            }
            row.push_bind(row_checksum(statement.table, &parts).as_slice());
        });
        builder.push(statement.tail);
        builder.build().execute(&mut *connection).await?;
    }
    Ok(())
}
