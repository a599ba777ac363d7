//! Measurements of the library that more than one benchmark reports, kept
//! here once: the raw fresh-instance path vs one reused instance and vs
//! `Pool::map`, CPU-bound pools vs plain threads, 2 workers vs 1, and where
//! one CPU task's time goes.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sandpool::__bench::DirectRunner;
use sandpool::{Isolation, Limits, Pool, Task};
use serde::{Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;

use super::measure::{micros_since, process_cpu_seconds, thread_cpu_ns, time_each};
use super::stats::{median, median_of, percentile};
use super::{guest, sandpool_exe};

/// The example guest `name` as a typed task.
pub fn load<In: Serialize, Out: DeserializeOwned>(name: &str) -> Task<In, Out> {
    let path = guest(name);
    Task::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pool of `workers` at `isolation` (process workers run this build's `sandpool`).
pub fn pool<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    task: Task<In, Out>,
    isolation: Isolation,
    workers: usize,
) -> Pool<In, Out> {
    let builder = Pool::builder(task).workers(workers).isolation(isolation);
    // Worker options are refused on an instance pool.
    let builder = match isolation {
        Isolation::Process => builder.worker_program(sandpool_exe()),
        _ => builder,
    };
    builder.build().expect("pool starts")
}

/// Tasks/s of `inputs` through `pool.map`.
pub fn map_rate<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
    inputs: &[In],
) -> f64 {
    let started = Instant::now();
    for out in pool.map(inputs) {
        black_box(out.expect("task succeeds"));
    }
    inputs.len() as f64 / started.elapsed().as_secs_f64()
}

/// Tasks/s of `inputs` on `threads` plain std threads pulling from a shared
/// index: no pool at all, the strictest native baseline.
pub fn thread_rate<T: Sync, R>(threads: usize, inputs: &[T], f: impl Fn(&T) -> R + Sync) -> f64 {
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

/// (result of `f`, CPU seconds of this whole process per task while it ran).
pub fn with_cpu(tasks: usize, f: impl FnOnce() -> f64) -> (f64, f64) {
    let c0 = process_cpu_seconds();
    let rate = f();
    (rate, (process_cpu_seconds() - c0) / tasks as f64)
}

/// Median µs of one task at a time through `pool` (submit, then wait), `n` tasks.
pub fn round_trip_us<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
    input: &In,
    n: usize,
) -> f64 {
    let times = time_each(n, || {
        black_box(pool.submit(input).expect("submit").wait().expect("task"));
    });
    median_of(&times)
}

/// µs per task of a `map` of `n` copies of `input` through `pool`.
pub fn map_cost_us<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
    input: &In,
    n: usize,
) -> f64 {
    let t0 = Instant::now();
    let mut done = 0;
    for out in pool.map(std::iter::repeat_n(input, n)) {
        black_box(out.expect("task succeeds"));
        done += 1;
    }
    assert_eq!(done, n);
    micros_since(t0) / n as f64
}

/// µs per task of an `as_completed` over `n` copies of `input` through `pool`.
pub fn completed_cost_us<In: Serialize, Out: DeserializeOwned + Send + 'static>(
    pool: &Pool<In, Out>,
    input: &In,
    n: usize,
) -> f64 {
    let t0 = Instant::now();
    let mut done = 0;
    for (_, out) in pool.as_completed(std::iter::repeat_n(input, n)) {
        black_box(out.expect("task succeeds"));
        done += 1;
    }
    assert_eq!(done, n);
    micros_since(t0) / n as f64
}

/// The 1 KiB echo per-task costs, one thread, medians over rounds.
#[derive(Debug, Default)]
pub struct EchoCosts {
    /// The echo as a Rust function call.
    pub native_us: f64,
    /// One wasm instance reused for every task (no isolation).
    pub reused_us: f64,
    /// A fresh instance per task on the calling thread: the raw path.
    pub fresh_us: f64,
    pub fresh_p90_us: f64,
    /// Fresh / reused, per round.
    pub fresh_vs_reused: f64,
    /// `Pool::map`, one worker, wall time per task.
    pub map_us: f64,
    /// `Pool::map`, one worker: CPU time of every thread of the process per task.
    pub map_cpu_us: f64,
    /// The raw fresh-instance path amortised like `map`: one timed loop of
    /// the round's tasks, total / count (outliers and all).
    pub fresh_loop_us: f64,
    /// `Pool::map` per task / the raw fresh-instance loop, per round: both
    /// amortised over the same number of tasks (the target's ratio).
    pub map_vs_fresh: f64,
    /// `Pool::map` per task / the median individually timed fresh instance
    /// (stricter: the median drops the outliers the amortised figure keeps).
    pub map_vs_fresh_median: f64,
    /// One task at a time through the one-worker pool (submit + wait).
    pub round_trip_us: f64,
    /// `Pool::as_completed`, one worker, wall time per task.
    pub completed_us: f64,
    /// `Pool::as_completed` per task / the raw fresh-instance loop, per round.
    pub completed_vs_fresh: f64,
}

/// Chunks per round in which [`echo_costs`] alternates the fresh loop and `map`.
const MAP_CHUNKS: usize = 4;

/// Measures [`EchoCosts`]: `rounds` rounds of `tasks` individually timed
/// tasks per path (the pool's `map` over `tasks` inputs), paths one after
/// another within a round, ratios within a round.
pub fn echo_costs(rounds: usize, tasks: usize) -> EchoCosts {
    let task: Task<ByteBuf, ByteBuf> = load("echo");
    let runner = DirectRunner::new(&task, Limits::default()).expect("runner");
    let mut reused = runner.reused_instance().expect("instance");
    let pool = pool(task, Isolation::Instance, 1);
    let bytes = ByteBuf::from((0..1024).map(|i| i as u8).collect::<Vec<u8>>());
    let encoded = sandpool_guest::abi::encode(&bytes).expect("encode");
    assert_eq!(runner.run_fresh(&encoded).expect("fresh"), encoded);
    let echo = |input: &ByteBuf| -> ByteBuf { input.clone() };
    // Warm-up: fault in the allocator's slots, code and caches.
    for _ in 0..tasks.min(2000) {
        black_box(runner.run_fresh(&encoded).expect("fresh"));
        black_box(reused.run(&encoded).expect("reused"));
    }
    map_cost_us(&pool, &bytes, tasks.min(1000));
    let mut v: [Vec<f64>; 13] = Default::default();
    for _ in 0..rounds {
        let n = time_each(tasks, || drop(black_box(echo(black_box(&bytes)))));
        let r = time_each(tasks, || {
            drop(black_box(reused.run(&encoded).expect("reused")))
        });
        let f = time_each(tasks, || {
            drop(black_box(runner.run_fresh(&encoded).expect("fresh")))
        });
        // The fresh loop and `map` alternate in chunks (ABBA), so that both
        // sample the same stretches of a VM whose speed drifts by tens of
        // percent over tens of milliseconds.
        let chunk = (tasks / MAP_CHUNKS).max(1);
        let (mut fresh_total, mut map_total, mut map_cpu_total) = (0.0, 0.0, 0.0);
        for i in 0..MAP_CHUNKS {
            let fresh_loop = || {
                let t0 = Instant::now();
                for _ in 0..chunk {
                    drop(black_box(runner.run_fresh(&encoded).expect("fresh")));
                }
                micros_since(t0)
            };
            let mapped = || with_cpu(chunk, || map_cost_us(&pool, &bytes, chunk));
            let (f, (m, c)) = if i % 2 == 0 {
                let f = fresh_loop();
                (f, mapped())
            } else {
                let m = mapped();
                (fresh_loop(), m)
            };
            fresh_total += f;
            map_total += m * chunk as f64;
            map_cpu_total += c * chunk as f64;
        }
        let measured = (chunk * MAP_CHUNKS) as f64;
        let fl = fresh_total / measured;
        let (map, map_cpu) = (map_total / measured, map_cpu_total / measured);
        let rt = round_trip_us(&pool, &bytes, (tasks / 4).max(1));
        let completed = completed_cost_us(&pool, &bytes, tasks);
        let (nm, rm, fm) = (median_of(&n), median_of(&r), median_of(&f));
        for (into, x) in v.iter_mut().zip([
            nm,
            rm,
            fm,
            percentile(&f, 0.9),
            fm / rm,
            map,
            map_cpu * 1e6,
            map / fl,
            rt,
            completed,
            completed / fl,
            fl,
            map / fm,
        ]) {
            into.push(x);
        }
    }
    pool.shutdown(true, false);
    let [a, b, c, d, e, f, g, h, i, j, k, l, m] = &mut v;
    EchoCosts {
        native_us: median(a),
        reused_us: median(b),
        fresh_us: median(c),
        fresh_p90_us: median(d),
        fresh_vs_reused: median(e),
        map_us: median(f),
        map_cpu_us: median(g),
        map_vs_fresh: median(h),
        round_trip_us: median(i),
        completed_us: median(j),
        completed_vs_fresh: median(k),
        fresh_loop_us: median(l),
        map_vs_fresh_median: median(m),
    }
}

/// Measures `a` then `b`, `rounds` times, alternating which goes first
/// (ABBA); returns each side's results and the per-round `b / a`.
pub fn paired(
    rounds: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> [Vec<f64>; 3] {
    let (mut xs, mut ys, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        xs.push(x);
        ys.push(y);
        ratios.push(y / x);
    }
    [xs, ys, ratios]
}

/// A CPU-bound pool against plain threads on the same inputs, same count.
#[derive(Debug, Default)]
pub struct VsNative {
    pub native_rate: f64,
    pub pool_rate: f64,
    /// Pool tasks/s / native tasks/s, per round.
    pub rate_ratio: f64,
    /// Native CPU per task / the pool's CPU per task (all of this process's
    /// threads), per round: the figure load from elsewhere does not move.
    pub cpu_ratio: f64,
}

/// `pool.map(inputs)` vs `native` on as many plain threads as the pool has
/// workers, `rounds` short rounds alternating which goes first.
pub fn versus_native<In, Out, R>(
    rounds: usize,
    workers: usize,
    pool: &Pool<In, Out>,
    inputs: &[In],
    native: impl Fn(&In) -> R + Sync,
) -> VsNative
where
    In: Serialize + Sync,
    Out: DeserializeOwned + Send + 'static,
{
    let warm = &inputs[..inputs.len().min(16)];
    map_rate(pool, warm);
    thread_rate(workers, warm, &native);
    let mut v: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        let native_first = round % 2 == 0;
        let mut n = (0.0, 0.0);
        if native_first {
            n = with_cpu(inputs.len(), || thread_rate(workers, inputs, &native));
        }
        let w = with_cpu(inputs.len(), || map_rate(pool, inputs));
        if !native_first {
            n = with_cpu(inputs.len(), || thread_rate(workers, inputs, &native));
        }
        for (into, x) in v.iter_mut().zip([n.0, w.0, w.0 / n.0, n.1 / w.1]) {
            into.push(x);
        }
    }
    let [a, b, c, d] = &mut v;
    VsNative {
        native_rate: median(a),
        pool_rate: median(b),
        rate_ratio: median(c),
        cpu_ratio: median(d),
    }
}

/// 2 workers vs 1 on CPU-bound work, beside plain threads' 2 vs 1 in the same rounds.
#[derive(Debug, Default)]
pub struct Scaling {
    pub native_1: f64,
    pub native_2: f64,
    pub pool_1: f64,
    pub pool_2: f64,
    pub native_2_vs_1: f64,
    pub pool_2_vs_1: f64,
    /// (pool 2 vs 1) / (native 2 vs 1), per round: 1.0 when the pool
    /// scales exactly as plain threads do on these cores now.
    pub pool_vs_native_scaling: f64,
    /// The pool's CPU time per task with 2 workers / with 1.
    pub pool_cpu_2_vs_1: f64,
}

/// [`Scaling`] on `count_primes(limit)` tasks (the primes guest), `per_worker`
/// tasks per worker, `rounds` rounds; all four measured in every round.
pub fn primes_scaling(rounds: usize, per_worker: usize, limit: u64) -> Scaling {
    let task: Task<u64, u64> = load("primes");
    let (p1, p2) = (
        pool(task.clone(), Isolation::Instance, 1),
        pool(task, Isolation::Instance, 2),
    );
    let one: Vec<u64> = (0..per_worker as u64).map(|i| limit + i % 7).collect();
    let two: Vec<u64> = (0..2 * per_worker as u64).map(|i| limit + i % 7).collect();
    let native = |&n: &u64| sandpool::workloads::count_primes(n);
    assert_eq!(
        p1.submit(&1000).expect("submit").wait().expect("primes"),
        native(&1000)
    );
    map_rate(&p2, &two[..two.len().min(4)]);
    thread_rate(2, &two[..two.len().min(4)], native);
    let mut v: [Vec<f64>; 8] = Default::default();
    for round in 0..rounds {
        // Alternate the order, so a burst of load hits each side alike.
        let (n1, n2, (w1, c1), (w2, c2)) = if round % 2 == 0 {
            let n1 = thread_rate(1, &one, native);
            let n2 = thread_rate(2, &two, native);
            let w1 = with_cpu(one.len(), || map_rate(&p1, &one));
            (n1, n2, w1, with_cpu(two.len(), || map_rate(&p2, &two)))
        } else {
            let w2 = with_cpu(two.len(), || map_rate(&p2, &two));
            let w1 = with_cpu(one.len(), || map_rate(&p1, &one));
            let n2 = thread_rate(2, &two, native);
            (thread_rate(1, &one, native), n2, w1, w2)
        };
        for (into, x) in v.iter_mut().zip([
            n1,
            n2,
            w1,
            w2,
            n2 / n1,
            w2 / w1,
            (w2 / w1) / (n2 / n1),
            c2 / c1,
        ]) {
            into.push(x);
        }
    }
    p1.shutdown(true, false);
    p2.shutdown(true, false);
    let [a, b, c, d, e, f, g, h] = &mut v;
    Scaling {
        native_1: median(a),
        native_2: median(b),
        pool_1: median(c),
        pool_2: median(d),
        native_2_vs_1: median(e),
        pool_2_vs_1: median(f),
        pool_vs_native_scaling: median(g),
        pool_cpu_2_vs_1: median(h),
    }
}

/// Where one CPU task's time goes, one thread, median µs per task.
#[derive(Debug, Default)]
pub struct Breakdown {
    /// The same function as native Rust.
    pub native_us: f64,
    /// The guest in one reused instance: its compiled code plus copying in and out.
    pub reused_us: f64,
    /// The guest in a fresh instance per task.
    pub fresh_us: f64,
    /// Through a one-worker pool, submit + wait (adds the hand-off and encode/decode).
    pub pool_us: f64,
    /// The first three steps again in this thread's CPU time (not moved by
    /// other processes' load); the pool step has none (it runs on a worker).
    pub native_cpu_us: f64,
    pub reused_cpu_us: f64,
    pub fresh_cpu_us: f64,
}

/// [`Breakdown`] of the guest `name` on `inputs` (cycled), `tasks` tasks,
/// the four steps alternated task by task so that load hits them alike.
pub fn breakdown<In, Out>(
    name: &str,
    inputs: &[In],
    tasks: usize,
    native: &dyn Fn(&In),
) -> Breakdown
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
{
    let task: Task<In, Out> = load(name);
    let runner = DirectRunner::new(&task, Limits::default()).expect("runner");
    let mut reused = runner.reused_instance().expect("instance");
    let pool = pool(task, Isolation::Instance, 1);
    let encoded: Vec<Vec<u8>> = inputs
        .iter()
        .map(|x| sandpool_guest::abi::encode(x).expect("encode"))
        .collect();
    let mut t: [Vec<f64>; 7] = Default::default();
    // (wall µs, this thread's CPU µs) of one call of `f`.
    let timed = |f: &mut dyn FnMut()| {
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        f();
        let wall = micros_since(t0);
        (wall, (thread_cpu_ns() - c0) as f64 / 1e3)
    };
    for i in 0..tasks {
        let k = i % inputs.len();
        let (w, c) = timed(&mut || native(&inputs[k]));
        t[0].push(w);
        t[4].push(c);
        let (w, c) = timed(&mut || drop(black_box(reused.run(&encoded[k]).expect("reused"))));
        t[1].push(w);
        t[5].push(c);
        let (w, c) = timed(&mut || drop(black_box(runner.run_fresh(&encoded[k]).expect("fresh"))));
        t[2].push(w);
        t[6].push(c);
        let t0 = Instant::now();
        black_box(
            pool.submit(&inputs[k])
                .expect("submit")
                .wait()
                .expect("task"),
        );
        t[3].push(micros_since(t0));
    }
    pool.shutdown(true, false);
    let [a, b, c, d, e, f, g] = &mut t;
    Breakdown {
        native_us: median(a),
        reused_us: median(b),
        fresh_us: median(c),
        pool_us: median(d),
        native_cpu_us: median(e),
        reused_cpu_us: median(f),
        fresh_cpu_us: median(g),
    }
}
