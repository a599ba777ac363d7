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
//! first); it takes well under a minute.

mod common;
use common::{guest, median};

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

fn echo_pool(task: &Task<ByteBuf, ByteBuf>, isolation: Isolation, workers: usize) -> Echo {
    Pool::builder(task.clone())
        .workers(workers)
        .isolation(isolation)
        .worker_program(env!("CARGO_BIN_EXE_sandpool"))
        .build()
        .expect("pool starts")
}

/// Median µs of one task's round trip (submit, then wait for its result).
fn round_trip(pool: &Echo, input: &ByteBuf) -> f64 {
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let out = pool
            .submit(input)
            .expect("submit")
            .wait()
            .expect("echo succeeds");
        times.push(micros(started.elapsed()));
        assert_eq!(out.len(), input.len());
    }
    median(&mut times)
}

/// µs per task of a `map` over `MAP_TASKS` inputs.
fn map_cost(pool: &Echo, input: &ByteBuf) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    for out in pool.map(std::iter::repeat_n(input, MAP_TASKS)) {
        assert_eq!(out.expect("echo succeeds").len(), input.len());
        n += 1;
    }
    assert_eq!(n, MAP_TASKS);
    micros(started.elapsed()) / MAP_TASKS as f64
}

struct Row {
    name: &'static str,
    instance: Vec<f64>,
    process: Vec<f64>,
    ratio: Vec<f64>,
}

impl Row {
    fn new(name: &'static str) -> Self {
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
    fn print(&mut self) {
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
                echo_pool(&task, Isolation::Instance, w),
                echo_pool(&task, Isolation::Process, w),
            )
        })
        .collect();
    // Warm up: allocator slots, page cache, branch predictors, both sides of every pipe.
    for (_, instance, process) in &pools {
        map_cost(instance, &input);
        map_cost(process, &input);
    }
    let mut trip = Row::new("round trip, 1 worker (submit+wait)");
    let mut map1 = Row::new("map of 1,000, 1 worker, per task");
    let mut map2 = Row::new("map of 1,000, 2 workers, per task");
    for _ in 0..ROUNDS {
        let (_, instance, process) = &pools[0];
        trip.push(round_trip(instance, &input), round_trip(process, &input));
        map1.push(map_cost(instance, &input), map_cost(process, &input));
        let (_, instance, process) = &pools[1];
        map2.push(map_cost(instance, &input), map_cost(process, &input));
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
    map1.print();
    map2.print();
    println!("\nTarget for the process executor: 50 µs or less per task.\n");
}

fn startups() {
    println!("## (b) worker start-up: spawn to ready (median of {STARTS})\n");
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
        for _ in 0..STARTS {
            for (precompiled, into) in [(false, &mut cold), (true, &mut warm)] {
                let pool = Pool::builder(task.clone())
                    .workers(1)
                    .isolation(Isolation::Process)
                    .worker_program(env!("CARGO_BIN_EXE_sandpool"))
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
    let load = |when: &str| {
        let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        println!(
            "load average {when}: {} ({cpus} CPUs)",
            avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    };
    load("at start");
    println!();
    overhead();
    startups();
    println!();
    load("at end");
    println!("\n(whole run: {:.1} s)", started.elapsed().as_secs_f64());
}
