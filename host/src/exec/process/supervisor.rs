//! The supervisor: a [`Backend`] whose per-thread worker is one
//! `sandpool worker` subprocess, started, watched, recycled and replaced.
//!
//! Each dispatcher thread drives one subprocess (the calls themselves are
//! `calls.rs`): it writes a request frame
//! (one task, or up to [`MAX_BATCH`] of a batch the queue handed over),
//! waits for each answer (at most the task's deadline plus a grace period),
//! and turns every way the worker can fail into an outcome for that one
//! task: a death (signal or exit) or a silence past the deadline is
//! [`Error::WorkerCrashed`] naming the signal, exit status or wait, and the
//! thread starts a replacement. A request that never reached the worker
//! (it died while idle) is retried once on the replacement. Start-ups that
//! fail in a row are bounded: past the limit the pool gives up and fails
//! its tasks with the reason instead of restarting forever.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::calls::TaskInput;
use super::child::{Registry, WorkerProc, locate_program};
use super::frame::{self, FrameError, FrameReader, set_nonblocking, write_frame};
use super::handoff::ModuleFiles;
use super::wire::{Greeting, Handshake, Hello, MAGIC, MAX_HANDSHAKE, PROTOCOL, ReadyInfo, VERSION};
use super::{ProcessOptions, ProcessStats, WorkerStart};
use crate::error::Error;
use crate::exec::dispatch::{Backend, BatchSink, Job};
use crate::runtime::compiled::Compiled;
use crate::runtime::instance::RawOutcome;
use crate::sync::lock;

/// Pause after the first failed start-up; doubles per failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The pipe buffer asked for a worker's requests: a whole request frame of
/// ~1 ms of small tasks fits (about 150 KiB for 1 KiB inputs). Not more,
/// and not for the answers (one small frame per task): Linux counts pipe
/// buffers per user (`pipe-user-pages-soft`, 64 MiB by default), and past
/// that limit every new pipe of the user gets a single page.
const PIPE_BYTES: usize = 256 << 10;

/// The per-thread state: this thread's worker process, if one is running.
pub(crate) struct Slot {
    pub(super) id: usize,
    pub(super) proc: Option<WorkerProc>,
}

/// Starts and supervises worker processes for one pool.
pub(crate) struct Supervisor {
    /// Workers started by `build`, taken by their threads.
    pub(super) spare: Mutex<Vec<Option<WorkerProc>>>,
    pub(super) program: PathBuf,
    pub(super) options: ProcessOptions,
    pub(super) hello: Vec<u8>,
    pub(super) registry: Arc<Mutex<Registry>>,
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
    pub(super) sup: Arc<Supervisor>,
}

impl ProcessBackend {
    /// Writes the module files, starts `workers` processes and waits until
    /// each has loaded the module. Fails if they cannot be started within the
    /// restart limit (e.g. the worker program is missing or crashes at start).
    pub fn start(
        name: &str,
        compiled: &Compiled,
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
            match compiled.serialize() {
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
        let files = ModuleFiles::write(wasm, serialized.as_deref(), compiled.fuel())
            .map_err(|e| Error::io("cannot write the module for the worker processes", &e))?;
        let hello = Hello {
            greeting: Greeting {
                magic: MAGIC,
                protocol: PROTOCOL,
                version: VERSION.into(),
            },
            name: name.to_string(),
            fuel: compiled.fuel(),
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

    fn takes_batches(&self) -> bool {
        true
    }

    /// Sends the jobs to the worker process many per request frame
    /// ([`Supervisor::run_batch`]).
    fn run_batch(&self, slot: &mut Slot, jobs: &[&Job], sink: &mut dyn BatchSink) {
        let inputs: Vec<TaskInput<'_>> = jobs.iter().map(|&job| TaskInput::from(job)).collect();
        self.sup.run_batch(slot, &inputs, sink);
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
            requests: r.requests,
            tasks_sent: r.tasks_sent,
            gave_up: r.gave_up.clone(),
            last_start: r.last_start.clone(),
        }
    }

    pub(super) fn gave_up(&self) -> Option<String> {
        lock(&self.registry).gave_up.clone()
    }

    /// Starts a worker process and sends it the handshake (it answers later).
    pub(super) fn spawn(&self) -> Result<WorkerProc, String> {
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
        frame::grow_pipe(&stdin, PIPE_BYTES);
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
            // The worker is gone (or going) before it read the handshake: the
            // same failure as one seen while waiting for its answer.
            return Err(format!(
                "{} before it was ready (the handshake could not be sent: {e})",
                proc.describe(true)
            ));
        }
        Ok(proc)
    }

    /// Waits for the worker's answer to the handshake.
    pub(super) fn handshake(&self, proc: &mut WorkerProc) -> Result<ReadyInfo, String> {
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
    pub(super) fn start_failed(&self, reason: String) -> Result<(), String> {
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

    pub(super) fn start_succeeded(&self, proc: &WorkerProc, info: ReadyInfo) {
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
    pub(super) fn ensure_ready(&self, slot: &mut Slot) -> Result<(), String> {
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
    pub(super) fn replace_soon(&self, slot: &mut Slot) {
        if slot.proc.is_none() && self.gave_up().is_none() {
            // A failure here is counted when the slot next needs the worker.
            slot.proc = self.spawn().ok();
        }
    }
}
