//! Scale-out over NATS JetStream (feature `nats`): [`Cluster`], the
//! library side of `sandpool run --nats` and `sandpool worker --nats`.
//! The broker plumbing (streams, schema, the worker loop) is the
//! `sandpool-cluster` crate; this module adds what is sandpool's: the job
//! spec (`spec.rs`), running a job's task in a worker (`serve.rs`) and
//! collecting results into exactly the files a local [`run_folder`] writes
//! (`collect.rs`). Semantics and deployment: `docs/scaling.md`.
//!
//! [`run_folder`]: crate::run_folder

mod collect;
mod serve;
mod spec;

use std::time::Duration;

use sandpool_cluster::Broker;
pub use sandpool_cluster::{Settings as ClusterSettings, WorkerStats};

use crate::error::Error;
use crate::exec::pipeline::CancelToken;
use crate::task::Task;
use sandpool_guest::FileInput;

use super::{FolderEvent, FolderJob, FolderSummary};

/// A connection to a NATS JetStream server that runs folder jobs on the
/// `sandpool worker --nats` processes attached to it (on any machines), or
/// serves as one of those workers. The same vocabulary as a local run:
/// [`FolderJob`], [`FolderEvent`], [`FolderSummary`], [`CancelToken`].
///
/// ```no_run
/// use sandpool::{Cluster, FileInput, FolderJob, Task};
/// let task: Task<FileInput, String> = Task::from_file("doc_stats.wasm")?;
/// let cluster = Cluster::connect("nats://127.0.0.1:4222")?;
/// let job = FolderJob::new("inputs", "output");
/// let summary = cluster.run_folder(&task, &job, Default::default(), |_| {})?;
/// println!("{} succeeded, {} failed", summary.succeeded, summary.failed);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct Cluster {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    url: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the server at `url` with the default settings. A URL
    /// that is not a NATS URL, a server that is down, or one without
    /// JetStream is an [`Error::Config`] at once.
    ///
    /// ```
    /// let err = sandpool::Cluster::connect("nats://127.0.0.1:1").unwrap_err();
    /// assert!(err.to_string().contains("cannot connect to the NATS server"), "{err}");
    /// ```
    pub fn connect(url: &str) -> Result<Cluster, Error> {
        Self::connect_with(url, ClusterSettings::default())
    }

    /// Connects with explicit broker settings (`ack_wait`, `max_deliver`;
    /// they apply to the workers' shared consumer, which a worker sets up).
    ///
    /// ```
    /// let settings = sandpool::ClusterSettings::default().with_max_deliver(3);
    /// assert!(sandpool::Cluster::connect_with("not a url", settings).is_err());
    /// ```
    pub fn connect_with(url: &str, settings: ClusterSettings) -> Result<Cluster, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandpool-nats")
            .enable_all()
            .build()
            .map_err(|e| Error::Pool(format!("cannot start the NATS client's runtime: {e}")))?;
        let broker = runtime
            .block_on(Broker::connect(url, settings))
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Cluster {
            runtime,
            broker,
            url: url.to_string(),
        })
    }

    /// Runs `task` over the files of `job.inputs` on the cluster's workers
    /// and writes each result into `job.output` exactly as [`run_folder`]
    /// would, resuming like it: inputs whose result exists are not
    /// submitted. Returns when every input has a result or error record,
    /// or `cancel` is cancelled (the tasks already submitted stay queued;
    /// the same call again collects them). `job.workers` and `job.grant`
    /// do not apply (the workers decide their parallelism; a directory
    /// grant names a host path of this machine).
    ///
    /// [`run_folder`]: crate::run_folder
    pub fn run_folder(
        &self,
        task: &Task<FileInput, String>,
        job: &FolderJob,
        cancel: CancelToken,
        on_event: impl FnMut(FolderEvent<'_>),
    ) -> Result<FolderSummary, Error> {
        collect::run(&self.runtime, &self.broker, task, job, cancel, on_event)
    }

    /// Serves tasks of any job as a worker, `workers` at a time, until
    /// `cancel` is cancelled; then finishes the tasks in flight (results
    /// written, acked) and returns what it did.
    pub fn serve(&self, workers: usize, cancel: CancelToken) -> Result<WorkerStats, Error> {
        serve::serve(&self.runtime, &self.broker, workers, cancel)
    }

    /// Whether the server answers now.
    ///
    /// ```no_run
    /// let cluster = sandpool::Cluster::connect("nats://127.0.0.1:4222")?;
    /// assert!(cluster.is_connected());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn is_connected(&self) -> bool {
        self.runtime.block_on(self.broker.ping())
    }
}

/// How often a collector reports progress and checks for a cancel.
const TICK: Duration = Duration::from_millis(100);
