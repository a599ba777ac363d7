//! The in-process level (`Isolation::Instance`): a dispatcher backend that
//! runs each task in a fresh wasm instance on the worker thread itself,
//! abortable through the job's state.

use std::sync::Arc;

use crate::capability::imports::CallBackend;
use crate::error::Error;
use crate::exec::dispatch::{Backend, Job};
use crate::runtime::compiled::Compiled;
use crate::runtime::instance::RawOutcome;
use crate::sandbox::grant::GrantRoot;

/// Runs tasks in fresh instances of a compiled module, in this process.
pub(crate) struct InstanceBackend {
    pub module: Compiled,
    pub grant: Option<Arc<GrantRoot>>,
    /// Who answers the tasks' capability calls.
    pub calls: Option<CallBackend>,
}

impl Backend for InstanceBackend {
    type Worker = ();
    fn start_worker(&self, _id: usize) -> Result<(), Error> {
        Ok(())
    }
    fn run(&self, _worker: &mut (), job: &Job) -> RawOutcome {
        crate::exec::abort::with_job(&job.state, || {
            self.module.run_task_calling(
                &job.limits,
                &job.task,
                &job.input,
                self.grant.as_ref(),
                self.calls.as_ref(),
            )
        })
    }
}
