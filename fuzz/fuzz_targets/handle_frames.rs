#![no_main]
//! Feeds arbitrary frames to an acceptor and a device; see `plait_kernel::fuzzing::handle_frames`.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plait_kernel::fuzzing::handle_frames(bytes));
