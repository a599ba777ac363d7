//! The levels report: the machine and versions, the target tables (issues
//! 6 and 11) with their verdicts, every level on every workload, the
//! single-thread breakdown; written to target/bench-report/report.md and
//! printed, with the plot beside it.

use std::fmt::Write as _;

use crate::common::cpus;
use crate::common::machine::{command_line, cpu_model, date, git_revision, locked_version};
use crate::common::python;
use crate::common::stats::{median, target_line};
use crate::runner::{Results, Row};
use crate::*;

pub fn find<'a>(rows: &'a [Row], workload: &str, level: Level) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.level == level)
}

pub fn value(rows: &[Row], workload: &str, level: Level, key: &str) -> Option<f64> {
    find(rows, workload, level).and_then(|r| r.get(key))
}

pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub fn fmt_rate(r: f64) -> String {
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

/// Writes and prints the report of `r`.
pub fn write(r: Results) {
    let Results {
        started,
        report_dir,
        s,
        load_start,
        load_end,
        parity,
        write_us,
        rows,
        runs,
        targets,
    } = r;
    let model = cpu_model();
    let date = date();
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# sandpool: isolation levels vs speed\n");
    if s > 1 {
        let _ = writeln!(
            w,
            "**Quick mode (SANDPOOL_LEVELS_QUICK): a tenth of every workload; a smoke test, not a measurement.**\n"
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
        git_revision(),
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

    // Issue 11's targets that this benchmark owns (ratios within a round).
    let _ = writeln!(w, "\n## Issue 11 targets (ratios measured in this run)\n");
    let _ = writeln!(w, "| target | measured | verdict |");
    let _ = writeln!(w, "|---|---|---|");
    let mixed: Vec<f64> = (0..REPEATS)
        .filter_map(|round| {
            let rate = |level: Level| {
                runs.iter()
                    .find(|r| r.round == round && r.workload == "mixed" && r.level == level)
                    .and_then(|r| r.result.as_ref().ok())
                    .and_then(|v| v["tasks_per_second"].as_f64())
            };
            Some(rate(Level::Instance)? / rate(Level::Native)?)
        })
        .collect();
    let mixed_ratio = median(&mut mixed.clone());
    let _ = writeln!(
        w,
        "| mixed (read → docstats → write): wasm `Pipeline` (instance level) ≥ 0.9× native threads | {mixed_ratio:.2}× (median of {} per-round ratios: {}) | {} |",
        mixed.len(),
        mixed
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        verdict(mixed_ratio >= 0.9)
    );
    if let (Some(scaling), Some(wasm), Some(native)) = (
        tv("instance_scaling_vs_native"),
        tv("instance_2_vs_1"),
        tv("native_2_vs_1"),
    ) {
        let _ = writeln!(
            w,
            "| 2 workers vs 1 (primes) tracks plain threads' 2 vs 1 within 5% | {scaling:.3} ({wasm:.2}× vs {native:.2}×, median of per-round ratios) | {} |",
            verdict((scaling - 1.0).abs() <= 0.05)
        );
    }
    if let (Some(ratio), Some(map), Some(fresh)) =
        (tv("map_vs_fresh"), tv("map_us"), tv("fresh_loop_us"))
    {
        let _ = writeln!(
            w,
            "| `Pool::map` (1 worker) per task ≤ 1.3× the raw fresh instance, echo 1 KiB, both amortised | {ratio:.2}× ({map:.2} µs vs {fresh:.2} µs) | {} |",
            verdict(ratio <= 1.3)
        );
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
    println!();
    target_line(
        "levels mixed row (read → docstats → write), wasm Pipeline vs native threads",
        &format!("{mixed_ratio:.2}× (median of per-round ratios)"),
        "≥ 0.9×",
        mixed_ratio >= 0.9,
    );
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
    match plot::plot(&svg, &rows, &caption) {
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
