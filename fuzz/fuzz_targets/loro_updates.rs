#![no_main]
//! Feeds arbitrary updates to a document with history; see `plait_kernel::fuzzing::loro_updates`.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plait_kernel::fuzzing::loro_updates(bytes));
