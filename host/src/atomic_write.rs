//! Writing a file so that readers see either the old file or the whole new
//! one, never a part: a temporary file in the same directory, optionally
//! fsynced, then renamed over the target; the temporary is removed on failure.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every temporary file name (`.sandpool-tmp-{pid}-{n}`), so that
/// temporaries a killed process left behind can be recognized and removed.
pub(crate) const TEMP_PREFIX: &str = ".sandpool-tmp-";

/// How to write: durability and permissions. `AtomicWrite::new()` is no
/// fsync, mode 0o666 (before the umask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtomicWrite {
    fsync: bool,
    mode: u32,
}

impl Default for AtomicWrite {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicWrite {
    /// No fsync, mode 0o666 (before the umask).
    pub(crate) const fn new() -> Self {
        AtomicWrite {
            fsync: false,
            mode: 0o666,
        }
    }

    /// With `true`, the file's data is flushed to disk before the rename and
    /// the directory entry after it, so the new file survives a power loss
    /// once `write` returns. Without it the write is atomic for readers and
    /// against a crash of this process, which is what most outputs need.
    pub(crate) const fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Permission bits of the new file (before the umask).
    pub(crate) const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Writes the concatenation of `parts` to `path` atomically.
    pub(crate) fn write(&self, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let (tmp, mut file) = self.create_temp(dir)?;
        let written = (|| {
            for part in parts {
                file.write_all(part)?;
            }
            if self.fsync {
                file.sync_all()?;
            }
            drop(file);
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if self.fsync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// A new, exclusively created temporary file in `dir`.
    fn create_temp(&self, dir: &Path) -> io::Result<(PathBuf, File)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static PID: OnceLock<u32> = OnceLock::new();
        let pid = *PID.get_or_init(std::process::id);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!("{TEMP_PREFIX}{pid}-{n}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .open(&tmp)
            {
                Ok(file) => return Ok((tmp, file)),
                // Left by an earlier process with the same pid: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        AtomicWrite::new()
            .write(&path, &[b"{\"a\":", b"1}"])
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        AtomicWrite::new()
            .fsync(true)
            .write(&path, &[b"2"])
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2");
        assert_eq!(entries(dir.path()), ["out.json"]);
    }

    #[test]
    fn the_mode_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        AtomicWrite::new()
            .mode(0o600)
            .write(&path, &[b"x"])
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        assert!(AtomicWrite::new().write(&target, &[b"data"]).is_err());
        assert_eq!(entries(dir.path()), ["taken"]);
    }
}
