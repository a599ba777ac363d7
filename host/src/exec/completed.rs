//! `as_completed` over handles the caller already holds, as Python's
//! `concurrent.futures.as_completed`: each handle yielded once, those
//! already finished first, then in completion order; an optional deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::error::Error;
use crate::exec::handles::Handle;

/// Yields `(position, result)` for every handle as it finishes: first the
/// ones already finished (by position), then in completion order. Takes
/// any [`Handle`]: [`TaskHandle`](crate::TaskHandle)s, [`IoHandle`](crate::IoHandle)s,
/// or a mix as [`AnyHandle`](crate::AnyHandle)s. Dropping the iterator
/// does not cancel the tasks.
///
/// ```
/// use std::time::Duration;
/// let io = sandpool::IoPool::builder().build()?;
/// let slow = io.submit(async { tokio::time::sleep(Duration::from_millis(50)).await; "slow" })?;
/// let fast = io.submit(async { "fast" })?;
/// let order: Vec<usize> = sandpool::as_completed(vec![slow, fast]).map(|(i, _)| i).collect();
/// assert_eq!(order, [1, 0]);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn as_completed<H: Handle>(handles: impl IntoIterator<Item = H>) -> Completed<H> {
    let noop = futures::task::noop_waker();
    let mut cx = Context::from_waker(&noop);
    let mut ready = VecDeque::new();
    let running = FuturesUnordered::new();
    let mut total = 0;
    for (pos, mut handle) in handles.into_iter().enumerate() {
        total += 1;
        if handle.is_finished()
            && let Poll::Ready(result) = Pin::new(&mut handle).poll(&mut cx)
        {
            ready.push_back((pos, result));
            continue;
        }
        running.push(Indexed::new(pos, handle));
    }
    Completed {
        ready,
        running,
        started: Instant::now(),
        timeout: None,
        total,
        expired: false,
    }
}

/// The iterator [`as_completed`] returns.
///
/// ```
/// use std::time::Duration;
/// let io = sandpool::IoPool::builder().build()?;
/// let never = io.submit(std::future::pending::<()>())?;
/// let mut it = sandpool::as_completed(vec![never]).timeout(Duration::from_millis(20));
/// let (_, result) = it.next().unwrap();
/// assert_eq!(result.unwrap_err().kind(), sandpool::ErrorKind::DeadlineExceeded);
/// assert!(it.next().is_none());
/// let pending = it.into_pending();
/// assert!(pending[0].1.cancel() || pending[0].1.abort());
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct Completed<H: Handle> {
    ready: VecDeque<(usize, Result<H::Value, Error>)>,
    running: FuturesUnordered<Indexed<H>>,
    started: Instant,
    timeout: Option<Duration>,
    total: usize,
    expired: bool,
}

impl<H: Handle> Completed<H> {
    /// One deadline for the whole iteration, counted from the
    /// [`as_completed`] call: once it passes, the next item is
    /// `(first unfinished position, Err(`[`Error::DeadlineExceeded`]`))` and
    /// iteration ends; [`into_pending`](Self::into_pending) gives back the
    /// unfinished handles (their tasks go on unless cancelled or aborted).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let it = sandpool::as_completed(vec![io.submit(async { 1 })?])
    ///     .timeout(std::time::Duration::from_secs(30));
    /// assert_eq!(it.count(), 1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The handles not yet yielded, with their positions.
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let it = sandpool::as_completed(vec![io.submit(std::future::pending::<()>())?]);
    /// assert_eq!(it.into_pending().len(), 1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn into_pending(self) -> Vec<(usize, H)> {
        let mut pending: Vec<(usize, H)> = self
            .running
            .into_iter()
            .filter_map(|i| i.handle.map(|h| (i.pos, h)))
            .collect();
        pending.sort_by_key(|(pos, _)| *pos);
        pending
    }
}

impl<H: Handle> Iterator for Completed<H> {
    type Item = (usize, Result<H::Value, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.ready.pop_front() {
            return Some(item);
        }
        if self.expired || self.running.is_empty() {
            return None;
        }
        let deadline = self.timeout.and_then(|t| self.started.checked_add(t));
        let mut next = self.running.next();
        if let Some(item) = crate::exec::block::block_on_until(Pin::new(&mut next), deadline) {
            return item;
        }
        drop(next);
        self.expired = true;
        let first = self
            .running
            .iter()
            .filter_map(|i| i.handle.as_ref().map(|h| (i.pos, h.task().clone())))
            .min_by_key(|(pos, _)| *pos)?;
        let err = Error::DeadlineExceeded {
            task: first.1,
            limit: self.timeout.unwrap_or_default(),
            unfinished: self.running.len() as u64,
            total: self.total as u64,
        };
        Some((first.0, Err(err)))
    }
}

/// A handle with its position; resolves to both.
pub(crate) struct Indexed<H> {
    pos: usize,
    handle: Option<H>,
}

impl<H> Indexed<H> {
    pub(crate) fn new(pos: usize, handle: H) -> Self {
        Indexed {
            pos,
            handle: Some(handle),
        }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    /// The handle, until it has been yielded.
    pub(crate) fn handle(&self) -> Option<&H> {
        self.handle.as_ref()
    }
}

impl<H: Handle> Future for Indexed<H> {
    type Output = (usize, Result<H::Value, Error>);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let pos = self.pos;
        let Some(handle) = self.handle.as_mut() else {
            return Poll::Pending; // already yielded; FuturesUnordered never polls it again
        };
        let result = std::task::ready!(Pin::new(handle).poll(cx));
        self.handle = None;
        Poll::Ready((pos, result))
    }
}
