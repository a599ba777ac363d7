//! One worker thread of a folder run: takes inputs from the walk's queue
//! and, for each, checks for a done output, reads the file, runs the task
//! on this same thread and writes the result or the error record. It does
//! each step for a run of small inputs at a time (read them, run them,
//! write them), keeping the order. Only a failure crosses to another thread
//! (the caller's, for the summary).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sandpool_guest::FileInput;
use sandpool_guest::output::OutputRef;

use crate::codec;
use crate::error::{Error, ErrorKind, TaskRef};
use crate::exec::pipeline::CancelToken;
use crate::limits::Limits;

use super::input::{ByteBudget, Reserved, read_input};
use super::naming::{display_name, error_name, folder_id, id_of_bytes, result_name};
use super::output;
use super::runner::ThreadRunner;
use super::walk::{Entry, Feed};
use super::writer::OutDir;
use super::{Failure, FailureRecord, Retried};

/// Counters every worker adds to, read by the caller's thread for progress.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub skipped: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub unrecorded: AtomicU64,
    /// Inputs run again after a transient failure (at least once).
    pub retried: AtomicU64,
    /// Extra attempts in all.
    pub retries: AtomicU64,
    /// Set on the first failure when failing fast.
    pub stop: AtomicBool,
}

/// What the workers of one run share.
pub(crate) struct Context<'a> {
    pub feed: &'a Feed,
    pub out: &'a OutDir,
    pub root: &'a OwnedFd,
    pub budget: &'a ByteBudget,
    pub max_input: u64,
    pub limits: Limits,
    pub force: bool,
    pub fail_fast: bool,
    pub workers: usize,
    pub task: Arc<str>,
    pub counters: &'a Counters,
    pub cancel: &'a CancelToken,
    pub failures: crossbeam_channel::Sender<Failure>,
    /// Extra attempts allowed per input after a transient failure.
    pub max_retries: u32,
    pub retried: crossbeam_channel::Sender<Retried>,
}

/// Bytes of small inputs a worker reads ahead before running the first of
/// them: it does the file work of a run of inputs together, then runs
/// them, then writes their outputs, so the kernel's file paths and the
/// guest's code each run with warm caches instead of taking turns per file.
/// Memory: a worker holds at most this much read ahead (plus one input of
/// any size that ends the run), so the bound on input bytes in flight stays
/// per worker.
const READ_AHEAD_BYTES: usize = 256 << 10;

/// Runs worker `id` until the queue ends or the run is stopped.
pub(crate) fn work(cx: &Context<'_>, id: usize, mut runner: ThreadRunner<'_>) {
    // Temporary names: unique per worker without a syscall per name.
    let mut tmp = (id as u64) << 40;
    let mut local = std::collections::VecDeque::new();
    let mut staged: Vec<Staged<'_>> = Vec::new();
    while cx.feed.take(&mut local, cx.workers) {
        while !local.is_empty() {
            // Read a run of inputs.
            let mut bytes = 0usize;
            while bytes < READ_AHEAD_BYTES && !stopped(cx) {
                let Some(entry) = local.pop_front() else {
                    break;
                };
                let Some(item) = stage(cx, entry) else {
                    continue;
                };
                let ends_run = match &item.read {
                    Some(Ok((encoded, reserved))) => {
                        bytes += encoded.len();
                        reserved.bytes() > 0
                    }
                    _ => cx.fail_fast,
                };
                staged.push(item);
                if ends_run {
                    break;
                }
            }
            // Run them, in order; a stop leaves the rest unrun (not written).
            let ran = if staged.len() > 1
                && runner.batches()
                && cx.max_retries == 0
                && !cx.fail_fast
                && !stopped(cx)
            {
                run_together(cx, &mut runner, &mut staged);
                staged.len()
            } else {
                run_in_turn(cx, &mut runner, &mut staged)
            };
            // Write what ran.
            for item in staged.drain(..).take(ran) {
                finish(cx, item, &mut tmp);
            }
            if stopped(cx) {
                return;
            }
        }
    }
}

/// Runs the staged inputs one by one, stopping early on a stop (or, when
/// failing fast, after a failure); returns how many ran.
fn run_in_turn(
    cx: &Context<'_>,
    runner: &mut ThreadRunner<'_>,
    staged: &mut [Staged<'_>],
) -> usize {
    let mut ran = 0;
    for item in staged.iter_mut() {
        if stopped(cx) {
            break;
        }
        let failed = item.run(cx, runner);
        ran += 1;
        if failed && cx.fail_fast {
            break;
        }
    }
    ran
}

/// Runs the staged inputs as one batch ([`ThreadRunner::run_batch`]: one
/// frame to the worker process instead of one round trip per input). Used
/// without retries and fail-fast, which decide input by input.
fn run_together(cx: &Context<'_>, runner: &mut ThreadRunner<'_>, staged: &mut [Staged<'_>]) {
    let mut tasks = Vec::with_capacity(staged.len());
    let mut held = Vec::with_capacity(staged.len());
    let mut read_at = Vec::with_capacity(staged.len());
    for (k, item) in staged.iter_mut().enumerate() {
        match item.read.take() {
            Some(Ok((encoded, reserved))) => {
                tasks.push((item.task.clone(), encoded));
                held.push(reserved);
                read_at.push(k);
            }
            Some(Err(e)) => item.result = Some(Err(e)),
            None => {}
        }
    }
    let outcomes = runner.run_batch(tasks, &cx.limits);
    drop(held);
    for (k, outcome) in read_at.into_iter().zip(outcomes) {
        staged[k].result = Some(outcome.result);
    }
}

/// Whether the run is cancelled or failing fast after a failure.
fn stopped(cx: &Context<'_>) -> bool {
    cx.cancel.is_cancelled() || cx.counters.stop.load(Ordering::Relaxed)
}

/// One input between its read and its write.
struct Staged<'b> {
    entry: Entry,
    id: String,
    ok_may_exist: bool,
    task: TaskRef,
    input: String,
    /// The encoded input and its hold on the byte budget, or why there is
    /// none; taken when it runs.
    read: Option<Result<(Vec<u8>, Reserved<'b>), Error>>,
    /// The task's output value, once it ran.
    result: Option<Result<Vec<u8>, Error>>,
    retries: u32,
}

/// Checks for a done output (`None`: skipped) and reads and encodes the input.
fn stage<'b>(cx: &Context<'b>, entry: Entry) -> Option<Staged<'b>> {
    let id = match entry.unlisted {
        // A folder that could not be listed: its record sits beside it.
        Some(_) => folder_id(&entry.path),
        None => id_of_bytes(&entry.path),
    };
    let ok_name = result_name(&id);
    let ok_may_exist = cx.out.may_exist(&ok_name);
    if !cx.force
        && ((ok_may_exist && cx.out.holds_json(&ok_name)) || output::has_other(cx.out, &id))
    {
        cx.counters.skipped.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let task = TaskRef {
        task: Arc::clone(&cx.task),
        index: entry.index,
    };
    let input = display_name(&entry.path);
    let read = match &entry.unlisted {
        Some(why) => Err(Error::Io {
            context: format!("input folder {input}"),
            message: why.clone(),
        }),
        None => read_encoded(cx, &task, &entry.path, &input),
    };
    Some(Staged {
        entry,
        id,
        ok_may_exist,
        task,
        input,
        read: Some(read),
        result: None,
        retries: 0,
    })
}

impl Staged<'_> {
    /// Runs the task on the input read (or takes the read's failure);
    /// true if it failed. Gives the input's bytes back to the budget.
    fn run(&mut self, cx: &Context<'_>, runner: &mut ThreadRunner<'_>) -> bool {
        let Some(read) = self.read.take() else {
            return self.result.as_ref().is_some_and(Result::is_err);
        };
        let result = read.and_then(|(encoded, reserved)| {
            let output = run_with_retries(
                cx,
                runner,
                &self.task,
                encoded,
                &self.entry.path,
                &self.input,
                &mut self.retries,
            );
            drop(reserved);
            output
        });
        let failed = result.is_err();
        self.result = Some(result);
        failed
    }
}

/// Writes a staged input's output, or its error record.
fn finish(cx: &Context<'_>, item: Staged<'_>, tmp: &mut u64) {
    let Staged {
        entry,
        id,
        ok_may_exist,
        task,
        input,
        result,
        retries,
        ..
    } = item;
    let result = result.unwrap_or_else(|| Err(Error::Config("not run".into())));
    let written = result.and_then(|bytes| write_output(cx.out, &task, &id, &input, &bytes, tmp));
    let failure = match written {
        Ok(written) => {
            remove_stale(cx.out, &id, &written, ok_may_exist);
            cx.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(e) => e,
    };
    let err_name = error_name(&id);
    let ok_name = result_name(&id);
    let record = FailureRecord {
        id,
        input,
        index: entry.index,
        error: failure.kind(),
        message: if retries == 0 {
            failure.to_string()
        } else {
            format!(
                "{failure} (failed {} times: {retries} retries)",
                retries + 1
            )
        },
    };
    let mut body = serde_json::to_vec_pretty(&record).unwrap_or_default();
    body.push(b'\n');
    *tmp += 1;
    let written = cx.out.write_atomic(&err_name, &body, *tmp);
    if written.is_ok() {
        // A result from an earlier run (invalid, or redone by --force) is stale now.
        if ok_may_exist {
            let _ = cx.out.remove(&ok_name);
        }
        output::remove_others(cx.out, &record.id, None);
    }
    cx.counters.failed.fetch_add(1, Ordering::Relaxed);
    let failure = match written {
        Ok(()) => Failure {
            record,
            error_file: Some(cx.out.path().join(&err_name)),
            not_recorded: None,
        },
        Err(e) => {
            cx.counters.unrecorded.fetch_add(1, Ordering::Relaxed);
            Failure {
                record,
                error_file: None,
                not_recorded: Some(format!(
                    "cannot write {}: {e}",
                    cx.out.path().join(&err_name).display()
                )),
            }
        }
    };
    if cx.fail_fast {
        cx.counters.stop.store(true, Ordering::Relaxed);
        cx.feed.stop();
    }
    let _ = cx.failures.send(failure);
}

/// Whether a failure may pass on another attempt: a deadline or a worker
/// crash. A guest's own error, a trap, fuel or memory exhaustion are
/// properties of the input and would only repeat.
pub(crate) fn is_transient(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::Timeout | ErrorKind::WorkerCrashed)
}

/// Runs the task on `encoded`, and again (up to `max_retries` times) while
/// it fails transiently. Returns the last outcome and the kind of each
/// failure that was retried.
pub(crate) fn run_retrying(
    runner: &mut ThreadRunner<'_>,
    task: &TaskRef,
    encoded: Vec<u8>,
    limits: &Limits,
    max_retries: u32,
) -> (Result<Vec<u8>, Error>, Vec<ErrorKind>) {
    let mut encoded = Some(encoded);
    let mut errors: Vec<ErrorKind> = Vec::new();
    loop {
        let retries_left = (errors.len() as u32) < max_retries;
        let attempt = if retries_left {
            encoded.clone().unwrap_or_default()
        } else {
            encoded.take().unwrap_or_default()
        };
        match runner.run(task, attempt, limits).result {
            Err(e) if retries_left && is_transient(&e) => errors.push(e.kind()),
            result => return (result, errors),
        }
    }
}

/// [`run_retrying`] for a folder input: counts and reports its retries.
fn run_with_retries(
    cx: &Context<'_>,
    runner: &mut ThreadRunner<'_>,
    task: &TaskRef,
    encoded: Vec<u8>,
    path: &[u8],
    input: &str,
    retries: &mut u32,
) -> Result<Vec<u8>, Error> {
    let (result, errors) = run_retrying(runner, task, encoded, &cx.limits, cx.max_retries);
    if !errors.is_empty() {
        cx.counters
            .retries
            .fetch_add(errors.len() as u64, Ordering::Relaxed);
        cx.counters.retried.fetch_add(1, Ordering::Relaxed);
        let _ = cx.retried.send(Retried {
            input: input.to_string(),
            id: id_of_bytes(path),
            retries: errors.len() as u32,
            errors: errors.iter().map(|k| k.as_str().to_string()).collect(),
            succeeded: result.is_ok(),
        });
    }
    *retries = errors.len() as u32;
    result
}

/// After `written` (an output of input `id`) is in place: removes the
/// input's error record and any output of another kind from an earlier run
/// (`ok_may_exist`: whether `{id}.json` may exist).
pub(crate) fn remove_stale(out: &OutDir, id: &str, written: &str, ok_may_exist: bool) {
    let err_name = error_name(id);
    if out.may_exist(&err_name) {
        let _ = out.remove(&err_name);
    }
    let ok_name = result_name(id);
    if written != ok_name {
        if ok_may_exist {
            let _ = out.remove(&ok_name);
        }
        output::remove_others(out, id, Some(written));
    } else {
        output::remove_others(out, id, None);
    }
}

/// Checks the task's output and writes it as its kind says; returns the
/// name written (`{id}.json`, `{id}.{ext}` or `{id}.files`).
pub(crate) fn write_output(
    out: &OutDir,
    task: &TaskRef,
    id: &str,
    input: &str,
    bytes: &[u8],
    tmp: &mut u64,
) -> Result<String, Error> {
    *tmp += 1;
    let (name, written) = match output::decode(bytes, task, input)? {
        OutputRef::Json(json) => {
            let mut text = Vec::with_capacity(json.len() + 1);
            text.extend_from_slice(json.as_bytes());
            text.push(b'\n');
            let name = result_name(id);
            let written = out.write_atomic(&name, &text, *tmp);
            (name, written)
        }
        OutputRef::Bytes { ext, data } => {
            let name = output::bytes_name(id, ext);
            let written = out.write_atomic(&name, data, *tmp);
            (name, written)
        }
        OutputRef::Files(files) => {
            let name = output::files_name(id);
            let written = output::write_files(out, &name, &files, *tmp);
            (name, written)
        }
    };
    written.map_err(|e| {
        Error::io(
            format!("cannot write {}", out.path().join(&name).display()),
            &e,
        )
    })?;
    Ok(name)
}

/// Reads the input and encodes it as the task's `FileInput`.
fn read_encoded<'b>(
    cx: &Context<'b>,
    task: &TaskRef,
    path: &[u8],
    input: &str,
) -> Result<(Vec<u8>, Reserved<'b>), Error> {
    let (data, reserved) = read_input(cx.root, path, cx.max_input, cx.budget)
        .map_err(|e| e.into_error(task.clone(), input))?;
    let encoded = codec::encode(
        &FileInput {
            name: input.to_string(),
            data,
        },
        task,
    )?;
    Ok((encoded, reserved))
}
