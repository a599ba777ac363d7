//! The worker loop: pull tasks from the shared durable consumer, run each
//! through the [`Handler`] while heart-beating (`+WPI`) so that a slow task
//! is not redelivered, write the result with
//! `Nats-Expected-Last-Subject-Sequence: 0` (only the first result of an
//! input is stored; a late duplicate is refused with error 10071), and
//! only then ack. A redelivered task whose result exists is acked without
//! running; a task delivered for the `max_deliver`-th time is recorded as
//! [`Status::Lost`] instead of being run again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Mutex, Semaphore};

use crate::broker::{Broker, PATIENCE, retry};
use crate::schema::{self, Outcome, Status};
use crate::{ClusterError, Result};

/// A job as a worker sees it: its spec and its module, fetched once per
/// worker process from the object store.
#[derive(Debug)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// The submitter's spec (limits, isolation, ...), opaque here.
    pub spec: serde_json::Value,
    /// The module's bytes.
    pub module: Vec<u8>,
}

/// One task as a worker runs it.
#[derive(Debug)]
pub struct TaskIn {
    /// The input's key (subject token).
    pub key: String,
    /// The input's name as the submitter gave it.
    pub name: String,
    /// The input's bytes.
    pub data: Vec<u8>,
    /// Which delivery this is (1 for the first).
    pub delivered: u64,
}

/// Turns one input into one result; the `sandpool` crate's implementation
/// runs the job's wasm task.
pub trait Handler: Send + Sync + 'static {
    /// Runs `task` of `job`. A failure of the task is an [`Outcome`] with
    /// [`Status::Error`], not a panic.
    fn run(&self, job: Arc<Job>, task: TaskIn) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;
}

/// How a worker process runs.
///
/// ```
/// let o = sandpool_cluster::WorkerOptions::default();
/// assert!(o.concurrency >= 1);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Tasks in flight at once (pulled, running or being written).
    pub concurrency: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

/// What a worker did, reported when it stops.
///
/// ```
/// let s = sandpool_cluster::WorkerStats::default();
/// assert_eq!(s.ran, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks run whose result was stored.
    pub ran: u64,
    /// Tasks run whose result was refused: another worker's came first
    /// (this worker stalled past `ack_wait`, or the task was submitted twice).
    pub duplicates: u64,
    /// Redelivered tasks acked without running: their result existed.
    pub already_done: u64,
    /// Tasks recorded as lost after `max_deliver` deliveries.
    pub lost: u64,
}

#[derive(Default)]
struct Counters {
    ran: AtomicU64,
    duplicates: AtomicU64,
    already_done: AtomicU64,
    lost: AtomicU64,
}

/// Serves tasks until `shutdown` completes, then finishes the tasks in
/// flight (their results written and acked) and returns what it did.
///
/// ```no_run
/// # async fn f(broker: sandpool_cluster::Broker, handler: std::sync::Arc<dyn sandpool_cluster::Handler>) {
/// // Serve for an hour, then finish what is in flight.
/// let stats = sandpool_cluster::serve(&broker, handler, Default::default(), async {
///     tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
/// }).await;
/// # }
/// ```
pub async fn serve(
    broker: &Broker,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerStats> {
    let consumer = broker.workers_consumer().await?;
    let concurrency = options.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let jobs: Arc<Mutex<HashMap<String, Arc<Job>>>> = Arc::default();
    let counters = Arc::new(Counters::default());
    let mut running = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    'pull: loop {
        // Wait for a free slot, then take every free slot: no task waits
        // in this process while another could run it.
        let first = tokio::select! {
            () = &mut shutdown => break 'pull,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        let Ok(first) = first else { break };
        let mut permits = vec![first];
        while let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(p);
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(_) => {
                // The server is away (a restart): try again shortly.
                tokio::select! {
                    () = &mut shutdown => break 'pull,
                    () = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            }
        };
        while let Some(message) = batch.next().await {
            let Ok(message) = message else { continue };
            let Some(permit) = permits.pop() else {
                // More than asked for cannot happen; run it anyway.
                let (b, h, j, c) = (
                    broker.clone(),
                    handler.clone(),
                    jobs.clone(),
                    counters.clone(),
                );
                running.spawn(async move { handle(&b, &*h, &j, &c, message).await });
                continue;
            };
            let (b, h, j, c) = (
                broker.clone(),
                Arc::clone(&handler),
                Arc::clone(&jobs),
                Arc::clone(&counters),
            );
            running.spawn(async move {
                handle(&b, &*h, &j, &c, message).await;
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
    Ok(WorkerStats {
        ran: counters.ran.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        already_done: counters.already_done.load(Ordering::Relaxed),
        lost: counters.lost.load(Ordering::Relaxed),
    })
}

async fn load_job(
    broker: &Broker,
    jobs: &Mutex<HashMap<String, Arc<Job>>>,
    id: &str,
) -> Result<Arc<Job>> {
    let mut jobs = jobs.lock().await;
    if let Some(job) = jobs.get(id) {
        return Ok(Arc::clone(job));
    }
    let spec = broker.get_object(&schema::job_object(id)).await?;
    let spec: serde_json::Value = serde_json::from_slice(&spec)
        .map_err(|e| ClusterError::Broker(format!("job {id}'s spec is not JSON: {e}")))?;
    let module_name = spec["module"].as_str().unwrap_or_default().to_string();
    let module = broker.get_object(&module_name).await?;
    let job = Arc::new(Job {
        id: id.to_string(),
        spec: spec["spec"].clone(),
        module,
    });
    // A few jobs at a time are plenty; forget the oldest beyond that.
    if jobs.len() >= 8 {
        jobs.clear();
    }
    jobs.insert(id.to_string(), Arc::clone(&job));
    Ok(job)
}

/// Writes a result unless one exists; true if this one was stored.
async fn publish_result(broker: &Broker, subject: &str, status: Status, body: Bytes) -> bool {
    let published = retry("writing a result", PATIENCE, || async {
        let publish = jetstream::message::PublishMessage::build()
            .payload(body.clone())
            .header(schema::STATUS_HEADER, status.as_str())
            .expected_last_subject_sequence(0);
        let acked = match broker.js().send_publish(subject.to_string(), publish).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    })
    .await;
    // Not written within the patience: no ack either, so it is redelivered.
    published.unwrap_or(false)
}

async fn handle(
    broker: &Broker,
    handler: &dyn Handler,
    jobs: &Mutex<HashMap<String, Arc<Job>>>,
    counters: &Counters,
    message: jetstream::Message,
) {
    let delivered = message
        .info()
        .map(|i| i.delivered.max(1) as u64)
        .unwrap_or(1);
    let Some((job_id, key)) = schema::split_subject(message.subject.as_str()) else {
        // Not one of ours: take it off the queue.
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    let (job_id, key) = (job_id.to_string(), key.to_string());
    let result_subject = schema::result_subject(&job_id, &key);
    if delivered > 1
        && broker
            .results_stream()
            .get_last_raw_message_by_subject(&result_subject)
            .await
            .is_ok()
    {
        counters.already_done.fetch_add(1, Ordering::Relaxed);
        let _ = message.double_ack().await;
        return;
    }
    let max_deliver = broker.settings().max_deliver.max(2) as u64;
    if delivered >= max_deliver {
        let why = format!(
            "given up after {delivered} deliveries: the {} before this one ended without a result \
             (the worker running it died, or stalled past ack_wait)",
            delivered - 1
        );
        if publish_result(broker, &result_subject, Status::Lost, Bytes::from(why)).await {
            counters.lost.fetch_add(1, Ordering::Relaxed);
        }
        let _ = message.double_ack().await;
        return;
    }
    let Some((name, inline)) = schema::unframe(&message.payload) else {
        let body = Bytes::from("the task message is not a sandpool task (bad framing)");
        publish_result(broker, &result_subject, Status::Lost, body).await;
        let _ = message.double_ack().await;
        return;
    };
    let object = message
        .headers
        .as_ref()
        .and_then(|h| h.get(schema::OBJECT_HEADER))
        .map(|v| v.as_str().to_string());
    let ack_wait = broker.settings().ack_wait;
    let prepared = async {
        let job = load_job(broker, jobs, &job_id).await?;
        let data = match &object {
            Some(object) => broker.get_object(object).await?,
            None => inline.to_vec(),
        };
        Ok::<_, ClusterError>((job, data))
    };
    let (job, data) = match heartbeat(&message, ack_wait, prepared).await {
        Ok(prepared) => prepared,
        Err(_) => {
            // The broker is away or the job is gone: let it come back later.
            let _ = message.ack_with(AckKind::Nak(Some(ack_wait))).await;
            return;
        }
    };
    let task = TaskIn {
        key,
        name,
        data,
        delivered,
    };
    let outcome = heartbeat(&message, ack_wait, handler.run(job, task)).await;
    let stored = heartbeat(
        &message,
        ack_wait,
        publish_result(
            broker,
            &result_subject,
            outcome.status,
            Bytes::from(outcome.body),
        ),
    )
    .await;
    if stored {
        counters.ran.fetch_add(1, Ordering::Relaxed);
    } else {
        counters.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    // The result is stored (ours or an earlier one): the task is done.
    let _ = message.double_ack().await;
}

/// Runs `work`, telling the server every third of `ack_wait` that the
/// message is still being worked on.
async fn heartbeat<T>(
    message: &jetstream::Message,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    let period = (ack_wait / 3).max(Duration::from_millis(100));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}
