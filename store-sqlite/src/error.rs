//! Everything that can go wrong in the store, grouped by cause.

use plait_kernel::ids::NodeId;
use sqlx::migrate::MigrateError;

/// SQLite primary result codes the store tells apart (the low byte of an extended code).
mod sqlite_code {
    pub(super) const CORRUPT: i64 = 11;
    pub(super) const READONLY: i64 = 8;
    pub(super) const FULL: i64 = 13;
    pub(super) const CANTOPEN: i64 = 14;
    pub(super) const NOTADB: i64 = 26;
}

/// Why the store refused or failed an operation.
///
/// After an error from [`Store::apply`](crate::Store::apply) the store is stopped: the batches of
/// that call may or may not be durable (an fsync that fails leaves that unknown), and writing later
/// batches on top could leave a durable state that is not a prefix of what the kernel wrote. The
/// host stops the node and reopens the store, exactly as after a crash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // The file is not a database this node may use.
    /// The file is not a SQLite database: garbage, or its header was lost.
    #[error("the file is not a SQLite database (garbage or a damaged header)")]
    NotADatabase,
    /// A SQLite database that another program wrote: it has tables but no Plait schema.
    #[error("the file is a SQLite database of another program (tables but no Plait schema)")]
    NotPlaitDatabase,
    /// The database is damaged: SQLite's own check failed, or a row does not decode.
    #[error("the database is corrupt: {detail}")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// A newer Plait wrote this database; this build does not know its schema.
    #[error("the database has schema version {found}, newer than {supported}, the newest this build knows")]
    NewerSchema {
        /// The database's schema version.
        found: i64,
        /// The newest schema version this build can read.
        supported: i64,
    },
    /// The database belongs to another node.
    #[error("the database belongs to node {found}, not to {expected}")]
    OtherNode {
        /// The node that asked to open it.
        expected: NodeId,
        /// The node recorded in it.
        found: NodeId,
    },
    /// The schema history in the file differs from this build's migrations.
    #[error("the database's schema history does not match this build: {0}")]
    Migration(#[source] MigrateError),

    // The environment refuses.
    /// The file cannot be opened or created (missing directory, no permission).
    #[error("the database file cannot be opened or created")]
    CannotOpen,
    /// The file or its directory is read-only.
    #[error("the database is read-only (file or directory permissions, or a read-only mount)")]
    ReadOnly,
    /// The disk, or the size limit set in [`StoreOptions`](crate::StoreOptions), is full.
    #[error("the disk or the database's size limit is full")]
    Full,

    // The store itself.
    /// An earlier `apply` failed; reopen the store to learn what is durable.
    #[error("an earlier write failed; reopen the store to learn what is durable")]
    Stopped,
    /// Any other SQLite or I/O failure.
    #[error("SQLite failed: {0}")]
    Sqlite(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        let code = match &error {
            sqlx::Error::Database(database) => database.code().and_then(|code| code.parse::<i64>().ok()),
            _ => None,
        };
        match code.map(|extended| extended & 0xff) {
            Some(sqlite_code::NOTADB) => StoreError::NotADatabase,
            Some(sqlite_code::CORRUPT) => StoreError::Corrupt { detail: error.to_string() },
            Some(sqlite_code::READONLY) => StoreError::ReadOnly,
            Some(sqlite_code::FULL) => StoreError::Full,
            Some(sqlite_code::CANTOPEN) => StoreError::CannotOpen,
            _ => StoreError::Sqlite(error),
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(error: MigrateError) -> StoreError {
        match error {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => StoreError::from(inner),
            other => StoreError::Migration(other),
        }
    }
}
