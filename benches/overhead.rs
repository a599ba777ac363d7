//! Per-task overhead at each isolation level, for 0 B, 1 KiB and 1 MiB
//! inputs of the echo task (trivial work, so only the level's cost shows).
//!
//! Levels, cheapest first:
//! - `native_call`: the echo as a plain Rust function call (a copy of the bytes).
//! - `native_thread`: the same closure sent to one native worker thread and
//!   waited for (channel round trip): the "thread pool" level.
//! - `wasm_reused`: one wasm instance reused for every task (no isolation
//!   between tasks): copy in, call, copy out. The floor of any wasm path.
//! - `fresh_raw`: a fresh instance per task on the calling thread
//!   (`CompiledModule::run_task`, the executor's own path, with no pool).
//! - `pool_map_1w`: fresh instances through the public `Pool` API with one
//!   worker, throughput mode (`map` over a batch; per-task time amortised).
//! - `pool_roundtrip_1w`: `submit` + `wait` of one task at a time through a
//!   one-worker `Pool`: latency, including the hand-off to the worker thread
//!   and the encode/decode of the boundary.
//!
//! The wasm levels above `wasm_reused` take and return encoded bytes; the
//! pool levels also encode the input and decode the output (for a byte
//! string both are a copy). Run with `cargo bench --bench overhead`; needs
//! the example guests (`scripts/build-guests.sh`).

#![allow(missing_docs)] // criterion's macros generate undocumented items

mod common;
use common::guest;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use sandpool::__bench::DirectRunner;
use sandpool::{Limits, Pool, Task};
use serde_bytes::ByteBuf;

const SIZES: [(&str, usize); 3] = [("0B", 0), ("1KiB", 1 << 10), ("1MiB", 1 << 20)];

fn overhead(c: &mut Criterion) {
    let task: Task<ByteBuf, ByteBuf> = Task::from_file(guest("echo")).expect("load echo.wasm");
    let limits = Limits::default();
    let runner = DirectRunner::new(&task, limits).expect("runner");
    let mut reused = runner.reused_instance().expect("instance");
    let pool = Pool::builder(task.clone())
        .workers(1)
        .build()
        .expect("pool");

    // One native worker thread fed through a channel: the thread-pool level.
    type Job = Box<dyn FnOnce() + Send>;
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
    let native_worker = std::thread::spawn(move || {
        for job in job_rx {
            job();
        }
    });

    for (label, size) in SIZES {
        let mut group = c.benchmark_group(format!("overhead/{label}"));
        group.throughput(Throughput::Elements(1));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        let bytes = ByteBuf::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
        let encoded = sandpool_guest::abi::encode(&bytes).expect("encode");
        assert_eq!(runner.run_fresh(&encoded).expect("fresh")[..], encoded[..]);
        assert_eq!(reused.run(&encoded).expect("reused")[..], encoded[..]);

        group.bench_function(BenchmarkId::new("native_call", label), |b| {
            let echo = |input: &ByteBuf| -> ByteBuf { input.clone() };
            b.iter(|| black_box(echo(black_box(&bytes))))
        });
        group.bench_function(BenchmarkId::new("native_thread", label), |b| {
            b.iter(|| {
                let input = bytes.clone();
                let (tx, rx) = crossbeam_channel::bounded(1);
                job_tx
                    .send(Box::new(move || drop(tx.send(input))))
                    .expect("send");
                black_box(rx.recv().expect("recv"))
            })
        });
        group.bench_function(BenchmarkId::new("wasm_reused", label), |b| {
            b.iter(|| black_box(reused.run(black_box(&encoded)).expect("reused")))
        });
        group.bench_function(BenchmarkId::new("fresh_raw", label), |b| {
            b.iter(|| black_box(runner.run_fresh(black_box(&encoded)).expect("fresh")))
        });
        group.bench_function(BenchmarkId::new("pool_map_1w", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for out in pool.map(std::iter::repeat_n(&bytes, iters as usize)) {
                    black_box(out.expect("map"));
                }
                start.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("pool_roundtrip_1w", label), |b| {
            b.iter(|| black_box(pool.submit(&bytes).expect("submit").wait().expect("wait")))
        });
        group.finish();
    }
    drop(job_tx);
    native_worker.join().expect("native worker");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = overhead
}
criterion_main!(benches);
