//! The I/O executor: native Rust closures and async functions on a tokio
//! thread pool, sharing memory, with no serialization and a concurrency bound
//! (the seed article's `asyncio.Semaphore`).
//!
//! Async tasks run on the pool's runtime; blocking closures run on its
//! bounded blocking-thread pool. Both count against one concurrency limit.
//! CPU-heavy work belongs on a wasm [`Pool`](crate::Pool), not here.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::dispatch::JobState;
use crate::error::{Error, TaskRef};

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
                closed: AtomicBool::new(false),
                next_index: AtomicU64::new(0),
                running: Arc::new(AtomicU64::new(0)),
                timeout: self.timeout,
                name: self.name.into(),
            }),
        })
    }
}

struct IoInner {
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    closed: AtomicBool,
    next_index: AtomicU64,
    running: Arc<AtomicU64>,
    timeout: Option<Duration>,
    name: Arc<str>,
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

    /// A handle to the pool's tokio runtime, to spawn helpers or block on futures.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.runtime().block_on(async { 1 + 1 }), 2);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    fn task_ref(&self, index: u64) -> TaskRef {
        TaskRef {
            task: Arc::clone(&self.inner.name),
            index,
        }
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
        let index = self.inner.next_index.fetch_add(1, Ordering::Relaxed);
        self.spawn(
            index,
            self.inner.timeout,
            Work::<F, fn() -> F::Output>::Async(future),
        )
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
        let index = self.inner.next_index.fetch_add(1, Ordering::Relaxed);
        self.spawn::<std::future::Ready<T>, F>(index, self.inner.timeout, Work::Blocking(f))
    }

    fn spawn<F, B>(
        &self,
        index: u64,
        timeout: Option<Duration>,
        work: Work<F, B>,
    ) -> Result<IoHandle<F::Output>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        B: FnOnce() -> F::Output + Send + 'static,
    {
        let task = self.task_ref(index);
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown { task });
        }
        let state = Arc::new(JobState::default());
        let permits = Arc::clone(&self.inner.permits);
        let running = Arc::clone(&self.inner.running);
        let (job_state, job_task) = (Arc::clone(&state), task.clone());
        let join = self.inner.handle.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                job_state.cancel();
                return Err(Error::Cancelled { task: job_task });
            };
            if !job_state.start() {
                return Err(Error::Cancelled { task: job_task });
            }
            running.fetch_add(1, Ordering::AcqRel);
            let _done = Finish(&running, &job_state);
            let limit = timeout.unwrap_or(Duration::MAX);
            let outcome = match work {
                Work::Async(future) => tokio::time::timeout(limit, future).await.map_err(|_| ()),
                Work::Blocking(f) => {
                    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
                        Err(_) => Err(()),
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
                    }
                }
            };
            outcome.map_err(|()| Error::Timeout {
                task: job_task,
                limit,
            })
        });
        Ok(IoHandle { task, state, join })
    }

    /// Runs `f` on every input, at most the concurrency bound at once, and
    /// yields one result per input in input order (blocking iterator).
    /// Inputs are pulled lazily; dropping the iterator cancels what has not started.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().concurrency(2).build()?;
    /// let out: Vec<u32> = pool.map(1..=3u32, |x| async move { x * 10 }).collect::<Result<_, _>>()?;
    /// assert_eq!(out, vec![10, 20, 30]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn map<I, F, Fut>(
        &self,
        inputs: I,
        f: F,
    ) -> impl Iterator<Item = Result<Fut::Output, Error>> + use<I, F, Fut>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let window = self.inner.concurrency.saturating_mul(2).max(1);
        let pool = self.clone();
        let mut f = f;
        let stream = futures::stream::iter(inputs)
            .map(move |input| match pool.submit(f(input)) {
                Ok(handle) => futures::future::Either::Left(handle),
                Err(e) => futures::future::Either::Right(futures::future::ready(Err(e))),
            })
            .buffered(window);
        futures::executor::block_on_stream(stream)
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
    pub fn as_completed<I, F, Fut>(
        &self,
        inputs: I,
        f: F,
    ) -> impl Iterator<Item = (usize, Result<Fut::Output, Error>)> + use<I, F, Fut>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let window = self.inner.concurrency.saturating_mul(2).max(1);
        let pool = self.clone();
        let mut f = f;
        let stream = futures::stream::iter(inputs.into_iter().enumerate())
            .map(move |(i, input)| {
                let submitted = pool.submit(f(input));
                async move {
                    match submitted {
                        Ok(handle) => (i, handle.await),
                        Err(e) => (i, Err(e)),
                    }
                }
            })
            .buffer_unordered(window);
        futures::executor::block_on_stream(stream)
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
    /// until running tasks are done (blocking closures included) and the
    /// runtime has stopped. Must not be called from inside the pool's own
    /// tasks with `wait = true`. Calling it twice is harmless.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// pool.shutdown(true, false);
    /// assert!(pool.submit(async {}).is_err());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_queued: bool) {
        self.inner.closed.store(true, Ordering::Release);
        if cancel_queued {
            self.inner.permits.close();
        }
        if wait {
            let permits = Arc::clone(&self.inner.permits);
            let all = self.inner.concurrency as u32;
            if !cancel_queued {
                // Every slot free again means everything queued and running is done.
                let _ = futures::executor::block_on(permits.acquire_many(all));
            } else {
                while self.running() > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let runtime = self
                .inner
                .runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(runtime) = runtime {
                runtime.shutdown_timeout(Duration::from_secs(1));
            }
        }
    }
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

/// The pending result of one I/O task; `.await` it or [`wait`](Self::wait).
///
/// ```
/// let io = sandpool::IoPool::builder().build()?;
/// let handle: sandpool::IoHandle<usize> = io.submit(async { "hello".len() })?;
/// assert_eq!(handle.wait()?, 5);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct IoHandle<T> {
    task: TaskRef,
    state: Arc<JobState>,
    join: tokio::task::JoinHandle<Result<T, Error>>,
}

impl<T> IoHandle<T> {
    /// Which task this is.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().name("fetch").build()?;
    /// assert_eq!(pool.submit(async {})?.task().task.as_ref(), "fetch");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// Cancels the task if it has not started; returns whether it did.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().concurrency(1).build()?;
    /// let _busy = pool.submit(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await })?;
    /// let queued = pool.submit(async { 1 })?;
    /// assert!(queued.cancel());
    /// assert_eq!(queued.wait().unwrap_err().kind(), sandpool::ErrorKind::Cancelled);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let cancelled = self.state.cancel();
        if cancelled {
            self.join.abort();
        }
        cancelled
    }

    /// Blocks until the task ends. Do not call from inside an async task.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.submit(async { 5 })?.wait()?, 5);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait(self) -> Result<T, Error> {
        futures::executor::block_on(self)
    }
}

impl<T> Future for IoHandle<T> {
    type Output = Result<T, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(join)) => {
                let task = self.task.clone();
                if join.is_cancelled() || self.state.is_cancelled() {
                    return Poll::Ready(Err(Error::Cancelled { task }));
                }
                let reason = match join.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into()),
                    Err(e) => e.to_string(),
                };
                Poll::Ready(Err(Error::WorkerCrashed {
                    task,
                    reason: format!("the task panicked: {reason}"),
                }))
            }
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            self.inner.closed.store(true, Ordering::Release);
            let runtime = self
                .inner
                .runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(runtime) = runtime {
                // Let running tasks finish in the background, like the wasm pool.
                runtime.shutdown_background();
            }
        }
    }
}
