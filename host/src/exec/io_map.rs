//! The iterators of [`IoPool::map`] and [`IoPool::as_completed`]: a bounded
//! window filled at the call, the caller's function run outside any
//! executor, an optional total deadline, and the end at the first refusal.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::error::{Error, ErrorKind};
use crate::exec::completed::Indexed;
use crate::exec::io::IoPool;
use crate::exec::io_handle::IoHandle;

/// One submission: the input's position and its handle, or why it was refused.
type Submitted<T> = (u64, Result<IoHandle<T>, Error>);

/// The inputs, function and window bookkeeping both iterators share.
struct Feed<I, F> {
    pool: IoPool,
    inputs: I,
    f: F,
    next: u64,
    exhausted: bool,
    started: Instant,
    timeout: Option<Duration>,
    expired: bool,
}

impl<I, F, Fut> Feed<I, F>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    /// Submits the next input, if any; `None` once there is none left.
    fn submit_next(&mut self) -> Option<Submitted<Fut::Output>> {
        if self.exhausted {
            return None;
        }
        let Some(input) = self.inputs.next() else {
            self.exhausted = true;
            return None;
        };
        let index = self.next;
        self.next += 1;
        // `f` runs here, on the caller's thread and outside any executor.
        let submitted = self.pool.spawn_at(index, (self.f)(input));
        if let Err(e) = &submitted
            && e.kind() == ErrorKind::ShutDown
        {
            self.exhausted = true; // no input after this one could run
        }
        Some((index, submitted))
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| self.started.checked_add(t))
    }
}

/// The iterator [`IoPool::map`] returns: one result per input, in input order.
///
/// ```
/// let pool = sandpool::IoPool::builder().window(4).build()?;
/// let mut squares = pool.map(1u64.., |n| async move { n * n }); // endless, pulled lazily
/// assert_eq!(squares.nth(2).unwrap()?, 9);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct IoMap<I, F, Fut: Future> {
    feed: Feed<I, F>,
    pending: VecDeque<Result<IoHandle<Fut::Output>, Error>>,
}

impl<I, F, Fut> IoMap<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    pub(crate) fn new(pool: IoPool, inputs: I, f: F) -> Self {
        let mut it = IoMap {
            feed: Feed {
                pool,
                inputs,
                f,
                next: 0,
                exhausted: false,
                started: Instant::now(),
                timeout: None,
                expired: false,
            },
            pending: VecDeque::new(),
        };
        it.fill();
        it
    }

    /// One deadline for the whole map, counted from the `map` call: when it
    /// passes, the map's tasks that have not started are cancelled, the next
    /// item is [`Error::DeadlineExceeded`] ("K of N unfinished") and the
    /// iteration ends.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let mut it = pool
    ///     .map(0..3, |_| std::future::pending::<()>())
    ///     .timeout(Duration::from_millis(20));
    /// let err = it.next().unwrap().unwrap_err();
    /// assert!(err.to_string().contains("3 of 3 unfinished"), "{err}");
    /// assert!(it.next().is_none());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.feed.timeout = Some(timeout);
        self
    }

    fn fill(&mut self) {
        while self.pending.len() < self.feed.pool.window() {
            let Some((_, submitted)) = self.feed.submit_next() else {
                break;
            };
            self.pending.push_back(submitted);
        }
    }
}

impl<I, F, Fut> Iterator for IoMap<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = Result<Fut::Output, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.feed.expired {
            return None;
        }
        self.fill();
        let mut handle = match self.pending.pop_front()? {
            Ok(handle) => handle,
            Err(e) => return Some(Err(e)),
        };
        let deadline = self.feed.deadline();
        if let Some(result) = crate::exec::block::block_on_until(Pin::new(&mut handle), deadline) {
            return Some(result);
        }
        self.feed.expired = true;
        let unfinished = 1 + self
            .pending
            .iter()
            .flatten()
            .filter(|h| !h.is_finished())
            .count();
        handle.cancel();
        for other in self.pending.drain(..).flatten() {
            other.cancel();
        }
        Some(Err(Error::DeadlineExceeded {
            task: handle.task().clone(),
            limit: self.feed.timeout.unwrap_or_default(),
            unfinished: unfinished as u64,
            total: self.feed.next,
        }))
    }
}

impl<I, F, Fut: Future> Drop for IoMap<I, F, Fut> {
    fn drop(&mut self) {
        for handle in self.pending.iter().flatten() {
            handle.cancel();
        }
    }
}

/// The iterator [`IoPool::as_completed`] returns: `(index, result)` as tasks
/// finish. Same window, deadline and cancel-on-drop as [`IoMap`].
///
/// ```
/// use std::time::Duration;
/// let pool = sandpool::IoPool::builder().build()?;
/// let first = pool
///     .as_completed([50u64, 0], |ms| async move { tokio::time::sleep(Duration::from_millis(ms)).await })
///     .next()
///     .unwrap();
/// assert_eq!(first.0, 1);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct IoAsCompleted<I, F, Fut: Future> {
    feed: Feed<I, F>,
    ready: VecDeque<(usize, Result<Fut::Output, Error>)>,
    running: FuturesUnordered<Indexed<IoHandle<Fut::Output>>>,
}

impl<I, F, Fut> IoAsCompleted<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    pub(crate) fn new(pool: IoPool, inputs: I, f: F) -> Self {
        let mut it = IoAsCompleted {
            feed: Feed {
                pool,
                inputs,
                f,
                next: 0,
                exhausted: false,
                started: Instant::now(),
                timeout: None,
                expired: false,
            },
            ready: VecDeque::new(),
            running: FuturesUnordered::new(),
        };
        it.fill();
        it
    }

    /// One deadline for the whole iteration, counted from the call; see [`IoMap::timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = sandpool::IoPool::builder().build()?;
    /// let mut it = pool
    ///     .as_completed([0, 1], |i| async move { if i == 1 { std::future::pending::<()>().await } })
    ///     .timeout(Duration::from_millis(50));
    /// assert_eq!(it.next().unwrap().0, 0);
    /// let (index, result) = it.next().unwrap();
    /// assert_eq!((index, result.unwrap_err().kind()), (1, sandpool::ErrorKind::DeadlineExceeded));
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.feed.timeout = Some(timeout);
        self
    }

    fn fill(&mut self) {
        while self.running.len() + self.ready.len() < self.feed.pool.window() {
            let Some((index, submitted)) = self.feed.submit_next() else {
                break;
            };
            match submitted {
                Ok(handle) => self.running.push(Indexed::new(index as usize, handle)),
                Err(e) => self.ready.push_back((index as usize, Err(e))),
            }
        }
    }
}

impl<I, F, Fut> Iterator for IoAsCompleted<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = (usize, Result<Fut::Output, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.feed.expired {
            return None;
        }
        self.fill();
        if let Some(item) = self.ready.pop_front() {
            return Some(item);
        }
        if self.running.is_empty() {
            return None;
        }
        let deadline = self.feed.deadline();
        let mut next = self.running.next();
        if let Some(item) = crate::exec::block::block_on_until(Pin::new(&mut next), deadline) {
            return item;
        }
        drop(next);
        self.feed.expired = true;
        let unfinished = self.running.len() as u64;
        let first = self
            .running
            .iter()
            .filter_map(|i| i.handle().map(|h| (i.pos(), h.task().clone())))
            .min_by_key(|(pos, _)| *pos)?;
        for indexed in self.running.iter() {
            if let Some(h) = indexed.handle() {
                h.cancel();
            }
        }
        Some((
            first.0,
            Err(Error::DeadlineExceeded {
                task: first.1,
                limit: self.feed.timeout.unwrap_or_default(),
                unfinished,
                total: self.feed.next,
            }),
        ))
    }
}

impl<I, F, Fut: Future> Drop for IoAsCompleted<I, F, Fut> {
    fn drop(&mut self) {
        for indexed in self.running.iter() {
            if let Some(h) = indexed.handle() {
                h.cancel();
            }
        }
    }
}
