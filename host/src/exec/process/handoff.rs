//! Handing the compiled module to worker processes, so that starting a
//! worker does not recompile it.
//!
//! The supervisor writes two files into a fresh directory that only this
//! user can enter (mode 0700, files 0600, each written atomically): the wasm
//! bytes, and the module as wasmtime serialized it, behind a header
//! (magic, sandpool version, fuel flag, payload length, SHA-256 of the
//! payload). The `Hello` a worker reads from its private stdin pipe carries
//! the SHA-256 of each file. The worker reads a file into memory, checks
//! header and hashes against the `Hello` and only then deserializes those
//! same bytes, so it never deserializes bytes this version of sandpool did
//! not write. Any mismatch falls back to compiling the (equally checked)
//! wasm. The directory is removed when the pool's supervisor goes away;
//! one left behind by a process that exited without dropping its pool is
//! swept by the next pool that starts (same user, owner process gone).

use std::fs::DirBuilder;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::wire::{FileRef, VERSION};
use crate::atomic_write::AtomicWrite;

/// First bytes of a precompiled-module file.
const MAGIC: &[u8; 8] = b"SPWKMOD1";

/// Largest module file a worker reads (4 GiB).
const MAX_FILE: u64 = 4 << 30;

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn header(payload: &[u8], fuel: bool) -> Vec<u8> {
    let mut h = Vec::with_capacity(64 + VERSION.len());
    h.extend_from_slice(MAGIC);
    h.push(VERSION.len() as u8);
    h.extend_from_slice(VERSION.as_bytes());
    h.push(fuel as u8);
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h.extend_from_slice(&sha256(payload));
    h
}

/// The payload of a precompiled-module file, if its header says this version
/// wrote it for this engine and its hash matches both the header and `expected`.
pub(crate) fn verify_precompiled<'a>(
    file: &'a [u8],
    fuel: bool,
    expected: &[u8; 32],
) -> Result<&'a [u8], String> {
    let rest = file
        .strip_prefix(MAGIC)
        .ok_or("not a sandpool precompiled module (bad magic)")?;
    let (&vlen, rest) = rest.split_first().ok_or("truncated header")?;
    let (version, rest) = rest
        .split_at_checked(vlen as usize)
        .ok_or("truncated header")?;
    if version != VERSION.as_bytes() {
        return Err(format!(
            "written by sandpool {}, this is {VERSION}",
            String::from_utf8_lossy(version)
        ));
    }
    let (&file_fuel, rest) = rest.split_first().ok_or("truncated header")?;
    if file_fuel != fuel as u8 {
        return Err("compiled for the other engine (fuel metering differs)".into());
    }
    let (len, rest) = rest.split_at_checked(8).ok_or("truncated header")?;
    let (hash, payload) = rest.split_at_checked(32).ok_or("truncated header")?;
    let len = u64::from_le_bytes(len.try_into().map_err(|_| "truncated header")?);
    if len != payload.len() as u64 {
        return Err(format!(
            "payload is {} bytes, the header says {len}",
            payload.len()
        ));
    }
    let actual = sha256(payload);
    if hash != actual || &actual != expected {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Reads a handed-over file and checks its hash against the `Hello`.
pub(crate) fn read_checked(file: &FileRef) -> Result<Vec<u8>, String> {
    let path = Path::new(std::ffi::OsStr::from_bytes(&file.path));
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "{} is {size} bytes, over the limit",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Reads the wasm file and checks it is the one the supervisor wrote.
pub(crate) fn read_wasm(file: &FileRef) -> Result<Vec<u8>, String> {
    let bytes = read_checked(file)?;
    if sha256(&bytes) != file.sha256 {
        return Err("the wasm file's checksum does not match".into());
    }
    Ok(bytes)
}

/// The private directory with a pool's module files; removed on drop.
#[derive(Debug)]
pub(crate) struct ModuleFiles {
    dir: PathBuf,
    pub wasm: FileRef,
    pub precompiled: Option<FileRef>,
}

impl ModuleFiles {
    /// Writes `wasm` and, if given, the serialized module into a new private directory.
    pub fn write(wasm: &[u8], serialized: Option<&[u8]>, fuel: bool) -> std::io::Result<Self> {
        let dir = private_dir()?;
        let mut files = ModuleFiles {
            dir: dir.clone(),
            wasm: FileRef {
                path: Vec::new(),
                sha256: sha256(wasm),
            },
            precompiled: None,
        };
        let wasm_path = dir.join("module.wasm");
        write_new(&wasm_path, &[wasm])?;
        files.wasm.path = wasm_path.as_os_str().as_bytes().to_vec();
        if let Some(payload) = serialized {
            let path = dir.join("module.cwasm");
            write_new(&path, &[&header(payload, fuel), payload])?;
            files.precompiled = Some(FileRef {
                path: path.as_os_str().as_bytes().to_vec(),
                sha256: sha256(payload),
            });
        }
        Ok(files)
    }
}

impl Drop for ModuleFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prefix of the hand-over directories: `PREFIX{pid}-{random}`.
const PREFIX: &str = "sandpool-worker-module-";

fn private_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    sweep_stale(&base);
    let mut last = None;
    for _ in 0..16 {
        let dir = base.join(format!(
            "{PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot create a private directory")))
}

/// Removes hand-over directories of this user whose process is gone (it
/// exited without dropping its pools, e.g. `std::process::exit` or a kill).
fn sweep_stale(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || process_alive(pid) {
            continue;
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// The pid in a hand-over directory's name, if the name is one.
fn owner_pid(name: &str) -> Option<i32> {
    let (pid, random) = name.strip_prefix(PREFIX)?.split_once('-')?;
    let valid = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    valid
        .then(|| pid.parse().ok())
        .flatten()
        .filter(|&pid| pid > 0)
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Writes a module file, readable by this user only. No fsync: the files
/// live only as long as the pool, and a worker checks every byte's hash.
fn write_new(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    AtomicWrite::new().mode(0o600).write(path, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_this_version_wrote_verifies_and_any_change_is_refused() {
        let payload = b"compiled code".to_vec();
        let files = ModuleFiles::write(b"\0asm", Some(&payload), false).unwrap();
        let pre = files.precompiled.clone().unwrap();
        let bytes = read_checked(&pre).unwrap();
        assert_eq!(
            verify_precompiled(&bytes, false, &pre.sha256).unwrap(),
            payload.as_slice()
        );
        // The wrong engine, a flipped payload byte, a truncated file, another hash, another magic.
        assert!(verify_precompiled(&bytes, true, &pre.sha256).is_err());
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            verify_precompiled(&flipped, false, &pre.sha256)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(verify_precompiled(&bytes[..bytes.len() - 1], false, &pre.sha256).is_err());
        assert!(verify_precompiled(&bytes[..10], false, &pre.sha256).is_err());
        assert!(
            verify_precompiled(&bytes, false, &[0; 32])
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            verify_precompiled(b"\0asm\x01\0\0\0", false, &pre.sha256)
                .unwrap_err()
                .contains("magic")
        );
        // Another version's header.
        let mut other = bytes.clone();
        other[9] = b'9';
        assert!(
            verify_precompiled(&other, false, &pre.sha256)
                .unwrap_err()
                .contains("written by sandpool")
        );
    }

    #[test]
    fn directories_of_processes_that_are_gone_are_swept() {
        assert_eq!(
            owner_pid("sandpool-worker-module-123-00112233aabbccdd"),
            Some(123)
        );
        assert_eq!(owner_pid("sandpool-worker-module-123-xyz"), None);
        assert_eq!(owner_pid("sandpool-cli-test-cache-5"), None);
        let base = std::env::temp_dir();
        // A pid above the kernel's maximum (4194304) is never alive.
        let stale = base.join(format!("{PREFIX}99999999-{:016x}", rand::random::<u64>()));
        let alive = base.join(format!(
            "{PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        for dir in [&stale, &alive] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("module.wasm"), b"x").unwrap();
        }
        let files = ModuleFiles::write(b"\0asm", None, false).unwrap();
        assert!(!stale.exists(), "the dead process's directory is gone");
        assert!(alive.exists(), "a live process's directory stays");
        std::fs::remove_dir_all(&alive).unwrap();
        drop(files);
    }

    #[test]
    fn the_directory_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let files = ModuleFiles::write(b"\0asm", None, false).unwrap();
        let wasm = PathBuf::from(std::ffi::OsStr::from_bytes(&files.wasm.path));
        let dir = wasm.parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&wasm).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_wasm(&files.wasm).unwrap(), b"\0asm");
        drop(files);
        assert!(!dir.exists());
    }
}
