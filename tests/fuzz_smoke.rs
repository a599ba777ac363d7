//! A short, deterministic fuzz run in the normal test suite: seeded random
//! mutations of well-formed inputs thrown at the same three entry points
//! the cargo-fuzz targets use (`fuzz/`, `scripts/fuzz.sh`), so every run of
//! the tests exercises them without cargo-fuzz or a nightly compiler.
//!
//! Each entry point must return normally for every input: a panic fails the
//! test, and so does a slow input (a hang or an unbounded allocation shows
//! up as one).
//!
//! With `SANDPOOL_FUZZ_SEEDS=DIR`, `seeds_are_written_for_cargo_fuzz` writes
//! the seed inputs to `DIR/TARGET/` for the fuzzer's corpora.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Interesting bytes for bincode and framing: varint markers, tags, extremes.
const SPECIAL: &[u8] = &[0, 1, 2, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];

/// One random mutation of `input`, libFuzzer-style.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = rng.random();
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = SPECIAL[rng.random_range(0..SPECIAL.len())];
            }
            3 => {
                let i = rng.random_range(0..=len);
                out.insert(i, SPECIAL[rng.random_range(0..SPECIAL.len())]);
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                out.truncate(rng.random_range(0..len));
            }
            6 if len > 0 => {
                // Duplicate a chunk (repeated fields, frames).
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(32));
                let chunk: Vec<u8> = out[i..i + n].to_vec();
                let at = rng.random_range(0..=len);
                out.splice(at..at, chunk);
            }
            7 if len >= 4 => {
                // A large little-endian number where a length or count might be.
                let i = rng.random_range(0..=len - 4);
                let big: u32 = [u32::MAX, 1 << 31, 1 << 24, 65_536, 0xffff][rng.random_range(0..5)];
                out[i..i + 4].copy_from_slice(&big.to_le_bytes());
            }
            _ => {
                let n = rng.random_range(1..8);
                out.extend((0..n).map(|_| rng.random::<u8>()));
            }
        }
    }
    out
}

/// Runs `target` on `rounds` mutations of the seeds; no input may panic or take more than `slow`.
fn fuzz(seeds: &[Vec<u8>], rounds: usize, seed: u64, slow: Duration, target: impl Fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(seed);
    for input in seeds {
        target(input);
    }
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, base);
        let started = Instant::now();
        target(&input);
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < slow,
            "round {round} (seed {seed}) took {took:?} on {} bytes: {:02x?}",
            input.len(),
            &input[..input.len().min(64)]
        );
    }
    eprintln!("{rounds} mutations, slowest {slowest:?}");
}

fn module_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for name in [
        "infinite_loop",
        "deep_recursion",
        "memory_growth",
        "bad_output",
        "bad_alloc",
        "clock_loop",
        "unknown_import",
        "wasi_denied",
    ] {
        let path = common::workspace().join(format!("tests/hostile/{name}.wat"));
        let text = std::fs::read(&path).expect("a corpus module");
        // Binary mutations reach further than text ones, which mostly fail to parse.
        seeds.push(wat::parse_bytes(&text).expect("valid WAT").into_owned());
        seeds.push(text);
    }
    seeds
}

#[test]
fn mutated_guest_outputs_decode_or_fail_without_panicking() {
    let seeds = sandpool::fuzzing::guest_output_seeds();
    fuzz(
        &seeds,
        5000,
        1,
        Duration::from_secs(1),
        sandpool::fuzzing::guest_output,
    );
}

#[test]
fn mutated_worker_frames_decode_or_fail_without_panicking() {
    let seeds = sandpool::fuzzing::worker_frame_seeds();
    // A frame reader waits at most 1 s for bytes that never come: 2 s is slow.
    fuzz(
        &seeds,
        3000,
        2,
        Duration::from_secs(2),
        sandpool::fuzzing::worker_frames,
    );
}

#[test]
fn mutated_modules_load_or_fail_without_panicking() {
    // Each load compiles (a few ms when valid); a run is capped at 20 ms.
    fuzz(
        &module_seeds(),
        400,
        3,
        Duration::from_secs(15),
        sandpool::fuzzing::module,
    );
}

/// Not a check: writes the seed corpora for cargo-fuzz (run by scripts/fuzz.sh).
#[test]
#[ignore = "writes fuzz seeds; run by scripts/fuzz.sh with SANDPOOL_FUZZ_SEEDS set"]
fn seeds_are_written_for_cargo_fuzz() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("SANDPOOL_FUZZ_SEEDS")
            .expect("SANDPOOL_FUZZ_SEEDS names the corpus folder"),
    );
    for (target, seeds) in [
        ("guest_output", sandpool::fuzzing::guest_output_seeds()),
        ("worker_frames", sandpool::fuzzing::worker_frame_seeds()),
        ("module", module_seeds()),
    ] {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(target).join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
