//! The output folder's lock: one run at a time per output folder.
//! A second run is refused (exit 2) with the holder's pid, host and start
//! time; the lock is an `flock` that the kernel drops when its holder dies,
//! so a killed run never leaves a folder locked.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;

use super::naming::LOCK_NAME;

/// A held lock on an output folder; released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Takes the lock of `dir`, or says who holds it.
    ///
    /// The file is created if missing. After `flock` succeeds the file is
    /// checked to still be the one at the path: a holder that is ending
    /// removes its lock file while still holding it, so a run that locked
    /// the removed file tries again on the new one.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(LOCK_NAME);
        for _ in 0..100 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| {
                    Error::io(
                        format!("cannot write to output folder {}", dir.display()),
                        &e,
                    )
                })?;
            // SAFETY: `flock` on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(held_by_another(dir, file));
                }
                return Err(Error::io(
                    format!("cannot lock output folder {}", dir.display()),
                    &err,
                ));
            }
            let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                let mut lock = OutputLock { file, path };
                lock.write_holder();
                return Ok(lock);
            }
        }
        Err(Error::Io {
            context: format!("cannot lock output folder {}", dir.display()),
            message: "its lock file keeps being replaced".into(),
        })
    }

    /// Records who holds the lock, for the message a second run prints.
    fn write_holder(&mut self) {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let holder = serde_json::json!({
            "pid": std::process::id(),
            "host": hostname(),
            "started": started,
        });
        let _ = self.file.set_len(0);
        let _ = self.file.rewind();
        let _ = writeln!(self.file, "{holder}");
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held: see `acquire` for why that is safe.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The error for a folder another run holds, naming the holder.
fn held_by_another(dir: &Path, mut file: File) -> Error {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder: Option<serde_json::Value> = serde_json::from_str(text.trim()).ok();
    let who = match holder {
        Some(h) => {
            let started = h["started"].as_u64().unwrap_or(0);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!(
                "pid {} on {}, started {}s ago",
                h["pid"],
                h["host"].as_str().unwrap_or("?"),
                now.saturating_sub(started)
            )
        }
        None => "a run that is just starting".into(),
    };
    Error::Io {
        context: format!("output folder {} is in use", dir.display()),
        message: format!(
            "another sandpool run holds its lock ({who}); wait for it to end or choose another output folder"
        ),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path()).unwrap();
        let err = OutputLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("in use"), "{err}");
        drop(first);
        assert!(!dir.path().join(LOCK_NAME).exists(), "removed on release");
        let again = OutputLock::acquire(dir.path()).unwrap();
        drop(again);
    }
}
