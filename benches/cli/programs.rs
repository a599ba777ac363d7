//! The four programs the cli benchmark runs on one folder, each a child
//! process measured by `wait4`: the floor, `sandpool run` at the instance
//! and process levels, and the seed's Python pattern; and their summaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Setup;
use crate::common::machine::load_1min;
use crate::common::measure::{Measured, measure};
use crate::common::stats::{max, median_of};
use crate::common::{python, root, sandpool_exe};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Program {
    Floor,
    Instance,
    Process,
    Python,
}

impl Program {
    pub const ALL: [Program; 4] = [
        Program::Floor,
        Program::Instance,
        Program::Process,
        Program::Python,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Program::Floor => "floor",
            Program::Instance => "instance",
            Program::Process => "process",
            Program::Python => "python",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Program::Floor => "floor (file work only, benches/floor)",
            Program::Instance => "`sandpool run` (instance level)",
            Program::Process => "`sandpool run --isolation process`",
            Program::Python => "Python ProcessPoolExecutor (doc_stats_pool.py)",
        }
    }

    /// The command that processes `inputs` into `out` on `threads` threads.
    pub fn command(self, setup: &Setup, inputs: &Path, out: &Path, threads: usize) -> Command {
        let (wasm, cache) = (&setup.wasm, &setup.cache);
        match self {
            Program::Floor => {
                let mut cmd = match &setup.floor_exe {
                    Some(exe) => Command::new(exe),
                    None => {
                        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
                        cmd.arg("floor");
                        cmd
                    }
                };
                cmd.arg(inputs).arg(out).arg(threads.to_string());
                cmd
            }
            Program::Instance | Program::Process => {
                let mut cmd = Command::new(sandpool_exe());
                cmd.env("SANDPOOL_CACHE_DIR", cache).args([
                    "run",
                    "--quiet",
                    "--jobs",
                    &threads.to_string(),
                ]);
                if self == Program::Process {
                    cmd.args(["--isolation", "process"]);
                }
                cmd.arg("-o").arg(out).arg(wasm).arg(inputs);
                cmd
            }
            Program::Python => {
                let mut cmd = Command::new(python());
                cmd.arg(root().join("benches/python/doc_stats_pool.py"))
                    .arg(inputs)
                    .arg(out)
                    .arg(threads.to_string());
                cmd
            }
        }
    }
}

/// One run of one program.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub measured: Measured,
    /// The 1-minute load average just before the run started.
    pub load_before: f64,
}

/// Runs `program` once into a fresh `out` (removed first, untimed), after a
/// `sync`, so that no run pays for writing back the previous run's outputs.
pub fn run_once(program: Program, cmd: &mut Command, out: &Path) -> Run {
    let _ = std::fs::remove_dir_all(out);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let load_before = load_1min();
    let measured = measure(cmd);
    eprintln!(
        "cli: {:<8} {:>6.2} s (load before {load_before:.2})",
        program.key(),
        measured.wall.as_secs_f64()
    );
    if !measured.ok {
        eprintln!(
            "cli: {} FAILED on {} ({cmd:?}); its figures leave this run out",
            program.key(),
            out.display()
        );
    }
    Run {
        measured,
        load_before,
    }
}

/// One program's runs on one folder of `files` files.
pub struct Summary {
    pub program: Program,
    pub files: usize,
    pub runs: Vec<Run>,
}

impl Summary {
    /// The runs that succeeded (a failed run's figures are left out).
    fn ok_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.measured.ok)
    }
    /// How many runs failed.
    pub fn failed(&self) -> usize {
        self.runs.len() - self.ok_runs().count()
    }
    fn rates(&self) -> Vec<f64> {
        self.ok_runs()
            .map(|r| self.files as f64 / r.measured.wall.as_secs_f64())
            .collect()
    }
    /// The best run's files/s.
    pub fn best(&self) -> f64 {
        max(&self.rates())
    }
    /// The median run's files/s.
    pub fn median(&self) -> f64 {
        median_of(&self.rates())
    }
    /// Median user + system CPU µs per file (the program and the children it waited for).
    pub fn cpu_us_per_file(&self) -> f64 {
        let per: Vec<f64> = self
            .ok_runs()
            .map(|r| r.measured.cpu().as_secs_f64() * 1e6 / self.files as f64)
            .collect();
        median_of(&per)
    }
    /// Median (user, system) µs per file.
    pub fn user_sys_us(&self) -> (f64, f64) {
        let per = |f: fn(&Measured) -> f64| {
            let v: Vec<f64> = self
                .ok_runs()
                .map(|r| f(&r.measured) * 1e6 / self.files as f64)
                .collect();
            median_of(&v)
        };
        (per(|m| m.user.as_secs_f64()), per(|m| m.sys.as_secs_f64()))
    }
    /// The largest peak RSS of any run, MiB (largest single process).
    pub fn peak_rss_mib(&self) -> f64 {
        max(&self
            .ok_runs()
            .map(|r| r.measured.max_rss_mib())
            .collect::<Vec<_>>())
    }
    /// The load averages before each run, e.g. "1.2 1.5 1.1".
    pub fn loads(&self) -> String {
        self.runs
            .iter()
            .map(|r| format!("{:.2}", r.load_before))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where each program writes its outputs under `work`.
pub fn out_dir(work: &Path, program: Program) -> PathBuf {
    work.join(format!("out-{}", program.key()))
}

/// The outputs under `dir` (the output tree mirrors the input tree), as
/// paths relative to it, sorted: `*.json` files, not hidden, not error records.
fn outputs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') {
                continue;
            }
            let child = rel.join(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child);
            } else if text.ends_with(".json") && !text.ends_with(".error.json") {
                found.push(child);
            }
        }
    }
    found.sort();
    found
}

/// Whether two output folders hold the same JSON for a sample of `sample` outputs.
pub fn same_outputs(a: &Path, b: &Path, sample: usize) -> bool {
    let names = outputs(a);
    let step = (names.len() / sample.max(1)).max(1);
    !names.is_empty()
        && names.iter().step_by(step).all(|name| {
            let read = |dir: &Path| -> serde_json::Value {
                serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap_or_default())
                    .unwrap_or_default()
            };
            let same = read(a) == read(b);
            if !same {
                eprintln!("outputs differ for {}", name.display());
            }
            same
        })
}

/// The number of outputs under `dir`: `*.json` files, not hidden, not error records.
pub fn count_entries(dir: &Path) -> usize {
    outputs(dir).len()
}
