//! Per-call overhead of host capabilities (`PoolBuilder::capability`), for
//! 0 B, 1 KiB and 64 KiB payloads, at each level, against a native call of
//! the same handler, all measured in the same run:
//!
//! - `native`: the handler called directly from Rust on a value (the same
//!   bincode decode and encode the boundary does, no wasm).
//! - `instance_inline`: a task in a fresh instance calls a handler
//!   registered with `capability_inline` (runs on the task's thread).
//! - `instance_threaded`: the same with `capability` (the handler runs on a
//!   capability thread, so a blocked handler cannot outlive the deadline).
//! - `process_inline`: a `sandpool worker` subprocess forwards each call
//!   over its pipes to the pool's process (inline handler there, run on
//!   the thread that reads the worker's frames).
//! - `process_threaded`: the same with `capability` (one more hand-off, to
//!   a capability thread, in the pool's process).
//!
//! - `pipe` / `pipe_spin`: the physical floor of the process level, a bare
//!   round trip of the payload over two pipes to an echo thread, the reader
//!   sleeping in `read` (`pipe`) or polling first (`pipe_spin`, as the
//!   forwarded call does for `CALL_SPIN`); no encoding, no wasm.
//!
//! A call's overhead is (time of a task making N calls − time of a task
//! making none) / N, median of several rounds; it includes the guest SDK's
//! bincode work on both ends. Targets (issue 12): instance ≤ 1 µs per small
//! call, process ≤ 25 µs. The 1-minute load average is printed beside each
//! figure. Needs the example guests (`scripts/build-guests.sh`).
//!
//! Run: `cargo bench -p sandpool --bench capability` (`SANDPOOL_BENCH_QUICK=1`
//! for a short run; `SANDPOOL_CALL_SPIN_US=0` turns off the polling of
//! forwarded calls, to see what it saves on this machine).

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use sandpool::{Isolation, Limits, Pool, Task};

#[derive(Serialize)]
enum Plan {
    #[allow(dead_code)]
    Echo(ByteBuf),
    Repeat {
        times: u32,
        bytes: ByteBuf,
    },
}

#[derive(Deserialize, Debug, PartialEq)]
enum Answer {
    #[allow(dead_code)]
    Bytes(ByteBuf),
    Count(u32),
}

fn echo(bytes: ByteBuf) -> Result<ByteBuf, String> {
    Ok(bytes)
}

/// The pool for one level.
fn pool(level: &str) -> Pool<Plan, Answer> {
    let task: Task<Plan, Answer> = Task::from_file(common::guest("caller")).unwrap();
    let builder = Pool::builder(task)
        .workers(1)
        .limits(
            Limits::default()
                .max_calls(u32::MAX)
                .max_call_request(u64::MAX)
                .max_call_response(u64::MAX),
        )
        .capability("test.block", |(): ()| Ok::<ByteBuf, String>(ByteBuf::new()))
        .capability("test.fail", |_: String| {
            Ok::<ByteBuf, String>(ByteBuf::new())
        });
    let builder = match level {
        "instance_inline" => builder.capability_inline("test.echo", echo),
        "instance_threaded" => builder.capability("test.echo", echo),
        "process_threaded" => builder
            .isolation(Isolation::Process)
            .capability("test.echo", echo),
        _ => builder
            .isolation(Isolation::Process)
            .capability_inline("test.echo", echo),
    };
    builder.build().unwrap()
}

/// Seconds for one task making `times` calls with `size`-byte payloads.
fn task_seconds(pool: &Pool<Plan, Answer>, times: u32, size: usize) -> f64 {
    let plan = Plan::Repeat {
        times,
        bytes: ByteBuf::from(vec![7u8; size]),
    };
    let t0 = Instant::now();
    let answer = pool.submit(&plan).unwrap().wait().unwrap();
    let s = t0.elapsed().as_secs_f64();
    assert_eq!(answer, Answer::Count(times));
    s
}

/// Median per-call overhead in µs for `size`-byte payloads.
fn per_call_us(pool: &Pool<Plan, Answer>, size: usize, calls: u32, rounds: usize) -> f64 {
    let mut samples = Vec::with_capacity(rounds);
    task_seconds(pool, calls, size); // warm-up
    for _ in 0..rounds {
        let with = task_seconds(pool, calls, size);
        let without = task_seconds(pool, 0, size);
        samples.push((with - without).max(0.0) / calls as f64 * 1e6);
    }
    common::median(&mut samples)
}

/// Median µs per native call of the same handler on encoded bytes.
fn native_us(size: usize, rounds: usize) -> f64 {
    let request =
        bincode::serde::encode_to_vec(ByteBuf::from(vec![7u8; size]), bincode::config::standard())
            .unwrap();
    let n = 2000;
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        for _ in 0..n {
            let (value, _): (ByteBuf, usize) =
                bincode::serde::decode_from_slice(black_box(&request), bincode::config::standard())
                    .unwrap();
            let out = echo(value).unwrap();
            black_box(bincode::serde::encode_to_vec(&out, bincode::config::standard()).unwrap());
        }
        samples.push(t0.elapsed().as_secs_f64() / n as f64 * 1e6);
    }
    common::median(&mut samples)
}

/// Fills `buf` from `r`; with `spin`, first polls without sleeping (like the forwarded call).
fn read_all(r: &mut std::io::PipeReader, buf: &mut [u8], spin: bool) {
    let mut got = 0;
    while got < buf.len() {
        if spin {
            let mut pfd = libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let t0 = Instant::now();
            // SAFETY: one valid pollfd, no timeout.
            while unsafe { libc::poll(&mut pfd, 1, 0) } == 0 && t0.elapsed().as_micros() < 50 {
                std::thread::yield_now();
            }
        }
        got += r.read(&mut buf[got..]).unwrap();
    }
}

/// Median µs per bare pipe round trip of `size` bytes (plus a 4-byte
/// header, as a frame has) to an echo thread: the floor of a forwarded call.
fn pipe_us(size: usize, rounds: usize, n: usize, spin: bool) -> f64 {
    let (mut to_r, mut to_w) = std::io::pipe().unwrap();
    let (mut back_r, mut back_w) = std::io::pipe().unwrap();
    let len = size + 4;
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; len];
        for _ in 0..n * (rounds + 1) {
            read_all(&mut to_r, &mut buf, spin);
            back_w.write_all(&buf).unwrap();
        }
    });
    let frame = vec![7u8; len];
    let mut buf = vec![0u8; len];
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        for _ in 0..n {
            to_w.write_all(&frame).unwrap();
            read_all(&mut back_r, &mut buf, spin);
        }
        if round > 0 {
            samples.push(t0.elapsed().as_secs_f64() / n as f64 * 1e6);
        }
    }
    echo.join().unwrap();
    common::median(&mut samples)
}

fn main() {
    let quick = std::env::var_os("SANDPOOL_BENCH_QUICK").is_some();
    let rounds = if quick { 3 } else { 11 };
    common::machine::print_header("capability call overhead (µs per call)", false);
    let levels = [
        "instance_inline",
        "instance_threaded",
        "process_inline",
        "process_threaded",
    ];
    let pools: Vec<(&str, Pool<Plan, Answer>)> = levels.iter().map(|l| (*l, pool(l))).collect();
    let mut head = format!(
        "{:<8} {:>10} {:>9} {:>9}",
        "payload", "native", "pipe", "pipe_spin"
    );
    for level in levels {
        head.push_str(&format!(" {level:>18}"));
    }
    println!("{head}   load");
    for (label, size, calls) in [
        ("0 B", 0usize, 2000u32),
        ("1 KiB", 1024, 2000),
        ("64 KiB", 64 << 10, 200),
    ] {
        let calls = if quick { calls / 4 } else { calls };
        let native = native_us(size, rounds);
        let n = if size > 4096 { 200 } else { 2000 };
        let pipe = pipe_us(size, rounds, n, false);
        let pipe_spin = pipe_us(size, rounds, n, true);
        let mut line = format!("{label:<8} {native:>10.3} {pipe:>9.3} {pipe_spin:>9.3}");
        for (_, pool) in &pools {
            let us = per_call_us(pool, size, calls, rounds);
            line.push_str(&format!(" {:>9.3} ({:>5.0}x)", us, us / native.max(1e-9)));
        }
        println!("{line}   {}", common::load_average());
    }
    println!("targets: instance <= 1 us per small call, process <= 25 us");
    println!(
        "(x: per-call overhead over the native call; pipe, pipe_spin: bare round trip, the floor)"
    );
}
