//! The kernel's integration tests, as one test binary: each file is a module. One binary links
//! openmls and Loro once instead of once per file, which keeps CI's build small and quick.

mod support;

mod acceptor_model;
mod bad_input;
mod batches;
mod budgets;
mod bursts;
mod compaction;
mod document;
mod documents;
mod fuzz_corpus;
mod golden;
mod handover;
mod idle;
mod mls;
mod mls_log;
mod panics;
mod properties;
mod views;
