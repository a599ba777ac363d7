//! The collector of `sandpool run --nats`: lists the inputs like a local
//! run (same walk, same ids, same resume rule), stores the module and the
//! job, reads the results already stored, submits what is left and writes
//! every result or error record into the output folder with the local
//! run's names and atomic writer. Its own reads of the inputs fail an input
//! exactly as a local run's would (too large, unreadable, unlistable).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use sandpool_cluster::{Broker, ResultMsg, Status, schema};

use crate::error::{Error, TaskRef};
use crate::exec::pipeline::CancelToken;
use crate::folder::input::{ByteBudget, read_input};
use crate::folder::naming::{display_name, error_name, folder_id, id_of_bytes, result_name};
use crate::folder::output;
use crate::folder::worker::{remove_stale, write_output};
use crate::folder::writer::OutDir;
use crate::folder::{
    Failure, FailureRecord, FolderEvent, FolderJob, FolderSummary, Progress, open_dir, walk,
};
use crate::task::Task;
use sandpool_guest::FileInput;

use super::serve::Failed;
use super::spec::{Spec, job_id};

/// Failures kept in the summary (as a local run keeps).
const KEPT_FAILURES: usize = 10;

/// An input still waiting for its result.
#[derive(Clone)]
struct Pending {
    index: u64,
    path: Vec<u8>,
    id: String,
    name: String,
}

/// What the collector writes and counts.
struct Writer<'a> {
    out: &'a OutDir,
    task: Arc<str>,
    tmp: u64,
    succeeded: u64,
    failed: u64,
    unrecorded: u64,
    kept: Vec<Failure>,
}

impl Writer<'_> {
    /// Writes a task's output value (JSON, raw bytes or named files) as a
    /// local run's worker does.
    fn ok(&mut self, p: &Pending, body: &[u8]) -> Option<Failure> {
        let task = TaskRef::new(Arc::clone(&self.task), p.index);
        match write_output(self.out, &task, &p.id, &p.name, body, &mut self.tmp) {
            Ok(written) => {
                let ok_may_exist = self.out.may_exist(&result_name(&p.id));
                remove_stale(self.out, &p.id, &written, ok_may_exist);
                self.succeeded += 1;
                None
            }
            Err(e) => self.failed(p, e, 0),
        }
    }

    /// Writes `p`'s error record, as a local run's worker does.
    fn failed(&mut self, p: &Pending, mut error: Error, retries: u32) -> Option<Failure> {
        if let Some(task) = error.task_mut() {
            *task = TaskRef {
                task: Arc::clone(&self.task),
                index: p.index,
            };
        }
        let (ok_name, err_name) = (result_name(&p.id), error_name(&p.id));
        let record = FailureRecord {
            id: p.id.clone(),
            input: p.name.clone(),
            index: p.index,
            error: error.kind(),
            message: if retries == 0 {
                error.to_string()
            } else {
                format!("{error} (failed {} times: {retries} retries)", retries + 1)
            },
        };
        let mut body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        body.push(b'\n');
        self.tmp += 1;
        let written = self.out.write_atomic(&err_name, &body, self.tmp);
        if written.is_ok() && self.out.may_exist(&ok_name) {
            let _ = self.out.remove(&ok_name);
        }
        self.failed += 1;
        let failure = match written {
            Ok(()) => Failure {
                record,
                error_file: Some(self.out.path().join(&err_name)),
                not_recorded: None,
            },
            Err(e) => {
                self.unrecorded += 1;
                Failure {
                    record,
                    error_file: None,
                    not_recorded: Some(format!(
                        "cannot write {}: {e}",
                        self.out.path().join(&err_name).display()
                    )),
                }
            }
        };
        if self.kept.len() < KEPT_FAILURES {
            self.kept.push(failure.clone());
        }
        Some(failure)
    }

    /// Writes a result from the broker.
    fn result(&mut self, p: &Pending, result: &ResultMsg) -> Option<Failure> {
        match result.status {
            Status::Ok => self.ok(p, &result.body),
            Status::Error => match serde_json::from_slice::<Failed>(&result.body) {
                Ok(f) => self.failed(p, f.error, f.retries),
                Err(e) => self.failed(
                    p,
                    Error::Pool(format!("a worker's error record could not be read: {e}")),
                    0,
                ),
            },
            Status::Lost => {
                let reason = String::from_utf8_lossy(&result.body).into_owned();
                let error = Error::WorkerCrashed {
                    task: TaskRef::new(Arc::clone(&self.task), p.index),
                    reason,
                };
                self.failed(p, error, 0)
            }
        }
    }
}

/// Reads one input for submission, failing it as a local run would.
fn read(
    root: &OwnedFd,
    p: &Pending,
    max_input: u64,
    budget: &ByteBudget,
    task: &Arc<str>,
) -> Result<Vec<u8>, Error> {
    let input = &p.name;
    let task = TaskRef::new(Arc::clone(task), p.index);
    read_input(root, &p.path, max_input, budget)
        .map(|(data, _reserved)| data)
        .map_err(|e| e.into_error(task, input))
}

pub(super) fn run(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    task: &Task<FileInput, String>,
    job: &FolderJob,
    cancel: CancelToken,
    mut on_event: impl FnMut(FolderEvent<'_>),
) -> Result<FolderSummary, Error> {
    let started = Instant::now();
    if job.grant.is_some() {
        return Err(Error::Config(
            "a directory grant names a folder of this machine; it cannot apply on a cluster's workers"
                .into(),
        ));
    }
    let (_lock, out, out_id) = crate::folder::prepare_output(job, &mut on_event)?;
    let root = open_dir(&job.inputs, "input folder")?;
    let task_name: Arc<str> = Arc::clone(&task.module.name);
    let spec = Spec {
        task: task_name.to_string(),
        isolation: Spec::isolation_name(job.isolation).into(),
        limits: job.limits,
        retries: job.retries,
    };
    let broker_error = |e: sandpool_cluster::ClusterError| Error::Config(e.to_string());
    let module = schema::module_object(&task.module.wasm);
    let id = job_id(&module, &spec, &job.output);

    // The inputs, as a local run lists them.
    let mut writer = Writer {
        out: &out,
        task: Arc::clone(&task_name),
        tmp: 0,
        succeeded: 0,
        failed: 0,
        unrecorded: 0,
        kept: Vec::new(),
    };
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let (mut found, mut skipped) = (0u64, 0u64);
    let mut inside: Option<PathBuf> = None;
    let mut complete = true;
    walk::walk(
        &job.inputs,
        Some(out_id),
        |path, unlisted| {
            if cancel.is_cancelled() {
                complete = false;
                return false;
            }
            let index = found;
            found += 1;
            let p = Pending {
                index,
                id: match unlisted {
                    Some(_) => folder_id(&path),
                    None => id_of_bytes(&path),
                },
                name: display_name(&path),
                path,
            };
            if let Some(why) = unlisted {
                let error = Error::Io {
                    context: format!("input folder {}", p.name),
                    message: why,
                };
                if let Some(f) = writer.failed(&p, error, 0) {
                    on_event(FolderEvent::Failed(&f));
                }
                return true;
            }
            let ok_name = result_name(&p.id);
            if !job.force
                && ((out.may_exist(&ok_name) && out.holds_json(&ok_name))
                    || output::has_other(&out, &p.id))
            {
                skipped += 1;
                return true;
            }
            let key = schema::key_of(p.id.as_bytes());
            order.push(key.clone());
            pending.insert(key, p);
            true
        },
        |folder| {
            let stale = error_name(&folder_id(folder));
            if out.may_exist(&stale) {
                let _ = out.remove(&stale);
            }
        },
        |path| {
            inside = Some(PathBuf::from(
                <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path),
            ))
        },
    );
    if let Some(path) = &inside {
        on_event(FolderEvent::OutputInsideInputs(path));
    }
    let max_input = job.effective_max_input();
    let budget = ByteBudget::new(max_input.saturating_mul(2).max(64 << 20));

    let large = std::sync::Mutex::new(Vec::<String>::new());
    let collected = runtime.block_on(async {
        // A job still open (an interrupted or crashed run of the same
        // command) keeps its epoch: resubmitted tasks are then dropped by
        // the server as duplicates of those still queued.
        let epoch = match broker.job_epoch(&id).await.map_err(broker_error)? {
            Some(epoch) if !job.force => epoch,
            _ => {
                broker.purge_results(&id).await.map_err(broker_error)?;
                let epoch = format!("{:016x}", rand::random::<u64>());
                let name = broker
                    .put_module(&task.module.wasm)
                    .await
                    .map_err(broker_error)?;
                let spec = serde_json::to_value(&spec).unwrap_or_default();
                broker
                    .put_job(&id, &name, &spec, &epoch)
                    .await
                    .map_err(broker_error)?;
                epoch
            }
        };
        let mut results = broker.results(&id).await.map_err(broker_error)?;
        // Results stored before this run: collect them; a failure recorded
        // by an earlier run is run again (as a local re-run does).
        let mut again: Vec<(String, u64)> = Vec::new();
        for _ in 0..results.pending_at_start {
            let result = results.next().await.map_err(broker_error)?;
            let Some(p) = pending.get(&result.key) else {
                continue;
            };
            let recorded =
                out.may_exist(&error_name(&p.id)) && out.path().join(error_name(&p.id)).exists();
            if result.status != Status::Ok && recorded {
                again.push((result.key.clone(), result.sequence));
                continue;
            }
            if let Some(p) = pending.remove(&result.key)
                && let Some(f) = writer.result(&p, &result)
            {
                on_event(FolderEvent::Failed(&f));
            }
        }
        for (key, _) in &again {
            broker.purge_result(&id, key).await.map_err(broker_error)?;
        }
        let again: HashMap<String, u64> = again.into_iter().collect();

        // Submit the rest, 64 at a time, while the results come in.
        let (local_tx, mut local_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Error)>();
        let todo: Vec<(String, Pending)> = order
            .iter()
            .filter_map(|k| pending.get(k).map(|p| (k.clone(), p.clone())))
            .collect();
        let id = &id;
        let submit_all = futures::stream::iter(todo)
            .map(|(key, p)| {
                let (epoch, local_tx, root, budget, task_name, large) =
                    (&epoch, &local_tx, &root, &budget, &task_name, &large);
                let generation = again.get(&key).map(|s| format!("{epoch}.{s}"));
                async move {
                    match read(root, &p, max_input, budget, task_name) {
                        Ok(data) => {
                            let msg_id = generation.unwrap_or_else(|| epoch.clone());
                            let object = broker.submit(id, &key, &p.name, &data, &msg_id).await?;
                            if object {
                                large.lock().unwrap_or_else(|p| p.into_inner()).push(key);
                            }
                            Ok(())
                        }
                        Err(e) => {
                            let _ = local_tx.send((key, e));
                            Ok(())
                        }
                    }
                }
            })
            .buffer_unordered(64)
            .fold(Ok(()), |acc, r| async move { acc.and(r) });
        tokio::pin!(submit_all);
        // The results are read by a task of their own: `select!` below
        // drops the branches that did not fire, and a read of the results
        // consumer must never be cut in half (it would stall the reader).
        let (results_tx, mut results_rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = async move {
            loop {
                let result = results.next().await;
                let failed = result.is_err();
                if results_tx.send(result).is_err() || failed {
                    break;
                }
            }
        };
        tokio::pin!(reader);
        let mut reader_done = false;
        let mut submitted = false;
        let mut ticks = tokio::time::interval(super::TICK);
        let mut cancelled = false;
        let progress = |w: &Writer<'_>| Progress {
            total: found,
            listed: complete,
            skipped,
            succeeded: w.succeeded,
            failed: w.failed,
            elapsed: started.elapsed(),
        };
        while !pending.is_empty() {
            tokio::select! {
                done = &mut submit_all, if !submitted => {
                    submitted = true;
                    done.map_err(broker_error)?;
                }
                local = local_rx.recv() => {
                    if let Some((key, error)) = local
                        && let Some(p) = pending.remove(&key)
                        && let Some(f) = writer.failed(&p, error, 0)
                    {
                        on_event(FolderEvent::Failed(&f));
                    }
                }
                () = &mut reader, if !reader_done => reader_done = true,
                Some(result) = results_rx.recv() => {
                    let result = result.map_err(broker_error)?;
                    if let Some(p) = pending.remove(&result.key)
                        && let Some(f) = writer.result(&p, &result)
                    {
                        on_event(FolderEvent::Failed(&f));
                    }
                }
                _ = ticks.tick() => {
                    on_event(FolderEvent::Progress(progress(&writer)));
                    if cancel.is_cancelled() {
                        cancelled = true;
                        break;
                    }
                }
            }
        }
        if !cancelled && complete {
            let large = std::mem::take(&mut *large.lock().unwrap_or_else(|p| p.into_inner()));
            broker.finish_job(id, &large).await.map_err(broker_error)?;
        }
        on_event(FolderEvent::Progress(progress(&writer)));
        Ok::<_, Error>(cancelled)
    })?;
    let not_run = pending.len() as u64;
    Ok(FolderSummary {
        total: found,
        skipped,
        succeeded: writer.succeeded,
        failed: writer.failed,
        unrecorded: writer.unrecorded,
        not_run,
        cancelled: collected || !complete,
        failures: writer.kept,
        retried: 0,
        retries: 0,
        retried_inputs: Vec::new(),
        output: job.output.clone(),
        output_inside_inputs: inside,
        seconds: started.elapsed().as_secs_f64(),
    })
}
