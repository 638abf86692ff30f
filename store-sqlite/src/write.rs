//! Writes a [`Changes`] inside the caller's transaction: a few multi-row statements per table.

use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::changes::Changes;
use crate::codec::{ballot_to_column, to_postcard, u64_to_column};
use crate::error::StoreError;

/// Rows per INSERT or DELETE statement. Each statement is one round trip to sqlx's worker
/// thread, so fewer is faster; the bound keeps bind parameters (at most 5 per row) far below
/// SQLite's limit of 32,766 and a statement's text small.
const ROWS_PER_STATEMENT_MAX: usize = 500;

/// One statement shape: `head VALUES (..), (..) tail`.
struct Statement {
    head: &'static str,
    tail: &'static str,
}

/// Writes every table's changes. Groups go first: the other tables refer to them.
pub(crate) async fn write_changes(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let groups: Vec<_> = changes.groups.iter().collect();
    let statement = Statement { head: "INSERT INTO groups (group_id, genesis) ", tail: " ON CONFLICT DO NOTHING" };
    write_rows(connection, &statement, &groups, |row, (group, genesis)| {
        row.push_bind(group.0.as_slice()).push_bind(to_postcard(*genesis));
    })
    .await?;

    let incarnations: Vec<_> = changes.incarnations.iter().collect();
    let statement = Statement {
        head: "INSERT INTO incarnations (group_id, incarnation) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET incarnation = excluded.incarnation",
    };
    write_rows(connection, &statement, &incarnations, |row, (group, incarnation)| {
        row.push_bind(group.0.as_slice()).push_bind(u64_to_column(incarnation.0).as_slice());
    })
    .await?;

    let recovered: Vec<_> = changes.recovered.iter().collect();
    let statement = Statement { head: "INSERT INTO recovered (group_id) ", tail: " ON CONFLICT DO NOTHING" };
    write_rows(connection, &statement, &recovered, |row, group| {
        row.push_bind(group.0.as_slice());
    })
    .await?;

    let promised: Vec<_> = changes.promised.iter().collect();
    let statement = Statement {
        head: "INSERT INTO promised (group_id, ballot) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET ballot = excluded.ballot WHERE excluded.ballot > promised.ballot",
    };
    write_rows(connection, &statement, &promised, |row, (group, ballot)| {
        row.push_bind(group.0.as_slice()).push_bind(ballot_to_column(**ballot).as_slice());
    })
    .await?;

    write_accepted(connection, changes).await?;

    let peers: Vec<_> = changes.peer_incarnations.iter().collect();
    let statement = Statement {
        head: "INSERT INTO peer_incarnations (group_id, acceptor, incarnation) ",
        tail: " ON CONFLICT (group_id, acceptor) DO UPDATE SET incarnation = excluded.incarnation",
    };
    write_rows(connection, &statement, &peers, |row, ((group, acceptor), incarnation)| {
        row.push_bind(group.0.as_slice())
            .push_bind(acceptor.0.as_slice())
            .push_bind(u64_to_column(incarnation.0).as_slice());
    })
    .await?;

    let chosen: Vec<_> = changes.chosen.iter().collect();
    let statement = Statement {
        head: "INSERT INTO chosen (group_id, slot, entry) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE SET entry = excluded.entry",
    };
    write_rows(connection, &statement, &chosen, |row, ((group, slot), entry)| {
        row.push_bind(group.0.as_slice()).push_bind(u64_to_column(slot.0).as_slice()).push_bind(to_postcard(*entry));
    })
    .await?;

    let floors: Vec<_> = changes.round_floors.iter().collect();
    let statement = Statement {
        head: "INSERT INTO round_floors (group_id, round) ",
        tail: " ON CONFLICT (group_id) DO UPDATE SET round = excluded.round WHERE excluded.round > round_floors.round",
    };
    write_rows(connection, &statement, &floors, |row, (group, round)| {
        row.push_bind(group.0.as_slice()).push_bind(u64_to_column(**round).as_slice());
    })
    .await?;
    Ok(())
}

/// Accepted values: upserts for slots last accepted, deletes for slots last chosen.
async fn write_accepted(connection: &mut SqliteConnection, changes: &Changes) -> Result<(), StoreError> {
    let (upserts, deletes): (Vec<_>, Vec<_>) = changes.accepted.iter().partition(|(_, value)| value.is_some());
    let upserts: Vec<_> = upserts.into_iter().filter_map(|(key, value)| Some((key, value.as_ref()?))).collect();
    let statement = Statement {
        head: "INSERT INTO accepted (group_id, slot, ballot, value_hash, entry) ",
        tail: " ON CONFLICT (group_id, slot) DO UPDATE \
                SET ballot = excluded.ballot, value_hash = excluded.value_hash, entry = excluded.entry",
    };
    write_rows(connection, &statement, &upserts, |row, ((group, slot), value)| {
        row.push_bind(group.0.as_slice())
            .push_bind(u64_to_column(slot.0).as_slice())
            .push_bind(ballot_to_column(value.ballot).as_slice())
            .push_bind(value.value_hash.0.as_slice())
            .push_bind(to_postcard(&value.entry));
    })
    .await?;

    let statement = Statement { head: "DELETE FROM accepted WHERE (group_id, slot) IN (", tail: ")" };
    write_rows(connection, &statement, &deletes, |row, ((group, slot), _)| {
        row.push_bind(group.0.as_slice()).push_bind(u64_to_column(slot.0).as_slice());
    })
    .await
}

/// Runs `statement` over `rows`, [`ROWS_PER_STATEMENT_MAX`] rows at a time.
async fn write_rows<T>(
    connection: &mut SqliteConnection,
    statement: &Statement,
    rows: &[T],
    bind_row: impl Fn(&mut Separated<'_, Sqlite, &'static str>, &T),
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut builder = QueryBuilder::<Sqlite>::new(statement.head);
        builder.push_values(chunk, |mut row, item| bind_row(&mut row, item));
        builder.push(statement.tail);
        builder.build().execute(&mut *connection).await?;
    }
    Ok(())
}
