//! A guest's output bytes (result tag + bincode value) through the host's decoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandpool::fuzzing::guest_output(data));
