//! The macro benchmark: the same workloads at every level of the isolation
//! ladder, in one run, beside the seed article's two Python executors.
//!
//! Levels (each run of a level on a workload is a fresh child process, so
//! its peak RSS is its own):
//!
//! - `native`: the native thread pool, sandpool's [`IoPool`]: CPU work as
//!   blocking closures (`submit_blocking`) calling `sandpool_guest::workloads`
//!   natively, with the concurrency bound and blocking threads set to the
//!   CPU count; the sleep workload as async `tokio::time::sleep` tasks.
//! - `instance`: a [`Pool`] with [`Isolation::Instance`] (a fresh wasm
//!   instance per task, in process), one worker thread per CPU.
//! - `process`: a [`Pool`] with [`Isolation::Process`] (persistent
//!   `sandpool worker` subprocesses), one per CPU.
//! - `py-thread`, `py-process`: `benches/python/executors.py`
//!   (ThreadPoolExecutor / ProcessPoolExecutor, `chunksize=1`), whose JSON
//!   line is parsed.
//!
//! Workloads (the definitions of `executors.py`, including `make_doc`):
//! noop (1 KiB echo), docstats, primes, sleep, read, mixed (read → doc_stats
//! → write JSON; the wasm levels run it through [`Pipeline`]).
//!
//! Measured as `executors.py` measures: throughput over the whole batch,
//! pool start-up included (module compilation is not: it is the analogue of
//! Python's import); latency per task one task at a time through the warm
//! pool (submit to result), over the first 500 tasks; peak RSS the largest
//! of the level's process and its worker processes. A last child measures
//! the issue-6 targets that need interleaved rounds (raw fresh-instance
//! overhead; 1 vs 2 workers; instance vs native on the CPU workloads).
//!
//! Writes `target/bench-report/report.md` and `throughput.svg`, and prints
//! the report. `cargo bench -p sandpool --bench levels` (or `just
//! bench-report`) after `scripts/build-guests.sh`. `SANDPOOL_LEVELS_QUICK=1`
//! runs a tenth of every workload (a smoke test, not a measurement).

mod common;
use common::{guest, locked_version, median};

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sandpool::__bench::DirectRunner;
use sandpool::workloads::{DocStats, count_primes, doc_stats, doc_stats_of};
use sandpool::{DirAccess, FileInput, IoPool, Isolation, Json, Limits, Pipeline, Pool, Task};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};

/// Environment variable that makes this binary one level's child process.
const CHILD_ENV: &str = "SANDPOOL_LEVELS_CHILD";
const DATA_ENV: &str = "SANDPOOL_LEVELS_DATA";
const OUT_ENV: &str = "SANDPOOL_LEVELS_OUT";
const QUICK_ENV: &str = "SANDPOOL_LEVELS_QUICK";

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

/// The vocabulary of `executors.py`'s `make_doc`.
const WORDS: [&str; 20] = [
    "the",
    "pool",
    "thread",
    "process",
    "memory",
    "isolation",
    "wasm",
    "instance",
    "task",
    "input",
    "output",
    "order",
    "result",
    "cost",
    "serialize",
    "pickle",
    "crash",
    "limit",
    "deadline",
    "fuel",
];

/// Deterministic document `i` of about `size` bytes: `executors.py`'s
/// `make_doc`, step for step (checked against Python at the start of a run).
fn make_doc(i: u64, size: usize) -> String {
    let mut x = ((u128::from(i) * 2_654_435_761 + 1) % (1u128 << 32)) as u64;
    let mut words = Vec::new();
    let mut total = 0;
    while total < size {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        let w = WORDS[(x % WORDS.len() as u64) as usize];
        words.push(w);
        total += w.len() + 1;
    }
    words.join(" ")
}

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

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Divides workload sizes in quick (smoke-test) mode.
fn scale() -> usize {
    if std::env::var_os(QUICK_ENV).is_some_and(|v| v != "0" && !v.is_empty()) {
        10
    } else {
        1
    }
}

fn load<In: Serialize, Out: DeserializeOwned>(name: &str) -> Task<In, Out> {
    let path = guest(name);
    Task::from_file(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-guests.sh first)",
            path.display()
        )
    })
}

fn status_kib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Largest RSS (KiB) of children this process has waited for.
fn children_maxrss_kib() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0 {
        usage.ru_maxrss as f64
    } else {
        0.0
    }
}

// ---------------------------------------------------------------- child side

/// One level's measurement of one workload.
struct Run {
    tasks: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
    /// Peak RSS (KiB) of worker processes, read before they exit.
    worker_hwm_kib: Vec<f64>,
}

/// Builds a pool, runs the batch (timed together, as `executors.py` does),
/// then times up to [`LATENCY_TASKS`] tasks one at a time through the warm pool.
fn timed<P>(
    tasks: usize,
    build: impl FnOnce() -> P,
    batch: impl FnOnce(&P),
    mut one: impl FnMut(&P, usize),
) -> (P, Run) {
    let started = Instant::now();
    let pool = build();
    batch(&pool);
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies_ms = Vec::new();
    for i in 0..tasks.min(LATENCY_TASKS) {
        let t0 = Instant::now();
        one(&pool, i);
        latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let run = Run {
        tasks,
        seconds,
        latencies_ms,
        worker_hwm_kib: Vec::new(),
    };
    (pool, run)
}

fn io_pool(concurrency: usize) -> IoPool {
    IoPool::builder()
        .concurrency(concurrency)
        .blocking_threads(concurrency)
        .name("native")
        .build()
        .expect("io pool")
}

/// The native level: `f` as blocking closures on an [`IoPool`] bounded to
/// one per CPU, a window of four per worker (as `Pool::map`).
fn native_blocking<T, R, F>(inputs: &[T], f: F) -> Run
where
    T: Clone + Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Clone + Send + 'static,
{
    let workers = cpus();
    let (io, run) = timed(
        inputs.len(),
        || io_pool(workers),
        |io| {
            let window = workers * 4;
            let mut pending: VecDeque<sandpool::IoHandle<R>> = VecDeque::with_capacity(window);
            for x in inputs {
                if pending.len() == window
                    && let Some(h) = pending.pop_front()
                {
                    black_box(h.wait().expect("native task"));
                }
                let (f, x) = (f.clone(), x.clone());
                pending.push_back(io.submit_blocking(move || f(x)).expect("submit"));
            }
            for h in pending {
                black_box(h.wait().expect("native task"));
            }
        },
        |io, i| {
            let (f, x) = (f.clone(), inputs[i].clone());
            black_box(
                io.submit_blocking(move || f(x))
                    .expect("submit")
                    .wait()
                    .expect("native task"),
            );
        },
    );
    io.shutdown(true, false);
    run
}

fn wasm_pool<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    level: Level,
    task: Task<In, Out>,
    workers: usize,
) -> Pool<In, Out> {
    let builder = Pool::builder(task).workers(workers);
    let builder = match level {
        Level::Process => builder
            .isolation(Isolation::Process)
            .worker_program(env!("CARGO_BIN_EXE_sandpool")),
        _ => builder.isolation(Isolation::Instance),
    };
    builder.build().expect("pool starts")
}

fn worker_hwm<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
) -> Vec<f64> {
    pool.process_stats()
        .map(|s| {
            s.worker_pids
                .iter()
                .map(|pid| status_kib(&pid.to_string(), "VmHWM:"))
                .collect()
        })
        .unwrap_or_default()
}

/// A wasm level: `pool.map` over the inputs, then one task at a time.
fn wasm_map<In, Out>(
    pool: impl FnOnce() -> Pool<In, Out>,
    inputs: &[In],
    check: impl Fn(&Out),
) -> Run
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
{
    let (pool, mut run) = timed(
        inputs.len(),
        pool,
        |pool| {
            for out in pool.map(inputs) {
                check(&out.expect("task succeeds"));
            }
        },
        |pool, i| {
            let out = pool
                .submit(&inputs[i])
                .expect("submit")
                .wait()
                .expect("task succeeds");
            check(&out);
        },
    );
    run.worker_hwm_kib = worker_hwm(&pool);
    pool.shutdown(true, false);
    run
}

fn data_files(dir: &Path, limit: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("data directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files.truncate(limit);
    files
}

/// The read probe of the `wasi_probe` guest (its first variants only: the
/// encoding is the variant's index, so these match the guest's enums).
#[derive(Serialize, Clone)]
enum Probe {
    Read(String),
}

#[derive(Deserialize, Debug)]
enum Answer {
    Bytes(Vec<u8>),
}

fn native_mixed((path, out): (PathBuf, Arc<PathBuf>)) -> u64 {
    let data = std::fs::read(&path).expect("read");
    let stats = doc_stats_of(&String::from_utf8_lossy(&data));
    let json = serde_json::to_vec(&stats).expect("json");
    let name = path.file_name().expect("file name").to_string_lossy();
    let target = out.join(format!("{name}.json"));
    let tmp = out.join(format!("{name}.json.tmp"));
    std::fs::write(&tmp, json).expect("write");
    std::fs::rename(&tmp, &target).expect("rename");
    stats.words
}

/// The mixed workload on a wasm level: read (I/O pool) → doc_stats (the
/// pool) → write (I/O pool) through [`Pipeline`].
fn wasm_mixed(level: Level, files: &[PathBuf], out: &Path) -> Run {
    let task: Task<FileInput, String> = load("doc_stats");
    let out = Arc::new(out.to_path_buf());
    let read = |path: &PathBuf| {
        let path = path.clone();
        async move {
            let data = tokio::fs::read(&path).await.expect("read");
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            Ok::<_, sandpool::Error>(FileInput { name, data })
        }
    };
    let write = move |path: PathBuf, json: Result<String, sandpool::Error>| {
        let out = Arc::clone(&out);
        async move {
            let json = json.expect("doc_stats succeeds");
            let name = path.file_name().expect("file name").to_string_lossy();
            let target = out.join(format!("{name}.json"));
            let tmp = out.join(format!("{name}.json.tmp"));
            tokio::fs::write(&tmp, json.as_bytes())
                .await
                .expect("write");
            tokio::fs::rename(&tmp, &target).await.expect("rename");
            json.len()
        }
    };
    let ((pool, io), mut run) = timed(
        files.len(),
        || {
            (
                wasm_pool(level, task, cpus()),
                IoPool::builder().build().expect("io pool"),
            )
        },
        |(pool, io)| {
            let run = Pipeline::builder(io)
                .build()
                .run(files.to_vec(), read, pool, write.clone());
            let mut n = 0;
            for (_, len) in run {
                assert!(len > 0);
                n += 1;
            }
            assert_eq!(n, files.len());
        },
        |(pool, io), i| {
            let run = Pipeline::builder(io).build().run(
                std::iter::once(files[i].clone()),
                read,
                pool,
                write.clone(),
            );
            assert_eq!(run.count(), 1);
        },
    );
    run.worker_hwm_kib = worker_hwm(&pool);
    pool.shutdown(true, false);
    io.shutdown(true, false);
    run
}

fn child(level: Level, workload: &str) -> Run {
    let s = scale();
    let data = PathBuf::from(std::env::var_os(DATA_ENV).expect("data directory"));
    let out = PathBuf::from(std::env::var_os(OUT_ENV).expect("output directory"));
    let workers = cpus();
    match (level, workload) {
        (Level::Native, "noop") => {
            let inputs = vec![vec![0u8; NOOP_BYTES]; NOOP_TASKS / s];
            native_blocking(&inputs, |b: Vec<u8>| b)
        }
        (_, "noop") => {
            let inputs = vec![ByteBuf::from(vec![0u8; NOOP_BYTES]); NOOP_TASKS / s];
            let task: Task<ByteBuf, ByteBuf> = load("echo");
            wasm_map(
                || wasm_pool(level, task, workers),
                &inputs,
                |b: &ByteBuf| assert_eq!(b.len(), NOOP_BYTES),
            )
        }
        (_, "docstats") => {
            let docs: Vec<FileInput> = (0..DOCS / s)
                .map(|i| FileInput {
                    name: format!("doc-{i:04}.txt"),
                    data: make_doc(i as u64, DOC_BYTES).into_bytes(),
                })
                .collect();
            if level == Level::Native {
                return native_blocking(&docs, doc_stats);
            }
            let expected = doc_stats_of(&docs[0].text());
            let task: Task<FileInput, Json<DocStats>> = load("doc_stats");
            wasm_map(
                || wasm_pool(level, task, workers),
                &docs,
                |s: &Json<DocStats>| assert!(s.0.words > 0 && s.0.top.len() == expected.top.len()),
            )
        }
        (_, "primes") => {
            let limits = vec![PRIMES_LIMIT; PRIMES_TASKS / s];
            if level == Level::Native {
                return native_blocking(&limits, count_primes);
            }
            let expected = count_primes(PRIMES_LIMIT);
            let task: Task<u64, u64> = load("primes");
            wasm_map(
                || wasm_pool(level, task, workers),
                &limits,
                |&n: &u64| assert_eq!(n, expected),
            )
        }
        (Level::Native, "sleep") => {
            let n = SLEEP_TASKS / s;
            let (io, run) = timed(
                n,
                || {
                    IoPool::builder()
                        .concurrency(SLEEP_CONCURRENCY)
                        .name("native")
                        .build()
                        .expect("io pool")
                },
                |io| {
                    for r in io.map(0..n, |_| async { tokio::time::sleep(SLEEP).await }) {
                        r.expect("sleep");
                    }
                },
                |io, _| {
                    io.submit(async { tokio::time::sleep(SLEEP).await })
                        .expect("submit")
                        .wait()
                        .expect("sleep");
                },
            );
            io.shutdown(true, false);
            run
        }
        (Level::Native, "read") => {
            let files = data_files(&data, FILES / s);
            native_blocking(&files, |p: PathBuf| std::fs::read(p).expect("read").len())
        }
        (Level::Instance, "read") => {
            let files = data_files(&data, FILES / s);
            let probes: Vec<Probe> = files
                .iter()
                .map(|p| {
                    let name = p.file_name().expect("file name").to_string_lossy();
                    Probe::Read(format!("/data/{name}"))
                })
                .collect();
            let task: Task<Probe, Answer> = load("wasi_probe");
            let grant = data.clone();
            wasm_map(
                move || {
                    Pool::builder(task)
                        .workers(workers)
                        .grant_dir(grant, "/data", DirAccess::ReadOnly)
                        .build()
                        .expect("pool with a read-only grant")
                },
                &probes,
                |a: &Answer| {
                    let Answer::Bytes(b) = a;
                    assert!(b.len() + 1 >= DOC_BYTES);
                },
            )
        }
        (Level::Native, "mixed") => {
            let out = Arc::new(out);
            let jobs: Vec<(PathBuf, Arc<PathBuf>)> = data_files(&data, FILES / s)
                .into_iter()
                .map(|p| (p, Arc::clone(&out)))
                .collect();
            native_blocking(&jobs, native_mixed)
        }
        (_, "mixed") => wasm_mixed(level, &data_files(&data, FILES / s), &out),
        _ => panic!("no {workload} workload at level {}", level.key()),
    }
}

fn child_json(run: &Run) -> Value {
    let mut lat = run.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let pick = |i: usize| lat.get(i.min(lat.len().saturating_sub(1))).copied();
    let own = status_kib("self", "VmHWM:");
    let workers_max = run.worker_hwm_kib.iter().copied().fold(0.0, f64::max);
    let workers_sum: f64 = run.worker_hwm_kib.iter().sum();
    json!({
        "tasks": run.tasks,
        "seconds": run.seconds,
        "tasks_per_second": run.tasks as f64 / run.seconds,
        "p50_ms": pick(lat.len() / 2),
        "p99_ms": pick((lat.len() as f64 * 0.99) as usize),
        "peak_rss_mib": own.max(workers_max).max(children_maxrss_kib()) / 1024.0,
        "total_rss_mib": if run.worker_hwm_kib.is_empty() { Value::Null } else { json!((own + workers_sum) / 1024.0) },
        "workers": run.worker_hwm_kib.len(),
    })
}

/// Tasks/s of `inputs` through a pool's `map`.
fn map_rate<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
    inputs: &[In],
) -> f64 {
    let started = Instant::now();
    for out in pool.map(inputs) {
        black_box(out.expect("task succeeds"));
    }
    inputs.len() as f64 / started.elapsed().as_secs_f64()
}

/// User + system CPU seconds of this process so far (all its threads).
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Tasks/s of `inputs` on `threads` plain std threads pulling from a shared
/// index: no pool at all, the strictest native baseline.
fn thread_rate<T: Sync, R>(threads: usize, inputs: &[T], f: impl Fn(&T) -> R + Sync) -> f64 {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(x) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    black_box(f(black_box(x)));
                }
            });
        }
    });
    inputs.len() as f64 / started.elapsed().as_secs_f64()
}

/// Where a CPU task's time goes, one thread, the steps alternated task by
/// task: the work as native Rust; the guest in one reused instance (its
/// compiled code plus copying the input in and the output out); in a fresh
/// instance per task; through a one-worker pool (adds the hand-off to the
/// worker thread and the host's encode/decode). Median µs per task.
fn breakdown(s: usize) -> Value {
    fn steps<In: Serialize, Out: DeserializeOwned + Send + 'static>(
        name: &str,
        inputs: &[In],
        tasks: usize,
        native: &dyn Fn(&In),
    ) -> Value {
        let task: Task<In, Out> = load(name);
        let runner = DirectRunner::new(&task, Limits::default()).expect("runner");
        let mut reused = runner.reused_instance().expect("instance");
        let pool = wasm_pool(Level::Instance, task, 1);
        let encoded: Vec<Vec<u8>> = inputs
            .iter()
            .map(|x| sandpool_guest::abi::encode(x).expect("encode"))
            .collect();
        let mut t: [Vec<f64>; 4] = Default::default();
        for i in 0..tasks {
            let k = i % inputs.len();
            let t0 = Instant::now();
            native(&inputs[k]);
            t[0].push(t0.elapsed().as_secs_f64() * 1e6);
            let t0 = Instant::now();
            black_box(reused.run(&encoded[k]).expect("reused"));
            t[1].push(t0.elapsed().as_secs_f64() * 1e6);
            let t0 = Instant::now();
            black_box(runner.run_fresh(&encoded[k]).expect("fresh"));
            t[2].push(t0.elapsed().as_secs_f64() * 1e6);
            let t0 = Instant::now();
            black_box(
                pool.submit(&inputs[k])
                    .expect("submit")
                    .wait()
                    .expect("task"),
            );
            t[3].push(t0.elapsed().as_secs_f64() * 1e6);
        }
        pool.shutdown(true, false);
        let [a, b, c, d] = &mut t;
        json!({
            "native_us": median(a),
            "reused_us": median(b),
            "fresh_us": median(c),
            "pool_us": median(d),
        })
    }
    let docs: Vec<FileInput> = (0..200)
        .map(|i| FileInput {
            name: format!("doc-{i:04}.txt"),
            data: make_doc(i as u64, DOC_BYTES).into_bytes(),
        })
        .collect();
    let docs_steps = steps::<FileInput, Json<DocStats>>(
        "doc_stats",
        &docs,
        BREAKDOWN_DOCS / s,
        &|d: &FileInput| drop(black_box(doc_stats_of(&d.text()))),
    );
    let primes_steps = steps::<u64, u64>(
        "primes",
        &[PRIMES_LIMIT],
        BREAKDOWN_PRIMES / s,
        &|&n: &u64| {
            black_box(count_primes(black_box(n)));
        },
    );
    json!({ "docstats": docs_steps, "primes": primes_steps })
}

/// The targets that want interleaved rounds in one process: raw
/// fresh-instance overhead; 1 vs 2 workers; instance vs native threads.
fn targets_child() -> Value {
    let s = scale();
    // Raw fresh instance per task: the executor's own path, one thread.
    let echo: Task<ByteBuf, ByteBuf> = load("echo");
    let runner = DirectRunner::new(&echo, Limits::default()).expect("runner");
    let mut reused = runner.reused_instance().expect("instance");
    let encoded =
        sandpool_guest::abi::encode(&ByteBuf::from(vec![0x5au8; NOOP_BYTES])).expect("encode");
    for _ in 0..2_000 / s {
        black_box(runner.run_fresh(&encoded).expect("fresh"));
    }
    let (mut fresh, mut reuse) = (vec![], vec![]);
    for _ in 0..TARGET_ROUNDS {
        let mut f = Vec::with_capacity(OVERHEAD_TASKS);
        let mut r = Vec::with_capacity(OVERHEAD_TASKS);
        for _ in 0..OVERHEAD_TASKS / s {
            let t0 = Instant::now();
            black_box(runner.run_fresh(&encoded).expect("fresh"));
            f.push(t0.elapsed().as_secs_f64() * 1e6);
            let t0 = Instant::now();
            black_box(reused.run(&encoded).expect("reused"));
            r.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        fresh.push(median(&mut f));
        reuse.push(median(&mut r));
    }

    // One task at a time through the pool: instance vs process workers, and
    // the floor of any cross-process round trip: 1 KiB through a pipe to a
    // `cat` process and back (two wake-ups of another process, no work).
    let input = ByteBuf::from(vec![0x5au8; NOOP_BYTES]);
    let by_instance = wasm_pool(Level::Instance, echo.clone(), cpus());
    let by_process = wasm_pool(Level::Process, echo, cpus());
    let mut cat = Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cat");
    let mut cat_in = cat.stdin.take().expect("cat stdin");
    let mut cat_out = cat.stdout.take().expect("cat stdout");
    let mut back = vec![0u8; NOOP_BYTES];
    let mut ping = || {
        use std::io::{Read, Write};
        cat_in.write_all(&input).expect("to cat");
        cat_out.read_exact(&mut back).expect("from cat");
    };
    let trip = |pool: &Pool<ByteBuf, ByteBuf>| {
        black_box(pool.submit(&input).expect("submit").wait().expect("echo"));
    };
    for _ in 0..200 {
        trip(&by_instance);
        trip(&by_process);
        ping();
    }
    // Alternated task by task, so load from elsewhere hits all three alike.
    let n = ROUND_TRIPS / s;
    let (mut rt_i, mut rt_p, mut pipe) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let micros = |t0: Instant| t0.elapsed().as_secs_f64() * 1e6;
    for _ in 0..n {
        let t0 = Instant::now();
        trip(&by_instance);
        rt_i.push(micros(t0));
        let t0 = Instant::now();
        trip(&by_process);
        rt_p.push(micros(t0));
        let t0 = Instant::now();
        ping();
        pipe.push(micros(t0));
    }
    drop((cat_in, cat_out));
    let _ = cat.wait();
    by_instance.shutdown(true, false);
    by_process.shutdown(true, false);

    let breakdown = breakdown(s);

    let primes: Task<u64, u64> = load("primes");
    let inst1 = wasm_pool(Level::Instance, primes.clone(), 1);
    let inst2 = wasm_pool(Level::Instance, primes, 2);
    let docs_task: Task<FileInput, Json<DocStats>> = load("doc_stats");
    let docs_pool = wasm_pool(Level::Instance, docs_task, 2);
    let one = vec![PRIMES_LIMIT; SCALING_TASKS_PER_WORKER / s];
    let two = vec![PRIMES_LIMIT; 2 * SCALING_TASKS_PER_WORKER / s];
    let docs: Vec<FileInput> = (0..SCALING_DOCS / s)
        .map(|i| FileInput {
            name: format!("doc-{i:04}.txt"),
            data: make_doc(i as u64, DOC_BYTES).into_bytes(),
        })
        .collect();
    // Warm-up.
    map_rate(&inst2, &two[..4]);
    map_rate(&inst1, &one[..2]);
    map_rate(&docs_pool, &docs[..50]);
    let primes_native = |&n: &u64| count_primes(n);
    let docs_native = |d: &FileInput| doc_stats_of(&d.text());
    thread_rate(2, &two[..4], primes_native);
    thread_rate(2, &docs[..50], docs_native);
    let mut m: [Vec<f64>; 6] = Default::default();
    let (mut wasm_scaling, mut native_scaling, mut primes_ratio, mut docs_ratio) =
        (vec![], vec![], vec![], vec![]);
    let (mut relative_scaling, mut cpu_cost, mut primes_cpu, mut docs_cpu) =
        (vec![], vec![], vec![], vec![]);
    // (tasks/s, CPU seconds of this process per task) of one measurement.
    let with_cpu = |tasks: usize, f: &mut dyn FnMut() -> f64| {
        let c0 = cpu_seconds();
        let rate = f();
        (rate, (cpu_seconds() - c0) / tasks as f64)
    };
    for _ in 0..TARGET_ROUNDS {
        let (n1, _) = with_cpu(one.len(), &mut || thread_rate(1, &one, primes_native));
        let (n2, n2c) = with_cpu(two.len(), &mut || thread_rate(2, &two, primes_native));
        let (w1, w1c) = with_cpu(one.len(), &mut || map_rate(&inst1, &one));
        let (w2, w2c) = with_cpu(two.len(), &mut || map_rate(&inst2, &two));
        let (dn, dnc) = with_cpu(docs.len(), &mut || thread_rate(2, &docs, docs_native));
        let (dw, dwc) = with_cpu(docs.len(), &mut || map_rate(&docs_pool, &docs));
        for (v, x) in m.iter_mut().zip([n1, n2, w1, w2, dn, dw]) {
            v.push(x);
        }
        wasm_scaling.push(w2 / w1);
        native_scaling.push(n2 / n1);
        relative_scaling.push((w2 / w1) / (n2 / n1));
        // CPU time per task (all threads of this process, the caller's included).
        cpu_cost.push(w2c / w1c);
        primes_ratio.push(w2 / n2);
        docs_ratio.push(dw / dn);
        primes_cpu.push(n2c / w2c);
        docs_cpu.push(dnc / dwc);
    }
    for p in [&inst1, &inst2] {
        p.shutdown(true, false);
    }
    docs_pool.shutdown(true, false);
    json!({
        "fresh_us": median(&mut fresh),
        "reused_us": median(&mut reuse),
        "primes_native_1": median(&mut m[0]),
        "primes_native_2": median(&mut m[1]),
        "primes_instance_1": median(&mut m[2]),
        "primes_instance_2": median(&mut m[3]),
        "docs_native_2": median(&mut m[4]),
        "docs_instance_2": median(&mut m[5]),
        "instance_2_vs_1": median(&mut wasm_scaling),
        "native_2_vs_1": median(&mut native_scaling),
        "primes_instance_vs_native": median(&mut primes_ratio),
        "docs_instance_vs_native": median(&mut docs_ratio),
        "instance_scaling_vs_native": median(&mut relative_scaling),
        "instance_cpu_per_task_2_vs_1": median(&mut cpu_cost),
        "roundtrip_instance_us": median(&mut rt_i),
        "roundtrip_process_us": median(&mut rt_p),
        "roundtrip_process_vs_instance": median(&mut rt_p) / median(&mut rt_i),
        "primes_instance_vs_native_cpu": median(&mut primes_cpu),
        "docs_instance_vs_native_cpu": median(&mut docs_cpu),
        "pipe_roundtrip_us": median(&mut pipe),
        "breakdown": breakdown,
    })
}

// --------------------------------------------------------------- parent side

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let out = if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            };
            String::from_utf8_lossy(out).trim().to_string()
        })
        .unwrap_or_else(|| "?".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn python() -> String {
    std::env::var("SANDPOOL_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Parses the last JSON line of a child's stdout.
fn last_json(out: &std::process::Output) -> Result<Value, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    match (out.status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}")),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            // A panic's message is the line after "panicked at"; else the last line.
            let why = lines
                .iter()
                .position(|l| l.contains("panicked at"))
                .and_then(|i| lines.get(i + 1))
                .or(lines.last())
                .copied()
                .unwrap_or("no output");
            Err(format!("failed ({}): {why}", out.status))
        }
    }
}

fn run_rust_child(spec: &str, data: &Path, out: &Path) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .env(CHILD_ENV, spec)
        .env(DATA_ENV, data)
        .env(OUT_ENV, out)
        .output()
        .map_err(|e| e.to_string())?;
    last_json(&output)
}

fn run_python(level: Level, workload: &str, data: &Path, out: &Path) -> Result<Value, String> {
    let script = root().join("benches/python/executors.py");
    let executor = if level == Level::PyThread {
        "thread"
    } else {
        "process"
    };
    let workers = if workload == "sleep" {
        SLEEP_CONCURRENCY
    } else {
        cpus()
    };
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .args([executor, workload, "--workers", &workers.to_string()])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    let s = scale();
    if s > 1 {
        let full = match workload {
            "noop" => NOOP_TASKS,
            "docstats" => DOCS,
            "primes" => PRIMES_TASKS,
            "sleep" => SLEEP_TASKS,
            _ => FILES,
        };
        cmd.args(["--tasks", &(full / s).to_string()]);
    }
    let output = cmd.output().map_err(|e| format!("{}: {e}", python()))?;
    last_json(&output)
}

/// Checks that the Rust workloads are those of `executors.py`: `make_doc`,
/// `doc_stats` and `count_primes` give the same values in both.
fn check_parity() -> String {
    let dir = root().join("benches/python");
    let probe = format!(
        "import sys, json; sys.path.insert(0, {dir:?}); import executors as e; \
         ids = [0, 1, 1999]; \
         print(json.dumps({{'docs': [e.make_doc(i) for i in ids], \
         'stats': e.doc_stats(e.make_doc(7)), 'primes': e.count_primes(3000)}}))",
        dir = dir.display().to_string()
    );
    let out = match Command::new(python()).args(["-c", &probe]).output() {
        Ok(out) => out,
        Err(e) => return format!("not checked ({}: {e})", python()),
    };
    let value = match last_json(&out) {
        Ok(v) => v,
        Err(e) => return format!("not checked: {e}"),
    };
    let docs_same = [0u64, 1, 1999]
        .iter()
        .enumerate()
        .all(|(k, &i)| value["docs"][k].as_str() == Some(make_doc(i, DOC_BYTES).as_str()));
    let stats = serde_json::to_value(doc_stats_of(&make_doc(7, DOC_BYTES))).expect("json");
    let stats_same = value["stats"] == stats;
    let primes_same = value["primes"].as_u64() == Some(count_primes(3000));
    assert!(
        docs_same && stats_same && primes_same,
        "the Rust workloads differ from executors.py: make_doc {docs_same}, doc_stats {stats_same}, count_primes {primes_same}"
    );
    "identical (make_doc for documents 0, 1, 1999; doc_stats of document 7; count_primes(3000))"
        .into()
}

struct Row {
    workload: &'static str,
    level: Level,
    result: Result<Value, String>,
}

impl Row {
    fn get(&self, key: &str) -> Option<f64> {
        self.result.as_ref().ok().and_then(|v| v[key].as_f64())
    }
}

fn find<'a>(rows: &'a [Row], workload: &str, level: Level) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.level == level)
}

fn value(rows: &[Row], workload: &str, level: Level, key: &str) -> Option<f64> {
    find(rows, workload, level).and_then(|r| r.get(key))
}

fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        let s = format!("{r:.0}");
        // Thousands separators.
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{r:.1}")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn plot(path: &Path, rows: &[Row], caption: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let colors = [
        RGBColor(0x33, 0x66, 0x99),
        RGBColor(0x2a, 0x9d, 0x8f),
        RGBColor(0xe9, 0xa2, 0x3b),
        RGBColor(0x9b, 0x9b, 0x9b),
        RGBColor(0x5c, 0x5c, 0x5c),
    ];
    let ymax = rows
        .iter()
        .filter_map(|r| r.get("tasks_per_second"))
        .fold(10.0, f64::max)
        * 4.0;
    let root = SVGBackend::new(path, (1040, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = WORKLOADS.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups, (1f64..ymax).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(WORKLOADS.len())
        .x_label_formatter(&|_| String::new())
        .y_desc("tasks per second (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 100.0 {
                fmt_rate(*v)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()?;
    let slot = 0.84 / LEVELS.len() as f64;
    for (li, level) in LEVELS.iter().enumerate() {
        let color = colors[li];
        let x0 = |wi: usize| wi as f64 + 0.08 + li as f64 * slot;
        let bars: Vec<Rectangle<(f64, f64)>> = WORKLOADS
            .iter()
            .enumerate()
            .filter_map(|(wi, w)| {
                let v = value(rows, w.key, *level, "tasks_per_second")?;
                Some(Rectangle::new(
                    [(x0(wi), 1.0), (x0(wi) + slot * 0.88, v.max(1.0))],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(level.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        // "n/a" where a level does not run a workload.
        let missing: Vec<Text<'_, (f64, f64), String>> = WORKLOADS
            .iter()
            .enumerate()
            .filter(|(_, w)| value(rows, w.key, *level, "tasks_per_second").is_none())
            .map(|(wi, _)| {
                Text::new(
                    "n/a".to_string(),
                    (x0(wi) + slot * 0.44, 1.6),
                    ("sans-serif", 10)
                        .into_font()
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            })
            .collect();
        chart.draw_series(missing)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    for (wi, w) in WORKLOADS.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(wi as f64 + 0.5, 1.0));
        let label = if w.key == w.kind {
            w.key.to_string()
        } else {
            format!("{} ({})", w.key, w.kind)
        };
        root.draw(&Text::new(
            label,
            (px, py + 8),
            ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.present()?;
    Ok(())
}

fn parent() {
    let started = Instant::now();
    let report_dir = root().join("target/bench-report");
    std::fs::create_dir_all(&report_dir).expect("report directory");
    for name in ["echo", "doc_stats", "primes", "wasi_probe"] {
        guest(name); // fails early, naming the missing guest
    }
    let s = scale();
    let load_start = load_average();
    let parity = check_parity();

    // The data of the read and mixed workloads: make_doc(i) as doc-iiii.txt.
    let work = tempfile::Builder::new()
        .prefix("levels-")
        .tempdir_in(&report_dir)
        .expect("work directory");
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    for i in 0..FILES {
        std::fs::write(
            data.join(format!("doc-{i:04}.txt")),
            make_doc(i as u64, DOC_BYTES),
        )
        .expect("write data");
    }

    // Round 0 runs every level; later rounds repeat the Rust levels (cheap,
    // and the noisiest relative to each other), interleaved, so a burst of
    // load from elsewhere hits one run, not one level.
    // What one output costs the file system here (the mixed workload's floor).
    let probe = work.path().join("write-probe");
    std::fs::create_dir_all(&probe).expect("probe directory");
    let t0 = Instant::now();
    for i in 0..200 {
        let target = probe.join(format!("{i}.json"));
        let tmp = probe.join(format!("{i}.json.tmp"));
        std::fs::write(&tmp, b"{\"bytes\": 4096}").expect("write");
        std::fs::rename(&tmp, &target).expect("rename");
    }
    let write_us = t0.elapsed().as_secs_f64() * 1e6 / 200.0;
    let _ = std::fs::remove_dir_all(&probe);

    let mut runs: Vec<(&'static str, Level, Result<Value, String>)> = Vec::new();
    for round in 0..REPEATS {
        for w in &WORKLOADS {
            for level in LEVELS {
                let python = matches!(level, Level::PyThread | Level::PyProcess);
                if not_applicable(level, w.key).is_some()
                    || (round > 0 && (python || w.key == "sleep"))
                {
                    continue;
                }
                let out = work.path().join(format!("out-{}-{}", w.key, level.key()));
                std::fs::create_dir_all(&out).expect("output directory");
                let t0 = Instant::now();
                let result = if python {
                    run_python(level, w.key, &data, &out)
                } else {
                    run_rust_child(&format!("{}:{}", level.key(), w.key), &data, &out)
                };
                eprintln!(
                    "levels: round {round} {:<9} {:<11} {:>5.1} s {}",
                    w.key,
                    level.key(),
                    t0.elapsed().as_secs_f64(),
                    match &result {
                        Ok(v) => format!(
                            "{:.0} tasks/s",
                            v["tasks_per_second"].as_f64().unwrap_or(0.0)
                        ),
                        Err(e) => e.clone(),
                    }
                );
                if w.key == "mixed"
                    && let Ok(n) = std::fs::read_dir(&out).map(|d| d.count())
                    && result.is_ok()
                {
                    assert_eq!(n, FILES / s, "mixed at {} wrote {n} files", level.key());
                }
                let _ = std::fs::remove_dir_all(&out);
                runs.push((w.key, level, result));
            }
        }
    }
    // Per workload and level: the run with the median throughput, and the spread.
    let mut rows = Vec::new();
    for w in &WORKLOADS {
        for level in LEVELS {
            let mut ok: Vec<Value> = Vec::new();
            let mut failed = None;
            for (_, _, r) in runs.iter().filter(|(k, l, _)| *k == w.key && *l == level) {
                match r {
                    Ok(v) => ok.push(v.clone()),
                    Err(e) => failed = Some(e.clone()),
                }
            }
            let rate = |v: &Value| v["tasks_per_second"].as_f64().unwrap_or(0.0);
            ok.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let result = match (ok.len(), failed) {
                (0, None) => continue,
                (0, Some(e)) => Err(e),
                (n, _) => {
                    let mut v = ok[n / 2].clone();
                    v["runs"] = json!(n);
                    v["spread"] = json!((rate(&ok[n - 1]) - rate(&ok[0])) / rate(&ok[n / 2]));
                    Ok(v)
                }
            };
            rows.push(Row {
                workload: w.key,
                level,
                result,
            });
        }
    }
    let t0 = Instant::now();
    let targets = run_rust_child("targets:", &data, work.path());
    eprintln!("levels: targets {:.1} s", t0.elapsed().as_secs_f64());
    let load_end = load_average();

    // ------------------------------------------------------------- the report
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# sandpool: isolation levels vs speed\n");
    if s > 1 {
        let _ = writeln!(
            w,
            "**Quick mode ({QUICK_ENV}): a tenth of every workload; a smoke test, not a measurement.**\n"
        );
    }
    let _ = writeln!(w, "- date: {date}");
    let _ = writeln!(
        w,
        "- machine: {model}, nproc {}, {}",
        command_line("nproc", &[]),
        command_line("uname", &["-sr"])
    );
    let _ = writeln!(
        w,
        "- load average (1/5/15 min): {load_start} at start, {load_end} at end (the cores are shared: figures move with it)"
    );
    let _ = writeln!(
        w,
        "- rustc {} (host); guests built by {}",
        command_line("rustc", &["--version"]).trim_start_matches("rustc "),
        command_line("/usr/bin/rustc", &["--version"])
    );
    let _ = writeln!(
        w,
        "- wasmtime {} (Cargo.lock), sandpool {} at {}, {}",
        locked_version("wasmtime"),
        env!("CARGO_PKG_VERSION"),
        command_line(
            "git",
            &[
                "-C",
                &root().display().to_string(),
                "rev-parse",
                "--short",
                "HEAD"
            ]
        ),
        command_line(&python(), &["--version"])
    );
    let _ = writeln!(
        w,
        "- workloads identical to `benches/python/executors.py`: {parity}"
    );
    let _ = writeln!(
        w,
        "- file system of the work directory: writing a small file and renaming it into place takes {write_us:.0} µs (one thread, measured before the run)"
    );
    let _ = writeln!(
        w,
        "- workers: {} per level (one per CPU) except sleep ({SLEEP_CONCURRENCY} at every level); Python `chunksize=1`",
        cpus()
    );
    let _ = writeln!(
        w,
        "- each level × workload in a fresh process; throughput is the whole batch with pool start-up (not module compilation); latency is one task at a time through the warm pool, submit to result, first {LATENCY_TASKS} tasks; peak RSS is the largest single process (the level's own or one of its workers)\n"
    );

    // Targets.
    let _ = writeln!(w, "## Issue 6 targets (ratios measured in this run)\n");
    let per_task_us = |workload: &str, level: Level| {
        value(&rows, workload, level, "tasks_per_second").map(|r| 1e6 / r)
    };
    let p50_us =
        |workload: &str, level: Level| value(&rows, workload, level, "p50_ms").map(|ms| ms * 1e3);
    let _ = writeln!(w, "| target | measured | verdict |");
    let _ = writeln!(w, "|---|---|---|");
    let t = targets.as_ref().ok();
    let tv = |key: &str| t.and_then(|v| v[key].as_f64());
    if let Some(fresh) = tv("fresh_us") {
        let _ = writeln!(
            w,
            "| fresh instance per task ≤ 10 µs median (stretch 5 µs): echo 1 KiB, one thread, no pool | {fresh:.2} µs ({:.1}× one reused instance) | {} |",
            fresh / tv("reused_us").unwrap_or(f64::NAN),
            if fresh <= 5.0 {
                "met, and the 5 µs stretch"
            } else {
                verdict(fresh <= 10.0)
            }
        );
    }
    if let (Some(py), Some(inst)) = (
        per_task_us("noop", Level::PyProcess),
        per_task_us("noop", Level::Instance),
    ) {
        let r = py / inst;
        let _ = writeln!(
            w,
            "| fresh instance ≥ 10× cheaper per task than ProcessPoolExecutor (`chunksize=1`): noop 1 KiB, {} workers, batch time per task | {r:.1}× ({:.1} µs vs {:.1} µs) | {} |",
            cpus(),
            inst,
            py,
            verdict(r >= 10.0)
        );
    }
    if let (Some(py), Some(inst)) = (
        p50_us("noop", Level::PyProcess),
        p50_us("noop", Level::Instance),
    ) {
        let r = py / inst;
        let _ = writeln!(
            w,
            "| the same, one task at a time (median round trip) | {r:.1}× ({inst:.1} µs vs {py:.1} µs) | {} |",
            verdict(r >= 10.0)
        );
    }
    if let (Some(py), Some(fresh)) = (per_task_us("noop", Level::PyProcess), tv("fresh_us")) {
        let _ = writeln!(
            w,
            "| the same, raw fresh instance (above) vs ProcessPoolExecutor's batch time per task | {:.0}× | {} |",
            py / fresh,
            verdict(py / fresh >= 10.0)
        );
    }
    for (workload, key, cpu_key) in [
        (
            "primes",
            "primes_instance_vs_native",
            "primes_instance_vs_native_cpu",
        ),
        (
            "docstats",
            "docs_instance_vs_native",
            "docs_instance_vs_native_cpu",
        ),
    ] {
        let matrix = value(&rows, workload, Level::Instance, "tasks_per_second")
            .zip(value(&rows, workload, Level::Native, "tasks_per_second"))
            .map(|(a, b)| a / b);
        let inter = tv(key);
        // The verdict goes by CPU time per task, which load from other
        // processes does not move; on two free cores tasks/s would follow it.
        let shown = tv(cpu_key).or(inter).unwrap_or(f64::NAN);
        let _ = writeln!(
            w,
            "| CPU-bound, fresh instances ≥ 0.6× native threads: {workload}, {} workers each | {} vs plain std threads (tasks/s, interleaved rounds); {} in CPU time per task (native / instance, not moved by load; the verdict's figure); {} vs the IoPool in the table below | {} |",
            cpus(),
            inter.map_or("?".into(), |r| format!("{r:.2}×")),
            tv(cpu_key).map_or("?".into(), |r| format!("{r:.2}×")),
            matrix.map_or("?".into(), |r| format!("{r:.2}×")),
            verdict(shown >= 0.6)
        );
    }
    if let (Some(wasm), Some(native)) = (tv("instance_2_vs_1"), tv("native_2_vs_1")) {
        let _ = writeln!(
            w,
            "| 2 workers ≥ 1.8× one worker: primes, fresh instances | {wasm:.2}× (plain std threads on the same cores: {native:.2}×, the machine's ceiling under the current load; instance scaling / thread scaling per round: {:.2}; CPU time per task with 2 workers / with 1: {:.2}, where 1.00 means the second worker adds no work of its own) | {} |",
            tv("instance_scaling_vs_native").unwrap_or(f64::NAN),
            tv("instance_cpu_per_task_2_vs_1").unwrap_or(f64::NAN),
            if wasm >= 1.8 {
                "met".to_string()
            } else if native < 1.8 {
                format!(
                    "**missed**: bound by the machine now, plain threads reach only {native:.2}×"
                )
            } else {
                "**missed**".to_string()
            }
        );
    }
    if let (Some(p), Some(i)) = (
        per_task_us("noop", Level::Process),
        per_task_us("noop", Level::Instance),
    ) {
        let _ = writeln!(
            w,
            "| process workers within 5× the instance level per task: noop 1 KiB, batch time per task | {:.1}× ({p:.1} µs vs {i:.1} µs) | {} |",
            p / i,
            verdict(p / i <= 5.0)
        );
    }
    if let (Some(p), Some(i), Some(r)) = (
        tv("roundtrip_process_us"),
        tv("roundtrip_instance_us"),
        tv("roundtrip_process_vs_instance"),
    ) {
        let _ = writeln!(
            w,
            "| the same, one task at a time (median round trip, alternated task by task) | {r:.1}× ({p:.1} µs vs {i:.1} µs; a bare 1 KiB pipe round trip to a `cat` process: {:.1} µs) | {} |",
            tv("pipe_roundtrip_us").unwrap_or(f64::NAN),
            verdict(r <= 5.0)
        );
    }
    if let Err(e) = &targets {
        let _ = writeln!(w, "| interleaved target measurements | {e} | — |");
    }
    if let Some(v) = t {
        let _ = writeln!(
            w,
            "\nInterleaved rounds ({TARGET_ROUNDS}, medians), tasks/s: primes on plain std threads, 1 thread {}, 2 threads {}; fresh instances, 1 worker {}, 2 workers {}; docstats on 2 std threads {}, fresh instances (2 workers) {}.",
            fmt_rate(v["primes_native_1"].as_f64().unwrap_or(0.0)),
            fmt_rate(v["primes_native_2"].as_f64().unwrap_or(0.0)),
            fmt_rate(v["primes_instance_1"].as_f64().unwrap_or(0.0)),
            fmt_rate(v["primes_instance_2"].as_f64().unwrap_or(0.0)),
            fmt_rate(v["docs_native_2"].as_f64().unwrap_or(0.0)),
            fmt_rate(v["docs_instance_2"].as_f64().unwrap_or(0.0)),
        );
    }

    if let Some(b) = t.map(|v| &v["breakdown"]).filter(|b| b.is_object()) {
        let _ = writeln!(
            w,
            "\nWhere a CPU task's time goes (one thread, no other task running, steps alternated task by task; median per task, and the ratio native time / this):\n"
        );
        let _ = writeln!(
            w,
            "| workload | native Rust | guest, one reused instance | guest, fresh instance | one-worker pool, submit + wait |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|");
        for name in ["docstats", "primes"] {
            let x = &b[name];
            let n = x["native_us"].as_f64().unwrap_or(f64::NAN);
            let cell = |key: &str| {
                let v = x[key].as_f64().unwrap_or(f64::NAN);
                format!("{} ({:.2}×)", fmt_ms(v / 1e3), n / v)
            };
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} | {} |",
                fmt_ms(n / 1e3),
                cell("reused_us"),
                cell("fresh_us"),
                cell("pool_us")
            );
        }
    }

    // The table.
    let _ = writeln!(w, "\n## Every level on every workload\n");
    let _ = writeln!(
        w,
        "| workload | level | tasks | tasks/s | runs, spread | vs native | p50 latency | p99 latency | peak RSS |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for wl in &WORKLOADS {
        let native = value(&rows, wl.key, Level::Native, "tasks_per_second");
        for level in LEVELS {
            if let Some(why) = not_applicable(level, wl.key) {
                let _ = writeln!(
                    w,
                    "| {} | {} | — | n/a | — | — | — | — | — |",
                    wl.key,
                    level.label()
                );
                let _ = why;
                continue;
            }
            let Some(row) = find(&rows, wl.key, level) else {
                continue;
            };
            match &row.result {
                Err(e) => {
                    let _ = writeln!(
                        w,
                        "| {} | {} | — | {} | — | — | — | — | — |",
                        wl.key,
                        level.label(),
                        e.replace('|', "/")
                    );
                }
                Ok(v) => {
                    let rate = v["tasks_per_second"].as_f64().unwrap_or(f64::NAN);
                    let rss = v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
                    let total = v["total_rss_mib"]
                        .as_f64()
                        .map(|t| format!(" ({t:.0} MiB in all)"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {rss:.0} MiB{total} |",
                        wl.key,
                        level.label(),
                        v["tasks"].as_u64().unwrap_or(0),
                        fmt_rate(rate),
                        match (v["runs"].as_u64(), v["spread"].as_f64()) {
                            (Some(n), Some(sp)) if n > 1 => format!("{n}, ±{:.0}%", sp * 50.0),
                            _ => "1".into(),
                        },
                        native.map_or("—".into(), |n| format!("{:.2}×", rate / n)),
                        fmt_ms(v["p50_ms"].as_f64().unwrap_or(f64::NAN)),
                        fmt_ms(v["p99_ms"].as_f64().unwrap_or(f64::NAN)),
                    );
                }
            }
        }
    }
    let _ = writeln!(w, "\nWorkloads:\n");
    for wl in &WORKLOADS {
        let _ = writeln!(w, "- **{}** ({}): {}", wl.key, wl.kind, wl.what);
    }
    let _ = writeln!(w, "\nNot run:\n");
    for wl in &WORKLOADS {
        for level in LEVELS {
            if let Some(why) = not_applicable(level, wl.key) {
                let _ = writeln!(w, "- {} at {}: {why}.", wl.key, level.label());
            }
        }
    }
    let _ = writeln!(
        w,
        "\nHow each level runs the work: native = `IoPool::submit_blocking` closures calling `sandpool_guest::workloads` (the functions the guests export), {} blocking threads; sleep = async `tokio::time::sleep` on the IoPool. wasm levels = `Pool::map` (window 4 per worker); read at the instance level = the `wasi_probe` guest reading the file itself through a read-only directory grant (and returning its bytes); mixed at the wasm levels = `Pipeline` (read and write on the IoPool, doc_stats in the pool; the guest's JSON written as is). Python = `executors.py` (`submit` of every task, then `result()` in order). \"in all\" = the level's process plus its worker processes.",
        cpus()
    );
    let _ = writeln!(
        w,
        "\nPlot: `throughput.svg` (tasks/s by workload and level, log scale).\n\n(run took {:.0} s)",
        started.elapsed().as_secs_f64()
    );

    print!("{md}");
    std::fs::write(report_dir.join("report.md"), &md).expect("write report.md");
    let svg = report_dir.join("throughput.svg");
    let caption = format!(
        "sandpool levels vs Python executors: tasks/s ({}, {} CPUs, {date})",
        model
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" "),
        cpus()
    );
    match plot(&svg, &rows, &caption) {
        Ok(()) => println!(
            "\nwrote {} and {}",
            report_dir.join("report.md").display(),
            svg.display()
        ),
        Err(e) => println!(
            "\nwrote {}; the plot failed: {e}",
            report_dir.join("report.md").display()
        ),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; arguments are ignored.
    match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (level, workload) = spec.split_once(':').expect("LEVEL:WORKLOAD");
            let value = if level == "targets" {
                targets_child()
            } else {
                let level = Level::from_key(level).expect("a level");
                child_json(&child(level, workload))
            };
            println!("{value}");
        }
        Err(_) => parent(),
    }
}
