#![no_main]
//! Decodes arbitrary bytes as a wire frame; see `plait_kernel::fuzzing::decode_message`.
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| plait_kernel::fuzzing::decode_message(bytes));
