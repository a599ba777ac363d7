//! The deny-by-default WASI preview 1 shim every task instance links, and
//! the `sandpool_v1` panic import (the host state it works on: `state.rs`).
//!
//! Every `wasi_snapshot_preview1` function is defined, so any module built
//! for `wasm32-wasip1` links, but nothing is granted: no files (no
//! preopened directories, every descriptor but 0–2 is `EBADF`, unless the
//! pool was granted one directory: see `grant/`), no
//! environment, no arguments, no sockets. Standard input is empty; standard
//! output and error are captured per task into buffers bounded by
//! [`Limits::max_log`](crate::Limits::max_log) (the excess is counted and
//! dropped, never an error for the guest). Clocks and `random_get` work
//! (the random bytes come from the host's cryptographically secure
//! thread-local generator). `proc_exit` ends the task with a trap.
//! `poll_oneoff` (sleeping) is `ENOSYS`: a task that could wait would hold a
//! CPU worker idle.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use wasmtime::{Caller, Linker};

use super::errno::errno_of;
use super::grant::FileTable;
use super::memory::{iovecs, memory, put, put_u32, put_u64, slice, slice_mut};
use super::state::{GuestExit, HostState};
use super::wasi_types::errno::{EBADF, EINVAL, ENOSYS, ESPIPE, SUCCESS};
use super::wasi_types::{Errno, MODULE as WASI};

/// The largest panic message kept from a guest.
const MAX_PANIC_MESSAGE: usize = 4096;

fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Errno {
    if fd != 1 && fd != 2 {
        return with_files(&mut caller, |mem, files| {
            files.write(mem, fd, iovs, iovs_len, nwritten, None)
        });
    }
    errno_of((|| {
        let (mem, state) = memory(&mut caller)?;
        let mut total: u32 = 0;
        for (buf, len) in iovecs(mem, iovs, iovs_len)? {
            let stream = if fd == 1 {
                &mut state.stdout
            } else {
                &mut state.stderr
            };
            stream.write(&mem[buf..buf + len], state.max_log);
            total = total.wrapping_add(len as u32);
        }
        put_u32(mem, nwritten, total)
    })())
}

fn zero_sizes(mut caller: Caller<'_, HostState>, count: i32, size: i32) -> Errno {
    errno_of(memory(&mut caller).and_then(|(mem, _)| {
        put_u32(mem, count, 0)?;
        put_u32(mem, size, 0)
    }))
}

fn clock_time_get(mut caller: Caller<'_, HostState>, id: i32, _precision: i64, out: i32) -> Errno {
    let nanos: u64 = match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        // Monotonic, process and thread CPU time: time since the task started.
        1..=3 => caller.data().started.elapsed().as_nanos() as u64,
        _ => return EINVAL,
    };
    errno_of(memory(&mut caller).and_then(|(mem, _)| put_u64(mem, out, nanos)))
}

fn clock_res_get(mut caller: Caller<'_, HostState>, id: i32, out: i32) -> Errno {
    if !(0..=3).contains(&id) {
        return EINVAL;
    }
    errno_of(memory(&mut caller).and_then(|(mem, _)| put_u64(mem, out, 1000)))
}

fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> Errno {
    errno_of(memory(&mut caller).and_then(|(mem, _)| {
        rand::rng().fill_bytes(slice_mut(mem, buf, len as u32 as usize)?);
        Ok(())
    }))
}

fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, out: i32) -> Errno {
    if !(0..=2).contains(&fd) {
        return with_files(&mut caller, |mem, files| files.fdstat_get(mem, fd, out));
    }
    // fdstat: filetype u8 (2 = character device), pad, flags u16, pad, rights_base u64, rights_inheriting u64.
    let mut stat = [0u8; 24];
    stat[0] = 2;
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    errno_of(memory(&mut caller).and_then(|(mem, _)| put(mem, out, &stat)))
}

fn fd_read(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> Errno {
    if fd != 0 {
        return with_files(&mut caller, |mem, files| {
            files.read(mem, fd, iovs, iovs_len, nread, None)
        });
    }
    // Standard input is empty.
    errno_of(memory(&mut caller).and_then(|(mem, _)| put_u32(mem, nread, 0)))
}

/// Runs `op` on the task's granted directory; `EBADF` when it has none
/// (the default), so without a grant every descriptor past 2 is unknown.
fn with_files(
    caller: &mut Caller<'_, HostState>,
    op: impl FnOnce(&mut [u8], &mut FileTable) -> Errno,
) -> Errno {
    if caller.data().files.is_none() {
        return EBADF;
    }
    let (mem, state) = match memory(caller) {
        Ok(borrowed) => borrowed,
        Err(errno) => return errno,
    };
    match state.files.as_deref_mut() {
        Some(files) => op(mem, files),
        None => EBADF,
    }
}

/// Defines every `wasi_snapshot_preview1` function and the `sandpool_v1` imports.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(WASI, "fd_read", fd_read)?;
    linker.func_wrap(WASI, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(WASI, "args_sizes_get", zero_sizes)?;
    linker.func_wrap(WASI, "environ_sizes_get", zero_sizes)?;
    linker.func_wrap(WASI, "args_get", |_: C<'_>, _: i32, _: i32| SUCCESS)?;
    linker.func_wrap(WASI, "environ_get", |_: C<'_>, _: i32, _: i32| SUCCESS)?;
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "clock_res_get", clock_res_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(WASI, "sched_yield", |_: C<'_>| SUCCESS)?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |_: C<'_>, code: i32| -> wasmtime::Result<()> { Err(GuestExit::Exit(code).into()) },
    )?;
    linker.func_wrap(WASI, "proc_raise", |_: C<'_>, _: i32| ENOSYS)?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| ENOSYS,
    )?;
    // Descriptors: 0-2 are the standard streams. Past them, everything is
    // `EBADF` unless the pool granted a directory (descriptor 3, `grant.rs`).
    linker.func_wrap(WASI, "fd_close", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return SUCCESS;
        }
        with_files(&mut c, |_, files| files.close(fd))
    })?;
    linker.func_wrap(WASI, "fd_sync", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return SUCCESS;
        }
        with_files(&mut c, |_, files| files.sync(fd, false))
    })?;
    linker.func_wrap(WASI, "fd_datasync", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return SUCCESS;
        }
        with_files(&mut c, |_, files| files.sync(fd, true))
    })?;
    linker.func_wrap(WASI, "fd_prestat_get", |mut c: C<'_>, fd: i32, out: i32| {
        with_files(&mut c, |mem, files| files.prestat_get(mem, fd, out))
    })?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |mut c: C<'_>, fd: i32, path: i32, len: i32| {
            with_files(&mut c, |mem, files| {
                files.prestat_dir_name(mem, fd, path, len)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |mut c: C<'_>, fd: i32, offset: i64, whence: i32, out: i32| {
            if (0..=2).contains(&fd) {
                return ESPIPE;
            }
            with_files(&mut c, |mem, files| {
                files.seek(mem, fd, offset, whence, out)
            })
        },
    )?;
    linker.func_wrap(WASI, "fd_tell", |mut c: C<'_>, fd: i32, out: i32| {
        if (0..=2).contains(&fd) {
            return ESPIPE;
        }
        with_files(&mut c, |mem, files| files.seek(mem, fd, 0, 1, out))
    })?;
    linker.func_wrap(
        WASI,
        "fd_advise",
        |mut c: C<'_>, fd: i32, _: i64, _: i64, _: i32| with_files(&mut c, |_, f| f.advise(fd)),
    )?;
    linker.func_wrap(
        WASI,
        "fd_allocate",
        |mut c: C<'_>, fd: i32, _: i64, _: i64| with_files(&mut c, |_, f| f.unsupported(fd)),
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_set_flags",
        |mut c: C<'_>, fd: i32, flags: i32| {
            with_files(&mut c, |_, files| files.fdstat_set_flags(fd, flags))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_set_rights",
        |mut c: C<'_>, fd: i32, _: i64, _: i64| with_files(&mut c, |_, f| f.unsupported(fd)),
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_get",
        |mut c: C<'_>, fd: i32, out: i32| {
            with_files(&mut c, |mem, files| files.filestat_get(mem, fd, out))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_set_size",
        |mut c: C<'_>, fd: i32, size: i64| {
            with_files(&mut c, |_, files| files.filestat_set_size(fd, size as u64))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_set_times",
        |mut c: C<'_>, fd: i32, _: i64, _: i64, _: i32| {
            with_files(&mut c, |_, f| f.unsupported(fd))
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pread",
        |mut c: C<'_>, fd: i32, iovs: i32, len: i32, offset: i64, out: i32| {
            with_files(&mut c, |mem, files| {
                files.read(mem, fd, iovs, len, out, Some(offset as u64))
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pwrite",
        |mut c: C<'_>, fd: i32, iovs: i32, len: i32, offset: i64, out: i32| {
            with_files(&mut c, |mem, files| {
                files.write(mem, fd, iovs, len, out, Some(offset as u64))
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_readdir",
        |mut c: C<'_>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| {
            with_files(&mut c, |mem, files| {
                files.readdir(mem, fd, buf, len, cookie as u64, out)
            })
        },
    )?;
    linker.func_wrap(WASI, "fd_renumber", |mut c: C<'_>, fd: i32, _: i32| {
        with_files(&mut c, |_, f| f.unsupported(fd))
    })?;
    linker.func_wrap(
        WASI,
        "path_create_directory",
        |mut c: C<'_>, fd: i32, path: i32, len: i32| {
            with_files(&mut c, |mem, files| {
                files.create_directory(mem, fd, path, len)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_filestat_get",
        |mut c: C<'_>, fd: i32, lookup: i32, path: i32, len: i32, out: i32| {
            with_files(&mut c, |mem, files| {
                files.path_filestat_get(mem, fd, lookup, path, len, out)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_filestat_set_times",
        |mut c: C<'_>, fd: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| {
            with_files(&mut c, |_, f| f.path_unsupported(fd))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_link",
        |mut c: C<'_>, fd: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            with_files(&mut c, |_, f| f.path_unsupported(fd))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_open",
        |mut c: C<'_>,
         fd: i32,
         lookup: i32,
         path: i32,
         len: i32,
         oflags: i32,
         rights: i64,
         _inheriting: i64,
         fdflags: i32,
         out: i32| {
            with_files(&mut c, |mem, files| {
                files.path_open(
                    mem,
                    fd,
                    lookup,
                    path,
                    len,
                    oflags,
                    rights as u64,
                    fdflags,
                    out,
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_readlink",
        |mut c: C<'_>, fd: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            with_files(&mut c, |_, f| f.path_unsupported(fd))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_remove_directory",
        |mut c: C<'_>, fd: i32, path: i32, len: i32| {
            with_files(&mut c, |mem, files| files.remove(mem, fd, path, len, true))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_rename",
        |mut c: C<'_>, fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32| {
            with_files(&mut c, |mem, files| {
                files.rename(mem, fd, old, old_len, new_fd, new, new_len)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_symlink",
        |mut c: C<'_>, _: i32, _: i32, fd: i32, _: i32, _: i32| {
            with_files(&mut c, |_, f| f.path_unsupported(fd))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_unlink_file",
        |mut c: C<'_>, fd: i32, path: i32, len: i32| {
            with_files(&mut c, |mem, files| files.remove(mem, fd, path, len, false))
        },
    )?;
    linker.func_wrap(WASI, "sock_accept", |_: C<'_>, _: i32, _: i32, _: i32| {
        EBADF
    })?;
    linker.func_wrap(
        WASI,
        "sock_recv",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| EBADF,
    )?;
    linker.func_wrap(
        WASI,
        "sock_send",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| EBADF,
    )?;
    linker.func_wrap(WASI, "sock_shutdown", |_: C<'_>, _: i32, _: i32| EBADF)?;

    linker.func_wrap(
        sandpool_guest::abi::IMPORT_MODULE,
        sandpool_guest::abi::IMPORT_PANIC,
        |mut caller: C<'_>, ptr: i32, len: i32| {
            if let Ok((mem, state)) = memory(&mut caller) {
                let len = (len as u32 as usize).min(MAX_PANIC_MESSAGE);
                if let Ok(bytes) = slice(mem, ptr, len) {
                    state.panic = Some(String::from_utf8_lossy(bytes).into_owned());
                }
            }
        },
    )?;
    Ok(())
}
