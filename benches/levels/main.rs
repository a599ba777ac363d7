//! The macro benchmark: the same workloads at every level of the isolation
//! ladder, in one run, beside the seed article's two Python executors.
//! This file holds the definitions (levels, workloads, sizes) and the entry
//! point; child.rs measures inside one child process, runner.rs runs the
//! children and Python, report.rs writes the report and plot.rs the SVG.
//!
//! Levels (each run of a level on a workload is a fresh child process, so
//! its peak RSS is its own):
//!
//! - `native`: the native thread pool, sandpool's [`sandpool::IoPool`]: CPU
//!   work as blocking closures (`submit_blocking`) calling
//!   `sandpool_guest::workloads` natively, with the concurrency bound and
//!   blocking threads set to the CPU count; the sleep workload as async
//!   `tokio::time::sleep` tasks.
//! - `instance`: a [`sandpool::Pool`] with `Isolation::Instance` (a fresh
//!   wasm instance per task, in process), one worker thread per CPU.
//! - `process`: a `Pool` with `Isolation::Process` (persistent `sandpool
//!   worker` subprocesses), one per CPU.
//! - `py-thread`, `py-process`: `benches/python/executors.py`
//!   (ThreadPoolExecutor / ProcessPoolExecutor, `chunksize=1`), whose JSON
//!   line is parsed.
//!
//! Workloads (the definitions of `executors.py`, including `make_doc`):
//! noop (1 KiB echo), docstats, primes, sleep, read, mixed (read → doc_stats
//! → write JSON; the wasm levels run it through `Pipeline`).
//!
//! Measured as `executors.py` measures: throughput over the whole batch,
//! pool start-up included (module compilation is not: it is the analogue of
//! Python's import); latency per task one task at a time through the warm
//! pool (submit to result), over the first 500 tasks; peak RSS the largest
//! of the level's process and its worker processes. A last child measures
//! the targets that need interleaved rounds, with the helpers of
//! benches/common/wasm.rs that the throughput benchmark reports too.
//!
//! Writes `target/bench-report/report.md` and `throughput.svg`, and prints
//! the report. `cargo bench -p sandpool --bench levels` (or `just
//! bench-report`) after `scripts/build-guests.sh`. `SANDPOOL_LEVELS_QUICK=1`
//! (or `SANDPOOL_BENCH_QUICK=1`) runs a tenth of every workload (a smoke
//! test, not a measurement).

#[path = "../common/mod.rs"]
mod common;

mod child;
mod plot;
mod report;
mod runner;

use std::time::Duration;

/// Environment variable that makes this binary one level's child process.
const CHILD_ENV: &str = "SANDPOOL_LEVELS_CHILD";
const DATA_ENV: &str = "SANDPOOL_LEVELS_DATA";
const OUT_ENV: &str = "SANDPOOL_LEVELS_OUT";

/// Workload sizes: those of `executors.py` (keep them equal).
const NOOP_TASKS: usize = 10_000;
const NOOP_BYTES: usize = 1024;
const DOCS: usize = 2_000;
const DOC_BYTES: usize = 4096;
const PRIMES_TASKS: usize = 200;
const PRIMES_LIMIT: u64 = 30_000;
const SLEEP_TASKS: usize = 1_000;
const SLEEP: Duration = Duration::from_millis(10);
/// Files under the data directory (the read and mixed workloads).
const FILES: usize = 2_000;
/// Tasks timed one at a time for the latency columns (as `executors.py`).
const LATENCY_TASKS: usize = 500;
/// Concurrency of the sleep workload at every level. With one worker per
/// CPU (2 here) every executor would sleep 2 tasks at a time, 200 tasks/s,
/// and the run would take 5 s per level: the bound, not the executor,
/// would be measured. 32 is a usual I/O concurrency.
const SLEEP_CONCURRENCY: usize = 32;

/// Runs of each Rust level on each workload (but sleep); the median is reported.
const REPEATS: usize = 3;
/// Rounds of the interleaved target measurements; medians over rounds.
const TARGET_ROUNDS: usize = 9;
/// Tasks of each step of the single-thread breakdown.
const BREAKDOWN_DOCS: usize = 1_500;
const BREAKDOWN_PRIMES: usize = 150;
/// Round trips of each kind, alternated task by task.
const ROUND_TRIPS: usize = 3_000;
/// Individually timed fresh instances per round for the raw overhead.
const OVERHEAD_TASKS: usize = 4_000;
/// Prime-counting tasks per worker per scaling measurement.
const SCALING_TASKS_PER_WORKER: usize = 40;
/// Documents per interleaved docstats measurement.
const SCALING_DOCS: usize = 600;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Native,
    Instance,
    Process,
    PyThread,
    PyProcess,
}

const LEVELS: [Level; 5] = [
    Level::Native,
    Level::Instance,
    Level::Process,
    Level::PyThread,
    Level::PyProcess,
];

impl Level {
    fn key(self) -> &'static str {
        match self {
            Level::Native => "native",
            Level::Instance => "instance",
            Level::Process => "process",
            Level::PyThread => "py-thread",
            Level::PyProcess => "py-process",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Level::Native => "native threads (IoPool)",
            Level::Instance => "wasm, fresh instance",
            Level::Process => "wasm, process workers",
            Level::PyThread => "Python ThreadPoolExecutor",
            Level::PyProcess => "Python ProcessPoolExecutor",
        }
    }
    fn from_key(key: &str) -> Option<Level> {
        LEVELS.into_iter().find(|l| l.key() == key)
    }
}

struct Workload {
    key: &'static str,
    kind: &'static str,
    what: &'static str,
}

const WORKLOADS: [Workload; 6] = [
    Workload {
        key: "noop",
        kind: "overhead",
        what: "10,000 tasks returning their 1 KiB input (echo guest, `Task<ByteBuf, ByteBuf>`)",
    },
    Workload {
        key: "docstats",
        kind: "CPU",
        what: "2,000 documents of about 4 KiB (`make_doc`) → document statistics (doc_stats guest, `Task<FileInput, Json<DocStats>>`)",
    },
    Workload {
        key: "primes",
        kind: "CPU",
        what: "200 tasks counting the primes below 30,000 by trial division (primes guest, `Task<u64, u64>`)",
    },
    Workload {
        key: "sleep",
        kind: "I/O",
        what: "1,000 tasks sleeping 10 ms, concurrency 32 at every level",
    },
    Workload {
        key: "read",
        kind: "I/O",
        what: "2,000 reads of 4 KiB local files (the page cache is warm)",
    },
    Workload {
        key: "mixed",
        kind: "mixed",
        what: "read a file → document statistics → write its JSON (temporary file + rename), 2,000 files",
    },
];

/// Why a level does not run a workload, or `None` when it does.
fn not_applicable(level: Level, workload: &str) -> Option<&'static str> {
    match (level, workload) {
        (Level::Instance | Level::Process, "sleep") => Some(
            "wasm guests cannot sleep: sandpool's WASI answers `poll_oneoff` with ENOSYS, since a waiting guest would hold a CPU worker idle; waiting belongs on the IoPool",
        ),
        (Level::Process, "read") => Some(
            "directory grants are `Isolation::Instance` only; at the process level the host reads and ships the bytes, which is the mixed workload",
        ),
        _ => None,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; arguments are ignored.
    match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (level, workload) = spec.split_once(':').expect("LEVEL:WORKLOAD");
            let value = if level == "targets" {
                child::targets_child()
            } else {
                let level = Level::from_key(level).expect("a level");
                child::child_json(&child::child(level, workload))
            };
            println!("{value}");
        }
        Err(_) => report::write(runner::run_all()),
    }
}
