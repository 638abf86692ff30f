//! Where a driven node's durable state lives: SQLite on real machines, a shared in-memory
//! `Restored` in turmoil tests (it outlives a simulated host crash, as a disk would).

use std::future::Future;
use std::sync::{Arc, Mutex};

use plait_kernel::{LoadQuery, LoadResult, Restored, WriteBatch};
use plait_store_sqlite::{Store, StoreError};

/// Durable storage for one node. `apply` returns once every batch is durable.
pub trait Storage: Send + 'static {
    /// Makes the batches durable, in order, all or nothing.
    fn apply(&mut self, batches: &[WriteBatch]) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Answers a load query.
    fn answer(&mut self, query: &LoadQuery) -> impl Future<Output = Result<LoadResult, StorageError>> + Send;
    /// Everything durable, as a node is built from it (for a node that asks to be built again:
    /// `Outputs::rebuild_from_storage`).
    fn load(&mut self) -> impl Future<Output = Result<Restored, StorageError>> + Send;
}

/// Storage failed: the node must stop (an fsync that failed leaves unknown what is durable).
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageError(pub String);

impl From<StoreError> for StorageError {
    fn from(error: StoreError) -> StorageError {
        StorageError(error.to_string())
    }
}

impl Storage for Store {
    async fn apply(&mut self, batches: &[WriteBatch]) -> Result<(), StorageError> {
        Ok(Store::apply(self, batches).await?)
    }

    async fn answer(&mut self, query: &LoadQuery) -> Result<LoadResult, StorageError> {
        Ok(Store::answer(self, query).await?)
    }

    async fn load(&mut self) -> Result<Restored, StorageError> {
        Ok(Store::load(self).await?)
    }
}

/// A disk in memory: `Restored::apply` of every batch, shared so it survives the node.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    disk: Arc<Mutex<Restored>>,
}

impl MemoryStorage {
    /// What is durable now (what a restarted node is handed).
    pub fn restored(&self) -> Restored {
        self.disk.lock().expect("memory disk lock").clone()
    }
}

impl Storage for MemoryStorage {
    async fn apply(&mut self, batches: &[WriteBatch]) -> Result<(), StorageError> {
        let mut disk = self.disk.lock().expect("memory disk lock");
        for batch in batches {
            disk.apply(batch);
        }
        Ok(())
    }

    async fn answer(&mut self, query: &LoadQuery) -> Result<LoadResult, StorageError> {
        Ok(query.answer(&self.disk.lock().expect("memory disk lock")))
    }

    async fn load(&mut self) -> Result<Restored, StorageError> {
        Ok(self.restored())
    }
}
