//! Writes a [`Changes`] as one transaction: a few multi-row statements per table, sent to
//! SQLite as one multi-statement query between `BEGIN` and `COMMIT`.
//!
//! sqlx runs SQLite on a worker thread and every query is a round trip to it: two thread
//! handoffs, which cost more than the statement itself on a loaded machine. A commit as one
//! query makes it one round trip, however many tables it touches.
//!
//! A script's text depends only on its shape (which tables, how many rows each; values are bound
//! parameters), and a node in a steady state commits the same few shapes again and again: an
//! acceptor one stored message, a reader one update and one cursor. So small scripts stay
//! prepared in the connection's statement cache ([`crate::store::STATEMENT_CACHE_MAX`] scripts,
//! least recently used evicted), and SQLite parses a shape once instead of at every commit. In
//! the real benchmark that took ~130 µs off the median edit-to-visible latency (three commits in
//! a row). Large scripts are parsed afresh: they are rare, and each would hold a prepared
//! statement of hundreds of rows in the cache.

use plait_kernel::ids::{GroupId, NodeId};
use plait_kernel::snapshot::Covered;
use sqlx::{Executor, QueryBuilder, Sqlite, SqliteConnection};

use crate::changes::Changes;
use crate::codec::{ballot_to_column, row_checksum, to_postcard, u32_to_column, u64_to_column};
use crate::error::StoreError;

/// Rows per statement. The bound keeps a statement's bind parameters (at most 6 per row) far
/// below SQLite's limit of 32,766 and its text small.
const ROWS_PER_STATEMENT_MAX: usize = 500;

/// Rows a script may hold and still be kept prepared. A script of at most this many rows is a
/// few kilobytes of prepared statement, so the cache stays small whatever shapes it holds.
const CACHED_SCRIPT_ROWS_MAX: usize = 64;

/// One statement shape: `head VALUES (..), (..) tail`. An upsert's `head` names the columns in
/// the order the row's bytes come, followed by `checksum`, which [`write_rows`] appends.
struct Statement {
    table: &'static str,
    head: &'static str,
    tail: &'static str,
}

/// A row as the bytes of its columns, in the statement's column order.
type Columns = Vec<Vec<u8>>;

/// Writes every table's changes in one transaction. On failure the transaction is rolled back.
pub(crate) async fn write_changes(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let mut script = Script::new();
    add_changes(&mut script, changes);
    script.run(connection).await
}

/// Tables that hold a group's rows, each keyed by `group_id`; those that refer to another
/// come before it, and `groups` (which every other refers to) last.
const GROUP_TABLES: [&str; 21] = [
    "incarnations",
    "recovered",
    "promised",
    "accept_proofs",
    "accepted",
    "peer_incarnations",
    "chosen",
    "round_floors",
    "mls_state",
    "stored",
    "unstored_below",
    "snapshot_chunks",
    "snapshots",
    "compacted",
    "imported_snapshots",
    "updates",
    "undecryptable",
    "batch_parts",
    "safe_below",
    "read_cursors",
    "groups",
];

/// Every table's changes. Forgotten groups' rows go first, then groups: the other tables refer
/// to them.
fn add_changes(script: &mut Script, changes: &Changes) {
    let forgotten: Vec<Columns> = changes.forgotten.iter().map(|group| vec![group.0.to_vec()]).collect();
    if !forgotten.is_empty() {
        for table in GROUP_TABLES {
            script.delete(&format!("DELETE FROM {table} WHERE group_id IN ("), forgotten.clone());
        }
    }
    let statement =
        Statement { table: "groups", head: "INSERT INTO groups (group_id, genesis, checksum) ", tail: " ON CONFLICT DO NOTHING" };
    let rows = changes.groups.iter().map(|(group, genesis)| vec![group.0.to_vec(), to_postcard(genesis)]);
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "incarnations",
        head: "INSERT INTO incarnations (group_id, incarnation, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET incarnation = excluded.incarnation, checksum = excluded.checksum",
    };
    let rows =
        changes.incarnations.iter().map(|(group, incarnation)| vec![group.0.to_vec(), u64_to_column(incarnation.0).to_vec()]);
    script.upsert(&statement, rows.collect());

    let statement =
        Statement { table: "recovered", head: "INSERT INTO recovered (group_id, checksum) ", tail: " ON CONFLICT DO NOTHING" };
    let rows = changes.recovered.iter().map(|group| vec![group.0.to_vec()]);
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "promised",
        head: "INSERT INTO promised (group_id, ballot, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET ballot = excluded.ballot, checksum = excluded.checksum \
               WHERE excluded.ballot > promised.ballot",
    };
    let rows = changes.promised.iter().map(|(group, ballot)| vec![group.0.to_vec(), ballot_to_column(*ballot).to_vec()]);
    script.upsert(&statement, rows.collect());

    write_accepted(script, changes);
    write_mls_state(script, changes);
    write_documents(script, changes);
    write_snapshots(script, changes);
    write_compaction(script, changes);

    let statement = Statement {
        table: "peer_incarnations",
        head: "INSERT INTO peer_incarnations (group_id, acceptor, incarnation, checksum) ",
        tail: " ON CONFLICT (group_id, acceptor) DO UPDATE \
               SET incarnation = excluded.incarnation, checksum = excluded.checksum",
    };
    let rows = changes.peer_incarnations.iter().map(|((group, acceptor), incarnation)| {
        vec![group.0.to_vec(), acceptor.0.to_vec(), u64_to_column(incarnation.0).to_vec()]
    });
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "chosen",
        head: "INSERT INTO chosen (group_id, slot, entry, checksum) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET entry = excluded.entry, checksum = excluded.checksum",
    };
    let rows = changes
        .chosen
        .iter()
        .map(|((group, slot), entry)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec(), to_postcard(entry)]);
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "round_floors",
        head: "INSERT INTO round_floors (group_id, round, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET round = excluded.round, checksum = excluded.checksum \
               WHERE excluded.round > round_floors.round",
    };
    let rows = changes.round_floors.iter().map(|(group, round)| vec![group.0.to_vec(), u64_to_column(*round).to_vec()]);
    script.upsert(&statement, rows.collect());

    write_redeeming(script, changes);
}

/// Invite codes a device redeems: upserted, or deleted once it got in or gave up.
fn write_redeeming(script: &mut Script, changes: &Changes) {
    let statement = Statement {
        table: "redeeming",
        head: "INSERT INTO redeeming (mailbox, redeeming, checksum) ",
        tail: " ON CONFLICT (mailbox) DO UPDATE SET redeeming = excluded.redeeming, checksum = excluded.checksum",
    };
    let rows = changes
        .redeeming
        .iter()
        .filter_map(|(mailbox, redeeming)| Some(vec![mailbox.0.to_vec(), to_postcard(redeeming.as_ref()?)]));
    script.upsert(&statement, rows.collect());
    let keys: Vec<Columns> = changes
        .redeeming
        .iter()
        .filter(|(_, redeeming)| redeeming.is_none())
        .map(|(mailbox, _)| vec![mailbox.0.to_vec()])
        .collect();
    script.delete("DELETE FROM redeeming WHERE mailbox IN (", keys);
}

/// Accepted values: upserts for slots last accepted, deletes for slots last chosen.
fn write_accepted(script: &mut Script, changes: &Changes) {
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
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "accept_proofs",
        head: "INSERT INTO accept_proofs (group_id, slot, proof, checksum) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET proof = excluded.proof, checksum = excluded.checksum",
    };
    let proofs = changes.accepted.iter().filter_map(|((group, slot), value)| {
        let value = value.as_ref().filter(|value| !value.proof.is_empty())?;
        Some(vec![group.0.to_vec(), u64_to_column(slot.0).to_vec(), value.proof.clone()])
    });
    script.upsert(&statement, proofs.collect());

    // A slot chosen, or accepted again without a proof, loses its old proof.
    let stale: Vec<Columns> = changes
        .accepted
        .iter()
        .filter(|(_, value)| value.as_ref().is_none_or(|value| value.proof.is_empty()))
        .map(|((group, slot), _)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec()])
        .collect();
    script.delete("DELETE FROM accept_proofs WHERE (group_id, slot) IN (", stale);

    let keys: Vec<Columns> = changes
        .accepted
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|((group, slot), _)| vec![group.0.to_vec(), u64_to_column(slot.0).to_vec()])
        .collect();
    script.delete("DELETE FROM accepted WHERE (group_id, slot) IN (", keys);
}

/// MLS state: upserts for keys last written, deletes for keys last deleted.
fn write_mls_state(script: &mut Script, changes: &Changes) {
    let statement = Statement {
        table: "mls_state",
        head: "INSERT INTO mls_state (group_id, key, value, checksum) ",
        tail: " ON CONFLICT (group_id, key) DO UPDATE SET value = excluded.value, checksum = excluded.checksum",
    };
    let rows =
        changes.mls_state.iter().filter_map(|((group, key), value)| Some(vec![group.0.to_vec(), key.clone(), value.clone()?]));
    script.upsert(&statement, rows.collect());
    let keys: Vec<Columns> = changes
        .mls_state
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|((group, key), _)| vec![group.0.to_vec(), key.clone()])
        .collect();
    script.delete("DELETE FROM mls_state WHERE (group_id, key) IN (", keys);
}

/// Document messages: stored messages (upserted or deleted), updates, `SafeBelow` (highest wins)
/// and read cursors.
fn write_documents(script: &mut Script, changes: &Changes) {
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
    script.upsert(&statement, rows.collect());
    let keys: Vec<Columns> = changes
        .stored
        .iter()
        .filter(|(_, message)| message.is_none())
        .map(|((group, position), _)| vec![group.0.to_vec(), u64_to_column(*position).to_vec()])
        .collect();
    script.delete("DELETE FROM stored WHERE (group_id, position) IN (", keys);

    for (group, drops) in &changes.updates_dropped {
        for covered in drops {
            drop_updates(script, *group, covered);
        }
    }
    let statement = Statement {
        table: "updates",
        head: "INSERT INTO updates (group_id, sender, seq, body, checksum) ",
        tail: " ON CONFLICT (group_id, sender, seq) DO UPDATE SET body = excluded.body, checksum = excluded.checksum",
    };
    let rows = changes.updates.iter().map(|((group, id), update)| {
        vec![group.0.to_vec(), id.sender.0.to_vec(), u64_to_column(id.seq).to_vec(), update.clone()]
    });
    script.upsert(&statement, rows.collect());

    let closed: Vec<Columns> = changes
        .batches_closed
        .iter()
        .map(|(group, id)| vec![group.0.to_vec(), id.sender.0.to_vec(), u64_to_column(id.seq).to_vec()])
        .collect();
    script.delete("DELETE FROM batch_parts WHERE (group_id, sender, seq) IN (", closed);
    let statement = Statement {
        table: "batch_parts",
        head: "INSERT INTO batch_parts (group_id, sender, seq, part, body, checksum) ",
        tail: " ON CONFLICT (group_id, sender, seq, part) DO UPDATE SET body = excluded.body, checksum = excluded.checksum",
    };
    let rows = changes.batch_parts.iter().map(|((group, id, part), update)| {
        vec![
            group.0.to_vec(),
            id.sender.0.to_vec(),
            u64_to_column(id.seq).to_vec(),
            u32_to_column(*part).to_vec(),
            update.clone(),
        ]
    });
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "undecryptable",
        head: "INSERT INTO undecryptable (group_id, sender, seq, epoch, checksum) ",
        tail: " ON CONFLICT (group_id, sender, seq) DO UPDATE SET epoch = excluded.epoch, checksum = excluded.checksum",
    };
    let rows = changes.undecryptable.iter().map(|((group, id), epoch)| {
        vec![group.0.to_vec(), id.sender.0.to_vec(), u64_to_column(id.seq).to_vec(), u64_to_column(*epoch).to_vec()]
    });
    script.upsert(&statement, rows.collect());

    let statement = Statement {
        table: "safe_below",
        head: "INSERT INTO safe_below (group_id, seq, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET seq = excluded.seq, checksum = excluded.checksum \
               WHERE excluded.seq > safe_below.seq",
    };
    let rows = changes.safe_below.iter().map(|(group, seq)| vec![group.0.to_vec(), u64_to_column(*seq).to_vec()]);
    script.upsert(&statement, rows.collect());

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
    script.upsert(&statement, rows.collect());
}

/// Deletes the updates of `group` that `covered` names (see `Record::UpdatesDropped`), and the
/// records of undecryptable messages and batch parts it names: each sender's run below its
/// `below`, then its listed seqs.
fn drop_updates(script: &mut Script, group: GroupId, covered: &Covered) {
    for table in ["updates", "undecryptable", "batch_parts"] {
        for sender in &covered.senders {
            script.delete_below(table, group, sender.sender, sender.below);
            let keys =
                sender.beyond.iter().map(|seq| vec![group.0.to_vec(), sender.sender.0.to_vec(), u64_to_column(*seq).to_vec()]);
            script.delete(&format!("DELETE FROM {table} WHERE (group_id, sender, seq) IN ("), keys.collect());
        }
    }
}

/// Snapshot chunks: a dropped snapshot loses its count and every chunk first, then the chunks
/// (and count) written since are upserted.
fn write_snapshots(script: &mut Script, changes: &Changes) {
    let dropped: Vec<Columns> = changes
        .snapshots
        .iter()
        .filter(|(_, change)| change.is_dropped)
        .map(|((group, hash), _)| vec![group.0.to_vec(), hash.0.to_vec()])
        .collect();
    script.delete("DELETE FROM snapshot_chunks WHERE (group_id, hash) IN (", dropped.clone());
    script.delete("DELETE FROM snapshots WHERE (group_id, hash) IN (", dropped);

    let statement = Statement {
        table: "snapshots",
        head: "INSERT INTO snapshots (group_id, hash, chunk_count, checksum) ",
        tail: " ON CONFLICT (group_id, hash) DO UPDATE SET chunk_count = excluded.chunk_count, checksum = excluded.checksum",
    };
    let rows = changes.snapshots.iter().filter_map(|((group, hash), change)| {
        Some(vec![group.0.to_vec(), hash.0.to_vec(), u32_to_column(change.count?).to_vec()])
    });
    script.upsert(&statement, rows.collect());

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
    script.upsert(&statement, rows.collect());
}

/// Compaction: deleted positions (highest wins), the latest compaction and the latest imported
/// snapshot (last wins).
fn write_compaction(script: &mut Script, changes: &Changes) {
    let statement = Statement {
        table: "unstored_below",
        head: "INSERT INTO unstored_below (group_id, position, checksum) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET position = excluded.position, checksum = excluded.checksum \
               WHERE excluded.position > unstored_below.position",
    };
    let rows = changes.unstored_below.iter().map(|(group, position)| vec![group.0.to_vec(), u64_to_column(*position).to_vec()]);
    script.upsert(&statement, rows.collect());

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
    script.upsert(&statement, rows.collect());

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
    script.upsert(&statement, rows.collect());
}

/// The statements of one transaction, as one query.
struct Script {
    builder: QueryBuilder<Sqlite>,
    /// Rows (upserted or deleted) in the script so far.
    rows: usize,
}

impl Script {
    fn new() -> Script {
        Script { builder: QueryBuilder::new("BEGIN;"), rows: 0 }
    }

    /// Deletes the rows whose key columns are `keys`, [`ROWS_PER_STATEMENT_MAX`] at a time;
    /// `head` is the statement up to its `IN (`.
    fn delete(&mut self, head: &str, keys: Vec<Columns>) {
        self.rows += keys.len();
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let chunk: Vec<Columns> = keys.by_ref().take(ROWS_PER_STATEMENT_MAX).collect();
            self.builder.push(head);
            self.builder.push_values(chunk, |mut row, columns| {
                for column in columns {
                    row.push_bind(column);
                }
            });
            self.builder.push(");");
        }
    }

    /// Deletes the rows of `table` (keyed by group, sender and seq) of `sender` in `group`
    /// numbered below `below`.
    fn delete_below(&mut self, table: &str, group: GroupId, sender: NodeId, below: u64) {
        if below == 0 {
            return;
        }
        self.rows += 1;
        self.builder.push(format!("DELETE FROM {table} WHERE group_id = "));
        self.builder.push_bind(group.0.to_vec());
        self.builder.push(" AND sender = ");
        self.builder.push_bind(sender.0.to_vec());
        self.builder.push(" AND seq < ");
        self.builder.push_bind(u64_to_column(below).to_vec());
        self.builder.push(";");
    }

    /// Adds `statement` over `rows`, [`ROWS_PER_STATEMENT_MAX`] rows at a time, appending each
    /// row's checksum as its last column.
    fn upsert(&mut self, statement: &Statement, rows: Vec<Columns>) {
        self.rows += rows.len();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Columns> = rows.by_ref().take(ROWS_PER_STATEMENT_MAX).collect();
            self.builder.push(statement.head);
            self.builder.push_values(chunk, |mut row, columns| {
                let parts: Vec<&[u8]> = columns.iter().map(Vec::as_slice).collect();
                let checksum = row_checksum(statement.table, &parts).to_vec();
                for column in columns {
                    row.push_bind(column);
                }
                row.push_bind(checksum);
            });
            self.builder.push(statement.tail);
            self.builder.push(";");
        }
    }

    /// Runs the transaction: one round trip. A failed statement leaves it open; it is rolled
    /// back before the error returns.
    async fn run(mut self, connection: &mut SqliteConnection) -> Result<(), StoreError> {
        self.builder.push("COMMIT;");
        let cached = self.rows <= CACHED_SCRIPT_ROWS_MAX;
        let result = self.builder.build().persistent(cached).execute(&mut *connection).await;
        if let Err(error) = result {
            let _ = connection.execute(sqlx::raw_sql("ROLLBACK")).await;
            return Err(error.into());
        }
        Ok(())
    }
}
