//! `wait`: block (or await) until some of a set of task handles finish, as
//! Python's `concurrent.futures.wait` does, for handles of any executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};

/// When [`wait`] returns.
///
/// ```
/// assert_ne!(sandpool::ReturnWhen::FirstCompleted, sandpool::ReturnWhen::AllCompleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any handle has finished.
    FirstCompleted,
    /// As soon as any handle has failed, or when all have finished. A
    /// cancelled handle is not a failure (as in Python's `FIRST_EXCEPTION`).
    FirstError,
    /// When every handle has finished.
    AllCompleted,
}

/// What [`wait`] returns: the finished results by position, and the handles still pending.
///
/// ```
/// let io = sandpool::IoPool::builder().build()?;
/// let handles = vec![io.submit(async { 1 })?, io.submit(async { 2 })?];
/// let sandpool::Waited { done, pending } = sandpool::wait(handles, sandpool::ReturnWhen::AllCompleted);
/// assert!(pending.is_empty());
/// let mut values = done.into_iter().map(|(_, r)| r).collect::<Result<Vec<i32>, _>>()?;
/// values.sort();
/// assert_eq!(values, [1, 2]);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug)]
pub struct Waited<H, T> {
    /// `(position in the input vector, result)` of every finished handle, in completion order.
    pub done: Vec<(usize, Result<T, Error>)>,
    /// `(position, handle)` of every handle still running or queued.
    pub pending: Vec<(usize, H)>,
}

/// Blocks until the handles satisfy `when`. Works for [`TaskHandle`](crate::TaskHandle)s
/// of a wasm pool and [`IoHandle`](crate::IoHandle)s of an I/O pool alike.
///
/// ```
/// use sandpool::{IoPool, ReturnWhen};
/// use std::time::Duration;
/// let pool = IoPool::builder().build()?;
/// let fast = pool.submit(async { 1 })?;
/// let slow = pool.submit(async { tokio::time::sleep(Duration::from_secs(5)).await; 2 })?;
/// let waited = sandpool::wait(vec![fast, slow], ReturnWhen::FirstCompleted);
/// assert_eq!(waited.done.len(), 1);
/// assert_eq!(waited.done[0].0, 0);
/// assert_eq!(waited.pending.len(), 1);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn wait<H, T>(handles: Vec<H>, when: ReturnWhen) -> Waited<H, T>
where
    H: Future<Output = Result<T, Error>> + Unpin,
{
    crate::exec::block::block_on(wait_async(handles, when))
}

/// Like [`wait`], but returns when `timeout` (counted from this call) has
/// passed even if `when` is not yet satisfied: the finished handles are in
/// `done`, the others, untouched, in `pending`.
///
/// ```
/// use sandpool::{IoPool, ReturnWhen};
/// use std::time::Duration;
/// let pool = IoPool::builder().build()?;
/// let quick = pool.submit(async { 1 })?;
/// let never = pool.submit(std::future::pending::<i32>())?;
/// let waited = sandpool::wait_timeout(vec![quick, never], ReturnWhen::AllCompleted, Duration::from_millis(50));
/// assert_eq!(waited.done.len(), 1);
/// assert_eq!(waited.pending[0].0, 1);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn wait_timeout<H, T>(handles: Vec<H>, when: ReturnWhen, timeout: Duration) -> Waited<H, T>
where
    H: Future<Output = Result<T, Error>> + Unpin,
{
    let deadline = Instant::now().checked_add(timeout);
    let mut future = WaitFuture {
        slots: handles.into_iter().map(Some).collect(),
        done: Vec::new(),
        when,
    };
    match crate::exec::block::block_on_until(Pin::new(&mut future), deadline) {
        Some(waited) => waited,
        None => future.take(),
    }
}

/// The async form of [`wait`].
///
/// ```
/// # async fn demo(pool: sandpool::IoPool) -> Result<(), sandpool::Error> {
/// let handles = vec![pool.submit(async { 1 })?, pool.submit(async { 2 })?];
/// let waited = sandpool::wait_async(handles, sandpool::ReturnWhen::AllCompleted).await;
/// assert_eq!(waited.done.len(), 2);
/// # Ok(()) }
/// ```
pub async fn wait_async<H, T>(handles: Vec<H>, when: ReturnWhen) -> Waited<H, T>
where
    H: Future<Output = Result<T, Error>> + Unpin,
{
    WaitFuture {
        slots: handles.into_iter().map(Some).collect(),
        done: Vec::new(),
        when,
    }
    .await
}

struct WaitFuture<H, T> {
    slots: Vec<Option<H>>,
    done: Vec<(usize, Result<T, Error>)>,
    when: ReturnWhen,
}

// Nothing in WaitFuture is structurally pinned: handles are `Unpin` and results plain values.
impl<H, T> Unpin for WaitFuture<H, T> {}

impl<H, T> Future for WaitFuture<H, T>
where
    H: Future<Output = Result<T, Error>> + Unpin,
{
    type Output = Waited<H, T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for (i, slot) in this.slots.iter_mut().enumerate() {
            if let Some(handle) = slot
                && let Poll::Ready(result) = Pin::new(handle).poll(cx)
            {
                *slot = None;
                this.done.push((i, result));
            }
        }
        let pending = this.slots.iter().filter(|s| s.is_some()).count();
        let finished = match this.when {
            ReturnWhen::FirstCompleted => !this.done.is_empty() || pending == 0,
            ReturnWhen::FirstError => {
                pending == 0
                    || this
                        .done
                        .iter()
                        .any(|(_, r)| r.as_ref().is_err_and(|e| e.kind() != ErrorKind::Cancelled))
            }
            ReturnWhen::AllCompleted => pending == 0,
        };
        if !finished {
            return Poll::Pending;
        }
        Poll::Ready(this.take())
    }
}

impl<H, T> WaitFuture<H, T> {
    /// What has finished so far and what has not.
    fn take(&mut self) -> Waited<H, T> {
        let pending = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.take().map(|h| (i, h)))
            .collect();
        Waited {
            done: std::mem::take(&mut self.done),
            pending,
        }
    }
}
