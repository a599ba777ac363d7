//! The parent side of the levels benchmark: writes the data files, runs
//! every level × workload as a child process (and Python's executors),
//! interleaved over rounds, then the targets child; collects the rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::common::corpus::{documents, make_doc};
use crate::common::machine::load_average;
use crate::common::{cpus, guest, python, quick_divisor, root};
use crate::*;
use sandpool::workloads::{count_primes, doc_stats_of};

/// One run of one level on one workload.
pub struct RunResult {
    pub round: usize,
    pub workload: &'static str,
    pub level: Level,
    pub result: Result<Value, String>,
}

/// Everything the report needs.
pub struct Results {
    pub started: Instant,
    pub report_dir: PathBuf,
    /// The workload divisor (10 in quick mode).
    pub s: usize,
    pub load_start: String,
    pub load_end: String,
    pub parity: String,
    /// µs to write a small file and rename it into place, one thread.
    pub write_us: f64,
    /// Per workload and level: the median run.
    pub rows: Vec<Row>,
    /// Every run, in order.
    pub runs: Vec<RunResult>,
    pub targets: Result<Value, String>,
}

pub struct Row {
    pub workload: &'static str,
    pub level: Level,
    pub result: Result<Value, String>,
}

impl Row {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.result.as_ref().ok().and_then(|v| v[key].as_f64())
    }
}

/// Runs every child and Python, then the targets child.
pub fn run_all() -> Results {
    let started = Instant::now();
    let report_dir = root().join("target/bench-report");
    std::fs::create_dir_all(&report_dir).expect("report directory");
    for name in ["echo", "doc_stats", "primes", "wasi_probe"] {
        guest(name); // fails early, naming the missing guest
    }
    let s = quick_divisor();
    let load_start = load_average();
    let parity = check_parity();

    // The data of the read and mixed workloads: make_doc(i) as doc-iiii.txt.
    let work = tempfile::Builder::new()
        .prefix("levels-")
        .tempdir_in(&report_dir)
        .expect("work directory");
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    for (i, doc) in documents(FILES, DOC_BYTES).into_iter().enumerate() {
        std::fs::write(data.join(format!("doc-{i:04}.txt")), doc.data).expect("write data");
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

    let mut runs: Vec<RunResult> = Vec::new();
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
                // Untimed: write back what earlier runs left dirty, so no run
                // pays for another's outputs (the mixed rows write files).
                // SAFETY: sync(2) has no preconditions.
                unsafe { libc::sync() };
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
                runs.push(RunResult {
                    round,
                    workload: w.key,
                    level,
                    result,
                });
            }
        }
    }
    // Per workload and level: the run with the median throughput, and the spread.
    let mut rows = Vec::new();
    for w in &WORKLOADS {
        for level in LEVELS {
            let mut ok: Vec<Value> = Vec::new();
            let mut failed = None;
            for r in runs
                .iter()
                .filter(|r| r.workload == w.key && r.level == level)
            {
                match &r.result {
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

    Results {
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
    }
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
    let s = quick_divisor();
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
