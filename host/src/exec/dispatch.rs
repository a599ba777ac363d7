//! The queue and worker threads every wasm executor shares.
//!
//! A [`Backend`] says how one worker runs one encoded task (a fresh wasm
//! instance in this process, or a request to a worker subprocess), and may
//! take a queued batch whole ([`Backend::run_batch`]: the process level
//! sends it many tasks per frame, each still begun, cancelled and answered
//! on its own through a [`BatchSink`]); the
//! [`Dispatcher`] owns the bounded queue, the worker threads, cancellation
//! of queued jobs and shutdown. Every job ends in exactly one call of its
//! reply, or in the reply being dropped, which its handle reports as
//! cancelled or shut down: no waiter is ever left hanging.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::runtime::instance::RawOutcome;
use crate::sync::panic_message;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;
const DONE: u8 = 3;

/// What stops a running job when it is aborted (kills its worker process).
type Aborter = Box<dyn Fn() + Send>;

/// The life of one submitted job, shared by its handle and the worker:
/// queued → running → done, or queued → cancelled; plus an abort request.
#[derive(Default)]
pub(crate) struct JobState {
    phase: AtomicU8,
    abort: AtomicBool,
    aborter: Mutex<Option<Aborter>>,
}

impl std::fmt::Debug for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobState")
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .field("abort", &self.abort.load(Ordering::Relaxed))
            .finish()
    }
}

impl JobState {
    /// Queued → cancelled. True if the job is cancelled now (also when it
    /// already was); false if it already started or finished.
    pub fn cancel(&self) -> bool {
        match self
            .phase
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(phase) => phase == CANCELLED,
        }
    }
    /// Queued → running; false if it was cancelled.
    pub fn start(&self) -> bool {
        self.phase
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    /// Running → done.
    pub fn finish(&self) {
        self.phase.store(DONE, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.phase.load(Ordering::Acquire) == CANCELLED
    }
    pub fn is_running(&self) -> bool {
        self.phase.load(Ordering::Acquire) == RUNNING
    }
    pub fn is_finished(&self) -> bool {
        matches!(self.phase.load(Ordering::Acquire), CANCELLED | DONE)
    }
    /// Cancels a queued job, or asks a running one to stop (and runs the
    /// registered aborter). False only if the job had already finished.
    pub fn abort(&self) -> bool {
        if self.cancel() {
            return true;
        }
        if self.phase.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        // SeqCst: pairs with a backend that publishes which job it is
        // running and then checks this flag (process/supervisor.rs).
        self.abort.store(true, Ordering::SeqCst);
        if let Some(aborter) = lock(&self.aborter).as_ref() {
            aborter();
        }
        true
    }
    /// Whether [`abort`](Self::abort) was asked of the running job.
    pub fn abort_requested(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
    /// Registers how to stop this job while the guard lives; runs it at once
    /// if an abort was already requested.
    pub fn on_abort(&self, aborter: impl Fn() + Send + 'static) -> AbortGuard<'_> {
        let mut slot = lock(&self.aborter);
        if self.abort_requested() {
            aborter();
        }
        *slot = Some(Box::new(aborter));
        AbortGuard(self)
    }
}

/// Unregisters a job's aborter when dropped.
pub(crate) struct AbortGuard<'a>(&'a JobState);

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.aborter).take();
    }
}

/// Called with the job's outcome, on the worker thread.
pub(crate) type Reply = Box<dyn FnOnce(RawOutcome) + Send>;

/// One encoded task waiting for a worker.
pub(crate) struct Job {
    pub task: TaskRef,
    pub input: Vec<u8>,
    pub limits: Limits,
    pub state: Arc<JobState>,
    pub reply: Reply,
    permit: Option<OwnedSemaphorePermit>,
}

impl Job {
    /// A job run by a backend directly, outside any queue (the folder
    /// runner's path: `folder/runner.rs`).
    pub(crate) fn direct(task: TaskRef, input: Vec<u8>, limits: Limits) -> Job {
        Job {
            task,
            input,
            limits,
            state: Arc::default(),
            reply: Box::new(|_| {}),
            permit: None,
        }
    }
}

/// How a worker runs jobs: one value per pool, one `Worker` per worker thread.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Per-thread state (nothing for instances; a subprocess for process isolation).
    type Worker;
    /// Prepares worker `id`; called on the worker's own thread.
    fn start_worker(&self, id: usize) -> Result<Self::Worker, Error>;
    /// Runs one job to its outcome. Must not panic on bad input.
    fn run(&self, worker: &mut Self::Worker, job: &Job) -> RawOutcome;
    /// Whether a batch the queue hands over should go to
    /// [`run_batch`](Self::run_batch) whole (true) or job by job through
    /// [`run`](Self::run) (false: each job is started, and can be cancelled,
    /// only when its turn comes).
    fn takes_batches(&self) -> bool {
        false
    }
    /// Runs queued jobs in order: each one begins through
    /// [`BatchSink::begin`] when its turn comes (skipped if that says it was
    /// cancelled) and gets its outcome through [`BatchSink::done`] as soon as
    /// it has one. The backend arms each job's abort itself. Must not panic
    /// on bad input.
    fn run_batch(&self, worker: &mut Self::Worker, jobs: &[&Job], sink: &mut dyn BatchSink) {
        for (i, job) in jobs.iter().enumerate() {
            if sink.begin(i) {
                let outcome = self.run(worker, job);
                sink.done(i, outcome);
            }
        }
    }
}

/// Where a backend reports the jobs of a batch ([`Backend::run_batch`]).
pub(crate) trait BatchSink {
    /// Job `i` begins now (queued → running); false if it was cancelled,
    /// and then it gets no outcome. True again for a job that has begun.
    fn begin(&mut self, i: usize) -> bool;
    /// Job `i`'s outcome, once, after it began.
    fn done(&mut self, i: usize, outcome: RawOutcome);
}

/// A sink that keeps the outcomes by position for jobs run outside the queue, already started (the process
/// level's single job, the folder runner's batches).
pub(crate) struct Collect(pub Vec<Option<RawOutcome>>);

impl Collect {
    pub(crate) fn new(n: usize) -> Self {
        Collect((0..n).map(|_| None).collect())
    }
}

impl BatchSink for Collect {
    fn begin(&mut self, _i: usize) -> bool {
        true
    }
    fn done(&mut self, i: usize, outcome: RawOutcome) {
        if let Some(slot) = self.0.get_mut(i) {
            *slot = Some(outcome);
        }
    }
}

/// What a worker takes from the queue in one go: one job, or a batch that
/// one worker runs in order (one hand-off for several tasks; the batch's
/// queue slots are freed when a worker takes it).
enum Work {
    One(Job),
    Many(Vec<Job>, OwnedSemaphorePermit),
}

impl Work {
    fn into_jobs(self) -> Vec<Job> {
        match self {
            Work::One(job) => vec![job],
            Work::Many(jobs, _) => jobs,
        }
    }
}

struct Shared {
    sender: Mutex<Option<Sender<Work>>>,
    receiver: Receiver<Work>,
    slots: Arc<Semaphore>,
    closed: AtomicBool,
    /// Set by `shutdown(_, cancel_queued = true)`: jobs of a batch a worker
    /// holds but has not started are cancelled too.
    cancelling: AtomicBool,
    next_index: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
    queue: usize,
    /// Moving average of a job's run time on a worker, in ns (0: none yet).
    cost_ns: AtomicU64,
}

/// A bounded queue served by a fixed set of worker threads.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// Starts `workers` threads running `backend`, with room for `queue` waiting jobs.
    pub fn start<B: Backend>(
        backend: Arc<B>,
        workers: usize,
        queue: usize,
        name: &str,
    ) -> Result<Self, Error> {
        if workers == 0 {
            return Err(Error::Config("a pool needs at least one worker".into()));
        }
        if queue == 0 {
            return Err(Error::Config(
                "queue_capacity must be at least 1 (0 would block every submit)".into(),
            ));
        }
        let (sender, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            sender: Mutex::new(Some(sender)),
            receiver,
            slots: Arc::new(Semaphore::new(queue.min(Semaphore::MAX_PERMITS))),
            closed: AtomicBool::new(false),
            cancelling: AtomicBool::new(false),
            next_index: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            workers,
            queue: queue.min(Semaphore::MAX_PERMITS),
            cost_ns: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let backend = Arc::clone(&backend);
            let for_worker = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("sandpool-{name}-{id}"))
                .stack_size(8 << 20)
                .spawn(move || worker_loop(&*backend, id, &for_worker));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let dispatcher = Dispatcher { shared };
                    dispatcher.shutdown(false, true);
                    return Err(Error::Pool(format!("cannot start worker thread {id}: {e}")));
                }
            }
        }
        *lock(&shared.threads) = threads;
        Ok(Dispatcher { shared })
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// How many jobs may wait in the queue.
    pub fn capacity(&self) -> usize {
        self.shared.queue
    }

    /// The recent average run time of one job on a worker (None before the first).
    pub fn cost_estimate(&self) -> Option<std::time::Duration> {
        match self.shared.cost_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(std::time::Duration::from_nanos(ns)),
        }
    }

    /// Enqueues `jobs` (at most [`capacity`](Self::capacity)) as one batch
    /// that one worker runs in order, waiting (blocking) for their queue
    /// slots. On failure every job is dropped, so each handle reports it.
    pub fn enqueue_batch_blocking(&self, jobs: Vec<PendingJob>) -> Result<(), Error> {
        let Some(first) = jobs.first() else {
            return Ok(());
        };
        let shut = Error::ShutDown {
            task: first.task.clone(),
        };
        let n = u32::try_from(jobs.len()).map_err(|_| shut.clone())?;
        let slots = Arc::clone(&self.shared.slots);
        let Ok(permit) = crate::exec::block::block_on(slots.acquire_many_owned(n)) else {
            return Err(shut);
        };
        let sender = lock(&self.shared.sender);
        let (Some(sender), false) = (sender.as_ref(), self.is_closed()) else {
            return Err(shut);
        };
        let jobs = jobs.into_iter().map(PendingJob::into_job).collect();
        sender.send(Work::Many(jobs, permit)).map_err(|_| shut)
    }

    /// The next pool-wide submission index.
    pub fn next_index(&self) -> u64 {
        self.shared.next_index.fetch_add(1, Ordering::Relaxed)
    }

    /// True once `shutdown` has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Waits for a queue slot (blocking) and enqueues the job.
    pub fn enqueue_blocking(&self, job: PendingJob) -> Result<(), Error> {
        let permit = crate::exec::block::block_on(Arc::clone(&self.shared.slots).acquire_owned());
        self.enqueue_with(job, permit.ok())
    }

    /// Waits for a queue slot (async) and enqueues the job.
    pub async fn enqueue(&self, job: PendingJob) -> Result<(), Error> {
        let permit = Arc::clone(&self.shared.slots).acquire_owned().await;
        self.enqueue_with(job, permit.ok())
    }

    fn enqueue_with(
        &self,
        job: PendingJob,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Error> {
        let shut = |task: TaskRef| Error::ShutDown { task };
        let Some(permit) = permit else {
            return Err(shut(job.task));
        };
        let sender = lock(&self.shared.sender);
        let (Some(sender), false) = (sender.as_ref(), self.is_closed()) else {
            return Err(shut(job.task));
        };
        let task = job.task.clone();
        let mut job = job.into_job();
        job.permit = Some(permit);
        sender.send(Work::One(job)).map_err(|_| shut(task))
    }

    /// Stops accepting work. `cancel_queued` cancels jobs that have not
    /// started; `wait` blocks until the workers have finished and exited.
    /// Calling it again is harmless.
    pub fn shutdown(&self, wait: bool, cancel_queued: bool) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.slots.close();
        drop(lock(&self.shared.sender).take());
        if cancel_queued {
            self.shared.cancelling.store(true, Ordering::Release);
            while let Ok(work) = self.shared.receiver.try_recv() {
                for job in work.into_jobs() {
                    job.state.cancel();
                }
            }
        }
        if wait {
            let current = std::thread::current().id();
            let threads = std::mem::take(&mut *lock(&self.shared.threads));
            for t in threads {
                if t.thread().id() == current {
                    continue;
                }
                let _ = t.join();
            }
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Queued work still completes (handles keep their results); new work is refused.
        self.shutdown(false, false);
    }
}

/// A job before it has a queue slot.
pub(crate) struct PendingJob {
    pub task: TaskRef,
    pub input: Vec<u8>,
    pub limits: Limits,
    pub state: Arc<JobState>,
    pub reply: Reply,
}

impl PendingJob {
    fn into_job(self) -> Job {
        Job {
            task: self.task,
            input: self.input,
            limits: self.limits,
            state: self.state,
            reply: self.reply,
            permit: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_loop<B: Backend>(backend: &B, id: usize, shared: &Shared) {
    let mut worker = match backend.start_worker(id) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!("worker {id} could not start: {e}");
            None
        }
    };
    while let Ok(work) = shared.receiver.recv() {
        match work {
            Work::One(mut job) => {
                drop(job.permit.take());
                run_job(backend, &mut worker, id, shared, job);
            }
            Work::Many(jobs, permit) if backend.takes_batches() => {
                drop(permit);
                run_batch(backend, &mut worker, id, shared, jobs);
            }
            Work::Many(jobs, permit) => {
                drop(permit);
                for job in jobs {
                    if shared.cancelling.load(Ordering::Acquire) {
                        job.state.cancel();
                    }
                    run_job(backend, &mut worker, id, shared, job);
                }
            }
        }
    }
}

/// Runs a batch on a backend that takes batches: hands the jobs over in
/// one call; each begins when the backend gets to it (a job cancelled
/// before then, also by `shutdown(_, cancel_queued = true)`, does not run)
/// and is answered as soon as its outcome is known.
fn run_batch<B: Backend>(
    backend: &B,
    worker: &mut Option<B::Worker>,
    id: usize,
    shared: &Shared,
    mut jobs: Vec<Job>,
) {
    let began = std::time::Instant::now();
    let replies: Vec<Option<Reply>> = jobs
        .iter_mut()
        .map(|job| Some(std::mem::replace(&mut job.reply, Box::new(|_| {}))))
        .collect();
    let mut sink = DeliverSink {
        jobs: &jobs,
        replies,
        cancelling: &shared.cancelling,
        delivered: 0,
    };
    let failure = match worker.as_mut() {
        None => Some(format!("worker {id} failed to start")),
        Some(w) => {
            let refs: Vec<&Job> = jobs.iter().collect();
            match catch_unwind(AssertUnwindSafe(|| backend.run_batch(w, &refs, &mut sink))) {
                Ok(()) => None,
                Err(panic) => {
                    let what = panic_message(&*panic);
                    tracing::error!("worker {id} panicked running a batch: {what}");
                    Some(panic_reason(&what))
                }
            }
        }
    };
    // A job the backend began but did not answer (or never reached, after
    // a failure) is answered with the failure; a cancelled one is dropped.
    let reason = failure.unwrap_or_else(|| "the backend gave no outcome".into());
    for (i, job) in jobs.iter().enumerate() {
        if sink.replies[i].is_some() && sink.begin(i) {
            let outcome = RawOutcome::worker_crashed(&job.task, reason.clone());
            sink.done(i, outcome);
        }
    }
    let delivered = sink.delivered.max(1);
    drop(sink);
    record_cost(shared, began.elapsed(), delivered);
    drop(jobs);
}

/// Answers the jobs of a batch as the backend reports them.
struct DeliverSink<'a> {
    jobs: &'a [Job],
    replies: Vec<Option<Reply>>,
    cancelling: &'a AtomicBool,
    delivered: u64,
}

impl BatchSink for DeliverSink<'_> {
    fn begin(&mut self, i: usize) -> bool {
        let Some(job) = self.jobs.get(i) else {
            return false;
        };
        if self.cancelling.load(Ordering::Acquire) {
            job.state.cancel();
        }
        job.state.start() || job.state.is_running()
    }
    fn done(&mut self, i: usize, outcome: RawOutcome) {
        let (Some(job), Some(reply)) = (self.jobs.get(i), self.replies.get_mut(i)) else {
            return;
        };
        if let Some(reply) = reply.take() {
            self.delivered += 1;
            answer(job, reply, outcome);
        }
    }
}

/// Folds `took` for `n` jobs into the moving average of one job's run time.
fn record_cost(shared: &Shared, took: std::time::Duration, n: u64) {
    let old = shared.cost_ns.load(Ordering::Relaxed);
    shared
        .cost_ns
        .store(moving_cost(old, took, n), Ordering::Relaxed);
}

/// The moving average of one task's run time in ns (`old`; 0: none yet)
/// after `n` tasks took `took` in all: each sample weighs 1/8. Never 0.
pub(crate) fn moving_cost(old: u64, took: std::time::Duration, n: u64) -> u64 {
    let took = (u64::try_from(took.as_nanos()).unwrap_or(u64::MAX) / n.max(1)).max(1);
    match old {
        0 => took,
        old => (old - old / 8 + took / 8).max(1),
    }
}

/// Why a task failed when the host thread running it panicked.
pub(crate) fn panic_reason(what: &str) -> String {
    format!("host worker thread panicked: {what}")
}

/// Hands a started job's outcome to its reply.
fn deliver(mut job: Job, outcome: RawOutcome) {
    let reply = std::mem::replace(&mut job.reply, Box::new(|_| {}));
    answer(&job, reply, outcome);
}

/// Hands a started job's outcome to `reply` (an error of an aborted job is
/// reported as [`Error::Aborted`]), then marks the job finished.
fn answer(job: &Job, reply: Reply, mut outcome: RawOutcome) {
    if job.state.abort_requested() && outcome.result.is_err() {
        outcome.result = Err(Error::Aborted {
            task: job.task.clone(),
        });
    }
    // The result is on its way before the handle reports it finished.
    reply(outcome);
    job.state.finish();
}

/// Runs one job (unless it was cancelled) and hands its outcome to its reply.
fn run_job<B: Backend>(
    backend: &B,
    worker: &mut Option<B::Worker>,
    id: usize,
    shared: &Shared,
    job: Job,
) {
    if !job.state.start() {
        return; // cancelled while queued: dropping the reply tells the handle
    }
    let started = std::time::Instant::now();
    let outcome = match worker.as_mut() {
        None => RawOutcome::worker_crashed(&job.task, format!("worker {id} failed to start")),
        Some(w) => match catch_unwind(AssertUnwindSafe(|| backend.run(w, &job))) {
            Ok(outcome) => outcome,
            Err(panic) => {
                let what = panic_message(&*panic);
                tracing::error!("worker {id} panicked running {}: {what}", job.task);
                RawOutcome::worker_crashed(&job.task, panic_reason(&what))
            }
        },
    };
    record_cost(shared, started.elapsed(), 1);
    deliver(job, outcome);
}
