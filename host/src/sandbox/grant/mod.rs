//! Granting tasks one host directory: the only way a guest reaches a host file.
//!
//! By default a task sees no file at all (see `../wasi.rs`). A pool built with
//! [`PoolBuilder::grant_dir`](crate::PoolBuilder::grant_dir) exposes exactly one host directory to each of
//! its tasks, as WASI preopened descriptor 3 under a guest path of the
//! caller's choosing, read-only or read-write.
//!
//! Containment does not depend on parsing paths: every path a guest names
//! is resolved by the kernel with `openat2(2)` and `RESOLVE_BENEATH`
//! relative to the granted directory (or to a directory opened from it), so
//! `..`, absolute paths and symbolic links that lead outside are refused by
//! Linux itself, race-free (the guest sees `ENOTCAPABLE`). Operations that
//! name an entry (`mkdir`, `unlink`, `rename`, ...) first open its parent the
//! same way and then act on one plain name in it. Only regular files and
//! directories can be opened (never FIFOs or devices, so an open cannot
//! block), symbolic and hard links cannot be created, and a read-only grant
//! refuses every change with `EROFS` before any system call. Each task gets
//! its own descriptor table (at most [`MAX_OPEN_FILES`] files), closed when
//! the task ends, and a quota of bytes it may write ([`PoolBuilder::max_file_writes`](crate::PoolBuilder::max_file_writes)).
//!
//! The parts: this file holds the public options and the opened grant;
//! `openat2.rs` the confining system call; `path.rs` guest paths; `stat.rs`
//! file metadata; `files.rs` each task's descriptor table.
//!
//! Needs Linux 5.6 or later (`openat2`); elsewhere `build` refuses a grant
//! with [`Error::Config`] rather than fall back to a weaker check.

mod files;
mod openat2;
mod path;
mod stat;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use files::FileTable;
use openat2::openat2;
use path::MAX_PATH;

use crate::error::Error;
/// The most files (and directories) one task may have open at once.
///
/// ```
/// assert_eq!(sandpool::MAX_OPEN_FILES, 32);
/// ```
pub const MAX_OPEN_FILES: usize = 32;

/// Default per-task cap on bytes written to files of a read-write grant (1 GiB).
///
/// ```
/// assert_eq!(sandpool::DEFAULT_MAX_FILE_WRITES, 1 << 30);
/// ```
pub const DEFAULT_MAX_FILE_WRITES: u64 = 1 << 30;

/// How a granted directory may be used.
///
/// ```
/// assert_ne!(sandpool::DirAccess::ReadOnly, sandpool::DirAccess::ReadWrite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirAccess {
    /// Files and directories can be opened, read, listed and inspected;
    /// every change (write, create, truncate, remove, rename) is refused
    /// with `EROFS`.
    ReadOnly,
    /// Also create, write, truncate, remove and rename, within the directory.
    ReadWrite,
}

/// The directory grants a pool builder holds until `build`.
#[derive(Debug, Clone)]
pub(crate) struct GrantOptions {
    pub dirs: Vec<(PathBuf, String, DirAccess)>,
    pub max_write: u64,
}

impl Default for GrantOptions {
    fn default() -> Self {
        GrantOptions {
            dirs: Vec::new(),
            max_write: DEFAULT_MAX_FILE_WRITES,
        }
    }
}

impl GrantOptions {
    /// Opens the granted directory, if any (at most one).
    pub(crate) fn open(&self) -> Result<Option<Arc<GrantRoot>>, Error> {
        match self.dirs.as_slice() {
            [] => Ok(None),
            [(host, guest, access)] => {
                GrantRoot::open(host, guest, *access, self.max_write).map(|r| Some(Arc::new(r)))
            }
            more => Err(Error::Config(format!(
                "a pool can be granted exactly one directory, not {}",
                more.len()
            ))),
        }
    }
}

/// An opened grant: the directory's descriptor, shared by every task of a pool.
#[derive(Debug)]
pub(crate) struct GrantRoot {
    pub(super) dir: OwnedFd,
    pub(super) guest: String,
    pub(super) access: DirAccess,
    pub(super) max_write: u64,
}

impl GrantRoot {
    /// The directory's descriptor (`O_PATH`), its guest path and its
    /// access: what a component task's WASI 0.2 preopen is made from
    /// (`component/wasi.rs`).
    pub(crate) fn parts(&self) -> (std::os::fd::BorrowedFd<'_>, &str, DirAccess) {
        use std::os::fd::AsFd;
        (self.dir.as_fd(), &self.guest, self.access)
    }

    fn open(host: &Path, guest: &str, access: DirAccess, max_write: u64) -> Result<Self, Error> {
        let refuse = |why: String| Error::Config(format!("cannot grant {}: {why}", host.display()));
        if guest.is_empty() || guest.contains('\0') || guest.len() > MAX_PATH {
            return Err(refuse(format!("`{guest}` is not a usable guest path")));
        }
        let path = CString::new(host.as_os_str().as_bytes())
            .map_err(|_| refuse("the path contains a NUL byte".into()))?;
        // SAFETY: `path` is a valid NUL-terminated string for the call.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(refuse(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: `open` just returned this descriptor, owned by no one else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Err(errno) = openat2(dir.as_raw_fd(), c".", libc::O_PATH | libc::O_CLOEXEC, 0) {
            return Err(refuse(format!(
                "the kernel cannot confine paths to it (openat2 failed: {}); \
                 directory grants need Linux 5.6 or later",
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        Ok(GrantRoot {
            dir,
            guest: guest.to_string(),
            access,
            max_write,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::errno::from_path_errno;
    use crate::sandbox::wasi_types::errno::ENOTCAPABLE;

    #[test]
    fn escaping_the_directory_is_refused_by_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("inner/f"), b"x").unwrap();
        let root = GrantRoot::open(dir.path(), "/d", DirAccess::ReadOnly, 0).unwrap();
        let fd = root.dir.as_raw_fd();
        let open = |p: &std::ffi::CStr| openat2(fd, p, libc::O_RDONLY | libc::O_CLOEXEC, 0);
        assert!(open(c"inner/f").is_ok());
        assert!(open(c"inner/../inner/f").is_ok());
        assert_eq!(
            open(c"../x").map(drop).map_err(from_path_errno),
            Err(ENOTCAPABLE)
        );
        assert_eq!(
            open(c"/etc/passwd").map(drop).map_err(from_path_errno),
            Err(ENOTCAPABLE)
        );
    }
}
