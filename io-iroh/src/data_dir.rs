//! A node's data directory: an exclusive lock, the secret key, the SQLite store, and small
//! JSON files written atomically (temporary file, fsync, rename).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use plait_kernel::NodeId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another plait process holds it.
    #[error("{0} is in use by another plait process")]
    InUse(PathBuf),
    /// The directory or a file in it cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A file in it is damaged.
    #[error("{path} is damaged: {detail}")]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// How.
        detail: String,
    },
    /// `init` was not run.
    #[error("{0} is not initialised (run `plait device --data-dir DIR init` first)")]
    NotInitialised(PathBuf),
    /// It belongs to the other kind of node.
    #[error("{path} is the data directory of {holds}; {wanted} needs a directory of its own")]
    OtherKind {
        /// The directory.
        path: PathBuf,
        /// What it holds.
        holds: NodeKind,
        /// What was asked to open it.
        wanted: NodeKind,
    },
}

/// Which kind of node a data directory belongs to: the two keep different records in their
/// stores, so one directory must never serve both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `plait device`.
    Device,
    /// `plait acceptor`.
    Acceptor,
}

impl NodeKind {
    fn name(self) -> &'static str {
        match self {
            NodeKind::Device => "device",
            NodeKind::Acceptor => "acceptor",
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeKind::Device => "a device",
            NodeKind::Acceptor => "an acceptor",
        })
    }
}

/// An open, locked data directory.
pub struct DataDir {
    path: PathBuf,
    _lock: File,
    kind: NodeKind,
}

const SECRET_FILE: &str = "secret.key";
const KIND_FILE: &str = "kind";

impl DataDir {
    /// Opens (creating it if needed) and locks `path` for a node of `kind`, refusing one that
    /// belongs to the other kind.
    pub fn open(path: &Path, kind: NodeKind) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(|error| io(path, error))?;
        let lock_path = path.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| io(&lock_path, error))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DataDirError::InUse(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(error)) => return Err(io(&lock_path, error)),
        }
        let data = DataDir { path: path.to_path_buf(), _lock: lock, kind };
        if let Some(holds) = data.kind_held()?
            && holds != kind
        {
            return Err(DataDirError::OtherKind { path: data.path, holds, wanted: kind });
        }
        if data.is_initialised() && !data.path.join(KIND_FILE).exists() {
            data.write_atomically(KIND_FILE, kind.name().as_bytes())?;
        }
        Ok(data)
    }

    /// The kind the directory belongs to: its `kind` file, or, in one made before that file
    /// existed, what its other files show (a device's `device.json` or `documents.json`, an acceptor's
    /// `ticket`).
    fn kind_held(&self) -> Result<Option<NodeKind>, DataDirError> {
        let path = self.path.join(KIND_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim() {
                "device" => Ok(Some(NodeKind::Device)),
                "acceptor" => Ok(Some(NodeKind::Acceptor)),
                other => Err(DataDirError::Damaged { path, detail: format!("unknown node kind {other:?}") }),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if self.path.join("device.json").exists() || self.path.join("documents.json").exists() {
                    Ok(Some(NodeKind::Device))
                } else if self.path.join("ticket").exists() {
                    Ok(Some(NodeKind::Acceptor))
                } else {
                    Ok(None)
                }
            }
            Err(error) => Err(io(&path, error)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the secret key exists.
    pub fn is_initialised(&self) -> bool {
        self.path.join(SECRET_FILE).exists()
    }

    /// The node's secret key, made from OS randomness on first use.
    pub fn secret_key(&self) -> Result<[u8; 32], DataDirError> {
        let path = self.path.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => bytes.try_into().map_err(|_| DataDirError::Damaged { path, detail: "not 32 bytes".into() }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|error| io(&path, std::io::Error::other(error.to_string())))?;
                self.write_atomically(KIND_FILE, self.kind.name().as_bytes())?;
                self.write_atomically(SECRET_FILE, &key)?;
                Ok(key)
            }
            Err(error) => Err(io(&path, error)),
        }
    }

    /// The secret key, failing if it was never made.
    pub fn existing_secret_key(&self) -> Result<[u8; 32], DataDirError> {
        if !self.is_initialised() {
            return Err(DataDirError::NotInitialised(self.path.clone()));
        }
        self.secret_key()
    }

    /// The SQLite database's path.
    pub fn database(&self) -> PathBuf {
        self.path.join("node.sqlite")
    }

    /// Reads a JSON file, or `T::default()` if it does not exist.
    pub fn read_json<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, DataDirError> {
        let path = self.path.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|error| DataDirError::Damaged { path, detail: error.to_string() })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(error) => Err(io(&path, error)),
        }
    }

    /// Writes a JSON file atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), DataDirError> {
        let bytes = serde_json::to_vec_pretty(value).expect("JSON encodes");
        self.write_atomically(name, &bytes)
    }

    /// Writes a file atomically: a crash leaves the old or the new contents, never a mix.
    pub fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), DataDirError> {
        let path = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        let mut file = File::create(&temporary).map_err(|error| io(&temporary, error))?;
        restrict(&file);
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|error| io(&temporary, error))?;
        std::fs::rename(&temporary, &path).map_err(|error| io(&path, error))?;
        if let Ok(directory) = File::open(&self.path) {
            let _ = directory.sync_all();
        }
        Ok(())
    }
}

#[cfg(unix)]
fn restrict(file: &File) {
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_file: &File) {}

fn io(path: &Path, error: std::io::Error) -> DataDirError {
    DataDirError::Io { path: path.to_path_buf(), error }
}

/// The MLS identity seed, derived from the node's secret key (one secret to keep).
pub fn identity_seed(secret_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("plait 2026 device MLS identity seed", secret_key)
}

/// The node id of a secret key (the iroh endpoint id).
pub fn node_id(secret_key: &[u8; 32]) -> NodeId {
    NodeId(*iroh::SecretKey::from_bytes(secret_key).public().as_bytes())
}

/// A fresh seed for this boot, from the OS (hosts may draw OS randomness; the kernel may not).
pub fn boot_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    u64::from_le_bytes(bytes)
}
