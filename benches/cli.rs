//! `sandpool run` against the seed's Python pattern (ProcessPoolExecutor, one
//! output file per input) on the same generated folders, in the same run:
//! files/s and peak RSS for 10,000 and 100,000 small text files, plus the
//! cold and cached start-up time of a one-file run.
//!
//! Run with `cargo bench -p sandpool --bench cli` (after scripts/build-guests.sh).
//! Set SANDPOOL_BENCH_SIZES=1000,5000 to change the folder sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Measured {
    wall: Duration,
    /// User + system CPU time of the process and the children it waited for.
    cpu: Duration,
    max_rss_kib: i64,
    ok: bool,
}

/// Runs `cmd` and measures its wall time and peak RSS (via wait4).
fn measure(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    // Reaped below with wait4 (which also reports the child's rusage), not Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; wait4 fills `status` and `usage`.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(r, pid, "wait4");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Measured {
        wall,
        cpu,
        max_rss_kib: usage.ru_maxrss,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

const WORDS: &[&str] = &[
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
    "page",
    "café",
    "데이터",
    "처리",
];

fn generate(dir: &Path, files: usize) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..files {
        let sub = dir.join(format!("part{:02}", i % 20));
        if i < 20 {
            std::fs::create_dir_all(&sub).expect("mkdir");
        }
        let mut text = String::new();
        for w in 0..(40 + i % 80) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            text.push(if w % 12 == 11 { '\n' } else { ' ' });
        }
        std::fs::write(sub.join(format!("doc {i}.txt")), text).expect("write");
    }
}

fn same_outputs(a: &Path, b: &Path, sample: usize) -> bool {
    let mut names: Vec<_> = std::fs::read_dir(a)
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let step = (names.len() / sample).max(1);
    names.iter().step_by(step).all(|name| {
        let read = |dir: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap_or_default())
                .unwrap_or_default()
        };
        let same = read(a) == read(b);
        if !same {
            eprintln!("outputs differ for {}", name.to_string_lossy());
        }
        same
    })
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/guest/wasm32-wasip1/release/examples/doc_stats.wasm");
    assert!(
        wasm.exists(),
        "build the guests first: scripts/build-guests.sh"
    );
    let python_script = root.join("benches/python/doc_stats_pool.py");
    let sandpool = env!("CARGO_BIN_EXE_sandpool");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let sizes: Vec<usize> = std::env::var("SANDPOOL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let work = root.join("target/bench-cli");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("mkdir");
    let cache = work.join("cache");

    println!("# sandpool run vs Python ProcessPoolExecutor (doc_stats)");
    println!("machine: {cpus} CPUs, {}", cpu_model());
    println!("python: {}", version_of("python3", "--version"));
    println!("date: {}", version_of("date", "-u"));
    println!();
    println!(
        "| files | sandpool files/s | sandpool CPU µs/file | sandpool peak RSS | Python files/s | Python CPU µs/file | Python peak RSS | speed-up (wall) | CPU ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let inputs = work.join(format!("in-{n}"));
        generate(&inputs, n);
        let (out_s, out_p) = (
            work.join(format!("out-s-{n}")),
            work.join(format!("out-p-{n}")),
        );
        let s = measure(
            Command::new(sandpool)
                .env("SANDPOOL_CACHE_DIR", &cache)
                .args(["run", "--quiet", "--force", "-o"])
                .arg(&out_s)
                .arg(&wasm)
                .arg(&inputs),
        );
        let p = measure(
            Command::new("python3")
                .arg(&python_script)
                .arg(&inputs)
                .arg(&out_p)
                .arg(cpus.to_string()),
        );
        assert!(s.ok && p.ok, "both runs succeed");
        let agree = same_outputs(&out_s, &out_p, 200);
        let (rs, rp) = (
            n as f64 / s.wall.as_secs_f64(),
            n as f64 / p.wall.as_secs_f64(),
        );
        let per_file = |m: &Measured| m.cpu.as_secs_f64() * 1e6 / n as f64;
        println!(
            "| {n} | {rs:.0} | {:.0} | {:.1} MiB | {rp:.0} | {:.0} | {:.1} MiB | {:.1}x{} | {:.1}x |",
            per_file(&s),
            s.max_rss_kib as f64 / 1024.0,
            per_file(&p),
            p.max_rss_kib as f64 / 1024.0,
            rs / rp,
            if agree { "" } else { " (OUTPUTS DIFFER)" },
            per_file(&p) / per_file(&s),
        );
        let _ = std::fs::remove_dir_all(&out_s);
        let _ = std::fs::remove_dir_all(&out_p);
        let _ = std::fs::remove_dir_all(&inputs);
    }
    println!(
        "(Python peak RSS is the largest single process of the pool: wait4 reports the parent's own maximum.)"
    );
    println!("target: 10x the Python throughput, flat memory.");

    let one = work.join("one");
    std::fs::create_dir_all(&one).expect("mkdir");
    std::fs::write(one.join("a.txt"), "one small file").expect("write");
    let startup = |label: &str, clear: bool| {
        if clear {
            let _ = std::fs::remove_dir_all(&cache);
        }
        let runs: Vec<Duration> = (0..5)
            .map(|_| {
                if clear {
                    let _ = std::fs::remove_dir_all(&cache);
                }
                measure(
                    Command::new(sandpool)
                        .env("SANDPOOL_CACHE_DIR", &cache)
                        .args(["run", "--quiet", "--force", "-o"])
                        .arg(work.join("one-out"))
                        .arg(&wasm)
                        .arg(&one),
                )
                .wall
            })
            .collect();
        let mut sorted = runs.clone();
        sorted.sort();
        println!(
            "one-file run, {label}: median {:.1} ms",
            sorted[2].as_secs_f64() * 1000.0
        );
        sorted[2]
    };
    println!();
    let cold = startup("cold (module compiled)", true);
    let warm = startup("cached (compiled module loaded from disk)", false);
    println!(
        "cached start-up is {:.1}x faster than cold",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn version_of(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .trim()
            .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}
