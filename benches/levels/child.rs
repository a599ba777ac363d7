//! Inside one child process: one level's run of one workload (batch
//! throughput, one-at-a-time latency, peak RSS), printed as a JSON line;
//! and the targets child, which measures the interleaved target figures.

use std::collections::VecDeque;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use sandpool::workloads::{DocStats, count_primes, doc_stats, doc_stats_of};
use sandpool::{DirAccess, FileInput, IoPool, Isolation, Json, Pipeline, Pool, Task};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};

use crate::common::corpus::documents;
use crate::common::measure::{children_maxrss_kib, micros_since, status_kib};
use crate::common::median;
use crate::common::wasm::{self, breakdown, echo_costs, load, primes_scaling, versus_native};
use crate::common::{cpus, quick_divisor};
use crate::*;

/// One level's measurement of one workload.
pub struct Run {
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
    let isolation = match level {
        Level::Process => Isolation::Process,
        _ => Isolation::Instance,
    };
    wasm::pool(task, isolation, workers)
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

pub fn child(level: Level, workload: &str) -> Run {
    let s = quick_divisor();
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
            let docs = documents(DOCS / s, DOC_BYTES);
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

pub fn child_json(run: &Run) -> Value {
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

/// The targets that want interleaved rounds in one process, measured by
/// the helpers the throughput benchmark reports too: raw fresh-instance
/// overhead; instance vs process round trips; where a CPU task's time
/// goes; 1 vs 2 workers; instance vs native threads.
pub fn targets_child() -> Value {
    let s = quick_divisor();
    let echo_costs = echo_costs(TARGET_ROUNDS, (OVERHEAD_TASKS / s).max(50));
    let (rt_i, rt_p, pipe) = round_trips((ROUND_TRIPS / s).max(50));

    let docs = documents(200, DOC_BYTES);
    let docs_steps = breakdown::<FileInput, Json<DocStats>>(
        "doc_stats",
        &docs,
        (BREAKDOWN_DOCS / s).max(10),
        &|d: &FileInput| drop(black_box(doc_stats_of(&d.text()))),
    );
    let primes_steps = breakdown::<u64, u64>(
        "primes",
        &[PRIMES_LIMIT],
        (BREAKDOWN_PRIMES / s).max(5),
        &|&n: &u64| {
            black_box(count_primes(black_box(n)));
        },
    );
    let step = |b: &wasm::Breakdown| json!({ "native_us": b.native_us, "reused_us": b.reused_us, "fresh_us": b.fresh_us, "pool_us": b.pool_us });

    let scaling = primes_scaling(
        TARGET_ROUNDS,
        (SCALING_TASKS_PER_WORKER / s).max(2),
        PRIMES_LIMIT,
    );
    let workers = 2;
    let primes: Task<u64, u64> = load("primes");
    let primes_pool = wasm::pool(primes, Isolation::Instance, workers);
    let limits = vec![PRIMES_LIMIT; (2 * SCALING_TASKS_PER_WORKER / s).max(4)];
    let primes_vs = versus_native(TARGET_ROUNDS, workers, &primes_pool, &limits, |&n: &u64| {
        count_primes(n)
    });
    primes_pool.shutdown(true, false);
    let docs_task: Task<FileInput, Json<DocStats>> = load("doc_stats");
    let docs_pool = wasm::pool(docs_task, Isolation::Instance, workers);
    let docs = documents((SCALING_DOCS / s).max(20), DOC_BYTES);
    let docs_vs = versus_native(
        TARGET_ROUNDS,
        workers,
        &docs_pool,
        &docs,
        |d: &FileInput| doc_stats_of(&d.text()),
    );
    docs_pool.shutdown(true, false);

    json!({
        "fresh_us": echo_costs.fresh_us,
        "reused_us": echo_costs.reused_us,
        "map_us": echo_costs.map_us,
        "map_vs_fresh": echo_costs.map_vs_fresh,
        "fresh_loop_us": echo_costs.fresh_loop_us,
        "primes_native_1": scaling.native_1,
        "primes_native_2": scaling.native_2,
        "primes_instance_1": scaling.pool_1,
        "primes_instance_2": scaling.pool_2,
        "docs_native_2": docs_vs.native_rate,
        "docs_instance_2": docs_vs.pool_rate,
        "instance_2_vs_1": scaling.pool_2_vs_1,
        "native_2_vs_1": scaling.native_2_vs_1,
        "primes_instance_vs_native": primes_vs.rate_ratio,
        "docs_instance_vs_native": docs_vs.rate_ratio,
        "instance_scaling_vs_native": scaling.pool_vs_native_scaling,
        "instance_cpu_per_task_2_vs_1": scaling.pool_cpu_2_vs_1,
        "roundtrip_instance_us": rt_i,
        "roundtrip_process_us": rt_p,
        "roundtrip_process_vs_instance": rt_p / rt_i,
        "primes_instance_vs_native_cpu": primes_vs.cpu_ratio,
        "docs_instance_vs_native_cpu": docs_vs.cpu_ratio,
        "pipe_roundtrip_us": pipe,
        "breakdown": { "docstats": step(&docs_steps), "primes": step(&primes_steps) },
    })
}

/// One task at a time through the pool, `n` times, alternated task by task
/// so load from elsewhere hits all three alike: instance vs process workers,
/// and the floor of any cross-process round trip, 1 KiB through a pipe to a
/// `cat` process and back. Median µs of each.
fn round_trips(n: usize) -> (f64, f64, f64) {
    let echo: Task<ByteBuf, ByteBuf> = load("echo");
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
    let (mut rt_i, mut rt_p, mut pipe) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for _ in 0..n {
        let t0 = Instant::now();
        trip(&by_instance);
        rt_i.push(micros_since(t0));
        let t0 = Instant::now();
        trip(&by_process);
        rt_p.push(micros_since(t0));
        let t0 = Instant::now();
        ping();
        pipe.push(micros_since(t0));
    }
    drop((cat_in, cat_out));
    let _ = cat.wait();
    by_instance.shutdown(true, false);
    by_process.shutdown(true, false);
    (median(&mut rt_i), median(&mut rt_p), median(&mut pipe))
}
