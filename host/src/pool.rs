//! `Pool<In, Out>`: the executor API for wasm tasks (submit, map,
//! as_completed, cancel, shutdown), the same whichever isolation level runs
//! the tasks underneath.

use std::sync::Arc;

use futures::channel::oneshot;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::dispatch::{Backend, Dispatcher, JobState, PendingJob, Reply};
use crate::error::{Error, TaskRef};
use crate::handles::{TaskHandle, TaskOutput};
use crate::instance::RawOutcome;
use crate::limits::Limits;
use crate::map::{AsCompleted, MapIter};
use crate::module::CompiledModule;
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
    /// abort or OOM kill loses only the task in flight (see [`crate::process`]).
    Process,
}

/// Configures and builds a [`Pool`].
///
/// ```
/// use std::time::Duration;
/// use sandpool::{Limits, Pool};
/// # let task = sandpool::doc_tasks::echo::<u64>();
/// let pool = Pool::builder(task)
///     .workers(2)
///     .limits(Limits::default().timeout(Duration::from_secs(5)).memory(32 << 20))
///     .build()?;
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct PoolBuilder<In, Out> {
    task: Task<In, Out>,
    workers: usize,
    queue: usize,
    window: Option<usize>,
    limits: Limits,
    fuel_metering: bool,
    isolation: Isolation,
    pub(crate) process: crate::process::ProcessOptions,
    pub(crate) grant: crate::grant::GrantOptions,
}

impl<In: Serialize, Out: DeserializeOwned + Send + 'static> PoolBuilder<In, Out> {
    /// Number of worker threads (default: the number of CPUs).
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
    /// blocks (default: 1024 per worker). This bounds the pool's memory.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).queue_capacity(16).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn queue_capacity(mut self, jobs: usize) -> Self {
        self.queue = jobs;
        self
    }

    /// How many inputs `map` and `as_completed` keep in flight (default:
    /// four per worker). Inputs are pulled from the iterator lazily.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).window(64).build()?;
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

    /// Starts the workers.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool<In, Out>, Error> {
        if self.queue == 0 {
            return Err(Error::Config(
                "queue_capacity must be at least 1 (0 would block every submit)".into(),
            ));
        }
        if self.window == Some(0) {
            return Err(Error::Config(
                "window must be at least 1 (a map with no input in flight never ends)".into(),
            ));
        }
        if self.limits.memory == 0 {
            return Err(Error::Config("the memory limit must be above 0".into()));
        }
        let fuel = self.fuel_metering || self.limits.fuel.is_some();
        let compiled = self.task.module.compiled(fuel)?;
        let grant = self.grant.open()?;
        if grant.is_some() && self.isolation != Isolation::Instance {
            return Err(Error::Config(
                "directory grants work with Isolation::Instance only".into(),
            ));
        }
        let mut process = None;
        let dispatcher = match self.isolation {
            Isolation::Instance => {
                let backend = Arc::new(InstanceBackend {
                    module: compiled,
                    grant,
                });
                Dispatcher::start(backend, self.workers, self.queue, &self.task.module.name)?
            }
            Isolation::Process => {
                let name = &self.task.module.name;
                let backend = crate::process::ProcessBackend::start(
                    name,
                    &compiled,
                    &self.task.module.wasm,
                    &self.process,
                    self.workers,
                )?;
                process = Some(backend.supervisor());
                Dispatcher::start(Arc::new(backend), self.workers, self.queue, name)?
            }
        };
        let window = self.window.unwrap_or(self.workers.saturating_mul(4)).max(1);
        Ok(Pool {
            inner: Arc::new(PoolInner {
                dispatcher,
                limits: self.limits,
                window,
                name: self.task.module.name.clone(),
                process,
            }),
            _types: std::marker::PhantomData,
        })
    }
}

/// Runs tasks in fresh instances of a compiled module, in this process.
struct InstanceBackend {
    module: Arc<CompiledModule>,
    grant: Option<Arc<crate::grant::GrantRoot>>,
}

impl Backend for InstanceBackend {
    type Worker = ();
    fn start_worker(&self, _id: usize) -> Result<(), Error> {
        Ok(())
    }
    fn run(&self, _worker: &mut (), job: &crate::dispatch::Job) -> RawOutcome {
        crate::abort::with_job(&job.state, || {
            self.module
                .run_task_granted(&job.limits, &job.task, &job.input, self.grant.as_ref())
        })
    }
}

struct PoolInner {
    dispatcher: Dispatcher,
    limits: Limits,
    window: usize,
    name: Arc<str>,
    process: Option<Arc<crate::process::Supervisor>>,
}

/// A pool of workers running one task module: `submit`, `map`,
/// `as_completed`, `shutdown`.
///
/// Every submitted input ends in exactly one result: the task's output or
/// an [`Error`] naming the task and input. One failing task never stops
/// the others. Cheap to clone (clones share the workers).
///
/// ```
/// use sandpool::Pool;
/// let pool = Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// // Results come back in input order, one per input.
/// let counts: Vec<u64> = pool.map([4, 25, 168]).collect::<Result<_, _>>()?;
/// assert_eq!(counts, vec![4, 25, 168]);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct Pool<In, Out> {
    inner: Arc<PoolInner>,
    _types: std::marker::PhantomData<fn(In) -> Out>,
}

impl<In, Out> Clone for Pool<In, Out> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
            _types: std::marker::PhantomData,
        }
    }
}

impl<In, Out> std::fmt::Debug for Pool<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("task", &self.inner.name)
            .field("workers", &self.inner.dispatcher.workers())
            .finish()
    }
}

impl Pool<(), ()> {
    /// Starts configuring a pool for `task`.
    ///
    /// ```
    /// let task = sandpool::doc_tasks::echo::<u64>();
    /// let pool = sandpool::Pool::builder(task).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn builder<In, Out>(task: Task<In, Out>) -> PoolBuilder<In, Out> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PoolBuilder {
            task,
            workers,
            queue: workers * 1024,
            window: None,
            limits: Limits::default(),
            fuel_metering: false,
            isolation: Isolation::Instance,
            process: Default::default(),
            grant: Default::default(),
        }
    }
}

impl<In: Serialize, Out: DeserializeOwned + Send + 'static> Pool<In, Out> {
    /// Number of worker threads.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).workers(3).build()?;
    /// assert_eq!(pool.workers(), 3);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.dispatcher.workers()
    }

    /// The name of the pool's task (used in its errors).
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// assert_eq!(pool.task_name(), "echo");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn task_name(&self) -> &str {
        &self.inner.name
    }

    /// The pool's default limits.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// assert_eq!(pool.limits(), &sandpool::Limits::default());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Worker-process statistics ([`Isolation::Process`] only; `None` otherwise).
    ///
    /// ```no_run
    /// # let task = sandpool::Task::<u64, u64>::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Process).workers(2).build()?;
    /// assert_eq!(pool.process_stats().unwrap().worker_pids.len(), 2);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn process_stats(&self) -> Option<crate::process::ProcessStats> {
        self.inner.process.as_ref().map(|p| p.stats())
    }

    /// The map window.
    pub(crate) fn window(&self) -> usize {
        self.inner.window
    }

    pub(crate) fn task_ref(&self, index: u64) -> TaskRef {
        TaskRef {
            task: Arc::clone(&self.inner.name),
            index,
        }
    }

    /// Encodes `input` into a job of index `index` with the pool's limits.
    pub(crate) fn prepare(
        &self,
        index: u64,
        input: &In,
        state: Arc<JobState>,
        reply: Reply,
    ) -> Result<PendingJob, Error> {
        self.prepare_with(index, input, self.inner.limits, state, reply)
    }

    fn prepare_with(
        &self,
        index: u64,
        input: &In,
        limits: Limits,
        state: Arc<JobState>,
        reply: Reply,
    ) -> Result<PendingJob, Error> {
        let task = self.task_ref(index);
        if self.inner.dispatcher.is_closed() {
            return Err(Error::ShutDown { task });
        }
        let bytes = codec::encode(input, &task)?;
        Ok(PendingJob {
            task,
            input: bytes,
            limits,
            state,
            reply,
        })
    }

    /// Queues a prepared job, blocking while the queue is full.
    pub(crate) fn enqueue(&self, job: PendingJob) -> Result<(), Error> {
        self.inner.dispatcher.enqueue_blocking(job)
    }

    fn handle_for(
        &self,
        index: u64,
        input: &In,
        limits: Limits,
    ) -> Result<(PendingJob, TaskHandle<Out>), Error> {
        let (tx, rx) = oneshot::channel();
        let task = self.task_ref(index);
        let decode_task = task.clone();
        let reply: Reply = Box::new(move |raw: RawOutcome| {
            let result = raw
                .result
                .and_then(|bytes| codec::decode::<Out>(&bytes, &decode_task));
            let _ = tx.send(TaskOutput {
                task: decode_task,
                result,
                logs: raw.logs,
            });
        });
        let state = Arc::new(JobState::default());
        let job = self.prepare_with(index, input, limits, state, reply)?;
        let handle = TaskHandle {
            task,
            state: Arc::clone(&job.state),
            rx,
        };
        Ok((job, handle))
    }

    /// Submits `input` as the task of index `index` (a map's position).
    pub(crate) fn submit_at(&self, index: u64, input: &In) -> Result<TaskHandle<Out>, Error> {
        let (job, handle) = self.handle_for(index, input, self.inner.limits)?;
        self.enqueue(job)?;
        Ok(handle)
    }

    /// Encodes `input` and queues it; blocks while the queue is full.
    /// An input that cannot be encoded is an error here, at once.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let handle = pool.submit(&168)?;
    /// assert_eq!(handle.wait()?, 168);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit(&self, input: &In) -> Result<TaskHandle<Out>, Error> {
        self.submit_with(input, self.inner.limits)
    }

    /// Like [`submit`](Self::submit), with limits for this task only.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).build()?;
    /// let strict = pool.limits().timeout(std::time::Duration::from_millis(10));
    /// let handle = pool.submit_with(&255, strict)?;
    /// assert_eq!(handle.wait().unwrap_err().kind(), sandpool::ErrorKind::Timeout);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit_with(&self, input: &In, limits: Limits) -> Result<TaskHandle<Out>, Error> {
        let index = self.inner.dispatcher.next_index();
        let (job, handle) = self.handle_for(index, input, limits)?;
        self.enqueue(job)?;
        Ok(handle)
    }

    /// The async form of [`submit`](Self::submit): waits for queue room without blocking a thread.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let count = futures::executor::block_on(async { pool.submit_async(&168).await?.await })?;
    /// assert_eq!(count, 168);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub async fn submit_async(&self, input: &In) -> Result<TaskHandle<Out>, Error> {
        let index = self.inner.dispatcher.next_index();
        let (job, handle) = self.handle_for(index, input, self.inner.limits)?;
        self.inner.dispatcher.enqueue(job).await?;
        Ok(handle)
    }

    /// Runs every input and yields one result per input, in input order.
    /// A failed input yields its error and iteration goes on. At most
    /// [`window`](PoolBuilder::window) inputs are in flight: the first
    /// window is submitted by this call, the rest pulled lazily, so an
    /// endless iterator works. After the pool refuses a submission (shut
    /// down), that input's [`Error::ShutDown`] is the last item. Dropping
    /// the iterator cancels the tasks that have not started; a total
    /// deadline is [`MapIter::timeout`]. Indices in errors are positions in `inputs`.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let results: Vec<Result<u64, sandpool::Error>> = pool.map(vec![10, 20]).collect();
    /// assert_eq!(results[1].as_ref().ok(), Some(&20));
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn map<I>(&self, inputs: I) -> MapIter<In, Out, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<In>,
    {
        MapIter::new(self.clone(), inputs.into_iter())
    }

    /// Runs every input and yields `(index, result)` as tasks finish, in
    /// completion order. Same window, cancel-on-drop and deadline as [`map`](Self::map).
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let mut got: Vec<(usize, u64)> = pool.as_completed(vec![4, 25])
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got, vec![(0, 4), (1, 25)]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn as_completed<I>(&self, inputs: I) -> AsCompleted<In, Out, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<In>,
    {
        AsCompleted::new(self.clone(), inputs.into_iter())
    }

    /// Stops the pool. `wait`: block until queued and running tasks are done
    /// and the workers have exited. `cancel_queued`: cancel tasks that have
    /// not started (their handles report [`Error::Cancelled`]). After this,
    /// `submit` fails with [`Error::ShutDown`]. Calling it twice is harmless;
    /// dropping the last clone of a pool is `shutdown(false, false)`: queued
    /// work still runs and every handle gets its result. See `docs/semantics.md`.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let queued = pool.submit(&7)?;
    /// pool.shutdown(true, false);
    /// assert_eq!(queued.wait()?, 7, "queued work finished");
    /// assert_eq!(pool.submit(&1).unwrap_err().kind(), sandpool::ErrorKind::ShutDown);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_queued: bool) {
        self.inner.dispatcher.shutdown(wait, cancel_queued);
    }
}
