//! Capability calls a worker forwards while it runs a task: the supervisor
//! answers each with the pool's one session, in this process (`capability/`),
//! counting the task's calls against its caps a second time.

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::calls::{Failure, TaskInput};
use super::child::WorkerProc;
use super::frame::{self, FrameError, write_frame};
use super::supervisor::Supervisor;
use super::wire::{CallReply, CallRequest};

/// How long each side of a forwarded call polls its pipe before it sleeps:
/// the worker waiting for the reply, and the supervisor waiting for the
/// task's next frame after it answered a call. A thread asleep in `read`
/// on an idle CPU takes tens of µs to wake on a VM (an inter-processor
/// interrupt through the hypervisor), twice per call; polling keeps the
/// CPU awake for the answer. The cost is bounded: at most this much CPU
/// per wait, so at most twice this per call when answers are slow (a
/// handler doing I/O, a guest computing between calls), and nothing for
/// tasks that make no calls. The poll loop yields the CPU between polls,
/// so a peer waiting for the same CPU still runs, and a poll that does not
/// pay off makes the next waits sleep at once (`frame::SPIN_BACKOFF`).
pub(super) const CALL_SPIN: Duration = Duration::from_micros(50);

/// Overrides [`CALL_SPIN`], in µs (`0`: always sleep at once), read once
/// per process; for measuring what the polling saves (benches/capability.rs).
pub(super) const CALL_SPIN_ENV: &str = "SANDPOOL_CALL_SPIN_US";

/// How long the supervisor polls for a task's answer before it sleeps.
/// The worker answers each task of a frame as it ends; when the thread
/// waiting for that answer sleeps, every answer pays for waking it (tens of
/// µs on a VM's idle vCPU). Polling catches the answers of short tasks, and
/// the poll's back-off (`frame::SPIN_BACKOFF`) makes it sleep at once for
/// long tasks. Measured (docs/performance.md, fourth pass): process-level
/// `map` 1.81× → 1.62× the instance level with 1 worker, 1.78× → 1.46×
/// with 2 (together with a larger request pipe, `supervisor::PIPE_BYTES`).
pub(super) const ANSWER_SPIN: Duration = Duration::from_micros(50);

/// Overrides [`ANSWER_SPIN`], in µs (`0`: always sleep at once), read once per process.
pub(super) const ANSWER_SPIN_ENV: &str = "SANDPOOL_ANSWER_SPIN_US";

/// The polling time of forwarded calls: [`CALL_SPIN`] unless [`CALL_SPIN_ENV`] sets it.
pub(super) fn call_spin() -> Duration {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| spin_setting(CALL_SPIN_ENV, CALL_SPIN))
}

/// The polling time for answers: [`ANSWER_SPIN`] unless [`ANSWER_SPIN_ENV`] sets it.
pub(super) fn answer_spin() -> Duration {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| spin_setting(ANSWER_SPIN_ENV, ANSWER_SPIN))
}

/// `env` in µs (at most 10 ms), or `default` when it is unset or not a number.
fn spin_setting(env: &str, default: Duration) -> Duration {
    std::env::var(env)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, |us| Duration::from_micros(us.min(10_000)))
}

/// The capability calls a task has made, as the supervisor counts them.
#[derive(Default)]
pub(super) struct CallsUsed {
    calls: u32,
    request_bytes: u64,
}

impl Supervisor {
    /// Answers a capability call of the task `job` (request `id`) that the
    /// worker forwarded: the pool's handler runs here, in this process, and
    /// its answer (or why it failed) goes back to the worker. The worker
    /// has already counted the call against the task's caps; the handler
    /// gets only a request that decodes as its type, so nothing a worker
    /// sends can reach the session but a well-formed request, and the
    /// supervisor counts the calls and request bytes against the caps too.
    pub(super) fn answer_call(
        &self,
        proc: &mut WorkerProc,
        job: TaskInput<'_>,
        id: u64,
        call: CallRequest,
        used: &mut CallsUsed,
    ) -> Result<(), Failure> {
        if call.id != id {
            let pid = proc.pid;
            proc.reap(true);
            return Err(Failure::Lost(format!(
                "worker process {pid} made a call for request {} while running {id}; killed it",
                call.id
            )));
        }
        // The task's time left, as the worker counts it, never more than its whole deadline.
        let remaining = match (call.remaining, job.limits.timeout) {
            (Some(r), Some(t)) => Some(r.min(t)),
            (r, t) => r.or(t),
        };
        let deadline = remaining.map(|r| Instant::now() + r);
        // The worker counts the task's calls against its caps; count again
        // here, so even a subverted worker cannot get past them.
        used.calls = used.calls.saturating_add(1);
        used.request_bytes = used.request_bytes.saturating_add(call.request.len() as u64);
        let over = if used.calls > job.limits.max_calls {
            Some("the task made more calls than Limits::max_calls (counted by the pool)")
        } else if used.request_bytes > job.limits.max_call_request {
            Some("the task's requests are over Limits::max_call_request (counted by the pool)")
        } else {
            None
        };
        let result = match (over, &self.options.capabilities) {
            (Some(why), _) => Err(why.to_string()),
            (None, Some(session)) => session.call(&call.name, &call.request, deadline, &|| {
                job.abort_requested()
            }),
            (None, None) => {
                Err("this pool grants no capabilities (PoolBuilder::capability)".into())
            }
        };
        let reply = CallReply {
            id,
            result: result.map(ByteBuf::from),
        };
        let sent = frame::encode(&reply, &mut proc.buf).and_then(|()| match proc.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &proc.buf, deadline.map(|d| d + self.options.grace)),
            None => Err(FrameError::Eof),
        });
        sent.map_err(|e| {
            Failure::Lost(format!(
                "{} (answering its capability call failed: {e})",
                proc.describe(false)
            ))
        })
    }
}
