//! A worker process's byte stream through the supervisor's frame reader and message decoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandpool::fuzzing::worker_frames(data));
