//! Pipeline throughput and memory: read (I/O pool) → doc_stats (wasm pool) →
//! write (I/O pool) over generated small inputs. Each size runs in a fresh
//! process so its peak RSS (VmHWM) is its own; flat memory means the peak
//! does not grow with the number of inputs.
//!
//! `cargo bench -p sandpool --bench pipeline` (after scripts/build-guests.sh).
//! `SANDPOOL_BENCH_SIZES=10000,100000,300000` sets the sizes;
//! `SANDPOOL_BENCH_1M=1` adds 1,000,000 inputs (the issue-11 memory target).

mod common;
use common::machine::{load_average, print_header};
use common::measure::own_peak_rss_mib;
use common::stats::target_line;
use common::{cpus, env_flag, env_sizes, guest};

use std::process::Command;
use std::time::Instant;

use sandpool::{Error, FileInput, IoPool, Json, Pipeline, Pool, Task, workloads::DocStats};

fn child(n: u64) {
    let task: Task<FileInput, Json<DocStats>> =
        Task::from_file(guest("doc_stats")).expect("doc_stats loads");
    let pool = Pool::builder(task).workers(cpus()).build().expect("pool");
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
        own_peak_rss_mib(),
        stats.peak_in_flight()
    );
}

fn main() {
    if let Ok(n) = std::env::var("SANDPOOL_PIPELINE_CHILD") {
        child(n.parse().expect("a count"));
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    print_header(
        "Pipeline: read (I/O) -> doc_stats (wasm, fresh instance per item) -> write (I/O)",
        false,
    );
    println!("- each size in a fresh process\n");
    println!("| inputs | items/s | peak RSS | peak items in flight |");
    println!("|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    let mut sizes = env_sizes("SANDPOOL_BENCH_SIZES", &[10_000, 100_000, 300_000]);
    if env_flag("SANDPOOL_BENCH_1M") && !sizes.contains(&1_000_000) {
        sizes.push(1_000_000);
    }
    let mut largest = None;
    for n in sizes.into_iter().map(|n| n as u64) {
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
        let peak = fields[2].parse::<f64>().unwrap_or(0.0);
        peaks.push(peak);
        largest = Some((n, peak));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
        println!();
        println!(
            "peak RSS at the most inputs is {:.2}x the peak at the fewest (flat is 1.0x); target: under 100 MiB",
            last / first
        );
    }
    if let Some((n, peak)) = largest {
        target_line(
            &format!("Pipeline peak RSS over {n} inputs"),
            &format!("{peak:.1} MiB"),
            "< 100 MiB",
            peak < 100.0,
        );
    }
    println!("(load average at end: {})", load_average());
}
