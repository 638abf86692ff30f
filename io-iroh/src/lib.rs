//! Plait on real machines: the tokio driver around one kernel node, the links it sends frames
//! over (iroh in production, turmoil in tests), SQLite storage, and the app-facing facade.
//!
//! ```text
//!   app / CLI ── Command ──► Driver ── handle(now, input) ──► kernel node
//!                               │ effects, in order:
//!                               │   Persist → Storage (a barrier; consecutive ones share a commit)
//!                               │   Send    → Links (one reused link per peer, reconnects)
//!                               │   Load    → Storage, answered as the next input
//!                               │   Notify  → subscribers
//!                               ▼
//!                     Links<N: Network>  (iroh: `IrohNetwork`; tests: turmoil)
//! ```

pub mod app;
pub mod clock;
pub mod data_dir;
pub mod driver;
pub mod frames;
pub mod huge_pages;
pub mod iroh_net;
pub mod links;
pub mod network;
pub mod server;
pub mod storage;
pub mod ticket;
pub mod timeline;

pub use driver::{Driver, DriverError, DriverHandle, DriverStatus, Rebuild, Timers};
pub use network::{LinkError, LinkErrorKind, Network};
