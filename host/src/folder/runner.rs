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
use crate::exec::dispatch::{Backend, Job};
use crate::exec::process::{ProcessBackend, ProcessOptions};
use crate::limits::Limits;
use crate::runtime::compiled::Compiled;
use crate::runtime::instance::{RawOutcome, TaskLogs};
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
            },
            SharedRunner::Process(backend) => ThreadRunner {
                shared: self,
                slot: backend.start_worker(id).ok(),
            },
        }
    }
}

/// One worker thread's way of running a task.
pub(crate) struct ThreadRunner<'a> {
    shared: &'a SharedRunner,
    slot: Option<<ProcessBackend as Backend>::Worker>,
}

impl ThreadRunner<'_> {
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
                None => RawOutcome {
                    result: Err(Error::WorkerCrashed {
                        task: task.clone(),
                        reason: "this thread's worker process could not be started".into(),
                    }),
                    logs: TaskLogs::default(),
                },
            },
        }));
        ran.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            RawOutcome {
                result: Err(Error::WorkerCrashed {
                    task: task.clone(),
                    reason: format!("host worker thread panicked: {what}"),
                }),
                logs: TaskLogs::default(),
            }
        })
    }
}
