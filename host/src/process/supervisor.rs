//! The supervisor: a [`Backend`] whose per-thread worker is one
//! `sandpool worker` subprocess, started, watched, recycled and replaced.
//!
//! Each dispatcher thread drives one subprocess: it writes a request frame,
//! waits for the answer (at most the task's deadline plus a grace period),
//! and turns every way the worker can fail into an outcome for that one
//! task: a death (signal or exit) or a silence past the deadline is
//! [`Error::WorkerCrashed`] naming the signal, exit status or wait, and the
//! thread starts a replacement. A request that never reached the worker
//! (it died while idle) is retried once on the replacement. Start-ups that
//! fail in a row are bounded: past the limit the pool gives up and fails
//! its tasks with the reason instead of restarting forever.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::frame::{self, FrameError, FrameReader, set_nonblocking, write_frame};
use super::handoff::ModuleFiles;
use super::wire::{
    FromWorker, Greeting, Handshake, Hello, MAGIC, MAX_HANDSHAKE, MAX_INPUT, PROTOCOL, ReadyInfo,
    Request, VERSION, WireLimits, max_response,
};
use super::{ProcessOptions, ProcessStats, WorkerStart};
use crate::dispatch::{Backend, Job};
use crate::error::Error;
use crate::instance::{RawOutcome, TaskLogs};
use crate::module::CompiledModule;

/// How long a worker asked to exit (stdin closed) may take before it is killed.
const EXIT_PATIENCE: Duration = Duration::from_secs(2);

/// Pause after the first failed start-up; doubles per failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The name of the worker program.
const PROGRAM: &str = "sandpool";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Finds the program to run as `PROGRAM worker`: the explicit option, else
/// `$SANDPOOL_WORKER_BIN`, else this executable if it is `sandpool`, else a
/// `sandpool` next to this executable or in its parent directory (where
/// cargo puts it relative to test and bench executables).
pub(crate) fn locate_program(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let checked = |path: PathBuf, source: &str| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Config(format!(
                "the worker program {} ({source}) is not a file",
                path.display()
            )))
        }
    };
    if let Some(path) = explicit {
        return checked(path.to_path_buf(), "PoolBuilder::worker_program");
    }
    if let Some(path) = std::env::var_os(super::WORKER_BIN_ENV).filter(|p| !p.is_empty()) {
        return checked(PathBuf::from(path), super::WORKER_BIN_ENV);
    }
    let exe = std::env::current_exe().map_err(|e| {
        Error::Config(format!(
            "cannot find the worker program (no current executable: {e})"
        ))
    })?;
    if exe.file_name().is_some_and(|n| n == PROGRAM) {
        return Ok(exe);
    }
    let near = exe
        .parent()
        .into_iter()
        .chain(exe.parent().and_then(Path::parent));
    for dir in near {
        let candidate = dir.join(PROGRAM);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Config(format!(
        "cannot find the `{PROGRAM}` program to run worker processes: set PoolBuilder::worker_program or ${}",
        super::WORKER_BIN_ENV
    )))
}

/// A signal's name, for crash reports.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}

/// "worker process 123 was killed by signal 9 (SIGKILL)" or "... exited with status 3".
pub(crate) fn describe_exit(pid: u32, status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => {
                let core = if status.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                };
                format!(
                    "worker process {pid} was killed by signal {signal} ({}{core})",
                    signal_name(signal)
                )
            }
            (None, Some(code)) => format!("worker process {pid} exited with status {code}"),
            (None, None) => format!("worker process {pid} ended ({status})"),
        },
        None => format!("worker process {pid} was lost (its exit status is unknown)"),
    }
}

/// Live worker pids and counters, shared by the supervisor and its processes.
#[derive(Debug, Default)]
struct Registry {
    pids: BTreeSet<u32>,
    started: u64,
    crashed: u64,
    recycled: u64,
    failed_starts: u64,
    failed_in_a_row: u32,
    gave_up: Option<String>,
    last_start: Option<WorkerStart>,
}

/// One `sandpool worker` child process.
struct WorkerProc {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    reader: FrameReader<ChildStdout>,
    spawned: Instant,
    ready: bool,
    tasks: u64,
    next_id: u64,
    buf: Vec<u8>,
    status: Option<Option<ExitStatus>>,
    registry: Arc<Mutex<Registry>>,
}

impl WorkerProc {
    /// Ends the process and reaps it: with `kill`, at once (SIGKILL); else
    /// closes its stdin and waits for it to exit, killing it if it takes
    /// longer than [`EXIT_PATIENCE`]. Returns its exit status (None if unknown).
    fn reap(&mut self, kill: bool) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return status;
        }
        drop(self.stdin.take());
        if kill {
            let _ = self.child.kill();
        }
        let give_up = Instant::now() + EXIT_PATIENCE;
        let mut nap = Duration::from_micros(50);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Err(_) => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.status = Some(status);
        lock(&self.registry).pids.remove(&self.pid);
        status
    }

    fn describe(&mut self, kill: bool) -> String {
        let status = self.reap(kill);
        describe_exit(self.pid, status)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        // An idle ready worker exits on EOF; one still starting is killed.
        let ready = self.ready;
        self.reap(!ready);
    }
}

/// How a call to a worker failed.
enum Failure {
    /// The request never fully reached the worker (it was already gone): safe to retry.
    NotDelivered(String),
    /// The worker was lost with the task in flight.
    Lost(String),
}

/// The per-thread state: this thread's worker process, if one is running.
pub(crate) struct Slot {
    id: usize,
    proc: Option<WorkerProc>,
}

/// Starts and supervises worker processes for one pool.
pub(crate) struct Supervisor {
    /// Workers started by `build`, taken by their threads.
    spare: Mutex<Vec<Option<WorkerProc>>>,
    program: PathBuf,
    options: ProcessOptions,
    hello: Vec<u8>,
    registry: Arc<Mutex<Registry>>,
    /// Last, so the module files outlive every worker.
    _files: ModuleFiles,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// The process-isolation backend of a pool.
pub(crate) struct ProcessBackend {
    sup: Arc<Supervisor>,
}

impl ProcessBackend {
    /// Writes the module files, starts `workers` processes and waits until
    /// each has loaded the module. Fails if they cannot be started within the
    /// restart limit (e.g. the worker program is missing or crashes at start).
    pub fn start(
        name: &str,
        compiled: &CompiledModule,
        wasm: &[u8],
        options: &ProcessOptions,
        workers: usize,
    ) -> Result<Self, Error> {
        if options.max_failed_starts == 0 {
            return Err(Error::Config("max_failed_starts must be at least 1".into()));
        }
        if options.max_tasks_per_worker == Some(0) {
            return Err(Error::Config(
                "max_tasks_per_worker must be at least 1".into(),
            ));
        }
        let program = locate_program(options.program.as_deref())?;
        let serialized = if options.precompiled {
            match compiled.module.serialize() {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    tracing::warn!(
                        "cannot serialize `{name}` for the workers ({e:#}); they will compile it"
                    );
                    None
                }
            }
        } else {
            None
        };
        let files = ModuleFiles::write(wasm, serialized.as_deref(), compiled.fuel)
            .map_err(|e| Error::io("cannot write the module for the worker processes", &e))?;
        let hello = Hello {
            greeting: Greeting {
                magic: MAGIC,
                protocol: PROTOCOL,
                version: VERSION.into(),
            },
            name: name.to_string(),
            fuel: compiled.fuel,
            wasm: files.wasm.clone(),
            precompiled: files.precompiled.clone(),
        };
        let mut hello_frame = Vec::new();
        frame::encode(&hello, &mut hello_frame)
            .map_err(|e| Error::Pool(format!("cannot encode the worker handshake: {e}")))?;
        let sup = Arc::new(Supervisor {
            spare: Mutex::new(Vec::new()),
            program,
            options: options.clone(),
            hello: hello_frame,
            registry: Arc::default(),
            _files: files,
        });
        // Start them all first (they load in parallel), then wait for each.
        let mut slots: Vec<Slot> = (0..workers)
            .map(|id| Slot {
                id,
                proc: sup.spawn().ok(),
            })
            .collect();
        for slot in &mut slots {
            sup.ensure_ready(slot).map_err(|why| {
                Error::Pool(format!("cannot start worker processes for `{name}`: {why}"))
            })?;
        }
        *lock(&sup.spare) = slots.into_iter().map(|slot| slot.proc).collect();
        Ok(ProcessBackend { sup })
    }

    /// The supervisor, for statistics.
    pub fn supervisor(&self) -> Arc<Supervisor> {
        Arc::clone(&self.sup)
    }
}

impl Backend for ProcessBackend {
    type Worker = Slot;

    fn start_worker(&self, id: usize) -> Result<Slot, Error> {
        let proc = lock(&self.sup.spare).get_mut(id).and_then(Option::take);
        Ok(Slot { id, proc })
    }

    fn run(&self, slot: &mut Slot, job: &Job) -> RawOutcome {
        self.sup.run(slot, job)
    }
}

fn crashed(job: &Job, reason: String) -> RawOutcome {
    RawOutcome {
        result: Err(Error::WorkerCrashed {
            task: job.task.clone(),
            reason,
        }),
        logs: TaskLogs::default(),
    }
}

impl Supervisor {
    /// A snapshot of the statistics.
    pub fn stats(&self) -> ProcessStats {
        let r = lock(&self.registry);
        ProcessStats {
            worker_pids: r.pids.iter().copied().collect(),
            started: r.started,
            crashed: r.crashed,
            recycled: r.recycled,
            failed_starts: r.failed_starts,
            gave_up: r.gave_up.clone(),
            last_start: r.last_start.clone(),
        }
    }

    fn gave_up(&self) -> Option<String> {
        lock(&self.registry).gave_up.clone()
    }

    /// Starts a worker process and sends it the handshake (it answers later).
    fn spawn(&self) -> Result<WorkerProc, String> {
        let mut command = Command::new(&self.program);
        command
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the worker's pipes are missing".into());
        };
        lock(&self.registry).pids.insert(pid);
        let mut proc = WorkerProc {
            child,
            pid,
            stdin: Some(stdin),
            reader: FrameReader::new(stdout),
            spawned: Instant::now(),
            ready: false,
            tasks: 0,
            next_id: 0,
            buf: Vec::new(),
            status: None,
            registry: Arc::clone(&self.registry),
        };
        let sent = match proc.stdin.as_mut() {
            Some(stdin) => set_nonblocking(stdin)
                .map_err(FrameError::Io)
                .and_then(|()| {
                    write_frame(
                        stdin,
                        &self.hello,
                        Some(Instant::now() + self.options.start_timeout),
                    )
                }),
            None => Err(FrameError::Eof),
        };
        if let Err(e) = sent {
            return Err(format!(
                "cannot send the handshake ({e}): {}",
                proc.describe(true)
            ));
        }
        Ok(proc)
    }

    /// Waits for the worker's answer to the handshake.
    fn handshake(&self, proc: &mut WorkerProc) -> Result<ReadyInfo, String> {
        let deadline = proc.spawned + self.options.start_timeout;
        let payload = match proc.reader.read_frame(MAX_HANDSHAKE, Some(deadline)) {
            Ok(payload) => payload,
            Err(FrameError::TimedOut) => {
                let timeout = self.options.start_timeout;
                return Err(format!(
                    "{} (it was not ready after {timeout:?}; killed it)",
                    proc.describe(true)
                ));
            }
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Malformed(_))) => {
                return Err(format!(
                    "{} is not a sandpool worker ({e}); killed it",
                    self.program.display()
                ));
            }
            Err(_) => return Err(format!("{} before it was ready", proc.describe(false))),
        };
        match frame::decode::<Handshake>(&payload) {
            Ok(Handshake::Ready(info)) => Ok(info),
            Ok(Handshake::Refused(why)) => Err(format!("the worker refused to start: {why}")),
            Err(e) => Err(format!(
                "{} is not a compatible sandpool worker (bad handshake: {e}); killed it",
                self.program.display()
            )),
        }
    }

    /// Counts a failed start-up; past the limit, gives up and says why.
    /// Otherwise sleeps a backoff before the caller tries again.
    fn start_failed(&self, reason: String) -> Result<(), String> {
        let mut r = lock(&self.registry);
        if let Some(why) = &r.gave_up {
            return Err(why.clone());
        }
        r.failed_starts += 1;
        r.failed_in_a_row += 1;
        let n = r.failed_in_a_row;
        if n >= self.options.max_failed_starts {
            let why = format!(
                "gave up starting `sandpool worker` processes after {n} failed start-ups in a row; the last: {reason}"
            );
            tracing::error!("{why}");
            r.gave_up = Some(why.clone());
            return Err(why);
        }
        drop(r);
        tracing::warn!("a worker process failed to start ({reason}); retrying");
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_BACKOFF);
        std::thread::sleep(backoff);
        Ok(())
    }

    fn start_succeeded(&self, proc: &WorkerProc, info: ReadyInfo) {
        if let Some(why) = &info.fallback {
            tracing::warn!(
                "worker process {} compiled the module: the precompiled one was refused ({why})",
                info.pid
            );
        }
        let mut r = lock(&self.registry);
        r.failed_in_a_row = 0;
        r.started += 1;
        r.last_start = Some(WorkerStart {
            pid: proc.pid,
            precompiled: info.precompiled,
            fallback: info.fallback,
            load_time: info.load,
            ready_after: proc.spawned.elapsed(),
        });
    }

    /// Makes sure the slot has a worker that has loaded the module.
    fn ensure_ready(&self, slot: &mut Slot) -> Result<(), String> {
        loop {
            if let Some(why) = self.gave_up() {
                slot.proc = None;
                return Err(why);
            }
            let proc = match &mut slot.proc {
                Some(proc) => proc,
                None => match self.spawn() {
                    Ok(proc) => slot.proc.insert(proc),
                    Err(why) => {
                        self.start_failed(why)?;
                        continue;
                    }
                },
            };
            if proc.ready {
                return Ok(());
            }
            match self.handshake(proc) {
                Ok(info) => {
                    proc.ready = true;
                    self.start_succeeded(proc, info);
                    return Ok(());
                }
                Err(why) => {
                    let why = format!("worker {}: {why}", slot.id);
                    slot.proc = None;
                    self.start_failed(why)?;
                }
            }
        }
    }

    /// Starts a replacement now, so it loads while the thread hands back the outcome.
    fn replace_soon(&self, slot: &mut Slot) {
        if slot.proc.is_none() && self.gave_up().is_none() {
            // A failure here is counted when the slot next needs the worker.
            slot.proc = self.spawn().ok();
        }
    }

    fn run(&self, slot: &mut Slot, job: &Job) -> RawOutcome {
        if job.input.len() > MAX_INPUT {
            let reason = format!(
                "input of {} bytes is over the process executor's limit of {MAX_INPUT}",
                job.input.len()
            );
            return RawOutcome {
                result: Err(Error::Encode {
                    task: job.task.clone(),
                    reason,
                }),
                logs: TaskLogs::default(),
            };
        }
        let mut undelivered = 0;
        loop {
            if job.state.abort_requested() {
                return crashed(job, "aborted before it reached a worker".into());
            }
            if let Err(why) = self.ensure_ready(slot) {
                return crashed(job, why);
            }
            let Some(proc) = slot.proc.as_mut() else {
                return crashed(job, "no worker process".into());
            };
            // TaskHandle::abort at this level kills the worker running the task
            // (the slot then starts a replacement). A zombie cannot be reused, so
            // the pid is only stale in the instant between reaping and this guard's drop.
            let pid = proc.pid as libc::pid_t;
            let armed = job.state.on_abort(move || {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            });
            let called = self.call(proc, job);
            drop(armed);
            match called {
                Ok(outcome) => {
                    proc.tasks += 1;
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
                    return outcome;
                }
                Err(Failure::NotDelivered(why)) => {
                    slot.proc = None;
                    lock(&self.registry).crashed += 1;
                    undelivered += 1;
                    if undelivered >= 2 {
                        return crashed(job, why);
                    }
                    tracing::warn!("{why} while idle; {} goes to a new worker", job.task);
                }
                Err(Failure::Lost(why)) => {
                    slot.proc = None;
                    lock(&self.registry).crashed += 1;
                    tracing::warn!("{}: {why}", job.task);
                    self.replace_soon(slot);
                    return crashed(job, why);
                }
            }
        }
    }

    /// Sends one task to the worker and reads its outcome.
    fn call(&self, proc: &mut WorkerProc, job: &Job) -> Result<RawOutcome, Failure> {
        let id = proc.next_id;
        proc.next_id += 1;
        let request = Request {
            id,
            index: job.task.index,
            limits: WireLimits::from(&job.limits),
            input: serde_bytes::Bytes::new(&job.input),
        };
        if let Err(e) = frame::encode(&request, &mut proc.buf) {
            let reason = format!("cannot encode the request for the worker: {e}");
            return Ok(RawOutcome {
                result: Err(Error::Encode {
                    task: job.task.clone(),
                    reason,
                }),
                logs: TaskLogs::default(),
            });
        }
        let patience = job
            .limits
            .timeout
            .map(|t| t.saturating_add(self.options.grace));
        let deadline = patience.map(|p| Instant::now() + p);
        let written = match proc.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &proc.buf, deadline),
            None => Err(FrameError::Eof),
        };
        match written {
            Ok(()) => {}
            Err(FrameError::TimedOut) => {
                let p = patience.unwrap_or_default();
                return Err(Failure::Lost(format!(
                    "{} (it did not read its request within {p:?}; killed it)",
                    proc.describe(true)
                )));
            }
            Err(e) => {
                return Err(Failure::NotDelivered(format!(
                    "{} (sending the request failed: {e})",
                    proc.describe(false)
                )));
            }
        }
        let payload = match proc.reader.read_frame(max_response(&job.limits), deadline) {
            Ok(payload) => payload,
            Err(FrameError::TimedOut) => {
                let p = patience.unwrap_or_default();
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
            Ok(FromWorker::Done(response)) if response.id == id => Ok(RawOutcome {
                result: response
                    .result
                    .map(ByteBuf::into_vec)
                    .map_err(|e| e.into_error(&job.task)),
                logs: response.logs.into(),
            }),
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
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_signal_name_or_status() {
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(
            describe_exit(7, Some(killed)),
            "worker process 7 was killed by signal 9 (SIGKILL)"
        );
        let aborted = ExitStatus::from_raw(libc::SIGABRT | 0x80);
        assert_eq!(
            describe_exit(7, Some(aborted)),
            "worker process 7 was killed by signal 6 (SIGABRT, core dumped)"
        );
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            describe_exit(7, Some(exited)),
            "worker process 7 exited with status 3"
        );
        assert!(describe_exit(7, None).contains("lost"));
    }

    #[test]
    fn an_explicit_worker_program_must_exist() {
        let err = locate_program(Some(Path::new("/no/such/sandpool"))).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.to_string().contains("/no/such/sandpool"));
    }
}
