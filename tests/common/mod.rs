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
