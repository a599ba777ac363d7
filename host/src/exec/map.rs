//! The iterators of [`Pool::map`](crate::Pool::map) and
//! [`Pool::as_completed`](crate::Pool::as_completed): a bounded window of
//! submitted inputs, filled when the call is made, an optional total
//! deadline, and the end of the iteration at the first refused submission.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::error::{Error, ErrorKind, TaskRef};
use crate::exec::dispatch::{JobState, Reply};
use crate::exec::handles::TaskHandle;
use crate::exec::inbox::Inbox;
use crate::exec::pool::Pool;
use crate::runtime::instance::RawOutcome;

/// The iterator [`Pool::map`] returns: one result per input, in input order.
///
/// The first [`window`](crate::PoolBuilder::window) inputs are submitted
/// by the `map` call itself (so a `shutdown(true, _)` right after it still
/// runs them); later ones as results are taken. After a submission is
/// refused because the pool is shut down, that input's
/// [`Error::ShutDown`] is the last item. Dropping the iterator cancels the
/// tasks that have not started.
///
/// ```
/// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// let mut doubled = pool.map((1u64..).map(|n| n * 2)); // an endless input, pulled lazily
/// assert_eq!(doubled.next().unwrap()?, 2);
/// assert_eq!(doubled.nth(9).unwrap()?, 22);
/// drop(doubled); // cancels the tasks that have not started
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct MapIter<In, Out, I> {
    pool: Pool<In, Out>,
    inputs: I,
    next: u64,
    pending: VecDeque<Entry<Out>>,
    exhausted: bool,
    started: Instant,
    timeout: Option<Duration>,
    expired: bool,
    sizes: InputSizes,
}

/// One input of a map, in input order: its task, or its result already.
struct Entry<Out> {
    index: u64,
    /// The index of the last input of the batch this one was handed over in.
    batch_last: u64,
    state: EntryState<Out>,
}

enum EntryState<Out> {
    Submitted(TaskHandle<Out>),
    Ready(Result<Out, Error>),
}

impl<Out> Entry<Out> {
    fn is_finished(&self) -> bool {
        match &self.state {
            EntryState::Submitted(h) => h.is_finished(),
            EntryState::Ready(_) => true,
        }
    }
    fn cancel(&self) {
        if let EntryState::Submitted(h) = &self.state {
            h.cancel();
        }
    }
}

impl<In, Out, I> MapIter<In, Out, I>
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
    I: Iterator,
    I::Item: std::borrow::Borrow<In>,
{
    pub(crate) fn new(pool: Pool<In, Out>, inputs: I) -> Self {
        let mut it = MapIter {
            pool,
            inputs,
            next: 0,
            pending: VecDeque::new(),
            exhausted: false,
            started: Instant::now(),
            timeout: None,
            expired: false,
            sizes: InputSizes::default(),
        };
        it.fill(true);
        it
    }

    /// One deadline for the whole map, counted from the `map` call. When it
    /// passes, the tasks of the map that have not started are cancelled, the
    /// next item is [`Error::DeadlineExceeded`] ("K of N unfinished", N the
    /// inputs taken so far) and the iteration ends. Running tasks finish in
    /// the background; their results are dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let mut results = pool.map([1u8, 2, 3]).timeout(Duration::from_secs(60));
    /// assert_eq!(results.next().unwrap()?, 1);
    /// let mut stuck = pool.map([255u8, 255, 255]).timeout(Duration::from_millis(20));
    /// let err = stuck.next().unwrap().unwrap_err();
    /// assert!(err.to_string().contains("3 of 3 unfinished"), "{err}");
    /// assert!(stuck.next().is_none());
    /// # pool.shutdown(false, true);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Submits inputs while the window has room for a whole batch (the
    /// batch size follows the workers' recent cost per task, so cheap tasks
    /// travel several per hand-off and the consumer wakes once per batch).
    ///
    /// With `whole_window` (the call itself) it fills the window to the
    /// last input, the last batch short if need be, so that every input of
    /// the first window counts as submitted (a `shutdown` right after the
    /// call still runs them all).
    fn fill(&mut self, whole_window: bool) {
        // Sized once per fill: the call's own fill, before any input's size
        // is known, submits the least window.
        let window = self.pool.window(self.sizes.average());
        let full_batch = self.pool.batch_size(window).min(window);
        while !self.exhausted {
            let room = window.saturating_sub(self.pending.len());
            if room == 0 || (!whole_window && room < full_batch) {
                break;
            }
            let batch = full_batch.min(room);
            let mut jobs = Vec::with_capacity(batch);
            let first = self.pending.len();
            while jobs.len() < batch {
                let Some(input) = self.inputs.next() else {
                    self.exhausted = true;
                    break;
                };
                let index = self.next;
                self.next += 1;
                let state = match self.pool.job_at(index, std::borrow::Borrow::borrow(&input)) {
                    Ok((job, handle)) => {
                        self.sizes.add(job.input.len());
                        jobs.push(job);
                        EntryState::Submitted(handle)
                    }
                    Err(e) => {
                        // Refused (shut down): no input after this one could run.
                        self.exhausted |= e.kind() == ErrorKind::ShutDown;
                        EntryState::Ready(Err(e))
                    }
                };
                self.pending.push_back(Entry {
                    index,
                    batch_last: index,
                    state,
                });
                if self.exhausted {
                    break;
                }
            }
            let last = self.next.saturating_sub(1);
            for entry in self.pending.range_mut(first..) {
                entry.batch_last = last;
            }
            let handed = match jobs.len() {
                0 => Ok(()),
                1 => jobs.pop().map_or(Ok(()), |job| self.pool.enqueue(job)),
                _ => self.pool.enqueue_batch(jobs),
            };
            if let Err(e) = handed {
                // The pool shut down: the batch's first input reports it, and the map ends.
                self.exhausted = true;
                let mut rest = self.pending.split_off(first);
                if let Some(mut entry) = rest.pop_front() {
                    entry.state = EntryState::Ready(Err(e));
                    self.pending.push_back(entry);
                }
            }
        }
    }

    /// Waits for the last task of the front entry's batch: one worker runs a
    /// batch in order, so then the whole batch is done and the consumer has
    /// woken once for it. Waits no longer than `deadline`, nor much longer
    /// than the batch should take (a task that turns out slow must not hold
    /// back results before it): then the caller waits for the front alone.
    fn wait_for_front_batch(&mut self, deadline: Option<Instant>) {
        let Some(front) = self.pending.front() else {
            return;
        };
        if front.is_finished() || front.batch_last == front.index {
            return;
        }
        let len = front.batch_last - front.index + 1;
        let expected = self.pool.batch_time_for(len);
        let patience = Instant::now().checked_add(expected.saturating_mul(4));
        let deadline = match (deadline, patience) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        let at = usize::try_from(front.batch_last - front.index).unwrap_or(usize::MAX);
        let Some(entry) = self.pending.get_mut(at) else {
            return;
        };
        if let EntryState::Submitted(handle) = &mut entry.state
            && let Some(result) = crate::exec::block::block_on_until(Pin::new(handle), deadline)
        {
            entry.state = EntryState::Ready(result);
        }
    }

    fn expire(&mut self, front: TaskHandle<Out>) -> Error {
        self.expired = true;
        let unfinished = 1 + self.pending.iter().filter(|e| !e.is_finished()).count();
        front.cancel();
        for entry in self.pending.drain(..) {
            entry.cancel();
        }
        Error::DeadlineExceeded {
            task: front.task().clone(),
            limit: self.timeout.unwrap_or_default(),
            unfinished: unfinished as u64,
            total: self.next,
        }
    }
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
        if self.expired {
            return None;
        }
        self.fill(false);
        let deadline = self.timeout.and_then(|t| self.started.checked_add(t));
        self.wait_for_front_batch(deadline);
        let mut handle = match self.pending.pop_front()?.state {
            EntryState::Ready(result) => return Some(result),
            EntryState::Submitted(handle) => handle,
        };
        match crate::exec::block::block_on_until(Pin::new(&mut handle), deadline) {
            Some(result) => Some(result),
            None => Some(Err(self.expire(handle))),
        }
    }
}

impl<In, Out, I> Drop for MapIter<In, Out, I> {
    fn drop(&mut self) {
        for entry in &self.pending {
            entry.cancel();
        }
    }
}

type Report<Out> = (u64, Result<Out, Error>);

/// The encoded sizes of a map's inputs so far, for a window sized by cost
/// that also bounds the bytes in flight.
#[derive(Default)]
struct InputSizes {
    bytes: u64,
    count: u64,
}

impl InputSizes {
    fn add(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_add(len as u64);
        self.count += 1;
    }

    /// The average encoded input (`None` before the first).
    fn average(&self) -> Option<usize> {
        let avg = self.bytes.checked_div(self.count)?;
        Some(usize::try_from(avg).unwrap_or(usize::MAX))
    }
}

/// The iterator [`Pool::as_completed`] returns: `(index, result)` as tasks finish.
///
/// Same window, submission at the call, end after a refused submission,
/// deadline and cancel-on-drop as [`MapIter`].
///
/// ```
/// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(2).build()?;
/// let order: Vec<usize> = pool.as_completed(vec![40u8, 0]).map(|(i, _)| i).collect();
/// assert_eq!(order.len(), 2); // most likely [1, 0]
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct AsCompleted<In, Out, I> {
    pool: Pool<In, Out>,
    inputs: I,
    next: u64,
    running: HashMap<u64, Arc<JobState>>,
    inbox: Arc<Inbox<Report<Out>>>,
    /// Results taken from the inbox, not yet yielded.
    arrived: VecDeque<Report<Out>>,
    /// Refused submissions, yielded before anything else.
    ready: VecDeque<Report<Out>>,
    exhausted: bool,
    started: Instant,
    timeout: Option<Duration>,
    expired: bool,
    sizes: InputSizes,
    /// The window of the last fill (for the batch size the wait expects).
    window: usize,
}

impl<In, Out, I> AsCompleted<In, Out, I>
where
    In: Serialize,
    Out: DeserializeOwned + Send + 'static,
    I: Iterator,
    I::Item: std::borrow::Borrow<In>,
{
    pub(crate) fn new(pool: Pool<In, Out>, inputs: I) -> Self {
        let mut it = AsCompleted {
            pool,
            inputs,
            next: 0,
            running: HashMap::new(),
            inbox: Arc::new(Inbox::new()),
            arrived: VecDeque::new(),
            ready: VecDeque::new(),
            exhausted: false,
            started: Instant::now(),
            timeout: None,
            expired: false,
            sizes: InputSizes::default(),
            window: 1,
        };
        it.fill(true);
        it
    }

    /// One deadline for the whole iteration, counted from the
    /// `as_completed` call; as [`MapIter::timeout`], the item then is
    /// `(first unfinished index, Err(DeadlineExceeded))`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).workers(1).build()?;
    /// let mut it = pool.as_completed([255u8]).timeout(Duration::from_millis(20));
    /// let (index, result) = it.next().unwrap();
    /// assert_eq!((index, result.unwrap_err().kind()), (0, sandpool::ErrorKind::DeadlineExceeded));
    /// # pool.shutdown(false, true);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Submits inputs while the window has room for a whole batch (see [`MapIter`]).
    fn fill(&mut self, whole_window: bool) {
        // Sized once per fill (see `MapIter::fill`).
        let window = self.pool.window(self.sizes.average());
        self.window = window;
        let full_batch = self.pool.batch_size(window).min(window);
        while !self.exhausted {
            let room = window.saturating_sub(self.running.len() + self.ready.len());
            if room == 0 || (!whole_window && room < full_batch) {
                break;
            }
            let batch = full_batch.min(room);
            let mut jobs = Vec::with_capacity(batch);
            // The batch's last index, known once the batch is made up.
            let batch_last = Arc::new(AtomicU64::new(u64::MAX));
            while jobs.len() < batch && !self.exhausted {
                let Some(input) = self.inputs.next() else {
                    self.exhausted = true;
                    break;
                };
                let index = self.next;
                self.next += 1;
                let state = Arc::new(JobState::default());
                let guard = ReplyGuard {
                    inbox: Arc::clone(&self.inbox),
                    batch_last: Arc::clone(&batch_last),
                    task: self.pool.task_ref(index),
                    state: Some(Arc::clone(&state)),
                };
                let reply: Reply = Box::new(move |raw: RawOutcome| {
                    let result = raw
                        .result
                        .and_then(|bytes| codec::decode::<Out>(&bytes, &guard.task));
                    guard.send(result);
                });
                let input = std::borrow::Borrow::borrow(&input);
                match self.pool.prepare(index, input, state, reply) {
                    // The dropped reply's guard also reports this index; `running` filters that out.
                    Err(e) => {
                        self.exhausted |= e.kind() == ErrorKind::ShutDown;
                        self.ready.push_back((index, Err(e)));
                    }
                    Ok(job) => {
                        self.sizes.add(job.input.len());
                        self.running.insert(index, Arc::clone(&job.state));
                        jobs.push(job);
                    }
                }
            }
            let first = jobs.first().map(|job| job.task.index);
            if let Some(last) = jobs.last() {
                batch_last.store(last.task.index, Ordering::Relaxed);
            }
            let handed = match jobs.len() {
                0 => Ok(()),
                1 => jobs.pop().map_or(Ok(()), |job| self.pool.enqueue(job)),
                _ => self.pool.enqueue_batch(jobs),
            };
            if handed.is_err() {
                // The jobs' guards report ShutDown; only the first is yielded, then the iteration ends.
                self.exhausted = true;
                let first = first.unwrap_or(0);
                self.running.retain(|&index, _| index <= first);
            }
        }
    }

    fn expire(&mut self) -> Option<(usize, Result<Out, Error>)> {
        self.expired = true;
        let first = *self.running.keys().min()?;
        for state in self.running.values() {
            state.cancel();
        }
        let err = Error::DeadlineExceeded {
            task: self.pool.task_ref(first),
            limit: self.timeout.unwrap_or_default(),
            unfinished: self.running.len() as u64,
            total: self.next,
        };
        self.running.clear();
        Some((first as usize, Err(err)))
    }
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
        if self.expired {
            return None;
        }
        self.fill(false);
        if let Some((index, result)) = self.ready.pop_front() {
            return Some((index as usize, result));
        }
        let deadline = self.timeout.and_then(|t| self.started.checked_add(t));
        loop {
            while let Some((index, result)) = self.arrived.pop_front() {
                // Skip reports for inputs already answered (an encode error also drops its guard).
                if self.running.remove(&index).is_some() {
                    return Some((index as usize, result));
                }
            }
            if self.running.is_empty() {
                return None;
            }
            // Wake once per batch; a batch that runs late is not waited
            // for much longer than twice its expected time.
            let batch = self.pool.batch_size(self.window) as u64;
            let patience = self.pool.batch_time_for(batch).saturating_mul(2);
            if !self.inbox.take_all(&mut self.arrived, patience, deadline) {
                return self.expire();
            }
        }
    }
}

/// Sends a task's result to an `as_completed` iterator exactly once: the
/// real result, or on drop (job cancelled or pool shut down) the reason.
struct ReplyGuard<Out> {
    inbox: Arc<Inbox<Report<Out>>>,
    batch_last: Arc<AtomicU64>,
    task: TaskRef,
    state: Option<Arc<JobState>>,
}

impl<Out> ReplyGuard<Out> {
    fn send(mut self, result: Result<Out, Error>) {
        self.push(result);
        self.state = None;
    }

    fn push(&self, result: Result<Out, Error>) {
        let index = self.task.index;
        let ends_batch = index == self.batch_last.load(Ordering::Relaxed);
        self.inbox.push((index, result), ends_batch);
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
            self.push(Err(err));
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
