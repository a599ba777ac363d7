//! Untrusted wasm (binary or text) through loading (`Task::from_bytes`) and one run.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandpool::fuzzing::module(data));
