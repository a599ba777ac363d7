//! Inputs kept from fuzzing (`fuzz/`, `scripts/fuzz.sh`) and from the
//! hostile-guest analysis, replayed through the same entry points on every
//! test run.
//!
//! No fuzz target has produced a crash so far (30 s per target: about
//! 1.7 million guest outputs, 15,000 modules and 6,500 worker frame streams
//! per run). What is kept here are the most expensive inputs found: lengths
//! and counts that claim far more than the bytes behind them. Each must be
//! refused quickly, without allocating what it claims. A crashing input found
//! later goes here too, as its bytes, with the date and target.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::time::{Duration, Instant};

/// Runs `f` on `input`, and checks it took under `limit` and kept under 64 MiB more resident.
fn bounded(name: &str, limit: Duration, input: &[u8], f: fn(&[u8])) {
    let before = common::rss();
    let started = Instant::now();
    f(input);
    let took = started.elapsed();
    let grown = common::rss().saturating_sub(before);
    assert!(took < limit, "{name}: took {took:?}");
    assert!(grown < 64 << 20, "{name}: RSS grew by {} MiB", grown >> 20);
}

#[test]
fn outputs_claiming_huge_lengths_are_refused_without_allocating_them() {
    let cases: [(&str, Vec<u8>); 5] = [
        // A string of 2^40 bytes: over the 1 GiB decode limit.
        ("2^40 string", vec![0, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0]),
        // A string of exactly 1 GiB, at the decode limit, with 1 byte behind it.
        ("1 GiB string", vec![0, 0xfc, 0, 0, 0, 0x40, b'x']),
        // A sequence of 2^32 - 1 u64s.
        (
            "4G-element sequence",
            vec![0, 0xfc, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        // Nested sequences, each claiming 2^31 elements.
        (
            "nested claims",
            [vec![0, 6], [0xfc, 0, 0, 0, 0x80].repeat(64)].concat(),
        ),
        // A map claiming 2^24 entries with one short key.
        ("map", vec![0, 7, 0xfc, 0, 0, 0, 1, 1, b'k', 0]),
    ];
    for (name, input) in cases {
        bounded(
            name,
            Duration::from_secs(1),
            &input,
            sandpool::fuzzing::guest_output,
        );
    }
}

#[test]
fn frames_claiming_huge_payloads_are_refused_or_cut_short_promptly() {
    let cases: [(&str, Vec<u8>); 4] = [
        // A length prefix of 4 GiB - 1: over every frame bound, refused before allocating.
        ("u32::MAX frame", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        // 60 MiB claimed (under the response bound), 3 bytes sent, then end of stream.
        (
            "60 MiB frame, truncated",
            [vec![0, 0, 0xc0, 0x03], vec![1, 2, 3]].concat(),
        ),
        // A valid empty frame, then a truncated header.
        ("truncated header", vec![0, 0, 0, 0, 7, 0]),
        // A frame whose payload claims a 2^40-byte output inside a Done response.
        (
            "Done with a huge output",
            [
                vec![11, 0, 0, 0, 0, 1, 0],
                vec![0xfd, 0, 0, 0, 0, 0, 1, 0, 0],
            ]
            .concat(),
        ),
    ];
    for (name, input) in cases {
        bounded(
            name,
            Duration::from_secs(2),
            &input,
            sandpool::fuzzing::worker_frames,
        );
    }
}

#[test]
fn modules_with_huge_declared_sections_are_refused_promptly() {
    let cases: [(&str, Vec<u8>); 3] = [
        // A type section claiming 2^32 - 1 entries in 5 bytes.
        (
            "type count",
            [
                b"\0asm\x01\0\0\0".to_vec(),
                vec![1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f],
            ]
            .concat(),
        ),
        // A data section claiming a 4 GiB segment.
        (
            "data segment",
            [
                b"\0asm\x01\0\0\0".to_vec(),
                vec![5, 3, 1, 0, 1],
                vec![11, 9, 1, 0, 0x41, 0, 0x0b, 0xff, 0xff, 0xff, 0x0f],
            ]
            .concat(),
        ),
        // A memory of 65536 pages with a data segment at its last byte.
        (
            "memory at the top",
            b"(module (memory 65536) (data (i32.const 0xffffffff) \"x\"))".to_vec(),
        ),
    ];
    for (name, input) in cases {
        bounded(
            name,
            Duration::from_secs(5),
            &input,
            sandpool::fuzzing::module,
        );
    }
}
