//! Reads the durable state back: the whole [`Restored`] at start, and bounded [`LoadQuery`]s.

use std::collections::BTreeMap;

use plait_kernel::ids::Ballot;
use plait_kernel::log::GroupGenesis;
use plait_kernel::storage::{AcceptedValue, LoadQuery, LoadResult, Restored, RestoredGroup};
use sqlx::{Row, SqliteConnection};

use crate::codec::{ColumnReader, u64_to_column};
use crate::error::StoreError;

/// The most chosen entries one [`LoadQuery::ChosenEntries`] returns, whatever `count` asks: a
/// load is a bounded read. The kernel asks again from the next slot when it needs more.
pub const CHOSEN_ENTRIES_PER_LOAD_MAX: usize = 4096;

/// Reads every table into a [`Restored`]. Each table is one statement scanned in key order.
pub(crate) async fn load(connection: &mut SqliteConnection) -> Result<Restored, StoreError> {
    let mut groups = BTreeMap::new();
    for row in sqlx::query("SELECT group_id, genesis FROM groups").fetch_all(&mut *connection).await? {
        let group = ColumnReader { column: "groups.group_id" }.group_id(row.try_get(0)?)?;
        let genesis = ColumnReader { column: "groups.genesis" }.genesis(row.try_get(1)?)?;
        groups.insert(group, empty_group_state(genesis));
    }
    let mut restored = Restored { groups };

    for row in sqlx::query("SELECT group_id, incarnation FROM incarnations").fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "incarnations", row.try_get(0)?)?;
        state.incarnation = Some(ColumnReader { column: "incarnations.incarnation" }.incarnation(row.try_get(1)?)?);
    }
    for row in sqlx::query("SELECT group_id FROM recovered").fetch_all(&mut *connection).await? {
        group_of(&mut restored, "recovered", row.try_get(0)?)?.recovered = true;
    }
    for row in sqlx::query("SELECT group_id, ballot FROM promised").fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "promised", row.try_get(0)?)?;
        state.promised = ColumnReader { column: "promised.ballot" }.ballot(row.try_get(1)?)?;
    }
    let accepted = "SELECT group_id, slot, ballot, value_hash, entry FROM accepted";
    for row in sqlx::query(accepted).fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "accepted", row.try_get(0)?)?;
        let slot = ColumnReader { column: "accepted.slot" }.slot(row.try_get(1)?)?;
        let value = AcceptedValue {
            ballot: ColumnReader { column: "accepted.ballot" }.ballot(row.try_get(2)?)?,
            value_hash: ColumnReader { column: "accepted.value_hash" }.value_hash(row.try_get(3)?)?,
            entry: ColumnReader { column: "accepted.entry" }.entry(row.try_get(4)?)?,
        };
        state.accepted.insert(slot, value);
    }
    let peers = "SELECT group_id, acceptor, incarnation FROM peer_incarnations";
    for row in sqlx::query(peers).fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "peer_incarnations", row.try_get(0)?)?;
        let acceptor = ColumnReader { column: "peer_incarnations.acceptor" }.node_id(row.try_get(1)?)?;
        let incarnation = ColumnReader { column: "peer_incarnations.incarnation" }.incarnation(row.try_get(2)?)?;
        state.peer_incarnations.insert(acceptor, incarnation);
    }
    for row in sqlx::query("SELECT group_id, slot, entry FROM chosen").fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "chosen", row.try_get(0)?)?;
        let slot = ColumnReader { column: "chosen.slot" }.slot(row.try_get(1)?)?;
        state.chosen.insert(slot, ColumnReader { column: "chosen.entry" }.entry(row.try_get(2)?)?);
    }
    for row in sqlx::query("SELECT group_id, round FROM round_floors").fetch_all(&mut *connection).await? {
        let state = group_of(&mut restored, "round_floors", row.try_get(0)?)?;
        state.round_floor = ColumnReader { column: "round_floors.round" }.u64(row.try_get(1)?)?;
    }
    Ok(restored)
}

/// Answers a bounded read with one range scan over the table's primary key.
pub(crate) async fn answer(connection: &mut SqliteConnection, query: &LoadQuery) -> Result<LoadResult, StoreError> {
    match query {
        LoadQuery::ChosenEntries { group, from, count } => {
            let limit = (*count).min(CHOSEN_ENTRIES_PER_LOAD_MAX);
            let rows = sqlx::query(
                "SELECT slot, entry FROM chosen WHERE group_id = ? AND slot >= ? ORDER BY group_id, slot LIMIT ?",
            )
            .bind(group.0.as_slice())
            .bind(u64_to_column(from.0).as_slice())
            .bind(i64::try_from(limit).expect("invariant: CHOSEN_ENTRIES_PER_LOAD_MAX fits in i64"))
            .fetch_all(&mut *connection)
            .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                let slot = ColumnReader { column: "chosen.slot" }.slot(row.try_get(0)?)?;
                entries.push((slot, ColumnReader { column: "chosen.entry" }.entry(row.try_get(1)?)?));
            }
            Ok(LoadResult::ChosenEntries(entries))
        }
    }
}

/// The state of a group before any per-group record: what `Restored::apply` starts from. (The
/// kernel's own constructor is private; a new field there is a compile error here.)
fn empty_group_state(genesis: GroupGenesis) -> RestoredGroup {
    RestoredGroup {
        genesis,
        incarnation: None,
        recovered: false,
        promised: Ballot::ZERO,
        accepted: BTreeMap::new(),
        peer_incarnations: BTreeMap::new(),
        chosen: BTreeMap::new(),
        round_floor: 0,
    }
}

/// The group a row belongs to. Foreign keys make a row without its group impossible, so one is
/// reported as corruption rather than ignored.
fn group_of<'a>(restored: &'a mut Restored, table: &'static str, group: &[u8]) -> Result<&'a mut RestoredGroup, StoreError> {
    let group = ColumnReader { column: table }.group_id(group)?;
    restored.groups.get_mut(&group).ok_or_else(|| StoreError::Corrupt {
        detail: format!("{table} has a row for group {group} that has no row in groups"),
    })
}
