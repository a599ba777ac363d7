//! The per-task host state a wasm `Store` holds: the memory limit and its
//! limiter, the bounded capture of stdout/stderr, what the guest reported
//! before it stopped, and its view of a granted directory.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

use super::grant::FileTable;

/// Output a task wrote to one of its standard streams, bounded.
///
/// ```
/// use sandpool::{Limits, Pool, Task};
/// // A guest that writes "hi\n" to stdout, then returns an empty output.
/// let wat = r#"(module
///   (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
///   (memory (export "memory") 1)
///   (data (i32.const 16) "hi\n")
///   (data (i32.const 0) "\10\00\00\00\03\00\00\00")
///   (func (export "sandpool_abi_version") (result i32) i32.const 1)
///   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
///   (func (export "sandpool_run") (param i32 i32) (result i64)
///     (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
///     (i32.store8 (i32.const 32) (i32.const 0))
///     (i64.or (i64.shl (i64.const 32) (i64.const 32)) (i64.const 1))))"#;
/// let task: Task<(), ()> = Task::from_bytes("hello", wat.into())?;
/// let pool = Pool::builder(task).limits(Limits::default().max_log(2)).build()?;
/// let stdout = pool.submit(&())?.wait_output().logs.stdout;
/// assert_eq!(stdout.bytes, b"hi");
/// assert_eq!(stdout.dropped, 1, "the byte past Limits::max_log is counted, not kept");
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedStream {
    /// The first `max_log` bytes written.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// How many bytes were dropped past the bound.
    pub dropped: u64,
}

impl CapturedStream {
    /// Keeps what fits under `bound` and counts the rest.
    pub(crate) fn write(&mut self, data: &[u8], bound: usize) {
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
    /// The task's view of the pool's granted directory, if any (`grant/`).
    pub files: Option<Box<FileTable>>,
    /// The task's capability calls, if its pool grants any (`capability/`).
    pub calls: Option<Box<crate::capability::imports::CallState>>,
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
            calls: None,
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
