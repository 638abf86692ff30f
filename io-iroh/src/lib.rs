//! The tokio driver, the iroh transport and the `plait` binary: not built yet (see README.md).
//! The crate exists so the workspace layout is fixed and CI builds every member.
