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
