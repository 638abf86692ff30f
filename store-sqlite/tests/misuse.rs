//! Corruption and misuse: every bad file or environment gives a clear typed error, never a panic,
//! and never a store that silently lost acknowledged data.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use plait_kernel::ids::{NodeId, Slot};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::storage::{Record, Restored, WriteBatch};
use plait_store_sqlite::{Store, StoreError, StoreOptions, schema_version_supported};

const NODE: NodeId = NodeId([1; 32]);
const OTHER_NODE: NodeId = NodeId([2; 32]);
/// Set in the child of the read-only test: the database it tries to open.
const READ_ONLY_CHILD_ENV: &str = "PLAIT_STORE_READ_ONLY_CHILD_DATABASE";
/// The unprivileged user the read-only check runs as when the test runs as root, who may write
/// any file whatever its permissions.
const NOBODY_UID: u32 = 65534;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn genesis() -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NODE], 8).expect("one acceptor");
    GroupGenesis { nonce: 1, acceptors, proposers: vec![NODE], group_info: None }
}

/// A batch with one log entry of `len_bytes` payload; batch 0 also creates the group.
fn batch(number: u64, len_bytes: usize) -> WriteBatch {
    let group = genesis().group_id();
    let mut batch = WriteBatch::default();
    if number == 0 {
        batch.push(Record::Group { group, genesis: genesis() });
    }
    batch.push(Record::Chosen { group, slot: Slot(number), entry: Entry::Value(vec![number as u8; len_bytes]) });
    batch
}

/// Writes `count` batches, closes, and returns what the model says is durable.
async fn write_database(path: &Path, count: u64) -> Restored {
    let mut store = Store::open(path, NODE).await.expect("open a new store");
    let mut model = Restored::empty();
    for number in 0..count {
        let batch = batch(number, 300);
        store.apply(std::slice::from_ref(&batch)).await.expect("apply");
        model.apply(&batch);
    }
    store.close().await.expect("close");
    model
}

async fn open_error(path: &Path, node: NodeId) -> StoreError {
    match Store::open(path, node).await {
        Ok(_) => panic!("opening {} should have failed", path.display()),
        Err(error) => error,
    }
}

/// Proves that a file of random bytes is refused as not a database, and left untouched.
#[test]
fn a_garbage_file_is_refused_as_not_a_database() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let error = runtime().block_on(open_error(&path, NODE));
    assert!(matches!(error, StoreError::NotADatabase), "{error:?}");
    assert_eq!(std::fs::read(&path).expect("read back"), garbage, "a refused file must not be changed");
}

/// Proves that a database cut short is refused instead of loading whatever rows survived. A cut
/// that removes only bytes SQLite never reads (the unused tail of the last page) may open, but
/// then it must load everything.
#[test]
fn a_truncated_database_is_refused_or_loads_everything_never_a_part() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let runtime = runtime();
    let original = directory.path().join("original.sqlite");
    let model = runtime.block_on(write_database(&original, 200));
    let bytes = std::fs::read(&original).expect("read the database");
    assert!(bytes.len() > 16 * 4096, "the database should span many pages: {} bytes", bytes.len());
    let must_refuse = [0, 50, 100, 4096, bytes.len() / 3, bytes.len() / 2, bytes.len() - 4096];
    for keep_bytes in must_refuse.into_iter().chain([bytes.len() - 1]) {
        let path = directory.path().join(format!("truncated-{keep_bytes}.sqlite"));
        std::fs::write(&path, &bytes[..keep_bytes]).expect("write the truncated copy");
        let outcome = runtime.block_on(async {
            let mut store = Store::open(&path, NODE).await?;
            store.load().await
        });
        match outcome {
            Err(StoreError::Corrupt { .. } | StoreError::NotADatabase) => {}
            Err(other) => panic!("truncated to {keep_bytes} bytes: unexpected error {other:?}"),
            Ok(loaded) => {
                assert!(!must_refuse.contains(&keep_bytes), "truncated to {keep_bytes} bytes, yet it opened");
                assert_eq!(loaded, model, "truncated to {keep_bytes} bytes: opened but lost data");
            }
        }
    }
}

/// Proves that a database belonging to another node is refused and keeps its owner.
#[test]
fn a_database_of_another_node_is_refused() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = runtime();
    let model = runtime.block_on(write_database(&path, 3));
    let error = runtime.block_on(open_error(&path, OTHER_NODE));
    assert!(matches!(error, StoreError::OtherNode { expected, found } if expected == OTHER_NODE && found == NODE));
    let loaded = runtime.block_on(async {
        let mut store = Store::open(&path, NODE).await.expect("the owner still opens it");
        store.load().await.expect("load")
    });
    assert_eq!(loaded, model);
}

/// Proves that a database a newer Plait migrated is refused with both versions named.
#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = runtime();
    runtime.block_on(write_database(&path, 1));
    let newer = schema_version_supported() + 1;
    {
        let connection = rusqlite::Connection::open(&path).expect("open with rusqlite");
        connection
            .execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, 'from the future', 1, x'00', 0)",
                [newer],
            )
            .expect("pretend a newer Plait migrated the file");
    }
    let error = runtime.block_on(open_error(&path, NODE));
    assert!(
        matches!(error, StoreError::NewerSchema { found, supported } if found == newer && supported == newer - 1),
        "{error:?}"
    );
}

/// Proves that another program's SQLite database is refused before any Plait table is added.
#[test]
fn a_database_of_another_program_is_refused_and_left_alone() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("other.sqlite");
    rusqlite::Connection::open(&path)
        .and_then(|connection| connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)", []))
        .expect("another program's database");
    let error = runtime().block_on(open_error(&path, NODE));
    assert!(matches!(error, StoreError::NotPlaitDatabase), "{error:?}");
    let connection = rusqlite::Connection::open(&path).expect("reopen");
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |row| row.get(0))
        .expect("count tables");
    assert_eq!(tables, 1, "the store must not have added tables to another program's database");
    let mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal mode");
    assert_eq!(mode, "delete", "the store must not have switched another program's database to WAL");
    drop(connection);
    let mut log = path.into_os_string();
    log.push("-wal");
    assert!(!Path::new(&log).exists(), "no log beside a rollback-journal database");
}

/// Proves that a full disk fails the write with `Full`, stops the store, and loses nothing that
/// was acknowledged: the reopened database holds exactly the acknowledged batches. The full
/// disk is SQLite's `max_page_count` limit, which fails writes the way a full disk does.
#[test]
fn a_full_disk_fails_the_write_stops_the_store_and_keeps_every_acknowledged_batch() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let runtime = runtime();
    runtime.block_on(async {
        let mut model = write_database(&path, 1).await;
        let options = StoreOptions { pages_max: Some(64), ..StoreOptions::default() };
        let mut store = Store::open_with(&path, NODE, options).await.expect("open with a size limit");
        let mut failure = None;
        for number in 1..1_000 {
            let batch = batch(number, 2_000);
            match store.apply(std::slice::from_ref(&batch)).await {
                Ok(()) => model.apply(&batch),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let failure = failure.expect("64 pages cannot hold 1,000 entries of 2 KB");
        assert!(matches!(failure, StoreError::Full), "{failure:?}");
        let later = store.apply(&[batch(5_000, 1)]).await;
        assert!(matches!(later, Err(StoreError::Stopped)), "{later:?}");
        drop(store);
        let mut store = Store::open(&path, NODE).await.expect("reopen without the limit");
        assert_eq!(store.load().await.expect("load"), model);
        assert!(model.groups[&genesis().group_id()].chosen.len() > 1, "some batches fitted before the limit");
    });
}

/// Proves that a database file the process may not write is refused at open with `ReadOnly`.
/// Root may write any file, so as root the check runs in a child process as user `nobody`.
#[test]
fn a_read_only_database_file_is_refused_at_open() {
    if let Some(path) = std::env::var_os(READ_ONLY_CHILD_ENV) {
        let error = runtime().block_on(open_error(Path::new(&path), NODE));
        assert!(matches!(error, StoreError::ReadOnly), "{error:?}");
        return;
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    runtime().block_on(write_database(&path, 2));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("make the file read-only");
    // The directory stays writable so SQLite may create its lock files; only the database is not.
    std::fs::set_permissions(directory.path(), std::fs::Permissions::from_mode(0o777)).expect("open the directory");
    let is_privileged = std::fs::OpenOptions::new().write(true).open(&path).is_ok();
    if !is_privileged {
        let error = runtime().block_on(open_error(&path, NODE));
        assert!(matches!(error, StoreError::ReadOnly), "{error:?}");
        return;
    }
    let output = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["a_read_only_database_file_is_refused_at_open", "--exact", "--test-threads=1"])
        .env(READ_ONLY_CHILD_ENV, &path)
        .uid(NOBODY_UID)
        .gid(NOBODY_UID)
        .output()
        .expect("run the check as nobody");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "the read-only check failed as nobody:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
