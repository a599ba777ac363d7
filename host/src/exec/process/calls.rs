//! Running tasks on a supervised worker process: one job, or a batch of
//! jobs sent as request frames of up to [`MAX_BATCH`] tasks, each answered
//! as the worker finishes it; every way the worker can fail becomes the
//! outcome of the one task it was running (`supervisor.rs` starts, watches
//! and replaces the workers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::child::WorkerProc;
use super::frame::{self, FrameError, write_frame};
use super::supervisor::{Slot, Supervisor};
use super::wire::{
    CallRequest, FromWorker, MAX_BATCH, MAX_INPUT, REQUEST_OVERHEAD, Request, max_response,
};
use crate::error::{Error, TaskRef};
use crate::exec::dispatch::{AbortGuard, BatchSink, Collect, Job, JobState};
use crate::limits::Limits;
use crate::runtime::instance::{RawOutcome, TaskLogs};
use crate::sync::lock;

/// What a worker sent about the task it runs.
enum Answer {
    Outcome(RawOutcome),
    Call(CallRequest),
}

/// How a call to a worker failed.
pub(super) enum Failure {
    /// The request never fully reached the worker (it was already gone): safe to retry.
    NotDelivered(String),
    /// The worker was lost with the task in flight.
    Lost(String),
    /// The worker was killed to abort an earlier task of the frame, but had
    /// already answered it: the task it was then on is not at fault and
    /// goes, with the rest, to a new worker.
    KilledForAnother(String),
}

/// One task of a batch: what the supervisor needs of a queued [`Job`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskInput<'a> {
    pub task: &'a TaskRef,
    pub input: &'a [u8],
    pub limits: &'a Limits,
    /// The job's state, to arm its abort while it is in flight (None: no abort).
    pub state: Option<&'a JobState>,
}

impl TaskInput<'_> {
    pub(super) fn abort_requested(&self) -> bool {
        self.state.is_some_and(JobState::abort_requested)
    }
}

impl<'a> From<&'a Job> for TaskInput<'a> {
    fn from(job: &'a Job) -> Self {
        TaskInput {
            task: &job.task,
            input: &job.input,
            limits: &job.limits,
            state: Some(&job.state),
        }
    }
}

fn crashed(job: TaskInput<'_>, reason: String) -> RawOutcome {
    RawOutcome::worker_crashed(job.task, reason)
}

impl Supervisor {
    /// Runs one job: a batch of one. [`TaskHandle::abort`](crate::TaskHandle::abort)
    /// at this level kills the worker process running the task (the slot
    /// then starts a replacement, as after a crash).
    pub(super) fn run(&self, slot: &mut Slot, job: &Job) -> RawOutcome {
        let input = TaskInput::from(job);
        if input.abort_requested() {
            return crashed(input, "aborted before it reached a worker".into());
        }
        let mut sink = Collect::new(1);
        self.run_batch(slot, &[input], &mut sink);
        sink.0
            .pop()
            .flatten()
            .unwrap_or_else(|| crashed(input, "no outcome".into()))
    }

    /// Runs `jobs` on the slot's worker process, as many per request frame
    /// as fit (inputs up to [`MAX_INPUT`] in all, and no more than the worker
    /// may run before it is recycled), handing each outcome to `sink` as
    /// soon as the worker answers it. The worker answers each task as it
    /// finishes, so a worker lost in the middle of a batch fails only the
    /// task it was running ([`Error::WorkerCrashed`] on that task); tasks it
    /// had answered keep their results and tasks it had not started go to
    /// a replacement.
    ///
    /// A task begins ([`BatchSink::begin`]) when the worker gets to it: when
    /// its frame is sent for the first task of a frame, else when the task
    /// before it is answered. A task cancelled before its frame is sent is
    /// not sent; one cancelled while it waited in the frame is run by the
    /// worker but its answer is dropped (it gets no outcome). While a task
    /// runs, its [`JobState::abort`] kills the worker; the tasks after it
    /// in the frame go to a replacement.
    pub(crate) fn run_batch(
        &self,
        slot: &mut Slot,
        jobs: &[TaskInput<'_>],
        sink: &mut dyn BatchSink,
    ) {
        let mut pending = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if job.input.len() > MAX_INPUT {
                let reason = format!(
                    "input of {} bytes is over the process executor's limit of {MAX_INPUT}",
                    job.input.len()
                );
                let outcome = RawOutcome {
                    result: Err(Error::Encode {
                        task: job.task.clone(),
                        reason,
                    }),
                    logs: TaskLogs::default(),
                };
                if sink.begin(i) {
                    sink.done(i, outcome);
                }
            } else {
                pending.push(i);
            }
        }
        let fail = |sink: &mut dyn BatchSink, i: usize, why: &str| {
            if sink.begin(i) {
                sink.done(i, crashed(jobs[i], why.to_string()));
            }
        };
        let mut undelivered = 0;
        loop {
            // Tasks cancelled while they waited are not sent.
            pending.retain(|&i| !jobs[i].state.is_some_and(JobState::is_cancelled));
            let Some(&first) = pending.first() else {
                break;
            };
            if let Err(why) = self.ensure_ready(slot) {
                for &i in &pending {
                    fail(sink, i, &why);
                }
                break;
            }
            let Some(proc) = slot.proc.as_mut() else {
                for &i in &pending {
                    fail(sink, i, "no worker process");
                }
                break;
            };
            if !sink.begin(first) {
                continue; // cancelled just now
            }
            if jobs[first].abort_requested() {
                // Aborted once it began (or its frame never reached a worker):
                // it alone fails, without costing a worker.
                pending.remove(0);
                fail(sink, first, "aborted before it reached a worker");
                continue;
            }
            let end = self.chunk_end(proc, jobs, &pending, 0);
            let chunk: Vec<usize> = pending.drain(..end).collect();
            match self.call_batch(proc, jobs, &chunk, sink) {
                Ok(()) => {
                    proc.tasks += chunk.len() as u64;
                    undelivered = 0;
                    if self
                        .options
                        .max_tasks_per_worker
                        .is_some_and(|max| proc.tasks >= max)
                    {
                        // Recycle: ask it to exit, start the next one.
                        if let Some(mut old) = slot.proc.take() {
                            old.reap(false);
                        }
                        lock(&self.registry).recycled += 1;
                        self.replace_soon(slot);
                    }
                }
                Err((_, Failure::NotDelivered(why))) => {
                    slot.proc = None;
                    lock(&self.registry).crashed += 1;
                    undelivered += 1;
                    if undelivered >= 2 {
                        for &i in &chunk {
                            fail(sink, i, &why);
                        }
                        undelivered = 0;
                        continue;
                    }
                    tracing::warn!(
                        "{why} while idle; {} goes to a new worker",
                        jobs[chunk[0]].task
                    );
                    pending.splice(0..0, chunk);
                }
                Err((answered, Failure::Lost(why))) => {
                    slot.proc = None;
                    lock(&self.registry).crashed += 1;
                    let lost = chunk[answered];
                    tracing::warn!("{}: {why}", jobs[lost].task);
                    let requeued = chunk.len() - answered - 1;
                    if requeued > 0 {
                        tracing::warn!(
                            "{requeued} task(s) the lost worker had not started go to a new worker"
                        );
                    }
                    // A task cancelled while it waited in the frame gets no outcome.
                    if !jobs[lost].state.is_some_and(JobState::is_cancelled) {
                        fail(sink, lost, &why);
                    }
                    pending.splice(0..0, chunk[answered + 1..].iter().copied());
                    undelivered = 0;
                    self.replace_soon(slot);
                }
                Err((answered, Failure::KilledForAnother(why))) => {
                    slot.proc = None;
                    lock(&self.registry).crashed += 1;
                    tracing::warn!(
                        "{why}; the {} task(s) it had not answered go to a new worker",
                        chunk.len() - answered
                    );
                    pending.splice(0..0, chunk[answered..].iter().copied());
                    undelivered = 0;
                    self.replace_soon(slot);
                }
            }
        }
    }

    /// The end of the next chunk of `pending` from `start`: at least one job,
    /// at most [`MAX_BATCH`], inputs (plus [`REQUEST_OVERHEAD`] each) up to
    /// [`MAX_INPUT`] in all, within the worker's recycle budget.
    fn chunk_end(
        &self,
        proc: &WorkerProc,
        jobs: &[TaskInput<'_>],
        pending: &[usize],
        start: usize,
    ) -> usize {
        let budget = self.options.max_tasks_per_worker.map_or(usize::MAX, |max| {
            usize::try_from(max.saturating_sub(proc.tasks).max(1)).unwrap_or(usize::MAX)
        });
        let mut end = start;
        let mut bytes = 0usize;
        while end < pending.len() && end - start < budget.min(MAX_BATCH) {
            let len = jobs[pending[end]].input.len() + REQUEST_OVERHEAD;
            if end > start && bytes.saturating_add(len) > MAX_INPUT {
                break;
            }
            bytes = bytes.saturating_add(len);
            end += 1;
        }
        end
    }

    /// How long the supervisor waits for `job`'s answer: its deadline plus the grace.
    fn patience(&self, job: TaskInput<'_>) -> Option<Duration> {
        job.limits
            .timeout
            .map(|t| t.saturating_add(self.options.grace))
    }

    /// Sends the jobs `chunk` (indices into `jobs`) to the worker in one
    /// frame and hands their outcomes to `sink`, one frame each (the first
    /// task has begun; each later one begins when the one before it is
    /// answered). On a failure, returns how many were answered before it
    /// and what happened.
    fn call_batch(
        &self,
        proc: &mut WorkerProc,
        jobs: &[TaskInput<'_>],
        chunk: &[usize],
        sink: &mut dyn BatchSink,
    ) -> Result<(), (usize, Failure)> {
        let first_id = proc.next_id;
        proc.next_id += chunk.len() as u64;
        let requests: Vec<Request<&serde_bytes::Bytes>> = chunk
            .iter()
            .zip(first_id..)
            .map(|(&i, id)| Request {
                id,
                index: jobs[i].task.index,
                limits: *jobs[i].limits,
                input: serde_bytes::Bytes::new(jobs[i].input),
            })
            .collect();
        if let Err(e) = frame::encode(&requests, &mut proc.buf) {
            let reason = format!("cannot encode the request for the worker: {e}");
            for &i in chunk {
                if sink.begin(i) {
                    sink.done(
                        i,
                        RawOutcome {
                            result: Err(Error::Encode {
                                task: jobs[i].task.clone(),
                                reason: reason.clone(),
                            }),
                            logs: TaskLogs::default(),
                        },
                    );
                }
            }
            return Ok(());
        }
        // Arm every task's abort: it kills the worker only while the worker
        // is on that task (`on_task` is the position in the chunk of the
        // task whose answer is awaited). A task waiting in the frame has not
        // begun, so its abort cancels it instead.
        let on_task = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let pid = proc.pid as libc::pid_t;
        let kill = {
            let killed = Arc::clone(&killed);
            move || {
                killed.store(true, Ordering::SeqCst);
                // SAFETY: kill(2) has no memory-safety preconditions. The
                // worker is not reaped while the guards live, except in the
                // instant a death is noticed (then the pid is a zombie's or,
                // at worst, just freed).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        };
        let _armed: Vec<AbortGuard<'_>> = chunk
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| {
                let state = jobs[i].state?;
                let on_task = Arc::clone(&on_task);
                let kill = kill.clone();
                Some(state.on_abort(move || {
                    if on_task.load(Ordering::SeqCst) == k {
                        kill();
                    }
                }))
            })
            .collect();
        let first = jobs[chunk[0]];
        let patience = self.patience(first);
        let deadline = patience.map(|p| Instant::now() + p);
        let written = match proc.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &proc.buf, deadline),
            None => Err(FrameError::Eof),
        };
        if written.is_ok() {
            let mut r = lock(&self.registry);
            r.requests += 1;
            r.tasks_sent += chunk.len() as u64;
        }
        match written {
            Ok(()) => {}
            Err(FrameError::TimedOut) => {
                let p = patience.unwrap_or_default();
                return Err((
                    0,
                    Failure::Lost(format!(
                        "{} (it did not read its request within {p:?}; killed it)",
                        proc.describe(true)
                    )),
                ));
            }
            Err(e) => {
                return Err((
                    0,
                    Failure::NotDelivered(format!(
                        "{} (sending the request failed: {e})",
                        proc.describe(false)
                    )),
                ));
            }
        }
        for (answered, (&i, id)) in chunk.iter().zip(first_id..).enumerate() {
            let job = jobs[i];
            // The worker runs the batch in order: each task's wait starts
            // when the one before it was answered.
            let deadline = match answered {
                0 => deadline,
                _ => self.patience(job).map(|p| Instant::now() + p),
            };
            // Its turn: a task cancelled while it waited has its answer dropped.
            let wanted = answered == 0 || sink.begin(i);
            on_task.store(answered, Ordering::SeqCst);
            if wanted && job.abort_requested() {
                // Aborted between its start and `on_task` naming it: the
                // aborter did not kill, so kill here (SeqCst on both sides).
                kill();
            }
            match self.read_outcome(proc, job, id, deadline) {
                Ok(outcome) if wanted => sink.done(i, outcome),
                Ok(_) => {}
                Err(Failure::Lost(why))
                    if killed.load(Ordering::SeqCst) && !job.abort_requested() =>
                {
                    return Err((answered, Failure::KilledForAnother(why)));
                }
                Err(failure) => return Err((answered, failure)),
            }
        }
        Ok(())
    }

    /// Reads the worker's answer to request `id` (for `job`) by `deadline`.
    fn read_outcome(
        &self,
        proc: &mut WorkerProc,
        job: TaskInput<'_>,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<RawOutcome, Failure> {
        let mut used = super::forward::CallsUsed::default();
        // Once the task has made a call, the next frame (its next call or
        // its outcome) is likely microseconds away: spin before sleeping.
        // A short task's answer is likely microseconds away too: polling
        // for it spares the worker a wake-up of this thread per task.
        let mut spin = super::forward::answer_spin();
        loop {
            match self.read_answer(proc, job, id, deadline, spin)? {
                Answer::Outcome(outcome) => return Ok(outcome),
                Answer::Call(call) => {
                    self.answer_call(proc, job, id, call, &mut used)?;
                    spin = super::forward::call_spin();
                }
            }
        }
    }

    /// Reads the worker's next frame about request `id`: the task's outcome, or a call it makes.
    fn read_answer(
        &self,
        proc: &mut WorkerProc,
        job: TaskInput<'_>,
        id: u64,
        deadline: Option<Instant>,
        spin: std::time::Duration,
    ) -> Result<Answer, Failure> {
        let payload = match proc.reader.read_frame_spinning(
            max_response(job.limits),
            deadline,
            spin,
        ) {
            Ok(payload) => payload,
            Err(FrameError::TimedOut) => {
                let p = self.patience(job).unwrap_or_default();
                let t = job.limits.timeout.unwrap_or_default();
                let g = self.options.grace;
                let killed = proc.describe(true);
                return Err(Failure::Lost(format!(
                    "worker process {} did not answer within {p:?} (the task's deadline {t:?} plus a grace of {g:?}); killed it: {killed}",
                    proc.pid
                )));
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                return Err(Failure::Lost(format!(
                    "worker process {} sent a bad frame ({e}); killed it",
                    proc.pid
                )));
            }
            Err(_) => {
                return Err(Failure::Lost(format!(
                    "{} while running the task",
                    proc.describe(false)
                )));
            }
        };
        let bad = |proc: &mut WorkerProc, what: String| {
            let pid = proc.pid;
            proc.reap(true);
            Failure::Lost(format!("worker process {pid} {what}; killed it"))
        };
        match frame::decode::<FromWorker>(&payload) {
            Ok(FromWorker::Call(call)) => Ok(Answer::Call(call)),
            Ok(FromWorker::Done(response)) if response.id == id => {
                Ok(Answer::Outcome(RawOutcome {
                    result: response.result.map(ByteBuf::into_vec).map_err(|mut e| {
                        if let Some(task) = e.task_mut() {
                            *task = job.task.clone();
                        }
                        e
                    }),
                    logs: response.logs,
                }))
            }
            Ok(FromWorker::Done(response)) => Err(bad(
                proc,
                format!("answered request {} instead of {id}", response.id),
            )),
            Ok(FromWorker::ProtocolError(why)) => {
                Err(bad(proc, format!("could not read its request: {why}")))
            }
            Err(e) => Err(bad(proc, format!("sent a bad frame ({e})"))),
        }
    }
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;
