//! Plait's durable node storage: one SQLite database per node, through sqlx.
//!
//! The store gives the host exactly the crash semantics of the simulator's disk: the durable
//! state is always `Restored::apply` of some prefix of the batches written, and that prefix
//! includes every batch whose [`Store::apply`] returned. See the crate README for the contract.
//!
//! ```no_run
//! # async fn example(batch: plait_kernel::WriteBatch) -> Result<(), plait_store_sqlite::StoreError> {
//! use plait_kernel::NodeId;
//! use plait_store_sqlite::Store;
//!
//! let mut store = Store::open("node.sqlite", NodeId::from_index(1)).await?;
//! let restored = store.load().await?; // hand to the node's constructor
//! store.apply(&[batch]).await?; // durable when this returns
//! # let _ = restored;
//! # Ok(())
//! # }
//! ```

mod changes;
mod codec;
mod commit_queue;
mod error;
mod read;
mod store;
mod write;

pub use commit_queue::{BATCHES_PER_COMMIT_MAX, CommitCounts, CommitQueue, CommitWriter, QUEUED_REQUESTS_MAX, SubmitError};
pub use error::StoreError;
pub use read::CHOSEN_ENTRIES_PER_LOAD_MAX;
pub use store::{BUSY_TIMEOUT_MS_DEFAULT, Store, StoreOptions, schema_version_supported};
