#![no_main]
//! Feeds arbitrary frames to a device holding a document; see `plait_kernel::fuzzing::document_frames`.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plait_kernel::fuzzing::document_frames(bytes));
