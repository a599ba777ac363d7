//! A deny-by-default WASI preview 1 for task instances, and the per-task
//! host state it works on.
//!
//! Every `wasi_snapshot_preview1` function is defined, so any module built
//! for `wasm32-wasip1` links, but nothing is granted: no files (no
//! preopened directories, every descriptor but 0–2 is `EBADF`, unless the
//! pool was granted one directory: see `grant.rs`), no
//! environment, no arguments, no sockets. Standard input is empty; standard
//! output and error are captured per task into buffers bounded by
//! [`Limits::max_log`](crate::Limits::max_log) (the excess is counted and
//! dropped, never an error for the guest). Clocks and `random_get` work
//! (the random bytes come from the host's cryptographically secure
//! thread-local generator). `proc_exit` ends the task with a trap.
//! `poll_oneoff` (sleeping) is `ENOSYS`: a task that could wait would hold a
//! CPU worker idle.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter};

use crate::error::Error;
use crate::grant::FileTable;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;
const ERRNO_SPIPE: i32 = 70;

const WASI: &str = "wasi_snapshot_preview1";

/// The largest panic message kept from a guest.
const MAX_PANIC_MESSAGE: usize = 4096;

/// Output a task wrote to one of its standard streams, bounded.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// let stdout = pool.submit(&1000)?.wait_output().logs.stdout;
/// print!("{}", String::from_utf8_lossy(&stdout.bytes));
/// if stdout.dropped > 0 {
///     eprintln!("({} more bytes dropped past Limits::max_log)", stdout.dropped);
/// }
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct CapturedStream {
    /// The first `max_log` bytes written.
    pub bytes: Vec<u8>,
    /// How many bytes were dropped past the bound.
    pub dropped: u64,
}

impl CapturedStream {
    fn write(&mut self, data: &[u8], bound: usize) {
        let room = bound.saturating_sub(self.bytes.len());
        let kept = room.min(data.len());
        self.bytes.extend_from_slice(&data[..kept]);
        self.dropped += (data.len() - kept) as u64;
    }
}

/// Why a guest stopped early, recorded by host functions before they trap.
#[derive(Debug, Clone)]
pub(crate) enum GuestExit {
    /// The guest called `proc_exit(code)`.
    Exit(i32),
}

impl std::fmt::Display for GuestExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestExit::Exit(code) => write!(f, "guest called proc_exit({code})"),
        }
    }
}

impl std::error::Error for GuestExit {}

/// Per-task state held by a wasm `Store`: limits, captured output, reports.
pub(crate) struct HostState {
    pub memory_limit: usize,
    pub memory_denied: bool,
    pub max_log: usize,
    pub stdout: CapturedStream,
    pub stderr: CapturedStream,
    pub panic: Option<String>,
    pub started: Instant,
    /// The task's view of the pool's granted directory, if any (`grant.rs`).
    pub files: Option<Box<FileTable>>,
}

impl HostState {
    pub fn new(memory_limit: usize, max_log: usize) -> Self {
        HostState {
            memory_limit,
            memory_denied: false,
            max_log,
            stdout: CapturedStream::default(),
            stderr: CapturedStream::default(),
            panic: None,
            started: Instant::now(),
            files: None,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn memory<'a>(caller: &'a mut Caller<'_, HostState>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    match caller.get_export(sandpool_guest::abi::EXPORT_MEMORY) {
        Some(Extern::Memory(m)) => Some(m.data_and_store_mut(caller)),
        _ => None,
    }
}

fn slice(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    mem.get(start..end)
}

fn put_u32(mem: &mut [u8], ptr: i32, value: u32) -> bool {
    put_bytes(mem, ptr, &value.to_le_bytes())
}

fn put_bytes(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> bool {
    let start = ptr as u32 as usize;
    match start
        .checked_add(bytes.len())
        .and_then(|end| mem.get_mut(start..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return with_files(&mut caller, |mem, files| {
            files.write(mem, fd, iovs, iovs_len, nwritten, None)
        });
    }
    let Some((mem, state)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    let iovs = match crate::grant::iovecs(mem, iovs, iovs_len) {
        Ok(iovs) => iovs,
        Err(errno) => return errno,
    };
    let mut total: u32 = 0;
    for (buf, len) in iovs {
        let stream = if fd == 1 {
            &mut state.stdout
        } else {
            &mut state.stderr
        };
        stream.write(&mem[buf..buf + len], state.max_log);
        total = total.wrapping_add(len as u32);
    }
    if put_u32(mem, nwritten, total) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn zero_sizes(mut caller: Caller<'_, HostState>, count: i32, size: i32) -> i32 {
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    if put_u32(mem, count, 0) && put_u32(mem, size, 0) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn clock_time_get(mut caller: Caller<'_, HostState>, id: i32, _precision: i64, out: i32) -> i32 {
    let nanos: u64 = match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        // Monotonic, process and thread CPU time: time since the task started.
        1..=3 => caller.data().started.elapsed().as_nanos() as u64,
        _ => return ERRNO_INVAL,
    };
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    if put_bytes(mem, out, &nanos.to_le_bytes()) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn clock_res_get(mut caller: Caller<'_, HostState>, id: i32, out: i32) -> i32 {
    if !(0..=3).contains(&id) {
        return ERRNO_INVAL;
    }
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    if put_bytes(mem, out, &1000u64.to_le_bytes()) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> i32 {
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    let start = buf as u32 as usize;
    match start
        .checked_add(len as u32 as usize)
        .and_then(|end| mem.get_mut(start..end))
    {
        Some(dst) => {
            rand::rng().fill_bytes(dst);
            ERRNO_SUCCESS
        }
        None => ERRNO_FAULT,
    }
}

fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, out: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return with_files(&mut caller, |mem, files| files.fdstat_get(mem, fd, out));
    }
    // fdstat: filetype u8 (2 = character device), pad, flags u16, pad, rights_base u64, rights_inheriting u64.
    let mut stat = [0u8; 24];
    stat[0] = 2;
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    if put_bytes(mem, out, &stat) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn fd_read(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> i32 {
    if fd != 0 {
        return with_files(&mut caller, |mem, files| {
            files.read(mem, fd, iovs, iovs_len, nread, None)
        });
    }
    // Standard input is empty.
    let Some((mem, _)) = memory(&mut caller) else {
        return ERRNO_FAULT;
    };
    if put_u32(mem, nread, 0) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

/// Runs `op` on the task's granted directory; `EBADF` when it has none
/// (the default), so without a grant every descriptor past 2 is unknown.
fn with_files(
    caller: &mut Caller<'_, HostState>,
    op: impl FnOnce(&mut [u8], &mut FileTable) -> i32,
) -> i32 {
    if caller.data().files.is_none() {
        return ERRNO_BADF;
    }
    let Some((mem, state)) = memory(caller) else {
        return ERRNO_FAULT;
    };
    match state.files.as_deref_mut() {
        Some(files) => op(mem, files),
        None => ERRNO_BADF,
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
    linker.func_wrap(WASI, "args_get", |_: C<'_>, _: i32, _: i32| ERRNO_SUCCESS)?;
    linker.func_wrap(WASI, "environ_get", |_: C<'_>, _: i32, _: i32| {
        ERRNO_SUCCESS
    })?;
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "clock_res_get", clock_res_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(WASI, "sched_yield", |_: C<'_>| ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |_: C<'_>, code: i32| -> wasmtime::Result<()> { Err(GuestExit::Exit(code).into()) },
    )?;
    linker.func_wrap(WASI, "proc_raise", |_: C<'_>, _: i32| ERRNO_NOSYS)?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| ERRNO_NOSYS,
    )?;
    // Descriptors: 0-2 are the standard streams. Past them, everything is
    // `EBADF` unless the pool granted a directory (descriptor 3, `grant.rs`).
    linker.func_wrap(WASI, "fd_close", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return ERRNO_SUCCESS;
        }
        with_files(&mut c, |_, files| files.close(fd))
    })?;
    linker.func_wrap(WASI, "fd_sync", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return ERRNO_SUCCESS;
        }
        with_files(&mut c, |_, files| files.sync(fd, false))
    })?;
    linker.func_wrap(WASI, "fd_datasync", |mut c: C<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            return ERRNO_SUCCESS;
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
                return ERRNO_SPIPE;
            }
            with_files(&mut c, |mem, files| {
                files.seek(mem, fd, offset, whence, out)
            })
        },
    )?;
    linker.func_wrap(WASI, "fd_tell", |mut c: C<'_>, fd: i32, out: i32| {
        if (0..=2).contains(&fd) {
            return ERRNO_SPIPE;
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
        ERRNO_BADF
    })?;
    linker.func_wrap(
        WASI,
        "sock_recv",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        WASI,
        "sock_send",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(WASI, "sock_shutdown", |_: C<'_>, _: i32, _: i32| ERRNO_BADF)?;

    linker.func_wrap(
        sandpool_guest::abi::IMPORT_MODULE,
        sandpool_guest::abi::IMPORT_PANIC,
        |mut caller: C<'_>, ptr: i32, len: i32| {
            if let Some((mem, state)) = memory(&mut caller) {
                let len = (len as u32 as usize).min(MAX_PANIC_MESSAGE) as i32;
                if let Some(bytes) = slice(mem, ptr, len) {
                    state.panic = Some(String::from_utf8_lossy(bytes).into_owned());
                }
            }
        },
    )?;
    Ok(())
}

/// The import modules a task may use; anything else is refused at load.
pub(crate) fn is_provided_import(module: &str) -> bool {
    module == WASI || module == sandpool_guest::abi::IMPORT_MODULE
}

/// A load-time error for an import the host does not provide.
pub(crate) fn unknown_import(module_name: &str, import_module: &str, name: &str) -> Error {
    Error::InvalidModule {
        module: module_name.to_string(),
        reason: format!(
            "it imports `{import_module}::{name}`, which sandpool does not provide \
             (tasks may import only `{WASI}` and `{}`)",
            sandpool_guest::abi::IMPORT_MODULE
        ),
    }
}
