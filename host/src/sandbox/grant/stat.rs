//! File metadata for the guest: `fstat` as a WASI `filestat`, and a
//! directory's entries (bounded) for `fd_readdir`.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use crate::sandbox::errno::{check, from_host, last_errno};
use crate::sandbox::wasi_types::errno::EOVERFLOW;
use crate::sandbox::wasi_types::{
    FILETYPE_BLOCK_DEVICE, FILETYPE_CHARACTER_DEVICE, FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE,
    FILETYPE_SOCKET_STREAM, FILETYPE_SYMBOLIC_LINK, FILETYPE_UNKNOWN,
};

/// The most entries a directory listing holds in host memory (a listing of
/// a larger directory fails with `EOVERFLOW`).
const MAX_DIR_ENTRIES: usize = 1 << 20;

/// One entry of a directory listing.
pub(super) struct DirEntry {
    pub ino: u64,
    pub kind: u8,
    pub name: Vec<u8>,
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

pub(super) fn fstat(fd: RawFd) -> Result<libc::stat, i32> {
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
pub(super) fn filestat(st: &libc::stat) -> [u8; 64] {
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
pub(super) fn read_entries(dir: &File) -> Result<Vec<DirEntry>, i32> {
    // SAFETY: duplicating a descriptor we own; the copy is handed to
    // `fdopendir`, which owns it until `closedir`.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(from_host(last_errno()));
    }
    // SAFETY: `dup` is a valid directory descriptor we own.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let errno = last_errno();
        // SAFETY: `fdopendir` failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(from_host(errno));
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
