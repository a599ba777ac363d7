//! Helpers shared by the integration tests: where the example guests are.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root (the parent of `host/`).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The built Rust example guest `name` (see `scripts/build-guests.sh`).
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("SANDPOOL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/guest/wasm32-wasip1/release/examples"));
    existing(dir.join(format!("{name}.wasm")))
}

/// The built C example guest `name`.
pub fn c_guest(name: &str) -> PathBuf {
    existing(workspace().join(format!("target/guest/c/{name}.wasm")))
}

/// The built component guest `name` (`doc_stats_py`, `doc_stats_js`, `probe_py`;
/// see `scripts/build-components.sh`).
pub fn component(name: &str) -> PathBuf {
    let path = workspace().join(format!("target/guest/components/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the components first with scripts/build-components.sh",
        path.display()
    );
    path
}

/// Where the component tests cache compiled components (a Python
/// component takes seconds to compile; later runs reuse it).
pub fn component_cache() -> PathBuf {
    workspace().join("target/test-component-cache")
}

/// Loads the component at `path` through [`component_cache`], with no
/// compile deadline: a first compile of a Python component on a busy
/// 2-core machine can pass the default 60 s.
pub fn load_component<In: serde::Serialize, Out: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> sandpool::Task<In, Out> {
    let limits = sandpool::LoadLimits::default().no_compile_timeout();
    sandpool::Task::from_file_cached_with(path, component_cache(), limits)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the guests first with scripts/build-guests.sh (or `just guests`)",
        path.display()
    );
    path
}

/// Input of the `spin` guest: spin `rounds` times, then report `id`.
#[derive(serde::Serialize, Clone, Copy)]
pub struct Spin {
    pub id: u64,
    pub rounds: u32,
}

/// Output of the `spin` guest.
#[derive(serde::Deserialize, Debug, PartialEq, Eq)]
pub struct Spun {
    pub id: u64,
    pub checksum: u64,
}

/// The checksum the spin guest computes, recomputed natively.
pub fn expected_checksum(id: u64, rounds: u32) -> u64 {
    let mut x = id ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..rounds {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

/// `n` spin inputs whose run times vary by three orders of magnitude
/// (seeded), so completion order differs from input order.
pub fn random_spins(n: u64, seed: u64) -> Vec<Spin> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|id| Spin {
            id,
            rounds: if rng.random_bool(0.1) {
                rng.random_range(0..200_000)
            } else {
                rng.random_range(0..200)
            },
        })
        .collect()
}

/// Input of the `hostile` guest: how to misbehave.
#[derive(serde::Serialize)]
pub enum Mode {
    Ok(u64),
    Trap,
    Panic(String),
    Fail(String),
    Loop,
    MemoryBomb,
    HugeOutput(u32),
    Print(u32),
    Recurse,
}

/// The number a `Mode::Ok` task returned.
pub fn ok_value(result: &Result<serde_bytes::ByteBuf, sandpool::Error>) -> u64 {
    let bytes = result
        .as_ref()
        .unwrap_or_else(|e| panic!("a well-behaved input succeeds: {e}"));
    u64::from_le_bytes(bytes.as_slice().try_into().expect("8 bytes"))
}

/// Limits under which each of [`fault_cases`] fails quickly.
pub fn fault_limits() -> sandpool::Limits {
    sandpool::Limits::default()
        .timeout(std::time::Duration::from_millis(300))
        .memory(32 << 20)
        .max_output(1 << 20)
}

/// One input per fault with the error it must give, each between two
/// well-behaved inputs (positions `3k`, `3k+1` fault, `3k+2`).
pub fn fault_cases() -> (Vec<Mode>, Vec<sandpool::ErrorKind>) {
    use sandpool::ErrorKind;
    let faults = [
        (Mode::Trap, ErrorKind::Trap),
        (Mode::Loop, ErrorKind::Timeout),
        (Mode::MemoryBomb, ErrorKind::MemoryLimit),
        (Mode::HugeOutput(2 << 20), ErrorKind::OutputTooLarge),
        (Mode::Panic("boom".into()), ErrorKind::Panic),
        (Mode::Fail("bad input".into()), ErrorKind::Guest),
        (Mode::Recurse, ErrorKind::Trap),
    ];
    let mut inputs = Vec::new();
    let mut kinds = Vec::new();
    for (fault, kind) in faults {
        inputs.push(Mode::Ok(inputs.len() as u64));
        inputs.push(fault);
        inputs.push(Mode::Ok(inputs.len() as u64));
        kinds.push(kind);
    }
    (inputs, kinds)
}

/// Checks the results of `map(fault_cases().0)`: each fault failed alone,
/// with its own error naming its input, and every other input succeeded.
pub fn assert_faults_contained(
    results: &[Result<serde_bytes::ByteBuf, sandpool::Error>],
    kinds: &[sandpool::ErrorKind],
) {
    assert_eq!(results.len(), kinds.len() * 3);
    for (i, result) in results.iter().enumerate() {
        if i % 3 == 1 {
            let err = result.as_ref().expect_err("the fault fails");
            assert_eq!(err.kind(), kinds[i / 3], "input {i}: {err}");
            assert_eq!(
                err.task().map(|t| t.index),
                Some(i as u64),
                "error names its input"
            );
            assert_eq!(
                err.task().map(|t| t.task.to_string()),
                Some("hostile".to_string())
            );
        } else {
            assert_eq!(ok_value(result), i as u64);
        }
    }
}

/// This process's resident memory in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}
