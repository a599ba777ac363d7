//! Granting tasks one host directory: the only way a guest reaches a host file.
//!
//! By default a task sees no file at all (see `wasi.rs`). A pool built with
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
//! Needs Linux 5.6 or later (`openat2`); elsewhere `build` refuses a grant
//! with [`Error::Config`] rather than fall back to a weaker check.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The longest path a guest may pass, in bytes.
const MAX_PATH: usize = 4096;

/// The most entries a directory listing holds in host memory (a listing of
/// a larger directory fails with `EOVERFLOW`).
const MAX_DIR_ENTRIES: usize = 1 << 20;

/// The most iovecs one read or write may pass.
const MAX_IOVS: usize = 1024;

/// The guest descriptor of the granted directory.
pub(crate) const ROOT_FD: i32 = 3;
/// The first guest descriptor of a file opened by the task.
const FIRST_FILE_FD: i32 = 4;

// WASI errno values.
const SUCCESS: i32 = 0;
const E2BIG: i32 = 1;
const EACCES: i32 = 2;
const EAGAIN: i32 = 6;
const EBADF: i32 = 8;
const EBUSY: i32 = 10;
const EDQUOT: i32 = 19;
const EEXIST: i32 = 20;
const EFAULT: i32 = 21;
const EFBIG: i32 = 22;
const EINVAL: i32 = 28;
const EIO: i32 = 29;
const EISDIR: i32 = 31;
const ELOOP: i32 = 32;
const EMFILE: i32 = 33;
const ENAMETOOLONG: i32 = 37;
const ENFILE: i32 = 41;
const ENOENT: i32 = 44;
const ENOMEM: i32 = 48;
const ENOSPC: i32 = 51;
const ENOSYS: i32 = 52;
const ENOTDIR: i32 = 54;
const ENOTEMPTY: i32 = 55;
const ENOTSUP: i32 = 58;
const ENXIO: i32 = 60;
const EOVERFLOW: i32 = 61;
const EPERM: i32 = 63;
const EROFS: i32 = 69;
const ESPIPE: i32 = 70;
const EXDEV: i32 = 75;
const ENOTCAPABLE: i32 = 76;

// WASI rights.
const RIGHT_FD_DATASYNC: u64 = 1 << 0;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
const RIGHT_FD_READDIR: u64 = 1 << 14;
const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const ALL_RIGHTS: u64 = (1 << 29) - 1;
const WRITE_RIGHTS: u64 =
    RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_FD_DATASYNC;

// WASI `oflags`, `fdflags`, `lookupflags`.
const O_CREAT: i32 = 1;
const O_DIRECTORY: i32 = 2;
const O_EXCL: i32 = 4;
const O_TRUNC: i32 = 8;
const FDFLAG_APPEND: i32 = 1;
const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

// WASI file types.
const FILETYPE_UNKNOWN: u8 = 0;
const FILETYPE_BLOCK_DEVICE: u8 = 1;
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const FILETYPE_SOCKET_STREAM: u8 = 6;
const FILETYPE_SYMBOLIC_LINK: u8 = 7;

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
    dir: OwnedFd,
    guest: String,
    access: DirAccess,
    max_write: u64,
}

impl GrantRoot {
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

/// One open file or directory of a task.
struct OpenFile {
    file: File,
    dir: bool,
    read: bool,
    write: bool,
    append: bool,
    /// A directory's entries, read at the first `fd_readdir` from cookie 0.
    entries: Option<Vec<DirEntry>>,
}

struct DirEntry {
    ino: u64,
    kind: u8,
    name: Vec<u8>,
}

/// A task's view of its grant: descriptor 3 and the files it opened.
pub(crate) struct FileTable {
    root: Arc<GrantRoot>,
    open: Vec<Option<OpenFile>>,
    written: u64,
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dir, path, flags, mode)` confined beneath `dir`; the host errno on failure.
fn openat2(dir: RawFd, path: &std::ffi::CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let how = OpenHow {
        flags: flags as u32 as u64,
        mode: u64::from(mode),
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid `struct open_how`
        // of the size passed; both outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let errno = last_errno();
        if errno != libc::EINTR {
            return Err(errno);
        }
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The WASI errno for a host errno; escaping the grant (`EXDEV` from
/// `RESOLVE_BENEATH`) is `ENOTCAPABLE`.
fn wasi_errno(host: i32) -> i32 {
    match host {
        libc::EXDEV => ENOTCAPABLE,
        other => wasi_errno_plain(other),
    }
}

fn wasi_errno_plain(host: i32) -> i32 {
    match host {
        libc::E2BIG => E2BIG,
        libc::EACCES => EACCES,
        libc::EAGAIN => EAGAIN,
        libc::EBADF => EBADF,
        libc::EBUSY => EBUSY,
        libc::EDQUOT => EDQUOT,
        libc::EEXIST => EEXIST,
        libc::EFAULT => EFAULT,
        libc::EFBIG => EFBIG,
        libc::EINVAL => EINVAL,
        libc::EISDIR => EISDIR,
        libc::ELOOP => ELOOP,
        libc::EMFILE => EMFILE,
        libc::ENAMETOOLONG => ENAMETOOLONG,
        libc::ENFILE => ENFILE,
        libc::ENOENT => ENOENT,
        libc::ENOMEM => ENOMEM,
        libc::ENOSPC => ENOSPC,
        libc::ENOSYS => ENOSYS,
        libc::ENOTDIR => ENOTDIR,
        libc::ENOTEMPTY => ENOTEMPTY,
        libc::ENXIO => ENXIO,
        libc::EOVERFLOW => EOVERFLOW,
        libc::EPERM => EPERM,
        libc::EROFS => EROFS,
        libc::ESPIPE => ESPIPE,
        libc::EXDEV => EXDEV,
        _ => EIO,
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().map(wasi_errno_plain).unwrap_or(EIO)
}

fn check(ret: libc::c_int) -> Result<(), i32> {
    if ret < 0 {
        Err(wasi_errno_plain(last_errno()))
    } else {
        Ok(())
    }
}

fn slice(mem: &[u8], ptr: i32, len: usize) -> Result<&[u8], i32> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len).ok_or(EFAULT)?;
    mem.get(start..end).ok_or(EFAULT)
}

fn put(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(bytes.len()).ok_or(EFAULT)?;
    mem.get_mut(start..end)
        .ok_or(EFAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

/// The `(buf, len)` pairs of an iovec array in guest memory.
pub(crate) fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<(usize, usize)>, i32> {
    let count = count as u32 as usize;
    if count > MAX_IOVS {
        return Err(EINVAL);
    }
    let raw = slice(mem, iovs, count * 8)?;
    let mut out = Vec::with_capacity(count);
    for iov in raw.chunks_exact(8) {
        let buf = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]) as usize;
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]) as usize;
        let end = buf.checked_add(len).ok_or(EFAULT)?;
        if end > mem.len() {
            return Err(EFAULT);
        }
        out.push((buf, len));
    }
    Ok(out)
}

/// A guest path as a C string: at most 4096 bytes, no NUL, not empty.
fn guest_path(mem: &[u8], ptr: i32, len: i32) -> Result<CString, i32> {
    let len = len as u32 as usize;
    if len > MAX_PATH {
        return Err(ENAMETOOLONG);
    }
    let bytes = slice(mem, ptr, len)?;
    if bytes.is_empty() {
        return Err(ENOENT);
    }
    CString::new(bytes).map_err(|_| EINVAL)
}

/// Splits a path into its parent (`.` when none) and its last component,
/// which must be a plain name (not `.` or `..`). Absolute paths are refused.
fn split_parent(path: &CString) -> Result<(CString, CString), i32> {
    let bytes = path.as_bytes();
    if bytes.starts_with(b"/") {
        return Err(ENOTCAPABLE);
    }
    let trimmed = match bytes.iter().rposition(|&b| b != b'/') {
        Some(last) => &bytes[..=last],
        None => return Err(ENOTCAPABLE),
    };
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&trimmed[..slash], &trimmed[slash + 1..]),
        None => (&b"."[..], trimmed),
    };
    if name == b"." || name == b".." {
        return Err(EINVAL);
    }
    let parent = if parent.is_empty() { &b"."[..] } else { parent };
    // Neither part has a NUL: they come from a `CString`.
    Ok((
        CString::new(parent).map_err(|_| EINVAL)?,
        CString::new(name).map_err(|_| EINVAL)?,
    ))
}

fn filetype_of(mode: libc::mode_t) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FILETYPE_REGULAR_FILE,
        libc::S_IFDIR => FILETYPE_DIRECTORY,
        libc::S_IFLNK => FILETYPE_SYMBOLIC_LINK,
        libc::S_IFCHR => FILETYPE_CHARACTER_DEVICE,
        libc::S_IFBLK => FILETYPE_BLOCK_DEVICE,
        libc::S_IFSOCK => FILETYPE_SOCKET_STREAM,
        _ => FILETYPE_UNKNOWN,
    }
}

fn fstat(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `struct stat`.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn nanos(sec: i64, nsec: i64) -> u64 {
    (sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.max(0) as u64)
}

/// The 64-byte WASI `filestat` of `st`.
#[allow(clippy::unnecessary_cast)] // the `stat` field types differ between targets
fn filestat(st: &libc::stat) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[0..8].copy_from_slice(&(st.st_dev as u64).to_le_bytes());
    out[8..16].copy_from_slice(&(st.st_ino as u64).to_le_bytes());
    out[16] = filetype_of(st.st_mode);
    out[24..32].copy_from_slice(&(st.st_nlink as u64).to_le_bytes());
    out[32..40].copy_from_slice(&(st.st_size as u64).to_le_bytes());
    out[40..48].copy_from_slice(&nanos(st.st_atime, st.st_atime_nsec).to_le_bytes());
    out[48..56].copy_from_slice(&nanos(st.st_mtime, st.st_mtime_nsec).to_le_bytes());
    out[56..64].copy_from_slice(&nanos(st.st_ctime, st.st_ctime_nsec).to_le_bytes());
    out
}

/// Every entry of the open directory `dir`, `.` and `..` included.
fn read_entries(dir: &File) -> Result<Vec<DirEntry>, i32> {
    // SAFETY: duplicating a descriptor we own; the copy is handed to
    // `fdopendir`, which owns it until `closedir`.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(wasi_errno_plain(last_errno()));
    }
    // SAFETY: `dup` is a valid directory descriptor we own.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let errno = last_errno();
        // SAFETY: `fdopendir` failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(wasi_errno_plain(errno));
    }
    let mut entries = Vec::new();
    // SAFETY: `stream` is a valid directory stream until `closedir` below;
    // each `dirent` is read before the next `readdir` call.
    unsafe {
        libc::rewinddir(stream);
        loop {
            let entry = libc::readdir(stream);
            if entry.is_null() {
                break;
            }
            let entry = &*entry;
            let name = std::ffi::CStr::from_ptr(entry.d_name.as_ptr());
            let kind = match entry.d_type {
                libc::DT_REG => FILETYPE_REGULAR_FILE,
                libc::DT_DIR => FILETYPE_DIRECTORY,
                libc::DT_LNK => FILETYPE_SYMBOLIC_LINK,
                libc::DT_CHR => FILETYPE_CHARACTER_DEVICE,
                libc::DT_BLK => FILETYPE_BLOCK_DEVICE,
                libc::DT_SOCK => FILETYPE_SOCKET_STREAM,
                _ => FILETYPE_UNKNOWN,
            };
            if entries.len() >= MAX_DIR_ENTRIES {
                libc::closedir(stream);
                return Err(EOVERFLOW);
            }
            entries.push(DirEntry {
                ino: entry.d_ino,
                kind,
                name: name.to_bytes().to_vec(),
            });
        }
        libc::closedir(stream);
    }
    Ok(entries)
}

fn errno_of(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => SUCCESS,
        Err(errno) => errno,
    }
}

impl FileTable {
    pub(crate) fn new(root: Arc<GrantRoot>) -> Self {
        FileTable {
            root,
            open: Vec::new(),
            written: 0,
        }
    }

    fn writable(&self) -> Result<(), i32> {
        match self.root.access {
            DirAccess::ReadWrite => Ok(()),
            DirAccess::ReadOnly => Err(EROFS),
        }
    }

    fn file(&mut self, fd: i32) -> Result<&mut OpenFile, i32> {
        let index = fd.checked_sub(FIRST_FILE_FD).ok_or(EBADF)?;
        self.open
            .get_mut(usize::try_from(index).map_err(|_| EBADF)?)
            .and_then(Option::as_mut)
            .ok_or(EBADF)
    }

    /// The host descriptor of a directory the guest may resolve paths from.
    fn dir_fd(&mut self, fd: i32) -> Result<RawFd, i32> {
        if fd == ROOT_FD {
            return Ok(self.root.dir.as_raw_fd());
        }
        let file = self.file(fd)?;
        if !file.dir {
            return Err(ENOTDIR);
        }
        Ok(file.file.as_raw_fd())
    }

    /// `fd_prestat_get`: descriptor 3 is the granted directory.
    pub(crate) fn prestat_get(&self, mem: &mut [u8], fd: i32, out: i32) -> i32 {
        if fd != ROOT_FD {
            return EBADF;
        }
        let mut prestat = [0u8; 8];
        prestat[4..8].copy_from_slice(&(self.root.guest.len() as u32).to_le_bytes());
        errno_of(put(mem, out, &prestat))
    }

    /// `fd_prestat_dir_name`: the guest path of the granted directory.
    pub(crate) fn prestat_dir_name(&self, mem: &mut [u8], fd: i32, ptr: i32, len: i32) -> i32 {
        if fd != ROOT_FD {
            return EBADF;
        }
        let name = self.root.guest.as_bytes();
        if (len as u32 as usize) < name.len() {
            return ENAMETOOLONG;
        }
        errno_of(put(mem, ptr, name))
    }

    /// `path_open`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn path_open(
        &mut self,
        mem: &mut [u8],
        dirfd: i32,
        lookup: i32,
        path: i32,
        path_len: i32,
        oflags: i32,
        rights: u64,
        fdflags: i32,
        out: i32,
    ) -> i32 {
        errno_of(self.try_path_open(
            mem, dirfd, lookup, path, path_len, oflags, rights, fdflags, out,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn try_path_open(
        &mut self,
        mem: &mut [u8],
        dirfd: i32,
        lookup: i32,
        path: i32,
        path_len: i32,
        oflags: i32,
        rights: u64,
        fdflags: i32,
        out: i32,
    ) -> Result<(), i32> {
        let base = self.dir_fd(dirfd)?;
        let path = guest_path(mem, path, path_len)?;
        let append = fdflags & FDFLAG_APPEND != 0;
        let creates = oflags & (O_CREAT | O_TRUNC) != 0;
        let write = rights & WRITE_RIGHTS != 0 || append || creates;
        let read = rights & (RIGHT_FD_READ | RIGHT_FD_READDIR) != 0;
        if write {
            self.writable()?;
        }
        let slot = match self.open.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.open.len() < MAX_OPEN_FILES => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => return Err(EMFILE),
        };
        // O_NONBLOCK: opening a FIFO never waits for a peer (and it is refused below).
        let mut flags = libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        flags |= match (read, write) {
            (_, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
        };
        if oflags & O_CREAT != 0 {
            flags |= libc::O_CREAT;
        }
        if oflags & O_EXCL != 0 {
            flags |= libc::O_EXCL;
        }
        if oflags & O_TRUNC != 0 {
            flags |= libc::O_TRUNC;
        }
        if oflags & O_DIRECTORY != 0 {
            flags |= libc::O_DIRECTORY;
        }
        if append {
            flags |= libc::O_APPEND;
        }
        if lookup & LOOKUP_SYMLINK_FOLLOW == 0 {
            flags |= libc::O_NOFOLLOW;
        }
        let mode = if flags & libc::O_CREAT != 0 { 0o666 } else { 0 };
        let fd = openat2(base, &path, flags, mode).map_err(wasi_errno)?;
        let st = fstat(fd.as_raw_fd())?;
        let dir = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => false,
            libc::S_IFDIR => true,
            // FIFOs, sockets, devices: never handed to a guest.
            _ => return Err(EACCES),
        };
        if dir && write {
            return Err(EISDIR);
        }
        let guest_fd = FIRST_FILE_FD + slot as i32;
        put(mem, out, &guest_fd.to_le_bytes())?;
        self.open[slot] = Some(OpenFile {
            file: File::from(fd),
            dir,
            read: read || !write,
            write,
            append,
            entries: None,
        });
        Ok(())
    }

    /// `fd_close`.
    pub(crate) fn close(&mut self, fd: i32) -> i32 {
        if fd == ROOT_FD {
            return ENOTSUP;
        }
        match self.file(fd) {
            Ok(_) => {
                let index = (fd - FIRST_FILE_FD) as usize;
                self.open[index] = None;
                SUCCESS
            }
            Err(errno) => errno,
        }
    }

    /// `fd_read` (`offset: None`) and `fd_pread`.
    pub(crate) fn read(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: i32,
        iovs_len: i32,
        nread: i32,
        offset: Option<u64>,
    ) -> i32 {
        errno_of(self.try_read(mem, fd, iovs, iovs_len, nread, offset))
    }

    fn try_read(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: i32,
        iovs_len: i32,
        nread: i32,
        offset: Option<u64>,
    ) -> Result<(), i32> {
        if fd == ROOT_FD {
            return Err(EISDIR);
        }
        let file = self.file(fd)?;
        if file.dir {
            return Err(EISDIR);
        }
        if !file.read {
            return Err(EBADF);
        }
        let iovs = iovecs(mem, iovs, iovs_len)?;
        let mut total: usize = 0;
        for (buf, len) in iovs {
            let dst = &mut mem[buf..buf + len];
            let got = match offset {
                Some(at) => file.file.read_at(dst, at.saturating_add(total as u64)),
                None => (&file.file).read(dst),
            }
            .map_err(|e| io_errno(&e))?;
            total += got;
            if got < len {
                break;
            }
        }
        put(mem, nread, &(total as u32).to_le_bytes())
    }

    /// `fd_write` on a file (`offset: None`) and `fd_pwrite`.
    pub(crate) fn write(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: i32,
        iovs_len: i32,
        nwritten: i32,
        offset: Option<u64>,
    ) -> i32 {
        errno_of(self.try_write(mem, fd, iovs, iovs_len, nwritten, offset))
    }

    fn try_write(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: i32,
        iovs_len: i32,
        nwritten: i32,
        offset: Option<u64>,
    ) -> Result<(), i32> {
        if fd == ROOT_FD {
            return Err(EISDIR);
        }
        let max_write = self.root.max_write;
        let mut room = max_write.saturating_sub(self.written);
        let file = self.file(fd)?;
        if file.dir {
            return Err(EISDIR);
        }
        if !file.write {
            return Err(EBADF);
        }
        let iovs = iovecs(mem, iovs, iovs_len)?;
        let mut total: usize = 0;
        for (buf, len) in iovs {
            if len == 0 {
                continue;
            }
            if room == 0 {
                if total == 0 {
                    return Err(EDQUOT);
                }
                break;
            }
            let src = &mem[buf..buf + len.min(usize::try_from(room).unwrap_or(usize::MAX))];
            let put_bytes = match offset {
                Some(at) if !file.append => {
                    file.file.write_at(src, at.saturating_add(total as u64))
                }
                _ => (&file.file).write(src),
            }
            .map_err(|e| io_errno(&e))?;
            total += put_bytes;
            room = room.saturating_sub(put_bytes as u64);
            if put_bytes < len {
                break;
            }
        }
        self.written = self.written.saturating_add(total as u64);
        put(mem, nwritten, &(total as u32).to_le_bytes())
    }

    /// `fd_seek`.
    pub(crate) fn seek(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        offset: i64,
        whence: i32,
        out: i32,
    ) -> i32 {
        if fd == ROOT_FD {
            return EISDIR;
        }
        let result = (|| {
            let file = self.file(fd)?;
            if file.dir {
                return Err(EISDIR);
            }
            let to = match whence {
                0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| EINVAL)?),
                1 => SeekFrom::Current(offset),
                2 => SeekFrom::End(offset),
                _ => return Err(EINVAL),
            };
            let at = (&file.file).seek(to).map_err(|e| io_errno(&e))?;
            put(mem, out, &at.to_le_bytes())
        })();
        errno_of(result)
    }

    /// `fd_fdstat_get` for descriptor 3 and opened files.
    pub(crate) fn fdstat_get(&mut self, mem: &mut [u8], fd: i32, out: i32) -> i32 {
        let (filetype, flags, base) = if fd == ROOT_FD {
            (FILETYPE_DIRECTORY, 0u16, ALL_RIGHTS)
        } else {
            match self.file(fd) {
                Ok(file) if file.dir => (FILETYPE_DIRECTORY, 0, ALL_RIGHTS),
                Ok(file) => {
                    let mut rights = ALL_RIGHTS;
                    if !file.write {
                        rights &= !WRITE_RIGHTS;
                    }
                    if !file.read {
                        rights &= !RIGHT_FD_READ;
                    }
                    (FILETYPE_REGULAR_FILE, u16::from(file.append), rights)
                }
                Err(errno) => return errno,
            }
        };
        let mut stat = [0u8; 24];
        stat[0] = filetype;
        stat[2..4].copy_from_slice(&flags.to_le_bytes());
        stat[8..16].copy_from_slice(&base.to_le_bytes());
        stat[16..24].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
        errno_of(put(mem, out, &stat))
    }

    fn host_fd(&mut self, fd: i32) -> Result<RawFd, i32> {
        if fd == ROOT_FD {
            return Ok(self.root.dir.as_raw_fd());
        }
        Ok(self.file(fd)?.file.as_raw_fd())
    }

    /// `fd_filestat_get`.
    pub(crate) fn filestat_get(&mut self, mem: &mut [u8], fd: i32, out: i32) -> i32 {
        let result = self
            .host_fd(fd)
            .and_then(fstat)
            .and_then(|st| put(mem, out, &filestat(&st)));
        errno_of(result)
    }

    /// `fd_filestat_set_size` (truncate or extend; counts against the write quota).
    pub(crate) fn filestat_set_size(&mut self, fd: i32, size: u64) -> i32 {
        let result = (|| {
            self.writable()?;
            let max_write = self.root.max_write;
            let written = self.written;
            let file = self.file(fd)?;
            if file.dir || !file.write {
                return Err(EBADF);
            }
            let current = file.file.metadata().map_err(|e| io_errno(&e))?.len();
            let grows = size.saturating_sub(current);
            if written.saturating_add(grows) > max_write {
                return Err(EDQUOT);
            }
            file.file.set_len(size).map_err(|e| io_errno(&e))?;
            self.written = written.saturating_add(grows);
            Ok(())
        })();
        errno_of(result)
    }

    /// `fd_sync` / `fd_datasync`.
    pub(crate) fn sync(&mut self, fd: i32, data_only: bool) -> i32 {
        let result = (|| {
            if fd == ROOT_FD {
                return Ok(());
            }
            let file = self.file(fd)?;
            if !file.write {
                return Ok(());
            }
            let done = if data_only {
                file.file.sync_data()
            } else {
                file.file.sync_all()
            };
            done.map_err(|e| io_errno(&e))
        })();
        errno_of(result)
    }

    /// Success for a valid descriptor: advice is not needed.
    pub(crate) fn advise(&mut self, fd: i32) -> i32 {
        errno_of(self.host_fd(fd).map(|_| ()))
    }

    /// `ENOTSUP` for a valid descriptor, `EBADF` otherwise.
    pub(crate) fn unsupported(&mut self, fd: i32) -> i32 {
        match self.host_fd(fd) {
            Ok(_) => ENOTSUP,
            Err(errno) => errno,
        }
    }

    /// `fd_fdstat_set_flags`: only the flags the descriptor already has.
    pub(crate) fn fdstat_set_flags(&mut self, fd: i32, flags: i32) -> i32 {
        let current = if fd == ROOT_FD {
            0
        } else {
            match self.file(fd) {
                Ok(file) => i32::from(file.append),
                Err(errno) => return errno,
            }
        };
        if flags == current { SUCCESS } else { ENOTSUP }
    }

    /// `fd_readdir`.
    pub(crate) fn readdir(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        buf: i32,
        buf_len: i32,
        cookie: u64,
        bufused: i32,
    ) -> i32 {
        let result = (|| {
            if fd == ROOT_FD {
                // The root has no entry cache of its own: open it like any directory.
                return Err(ENOTSUP);
            }
            let file = self.file(fd)?;
            if !file.dir {
                return Err(ENOTDIR);
            }
            if cookie == 0 || file.entries.is_none() {
                file.entries = Some(read_entries(&file.file)?);
            }
            let entries = file.entries.as_deref().unwrap_or_default();
            let cap = buf_len as u32 as usize;
            let mut out = Vec::with_capacity(cap.min(64 << 10));
            let start = usize::try_from(cookie).unwrap_or(usize::MAX);
            for (i, entry) in entries.iter().enumerate().skip(start) {
                if out.len() >= cap {
                    break;
                }
                let mut header = [0u8; 24];
                header[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
                header[16..20].copy_from_slice(&(entry.name.len() as u32).to_le_bytes());
                header[20] = entry.kind;
                out.extend_from_slice(&header);
                out.extend_from_slice(&entry.name);
            }
            out.truncate(cap);
            put(mem, buf, &out)?;
            put(mem, bufused, &(out.len() as u32).to_le_bytes())
        })();
        errno_of(result)
    }

    /// `path_filestat_get`.
    pub(crate) fn path_filestat_get(
        &mut self,
        mem: &mut [u8],
        dirfd: i32,
        lookup: i32,
        path: i32,
        path_len: i32,
        out: i32,
    ) -> i32 {
        let result = (|| {
            let base = self.dir_fd(dirfd)?;
            let path = guest_path(mem, path, path_len)?;
            let mut flags = libc::O_PATH | libc::O_CLOEXEC;
            if lookup & LOOKUP_SYMLINK_FOLLOW == 0 {
                flags |= libc::O_NOFOLLOW;
            }
            let fd = openat2(base, &path, flags, 0).map_err(wasi_errno)?;
            let st = fstat(fd.as_raw_fd())?;
            put(mem, out, &filestat(&st))
        })();
        errno_of(result)
    }

    /// Opens the parent directory of `path` beneath `dirfd`; returns it and the last name.
    fn parent(
        &mut self,
        mem: &[u8],
        dirfd: i32,
        path: i32,
        len: i32,
    ) -> Result<(OwnedFd, CString), i32> {
        let base = self.dir_fd(dirfd)?;
        let path = guest_path(mem, path, len)?;
        let (parent, name) = split_parent(&path)?;
        let dir = openat2(
            base,
            &parent,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(wasi_errno)?;
        Ok((dir, name))
    }

    /// `path_create_directory`.
    pub(crate) fn create_directory(
        &mut self,
        mem: &mut [u8],
        dirfd: i32,
        path: i32,
        len: i32,
    ) -> i32 {
        let result = (|| {
            self.writable()?;
            let (dir, name) = self.parent(mem, dirfd, path, len)?;
            // SAFETY: `dir` is an open directory and `name` a NUL-terminated plain name.
            check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o777) })
        })();
        errno_of(result)
    }

    /// `path_unlink_file` (`dir: false`) and `path_remove_directory` (`dir: true`).
    pub(crate) fn remove(
        &mut self,
        mem: &mut [u8],
        dirfd: i32,
        path: i32,
        len: i32,
        dir: bool,
    ) -> i32 {
        let result = (|| {
            self.writable()?;
            let (parent, name) = self.parent(mem, dirfd, path, len)?;
            let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
            // SAFETY: `parent` is an open directory and `name` a NUL-terminated plain name.
            check(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) })
        })();
        errno_of(result)
    }

    /// `path_rename`, within the grant.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename(
        &mut self,
        mem: &mut [u8],
        old_fd: i32,
        old: i32,
        old_len: i32,
        new_fd: i32,
        new: i32,
        new_len: i32,
    ) -> i32 {
        let result = (|| {
            self.writable()?;
            let (from_dir, from) = self.parent(mem, old_fd, old, old_len)?;
            let (to_dir, to) = self.parent(mem, new_fd, new, new_len)?;
            // SAFETY: both directories are open and both names NUL-terminated plain names.
            check(unsafe {
                libc::renameat(
                    from_dir.as_raw_fd(),
                    from.as_ptr(),
                    to_dir.as_raw_fd(),
                    to.as_ptr(),
                )
            })
        })();
        errno_of(result)
    }

    /// A path operation the grant does not offer (links, symlinks, times):
    /// `ENOTSUP` once the directory descriptor is valid.
    pub(crate) fn path_unsupported(&mut self, dirfd: i32) -> i32 {
        match self.dir_fd(dirfd) {
            Ok(_) => ENOTSUP,
            Err(errno) => errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_keeps_one_plain_name() {
        let split = |p: &str| {
            split_parent(&CString::new(p).unwrap()).map(|(a, b)| {
                (
                    a.to_string_lossy().into_owned(),
                    b.to_string_lossy().into_owned(),
                )
            })
        };
        assert_eq!(split("a"), Ok((".".into(), "a".into())));
        assert_eq!(split("a/b/"), Ok(("a".into(), "b".into())));
        assert_eq!(split("x/../y"), Ok(("x/..".into(), "y".into())));
        assert_eq!(split("a/.."), Err(EINVAL));
        assert_eq!(split("."), Err(EINVAL));
        assert_eq!(split("/etc/passwd"), Err(ENOTCAPABLE));
        assert_eq!(split("///"), Err(ENOTCAPABLE));
    }

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
            open(c"../x").map(drop).map_err(wasi_errno),
            Err(ENOTCAPABLE)
        );
        assert_eq!(
            open(c"/etc/passwd").map(drop).map_err(wasi_errno),
            Err(ENOTCAPABLE)
        );
    }
}
