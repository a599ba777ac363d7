//! Running one encoded task on the calling thread, for the folder path:
//! a worker thread that reads an input also runs its task and writes its
//! output, with no hand-off to another thread. At the instance level the
//! thread instantiates the compiled module itself; at the process level it
//! drives its own `sandpool worker` subprocess.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::capability::Capabilities;
use crate::capability::imports::CallBackend;
use crate::error::{Error, TaskRef};
use crate::exec::builder::Isolation;
use crate::exec::dispatch::{Backend, Collect, Job, moving_cost};
use crate::exec::process::{ProcessBackend, ProcessOptions};
use crate::limits::Limits;
use crate::runtime::compiled::Compiled;
use crate::runtime::instance::RawOutcome;
use crate::sandbox::grant::{GrantOptions, GrantRoot};
use crate::task::Task;

/// What every worker thread of a folder run shares.
pub(crate) enum SharedRunner {
    /// Fresh instances of this module, in this process.
    Instance {
        module: Compiled,
        grant: Option<Arc<GrantRoot>>,
        calls: CallBackend,
    },
    /// One worker subprocess per thread.
    Process(ProcessBackend),
}

/// A directory grant for a folder run's tasks (`sandpool run --dir`).
///
/// ```
/// let mut job = sandpool::FolderJob::new("in", "out");
/// job.grant = Some(sandpool::DirGrant {
///     host: "corpus".into(),
///     guest: "/data".into(),
///     access: sandpool::DirAccess::ReadOnly,
/// });
/// assert_eq!(job.grant.unwrap().guest, "/data");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory.
    pub host: std::path::PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Read-only or read-write.
    pub access: crate::sandbox::grant::DirAccess,
}

impl SharedRunner {
    /// Prepares `workers` runners of `task` at `isolation`.
    pub(crate) fn start<In, Out>(
        task: &Task<In, Out>,
        isolation: Isolation,
        limits: &Limits,
        grant: Option<&DirGrant>,
        capabilities: &Capabilities,
        workers: usize,
    ) -> Result<Self, Error> {
        if limits.memory == 0 {
            return Err(Error::Config("the memory limit must be above 0".into()));
        }
        let module = task.module.compiled_task(limits.fuel.is_some())?;
        if let Some(name) = capabilities.invalid_name() {
            return Err(Error::Config(format!("`{name}` is not a capability name")));
        }
        let session = capabilities.session_for(&task.module.name, &task.module.wasm)?;
        match isolation {
            Isolation::Instance => {
                let grant = match grant {
                    None => None,
                    Some(g) => GrantOptions {
                        dirs: vec![(g.host.clone(), g.guest.clone(), g.access)],
                        ..GrantOptions::default()
                    }
                    .open()?,
                };
                Ok(SharedRunner::Instance {
                    module,
                    grant,
                    calls: CallBackend::Local(session),
                })
            }
            Isolation::Process => {
                if grant.is_some() {
                    return Err(Error::Config(
                        "directory grants work with Isolation::Instance only (`--isolation instance`)".into(),
                    ));
                }
                let backend = ProcessBackend::start(
                    &task.module.name,
                    &module,
                    &task.module.wasm,
                    &ProcessOptions {
                        capabilities: Some(session),
                        ..Default::default()
                    },
                    workers,
                )?;
                Ok(SharedRunner::Process(backend))
            }
        }
    }

    /// The runner of worker thread `id`.
    pub(crate) fn worker(&self, id: usize) -> ThreadRunner<'_> {
        match self {
            SharedRunner::Instance { .. } => ThreadRunner {
                shared: self,
                slot: None,
                cost_ns: 0,
            },
            SharedRunner::Process(backend) => ThreadRunner {
                shared: self,
                slot: backend.start_worker(id).ok(),
                cost_ns: 0,
            },
        }
    }
}

/// One worker thread's way of running a task.
pub(crate) struct ThreadRunner<'a> {
    shared: &'a SharedRunner,
    slot: Option<<ProcessBackend as Backend>::Worker>,
    /// Moving average of a task's run time, in ns (0: none yet).
    cost_ns: u64,
}

/// Tasks that take longer than this (on average) are sent to a worker
/// process one per frame, so that Ctrl-C, which lets the tasks in flight
/// finish, never waits for a whole frame of slow ones.
const BATCH_TASKS_UNDER: std::time::Duration = std::time::Duration::from_millis(2);

fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    crate::exec::dispatch::panic_reason(&crate::sync::panic_message(panic))
}

impl ThreadRunner<'_> {
    /// Whether [`run_batch`](Self::run_batch) saves anything: at the
    /// process level, for tasks known to be short, it sends them to the
    /// worker in one frame (one round trip instead of one per task).
    pub(crate) fn batches(&self) -> bool {
        matches!(self.shared, SharedRunner::Process(_))
            && self.slot.is_some()
            && self.cost_ns > 0
            && self.cost_ns < BATCH_TASKS_UNDER.as_nanos() as u64
    }

    /// Runs `tasks` in order and returns one outcome per task. At the
    /// process level they go to this thread's worker in as few frames as
    /// fit; it still answers each task as it ends, so a worker lost in the
    /// middle fails only the task it was running, and the tasks after it go
    /// to its replacement.
    pub(crate) fn run_batch(
        &mut self,
        tasks: Vec<(TaskRef, Vec<u8>)>,
        limits: &Limits,
    ) -> Vec<RawOutcome> {
        let (SharedRunner::Process(backend), Some(slot)) = (self.shared, self.slot.as_mut()) else {
            return tasks
                .into_iter()
                .map(|(task, input)| self.run(&task, input, limits))
                .collect();
        };
        let jobs: Vec<Job> = tasks
            .into_iter()
            .map(|(task, input)| Job::direct(task, input, *limits))
            .collect();
        let refs: Vec<&Job> = jobs.iter().collect();
        let mut sink = Collect::new(jobs.len());
        let ran = catch_unwind(AssertUnwindSafe(|| {
            backend.run_batch(slot, &refs, &mut sink)
        }));
        let reason = match ran {
            Ok(()) => "the worker gave no outcome".to_string(),
            Err(panic) => panic_reason(&*panic),
        };
        let outcomes: Vec<RawOutcome> = jobs
            .iter()
            .zip(sink.0)
            .map(|(job, outcome)| {
                outcome.unwrap_or_else(|| RawOutcome::worker_crashed(&job.task, reason.clone()))
            })
            .collect();
        for outcome in &outcomes {
            self.record_cost(outcome);
        }
        outcomes
    }

    fn record_cost(&mut self, outcome: &RawOutcome) {
        self.cost_ns = moving_cost(self.cost_ns, outcome.logs.elapsed, 1);
    }

    /// Runs one task on `input` (encoded) and returns its outcome. A panic
    /// in the host while running it fails this task only.
    pub(crate) fn run(&mut self, task: &TaskRef, input: Vec<u8>, limits: &Limits) -> RawOutcome {
        let shared = self.shared;
        let slot = &mut self.slot;
        let ran = catch_unwind(AssertUnwindSafe(|| match shared {
            SharedRunner::Instance {
                module,
                grant,
                calls,
            } => module.run_task_calling(limits, task, &input, grant.as_ref(), Some(calls)),
            SharedRunner::Process(backend) => match slot.as_mut() {
                Some(slot) => backend.run(slot, &Job::direct(task.clone(), input, *limits)),
                None => RawOutcome::worker_crashed(
                    task,
                    "this thread's worker process could not be started".into(),
                ),
            },
        }));
        let outcome =
            ran.unwrap_or_else(|panic| RawOutcome::worker_crashed(task, panic_reason(&*panic)));
        self.record_cost(&outcome);
        outcome
    }
}
