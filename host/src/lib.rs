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
//! - [`Task`]: a loaded module and its boundary types (`task.rs`; loading and
//!   ABI checks in `module.rs`).
//! - [`Pool`], [`PoolBuilder`], [`TaskHandle`]: the executor API (`pool.rs`),
//!   over a queue and worker threads shared by all wasm executors (`dispatch.rs`).
//! - Running one task in a fresh instance: `instance.rs`; the deny-by-default
//!   WASI it links: `wasi.rs`.
//! - Process isolation ([`Isolation::Process`]): supervised `sandpool worker`
//!   subprocesses, a pipe round trip per task ([`process`]: supervisor,
//!   worker, frames, precompiled-module hand-over).
//! - [`Limits`]: deadline, fuel, memory, output and log caps.
//! - [`Error`]: one error type, a variant per cause, each naming the task and input.
//! - [`run_folder`]: a task over a folder, one output file per input, the
//!   `sandpool run` command (`folder/`: output naming, the output folder's
//!   lock, the streaming walk, bounded reads, atomic writes; rules in
//!   `docs/cli.md`). [`run_jsonl`]: a task over the lines of a JSON Lines
//!   file, results in input order (`folder/jsonl/`). [`folder_status`] and
//!   [`jsonl_status`]: what is done, failed, missing.
//!   Load-time limits on modules: [`LoadLimits`] (`load.rs`).
//! - The serialization boundary: `codec.rs` (bincode) and the ABI constants
//!   in `sandpool_guest::abi`; the contract for non-Rust guests is `docs/abi.md`.

mod cache;
mod codec;
mod dispatch;
mod error;
mod folder;
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod inspect;
mod instance;
mod io;
mod limits;
mod load;
mod module;
mod pipeline;
mod pool;
pub mod process;
mod task;
mod wait;
mod wasi;

pub use cache::default_cache_dir;
pub use error::{Error, ErrorKind, Result, TaskRef};
pub use folder::{
    DirGrant, Failure, FailureRecord, FolderEvent, FolderJob, FolderStatus, FolderSummary,
    InputState, JsonlJob, JsonlSummary, Progress, Retried, StatusEntry, file_id, folder_status,
    jsonl_status, run_folder, run_jsonl,
};
pub use grant::{DEFAULT_MAX_FILE_WRITES, DirAccess, MAX_OPEN_FILES};
pub use inspect::{ModuleItem, ModuleReport, inspect_module};
pub use instance::TaskLogs;
#[doc(hidden)]
pub use instance::bench as __bench;
pub use io::{IoHandle, IoPool, IoPoolBuilder};
pub use limits::Limits;
pub use load::LoadLimits;
pub use pipeline::{CancelToken, Order, Pipeline, PipelineBuilder, PipelineRun, PipelineStats};
pub use pool::{AsCompleted, Isolation, MapIter, Pool, PoolBuilder, TaskHandle, TaskOutput};
pub use sandpool_guest::workloads;
pub use sandpool_guest::{FileInput, Json};
pub use task::Task;
pub use wait::{ReturnWhen, Waited, wait, wait_async};
pub use wasi::CapturedStream;
