//! Helpers shared by every benchmark: where the guests and the workspace
//! are, the size knobs read from the environment, and (in the submodules)
//! statistics, timing, the machine header, the corpus and the measurements
//! of the library that more than one benchmark reports.
#![allow(dead_code)]

pub mod corpus;
pub mod machine;
pub mod measure;
pub mod stats;
pub mod wasm;

#[allow(unused_imports)]
pub use machine::{load_average, locked_version};
#[allow(unused_imports)]
pub use stats::median;

use std::path::PathBuf;

/// The workspace's root directory.
pub fn root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The built example guest `name` (`$SANDPOOL_GUEST_DIR`, else the workspace's target/guest).
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("SANDPOOL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/guest/wasm32-wasip1/release/examples"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
}

/// The `sandpool` binary cargo built for this benchmark (target/release in `cargo bench`).
pub fn sandpool_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandpool"))
}

/// A count from the environment (`_` separators allowed), else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").trim().parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of counts from the environment, else `default`.
pub fn env_sizes(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|n| n.replace('_', "").trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// Whether a flag variable is set to something other than empty or `0`.
pub fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The number of CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// The Python interpreter of the reference scripts (`$SANDPOOL_PYTHON`, else python3).
pub fn python() -> String {
    std::env::var("SANDPOOL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The divisor of every workload size: 10 when `SANDPOOL_BENCH_QUICK` (or
/// the levels benchmark's older `SANDPOOL_LEVELS_QUICK`) is set, making a
/// smoke test of a benchmark rather than a measurement; else 1.
pub fn quick_divisor() -> usize {
    if env_flag("SANDPOOL_BENCH_QUICK") || env_flag("SANDPOOL_LEVELS_QUICK") {
        10
    } else {
        1
    }
}

/// `full / quick_divisor()`, at least `min`.
pub fn scaled(full: usize, min: usize) -> usize {
    (full / quick_divisor()).max(min)
}
