//! Running one task in a fresh wasm instance: the unit of work of the
//! in-process level (one call per task on a pool thread) and of the
//! `sandpool worker` process (one call per request).
//!
//! A task gets its own `Store` and instance from the module's `InstancePre`
//! (a pooling allocator slot), its input copied in, the run export called
//! under its limits, and its output copied out. The instance is then
//! dropped, so no state survives into the next task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::abi;
use super::module::CompiledModule;
use super::store::new_store;
use super::trap::classify;
use crate::capability::imports::{CallBackend, CallState};
use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::CapturedStream;
use crate::sandbox::grant::{FileTable, GrantRoot};

/// What a task left behind besides its result: captured output and timing.
///
/// ```
/// use sandpool::{Pool, Task};
/// // A guest that returns an empty output and writes nothing.
/// let wat = r#"(module
///   (memory (export "memory") 1)
///   (func (export "sandpool_abi_version") (result i32) i32.const 1)
///   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
///   (func (export "sandpool_run") (param i32 i32) (result i64)
///     (i32.store8 (i32.const 0) (i32.const 0))
///     (i64.const 1)))"#;
/// let pool = Pool::builder(Task::<(), ()>::from_bytes("quiet", wat.into())?).build()?;
/// let logs = pool.submit(&())?.wait_output().logs;
/// assert!(logs.stdout.bytes.is_empty() && logs.stderr.bytes.is_empty());
/// assert!(logs.elapsed > std::time::Duration::ZERO);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogs {
    /// Captured standard output (bounded by [`Limits::max_log`]).
    pub stdout: CapturedStream,
    /// Captured standard error (bounded by [`Limits::max_log`]).
    pub stderr: CapturedStream,
    /// Wall-clock time from instantiation to output copied out.
    pub elapsed: Duration,
}

/// The raw outcome of one task: encoded output bytes or an error, plus logs.
#[derive(Debug)]
pub(crate) struct RawOutcome {
    pub result: Result<Vec<u8>, Error>,
    pub logs: TaskLogs,
}

impl RawOutcome {
    /// A task lost by the host's side of running it (a worker thread that
    /// panicked, a worker process that died or could not start), with why.
    pub(crate) fn worker_crashed(task: &TaskRef, reason: String) -> Self {
        RawOutcome {
            result: Err(Error::WorkerCrashed {
                task: task.clone(),
                reason,
            }),
            logs: TaskLogs::default(),
        }
    }

    /// A task that failed before its guest ran: `error`, with the time since `started`.
    pub(crate) fn failed_since(started: Instant, error: Error) -> Self {
        RawOutcome {
            result: Err(error),
            logs: TaskLogs {
                elapsed: started.elapsed(),
                ..TaskLogs::default()
            },
        }
    }
}

/// Refuses a per-task fuel limit on an engine built without fuel metering.
pub(crate) fn fuel_available(metering: bool, limits: &Limits, task: &TaskRef) -> Result<(), Error> {
    if !metering && limits.fuel.is_some() {
        return Err(Error::Config(format!(
            "{task}: a fuel limit needs a pool built with fuel metering (PoolBuilder::fuel_metering)"
        )));
    }
    Ok(())
}

/// Runs one task of `module` on `input` (already encoded) in a fresh
/// instance, with the pool's granted directory, if any, visible to the guest.
pub(crate) fn run_fresh(
    module: &CompiledModule,
    limits: &Limits,
    task: &TaskRef,
    input: &[u8],
    grant: Option<&Arc<GrantRoot>>,
    calls: Option<&CallBackend>,
) -> RawOutcome {
    let started = Instant::now();
    if let Err(e) = fuel_available(module.fuel, limits, task) {
        return RawOutcome::failed_since(started, e);
    }
    let mut store = match new_store(module, limits) {
        Ok(store) => store,
        Err(e) => return RawOutcome::failed_since(started, e),
    };
    if let Some(root) = grant {
        store.data_mut().files = Some(Box::new(FileTable::new(Arc::clone(root))));
    }
    if let Some(backend) = calls {
        store.data_mut().calls = Some(CallState::new(backend.clone(), limits));
    }
    let result = match module.instantiate(&mut store) {
        Ok(exports) => abi::call(&mut store, &exports, limits, task, input),
        Err(e) => Err(classify(&mut store, limits, task, e)),
    };
    let state = store.into_data();
    RawOutcome {
        result,
        logs: TaskLogs {
            stdout: state.stdout,
            stderr: state.stderr,
            elapsed: started.elapsed(),
        },
    }
}
