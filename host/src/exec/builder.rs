//! [`PoolBuilder`]: every option of a wasm [`Pool`] as plain data, checked
//! together at [`build`](PoolBuilder::build) (an option that does not apply
//! to the chosen [`Isolation`] is an error, never silently ignored), and
//! the start of the chosen level's workers.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::capability::Capabilities;
use crate::capability::imports::CallBackend;
use crate::error::Error;
use crate::exec::dispatch::Dispatcher;
use crate::exec::in_process::InstanceBackend;
use crate::exec::pool::Pool;
use crate::exec::process::{ProcessBackend, ProcessOptions};
use crate::limits::Limits;
use crate::sandbox::grant::{DirAccess, GrantOptions};
use crate::task::Task;

/// Where a pool runs its wasm tasks (the isolation ladder; see `docs/choosing.md`).
///
/// ```
/// assert_eq!(sandpool::Isolation::default(), sandpool::Isolation::Instance);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A fresh wasm instance per task, inside this process (the default):
    /// own linear memory, trap containment, deadline and memory limits.
    #[default]
    Instance,
    /// Persistent `sandpool worker` subprocesses, each running tasks in fresh
    /// wasm instances: adds a separate address space, so a host-level crash,
    /// abort or OOM kill loses only the task in flight (see [`crate::exec::process`]).
    Process,
}

/// Configures and builds a [`Pool`]: one place for every option.
///
/// Options of one level only are refused by [`build`](Self::build) on the
/// other with [`Error::Config`]: the `worker_*`, `max_tasks_per_worker`,
/// `max_failed_starts` and `precompiled_module` options need
/// [`Isolation::Process`]; `grant_dir` and `max_file_writes` need
/// [`Isolation::Instance`].
///
/// ```
/// use std::time::Duration;
/// use sandpool::{Isolation, Limits, Pool};
/// # let task = sandpool::doc_tasks::echo::<u64>();
/// let pool = Pool::builder(task.clone())
///     .workers(2)
///     .limits(Limits::default().timeout(Duration::from_secs(5)).memory(32 << 20))
///     .build()?;
/// // A process-only option on an in-process pool is an error, not ignored.
/// let err = Pool::builder(task).worker_grace(Duration::from_secs(1)).build().unwrap_err();
/// assert!(err.to_string().contains("worker_grace"), "{err}");
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct PoolBuilder<In, Out> {
    task: Task<In, Out>,
    workers: usize,
    queue: Option<usize>,
    window: Option<usize>,
    limits: Limits,
    fuel_metering: bool,
    isolation: Isolation,
    // Isolation::Process only.
    worker_program: Option<PathBuf>,
    max_tasks_per_worker: Option<u64>,
    worker_env: Vec<(OsString, OsString)>,
    worker_grace: Option<Duration>,
    worker_start_timeout: Option<Duration>,
    max_failed_starts: Option<u32>,
    precompiled_module: Option<bool>,
    // Isolation::Instance only.
    grants: Vec<(PathBuf, String, DirAccess)>,
    max_file_writes: Option<u64>,
    // Both levels.
    capabilities: Capabilities,
}

impl<In, Out> PoolBuilder<In, Out> {
    pub(crate) fn new(task: Task<In, Out>) -> Self {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PoolBuilder {
            task,
            workers,
            queue: None,
            window: None,
            limits: Limits::default(),
            fuel_metering: false,
            isolation: Isolation::Instance,
            worker_program: None,
            max_tasks_per_worker: None,
            worker_env: Vec::new(),
            worker_grace: None,
            worker_start_timeout: None,
            max_failed_starts: None,
            precompiled_module: None,
            grants: Vec::new(),
            max_file_writes: None,
            capabilities: Capabilities::default(),
        }
    }

    /// Number of worker threads (default: the number of CPUs; at least 1).
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).workers(4).build()?;
    /// assert_eq!(pool.workers(), 4);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// How many submitted tasks may wait for a worker before `submit`
    /// blocks (default: 1024 per worker; at least 1). This bounds the pool's memory.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task.clone()).queue_capacity(16).build()?;
    /// assert!(sandpool::Pool::builder(task).queue_capacity(0).build().is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn queue_capacity(mut self, jobs: usize) -> Self {
        self.queue = Some(jobs);
        self
    }

    /// How many inputs `map` and `as_completed` keep in flight (at least 1).
    /// The first window is submitted by the `map` call, later inputs are
    /// pulled from the iterator lazily. Cheap tasks are handed to a worker
    /// in batches of up to half a window per worker, sized to about 1 ms
    /// of work each, so a larger window lets the hand-off cost be shared by
    /// more tasks.
    ///
    /// Unset, the window follows the workers' recent cost per task: about
    /// 4 ms of work per worker, at least 16 and at most 1,024 inputs per
    /// worker, no more than the [queue](Self::queue_capacity) holds, and
    /// (beyond 16 per worker) encoded inputs of at most 64 MiB in all; 16
    /// per worker while the cost or the inputs' size is unknown. Cheap tasks
    /// then keep the workers busy through a caller that is slow to be
    /// scheduled.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task.clone()).window(64).build()?;
    /// assert!(sandpool::Pool::builder(task).window(0).build().is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn window(mut self, inputs: usize) -> Self {
        self.window = Some(inputs);
        self
    }

    /// Default limits for every task of the pool.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).limits(sandpool::Limits::default().memory(1 << 24)).build()?;
    /// assert_eq!(pool.limits().memory, 1 << 24);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Compile with fuel metering so that fuel limits can be set per pool or
    /// per task. Implied when the pool's limits set fuel. Metering costs CPU
    /// time on every task, so it is off by default.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).fuel_metering(true).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn fuel_metering(mut self, on: bool) -> Self {
        self.fuel_metering = on;
        self
    }

    /// Where tasks run (default [`Isolation::Instance`]).
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Instance).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}

/// Options of [`Isolation::Process`]; `build` refuses them on other levels.
impl<In, Out> PoolBuilder<In, Out> {
    /// The program to run as `PROGRAM worker` (default: `$SANDPOOL_WORKER_BIN`,
    /// else this executable if it is `sandpool`, else a `sandpool` next to
    /// this executable or in its parent directory).
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .worker_program("/usr/local/bin/sandpool")
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Retire a worker process after it has run this many tasks (at least
    /// 1) and start a fresh one (Python's `max_tasks_per_child`; default: never).
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .max_tasks_per_worker(1000)
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn max_tasks_per_worker(mut self, tasks: u64) -> Self {
        self.max_tasks_per_worker = Some(tasks);
        self
    }

    /// Sets an environment variable for the worker processes (they inherit
    /// this process's environment otherwise). Guests never see it: their
    /// WASI environment stays empty.
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .worker_env("MALLOC_ARENA_MAX", "2")
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn worker_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.worker_env.push((key.into(), value.into()));
        self
    }

    /// How long past a task's deadline a worker may stay silent before it is
    /// killed and the task fails with `WorkerCrashed` (default 5 s). A task
    /// without a deadline waits as long as its worker lives.
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .worker_grace(std::time::Duration::from_secs(1))
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn worker_grace(mut self, grace: Duration) -> Self {
        self.worker_grace = Some(grace);
        self
    }

    /// How long a new worker may take to load the module (default 60 s).
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .worker_start_timeout(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn worker_start_timeout(mut self, timeout: Duration) -> Self {
        self.worker_start_timeout = Some(timeout);
        self
    }

    /// After this many worker start-ups fail in a row, the pool stops
    /// starting workers (default 5, at least 1): `build` returns
    /// [`Error::Pool`], or, later on, every task fails with `WorkerCrashed`
    /// giving the reason. Failed start-ups are retried with a backoff from
    /// 10 ms doubling up to 1 s.
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .max_failed_starts(3)
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn max_failed_starts(mut self, starts: u32) -> Self {
        self.max_failed_starts = Some(starts);
        self
    }

    /// Hand the workers the module this pool compiled (the default) or let
    /// each worker compile the wasm itself (`false`; slower start-ups, for
    /// comparison). A handed-over module that fails its checks is never
    /// loaded: the worker compiles instead.
    ///
    /// ```no_run
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .isolation(sandpool::Isolation::Process)
    ///     .precompiled_module(false)
    ///     .build()?;
    /// assert!(!pool.process_stats().unwrap().last_start.unwrap().precompiled);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn precompiled_module(mut self, on: bool) -> Self {
        self.precompiled_module = Some(on);
        self
    }
}

/// Directory grants ([`Isolation::Instance`] only; see `grant.rs`).
impl<In, Out> PoolBuilder<In, Out> {
    /// Lets every task of the pool use the host directory `host`, which the
    /// guest sees as the preopened directory `guest` (e.g. `/data`; Rust
    /// guests then use `std::fs` on `/data/...`), read-only or read-write.
    /// Nothing outside it is reachable: `..`, absolute paths and symbolic
    /// links that lead out are refused by the kernel (`openat2` with
    /// `RESOLVE_BENEATH`). One directory per pool; granting a second one
    /// makes `build` fail with [`Error::Config`], and so does a missing
    /// directory, a grant on a pool with [`Isolation::Process`] (not
    /// supported yet), or a system without `openat2` (Linux < 5.6).
    ///
    /// ```
    /// use sandpool::{DirAccess, Isolation, Pool};
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let dir = std::env::temp_dir();
    /// let pool = Pool::builder(task.clone()).grant_dir(&dir, "/data", DirAccess::ReadOnly).build()?;
    /// let err = Pool::builder(task)
    ///     .isolation(Isolation::Process)
    ///     .grant_dir(&dir, "/data", DirAccess::ReadOnly)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Config);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn grant_dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        access: DirAccess,
    ) -> Self {
        self.grants.push((host.into(), guest.into(), access));
        self
    }

    /// The most bytes one task may write to files of a read-write grant
    /// (default [`DEFAULT_MAX_FILE_WRITES`](crate::DEFAULT_MAX_FILE_WRITES),
    /// 1 GiB); past it, writes fail with `EDQUOT`. It bounds each task, not
    /// the disk: many tasks can still fill it together. Without a
    /// read-write grant it is an [`Error::Config`].
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let out = std::env::temp_dir();
    /// let pool = sandpool::Pool::builder(task.clone())
    ///     .grant_dir(&out, "/out", sandpool::DirAccess::ReadWrite)
    ///     .max_file_writes(16 << 20)
    ///     .build()?;
    /// assert!(sandpool::Pool::builder(task).max_file_writes(1).build().is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn max_file_writes(mut self, bytes: u64) -> Self {
        self.max_file_writes = Some(bytes);
        self
    }
}

/// Host capabilities (both levels; see `capability/` and `docs/abi.md`).
impl<In, Out> PoolBuilder<In, Out> {
    /// Grants the pool's tasks the capability `name`: a host function
    /// typed like a task, `Req` in, `Resp` out (bincode), that may hold an
    /// `Arc` of a session (a database connection, a loaded model). A guest
    /// calls it with `sandpool_guest::call::<Req, Resp>(name, &req)`, once
    /// its module declares the name (`sandpool_guest::capabilities!`); a
    /// module that declares a name the pool does not grant is refused by
    /// `build` with [`Error::CapabilityDenied`]. At
    /// [`Isolation::Process`] the calls of every worker are answered here,
    /// in this process, by this one handler.
    ///
    /// The handler runs on a capability thread; the task waits for it at
    /// most until the task's deadline ([`Limits::timeout`]), then fails with
    /// [`Error::Capability`] and the call is abandoned (the handler runs on
    /// until it returns; its answer is dropped). Its error, a panic, or a
    /// request that does not decode as `Req` fail that task alone with
    /// [`Error::Capability`], naming the task, input and capability. Calls
    /// per task and their bytes are capped by [`Limits::max_calls`],
    /// [`Limits::max_call_request`] and [`Limits::max_call_response`].
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// use std::sync::Arc;
    /// let prices = Arc::new(std::collections::HashMap::from([("tea".to_string(), 3u32)]));
    /// let pool = sandpool::Pool::builder(task)
    ///     .capability("price.lookup", move |item: String| {
    ///         prices.get(&item).copied().ok_or(format!("no price for {item}"))
    ///     })
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn capability<Req, Resp, E, F>(mut self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: std::fmt::Display,
        F: Fn(Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.capabilities
            .insert(name, crate::capability::Mode::Threaded, handler);
        self
    }

    /// Grants every capability of `capabilities` (added to those granted
    /// one by one; a name granted twice keeps the later handler).
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let caps = sandpool::Capabilities::new().capability("math.double", |x: u64| Ok::<_, String>(x * 2));
    /// let pool = sandpool::Pool::builder(task).capabilities(&caps).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn capabilities(mut self, capabilities: &Capabilities) -> Self {
        self.capabilities.extend(capabilities);
        self
    }

    /// [`capability`](Self::capability) for a handler that never blocks (an
    /// in-memory lookup, a small model): it runs on the task's own thread,
    /// with no hand-off (well under a microsecond per small call). Its time
    /// still counts against the task's deadline (a call that returns past
    /// it fails the task), but a handler that blocks forever would hold the
    /// task's worker thread with it: use [`capability`](Self::capability)
    /// for anything that waits on I/O or a lock.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task)
    ///     .capability_inline("math.double", |x: u64| Ok::<_, String>(x * 2))
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn capability_inline<Req, Resp, E, F>(mut self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: std::fmt::Display,
        F: Fn(Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.capabilities
            .insert(name, crate::capability::Mode::Inline, handler);
        self
    }
}

impl<In: Serialize, Out: DeserializeOwned + Send + 'static> PoolBuilder<In, Out> {
    /// Checks the options together, then starts the workers.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task.clone()).build()?;
    /// let err = sandpool::Pool::builder(task).workers(0).build().unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Config);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool<In, Out>, Error> {
        self.check()?;
        let queue = self.queue.unwrap_or(self.workers.saturating_mul(1024));
        let window = self.window;
        let fuel = self.fuel_metering || self.limits.fuel.is_some();
        let compiled = self.task.module.compiled_task(fuel)?;
        let name = &self.task.module.name;
        let session = self
            .capabilities
            .session_for(name, &self.task.module.wasm)?;
        let (dispatcher, process) = match self.isolation {
            Isolation::Instance => {
                let grant = self.grant_options().open()?;
                let backend = Arc::new(InstanceBackend {
                    module: compiled,
                    grant,
                    calls: Some(CallBackend::Local(session)),
                });
                (Dispatcher::start(backend, self.workers, queue, name)?, None)
            }
            Isolation::Process => {
                let mut options = self.process_options();
                options.capabilities = Some(session);
                let backend = ProcessBackend::start(
                    name,
                    &compiled,
                    &self.task.module.wasm,
                    &options,
                    self.workers,
                )?;
                let supervisor = backend.supervisor();
                let dispatcher = Dispatcher::start(Arc::new(backend), self.workers, queue, name)?;
                (dispatcher, Some(supervisor))
            }
        };
        Ok(crate::exec::pool::assemble(
            dispatcher,
            self.limits,
            window,
            Arc::clone(name),
            process,
        ))
    }

    /// Every check that needs no work: sizes, limits, and options that do
    /// not apply to the chosen level.
    fn check(&self) -> Result<(), Error> {
        let fail = |why: String| Err(Error::Config(why));
        if self.workers == 0 {
            return fail("a pool needs at least one worker".into());
        }
        if self.queue == Some(0) {
            return fail("queue_capacity must be at least 1 (0 would block every submit)".into());
        }
        if self.window == Some(0) {
            return fail(
                "window must be at least 1 (a map with no input in flight never ends)".into(),
            );
        }
        if self.limits.memory == 0 {
            return fail("the memory limit must be above 0".into());
        }
        if self.max_tasks_per_worker == Some(0) {
            return fail("max_tasks_per_worker must be at least 1".into());
        }
        if self.max_failed_starts == Some(0) {
            return fail("max_failed_starts must be at least 1".into());
        }
        let misplaced = match self.isolation {
            Isolation::Instance => self.process_only_set(),
            Isolation::Process => self.instance_only_set(),
        };
        if !misplaced.is_empty() {
            let other = match self.isolation {
                Isolation::Instance => "Isolation::Process",
                Isolation::Process => "Isolation::Instance",
            };
            return fail(format!(
                "{} applies to {other} only, and this pool is {:?}",
                misplaced.join(", "),
                self.isolation
            ));
        }
        if let Some(name) = self.capabilities.invalid_name() {
            return fail(format!(
                "`{name}` is not a capability name (1 to 128 ASCII letters, digits, `_`, `.`, `:` or `-`)"
            ));
        }
        if self.max_file_writes.is_some()
            && !self.grants.iter().any(|g| g.2 == DirAccess::ReadWrite)
        {
            return fail("max_file_writes needs a read-write grant_dir".into());
        }
        Ok(())
    }

    fn process_only_set(&self) -> Vec<&'static str> {
        let set = [
            ("worker_program", self.worker_program.is_some()),
            ("max_tasks_per_worker", self.max_tasks_per_worker.is_some()),
            ("worker_env", !self.worker_env.is_empty()),
            ("worker_grace", self.worker_grace.is_some()),
            ("worker_start_timeout", self.worker_start_timeout.is_some()),
            ("max_failed_starts", self.max_failed_starts.is_some()),
            ("precompiled_module", self.precompiled_module.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n)
            .collect()
    }

    fn instance_only_set(&self) -> Vec<&'static str> {
        let set = [
            ("grant_dir", !self.grants.is_empty()),
            ("max_file_writes", self.max_file_writes.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n)
            .collect()
    }

    fn process_options(&self) -> ProcessOptions {
        let d = ProcessOptions::default();
        ProcessOptions {
            program: self.worker_program.clone(),
            max_tasks_per_worker: self.max_tasks_per_worker,
            env: self.worker_env.clone(),
            grace: self.worker_grace.unwrap_or(d.grace),
            start_timeout: self.worker_start_timeout.unwrap_or(d.start_timeout),
            max_failed_starts: self.max_failed_starts.unwrap_or(d.max_failed_starts),
            precompiled: self.precompiled_module.unwrap_or(d.precompiled),
            capabilities: None,
        }
    }

    fn grant_options(&self) -> GrantOptions {
        let d = GrantOptions::default();
        GrantOptions {
            dirs: self.grants.clone(),
            max_write: self.max_file_writes.unwrap_or(d.max_write),
        }
    }
}
