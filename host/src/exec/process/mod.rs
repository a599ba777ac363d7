//! Process isolation: persistent `sandpool worker` subprocesses that run
//! wasm tasks, supervised so a crashing worker loses only its task in flight.
//!
//! Select it with [`Isolation::Process`](crate::Isolation::Process); the
//! pool's API is the same as for in-process instances. Each worker thread
//! of the pool drives one subprocess over its stdin/stdout with
//! length-prefixed bincode frames; the subprocess loads the module once
//! (deserializing the module the pool compiled, never recompiling it) and
//! runs every task in a fresh wasm instance under the task's limits,
//! exactly as the in-process executor does, then sends back the output and
//! the captured stdout/stderr. A request frame can carry a batch of tasks;
//! the worker answers each one as soon as it is done, so a worker lost in
//! the middle of a batch fails only the task it was running, and the tasks
//! it had not started go to its replacement.
//!
//! What a worker's failure costs:
//!
//! - a worker that dies (a signal such as SIGKILL, SIGSEGV or SIGABRT, an
//!   OOM kill, or an exit) fails only the task it was running, with
//!   [`Error::WorkerCrashed`](crate::Error::WorkerCrashed) naming the signal
//!   or exit status, and is replaced; the rest of the work goes on;
//! - a worker that does not answer within the task's deadline plus
//!   [`worker_grace`](crate::PoolBuilder::worker_grace) is killed and
//!   treated the same way;
//! - worker start-ups that fail in a row (a module or a system that crashes
//!   every new worker) are bounded by
//!   [`max_failed_starts`](crate::PoolBuilder::max_failed_starts): at
//!   [`build`](crate::PoolBuilder::build) the pool is an
//!   [`Error::Pool`](crate::Error::Pool); later, the pool gives up, and every
//!   task then fails at once with `WorkerCrashed` giving the reason
//!   (also in [`ProcessStats::gave_up`]).
//!
//! Shutting the pool down (or dropping it) closes the workers' stdin; they
//! exit and are reaped, so no orphan or zombie process is left behind.
//!
//! ```no_run
//! use sandpool::{Isolation, Pool, Task};
//! let task: Task<u64, u64> = Task::from_file("primes.wasm")?;
//! let pool = Pool::builder(task)
//!     .isolation(Isolation::Process)
//!     .workers(4)
//!     .max_tasks_per_worker(10_000)
//!     .build()?;
//! let counts: Vec<u64> = pool.map([10, 100, 1000]).collect::<Result<_, _>>()?;
//! assert_eq!(counts, vec![4, 25, 168]);
//! pool.shutdown(true, false); // workers exit and are reaped
//! # Ok::<(), sandpool::Error>(())
//! ```

mod calls;
mod child;
mod faults;
mod forward;
pub(crate) mod frame;
mod handoff;
mod supervisor;
pub(crate) mod wire;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use supervisor::{ProcessBackend, Supervisor};

/// Environment variable naming the worker program when the builder does not.
///
/// ```
/// // Workers run as `$SANDPOOL_WORKER_BIN worker` when `worker_program` is not set:
/// // SANDPOOL_WORKER_BIN=/opt/sandpool/bin/sandpool my-app
/// assert_eq!(sandpool::process::WORKER_BIN_ENV, "SANDPOOL_WORKER_BIN");
/// ```
pub const WORKER_BIN_ENV: &str = "SANDPOOL_WORKER_BIN";

/// Settings of process isolation, made by the [`PoolBuilder`](crate::PoolBuilder).
#[derive(Debug, Clone)]
pub(crate) struct ProcessOptions {
    pub program: Option<PathBuf>,
    pub max_tasks_per_worker: Option<u64>,
    pub env: Vec<(OsString, OsString)>,
    pub grace: Duration,
    pub start_timeout: Duration,
    pub max_failed_starts: u32,
    pub precompiled: bool,
    /// The capabilities the workers' tasks may call, answered in this process.
    pub capabilities: Option<Arc<crate::capability::Session>>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            program: None,
            max_tasks_per_worker: None,
            env: Vec::new(),
            grace: Duration::from_secs(5),
            start_timeout: Duration::from_secs(60),
            max_failed_starts: 5,
            precompiled: true,
            capabilities: None,
        }
    }
}

/// How one worker process started (see [`ProcessStats::last_start`]).
///
/// ```no_run
/// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
/// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Process).build()?;
/// let start = pool.process_stats().unwrap().last_start.unwrap();
/// assert!(start.precompiled, "workers load the module the pool compiled");
/// println!("ready after {:?}, {:?} of it loading", start.ready_after, start.load_time);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStart {
    /// The worker's process id.
    pub pid: u32,
    /// It loaded the precompiled module (false: it compiled the wasm).
    pub precompiled: bool,
    /// Why a precompiled module offered to it was not used.
    pub fallback: Option<String>,
    /// Time the worker spent loading the module (deserialize or compile, then checks).
    pub load_time: Duration,
    /// Time from starting the process to its being ready for tasks.
    pub ready_after: Duration,
}

/// Counters and live processes of a process-isolated pool ([`Pool::process_stats`](crate::Pool::process_stats)).
///
/// ```no_run
/// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
/// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Process).workers(2).build()?;
/// let stats = pool.process_stats().expect("a process pool");
/// assert_eq!(stats.worker_pids.len(), 2);
/// assert_eq!(stats.crashed, 0);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Process ids of the worker processes alive now.
    pub worker_pids: Vec<u32>,
    /// Workers that started and loaded the module.
    pub started: u64,
    /// Workers that died or were killed unexpectedly (crash, signal, exit, no answer).
    pub crashed: u64,
    /// Workers retired after [`max_tasks_per_worker`](crate::PoolBuilder::max_tasks_per_worker) tasks.
    pub recycled: u64,
    /// Worker start-ups that failed.
    pub failed_starts: u64,
    /// Request frames written to workers; each carries one or more tasks.
    pub requests: u64,
    /// Tasks written to workers, over all request frames (a task sent
    /// again to a replacement counts again; a task cancelled or aborted
    /// before it was sent does not count).
    pub tasks_sent: u64,
    /// Set when the pool stopped starting workers, with the reason.
    pub gave_up: Option<String>,
    /// How the most recent worker started.
    pub last_start: Option<WorkerStart>,
}

/// Entry point of the hidden `sandpool worker` subcommand: reads the
/// module to load and then tasks from stdin, answers on stdout, until
/// stdin closes. Returns the process exit code (0 when stdin closed, 2 for
/// a failed handshake, 3 for a malformed request).
///
/// It is started by a pool with [`Isolation::Process`](crate::Isolation::Process), not by hand.
///
/// ```no_run
/// // In the `sandpool` binary: `sandpool worker` runs
/// let code = sandpool::process::worker_main();
/// ```
pub fn worker_main() -> std::process::ExitCode {
    worker::main()
}
