//! The worker side: a [`Handler`] that runs a job's task in a [`Pool`] of
//! the job's isolation level and limits (one pool per job, kept while the
//! job's tasks keep coming), as a local folder run would run it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sandpool_cluster::{Broker, Handler, Job, Outcome, Status, TaskIn, WorkerOptions, WorkerStats};
use serde::{Deserialize, Serialize};

use crate::error::{Error, TaskRef};
use crate::exec::dispatch::{JobState, Reply};
use crate::exec::pipeline::CancelToken;
use crate::exec::pool::Pool;
use crate::folder::output;
use crate::folder::worker::is_transient;
use crate::runtime::instance::RawOutcome;
use crate::task::Task;
use sandpool_guest::FileInput;

use super::spec::Spec;

/// A failed task as a worker reports it; the collector gives it its input's
/// index and writes the same record a local run would.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Failed {
    pub error: Error,
    pub retries: u32,
}

/// A job's spec and pool, or why they could not be made.
type Ready = Result<(Spec, Pool<FileInput, String>), Error>;

struct TaskHandler {
    workers: usize,
    pools: Mutex<HashMap<String, Arc<Ready>>>,
}

impl TaskHandler {
    fn pool(&self, job: &Job) -> Arc<Ready> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(&job.id) {
            return Arc::clone(pool);
        }
        let built = (|| {
            let spec: Spec = serde_json::from_value(job.spec.clone())
                .map_err(|e| Error::Config(format!("job {}'s spec: {e}", job.id)))?;
            let task =
                Task::<FileInput, String>::from_bytes(spec.task.clone(), job.module.clone())?;
            let pool = Pool::builder(task)
                .workers(self.workers)
                .isolation(spec.isolation())
                .limits(spec.limits)
                .build()?;
            Ok((spec, pool))
        })();
        // Pools of jobs that no longer send tasks are dropped (their threads end).
        if pools.len() >= 4 {
            pools.clear();
        }
        let built = Arc::new(built);
        pools.insert(job.id.clone(), Arc::clone(&built));
        built
    }
}

fn failed(error: Error, retries: u32) -> Outcome {
    Outcome {
        status: Status::Error,
        body: serde_json::to_vec(&Failed { error, retries }).unwrap_or_default(),
    }
}

#[cfg(feature = "test-faults")]
fn fault(task: &TaskIn) {
    // The worker dies on this input (a poison input), every time.
    if std::env::var("SANDPOOL_NATS_FAULT_ABORT").is_ok_and(|n| n == task.name) {
        std::process::abort();
    }
    // The worker stops (SIGSTOP, as a stall would) on its first delivery of this input.
    if task.delivered == 1
        && std::env::var("SANDPOOL_NATS_FAULT_STOP").is_ok_and(|n| n == task.name)
    {
        // SAFETY: raising a signal in this process.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

impl Handler for TaskHandler {
    fn run(&self, job: Arc<Job>, task: TaskIn) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        #[cfg(feature = "test-faults")]
        fault(&task);
        let pool = self.pool(&job);
        Box::pin(async move {
            let (spec, pool) = match &*pool {
                Ok(ready) => ready,
                Err(e) => return failed(e.clone(), 0),
            };
            let input = FileInput {
                name: task.name,
                data: task.data,
            };
            let mut retries = 0;
            let result = loop {
                match run_raw(pool, &input).await {
                    Err(e) if retries < spec.retries && is_transient(&e) => retries += 1,
                    other => break other,
                }
            };
            // The output value as the task returned it, checked as a local
            // run checks it; the collector writes it as its kind says.
            let task = TaskRef::new(spec.task.as_str(), 0);
            match result.and_then(|bytes| {
                output::decode(&bytes, &task, &input.name)?;
                Ok(bytes)
            }) {
                Ok(bytes) => Outcome {
                    status: Status::Ok,
                    body: bytes,
                },
                Err(e) => failed(e, retries),
            }
        })
    }
}

/// Runs `input` in `pool` and returns the task's output value undecoded
/// (JSON, raw bytes or named files: `sandpool_guest::output`).
async fn run_raw(pool: &Pool<FileInput, String>, input: &FileInput) -> Result<Vec<u8>, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reply: Reply = Box::new(move |raw: RawOutcome| {
        let _ = tx.send(raw.result);
    });
    let job = pool.prepare(0, input, Arc::new(JobState::default()), reply)?;
    pool.enqueue(job)?;
    match rx.await {
        Ok(result) => result,
        // The job was dropped unanswered: the pool shut down.
        Err(_) => Err(Error::ShutDown {
            task: pool.task_ref(0),
        }),
    }
}

pub(super) fn serve(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    workers: usize,
    cancel: CancelToken,
) -> Result<WorkerStats, Error> {
    let handler = Arc::new(TaskHandler {
        workers: workers.max(1),
        pools: Mutex::default(),
    });
    let mut options = WorkerOptions::default();
    // As many tasks in flight as run at once: a worker that dies takes no
    // waiting task with it (which would count a delivery against it).
    options.concurrency = workers.max(1);
    let stopped = async move {
        while !cancel.is_cancelled() {
            tokio::time::sleep(super::TICK).await;
        }
    };
    runtime
        .block_on(sandpool_cluster::serve(broker, handler, options, stopped))
        .map_err(|e| Error::Config(e.to_string()))
}
