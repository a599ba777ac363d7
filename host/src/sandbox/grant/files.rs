//! A task's file table over its grant: descriptor 3 is the granted
//! directory, 4 and up the files it opened (at most [`MAX_OPEN_FILES`]), with
//! one method per WASI call that reaches a file, each returning the guest's errno.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::openat2::openat2;
use super::path::{guest_path, split_parent};
use super::stat::{DirEntry, filestat, fstat, read_entries};
use super::{DirAccess, GrantRoot, MAX_OPEN_FILES};
use crate::sandbox::errno::{check, errno_of, from_io, from_path_errno};
use crate::sandbox::memory::{iovecs, put};
use crate::sandbox::wasi_types::errno::*;
use crate::sandbox::wasi_types::*;

/// The guest descriptor of the granted directory.
const ROOT_FD: i32 = 3;
/// The first guest descriptor of a file opened by the task.
const FIRST_FILE_FD: i32 = 4;

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

/// A task's view of its grant: descriptor 3 and the files it opened.
pub(crate) struct FileTable {
    root: Arc<GrantRoot>,
    open: Vec<Option<OpenFile>>,
    written: u64,
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
        let fd = openat2(base, &path, flags, mode).map_err(from_path_errno)?;
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
            .map_err(|e| from_io(&e))?;
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
            .map_err(|e| from_io(&e))?;
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
            let at = (&file.file).seek(to).map_err(|e| from_io(&e))?;
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
            let current = file.file.metadata().map_err(|e| from_io(&e))?.len();
            let grows = size.saturating_sub(current);
            if written.saturating_add(grows) > max_write {
                return Err(EDQUOT);
            }
            file.file.set_len(size).map_err(|e| from_io(&e))?;
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
            done.map_err(|e| from_io(&e))
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
            let fd = openat2(base, &path, flags, 0).map_err(from_path_errno)?;
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
        .map_err(from_path_errno)?;
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
