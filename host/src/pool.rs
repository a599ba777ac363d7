//! `Pool<In, Out>`: the executor API for wasm tasks (submit, map,
//! as_completed, cancel, shutdown), the same whichever isolation level runs
//! the tasks underneath.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::dispatch::{Backend, Dispatcher, JobState, PendingJob, Reply};
use crate::error::{Error, TaskRef};
use crate::instance::{RawOutcome, TaskLogs};
use crate::limits::Limits;
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
/// ```no_run
/// use std::time::Duration;
/// use sandpool::{Limits, Pool, Task};
/// let task: Task<u64, u64> = Task::from_file("primes.wasm")?;
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
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
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
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
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
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).window(64).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn window(mut self, inputs: usize) -> Self {
        self.window = Some(inputs.max(1));
        self
    }

    /// Default limits for every task of the pool.
    ///
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
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
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).fuel_metering(true).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn fuel_metering(mut self, on: bool) -> Self {
        self.fuel_metering = on;
        self
    }

    /// Where tasks run (default [`Isolation::Instance`]).
    ///
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Instance).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Starts the workers.
    ///
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool<In, Out>, Error> {
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
        self.module
            .run_task_granted(&job.limits, &job.task, &job.input, self.grant.as_ref())
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
/// ```no_run
/// use sandpool::{Pool, Task};
/// let pool = Pool::builder(Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// // Results come back in input order, one per input.
/// let counts: Vec<u64> = pool.map([10, 100, 1000]).collect::<Result<_, _>>()?;
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
    /// ```no_run
    /// let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
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

/// One finished task in full: which input, its result and its captured output.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// let out = pool.submit(&100)?.wait_output();
/// println!("{}: {:?}, {:?}", out.task, out.result, out.logs.elapsed);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct TaskOutput<Out> {
    /// The task and input this is the result of.
    pub task: TaskRef,
    /// The output value, or why there is none.
    pub result: Result<Out, Error>,
    /// Captured stdout/stderr and run time.
    pub logs: TaskLogs,
}

impl<In: Serialize, Out: DeserializeOwned + Send + 'static> Pool<In, Out> {
    /// Number of worker threads.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).workers(3).build()?;
    /// assert_eq!(pool.workers(), 3);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.dispatcher.workers()
    }

    /// The name of the pool's task (used in its errors).
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// assert_eq!(pool.task_name(), "primes");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn task_name(&self) -> &str {
        &self.inner.name
    }

    /// The pool's default limits.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
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

    fn prepare(
        &self,
        index: u64,
        input: &In,
        limits: Limits,
        state: Arc<JobState>,
        reply: Reply,
    ) -> Result<PendingJob, Error> {
        let task = TaskRef {
            task: Arc::clone(&self.inner.name),
            index,
        };
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

    fn handle_for(
        &self,
        index: u64,
        input: &In,
        limits: Limits,
    ) -> Result<(PendingJob, TaskHandle<Out>), Error> {
        let (tx, rx) = oneshot::channel();
        let task = TaskRef {
            task: Arc::clone(&self.inner.name),
            index,
        };
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
        let job = self.prepare(index, input, limits, Arc::new(JobState::default()), reply)?;
        let handle = TaskHandle {
            task,
            state: Arc::clone(&job.state),
            rx,
        };
        Ok((job, handle))
    }

    /// Encodes `input` and queues it; blocks while the queue is full.
    /// An input that cannot be encoded is an error here, at once.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let handle = pool.submit(&1000)?;
    /// assert_eq!(handle.wait()?, 168);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit(&self, input: &In) -> Result<TaskHandle<Out>, Error> {
        self.submit_with(input, self.inner.limits)
    }

    /// Like [`submit`](Self::submit), with limits for this task only.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let strict = pool.limits().timeout(std::time::Duration::from_millis(10));
    /// let handle = pool.submit_with(&1_000_000_000, strict)?;
    /// assert_eq!(handle.wait().unwrap_err().kind(), sandpool::ErrorKind::Timeout);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit_with(&self, input: &In, limits: Limits) -> Result<TaskHandle<Out>, Error> {
        let index = self.inner.dispatcher.next_index();
        let (job, handle) = self.handle_for(index, input, limits)?;
        self.inner.dispatcher.enqueue_blocking(job)?;
        Ok(handle)
    }

    /// The async form of [`submit`](Self::submit): waits for queue room without blocking a thread.
    ///
    /// ```no_run
    /// # async fn demo(pool: sandpool::Pool<u64, u64>) -> Result<(), sandpool::Error> {
    /// let count = pool.submit_async(&1000).await?.await?;
    /// assert_eq!(count, 168);
    /// # Ok(()) }
    /// ```
    pub async fn submit_async(&self, input: &In) -> Result<TaskHandle<Out>, Error> {
        let index = self.inner.dispatcher.next_index();
        let (job, handle) = self.handle_for(index, input, self.inner.limits)?;
        self.inner.dispatcher.enqueue(job).await?;
        Ok(handle)
    }

    /// Runs every input and yields one result per input, in input order.
    /// A failed input yields its error and iteration goes on. Inputs are
    /// pulled lazily, at most [`window`](PoolBuilder::window) in flight, so
    /// an endless iterator works. Dropping the iterator cancels the tasks
    /// that have not started. Indices in errors are positions in `inputs`.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let results: Vec<Result<u64, sandpool::Error>> = pool.map(vec![10, 20]).collect();
    /// assert_eq!(results[1].as_ref().ok(), Some(&8));
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn map<I>(&self, inputs: I) -> MapIter<In, Out, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<In>,
    {
        MapIter {
            pool: self.clone(),
            inputs: inputs.into_iter(),
            next: 0,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// Runs every input and yields `(index, result)` as tasks finish, in
    /// completion order. Same laziness, window and cancel-on-drop as [`map`](Self::map).
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let mut got: Vec<(usize, u64)> = pool.as_completed(vec![10, 100])
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
        let (tx, rx) = crossbeam_channel::unbounded();
        AsCompleted {
            pool: self.clone(),
            inputs: inputs.into_iter(),
            next: 0,
            running: HashMap::new(),
            tx,
            rx,
            ready: VecDeque::new(),
            exhausted: false,
        }
    }

    /// Stops the pool. `wait`: block until queued and running tasks are done
    /// and the workers have exited. `cancel_queued`: cancel tasks that have
    /// not started (their handles report [`Error::Cancelled`]). After this,
    /// `submit` fails with [`Error::ShutDown`]. Calling it twice is harmless;
    /// dropping the last clone of a pool is `shutdown(false, false)`.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// pool.shutdown(true, false);
    /// assert_eq!(pool.submit(&1).unwrap_err().kind(), sandpool::ErrorKind::ShutDown);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_queued: bool) {
        self.inner.dispatcher.shutdown(wait, cancel_queued);
    }
}

/// The pending result of one submitted task.
///
/// Wait for it with [`wait`](Self::wait) (blocking) or `.await` it.
/// [`cancel`](Self::cancel) succeeds only before the task has started.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// let handle = pool.submit(&100)?;
/// // Blocking code calls `wait`; async code awaits the handle itself.
/// assert_eq!(handle.wait()?, 25);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct TaskHandle<Out> {
    task: TaskRef,
    state: Arc<JobState>,
    rx: oneshot::Receiver<TaskOutput<Out>>,
}

impl<Out> TaskHandle<Out> {
    /// Which task and input this handle is for.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let h = pool.submit(&5)?;
    /// assert_eq!(h.task().task.as_ref(), "primes");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// Cancels the task if it has not started; returns whether it did.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).workers(1).build()?;
    /// let busy = pool.submit(&50_000_000)?;
    /// let queued = pool.submit(&10)?;
    /// assert!(queued.cancel());
    /// assert_eq!(queued.wait().unwrap_err().kind(), sandpool::ErrorKind::Cancelled);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.state.cancel()
    }

    /// Blocks until the task ends; returns its output or error.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// assert_eq!(pool.submit(&10)?.wait()?, 4);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait(self) -> Result<Out, Error> {
        self.wait_output().result
    }

    /// Blocks until the task ends; returns its result with its captured output.
    ///
    /// ```no_run
    /// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
    /// let out = pool.submit(&10)?.wait_output();
    /// assert!(out.logs.stdout.bytes.is_empty());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait_output(self) -> TaskOutput<Out> {
        futures::executor::block_on(OutputFuture(self))
    }

    fn resolve(
        task: &TaskRef,
        state: &JobState,
        got: Result<TaskOutput<Out>, oneshot::Canceled>,
    ) -> TaskOutput<Out> {
        match got {
            Ok(output) => output,
            Err(_) => {
                let result = if state.is_cancelled() {
                    Err(Error::Cancelled { task: task.clone() })
                } else {
                    Err(Error::ShutDown { task: task.clone() })
                };
                TaskOutput {
                    task: task.clone(),
                    result,
                    logs: TaskLogs::default(),
                }
            }
        }
    }
}

struct OutputFuture<Out>(TaskHandle<Out>);

impl<Out> Future for OutputFuture<Out> {
    type Output = TaskOutput<Out>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskOutput<Out>> {
        let handle = &mut self.0;
        if handle.state.is_cancelled() {
            return Poll::Ready(TaskHandle::resolve(
                &handle.task,
                &handle.state,
                Err(oneshot::Canceled),
            ));
        }
        match Pin::new(&mut handle.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => Poll::Ready(TaskHandle::resolve(&handle.task, &handle.state, got)),
        }
    }
}

impl<Out> Future for TaskHandle<Out> {
    type Output = Result<Out, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Out, Error>> {
        if self.state.is_cancelled() {
            return Poll::Ready(Err(Error::Cancelled {
                task: self.task.clone(),
            }));
        }
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => {
                Poll::Ready(TaskHandle::resolve(&self.task, &self.state, got).result)
            }
        }
    }
}

/// The iterator [`Pool::map`] returns: one result per input, in input order.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// let mut counts = pool.map(1u64..); // an endless input, pulled lazily
/// assert_eq!(counts.next().unwrap()?, 0); // primes below 1
/// assert_eq!(counts.nth(9).unwrap()?, 4); // primes below 11
/// drop(counts); // cancels the tasks that have not started
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct MapIter<In, Out, I> {
    pool: Pool<In, Out>,
    inputs: I,
    next: u64,
    pending: VecDeque<Result<TaskHandle<Out>, Error>>,
    done: bool,
}

impl<In, Out, I> Iterator for MapIter<In, Out, I>
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
    I: Iterator,
    I::Item: std::borrow::Borrow<In>,
{
    type Item = Result<Out, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.pending.len() < self.pool.inner.window {
            let Some(input) = self.inputs.next() else {
                self.done = true;
                break;
            };
            let index = self.next;
            self.next += 1;
            let limits = self.pool.inner.limits;
            let submitted = self
                .pool
                .handle_for(index, std::borrow::Borrow::borrow(&input), limits)
                .and_then(|(job, handle)| {
                    self.pool
                        .inner
                        .dispatcher
                        .enqueue_blocking(job)
                        .map(|()| handle)
                });
            self.pending.push_back(submitted);
        }
        let front = self.pending.pop_front()?;
        Some(front.and_then(TaskHandle::wait))
    }
}

impl<In, Out, I> Drop for MapIter<In, Out, I> {
    fn drop(&mut self) {
        for handle in self.pending.iter().flatten() {
            handle.cancel();
        }
    }
}

/// The iterator [`Pool::as_completed`] returns: `(index, result)` as tasks finish.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// for (index, count) in pool.as_completed(vec![10_000_000, 10]) {
///     println!("input #{index}: {:?}", count); // most likely #1 first
/// }
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct AsCompleted<In, Out, I> {
    pool: Pool<In, Out>,
    inputs: I,
    next: u64,
    running: HashMap<u64, Arc<JobState>>,
    tx: crossbeam_channel::Sender<(u64, Result<Out, Error>)>,
    rx: crossbeam_channel::Receiver<(u64, Result<Out, Error>)>,
    ready: VecDeque<(u64, Result<Out, Error>)>,
    exhausted: bool,
}

impl<In, Out, I> Iterator for AsCompleted<In, Out, I>
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
    I: Iterator,
    I::Item: std::borrow::Borrow<In>,
{
    type Item = (usize, Result<Out, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.exhausted && self.running.len() + self.ready.len() < self.pool.inner.window {
            let Some(input) = self.inputs.next() else {
                self.exhausted = true;
                break;
            };
            let index = self.next;
            self.next += 1;
            let state_slot = Arc::new(JobState::default());
            let guard = ReplyGuard {
                tx: self.tx.clone(),
                task: TaskRef {
                    task: Arc::clone(&self.pool.inner.name),
                    index,
                },
                state: Some(Arc::clone(&state_slot)),
            };
            let reply: Reply = Box::new(move |raw: RawOutcome| {
                let result = raw
                    .result
                    .and_then(|bytes| codec::decode::<Out>(&bytes, &guard.task));
                guard.send(result);
            });
            let limits = self.pool.inner.limits;
            match self.pool.prepare(
                index,
                std::borrow::Borrow::borrow(&input),
                limits,
                state_slot,
                reply,
            ) {
                // The dropped reply's guard also reports this index; `running` filters that out.
                Err(e) => self.ready.push_back((index, Err(e))),
                Ok(job) => {
                    self.running.insert(index, Arc::clone(&job.state));
                    // On failure the job and its reply guard are dropped: the guard reports ShutDown.
                    let _ = self.pool.inner.dispatcher.enqueue_blocking(job);
                }
            }
        }
        if let Some((index, result)) = self.ready.pop_front() {
            return Some((index as usize, result));
        }
        if self.running.is_empty() {
            return None;
        }
        while let Ok((index, result)) = self.rx.recv() {
            // Skip reports for inputs already answered (an encode error also drops its guard).
            if self.running.remove(&index).is_some() {
                return Some((index as usize, result));
            }
        }
        None
    }
}

/// Sends a task's result to an `as_completed` iterator exactly once: the
/// real result, or on drop (job cancelled or pool shut down) the reason.
struct ReplyGuard<Out> {
    tx: crossbeam_channel::Sender<(u64, Result<Out, Error>)>,
    task: TaskRef,
    state: Option<Arc<JobState>>,
}

impl<Out> ReplyGuard<Out> {
    fn send(mut self, result: Result<Out, Error>) {
        let _ = self.tx.send((self.task.index, result));
        self.state = None;
    }
}

impl<Out> Drop for ReplyGuard<Out> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let task = self.task.clone();
            let err = if state.is_cancelled() {
                Error::Cancelled { task }
            } else {
                Error::ShutDown { task }
            };
            let _ = self.tx.send((self.task.index, Err(err)));
        }
    }
}

impl<In, Out, I> Drop for AsCompleted<In, Out, I> {
    fn drop(&mut self) {
        for state in self.running.values() {
            state.cancel();
        }
    }
}
