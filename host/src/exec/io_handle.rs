//! [`IoHandle`]: the pending result of one I/O task, with the state,
//! cancel, abort and timed wait every handle has.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, TaskRef};
use crate::exec::dispatch::JobState;
use crate::exec::handles::Handle;

/// The pending result of one I/O task; `.await` it or [`wait`](Self::wait).
/// Dropping it does not cancel the task.
///
/// ```
/// let io = sandpool::IoPool::builder().build()?;
/// let handle: sandpool::IoHandle<usize> = io.submit(async { "hello".len() })?;
/// assert_eq!(handle.wait()?, 5);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct IoHandle<T> {
    pub(crate) task: TaskRef,
    pub(crate) state: Arc<JobState>,
    pub(crate) join: tokio::task::JoinHandle<Result<T, Error>>,
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

    /// Cancels the task if it has not started; true if it is cancelled now
    /// (also when it already was), false once it has started or finished.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().concurrency(1).build()?;
    /// let _busy = pool.submit(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await })?;
    /// let queued = pool.submit(async { 1 })?;
    /// assert!(queued.cancel());
    /// assert!(queued.cancel(), "still cancelled");
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

    /// Cancels the task if queued; if running, drops an async task at its
    /// next `.await` point, or, for a blocking closure (which cannot be
    /// stopped), discards its result and frees its concurrency slot while
    /// the closure finishes in the background. The result is then
    /// [`Error::Aborted`]. False if the task had already finished.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let stuck = pool.submit(std::future::pending::<()>())?;
    /// while !stuck.is_running() { std::thread::yield_now(); }
    /// assert!(stuck.abort());
    /// assert_eq!(stuck.wait().unwrap_err().kind(), sandpool::ErrorKind::Aborted);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn abort(&self) -> bool {
        let stopped = self.state.abort();
        if stopped {
            self.join.abort();
        }
        stopped
    }

    /// True once the result is ready (finished any way, or cancelled).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let h = pool.submit(async { 1 })?;
    /// while !h.is_finished() { std::thread::yield_now(); }
    /// assert_eq!(h.wait()?, 1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.state.is_cancelled() || self.join.is_finished()
    }

    /// True while the task runs (it has its concurrency slot and has not ended).
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let h = pool.submit(std::future::pending::<()>())?;
    /// while !h.is_running() { std::thread::yield_now(); }
    /// h.abort();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_running(&self) -> bool {
        self.state.is_running() && !self.join.is_finished()
    }

    /// True if the task was cancelled before it started.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert!(!pool.submit(async {})?.is_cancelled());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// Blocks until the task ends. Do not call from inside an async task
    /// (it would block a runtime thread); `.await` the handle there.
    ///
    /// ```
    /// let pool = sandpool::IoPool::builder().build()?;
    /// assert_eq!(pool.submit(async { 5 })?.wait()?, 5);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait(self) -> Result<T, Error> {
        crate::exec::block::block_on(self)
    }

    /// Waits at most `timeout`: `Ok(result)` if the task ended in time, else
    /// `Err(self)`, the handle back (the task itself is not touched).
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let slow = pool.submit(async { tokio::time::sleep(Duration::from_millis(100)).await; 3 })?;
    /// let slow = slow.wait_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(slow.wait_timeout(Duration::from_secs(60)).ok().unwrap()?, 3);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Result<T, Error>, Self> {
        let deadline = Instant::now().checked_add(timeout);
        match crate::exec::block::block_on_until(Pin::new(&mut self), deadline) {
            Some(result) => Ok(result),
            None => Err(self),
        }
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
                if join.is_cancelled() {
                    return Poll::Ready(Err(if self.state.abort_requested() {
                        Error::Aborted { task }
                    } else if self.state.is_cancelled() {
                        Error::Cancelled { task }
                    } else {
                        Error::ShutDown { task }
                    }));
                }
                let reason = match join.try_into_panic() {
                    Ok(panic) => crate::sync::panic_message(&*panic),
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

impl<T> Handle for IoHandle<T> {
    type Value = T;
    fn task(&self) -> &TaskRef {
        &self.task
    }
    fn cancel(&self) -> bool {
        IoHandle::cancel(self)
    }
    fn abort(&self) -> bool {
        IoHandle::abort(self)
    }
    fn is_finished(&self) -> bool {
        IoHandle::is_finished(self)
    }
    fn is_running(&self) -> bool {
        IoHandle::is_running(self)
    }
    fn is_cancelled(&self) -> bool {
        IoHandle::is_cancelled(self)
    }
}
