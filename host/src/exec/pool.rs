//! `Pool<In, Out>`: the executor API for wasm tasks (submit, map,
//! as_completed, cancel, shutdown), the same whichever isolation level runs
//! the tasks underneath.

use std::sync::Arc;

use futures::channel::oneshot;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::error::{Error, TaskRef};
use crate::exec::builder::PoolBuilder;
use crate::exec::dispatch::{Dispatcher, JobState, PendingJob, Reply};
use crate::exec::handles::{TaskHandle, TaskOutput};
use crate::exec::map::{AsCompleted, MapIter};
use crate::limits::Limits;
use crate::runtime::instance::RawOutcome;
use crate::task::Task;

/// The work one batch of a map's tasks should take on a worker: long
/// enough that the hand-off is a small part of it, short enough that
/// batching adds no noticeable latency. Each batch costs one wake-up of the
/// caller and, at the process level, one wake-up of the worker process
/// (tens of µs for an idle virtual CPU): 1 ms beat 200 µs by 10–20% at
/// the process level and ~5% in-process (docs/performance.md, fourth pass).
const BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(1);

/// The work a map keeps in flight per worker when the window is not set:
/// deep enough that a worker finds a queued batch even when the caller is
/// not scheduled for a few milliseconds (a loaded machine) or is slow to
/// wake (an idle virtual CPU).
const IN_FLIGHT_TIME: std::time::Duration = std::time::Duration::from_millis(4);

/// Inputs in flight per worker when the window is not set: at least (also
/// while the cost is unknown) and at most.
const AUTO_WINDOW_MIN: usize = 16;
const AUTO_WINDOW_MAX: usize = 1024;

/// Encoded input bytes a map keeps in flight at most when the window is
/// not set (beyond [`AUTO_WINDOW_MIN`] inputs per worker).
const AUTO_WINDOW_BYTES: usize = 64 << 20;

/// Wraps started workers as a pool (called by [`PoolBuilder::build`]).
pub(crate) fn assemble<In, Out>(
    dispatcher: Dispatcher,
    limits: Limits,
    window: Option<usize>,
    name: Arc<str>,
    process: Option<Arc<crate::exec::process::Supervisor>>,
) -> Pool<In, Out> {
    Pool {
        inner: Arc::new(PoolInner {
            dispatcher,
            limits,
            window,
            name,
            process,
        }),
        _types: std::marker::PhantomData,
    }
}

struct PoolInner {
    dispatcher: Dispatcher,
    limits: Limits,
    /// The window set on the builder; `None`: sized by cost ([`Pool::window`]).
    window: Option<usize>,
    name: Arc<str>,
    process: Option<Arc<crate::exec::process::Supervisor>>,
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
        PoolBuilder::new(task)
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

    /// Worker-process statistics ([`Isolation::Process`](crate::Isolation::Process) only; `None` otherwise).
    ///
    /// ```no_run
    /// # let task = sandpool::Task::<u64, u64>::from_file("primes.wasm")?;
    /// let pool = sandpool::Pool::builder(task).isolation(sandpool::Isolation::Process).workers(2).build()?;
    /// assert_eq!(pool.process_stats().unwrap().worker_pids.len(), 2);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn process_stats(&self) -> Option<crate::exec::process::ProcessStats> {
        self.inner.process.as_ref().map(|p| p.stats())
    }

    /// The map window: as set on the builder, or else about
    /// [`IN_FLIGHT_TIME`] of work per worker at the recent cost per task
    /// (between [`AUTO_WINDOW_MIN`] and [`AUTO_WINDOW_MAX`] per worker, and
    /// within the queue's capacity), and no more than [`AUTO_WINDOW_BYTES`]
    /// of inputs of `input_bytes`
    /// each (the map's average encoded input so far; `None` before the first).
    pub(crate) fn window(&self, input_bytes: Option<usize>) -> usize {
        if let Some(window) = self.inner.window {
            return window;
        }
        let workers = self.inner.dispatcher.workers().max(1);
        let least = AUTO_WINDOW_MIN.saturating_mul(workers);
        let Some(cost) = self.inner.dispatcher.cost_estimate() else {
            return least;
        };
        let per_worker = IN_FLIGHT_TIME.as_nanos() / cost.as_nanos().max(1);
        let per_worker = usize::try_from(per_worker)
            .unwrap_or(usize::MAX)
            .clamp(AUTO_WINDOW_MIN, AUTO_WINDOW_MAX);
        // Until the first input's size is known, no more than the least.
        let Some(input_bytes) = input_bytes else {
            return least;
        };
        let by_bytes = AUTO_WINDOW_BYTES / input_bytes.max(1);
        // No deeper than the queue can hold, so a fill does not wait for room.
        per_worker
            .saturating_mul(workers)
            .min(by_bytes)
            .min(self.inner.dispatcher.capacity())
            .max(least)
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

    /// Encodes `input` as the task of index `index` (a map's position),
    /// with the pool's limits, ready to enqueue.
    pub(crate) fn job_at(
        &self,
        index: u64,
        input: &In,
    ) -> Result<(PendingJob, TaskHandle<Out>), Error> {
        self.handle_for(index, input, self.inner.limits)
    }

    /// Queues jobs as one batch one worker runs in order (blocking for room).
    pub(crate) fn enqueue_batch(&self, jobs: Vec<PendingJob>) -> Result<(), Error> {
        self.inner.dispatcher.enqueue_batch_blocking(jobs)
    }

    /// How many inputs a map with `window` should hand over at once: enough
    /// tasks for about [`BATCH_TIME`] of work at the workers' recent cost per
    /// task, and at most a half-window per worker (so a batch is always queued while
    /// another runs) and the queue's capacity.
    pub(crate) fn batch_size(&self, window: usize) -> usize {
        let workers = self.inner.dispatcher.workers().max(1);
        let most = (window / (2 * workers))
            .min(self.inner.dispatcher.capacity())
            .max(1);
        match self.inner.dispatcher.cost_estimate() {
            None => 1,
            Some(cost) => {
                let fit = BATCH_TIME.as_nanos() / cost.as_nanos().max(1);
                usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, most)
            }
        }
    }

    /// How long `tasks` tasks should take on a worker at the recent cost
    /// per task (at least 1 ms, to stay well above timer granularity).
    pub(crate) fn batch_time_for(&self, tasks: u64) -> std::time::Duration {
        let cost = self.inner.dispatcher.cost_estimate().unwrap_or_default();
        let tasks = u32::try_from(tasks).unwrap_or(u32::MAX);
        cost.saturating_mul(tasks)
            .max(std::time::Duration::from_millis(1))
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
