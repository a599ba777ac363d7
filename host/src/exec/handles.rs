//! Handles to submitted work: [`TaskHandle`] for a wasm task, the
//! [`Handle`] vocabulary every handle shares (state, cancel, abort), and
//! [`AnyHandle`] to hold wasm and I/O handles in one collection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::error::{Error, TaskRef};
use crate::exec::dispatch::JobState;
use crate::exec::io::IoHandle;
use crate::runtime::instance::TaskLogs;

/// One finished task in full: which input, its result and its captured output.
///
/// ```
/// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// let out = pool.submit(&100)?.wait_output();
/// assert_eq!(out.task.index, 0);
/// assert_eq!(out.result?, 100);
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

/// What every handle can say and do: which task it is, whether it has
/// started or finished, cancel (before it starts) and abort (also while it
/// runs). Implemented by [`TaskHandle`], [`IoHandle`] and [`AnyHandle`];
/// [`as_completed`](crate::as_completed) and [`wait`](crate::wait()) take any of them.
///
/// ```
/// use sandpool::Handle;
/// fn report<H: Handle>(h: &H) -> String {
///     format!("{}: running {}, finished {}", h.task(), h.is_running(), h.is_finished())
/// }
/// let io = sandpool::IoPool::builder().build()?;
/// let h = io.submit(async { 1 })?;
/// assert!(report(&h).starts_with("task `io` input #0"));
/// # Ok::<(), sandpool::Error>(())
/// ```
pub trait Handle: Future<Output = Result<Self::Value, Error>> + Unpin {
    /// The task's value on success.
    type Value;
    /// Which task and input this is.
    fn task(&self) -> &TaskRef;
    /// Cancels the task if it has not started. True if it is cancelled
    /// (also when it already was); false once it has started or finished.
    fn cancel(&self) -> bool;
    /// Cancels the task if it has not started, or stops it if it is
    /// running; its result is then [`Error::Aborted`]. False if it had
    /// already finished. See each handle type for what stopping means.
    fn abort(&self) -> bool;
    /// True once the task's result is decided: finished (any way) or cancelled.
    fn is_finished(&self) -> bool;
    /// True while the task runs (started, not yet finished).
    fn is_running(&self) -> bool;
    /// True if the task was cancelled before it started.
    fn is_cancelled(&self) -> bool;
}

/// The pending result of one submitted wasm task.
///
/// Wait for it with [`wait`](Self::wait) (blocking) or `.await` it.
/// [`cancel`](Self::cancel) succeeds only before the task has started;
/// [`abort`](Self::abort) also stops a running one. Dropping a handle does
/// not cancel its task.
///
/// ```
/// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// let handle = pool.submit(&25)?;
/// // Blocking code calls `wait`; async code awaits the handle itself.
/// assert_eq!(handle.wait()?, 25);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct TaskHandle<Out> {
    pub(crate) task: TaskRef,
    pub(crate) state: Arc<JobState>,
    pub(crate) rx: oneshot::Receiver<TaskOutput<Out>>,
}

impl<Out> TaskHandle<Out> {
    /// Which task and input this handle is for.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let h = pool.submit(&5)?;
    /// assert_eq!(h.task().task.as_ref(), "echo");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// Cancels the task if it has not started; true if it is cancelled now
    /// (also when it already was), false once it has started or finished.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let busy = pool.submit(&20)?;
    /// let queued = pool.submit(&1)?;
    /// assert!(queued.cancel());
    /// assert!(queued.cancel(), "cancelling twice is still cancelled");
    /// assert_eq!(queued.wait().unwrap_err().kind(), sandpool::ErrorKind::Cancelled);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.state.cancel()
    }

    /// Stops the task: cancels it if queued, else interrupts it if running;
    /// its result is then [`Error::Cancelled`] or [`Error::Aborted`]. False
    /// if it had already finished (its result stands).
    ///
    /// In process ([`Isolation::Instance`](crate::Isolation::Instance)) the
    /// guest is interrupted at its next epoch check (within about 5 ms);
    /// the worker thread goes on with the next task. With
    /// [`Isolation::Process`](crate::Isolation::Process) the worker process
    /// running the task is killed (SIGKILL) and the supervisor starts a
    /// replacement, as after a crash; other tasks are not affected.
    ///
    /// ```
    /// let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let forever = pool.submit(&255)?; // spins until stopped
    /// while !forever.is_running() { std::thread::yield_now(); }
    /// assert!(forever.abort());
    /// assert_eq!(forever.wait().unwrap_err().kind(), sandpool::ErrorKind::Aborted);
    /// assert_eq!(pool.submit(&1)?.wait()?, 1, "the worker goes on");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn abort(&self) -> bool {
        self.state.abort()
    }

    /// True once the result is ready (the task finished, failed, or was cancelled).
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let h = pool.submit(&1)?;
    /// while !h.is_finished() { std::thread::yield_now(); }
    /// assert_eq!(h.wait()?, 1); // returns at once
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }

    /// True while a worker runs the task.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let h = pool.submit(&255)?;
    /// while !h.is_running() { std::thread::yield_now(); }
    /// h.abort();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_running(&self) -> bool {
        self.state.is_running()
    }

    /// True if the task was cancelled before it started.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// assert!(!pool.submit(&1)?.is_cancelled());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// Blocks until the task ends; returns its output or error.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// assert_eq!(pool.submit(&4)?.wait()?, 4);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait(self) -> Result<Out, Error> {
        self.wait_output().result
    }

    /// Waits at most `timeout` for the task: `Ok(result)` if it ended in
    /// time, else `Err(self)`, the handle back, to wait again, cancel or
    /// abort (the task itself is not touched).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let slow = pool.submit(&255)?;
    /// let slow = slow.wait_timeout(Duration::from_millis(20)).unwrap_err();
    /// slow.abort();
    /// let result = slow.wait_timeout(Duration::from_secs(60)).ok().expect("ended in time");
    /// assert_eq!(result.unwrap_err().kind(), sandpool::ErrorKind::Aborted);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Result<Out, Error>, Self> {
        let deadline = Instant::now().checked_add(timeout);
        match crate::exec::block::block_on_until(Pin::new(&mut self), deadline) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// Blocks until the task ends; returns its result with its captured output.
    ///
    /// ```
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let out = pool.submit(&10)?.wait_output();
    /// assert!(out.logs.stdout.bytes.is_empty());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wait_output(self) -> TaskOutput<Out> {
        crate::exec::block::block_on(OutputFuture(self))
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

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<TaskOutput<Out>> {
        if self.state.is_cancelled() {
            return Poll::Ready(Self::resolve(
                &self.task,
                &self.state,
                Err(oneshot::Canceled),
            ));
        }
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => Poll::Ready(Self::resolve(&self.task, &self.state, got)),
        }
    }
}

struct OutputFuture<Out>(TaskHandle<Out>);

impl<Out> Future for OutputFuture<Out> {
    type Output = TaskOutput<Out>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskOutput<Out>> {
        self.0.poll_output(cx)
    }
}

impl<Out> Future for TaskHandle<Out> {
    type Output = Result<Out, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Out, Error>> {
        self.poll_output(cx).map(|out| out.result)
    }
}

impl<Out> Handle for TaskHandle<Out> {
    type Value = Out;
    fn task(&self) -> &TaskRef {
        &self.task
    }
    fn cancel(&self) -> bool {
        TaskHandle::cancel(self)
    }
    fn abort(&self) -> bool {
        TaskHandle::abort(self)
    }
    fn is_finished(&self) -> bool {
        TaskHandle::is_finished(self)
    }
    fn is_running(&self) -> bool {
        TaskHandle::is_running(self)
    }
    fn is_cancelled(&self) -> bool {
        TaskHandle::is_cancelled(self)
    }
}

/// A wasm or an I/O handle with the same value type, so both fit in one
/// `Vec` for [`wait`](crate::wait()) or [`as_completed`](crate::as_completed).
///
/// ```
/// use sandpool::{AnyHandle, IoPool, Pool};
/// let pool = Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// let io = IoPool::builder().build()?;
/// let handles: Vec<AnyHandle<u64>> = vec![pool.submit(&1)?.into(), io.submit(async { 2u64 })?.into()];
/// let mut values: Vec<u64> = sandpool::as_completed(handles).map(|(_, r)| r.unwrap()).collect();
/// values.sort();
/// assert_eq!(values, [1, 2]);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub enum AnyHandle<T> {
    /// A task of a wasm [`Pool`](crate::Pool).
    Wasm(TaskHandle<T>),
    /// A task of an [`IoPool`](crate::IoPool).
    Io(IoHandle<T>),
}

impl<T> From<TaskHandle<T>> for AnyHandle<T> {
    fn from(h: TaskHandle<T>) -> Self {
        AnyHandle::Wasm(h)
    }
}

impl<T> From<IoHandle<T>> for AnyHandle<T> {
    fn from(h: IoHandle<T>) -> Self {
        AnyHandle::Io(h)
    }
}

impl<T> Future for AnyHandle<T> {
    type Output = Result<T, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AnyHandle::Wasm(h) => Pin::new(h).poll(cx),
            AnyHandle::Io(h) => Pin::new(h).poll(cx),
        }
    }
}

macro_rules! either {
    ($self:ident, $h:ident => $e:expr) => {
        match $self {
            AnyHandle::Wasm($h) => $e,
            AnyHandle::Io($h) => $e,
        }
    };
}

impl<T> Handle for AnyHandle<T> {
    type Value = T;
    fn task(&self) -> &TaskRef {
        either!(self, h => Handle::task(h))
    }
    fn cancel(&self) -> bool {
        either!(self, h => Handle::cancel(h))
    }
    fn abort(&self) -> bool {
        either!(self, h => Handle::abort(h))
    }
    fn is_finished(&self) -> bool {
        either!(self, h => Handle::is_finished(h))
    }
    fn is_running(&self) -> bool {
        either!(self, h => Handle::is_running(h))
    }
    fn is_cancelled(&self) -> bool {
        either!(self, h => Handle::is_cancelled(h))
    }
}
