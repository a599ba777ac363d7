//! The one error type of sandpool: a variant per cause, each naming the task
//! and input it belongs to, so a failure in a batch of 10,000 can be traced.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which task and which input an error belongs to.
///
/// ```
/// let id = sandpool::TaskRef::new("doc_stats", 12);
/// assert_eq!(id.to_string(), "task `doc_stats` input #12");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// The task's name (the module's file stem, or the name given at load).
    pub task: Arc<str>,
    /// The input's position in submission order (its index in a `map`).
    pub index: u64,
}

impl TaskRef {
    /// A reference to input `index` of task `task`.
    ///
    /// ```
    /// assert_eq!(sandpool::TaskRef::new("t", 3).index, 3);
    /// ```
    pub fn new(task: impl Into<Arc<str>>, index: u64) -> Self {
        TaskRef {
            task: task.into(),
            index,
        }
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` input #{}", self.task, self.index)
    }
}

/// Everything that can go wrong in sandpool.
///
/// Load-time variants ([`Error::InvalidModule`], [`Error::AbiMismatch`])
/// name the module; run-time variants carry a [`TaskRef`] naming the task
/// and input. A run-time error fails only its own task.
///
/// ```
/// use sandpool::{Error, ErrorKind, TaskRef};
/// let e = Error::Timeout { task: TaskRef::new("spin", 4), limit: std::time::Duration::from_secs(1) };
/// assert_eq!(e.kind(), ErrorKind::Timeout);
/// assert_eq!(e.task().map(|t| t.index), Some(4));
/// assert!(e.to_string().contains("input #4"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module could not be read, parsed, compiled or instantiated.
    #[error("invalid module `{module}`: {reason}")]
    InvalidModule {
        /// The module's name or path.
        module: String,
        /// What was wrong.
        reason: String,
    },
    /// The module is valid wasm but does not implement sandpool guest ABI v1.
    #[error("module `{module}` does not implement sandpool guest ABI v{expected}: {reason}")]
    AbiMismatch {
        /// The module's name or path.
        module: String,
        /// The ABI version this host implements.
        expected: u32,
        /// What was missing or different.
        reason: String,
    },
    /// The pool or a limit was configured in a way that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The guest trapped (e.g. `unreachable`, out-of-bounds access, stack overflow).
    #[error("{task} trapped: {message}")]
    Trap {
        /// The failed task.
        task: TaskRef,
        /// The trap and, when known, the wasm backtrace.
        message: String,
    },
    /// The guest panicked; its panic message was reported before it aborted.
    #[error("{task} panicked: {message}")]
    Panic {
        /// The failed task.
        task: TaskRef,
        /// The panic message, e.g. `panicked at src/lib.rs:3:5: boom`.
        message: String,
    },
    /// The task function returned an error (a guest's `Err`, or an I/O
    /// task's `Err` from [`IoPool::submit_fallible`](crate::IoPool::submit_fallible)).
    #[error("{task} failed: {message}")]
    Guest {
        /// The failed task.
        task: TaskRef,
        /// The error the task returned, formatted with `Display`.
        message: String,
    },
    /// The task ran past its wall-clock deadline and was interrupted.
    #[error("{task} timed out after {limit:?}")]
    Timeout {
        /// The failed task.
        task: TaskRef,
        /// The deadline it exceeded.
        limit: Duration,
    },
    /// The task used up its fuel (instruction budget).
    #[error("{task} ran out of fuel (limit {limit})")]
    FuelExhausted {
        /// The failed task.
        task: TaskRef,
        /// The fuel it was given.
        limit: u64,
    },
    /// The task tried to grow its linear memory past the limit.
    #[error("{task} exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The failed task.
        task: TaskRef,
        /// The limit in bytes.
        limit: u64,
    },
    /// The task's output was larger than the output-size cap.
    #[error("{task} produced {size} bytes of output, over the limit of {limit}")]
    OutputTooLarge {
        /// The failed task.
        task: TaskRef,
        /// The output's size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The input could not be encoded for the boundary.
    #[error("{task}: cannot encode input: {reason}")]
    Encode {
        /// The failed task.
        task: TaskRef,
        /// The serializer's message.
        reason: String,
    },
    /// The output (or the guest's view of the input) could not be decoded.
    #[error("{task}: cannot decode {what}: {reason}")]
    Decode {
        /// The failed task.
        task: TaskRef,
        /// What failed to decode (`output`, `input in the guest`, `frame`).
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The worker running the task died (process isolation) or was lost.
    #[error("{task}: worker crashed: {reason}")]
    WorkerCrashed {
        /// The failed task.
        task: TaskRef,
        /// The signal or exit status, or what else happened to the worker.
        reason: String,
    },
    /// The task was cancelled before it started.
    #[error("{task} was cancelled")]
    Cancelled {
        /// The cancelled task.
        task: TaskRef,
    },
    /// The pool was shut down before the task could be submitted or run.
    #[error("{task}: the pool is shut down")]
    ShutDown {
        /// The task that could not run.
        task: TaskRef,
    },
    /// The pool itself failed (e.g. its workers could not be started).
    #[error("pool failure: {0}")]
    Pool(String),
    /// An I/O error outside any task (reading a module, a cache file).
    #[error("{context}: {message}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        message: String,
    },
    /// The task was stopped while running by [`TaskHandle::abort`](crate::TaskHandle::abort)
    /// (in process: at its next epoch check; process isolation: its worker was killed).
    #[error("{task} was aborted while running")]
    Aborted {
        /// The aborted task.
        task: TaskRef,
    },
    /// A deadline given to `map`, `as_completed` or `wait_timeout` passed
    /// before every task had finished. `task` is the first unfinished one;
    /// `total` counts the inputs taken so far.
    #[error("{task}: deadline of {limit:?} passed with {unfinished} of {total} unfinished")]
    DeadlineExceeded {
        /// The first task that had not finished.
        task: TaskRef,
        /// The deadline, counted from the call that was given it.
        limit: Duration,
        /// Tasks not finished at the deadline.
        unfinished: u64,
        /// Tasks submitted by that call up to the deadline.
        total: u64,
    },
}

/// The cause of an [`Error`] without its details, for matching and reports.
///
/// ```
/// assert_eq!(sandpool::ErrorKind::MemoryLimit.as_str(), "memory_limit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum ErrorKind {
    InvalidModule,
    AbiMismatch,
    Config,
    Trap,
    Panic,
    Guest,
    Timeout,
    FuelExhausted,
    MemoryLimit,
    OutputTooLarge,
    Encode,
    Decode,
    WorkerCrashed,
    Cancelled,
    ShutDown,
    Pool,
    Io,
    Aborted,
    DeadlineExceeded,
}

impl ErrorKind {
    /// The snake_case name used in JSON reports (`.error.json` files).
    ///
    /// ```
    /// assert_eq!(sandpool::ErrorKind::Trap.as_str(), "trap");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidModule => "invalid_module",
            ErrorKind::AbiMismatch => "abi_mismatch",
            ErrorKind::Config => "config",
            ErrorKind::Trap => "trap",
            ErrorKind::Panic => "panic",
            ErrorKind::Guest => "guest",
            ErrorKind::Timeout => "timeout",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::Encode => "encode",
            ErrorKind::Decode => "decode",
            ErrorKind::WorkerCrashed => "worker_crashed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ShutDown => "shut_down",
            ErrorKind::Pool => "pool",
            ErrorKind::Io => "io",
            ErrorKind::Aborted => "aborted",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

impl Error {
    /// The cause, without details.
    ///
    /// ```
    /// let e = sandpool::Error::Config("workers must be at least 1".into());
    /// assert_eq!(e.kind(), sandpool::ErrorKind::Config);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidModule { .. } => ErrorKind::InvalidModule,
            Error::AbiMismatch { .. } => ErrorKind::AbiMismatch,
            Error::Config(_) => ErrorKind::Config,
            Error::Trap { .. } => ErrorKind::Trap,
            Error::Panic { .. } => ErrorKind::Panic,
            Error::Guest { .. } => ErrorKind::Guest,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::FuelExhausted { .. } => ErrorKind::FuelExhausted,
            Error::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Error::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            Error::Encode { .. } => ErrorKind::Encode,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::WorkerCrashed { .. } => ErrorKind::WorkerCrashed,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::ShutDown { .. } => ErrorKind::ShutDown,
            Error::Pool(_) => ErrorKind::Pool,
            Error::Io { .. } => ErrorKind::Io,
            Error::Aborted { .. } => ErrorKind::Aborted,
            Error::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
        }
    }

    /// The task and input this error belongs to, if it is a task error.
    ///
    /// ```
    /// let e = sandpool::Error::Cancelled { task: sandpool::TaskRef::new("t", 9) };
    /// assert_eq!(e.task().unwrap().index, 9);
    /// ```
    pub fn task(&self) -> Option<&TaskRef> {
        match self {
            Error::Trap { task, .. }
            | Error::Panic { task, .. }
            | Error::Guest { task, .. }
            | Error::Timeout { task, .. }
            | Error::FuelExhausted { task, .. }
            | Error::MemoryLimit { task, .. }
            | Error::OutputTooLarge { task, .. }
            | Error::Encode { task, .. }
            | Error::Decode { task, .. }
            | Error::WorkerCrashed { task, .. }
            | Error::Cancelled { task }
            | Error::ShutDown { task }
            | Error::Aborted { task }
            | Error::DeadlineExceeded { task, .. } => Some(task),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, err: &std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// A task's result: its output value or the [`Error`] that ended it.
///
/// ```
/// fn words(pool: &sandpool::Pool<String, u64>) -> sandpool::Result<u64> {
///     pool.submit(&"a b c".to_string())?.wait()
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
