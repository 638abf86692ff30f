//! The store: one SQLite database per node, opened with the checks that keep it that node's.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use plait_kernel::ids::{GroupId, NodeId};
use plait_kernel::storage::{LoadQuery, LoadResult, Restored, WriteBatch};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use crate::changes::Changes;
use crate::codec::Column;
use crate::error::StoreError;
use crate::{read, write};

/// The schema, embedded at compile time: the build needs no database.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a statement waits by default for another process's lock: long enough to ride out a
/// checkpoint by a tool reading the file, short enough that a stuck lock surfaces as an error.
pub const BUSY_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Prepared statements a connection keeps (least recently used evicted): the commit scripts of
/// the shapes a node writes most (see `write.rs`), and the reads.
pub(crate) const STATEMENT_CACHE_MAX: usize = 128;

/// Settings of [`Store::open_with`]. [`Store::open`] uses the defaults.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout_ms: u64,
    /// Pages (4 KiB each) the database may grow to; `None` for no limit but the disk. A write
    /// that would pass it fails with [`StoreError::Full`], as on a full disk.
    pub pages_max: Option<u32>,
    /// Write the write-ahead log out to its steady-state size before opening (see
    /// `prefill_log`): every commit then overwrites instead of growing the file. Worth its
    /// ~4 MiB write and fsync for a node that runs a while; not for one opened for a single
    /// command (the command line's local commands), since SQLite deletes the log at close.
    pub prefill_log: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions { busy_timeout_ms: BUSY_TIMEOUT_MS_DEFAULT, pages_max: None, prefill_log: true }
    }
}

/// A node's durable state in one SQLite database.
///
/// Architecture Invariant: the durable state always equals `Restored::empty()` with some prefix
/// of the batches passed to [`Store::apply`] applied by `Restored::apply`, and that prefix
/// includes every batch of every `apply` call that returned `Ok`.
pub struct Store {
    connection: SqliteConnection,
    node: NodeId,
    /// Groups with a durable `Group` row. Records of other groups are ignored, as
    /// `Restored::apply` does, without asking the database.
    groups_durable: BTreeSet<GroupId>,
    /// Set when an `apply` failed: later writes are refused (see [`StoreError`]).
    is_stopped: bool,
}

impl Store {
    /// Opens (or creates) the database at `path` for `node`, with default options.
    pub async fn open(path: impl AsRef<Path>, node: NodeId) -> Result<Store, StoreError> {
        Store::open_with(path, node, StoreOptions::default()).await
    }

    /// Opens (or creates) the database at `path` for `node`.
    ///
    /// Refuses a file that is not a SQLite database, is damaged, belongs to another program or
    /// another node, or was written by a newer Plait, before changing anything in it.
    ///
    /// A new database is built beside `path` and renamed into place once its schema and owner
    /// are durable, so a file at `path` is never legitimately empty: an empty file is a
    /// truncated database and is refused, instead of silently starting over.
    pub async fn open_with(path: impl AsRef<Path>, node: NodeId, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.len() == 0 => {
                return Err(StoreError::Corrupt { detail: "the database file is empty (truncated)".to_owned() });
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                create(path, node, &options).await?;
            }
            Err(_) => return Err(StoreError::CannotOpen),
        }
        if options.prefill_log {
            prefill_log(path);
        }
        let mut connection = connect(path, &options, false).await?;
        check_integrity(&mut connection).await?;
        check_schema(&mut connection, node).await?;
        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut connection).await?;
        MIGRATOR.run(&mut connection).await?;
        claim_identity(&mut connection, node).await?;

        let mut groups_durable = BTreeSet::new();
        for row in sqlx::query("SELECT group_id FROM groups").fetch_all(&mut connection).await? {
            groups_durable.insert(Column("groups.group_id").group_id(row.try_get(0)?)?);
        }
        Ok(Store { connection, node, groups_durable, is_stopped: false })
    }

    /// The node this database belongs to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Makes `batches` durable as one transaction with one fsync (group commit), each batch all
    /// or nothing, with the meaning of `Restored::apply` applied to them in order. Returns once
    /// they are durable.
    ///
    /// On an error the store stops (later calls return [`StoreError::Stopped`]): the host must
    /// reopen it, as after a crash, and learn from [`Store::load`] what is durable.
    pub async fn apply(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        if self.is_stopped {
            return Err(StoreError::Stopped);
        }
        let changes = Changes::fold(&self.groups_durable, batches);
        if changes.is_empty() {
            return Ok(()); // Nothing to make durable: every record was for an unknown group.
        }
        match self.write(&changes).await {
            Ok(()) => {
                for group in &changes.forgotten {
                    self.groups_durable.remove(group);
                }
                assert!(
                    changes.groups.keys().all(|group| !self.groups_durable.contains(group)),
                    "the fold wrote a group that was already durable"
                );
                self.groups_durable.extend(changes.groups.keys().copied());
                Ok(())
            }
            Err(error) => {
                self.is_stopped = true;
                Err(error)
            }
        }
    }

    /// Everything durable, as handed to the node's constructor after a restart.
    pub async fn load(&mut self) -> Result<Restored, StoreError> {
        let mut transaction = self.connection.begin().await?;
        let restored = read::load(&mut transaction).await?;
        transaction.commit().await?;
        Ok(restored)
    }

    /// Answers a bounded read, as `LoadQuery::answer` does on the durable state, except that
    /// at most [`CHOSEN_ENTRIES_PER_LOAD_MAX`](crate::CHOSEN_ENTRIES_PER_LOAD_MAX) entries come back.
    pub async fn answer(&mut self, query: &LoadQuery) -> Result<LoadResult, StoreError> {
        read::answer(&mut self.connection, query).await
    }

    /// Closes the database cleanly (checkpointing the write-ahead log). Dropping the store
    /// instead is safe too: everything acknowledged is already durable.
    pub async fn close(self) -> Result<(), StoreError> {
        self.connection.close().await?;
        Ok(())
    }

    async fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        write::write_changes(&mut self.connection, changes).await
    }
}

/// Connects with the settings every Plait database uses: write-ahead log, `synchronous=FULL`
/// (a commit returns after its fsync), foreign keys on.
async fn connect(path: &Path, options: &StoreOptions, may_create: bool) -> Result<SqliteConnection, StoreError> {
    let mut connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(may_create)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_millis(options.busy_timeout_ms))
        .statement_cache_capacity(STATEMENT_CACHE_MAX)
        .foreign_keys(true);
    if let Some(pages_max) = options.pages_max {
        connect = connect.pragma("max_page_count", pages_max.to_string());
    }
    // A new database is made WAL here (the mode is kept in the file). An existing file is
    // switched to WAL only once it is known to be ours (`open_with`): switching rewrites the
    // header of whatever database it is, and another program's must be left alone.
    if may_create {
        connect = connect.journal_mode(SqliteJournalMode::Wal);
    }
    Ok(connect.connect().await?)
}

/// Builds a new database for `node` beside `path` and renames it into place once durable. A
/// crash part-way leaves only the side file, which the next attempt replaces.
async fn create(path: &Path, node: NodeId, options: &StoreOptions) -> Result<(), StoreError> {
    let mut side_name = path.as_os_str().to_owned();
    side_name.push(".creating");
    let side_path = std::path::PathBuf::from(side_name);
    for suffix in ["", "-wal", "-shm"] {
        let mut stale = side_path.as_os_str().to_owned();
        stale.push(suffix);
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Err(StoreError::CannotOpen),
        }
    }
    let mut connection = connect(&side_path, options, true).await?;
    MIGRATOR.run(&mut connection).await?;
    claim_identity(&mut connection, node).await?;
    // Closing the last connection checkpoints the log into the file (with fsync, as
    // synchronous=FULL) and removes it, so the side file alone holds everything.
    connection.close().await?;
    std::fs::rename(&side_path, path).map_err(|_| StoreError::CannotOpen)?;
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty());
    let directory = std::fs::File::open(directory.unwrap_or(Path::new(".")));
    directory.and_then(|directory| directory.sync_all()).map_err(|_| StoreError::CannotOpen)
}

/// Frames the write-ahead log is written out to before SQLite opens the database: a little more
/// than SQLite's automatic checkpoint threshold (1,000 pages), after which a commit starts the
/// log over from its beginning, so in a steady state the log never grows past this.
const LOG_PREFILL_FRAMES: u64 = 1_024;
/// A log frame: a 24-byte header and one 4 KiB page (SQLite's default page size, which Plait's
/// databases keep).
const LOG_FRAME_BYTES: u64 = 24 + 4_096;
/// The log file's own header.
const LOG_HEADER_BYTES: u64 = 32;

/// Writes the write-ahead log out to its steady-state size, in zeros, if there is none.
///
/// Why: an fdatasync that grows a file must also make its new size durable, which on this
/// machine doubles its cost (4 pages appended: 236 µs; overwritten: 119 µs), and a SQLite commit
/// into a growing log costs ~1.45× one into a log it restarted (164 against 113 µs). SQLite
/// deletes the log when the last connection closes, so after every open the first ~4 MiB of
/// commits would all grow it. With the file already written, every commit overwrites.
///
/// Safe: SQLite reads a log whose header is not valid (zeros) as empty, the state a crash
/// leaves before the log's first frame is durable, and writes a header at its first commit.
/// Only a database in WAL mode gets one (a rollback-journal database with a log beside it would
/// be opened in WAL mode), and only a log that does not exist is created: an existing one may
/// hold commits to recover. Best effort: on any failure the partial file is removed, and SQLite
/// grows its log as usual.
fn prefill_log(path: &Path) {
    if !is_wal_database(path) {
        return;
    }
    let mut log_name = path.as_os_str().to_owned();
    log_name.push("-wal");
    let log_path = std::path::PathBuf::from(log_name);
    let Ok(mut file) = std::fs::OpenOptions::new().write(true).create_new(true).open(&log_path) else {
        return; // A log exists (commits to recover), or the folder is not writable.
    };
    let mut zeros = std::io::Read::take(std::io::repeat(0), LOG_HEADER_BYTES + LOG_PREFILL_FRAMES * LOG_FRAME_BYTES);
    let prefilled = std::io::copy(&mut zeros, &mut file)
        .and_then(|_| file.sync_data())
        .and_then(|()| std::fs::metadata(path))
        .and_then(|metadata| std::fs::set_permissions(&log_path, metadata.permissions()));
    if prefilled.is_err() {
        let _ = std::fs::remove_file(&log_path);
    }
}

/// Whether the file at `path` is a writable SQLite database in WAL mode: its header's magic
/// string, and its read and write format versions both 2.
fn is_wal_database(path: &Path) -> bool {
    if std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().readonly()) {
        return false; // Refused at open; a log beside it would outlive a fix of its permissions.
    }
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header));
    read.is_ok() && header.starts_with(b"SQLite format 3\0") && header[18] == 2 && header[19] == 2
}

/// SQLite's own structural check: catches truncated and overwritten pages before we trust them.
/// It reads the whole file, which the `load` at start does anyway.
async fn check_integrity(connection: &mut SqliteConnection) -> Result<(), StoreError> {
    let rows = sqlx::query("PRAGMA quick_check").fetch_all(&mut *connection).await?;
    let mut problems = Vec::new();
    for row in rows {
        let line: String = row.try_get(0)?;
        if line != "ok" {
            problems.push(line);
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(StoreError::Corrupt { detail: problems.join("; ") }) }
}

/// Refuses, before any migration runs, a database of another program, of a newer Plait, or of
/// another node.
async fn check_schema(connection: &mut SqliteConnection, node: NodeId) -> Result<(), StoreError> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table'").fetch_all(&mut *connection).await?;
    let has_table = |name: &str| tables.iter().any(|table| table == name);
    if tables.is_empty() {
        return Ok(()); // A new database.
    }
    if !has_table("_sqlx_migrations") {
        return Err(StoreError::NotPlaitDatabase);
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut *connection).await?;
    let supported = schema_version_supported();
    if let Some(found) = found.filter(|found| *found > supported) {
        return Err(StoreError::NewerSchema { found, supported });
    }
    if has_table("node_identity") {
        check_identity(connection, node).await?;
    }
    Ok(())
}

/// Records `node` as the owner of a new database, or checks that it already is.
async fn claim_identity(connection: &mut SqliteConnection, node: NodeId) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO node_identity (only_row, node_id) VALUES (1, ?) ON CONFLICT DO NOTHING")
        .bind(node.0.as_slice())
        .execute(&mut *connection)
        .await?;
    check_identity(connection, node).await
}

async fn check_identity(connection: &mut SqliteConnection, node: NodeId) -> Result<(), StoreError> {
    let recorded: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT node_id FROM node_identity WHERE only_row = 1").fetch_optional(&mut *connection).await?;
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let found = Column("node_identity.node_id").node_id(&recorded)?;
    if found == node { Ok(()) } else { Err(StoreError::OtherNode { expected: node, found }) }
}

/// The newest schema version this build knows: the highest embedded migration.
pub fn schema_version_supported() -> i64 {
    MIGRATOR.iter().map(|migration| migration.version).max().expect("invariant: at least one migration is embedded")
}
