//! [`Broker`]: one connection to a NATS server with JetStream, the streams
//! and bucket sandpool uses, and the operations of a submitter/collector.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::schema::{self, ResultMsg, Status};
use crate::{ClusterError, Result};

/// The broker-side settings of a deployment.
///
/// ```
/// let s = sandpool_cluster::Settings::default();
/// assert_eq!(s.max_deliver, 5);
/// assert!(s.ack_wait >= std::time::Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// How long a delivered task may go without an ack or a heartbeat
    /// before it is delivered again (the workers' consumer).
    pub ack_wait: Duration,
    /// Deliveries of one task before it is given up on and recorded as lost.
    pub max_deliver: i64,
    /// How long results stay in the stream when no collector takes them.
    pub results_max_age: Duration,
    /// Window in which a resubmitted task (same `Nats-Msg-Id`) is dropped.
    pub duplicate_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            results_max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl Settings {
    /// These settings with another `ack_wait`.
    ///
    /// ```
    /// let s = sandpool_cluster::Settings::default().with_ack_wait(std::time::Duration::from_secs(2));
    /// assert_eq!(s.ack_wait.as_secs(), 2);
    /// ```
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// These settings with another `max_deliver` (at least 2: one
    /// delivery to run the task, the last to record it as lost).
    ///
    /// ```
    /// let s = sandpool_cluster::Settings::default().with_max_deliver(1);
    /// assert_eq!(s.max_deliver, 2);
    /// ```
    pub fn with_max_deliver(mut self, max_deliver: i64) -> Self {
        self.max_deliver = max_deliver.max(2);
        self
    }
}

/// A connection to a NATS server with JetStream, set up for sandpool.
#[derive(Clone)]
pub struct Broker {
    client: async_nats::Client,
    js: jetstream::Context,
    tasks: stream::Stream,
    results: stream::Stream,
    objects: object_store::ObjectStore,
    settings: Settings,
}

fn broker_error(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Broker(format!("{what}: {e}"))
}

/// Retries a broker call while the server is away (a restart), up to `patience`.
pub(crate) async fn retry<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    patience: Duration,
    mut call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() >= patience => return Err(broker_error(what, e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// How long a broker operation keeps trying through a server restart.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects to `url` (e.g. `nats://host:4222`) and makes sure the
    /// streams, the workers' consumer and the bucket exist. A URL that is
    /// not a NATS URL, or a server that does not answer within 5 s, is an
    /// error at once; later the client reconnects by itself.
    ///
    /// ```no_run
    /// # async fn f() -> sandpool_cluster::Result<()> {
    /// let broker = sandpool_cluster::Broker::connect("nats://127.0.0.1:4222", Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, settings: Settings) -> Result<Broker> {
        let connect_error = |reason: String| ClusterError::Connect {
            url: url.to_string(),
            reason,
        };
        let client = async_nats::ConnectOptions::new()
            .name("sandpool")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let js = jetstream::new(client.clone());
        let setup = |what: &str, e: &dyn std::fmt::Display| {
            ClusterError::Setup(format!(
                "{what}: {e} (is JetStream enabled on the server? `nats-server -js`)"
            ))
        };
        let tasks = js
            .get_or_create_stream(stream::Config {
                name: schema::TASKS_STREAM.into(),
                subjects: vec!["sandpool.task.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: settings.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| setup("the tasks stream", &e))?;
        let results = js
            .get_or_create_stream(stream::Config {
                name: schema::RESULTS_STREAM.into(),
                subjects: vec!["sandpool.result.>".into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: settings.results_max_age,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| setup("the results stream", &e))?;
        let objects = match js.get_object_store(schema::BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: schema::BUCKET.into(),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| setup("the object store", &e))?,
        };
        Ok(Broker {
            client,
            js,
            tasks,
            results,
            objects,
            settings,
        })
    }

    /// The settings this broker was set up with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The JetStream context (for the worker loop).
    pub(crate) fn js(&self) -> &jetstream::Context {
        &self.js
    }

    /// The results stream (for the worker loop's look-ups).
    pub(crate) fn results_stream(&self) -> &stream::Stream {
        &self.results
    }

    /// The workers' durable pull consumer, created (or updated to these
    /// settings) on first use.
    pub(crate) async fn workers_consumer(&self) -> Result<consumer::PullConsumer> {
        let config = consumer::pull::Config {
            durable_name: Some(schema::WORKERS_CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: self.settings.max_deliver,
            max_ack_pending: -1,
            ..Default::default()
        };
        self.tasks
            .create_consumer(config)
            .await
            .map_err(|e| ClusterError::Setup(format!("the workers' consumer: {e}")))
    }

    /// Stores a module (once: objects are named by their SHA-256) and
    /// returns its object name.
    pub async fn put_module(&self, wasm: &[u8]) -> Result<String> {
        let name = schema::module_object(wasm);
        if self.objects.info(&name).await.is_ok_and(|i| !i.deleted) {
            return Ok(name);
        }
        self.put_object(&name, wasm).await?;
        Ok(name)
    }

    async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<()> {
        retry(&format!("storing object {name}"), PATIENCE, || async {
            let mut reader = bytes;
            self.objects.put(name, &mut reader).await
        })
        .await
        .map(drop)
    }

    /// Reads a whole object.
    pub async fn get_object(&self, name: &str) -> Result<Vec<u8>> {
        retry(&format!("reading object {name}"), PATIENCE, || async {
            let mut object = self.objects.get(name).await.map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(bytes)
        })
        .await
    }

    /// Stores a job: the module's object name, the caller's spec and the
    /// job's epoch (part of every task's `Nats-Msg-Id`, so that a new run
    /// of the same job is not mistaken for a resubmission of the last one).
    pub async fn put_job(
        &self,
        job: &str,
        module: &str,
        spec: &serde_json::Value,
        epoch: &str,
    ) -> Result<()> {
        let body = serde_json::json!({ "module": module, "spec": spec, "epoch": epoch });
        self.put_object(&schema::job_object(job), body.to_string().as_bytes())
            .await
    }

    /// The epoch of a job that is stored (begun and not finished), if any.
    pub async fn job_epoch(&self, job: &str) -> Result<Option<String>> {
        let name = schema::job_object(job);
        match self.objects.info(&name).await {
            Ok(info) if !info.deleted => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(broker_error("reading a job", e)),
        }
        let body = self.get_object(&name).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| broker_error(&format!("job {job}'s spec is not JSON"), e))?;
        Ok(value["epoch"].as_str().map(str::to_string))
    }

    /// Submits one input; `msg_id` makes its `Nats-Msg-Id`
    /// (`{job}.{key}.{msg_id}`): the server drops a second task with the
    /// same id within the duplicate window. Inputs over
    /// [`schema::INLINE_MAX`] go to the object store first. Returns once
    /// the server has stored the task; true if the input went as an object.
    pub async fn submit(
        &self,
        job: &str,
        key: &str,
        name: &str,
        data: &[u8],
        msg_id: &str,
    ) -> Result<bool> {
        let subject = schema::task_subject(job, key);
        let id = format!("{job}.{key}.{msg_id}");
        let (payload, object) = if data.len() > schema::INLINE_MAX {
            let object = schema::input_object(job, key);
            self.put_object(&object, data).await?;
            (Bytes::from(schema::frame(name, &[])), Some(object))
        } else {
            (Bytes::from(schema::frame(name, data)), None)
        };
        retry(&format!("submitting {name}"), PATIENCE, || async {
            let mut publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id);
            if let Some(object) = &object {
                publish = publish.header(schema::OBJECT_HEADER, object.as_str());
            }
            self.js.send_publish(subject.clone(), publish).await?.await
        })
        .await?;
        Ok(object.is_some())
    }

    /// Removes every stored result of a job.
    pub async fn purge_results(&self, job: &str) -> Result<()> {
        retry("purging a job's results", PATIENCE, || async {
            self.results
                .purge()
                .filter(format!("sandpool.result.{job}.>"))
                .await
        })
        .await
        .map(drop)
    }

    /// Removes the stored result of one input (so that it can run again).
    pub async fn purge_result(&self, job: &str, key: &str) -> Result<()> {
        let subject = schema::result_subject(job, key);
        retry("purging a result", PATIENCE, || async {
            self.results.purge().filter(subject.clone()).await
        })
        .await
        .map(drop)
    }

    /// Closes a finished job: removes its spec and its large inputs'
    /// objects. Its results stay (until `results_max_age`, or until the
    /// same job starts afresh), so that a late duplicate is still refused;
    /// modules stay, shared by jobs.
    pub async fn finish_job(&self, job: &str, large_inputs: &[String]) -> Result<()> {
        for key in large_inputs {
            let _ = self.objects.delete(schema::input_object(job, key)).await;
        }
        let _ = self.objects.delete(schema::job_object(job)).await;
        Ok(())
    }

    /// The results of `job` from the start of the stream, in order,
    /// across server restarts.
    pub async fn results(&self, job: &str) -> Result<Results> {
        let mut results = Results {
            results: self.results.clone(),
            filter: format!("sandpool.result.{job}.>"),
            next: 1,
            messages: None,
            pending_at_start: 0,
        };
        let consumer = results.open().await?;
        results.pending_at_start = consumer.0;
        results.messages = Some(consumer.1);
        Ok(results)
    }

    /// Whether the server answers now (a round trip).
    pub async fn ping(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.client.flush())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// How long the results consumer may stay silent before it is replaced.
const QUIET: Duration = Duration::from_secs(2);

/// The results of one job, read in order by an ordered consumer that is
/// re-created after the last sequence seen if the server goes away.
pub struct Results {
    results: stream::Stream,
    filter: String,
    next: u64,
    messages: Option<consumer::pull::Ordered>,
    /// Results stored when the reading began (a collector reads these
    /// before it submits anything).
    pub pending_at_start: u64,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("filter", &self.filter)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Results {
    async fn open(&self) -> Result<(u64, consumer::pull::Ordered)> {
        retry("reading results", PATIENCE, || async {
            let consumer: consumer::Consumer<consumer::pull::OrderedConfig> = self
                .results
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: self.filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: self.next,
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let pending = consumer.cached_info().num_pending;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((pending, messages))
        })
        .await
    }

    /// The next result, waiting for one.
    pub async fn next(&mut self) -> Result<ResultMsg> {
        loop {
            // A consumer that goes quiet may be one the server forgot in a
            // restart (the client does not always notice): after a quiet
            // spell, read on from a new one (a cheap request).
            let item = match self.messages.as_mut() {
                Some(messages) => tokio::time::timeout(QUIET, messages.next())
                    .await
                    .unwrap_or(None),
                None => None,
            };
            match item {
                Some(Ok(message)) => {
                    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                    if sequence != 0 {
                        self.next = sequence + 1;
                    }
                    let Some((_, key)) = schema::split_subject(message.subject.as_str()) else {
                        continue;
                    };
                    let status = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(schema::STATUS_HEADER))
                        .and_then(|v| Status::parse(v.as_str()));
                    let Some(status) = status else { continue };
                    return Ok(ResultMsg {
                        key: key.to_string(),
                        status,
                        body: message.payload.clone(),
                        sequence,
                    });
                }
                // The consumer failed for good (the server went away for
                // long): start a new one after the last result seen.
                Some(Err(_)) | None => {
                    self.messages = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let (_, messages) = self.open().await?;
                    self.messages = Some(messages);
                }
            }
        }
    }
}
