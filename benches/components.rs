//! Fresh-instance cost of component tasks (Python, JavaScript) against the
//! Rust guest and against what a Python user does today, in one run:
//! spawning `python3 -c` per task and a round trip through a warm
//! `ProcessPoolExecutor` per task. Every figure is the median (and p99) of
//! per-task wall time for document statistics over the same 1 KiB text,
//! printed with the machine load (/proc/loadavg) when it was taken, plus
//! where a fresh Python instance's time goes (store, instantiate, call, drop;
//! the same call made again in the same instance, which is the guest's own
//! work; thread CPU time and page faults per task).
//!
//! `SANDPOOL_BENCH_PROFILE_PY=N`: only N fresh Python instances, for
//! `perf record -g`.
//!
//! Needs the guests (scripts/build-guests.sh, scripts/build-components.sh)
//! and python3. `SANDPOOL_BENCH_QUICK=1`: fewer rounds (a smoke run).

#![allow(clippy::unwrap_used)] // a benchmark fails loudly on a broken setup

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandpool::__bench::{ComponentRunner, DirectRunner, Phases};
use sandpool::{FileInput, Limits, Task};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Figure {
    median: Duration,
    p99: Duration,
}

fn figure(mut times: Vec<Duration>) -> Figure {
    times.sort();
    Figure {
        median: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
    }
}

fn time_each(rounds: usize, mut f: impl FnMut()) -> Figure {
    f(); // warm: first slot use, page faults of the memory image
    figure(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// This thread's CPU time (user and system): steadier than wall time on a loaded machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Minor page faults of this thread so far.
fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_minflt as u64
}

/// [`time_each`] in thread CPU time.
fn cpu_each(rounds: usize, mut f: impl FnMut()) -> Figure {
    f();
    figure(
        (0..rounds)
            .map(|_| {
                let t = thread_cpu();
                f();
                thread_cpu() - t
            })
            .collect(),
    )
}

fn print(label: &str, f: &Figure, base: Option<Duration>) {
    let ratio = base.map_or(String::new(), |b| {
        format!(
            "  {:>8.3}x the Python component",
            f.median.as_secs_f64() / b.as_secs_f64()
        )
    });
    println!(
        "{label:<44} median {:>10.1?}  p99 {:>10.1?}{ratio}  (load {})",
        f.median,
        f.p99,
        load()
    );
}

const DOC_STATS_PY: &str = r#"
import collections, re, sys
WORD = re.compile(r"[^\W_]+")
text = sys.stdin.read()
words = [w.lower() for w in WORD.findall(text)]
counts = collections.Counter(words)
top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
print(len(words), len(counts), top[:1])
"#;

const POOL_PY: &str = r#"
import collections, re, sys, time, statistics
from concurrent.futures import ProcessPoolExecutor
WORD = re.compile(r"[^\W_]+")
def doc_stats(text):
    words = [w.lower() for w in WORD.findall(text)]
    counts = collections.Counter(words)
    return len(words), len(counts), sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
if __name__ == "__main__":
    text, rounds = sys.stdin.read(), int(sys.argv[1])
    with ProcessPoolExecutor(1) as pool:
        pool.submit(doc_stats, text).result()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            pool.submit(doc_stats, text).result()
            times.append(time.perf_counter() - t)
    times.sort()
    print(times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)])
"#;

fn python_c(text: &str) {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", DOC_STATS_PY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn process_pool(text: &str, rounds: usize) -> Option<Figure> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", POOL_PY, &rounds.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    let (median, p99) = (it.next()??, it.next()??);
    Some(Figure {
        median: Duration::from_secs_f64(median),
        p99: Duration::from_secs_f64(p99),
    })
}

fn encoded(text: &str) -> Vec<u8> {
    let input = FileInput {
        name: "bench.txt".into(),
        data: text.as_bytes().to_vec(),
    };
    bincode::serde::encode_to_vec(&input, bincode::config::standard()).unwrap()
}

fn component(path: &Path) -> ComponentRunner {
    let cache = workspace().join("target/test-component-cache");
    let started = Instant::now();
    let task: Task<FileInput, String> = Task::from_file_cached(path, cache)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-components.sh)", path.display()));
    println!(
        "loaded {} in {:.1?} (from cache: {})",
        path.display(),
        started.elapsed(),
        task.loaded_from_cache()
    );
    ComponentRunner::new(&task, Limits::default()).unwrap()
}

fn main() {
    let quick = std::env::var_os("SANDPOOL_BENCH_QUICK").is_some();
    let rounds = if quick { 30 } else { 500 };
    let spawn_rounds = if quick { 5 } else { 40 };
    let text: String = "The quick brown fox jumps over the lazy dog; the dog sleeps.\n"
        .repeat(17)
        .chars()
        .take(1024)
        .collect();
    let input = encoded(&text);
    let components = workspace().join("target/guest/components");
    println!("fresh instance per task, document statistics of 1 KiB ({rounds} rounds)\n");

    let rust_path = workspace().join("target/guest/wasm32-wasip1/release/examples/doc_stats.wasm");
    let rust: Task<FileInput, String> = Task::from_file(&rust_path).unwrap();
    let rust = DirectRunner::new(&rust, Limits::default()).unwrap();
    let py = component(&components.join("doc_stats_py.wasm"));
    if let Some(n) = std::env::var_os("SANDPOOL_BENCH_PROFILE_PY") {
        // `perf record` this: only fresh Python instances, N of them.
        let n: usize = n.to_str().and_then(|n| n.parse().ok()).unwrap_or(2000);
        let fig = time_each(n, || {
            py.run_fresh(&input).unwrap();
        });
        print("Python component (profile run)", &fig, None);
        let cpu = cpu_each(n, || {
            py.run_fresh(&input).unwrap();
        });
        print("Python component, thread CPU time", &cpu, None);
        return;
    }
    let js = component(&components.join("doc_stats_js.wasm"));
    println!();

    let py_fig = time_each(rounds, || {
        py.run_fresh(&input).unwrap();
    });
    print("Python component (componentize-py)", &py_fig, None);
    let base = Some(py_fig.median);
    let js_fig = time_each(rounds, || {
        js.run_fresh(&input).unwrap();
    });
    print("JavaScript component (componentize-js)", &js_fig, base);
    let rust_fig = time_each(rounds, || {
        rust.run_fresh(&input).unwrap();
    });
    print("Rust ABI v1 module (reference)", &rust_fig, base);
    let spawn = time_each(spawn_rounds, || python_c(&text));
    print("spawn `python3 -c` per task", &spawn, base);
    match process_pool(&text, rounds) {
        Some(fig) => print("ProcessPoolExecutor(1), one task round trip", &fig, base),
        None => println!("ProcessPoolExecutor: python3 failed"),
    }

    println!("\nwhere a fresh instance's time goes (medians of each phase):");
    for (name, runner) in [("Python", &py), ("JavaScript", &js)] {
        let mut all: Vec<Phases> = (0..rounds).map(|_| runner.run_phases(&input).1).collect();
        let med = |f: fn(&Phases) -> Duration, all: &mut Vec<Phases>| {
            all.sort_by_key(f);
            f(&all[all.len() / 2])
        };
        println!(
            "  {name:<11} store+WASI {:>9.1?}  instantiate {:>9.1?}  call {:>9.1?}  drop {:>9.1?}  \
             (the same call again in that instance: {:>9.1?})  (load {})",
            med(|p| p.store, &mut all),
            med(|p| p.instantiate, &mut all),
            med(|p| p.call, &mut all),
            med(|p| p.drop, &mut all),
            med(|p| p.again, &mut all),
            load()
        );
        let faults = minor_faults();
        let cpu = cpu_each(rounds, || {
            runner.run_fresh(&input).unwrap();
        });
        let per_task = (minor_faults() - faults) as f64 / (rounds + 1) as f64;
        println!(
            "  {name:<11} thread CPU time per fresh task: median {:>9.1?}  p99 {:>9.1?}; \
             {per_task:.0} page faults per task (load {})",
            cpu.median,
            cpu.p99,
            load()
        );
    }
}
