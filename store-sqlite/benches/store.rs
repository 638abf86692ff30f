//! Store benchmark. Run in release: `cargo bench -p plait-store-sqlite --bench store`.
//!
//! Prints anchors measured in the same run (raw fdatasync latency, raw rusqlite insert speed,
//! the latency of a one-row commit through rusqlite and through sqlx as the store sends it),
//! because fsync latency on this class of machine swings 0.2–4 ms within minutes; then batches/s
//! and rows/s for single and grouped commits, fsyncs per stored message with 100 concurrent
//! writers, and bytes on disk per stored message. Every figure is the median of `RUNS` runs.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use plait_kernel::ids::{NodeId, Slot};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::storage::{Record, WriteBatch};
use plait_store_sqlite::{CommitQueue, Store};

/// Repetitions of each measurement; figures are medians over them.
const RUNS: usize = 5;
/// Payload of one stored message (a chosen log entry).
const PAYLOAD_BYTES: usize = 256;
/// fdatasync samples per run of the raw anchor.
const FSYNC_SAMPLES: usize = 100;
/// Rows per run of the raw rusqlite anchor (one transaction, prepared statement).
const RAW_ROWS: u64 = 20_000;
/// Tables one commit script writes in the larger sqlx commit anchor (a device's commit touches
/// about this many), and their names.
const SCRIPT_TABLES: usize = 6;
const TABLE_NAMES: [&str; SCRIPT_TABLES] = ["t1", "t2", "t3", "t4", "t5", "t6"];
/// Single-batch commits per run.
const SINGLE_COMMITS: u64 = 300;
/// Batches per grouped commit, and grouped commits per run.
const GROUP_SIZE: u64 = 100;
const GROUP_COMMITS: u64 = 50;
/// Concurrent writers, and batches each submits one after another.
const WRITERS: u64 = 100;
const BATCHES_PER_WRITER: u64 = 30;
/// Messages written for the bytes-on-disk figure.
const SIZE_MESSAGES: u64 = 20_000;

const NODE: NodeId = NodeId([9; 32]);

fn genesis() -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NODE], 8).expect("one acceptor");
    GroupGenesis { nonce: 1, acceptors, proposers: vec![NODE], group_info: None }
}

/// One stored message: a log entry in its own batch.
fn message(slot: u64) -> WriteBatch {
    let group = genesis().group_id();
    WriteBatch { records: vec![Record::Chosen { group, slot: Slot(slot), entry: Entry::Value(vec![7; PAYLOAD_BYTES]) }] }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn new_store(directory: &Path) -> Store {
    let mut store = Store::open(directory.join("node.sqlite"), NODE).await.expect("open");
    let group = genesis().group_id();
    store.apply(&[WriteBatch { records: vec![Record::Group { group, genesis: genesis() }] }]).await.expect("group");
    store
}

fn fdatasync_latency_ms(directory: &Path) -> f64 {
    let mut file = std::fs::File::create(directory.join("fsync-probe")).expect("probe file");
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        let started = Instant::now();
        file.write_all(&[1; 512]).expect("write");
        file.sync_data().expect("fdatasync");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    median(samples)
}

fn rusqlite_rows_per_second(directory: &Path) -> f64 {
    let path = directory.join("raw.sqlite");
    let mut connection = rusqlite::Connection::open(&path).expect("rusqlite open");
    connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").expect("pragmas");
    connection.execute_batch("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) STRICT").expect("table");
    let started = Instant::now();
    let transaction = connection.transaction().expect("begin");
    {
        let mut insert = transaction.prepare("INSERT INTO t (k, v) VALUES (?1, ?2)").expect("prepare");
        for key in 0..RAW_ROWS {
            insert.execute(rusqlite::params![key.to_be_bytes().as_slice(), [7u8; PAYLOAD_BYTES].as_slice()]).expect("insert");
        }
    }
    transaction.commit().expect("commit");
    RAW_ROWS as f64 / started.elapsed().as_secs_f64()
}

/// Median latency (ms) of a transaction of one row through rusqlite: SQLite's own commit cost.
fn rusqlite_commit_ms(directory: &Path) -> f64 {
    let mut connection = rusqlite::Connection::open(directory.join("raw-commit.sqlite")).expect("rusqlite open");
    connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").expect("pragmas");
    connection.execute_batch("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) STRICT").expect("table");
    let samples = (0..SINGLE_COMMITS)
        .map(|key| {
            let started = Instant::now();
            let transaction = connection.transaction().expect("begin");
            let (key, payload) = (key.to_be_bytes(), [7u8; PAYLOAD_BYTES]);
            let row = rusqlite::params![key.as_slice(), payload.as_slice()];
            transaction.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", row).expect("insert");
            transaction.commit().expect("commit");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(samples)
}

/// Median latency (ms) of a transaction through sqlx as the store sends one: a single script
/// `BEGIN; INSERT ..; COMMIT;` with one INSERT into each of `tables` tables. sqlx's worker
/// answers every statement of a script separately, so this shows what each costs.
async fn sqlx_script_commit_ms(directory: &Path, tables: usize) -> f64 {
    use sqlx::Executor;
    let mut connection = raw_sqlx(&directory.join(format!("raw-commit-{tables}.sqlite"))).await;
    let names = &TABLE_NAMES[..tables];
    for name in names {
        let mut create = sqlx::QueryBuilder::<sqlx::Sqlite>::new("CREATE TABLE ");
        create.push(name).push(" (k BLOB PRIMARY KEY, v BLOB NOT NULL) STRICT");
        connection.execute(create.build()).await.expect("table");
    }
    let mut samples = Vec::new();
    for key in 0..SINGLE_COMMITS {
        let started = Instant::now();
        let mut script = sqlx::QueryBuilder::<sqlx::Sqlite>::new("BEGIN;");
        for name in names {
            script.push("INSERT INTO ").push(name).push(" (k, v) VALUES (");
            script.push_bind(key.to_be_bytes().to_vec()).push(", ").push_bind(vec![7u8; PAYLOAD_BYTES]).push(");");
        }
        script.push("COMMIT;");
        script.build().persistent(false).execute(&mut connection).await.expect("commit");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    median(samples)
}

/// A bare sqlx connection with the store's journal settings (WAL, `synchronous=FULL`).
async fn raw_sqlx(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await
        .expect("sqlx open")
}

/// The same rows through sqlx, 500 per multi-row INSERT, in one transaction: separates sqlx's
/// cost from the store's own.
async fn sqlx_rows_per_second(directory: &Path) -> f64 {
    use sqlx::Connection;
    let mut connection = raw_sqlx(&directory.join("raw-sqlx.sqlite")).await;
    sqlx::query("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) STRICT").execute(&mut connection).await.expect("table");
    let started = Instant::now();
    let mut transaction = connection.begin().await.expect("begin");
    let keys: Vec<u64> = (0..RAW_ROWS).collect();
    for chunk in keys.chunks(500) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO t (k, v) ");
        builder.push_values(chunk, |mut row, key| {
            row.push_bind(key.to_be_bytes().to_vec()).push_bind(vec![7u8; PAYLOAD_BYTES]);
        });
        builder.build().execute(&mut *transaction).await.expect("insert");
    }
    transaction.commit().await.expect("commit");
    RAW_ROWS as f64 / started.elapsed().as_secs_f64()
}

/// Batches per second when every batch is its own commit.
async fn single_commits_per_second(directory: &Path) -> f64 {
    let mut store = new_store(directory).await;
    let started = Instant::now();
    for slot in 0..SINGLE_COMMITS {
        store.apply(&[message(slot)]).await.expect("apply");
    }
    SINGLE_COMMITS as f64 / started.elapsed().as_secs_f64()
}

/// Batches per second when `GROUP_SIZE` batches share a commit.
async fn grouped_batches_per_second(directory: &Path) -> f64 {
    let mut store = new_store(directory).await;
    let started = Instant::now();
    for commit in 0..GROUP_COMMITS {
        let batches: Vec<_> = (commit * GROUP_SIZE..(commit + 1) * GROUP_SIZE).map(message).collect();
        store.apply(&batches).await.expect("apply");
    }
    (GROUP_COMMITS * GROUP_SIZE) as f64 / started.elapsed().as_secs_f64()
}

/// (fsyncs per message, messages per second) with `WRITERS` tasks sharing one commit writer.
async fn concurrent_writers(directory: &Path) -> (f64, f64) {
    let store = new_store(directory).await;
    let (queue, writer) = CommitQueue::start(store);
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer_index| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for number in 0..BATCHES_PER_WRITER {
                    queue.submit(message(writer_index * BATCHES_PER_WRITER + number)).await.expect("submit");
                }
            })
        })
        .collect();
    drop(queue);
    for task in tasks {
        task.await.expect("writer task");
    }
    let elapsed = started.elapsed();
    let (_store, counts) = writer.finish().await.expect("writer finished");
    assert_eq!(counts.batches, WRITERS * BATCHES_PER_WRITER);
    (counts.commits as f64 / counts.batches as f64, counts.batches as f64 / elapsed.as_secs_f64())
}

/// Bytes of database file per stored message, after a clean close (write-ahead log checkpointed).
async fn bytes_per_message(directory: &Path) -> f64 {
    let mut store = new_store(directory).await;
    for commit in 0..SIZE_MESSAGES / 1000 {
        let batches: Vec<_> = (commit * 1000..(commit + 1) * 1000).map(message).collect();
        store.apply(&batches).await.expect("apply");
    }
    store.close().await.expect("close");
    let bytes = std::fs::metadata(directory.join("node.sqlite")).expect("size").len();
    bytes as f64 / SIZE_MESSAGES as f64
}

fn fresh_directory() -> tempfile::TempDir {
    // Next to the build, on the same disk as a real node's data; not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory for the benchmark")
}

fn measure<T>(runs: usize, mut run: impl FnMut(&Path) -> T) -> Vec<T> {
    (0..runs).map(|_| run(fresh_directory().path())).collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let started = Instant::now();
    println!("plait-store-sqlite benchmark: medians of {RUNS} runs, payload {PAYLOAD_BYTES} B per message");

    let fsync_ms = median(measure(RUNS, fdatasync_latency_ms));
    println!("anchor  raw write+fdatasync of 512 B:           {fsync_ms:.3} ms (median of {FSYNC_SAMPLES} x {RUNS})");
    let raw_rows = median(measure(RUNS, rusqlite_rows_per_second));
    println!("anchor  raw rusqlite inserts, one transaction:  {raw_rows:.0} rows/s");

    let raw_commit = median(measure(RUNS, rusqlite_commit_ms));
    println!("anchor  raw rusqlite commit of one row:        {raw_commit:.3} ms");
    for tables in [1, SCRIPT_TABLES] {
        let sqlx_commit = median(measure(RUNS, |directory| runtime.block_on(sqlx_script_commit_ms(directory, tables))));
        println!("anchor  raw sqlx commit, one script, {tables} INSERT(s): {sqlx_commit:.3} ms");
    }
    let sqlx_rows = median(measure(RUNS, |directory| runtime.block_on(sqlx_rows_per_second(directory))));
    println!("anchor  raw sqlx inserts, 500 rows per statement: {sqlx_rows:.0} rows/s");

    let single = median(measure(RUNS, |directory| runtime.block_on(single_commits_per_second(directory))));
    println!(
        "store   single-batch commits:                   {single:.0} batches/s = {single:.0} rows/s ({:.3} ms per commit)",
        1e3 / single
    );
    let grouped = median(measure(RUNS, |directory| runtime.block_on(grouped_batches_per_second(directory))));
    println!("store   {GROUP_SIZE} batches per commit:                  {grouped:.0} batches/s = {grouped:.0} rows/s");

    let concurrent = measure(RUNS, |directory| runtime.block_on(concurrent_writers(directory)));
    let fsyncs = median(concurrent.iter().map(|(fsyncs, _)| *fsyncs).collect());
    let rate = median(concurrent.iter().map(|(_, rate)| *rate).collect());
    println!(
        "store   {WRITERS} concurrent writers, one commit task:   {fsyncs:.4} fsyncs per message (target <= 0.1), {rate:.0} messages/s"
    );

    let bytes = median(measure(RUNS.min(3), |directory| runtime.block_on(bytes_per_message(directory))));
    println!(
        "store   bytes on disk per message:              {bytes:.1} B = payload + {:.1} B (target <= payload + 160 B)",
        bytes - PAYLOAD_BYTES as f64
    );
    println!("total benchmark time {:.1} s", started.elapsed().as_secs_f64());
}
