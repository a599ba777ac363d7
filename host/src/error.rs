//! The one error type of sandpool: a variant per cause, each naming the task
//! and input it belongs to, so a failure in a batch of 10,000 can be traced.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl Serialize for TaskRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&*self.task, self.index).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TaskRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (task, index) = <(String, u64)>::deserialize(deserializer)?;
        Ok(TaskRef::new(task, index))
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
///
/// Both isolation levels report the same values: an error crosses from a
/// worker process in this same form (`serde`), and [`ErrorKind`] is derived
/// from the variants, so a new cause is one new variant here.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(Hash, Serialize, strum::IntoStaticStr),
    serde(rename_all = "snake_case"),
    strum(serialize_all = "snake_case"),
    non_exhaustive,
    doc = "The cause of an [`Error`] without its details, for matching and reports.",
    doc = "",
    doc = "```",
    doc = "let e = sandpool::Error::Config(\"workers must be at least 1\".into());",
    doc = "assert_eq!(e.kind(), sandpool::ErrorKind::Config);",
    doc = "assert_eq!(sandpool::ErrorKind::MemoryLimit.as_str(), \"memory_limit\");",
    doc = "```"
)]
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
        /// What failed to decode (`output`, `output as JSON`, `frame`).
        #[serde(with = "decode_what")]
        what: StaticStr,
        /// The decoder's message.
        reason: String,
    },
    /// The guest could not decode the input it was given (result tag 2):
    /// the host and the module disagree on the input type. Distinct from
    /// [`Error::Decode`], the host failing to decode what the guest returned.
    #[error("{task}: the guest could not decode its input: {reason}")]
    InputRejected {
        /// The failed task.
        task: TaskRef,
        /// The guest's reason.
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
    /// A module declares a capability the pool does not grant (deny by
    /// default: see [`PoolBuilder::capability`](crate::PoolBuilder::capability)).
    #[error(
        "module `{module}` needs the capability `{capability}`, which this pool does not grant"
    )]
    CapabilityDenied {
        /// The module's name.
        module: String,
        /// The capability it declares and the pool does not grant.
        capability: String,
    },
    /// A capability call failed the task: the handler returned an error,
    /// panicked or ran past the task's deadline, the request could not be
    /// decoded, the name was not granted, or a per-task call cap was reached.
    #[error("{task}: capability `{capability}` failed: {reason}")]
    Capability {
        /// The failed task.
        task: TaskRef,
        /// The capability's name.
        capability: String,
        /// What went wrong.
        reason: String,
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

impl ErrorKind {
    /// The snake_case name used in JSON reports (`.error.json` files).
    ///
    /// ```
    /// assert_eq!(sandpool::ErrorKind::Trap.as_str(), "trap");
    /// assert_eq!(sandpool::ErrorKind::WorkerCrashed.as_str(), "worker_crashed");
    /// ```
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The `task` field of a task error, for [`Error::task`] and [`Error::task_mut`]:
/// the one list of variants that carry a [`TaskRef`].
macro_rules! task_of {
    ($error:expr) => {
        match $error {
            Error::Trap { task, .. }
            | Error::Panic { task, .. }
            | Error::Guest { task, .. }
            | Error::Timeout { task, .. }
            | Error::FuelExhausted { task, .. }
            | Error::MemoryLimit { task, .. }
            | Error::OutputTooLarge { task, .. }
            | Error::Encode { task, .. }
            | Error::Decode { task, .. }
            | Error::InputRejected { task, .. }
            | Error::WorkerCrashed { task, .. }
            | Error::Cancelled { task }
            | Error::ShutDown { task }
            | Error::Aborted { task }
            | Error::Capability { task, .. }
            | Error::DeadlineExceeded { task, .. } => Some(task),
            _ => None,
        }
    };
}

impl Error {
    /// The cause, without details.
    ///
    /// ```
    /// let e = sandpool::Error::Config("workers must be at least 1".into());
    /// assert_eq!(e.kind(), sandpool::ErrorKind::Config);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from(self)
    }

    /// The task and input this error belongs to, if it is a task error.
    ///
    /// ```
    /// let e = sandpool::Error::Cancelled { task: sandpool::TaskRef::new("t", 9) };
    /// assert_eq!(e.task().unwrap().index, 9);
    /// assert!(sandpool::Error::Pool("no threads".into()).task().is_none());
    /// ```
    pub fn task(&self) -> Option<&TaskRef> {
        task_of!(self)
    }

    /// The task this error names, to correct (e.g. an error from a worker
    /// process is given the supervisor's own [`TaskRef`]).
    pub(crate) fn task_mut(&mut self) -> Option<&mut TaskRef> {
        task_of!(self)
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

/// `&'static str`, spelled so that serde does not try to borrow it from the
/// input (it would then demand `'de: 'static`); `decode_what` maps it instead.
type StaticStr = &'static str;

/// `Error::Decode::what` across a process boundary: one of the names the
/// crate uses (it is a `&'static str`); any other name is refused, so an
/// error never changes its meaning on the way.
mod decode_what {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Every `what` of an `Error::Decode` in this crate.
    pub(super) const KNOWN: &[&str] = &[
        "output",
        "input",
        "input in the guest",
        "frame",
        "output as JSON",
    ];

    pub(super) fn serialize<S: Serializer>(what: &&'static str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(what)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let what = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KNOWN
            .iter()
            .find(|known| **known == what)
            .copied()
            .ok_or_else(|| D::Error::custom(format!("unknown decode target `{what}`")))
    }
}
