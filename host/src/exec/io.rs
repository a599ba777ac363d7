//! The I/O executor: native Rust closures and async functions on a tokio
//! thread pool, sharing memory, with no serialization and a concurrency bound
//! (the seed article's `asyncio.Semaphore`); its shutdown and drop.
//!
//! Async tasks run on the pool's runtime; blocking closures run on its
//! bounded blocking-thread pool. Both count against one concurrency limit.
//! CPU-heavy work belongs on a wasm [`Pool`](crate::Pool), not here.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, TaskRef};
use crate::exec::dispatch::JobState;
pub use crate::exec::io_handle::IoHandle;
pub use crate::exec::io_map::{IoAsCompleted, IoMap};

/// Configures an [`IoPool`].
///
/// ```
/// let pool = sandpool::IoPool::builder().concurrency(100).threads(2).build()?;
/// assert_eq!(pool.concurrency(), 100);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct IoPoolBuilder {
    concurrency: usize,
    threads: usize,
    blocking_threads: usize,
    window: Option<usize>,
    timeout: Option<Duration>,
    name: String,
}

impl IoPoolBuilder {
    /// Most tasks running at once (default 64); the rest wait their turn.
    ///
    /// ```
    /// let b = sandpool::IoPool::builder().concurrency(4);
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Runtime worker threads for async tasks (default: number of CPUs).
    ///
    /// ```
    /// let b = sandpool::IoPool::builder().threads(1);
    /// ```
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Most threads for blocking closures (default 64).
    ///
    /// ```
    /// let b = sandpool::IoPool::builder().blocking_threads(8);
    /// ```
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = n;
        self
    }

    /// How many inputs [`IoPool::map`] and [`IoPool::as_completed`] keep
    /// submitted at once (default: twice the concurrency; at least 1, else
    /// `build` is an [`Error::Config`]).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().window(8).build()?;
    /// assert_eq!(pool.window(), 8);
    /// assert!(sandpool::IoPool::builder().window(0).build().is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn window(mut self, inputs: usize) -> Self {
        self.window = Some(inputs);
        self
    }

    /// Default per-task timeout (none by default). An async task is dropped
    /// at its deadline; a blocking closure cannot be stopped, so its result
    /// is discarded and its thread finishes in the background.
    ///
    /// ```
    /// let b = sandpool::IoPool::builder().timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Name used in errors (default `io`).
    ///
    /// ```
    /// let b = sandpool::IoPool::builder().name("crawler");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the runtime.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn build(self) -> Result<IoPool, Error> {
        if self.concurrency == 0 || self.threads == 0 || self.blocking_threads == 0 {
            return Err(Error::Config("I/O pool sizes must be at least 1".into()));
        }
        if self.window == Some(0) {
            return Err(Error::Config(
                "window must be at least 1 (a map with no input in flight never ends)".into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .max_blocking_threads(self.blocking_threads)
            .thread_name(format!("sandpool-{}", self.name))
            .enable_all()
            .build()
            .map_err(|e| Error::Pool(format!("cannot start the I/O runtime: {e}")))?;
        Ok(IoPool {
            inner: Arc::new(IoInner {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                permits: Arc::new(Semaphore::new(self.concurrency)),
                concurrency: self.concurrency,
                window: self
                    .window
                    .unwrap_or(self.concurrency.saturating_mul(2))
                    .max(1),
                next_index: AtomicU64::new(0),
                running: Arc::new(AtomicU64::new(0)),
                outstanding: Arc::default(),
                timeout: self.timeout,
                name: self.name.into(),
            }),
        })
    }
}

/// Tasks submitted and not yet ended, and whether the pool still takes new ones.
#[derive(Debug, Default)]
struct Outstanding {
    state: Mutex<(u64, bool)>,
    idle: Condvar,
}

impl Outstanding {
    fn lock(&self) -> MutexGuard<'_, (u64, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Counts one more task, unless the pool is closed.
    fn enter(self: &Arc<Self>) -> Option<Leave> {
        let mut state = self.lock();
        if state.1 {
            return None;
        }
        state.0 += 1;
        Some(Leave(Arc::clone(self)))
    }
    fn close(&self) {
        self.lock().1 = true;
    }
    fn is_idle(&self) -> bool {
        self.lock().0 == 0
    }
    fn wait_idle(&self) {
        let mut state = self.lock();
        while state.0 > 0 {
            state = self.idle.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Ends one task's count when the task ends or is dropped.
struct Leave(Arc<Outstanding>);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.0 -= 1;
        if state.0 == 0 {
            self.0.idle.notify_all();
        }
    }
}

struct IoInner {
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    window: usize,
    next_index: AtomicU64,
    running: Arc<AtomicU64>,
    outstanding: Arc<Outstanding>,
    timeout: Option<Duration>,
    name: Arc<str>,
}

impl IoInner {
    fn take_runtime(&self) -> Option<tokio::runtime::Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
    /// True on one of this pool's own runtime or blocking threads.
    fn on_own_thread(&self) -> bool {
        tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == self.handle.id())
    }
}

impl Drop for IoInner {
    fn drop(&mut self) {
        // The last clone is gone: refuse new work, let submitted work finish
        // (handles keep their results), then stop the runtime.
        self.outstanding.close();
        let Some(runtime) = self.take_runtime() else {
            return;
        };
        if self.outstanding.is_idle() && !self.on_own_thread() {
            runtime.shutdown_background();
            return;
        }
        let outstanding = Arc::clone(&self.outstanding);
        let reaper = std::thread::Builder::new()
            .name(format!("sandpool-{}-drain", self.name))
            .spawn(move || {
                outstanding.wait_idle();
                runtime.shutdown_background();
            });
        if let Err(e) = reaper {
            tracing::error!("cannot start the I/O pool's drain thread ({e}); its runtime stays up");
        }
    }
}

/// A thread pool for I/O-bound work: async functions and blocking closures
/// that share memory with the caller, under a concurrency bound.
///
/// ```
/// use std::time::Duration;
/// let pool = sandpool::IoPool::builder().concurrency(10).build()?;
/// let handle = pool.submit(async { tokio::time::sleep(Duration::from_millis(5)).await; 7 })?;
/// assert_eq!(handle.wait()?, 7);
/// let lengths: Vec<usize> = pool
///     .map(vec!["a", "bb"], |s| async move { s.len() })
///     .collect::<Result<_, _>>()?;
/// assert_eq!(lengths, vec![1, 2]);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Clone)]
pub struct IoPool {
    inner: Arc<IoInner>,
}

impl std::fmt::Debug for IoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoPool")
            .field("name", &self.inner.name)
            .field("concurrency", &self.inner.concurrency)
            .finish()
    }
}

impl IoPool {
    /// Starts configuring an I/O pool.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn builder() -> IoPoolBuilder {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        IoPoolBuilder {
            concurrency: 64,
            threads: cpus,
            blocking_threads: 64,
            window: None,
            timeout: None,
            name: "io".into(),
        }
    }

    /// The concurrency bound.
    ///
    /// ```
    /// assert_eq!(sandpool::IoPool::builder().concurrency(3).build()?.concurrency(), 3);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// How many inputs `map` and `as_completed` keep submitted at once.
    ///
    /// ```
    /// assert_eq!(sandpool::IoPool::builder().concurrency(3).build()?.window(), 6);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn window(&self) -> usize {
        self.inner.window
    }

    /// A handle to the pool's tokio runtime, to spawn helpers or block on
    /// futures. Tasks spawned on it directly are not the pool's tasks: they
    /// are not bounded, counted or waited for by [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.runtime().block_on(async { 1 + 1 }), 2);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    pub(crate) fn task_ref(&self, index: u64) -> TaskRef {
        TaskRef {
            task: Arc::clone(&self.inner.name),
            index,
        }
    }

    pub(crate) fn next_index(&self) -> u64 {
        self.inner.next_index.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs an async task. It waits for a concurrency slot on the runtime,
    /// so this call returns at once.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.submit(async { "done" })?.wait()?, "done");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit<F>(&self, future: F) -> Result<IoHandle<F::Output>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_at(self.next_index(), future)
    }

    /// Runs an async task whose `Err` is a failure of the task: it becomes
    /// [`Error::Guest`] with the error's text, so [`wait`](crate::wait()) with
    /// [`ReturnWhen::FirstError`](crate::ReturnWhen::FirstError) sees it.
    ///
    /// ```
    /// use sandpool::{ErrorKind, ReturnWhen};
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let bad = pool.submit_fallible(async { Err::<u8, _>("no such host") })?;
    /// let slow = pool.submit_fallible(async {
    ///     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    ///     Ok::<u8, String>(1)
    /// })?;
    /// let waited = sandpool::wait(vec![bad, slow], ReturnWhen::FirstError);
    /// let err = waited.done[0].1.as_ref().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Guest);
    /// assert!(err.to_string().contains("no such host"));
    /// assert_eq!(waited.pending.len(), 1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit_fallible<F, T, E>(&self, future: F) -> Result<IoHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let task = self.task_ref(self.next_index());
        let work = Work::<F, fn() -> F::Output>::Async(future);
        self.spawn(task, self.inner.timeout, work, fallible)
    }

    /// Runs a blocking closure on the blocking-thread pool, under the same bound.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let n = pool.submit_blocking(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0))?.wait()?;
    /// assert!(n > 0);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit_blocking<F, T>(&self, f: F) -> Result<IoHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = self.task_ref(self.next_index());
        let work = Work::<std::future::Ready<T>, F>::Blocking(f);
        self.spawn(task, self.inner.timeout, work, infallible)
    }

    /// [`submit_blocking`](Self::submit_blocking) for a closure whose `Err`
    /// is a failure of the task ([`Error::Guest`]; see [`submit_fallible`](Self::submit_fallible)).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let err = pool.submit_blocking_fallible(|| std::fs::read("/no/such/file"))?.wait().unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Guest);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn submit_blocking_fallible<F, T, E>(&self, f: F) -> Result<IoHandle<T>, Error>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let task = self.task_ref(self.next_index());
        let work = Work::<std::future::Ready<Result<T, E>>, F>::Blocking(f);
        self.spawn(task, self.inner.timeout, work, fallible)
    }

    /// Submits an async task as input `index` (a map's position).
    pub(crate) fn spawn_at<F>(&self, index: u64, future: F) -> Result<IoHandle<F::Output>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let work = Work::<F, fn() -> F::Output>::Async(future);
        self.spawn(self.task_ref(index), self.inner.timeout, work, infallible)
    }

    fn spawn<F, B, T>(
        &self,
        task: TaskRef,
        timeout: Option<Duration>,
        work: Work<F, B>,
        settle: fn(F::Output, TaskRef) -> Result<T, Error>,
    ) -> Result<IoHandle<T>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        B: FnOnce() -> F::Output + Send + 'static,
        T: Send + 'static,
    {
        let Some(leave) = self.inner.outstanding.enter() else {
            return Err(Error::ShutDown { task });
        };
        let state = Arc::new(JobState::default());
        let permit = queue_for_slot(&self.inner.permits);
        let running = Arc::clone(&self.inner.running);
        let (job_state, job_task) = (Arc::clone(&state), task.clone());
        let join = self.inner.handle.spawn(async move {
            let _leave = leave;
            let Ok(_permit) = permit.await else {
                job_state.cancel();
                return Err(Error::Cancelled { task: job_task });
            };
            if !job_state.start() {
                return Err(Error::Cancelled { task: job_task });
            }
            running.fetch_add(1, Ordering::AcqRel);
            let _done = Finish(&running, &job_state);
            let limit = timeout.unwrap_or(Duration::MAX);
            let timed_out = || Error::Timeout {
                task: job_task.clone(),
                limit,
            };
            let value = match work {
                Work::Async(future) => tokio::time::timeout(limit, future)
                    .await
                    .map_err(|_| timed_out())?,
                Work::Blocking(f) => {
                    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
                        Err(_) => return Err(timed_out()),
                        Ok(Ok(value)) => value,
                        Ok(Err(join)) => match join.try_into_panic() {
                            // Re-raised here, so the handle reports the closure's panic message.
                            Ok(panic) => std::panic::resume_unwind(panic),
                            // Only a runtime shutting down cancels a blocking closure.
                            Err(_) => return Err(Error::ShutDown { task: job_task }),
                        },
                    }
                }
            };
            settle(value, job_task)
        });
        Ok(IoHandle { task, state, join })
    }

    /// Runs `f` on every input, at most the concurrency bound at once, and
    /// yields one result per input in input order (blocking iterator).
    /// The first [`window`](IoPoolBuilder::window) inputs are submitted by
    /// this call, the rest as results are taken; `f` runs on the calling
    /// thread, outside any executor, so it may make blocking sandpool calls.
    /// After a refused submission (pool shut down) that input's
    /// [`Error::ShutDown`] is the last item. Dropping the iterator cancels
    /// what has not started; a total deadline is [`IoMap::timeout`].
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().concurrency(2).build()?;
    /// let out: Vec<u32> = pool.map(1..=3u32, |x| async move { x * 10 }).collect::<Result<_, _>>()?;
    /// assert_eq!(out, vec![10, 20, 30]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn map<I, F, Fut>(&self, inputs: I, f: F) -> IoMap<I::IntoIter, F, Fut>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        IoMap::new(self.clone(), inputs.into_iter(), f)
    }

    /// Like [`map`](Self::map), but yields `(index, result)` as tasks finish.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let mut got: Vec<(usize, u32)> = pool
    ///     .as_completed(vec![3u32, 1], |x| async move { x })
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got, vec![(0, 3), (1, 1)]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn as_completed<I, F, Fut>(&self, inputs: I, f: F) -> IoAsCompleted<I::IntoIter, F, Fut>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        IoAsCompleted::new(self.clone(), inputs.into_iter(), f)
    }

    /// Tasks running right now (not counting those waiting for a slot).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.running(), 0);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn running(&self) -> u64 {
        self.inner.running.load(Ordering::Acquire)
    }

    /// Stops the pool: new submissions fail with [`Error::ShutDown`];
    /// `cancel_queued` cancels tasks still waiting for a slot; `wait` blocks
    /// until every submitted task has ended (queued ones included, unless
    /// cancelled) and then stops the runtime. Called with `wait` from one
    /// of the pool's own tasks it does not wait (it cannot wait for
    /// itself). Calling it twice is harmless; dropping the last clone is
    /// `shutdown(false, false)`: submitted work still finishes.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().concurrency(1).build()?;
    /// let queued: Vec<_> = (0..5).map(|i| pool.submit(async move { i })).collect::<Result<_, _>>()?;
    /// pool.shutdown(true, false);
    /// let values: Vec<i32> = queued.into_iter().map(|h| h.wait()).collect::<Result<_, _>>()?;
    /// assert_eq!(values, [0, 1, 2, 3, 4], "queued work completed");
    /// assert!(pool.submit(async {}).is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_queued: bool) {
        self.inner.outstanding.close();
        if cancel_queued {
            self.inner.permits.close();
        }
        if wait && !self.inner.on_own_thread() {
            self.inner.outstanding.wait_idle();
            if let Some(runtime) = self.inner.take_runtime() {
                runtime.shutdown_background();
            }
        }
    }
}

/// A place in the pool's slot queue, taken now, on the submitting thread.
///
/// Polling the semaphore's acquire once here either takes a free slot or
/// joins its FIFO wait list, so tasks start in the order they were
/// submitted (as `concurrent.futures` does), not in the order the runtime
/// happens to first poll their futures. The spawned task awaits the same
/// future, which replaces the no-op waker with its own.
fn queue_for_slot(
    permits: &Arc<Semaphore>,
) -> Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>> {
    let mut acquire = Box::pin(Arc::clone(permits).acquire_owned());
    let mut cx = Context::from_waker(Waker::noop());
    match acquire.as_mut().poll(&mut cx) {
        Poll::Ready(taken) => Box::pin(std::future::ready(taken)),
        Poll::Pending => acquire,
    }
}

fn infallible<T>(value: T, _task: TaskRef) -> Result<T, Error> {
    Ok(value)
}

fn fallible<T, E: std::fmt::Display>(value: Result<T, E>, task: TaskRef) -> Result<T, Error> {
    value.map_err(|e| Error::Guest {
        task,
        message: e.to_string(),
    })
}

struct Finish<'a>(&'a AtomicU64, &'a JobState);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.finish();
    }
}

enum Work<F, B> {
    Async(F),
    Blocking(B),
}
