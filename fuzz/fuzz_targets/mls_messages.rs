#![no_main]
//! Feeds arbitrary bytes to every MLS entry point; see `plait_kernel::fuzzing::mls_messages`.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plait_kernel::fuzzing::mls_messages(bytes));
