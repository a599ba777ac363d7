//! The threads threaded capability handlers run on: the calling task waits
//! for the answer at most until its deadline (polling its abort), then
//! abandons the call. An abandoned handler keeps its thread until it
//! returns; a new call never waits behind it, because every call either
//! takes a thread that is idle or starts a new one (up to [`MAX_THREADS`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::RawHandler;
use crate::sync::panic_message;

/// The most handler threads alive at once (busy, idle or stuck in a handler that never returns).
pub(crate) const MAX_THREADS: usize = 512;

/// How often a waiting task looks at its abort flag.
const ABORT_POLL: Duration = Duration::from_millis(5);

type Job = Box<dyn FnOnce() + Send>;

struct Threads {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    /// Threads waiting for a job and not yet promised to a caller.
    idle: AtomicUsize,
    total: AtomicUsize,
}

fn threads() -> &'static Threads {
    static THREADS: OnceLock<Threads> = OnceLock::new();
    THREADS.get_or_init(|| {
        let (jobs, queue) = crossbeam_channel::unbounded();
        Threads {
            jobs,
            queue,
            idle: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        }
    })
}

/// Runs `handler` on `request`, turning a panic into an error.
pub(crate) fn run_caught(handler: &RawHandler, request: &[u8]) -> Result<Vec<u8>, String> {
    match catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(result) => result,
        Err(panic) => Err(format!("the handler panicked: {}", panic_message(&*panic))),
    }
}

/// How a wait for a handler's answer ended.
pub(crate) enum Waited {
    /// The handler answered (or failed).
    Answer(Result<Vec<u8>, String>),
    /// The task's deadline passed first.
    Deadline,
    /// The task was aborted first.
    Aborted,
    /// The handler's side went away without answering.
    Gone,
}

/// Waits for the answer on `rx` until `deadline`, polling `abort`.
pub(crate) fn wait_for_answer(
    rx: &Receiver<Result<Vec<u8>, String>>,
    deadline: Option<Instant>,
    abort: &dyn Fn() -> bool,
) -> Waited {
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            // An answer that is already there still counts.
            return match rx.try_recv() {
                Ok(result) => Waited::Answer(result),
                Err(_) => Waited::Deadline,
            };
        }
        let wait = deadline.map_or(ABORT_POLL, |d| (d - now).min(ABORT_POLL));
        match rx.recv_timeout(wait) {
            Ok(result) => return Waited::Answer(result),
            Err(RecvTimeoutError::Timeout) => {
                if abort() {
                    return Waited::Aborted;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Waited::Gone,
        }
    }
}

/// Promises the next queued job a thread: an idle one, else a new one.
fn reserve_thread(threads: &'static Threads) -> Result<(), String> {
    let mut idle = threads.idle.load(Ordering::Acquire);
    while idle > 0 {
        match threads.idle.compare_exchange_weak(
            idle,
            idle - 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(()),
            Err(now) => idle = now,
        }
    }
    if threads.total.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
        threads.total.fetch_sub(1, Ordering::AcqRel);
        return Err(format!(
            "no handler thread is free: {MAX_THREADS} capability calls are in progress \
             (or stuck in handlers that do not return)"
        ));
    }
    let queue = threads.queue.clone();
    std::thread::Builder::new()
        .name("sandpool-capability".into())
        .spawn(move || {
            // Each job it takes was promised a thread; idle again after it.
            while let Ok(job) = queue.recv() {
                job();
                threads.idle.fetch_add(1, Ordering::AcqRel);
            }
        })
        .map(|_| ())
        .map_err(|e| {
            threads.total.fetch_sub(1, Ordering::AcqRel);
            format!("cannot start a handler thread: {e}")
        })
}

/// Runs `handler` on a handler thread and waits for it until `deadline`,
/// polling `abort`. At the deadline (or an abort) the call is abandoned:
/// the handler's eventual answer is dropped.
pub(crate) fn run_on_thread(
    handler: Arc<RawHandler>,
    request: Vec<u8>,
    deadline: Option<Instant>,
    abort: &dyn Fn() -> bool,
) -> Result<Vec<u8>, String> {
    let threads = threads();
    reserve_thread(threads)?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(run_caught(&*handler, &request));
    });
    if threads.jobs.send(job).is_err() {
        return Err("the handler threads are gone".into());
    }
    match wait_for_answer(&rx, deadline, abort) {
        Waited::Answer(result) => result,
        Waited::Deadline => {
            Err("the task's deadline passed while the handler ran; the call was abandoned".into())
        }
        Waited::Aborted => {
            Err("the task was aborted while the handler ran; the call was abandoned".into())
        }
        Waited::Gone => Err("the handler thread ended without an answer".into()),
    }
}
