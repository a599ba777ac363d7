//! The process executor's costs (issue #3), measured in one run and printed:
//!
//! - (a) per-task overhead with persistent workers next to the in-process
//!   instance executor: echo task, 1 KiB input, through the same `Pool`
//!   API. Two views: the round trip of one task at a time (`submit` then
//!   `wait`, median of individually timed tasks) and the cost per task of a
//!   1,000-task `map` (pipelined, so the supervisor and the worker overlap),
//!   with 1 and 2 workers. The ratio process / instance is per round.
//! - (b) worker start-up: from spawning `sandpool worker` to its being
//!   ready for tasks, cold (the worker compiles the wasm) and with the
//!   precompiled module the pool hands over, for a small (echo) and a
//!   larger (doc_stats) module; with the part of it spent loading the module.
//!
//! Rounds are interleaved and medians over rounds are reported. Run with
//! `cargo bench -p sandpool --bench process` (needs `scripts/build-guests.sh`
//! first); it takes well under a minute. `SANDPOOL_BENCH_QUICK=1` divides
//! every count by 10 (a smoke test). Prints the issue-11 target line:
//! process-level `map` ≤ 2× the instance level per task.

mod common;
use common::machine::load_average;
use common::median;
use common::scaled;
use common::stats::target_line;
use common::wasm::{map_cost_us, pool, round_trip_us};
use common::{guest, sandpool_exe};

use std::time::{Duration, Instant};

use sandpool::{Isolation, Pool, Task};
use serde_bytes::ByteBuf;

/// Rounds of every measurement; medians are over rounds.
const ROUNDS: usize = 5;
/// Individually timed round trips per executor and round.
const ROUND_TRIPS: usize = 2000;
/// Tasks of each `map` measurement.
const MAP_TASKS: usize = 1000;
/// Worker start-ups per module and mode.
const STARTS: usize = 10;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

type Echo = Pool<ByteBuf, ByteBuf>;

struct Row {
    name: String,
    instance: Vec<f64>,
    process: Vec<f64>,
    ratio: Vec<f64>,
}

impl Row {
    fn new(name: String) -> Self {
        Row {
            name,
            instance: Vec::new(),
            process: Vec::new(),
            ratio: Vec::new(),
        }
    }
    fn push(&mut self, instance: f64, process: f64) {
        self.instance.push(instance);
        self.process.push(process);
        self.ratio.push(process / instance);
    }
    /// Prints the row; returns the median ratio process / instance.
    fn print(&mut self) -> f64 {
        let (i, p, r) = (
            median(&mut self.instance),
            median(&mut self.process),
            median(&mut self.ratio),
        );
        println!(
            "| {:<34} | {:>9.1} µs | {:>9.1} µs | {:>6.1}× | {:>9.1} µs |",
            self.name,
            i,
            p,
            r,
            p - i
        );
        r
    }
}

fn overhead() {
    let task: Task<ByteBuf, ByteBuf> = Task::from_file(guest("echo")).expect("echo loads");
    let input = ByteBuf::from(vec![0x5a; 1024]);
    let pools: Vec<(usize, Echo, Echo)> = [1, 2]
        .into_iter()
        .map(|w| {
            (
                w,
                pool(task.clone(), Isolation::Instance, w),
                pool(task.clone(), Isolation::Process, w),
            )
        })
        .collect();
    // The same pools with the window fixed at 16 per worker (the default
    // before issue 11), measured in the same rounds.
    let fixed = |isolation: Isolation, workers: usize| -> Echo {
        let builder = Pool::builder(task.clone())
            .workers(workers)
            .isolation(isolation)
            .window(16 * workers);
        let builder = match isolation {
            Isolation::Process => builder.worker_program(sandpool_exe()),
            _ => builder,
        };
        builder.build().expect("pool starts")
    };
    let old: Vec<(Echo, Echo)> = [1, 2]
        .into_iter()
        .map(|w| (fixed(Isolation::Instance, w), fixed(Isolation::Process, w)))
        .collect();
    let (trips, maps) = (scaled(ROUND_TRIPS, 50), scaled(MAP_TASKS, 50));
    // Warm up: allocator slots, page cache, branch predictors, both sides of every pipe.
    for (_, instance, process) in &pools {
        map_cost_us(instance, &input, maps);
        map_cost_us(process, &input, maps);
    }
    for (instance, process) in &old {
        map_cost_us(instance, &input, maps);
        map_cost_us(process, &input, maps);
    }
    let mut old1 = Row::new("  same, window 16 (old default)".into());
    let mut old2 = Row::new("  same, window 32 (old default)".into());
    let mut trip = Row::new("round trip, 1 worker (submit+wait)".into());
    let mut map1 = Row::new(format!("map of {maps}, 1 worker, per task"));
    let mut map2 = Row::new(format!("map of {maps}, 2 workers, per task"));
    for _ in 0..ROUNDS {
        let (_, instance, process) = &pools[0];
        trip.push(
            round_trip_us(instance, &input, trips),
            round_trip_us(process, &input, trips),
        );
        map1.push(
            map_cost_us(instance, &input, maps),
            map_cost_us(process, &input, maps),
        );
        let (instance, process) = &old[0];
        old1.push(
            map_cost_us(instance, &input, maps),
            map_cost_us(process, &input, maps),
        );
        let (_, instance, process) = &pools[1];
        map2.push(
            map_cost_us(instance, &input, maps),
            map_cost_us(process, &input, maps),
        );
        let (instance, process) = &old[1];
        old2.push(
            map_cost_us(instance, &input, maps),
            map_cost_us(process, &input, maps),
        );
    }
    for (_, _, process) in &pools {
        let stats = process.process_stats().expect("process pool");
        assert_eq!(stats.crashed, 0, "{stats:?}");
    }
    println!("## (a) per-task overhead: echo, 1 KiB input (median of {ROUNDS} rounds)\n");
    println!(
        "| {:<34} | {:>12} | {:>12} | {:>7} | {:>12} |",
        "measure", "instance", "process", "ratio", "difference"
    );
    println!(
        "|{:-<36}|{:->14}|{:->14}|{:->9}|{:->14}|",
        "", "", "", "", ""
    );
    trip.print();
    let r1 = map1.print();
    old1.print();
    let r2 = map2.print();
    old2.print();
    println!("\nTarget for the process executor: 50 µs or less per task.\n");
    for (workers, r) in [(1, r1), (2, r2)] {
        target_line(
            &format!(
                "process-level `map` vs instance-level `map`, echo 1 KiB, {workers} worker(s), per task"
            ),
            &format!("{r:.2}× (median of per-round ratios)"),
            "≤ 2×",
            r <= 2.0,
        );
    }
    println!();
}

fn startups() {
    println!(
        "## (b) worker start-up: spawn to ready (median of {})\n",
        scaled(STARTS, 2)
    );
    println!(
        "| {:<10} | {:>9} | {:>22} | {:>22} | {:>7} |",
        "module", "wasm", "cold (compiles)", "precompiled", "speedup"
    );
    println!(
        "|{:-<12}|{:->11}|{:->24}|{:->24}|{:->9}|",
        "", "", "", "", ""
    );
    for name in ["echo", "doc_stats"] {
        let path = guest(name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let task: Task<ByteBuf, ByteBuf> = Task::from_file(&path).expect("module loads");
        let mut cold = (Vec::new(), Vec::new());
        let mut warm = (Vec::new(), Vec::new());
        for _ in 0..scaled(STARTS, 2) {
            for (precompiled, into) in [(false, &mut cold), (true, &mut warm)] {
                let pool = Pool::builder(task.clone())
                    .workers(1)
                    .isolation(Isolation::Process)
                    .worker_program(sandpool_exe())
                    .precompiled_module(precompiled)
                    .build()
                    .expect("pool starts");
                let start = pool
                    .process_stats()
                    .and_then(|s| s.last_start)
                    .expect("a worker started");
                assert_eq!(start.precompiled, precompiled, "{start:?}");
                into.0.push(micros(start.ready_after) / 1000.0);
                into.1.push(micros(start.load_time) / 1000.0);
                pool.shutdown(true, false);
            }
        }
        let (c, cl) = (median(&mut cold.0), median(&mut cold.1));
        let (w, wl) = (median(&mut warm.0), median(&mut warm.1));
        println!(
            "| {:<10} | {:>6} KB | {:>6.1} ms (load {:>5.1}) | {:>6.1} ms (load {:>5.1}) | {:>6.1}× |",
            name,
            size / 1000,
            c,
            cl,
            w,
            wl,
            c / w
        );
    }
    println!(
        "\n\"load\": the worker's own time to compile or deserialize and check the module; the rest is"
    );
    println!("process creation, exec, runtime and engine set-up and the handshake.");
}

fn main() {
    let started = Instant::now();
    println!("# sandpool process executor benchmark\n");
    // Other work on the machine inflates these figures (wake-ups wait for a free core): say how busy it was.
    for line in common::machine::header(false) {
        println!("{line}");
    }
    println!();
    overhead();
    startups();
    println!();
    println!("load average at end: {}", load_average());
    println!("\n(whole run: {:.1} s)", started.elapsed().as_secs_f64());
}
