//! Pipeline throughput and memory: read (I/O pool) → doc_stats (wasm pool) →
//! write (I/O pool) over generated small inputs. Each size runs in a fresh
//! process so its peak RSS (VmHWM) is its own; flat memory means the peak
//! does not grow with the number of inputs.
//!
//! `cargo bench -p sandpool --bench pipeline` (after scripts/build-guests.sh).

use std::process::Command;
use std::time::Instant;

use sandpool::{Error, FileInput, IoPool, Json, Pipeline, Pool, Task, workloads::DocStats};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn child(n: u64) {
    let wasm = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/guest/wasm32-wasip1/release/examples/doc_stats.wasm"
    );
    let task: Task<FileInput, Json<DocStats>> =
        Task::from_file(wasm).expect("build the guests first");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let pool = Pool::builder(task).workers(cpus).build().expect("pool");
    let io = IoPool::builder().build().expect("io pool");
    let started = Instant::now();
    let run = Pipeline::builder(&io).build().run(
        0..n,
        |&i: &u64| {
            // "Read": make a small document (about 200 bytes) for input i.
            let text = format!(
                "document {i} talks about pools threads and processes; pools again {} and {}\n",
                i % 101,
                i % 7
            )
            .repeat(2);
            async move {
                Ok(FileInput {
                    name: format!("doc-{i}.txt"),
                    data: text.into_bytes(),
                })
            }
        },
        &pool,
        |i: u64, stats: Result<Json<DocStats>, Error>| async move {
            // "Write": serialize the result as the CLI would.
            let stats = stats.expect("doc_stats succeeds");
            assert!(stats.0.words > 0);
            (
                i,
                serde_json::to_vec(&stats.0).map(|v| v.len()).unwrap_or(0),
            )
        },
    );
    let stats = run.stats();
    let mut count = 0u64;
    let mut bytes = 0usize;
    for (index, (i, len)) in run {
        assert_eq!(index as u64, i);
        count += 1;
        bytes += len;
    }
    assert_eq!(count, n);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{n} {:.0} {:.1} {} {bytes}",
        n as f64 / seconds,
        peak_rss_mib(),
        stats.peak_in_flight()
    );
}

fn main() {
    if let Ok(n) = std::env::var("SANDPOOL_PIPELINE_CHILD") {
        child(n.parse().expect("a count"));
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    println!("# Pipeline: read (I/O) -> doc_stats (wasm, fresh instance per item) -> write (I/O)");
    println!(
        "machine: {} CPUs; each size in a fresh process",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    println!("| inputs | items/s | peak RSS | peak items in flight |");
    println!("|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for n in [10_000u64, 100_000, 300_000] {
        let out = Command::new(&exe)
            .env("SANDPOOL_PIPELINE_CHILD", n.to_string())
            .output()
            .expect("child runs");
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !out.status.success() || fields.len() < 4 {
            println!(
                "| {n} | failed: {} |",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            continue;
        }
        println!(
            "| {n} | {} | {} MiB | {} |",
            fields[1], fields[2], fields[3]
        );
        peaks.push(fields[2].parse::<f64>().unwrap_or(0.0));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
        println!();
        println!(
            "peak RSS at 30x the inputs is {:.2}x the peak at 10,000 (flat is 1.0x); target: under 100 MiB",
            last / first
        );
    }
}
