//! Per-task overhead of the process levels, for 0 B, 1 KiB and 1 MiB inputs
//! of the echo task: the two rungs `benches/overhead.rs` does not cover.
//!
//! - `process_roundtrip_1w`: `submit` + `wait` of one task at a time through
//!   a one-worker `Pool` with [`Isolation::Process`] (a persistent
//!   `sandpool worker` subprocess): latency, with the pipe round trip, the
//!   frames and a fresh wasm instance in the worker.
//! - `process_map_1w`: the same pool in throughput mode (`map` over a
//!   batch; per-task time amortised, the supervisor and the worker overlap).
//! - `process_fresh_per_task`: a fresh subprocess per task
//!   (`max_tasks_per_worker(1)`): every task waits for a new worker to
//!   start and load the precompiled module, then runs; the old one is
//!   reaped. Python's `max_tasks_per_child=1`.
//! - `instance_roundtrip_1w`: the in-process instance level through the
//!   same API, as the reference in each group (`overhead.rs` has the others).
//!
//! Run with `cargo bench -p sandpool --bench overhead_process`; needs the
//! example guests (`scripts/build-guests.sh`).

#![allow(missing_docs)] // criterion's macros generate undocumented items

mod common;
use common::guest;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use sandpool::{Isolation, Pool, Task};
use serde_bytes::ByteBuf;

const SIZES: [(&str, usize); 3] = [("0B", 0), ("1KiB", 1 << 10), ("1MiB", 1 << 20)];

type Echo = Pool<ByteBuf, ByteBuf>;

fn pool(
    task: &Task<ByteBuf, ByteBuf>,
    isolation: Isolation,
    tasks_per_worker: Option<u64>,
) -> Echo {
    let builder = Pool::builder(task.clone()).workers(1).isolation(isolation);
    // Worker options are refused on an instance pool.
    let builder = match isolation {
        Isolation::Process => builder.worker_program(env!("CARGO_BIN_EXE_sandpool")),
        _ => builder,
    };
    let builder = match tasks_per_worker {
        Some(n) => builder.max_tasks_per_worker(n),
        None => builder,
    };
    builder.build().expect("pool starts")
}

fn overhead_process(c: &mut Criterion) {
    let task: Task<ByteBuf, ByteBuf> = Task::from_file(guest("echo")).expect("load echo.wasm");
    let instance = pool(&task, Isolation::Instance, None);
    let persistent = pool(&task, Isolation::Process, None);
    let fresh = pool(&task, Isolation::Process, Some(1));

    for (label, size) in SIZES {
        let mut group = c.benchmark_group(format!("overhead_process/{label}"));
        group.throughput(Throughput::Elements(1));
        let bytes = ByteBuf::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
        for p in [&instance, &persistent, &fresh] {
            let out = p.submit(&bytes).expect("submit").wait().expect("echo");
            assert_eq!(out, bytes);
        }
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        group.bench_function(BenchmarkId::new("instance_roundtrip_1w", label), |b| {
            b.iter(|| {
                black_box(
                    instance
                        .submit(&bytes)
                        .expect("submit")
                        .wait()
                        .expect("echo"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("process_roundtrip_1w", label), |b| {
            b.iter(|| {
                black_box(
                    persistent
                        .submit(&bytes)
                        .expect("submit")
                        .wait()
                        .expect("echo"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("process_map_1w", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for out in persistent.map(std::iter::repeat_n(&bytes, iters as usize)) {
                    black_box(out.expect("echo"));
                }
                start.elapsed()
            })
        });
        // Milliseconds per task: the fewest samples criterion takes, over a longer window.
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(4));
        group.bench_function(BenchmarkId::new("process_fresh_per_task", label), |b| {
            b.iter(|| black_box(fresh.submit(&bytes).expect("submit").wait().expect("echo")))
        });
        group.finish();
    }
    let stats = fresh.process_stats().expect("a process pool");
    assert_eq!(stats.crashed, 0, "{stats:?}");
    assert!(stats.recycled > 0, "{stats:?}");
    let stats = persistent.process_stats().expect("a process pool");
    assert_eq!(stats.crashed, 0, "{stats:?}");
    for p in [instance, persistent, fresh] {
        p.shutdown(true, false);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = overhead_process
}
criterion_main!(benches);
