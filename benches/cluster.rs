//! Scale-out cost: 1, 2 and 4 `sandpool worker --nats` processes (one
//! task at a time each) against the local run of the same job (doc_stats
//! on small files), through a real nats-server on this machine. Prints
//! throughput, the per-task overhead through the broker, and the load.
//!
//! `cargo bench --bench cluster` (SANDPOOL_BENCH_INPUTS sets the count).

#[path = "../tests/common/nats.rs"]
mod nats;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn run(args: &[&str], task: &Path, inputs: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .arg("run")
        .args(args)
        .args(["--quiet", "--no-cache"])
        .arg(task)
        .arg(inputs)
        .arg("-o")
        .arg(out)
        .status()
        .expect("sandpool run");
    assert!(status.success(), "sandpool run failed");
    started.elapsed()
}

fn main() {
    let n: usize = std::env::var("SANDPOOL_BENCH_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let task = root.join("target/guest/wasm32-wasip1/release/examples/doc_stats.wasm");
    assert!(task.exists(), "run scripts/build-guests.sh first");
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).expect("inputs");
    for i in 0..n {
        std::fs::write(
            inputs.join(format!("doc{i}.txt")),
            format!("document {i}: the cat sat on the mat\n"),
        )
        .expect("input");
    }
    println!("cluster: doc_stats on {n} small files; times include process start and module load");
    for workers in [1usize, 2, 4] {
        let local = run(
            &["--jobs", &workers.to_string()],
            &task,
            &inputs,
            &dir.path().join(format!("local{workers}")),
        );
        let local_load = load();
        let server = nats::Server::start();
        let url = server.url();
        let mut procs: Vec<_> = (0..workers)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_sandpool"))
                    .args(["worker", "--quiet", "--jobs", "1", "--nats", &url])
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("worker")
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let remote = run(
            &["--nats", &url],
            &task,
            &inputs,
            &dir.path().join(format!("remote{workers}")),
        );
        let remote_load = load();
        for p in &mut procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        drop(server);
        let per = |d: Duration| d.as_secs_f64() / n as f64 * 1e6;
        println!(
            "  {workers} workers: local {:>7.0} tasks/s ({:.1} us/task, load {local_load}) | \
             cluster {:>7.0} tasks/s ({:.1} us/task, load {remote_load}) | \
             cluster/local time {:.2}x, broker overhead {:+.1} us/task",
            n as f64 / local.as_secs_f64(),
            per(local),
            n as f64 / remote.as_secs_f64(),
            per(remote),
            remote.as_secs_f64() / local.as_secs_f64(),
            per(remote) - per(local),
        );
    }
}
