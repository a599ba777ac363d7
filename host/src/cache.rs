//! The on-disk cache of compiled modules, so a second run of the same module
//! skips compilation.
//!
//! An entry is keyed by the SHA-256 of the wasm bytes, sandpool's version,
//! the engine's configuration hash and whether fuel is metered. Its file
//! starts with a header (magic, sandpool version, SHA-256 of the payload);
//! an entry whose header or checksum does not match is ignored and
//! replaced, so sandpool never deserializes bytes it did not write itself.
//! Entries are written atomically and fsynced (`atomic_write.rs`) into a
//! directory only the user can read.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::atomic_write::AtomicWrite;

const MAGIC: &[u8; 16] = b"SANDPOOL-CWASM\0\x01";

/// The default cache directory: `$SANDPOOL_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/sandpool`, else `$HOME/.cache/sandpool`.
///
/// ```
/// if let Some(dir) = sandpool::default_cache_dir() {
///     assert!(dir.ends_with("sandpool") || std::env::var_os("SANDPOOL_CACHE_DIR").is_some());
/// }
/// ```
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SANDPOOL_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("sandpool"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("sandpool"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file for `wasm` compiled by `engine`.
fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8], fuel: bool) -> PathBuf {
    let mut config = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut config);
    let key = Sha256::new()
        .chain_update(wasm)
        .chain_update(env!("CARGO_PKG_VERSION").as_bytes())
        .chain_update(config.finish().to_le_bytes())
        .chain_update([fuel as u8])
        .finalize();
    dir.join("modules")
        .join(format!("{}.cwasm", hex(&key[..20])))
}

fn header(payload: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(64);
    header.extend_from_slice(MAGIC);
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    header.push(version.len() as u8);
    header.extend_from_slice(version);
    header.extend_from_slice(&Sha256::digest(payload));
    header
}

/// Splits a cache file into its payload if the header is this version's and the checksum matches.
fn verified_payload(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC)?;
    let (&len, rest) = rest.split_first()?;
    let (version, rest) = rest.split_at_checked(len as usize)?;
    if version != env!("CARGO_PKG_VERSION").as_bytes() {
        return None;
    }
    let (digest, payload) = rest.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

/// How a module was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Cache,
    Compiled,
}

/// Loads the compiled module from the cache, or compiles it and stores it.
/// Cache problems are never fatal: they fall back to compiling.
pub(crate) fn load_or_compile(
    dir: &Path,
    engine: &Engine,
    wasm: &[u8],
    fuel: bool,
) -> Result<(Module, Source), wasmtime::Error> {
    load_or_compile_with(
        dir,
        engine,
        wasm,
        fuel,
        |wasm| engine.precompile_module(wasm),
        // SAFETY: only called on bytes `Engine::precompile_module` of this
        // sandpool version wrote (header and SHA-256 checked, or just produced);
        // wasmtime checks its own header for engine compatibility.
        |payload| unsafe { Module::deserialize(engine, payload) },
    )
}

/// [`load_or_compile`] for a component (`component/`).
pub(crate) fn load_or_compile_component(
    dir: &Path,
    engine: &Engine,
    wasm: &[u8],
    fuel: bool,
) -> Result<(Component, Source), wasmtime::Error> {
    load_or_compile_with(
        dir,
        engine,
        wasm,
        fuel,
        |wasm| engine.precompile_component(wasm),
        // SAFETY: as in `load_or_compile`, with `precompile_component`.
        |payload| unsafe { Component::deserialize(engine, payload) },
    )
}

/// The cache lookup and fill, for modules and components alike.
/// `deserialize` is only given bytes `precompile` produced (now or, checked
/// by header and SHA-256, in an earlier run of this sandpool version).
fn load_or_compile_with<T>(
    dir: &Path,
    engine: &Engine,
    wasm: &[u8],
    fuel: bool,
    precompile: impl Fn(&[u8]) -> wasmtime::Result<Vec<u8>>,
    deserialize: impl Fn(&[u8]) -> wasmtime::Result<T>,
) -> Result<(T, Source), wasmtime::Error> {
    let path = entry_path(dir, engine, wasm, fuel);
    if let Ok(file) = std::fs::read(&path) {
        if let Some(payload) = verified_payload(&file) {
            match deserialize(payload) {
                Ok(module) => return Ok((module, Source::Cache)),
                Err(e) => tracing::warn!("ignoring cache entry {}: {e:#}", path.display()),
            }
        } else {
            tracing::warn!(
                "ignoring cache entry {}: not written by this sandpool version",
                path.display()
            );
        }
    }
    let payload = precompile(wasm)?;
    let module = deserialize(&payload)?;
    if let Err(e) = store(&path, &payload) {
        tracing::warn!("cannot write cache entry {}: {e}", path.display());
    }
    Ok((module, Source::Compiled))
}

fn store(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    create_private_dir(path.parent().unwrap_or(Path::new(".")))?;
    AtomicWrite::new()
        .fsync(true)
        .write(path, &[&header(payload), payload])
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_through_the_header() {
        let mut file = header(b"payload");
        file.extend_from_slice(b"payload");
        assert_eq!(verified_payload(&file), Some(&b"payload"[..]));
    }

    #[test]
    fn a_tampered_payload_is_rejected() {
        let mut file = header(b"payload");
        file.extend_from_slice(b"pAyload");
        assert_eq!(verified_payload(&file), None);
    }

    #[test]
    fn foreign_or_truncated_files_are_rejected() {
        assert_eq!(verified_payload(b"\x7fELF..."), None);
        assert_eq!(verified_payload(&MAGIC[..]), None);
        let mut file = header(b"x");
        file.truncate(file.len() - 3);
        assert_eq!(verified_payload(&file), None);
    }
}
