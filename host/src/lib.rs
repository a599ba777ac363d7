//! # sandpool: CPU tasks with process-grade isolation at close to thread cost
//!
//! sandpool is a worker pool for Rust that runs CPU-bound tasks as
//! WebAssembly: each task in a fresh wasm instance with its own linear
//! memory, a wall-clock deadline, optional fuel and a memory cap, so a
//! crash, a runaway loop or a memory bomb fails that one task and nothing
//! else. Only serializable values cross the boundary; the compiler rejects
//! closures, files and connections.
//!
//! ```no_run
//! use sandpool::{FileInput, Json, Pool, Task};
//! use sandpool::workloads::DocStats;
//!
//! // Compile the module once; every task gets a fresh instance of it.
//! let task: Task<FileInput, Json<DocStats>> = Task::from_file("doc_stats.wasm")?;
//! let pool = Pool::builder(task).workers(2).build()?;
//!
//! let docs = vec![
//!     FileInput { name: "a.txt".into(), data: b"the cat and the hat".to_vec() },
//!     FileInput { name: "b.txt".into(), data: b"to be or not to be".to_vec() },
//! ];
//! // `map` yields one result per input, in input order, whatever finishes first.
//! for (doc, stats) in docs.iter().zip(pool.map(&docs)) {
//!     println!("{}: {} words", doc.name, stats?.0.words);
//! }
//! # Ok::<(), sandpool::Error>(())
//! ```
//!
//! Writing the guest side is one macro in the `sandpool-guest` crate:
//! `sandpool_guest::export_task!(my_function);` where `my_function` is a
//! plain `fn(In) -> Result<Out, E>`.
//!
//! ## Layout
//! - [`Task`]: a loaded module and its boundary types (`task.rs`).
//! - `exec/`, the executors and their shared vocabulary: [`Pool`] (`pool.rs`)
//!   over a queue and worker threads shared by both wasm levels
//!   (`dispatch.rs`); its iterators [`MapIter`], [`AsCompleted`] (`map.rs`);
//!   [`PoolBuilder`], every option checked together (`builder.rs`); the
//!   in-process level's backend (`in_process.rs`); handles: [`TaskHandle`],
//!   the [`Handle`] vocabulary and [`AnyHandle`] (`handles.rs`);
//!   [`as_completed`] over handles (`completed.rs`), [`wait`] (`wait.rs`);
//!   the batching result queue of [`AsCompleted`] (`inbox.rs`);
//!   aborting a running task (`abort.rs`); blocking on futures from plain
//!   threads (`block.rs`); [`IoPool`], native async and blocking I/O tasks
//!   (`io.rs`, `io_handle.rs`, `io_map.rs`); read → compute → write
//!   [`Pipeline`]s over both pools (`pipeline.rs`). What every operation does
//!   on shutdown, drop, cancel, crash and deadline: `docs/semantics.md`.
//! - `runtime/`: the wasm runtime both isolation levels share: the engines
//!   and epoch ticker (`engine.rs`), `CompiledModule` (`module.rs`), the one
//!   place a `Store` is set up (`store.rs`), the host side of guest ABI v1
//!   (`abi.rs`, `trap.rs`) and one task in a fresh instance (`instance.rs`).
//! - `component/`: tasks as WebAssembly components (`wit/task.wit`; Python
//!   and JavaScript guests): compile and pre-instantiate, one task in a fresh
//!   instance, the WASI 0.2 context (deny by default, a granted directory as
//!   the one preopen, captured output), the `sandpool:task/capabilities`
//!   import (`capabilities.rs`), the world for `inspect`;
//!   `runtime/compiled.rs` holds a module or a component.
//! - `sandbox/`: what a guest can reach: per-task host state and bounded
//!   stdout/stderr capture (`state.rs`), the deny-by-default WASI preview 1
//!   shim (`wasi.rs`), guest-memory access (`memory.rs`), the WASI numbers
//!   (`wasi_types.rs`, `errno.rs`) and a granted directory (`grant/`, [`DirAccess`]).
//! - Process isolation ([`Isolation::Process`], `exec/process/`): supervised `sandpool worker`
//!   subprocesses, a pipe round trip per request frame of one or more tasks
//!   ([`process`]: supervisor, calls to a worker, forwarded capability calls
//!   (`forward.rs`), worker child, worker, frames, wire messages,
//!   precompiled-module hand-over, test faults).
//! - `capability/`: host capabilities, typed host functions a task may call
//!   ([`PoolBuilder::capability`], [`Capabilities`]): the registry (`mod.rs`),
//!   the names a module declares (`declared.rs`), the `sandpool_v1.call`
//!   imports and per-task caps (`imports.rs`), the handler threads that let a
//!   call be abandoned at the deadline (`threads.rs`), async handlers on a
//!   shared tokio runtime (`async_handlers.rs`), the built-in read-only
//!   SQL capability (`sqlite.rs`, feature `cli`); contract in `docs/abi.md`.
//! - [`Limits`]: deadline, fuel, memory, output and log caps; [`LoadLimits`]
//!   for loading a module (`load.rs`); the compiled-module cache (`cache.rs`);
//!   [`inspect_module`] (`inspect.rs`).
//! - [`Error`]: one error type, a variant per cause, each naming the task and
//!   input; [`ErrorKind`] is derived from it. The same values cross from
//!   worker processes (`error.rs`, `limits.rs`, `runtime/instance.rs` are the
//!   one serde form).
//! - [`run_folder`]: a task over a folder, one output file per input, the
//!   `sandpool run` command (`folder/`: output naming, the output folder's
//!   lock, the streaming walk, bounded reads, atomic writes; each worker
//!   thread reads, runs and writes a run of inputs itself in
//!   `folder/worker.rs`, through `folder/runner.rs` at either level; rules
//!   in `docs/cli.md`). [`run_jsonl`]: a task over the lines of a JSON Lines
//!   file, results in input order (`folder/jsonl/`). [`folder_status`] and
//!   [`jsonl_status`]: what is done, failed, missing. Output kinds a task
//!   chooses through `sandpool_guest::output` (JSON, raw bytes `{id}.{ext}`,
//!   named files `{id}.files/` renamed into place whole): `folder/output.rs`.
//! - [`Cluster`] (feature `nats`): the same folder runs on `sandpool worker
//!   --nats` processes on many machines over NATS JetStream
//!   (`folder/remote/`: job spec, worker handler, collector; the broker
//!   plumbing is the `sandpool-cluster` crate; `docs/scaling.md`).
//! - The serialization boundary: `codec.rs` (bincode) and the ABI constants
//!   in `sandpool_guest::abi`; the contract for non-Rust guests is `docs/abi.md`.
//! - Shared helpers: `atomic_write.rs` (temporary file, fsync, rename) and
//!   `sync.rs` (locking).
//! - Cargo features: `cli` (default: the `sandpool` binary's clap and
//!   indicatif); `nats` (default: [`Cluster`], `--nats`); `bench-hooks` and `test-faults` are internal (benchmarks and
//!   tests turn them on).

mod cache;
mod capability;
mod codec;
mod component;
#[doc(hidden)]
pub mod doc_tasks;
mod error;
mod exec;
mod folder;
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod limits;
mod load;
mod runtime;
mod sandbox;
mod task;

#[cfg(feature = "bench-hooks")]
#[doc(hidden)]
#[path = "bench_hooks.rs"]
pub mod __bench;
mod atomic_write;
mod sync;

pub use cache::default_cache_dir;
pub use capability::Capabilities;
/// The built-in read-only SQL capability (`sandpool run --sqlite`; feature `cli`).
#[cfg(feature = "cli")]
pub mod sqlite {
    pub use crate::capability::{MAX_ROWS, SQL_QUERY, SqlQuery, SqlValue};
}
#[cfg(feature = "cli")]
pub use capability::sqlite_query;
pub use error::{Error, ErrorKind, Result, TaskRef};
pub use exec::builder::{Isolation, PoolBuilder};
pub use exec::completed::{Completed, as_completed};
pub use exec::handles::{AnyHandle, Handle, TaskHandle, TaskOutput};
pub use exec::io::{IoAsCompleted, IoHandle, IoMap, IoPool, IoPoolBuilder};
pub use exec::map::{AsCompleted, MapIter};
pub use exec::pipeline::{
    CancelToken, Order, Pipeline, PipelineBuilder, PipelineRun, PipelineStats,
};
pub use exec::pool::Pool;
pub use exec::process;
pub use exec::wait::{ReturnWhen, Waited, wait, wait_async, wait_timeout};
#[cfg(feature = "nats")]
pub use folder::{Cluster, ClusterSettings, WorkerStats};
pub use folder::{
    DirGrant, Failure, FailureRecord, FolderEvent, FolderJob, FolderStatus, FolderSummary,
    InputState, JsonlJob, JsonlSummary, Progress, Retried, StatusEntry, file_id, folder_status,
    jsonl_status, run_folder, run_jsonl,
};
pub use inspect::{ModuleItem, ModuleReport, inspect_module};
pub use limits::Limits;
pub use load::LoadLimits;
pub use runtime::instance::TaskLogs;
pub use sandbox::CapturedStream;
pub use sandbox::grant::{DEFAULT_MAX_FILE_WRITES, DirAccess, MAX_OPEN_FILES};
pub use sandpool_guest::workloads;
pub use sandpool_guest::{FileInput, Json};
pub use task::Task;
