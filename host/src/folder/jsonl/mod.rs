//! JSON Lines mode (`sandpool run task.wasm records.jsonl -o results.jsonl`):
//! one input per line, one result line per input in input order, through a
//! reorder window bounded in lines and bytes; resumes from its output file.
//! Workers run tasks on their own threads, as a folder run's do.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec;
use crate::error::{Error, TaskRef};
use crate::exec::builder::Isolation;
use crate::exec::pipeline::CancelToken;
use crate::limits::Limits;
use crate::task::Task;
use sandpool_guest::FileInput;

mod output;
mod status;

pub use status::jsonl_status;

use output::open_output;

use super::input::{ByteBudget, Reserved};
use super::runner::{SharedRunner, ThreadRunner};
use super::worker::run_retrying;

/// One JSON Lines run: where lines come from and go, and how to run them.
///
/// ```
/// let mut job = sandpool::JsonlJob::new("records.jsonl", "results.jsonl");
/// job.id_field = Some("id".into());
/// job.retries = 1;
/// assert!(!job.force);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JsonlJob {
    /// The JSON Lines file to read; `-` reads standard input.
    pub input: PathBuf,
    /// The JSON Lines file to write (created, or resumed if it exists);
    /// `-` writes standard output (never resumed).
    pub output: PathBuf,
    /// A top-level field of each record that identifies it: copied into
    /// its result line as `id` and given to the task as `FileInput::name`.
    /// `None`: the line number identifies it.
    pub id_field: Option<String>,
    /// Start over: truncate the output instead of resuming from it.
    pub force: bool,
    /// Lines longer than this many bytes fail without being held
    /// (default: half of `limits.memory`).
    pub max_input: Option<u64>,
    /// Worker threads (default: the number of CPUs).
    pub workers: usize,
    /// Where each task runs.
    pub isolation: Isolation,
    /// Limits of every task.
    pub limits: Limits,
    /// Extra attempts per line after a transient failure (deadline, worker crash).
    pub retries: u32,
    /// Host capabilities every task may call (see [`FolderJob::capabilities`](crate::FolderJob::capabilities)).
    pub capabilities: crate::capability::Capabilities,
    /// Lines read but not yet written at most (the reorder window).
    pub window: usize,
}

impl JsonlJob {
    /// A job reading `input` and writing `output`, resuming, one worker per
    /// CPU, default limits, a window of 1,024 lines.
    ///
    /// ```
    /// let job = sandpool::JsonlJob::new("-", "-");
    /// assert_eq!(job.window, 1024);
    /// ```
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        JsonlJob {
            input: input.into(),
            output: output.into(),
            id_field: None,
            force: false,
            max_input: None,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            isolation: Isolation::default(),
            limits: Limits::default(),
            retries: 0,
            capabilities: Default::default(),
            window: 1024,
        }
    }
}

/// What a JSON Lines run did.
///
/// ```
/// let s = sandpool::JsonlSummary::default();
/// assert_eq!(s.lines, 0);
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct JsonlSummary {
    /// Input lines seen (including those skipped as already done).
    pub lines: u64,
    /// Lines whose result was already in the output (resumed past).
    pub skipped: u64,
    /// Lines computed successfully in this run.
    pub succeeded: u64,
    /// Lines written as error lines in this run.
    pub failed: u64,
    /// Lines run again after a transient failure.
    pub retried: u64,
    /// Extra attempts in all.
    pub retries: u64,
    /// Whether a torn last line (from an interrupted run) was cut off the output.
    pub truncated_torn_line: bool,
    /// Whether the run stopped early (Ctrl-C, or the reader of `-` went away).
    pub cancelled: bool,
    /// Whether the output was a pipe whose reader went away (`| head`): a
    /// normal end, not an error.
    pub output_closed: bool,
    /// Wall-clock time in seconds.
    pub seconds: f64,
}

/// One line on its way through the window.
struct Line<'b> {
    /// 0-based position in the input.
    index: u64,
    /// The line without its `\n` (and `\r`), or why it is not held.
    bytes: Result<Vec<u8>, String>,
    reserved: Reserved<'b>,
}

/// One result line, ready to write, with the bytes it holds in the budget.
struct Done<'b> {
    index: u64,
    text: Vec<u8>,
    ok: bool,
    _reserved: Reserved<'b>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::value::RawValue>,
    error: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct OkLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::value::RawValue>,
    ok: &'a serde_json::value::RawValue,
}

/// Runs `task` once per line of `job.input`, writing one result line per
/// input line to `job.output` in input order. `on_progress` hears the
/// summary so far about every 100 ms.
///
/// Each line's bytes reach the task as `FileInput { name, data }`: `data`
/// is the line without its newline, `name` the value of `id_field` (a
/// string's text, any other value's JSON) or the 1-based line number. A
/// result line is `{"line": N, "id": ..., "ok": <the task's JSON>}`; a
/// failed line is `{"line": N, "id": ..., "error": KIND, "message": ...}`,
/// where KIND is an error kind (`timeout`, `trap`, ...) or `not_json` (the
/// line is not a JSON value), `no_id` (the record lacks `id_field`),
/// `too_long` (over `max_input`). `id` appears with `id_field` only.
///
/// An existing output is resumed: its complete lines are the first inputs'
/// results, a torn last line is cut off, and that many input lines are
/// skipped (the input must be the same file as before). Errors before any
/// task runs (the input cannot be opened, the output is a folder or in
/// use, the module cannot start) are returned as `Err`.
///
/// ```
/// use sandpool::{FileInput, JsonlJob, Task};
/// let dir = std::env::temp_dir().join(format!("sandpool-jsonl-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("in.jsonl"), "{\"a\":1}\nnot json\n").unwrap();
/// // A task that returns the JSON document `{}` for any input.
/// let task: Task<FileInput, String> = Task::from_bytes("empty", br#"(module
///   (memory (export "memory") 1)
///   (data (i32.const 16) "\00\02{}")
///   (func (export "sandpool_abi_version") (result i32) i32.const 1)
///   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
///   (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0x1000000004))"#.to_vec())?;
/// let job = JsonlJob::new(dir.join("in.jsonl"), dir.join("out.jsonl"));
/// let s = sandpool::run_jsonl(&task, &job, Default::default(), |_| {})?;
/// assert_eq!((s.succeeded, s.failed), (1, 1));
/// let out = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
/// assert!(out.starts_with("{\"line\":1,\"ok\":{}}\n{\"line\":2,\"error\":\"not_json\""));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn run_jsonl(
    task: &Task<FileInput, String>,
    job: &JsonlJob,
    cancel: CancelToken,
    mut on_progress: impl FnMut(&JsonlSummary),
) -> Result<JsonlSummary, Error> {
    let started = Instant::now();
    if job.workers == 0 || job.window == 0 {
        return Err(Error::Config(
            "a JSON Lines run needs at least one worker and a window of one line".into(),
        ));
    }
    let stdin = job.input.as_os_str() == "-";
    let input: Box<dyn Read + Send> = if stdin {
        Box::new(std::io::stdin())
    } else {
        let meta = std::fs::metadata(&job.input).map_err(|e| {
            Error::io(
                format!("cannot open input file {}", job.input.display()),
                &e,
            )
        })?;
        if meta.is_dir() {
            return Err(Error::Io {
                context: format!("input {}", job.input.display()),
                message: "is a folder, not a JSON Lines file".into(),
            });
        }
        Box::new(File::open(&job.input).map_err(|e| {
            Error::io(
                format!("cannot open input file {}", job.input.display()),
                &e,
            )
        })?)
    };
    let (sink, done, torn): (Box<dyn Write + Send>, u64, bool) = if job.output.as_os_str() == "-" {
        (Box::new(std::io::stdout()), 0, false)
    } else {
        let (file, done, torn) = open_output(&job.output, job.force)?;
        (Box::new(file), done, torn)
    };
    let max_input = job.max_input.unwrap_or(job.limits.memory / 2);
    let shared = SharedRunner::start(
        task,
        job.isolation,
        &job.limits,
        None,
        &job.capabilities,
        job.workers,
    )?;
    let budget = ByteBudget::new(max_input.saturating_mul(2).max(64 << 20));
    let task_name = Arc::clone(&task.module.name);
    let (retried, retries) = (AtomicU64::new(0), AtomicU64::new(0));
    let lines_seen = AtomicU64::new(done);
    let mut summary = JsonlSummary {
        skipped: done,
        truncated_torn_line: torn,
        ..JsonlSummary::default()
    };
    let (lines_tx, lines_rx) = crossbeam_channel::bounded::<Line<'_>>(job.window);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done<'_>>();
    // One permit per line between reading and writing: the reorder window.
    let (permits_tx, permits_rx) = crossbeam_channel::bounded::<()>(job.window);
    for _ in 0..job.window {
        let _ = permits_tx.send(());
    }
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let mut write_error: Option<std::io::Error> = None;
    std::thread::scope(|s| {
        let (budget, cancel, lines_seen) = (&budget, &cancel, &lines_seen);
        let reader = std::thread::Builder::new()
            .name("sandpool-jsonl-reader".into())
            .spawn_scoped(s, move || {
                read_lines(
                    input,
                    done,
                    max_input,
                    budget,
                    &permits_rx,
                    cancel,
                    lines_seen,
                    lines_tx,
                )
            });
        if let Err(e) = reader {
            write_error = Some(e);
            return;
        }
        for id in 0..job.workers {
            let (lines_rx, done_tx, shared) = (lines_rx.clone(), done_tx.clone(), &shared);
            let (task_name, retried, retries) = (&task_name, &retried, &retries);
            let spawned = std::thread::Builder::new()
                .name(format!("sandpool-jsonl-{id}"))
                .stack_size(8 << 20)
                .spawn_scoped(s, move || {
                    let mut runner = shared.worker(id);
                    for line in lines_rx.iter() {
                        // Every line read gets its result line, even if the host
                        // panics on it: a missing line would stall the window.
                        let computed =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                compute_line(job, &mut runner, task_name, &line, retried, retries)
                            }));
                        let (text, ok) = computed.unwrap_or_else(|_| {
                            let mut text = serde_json::to_vec(&ErrorLine {
                                line: line.index + 1,
                                id: None,
                                error: "panic",
                                message: "the host panicked while running this line",
                            })
                            .unwrap_or_default();
                            text.push(b'\n');
                            (text, false)
                        });
                        let done = Done {
                            index: line.index,
                            text,
                            ok,
                            _reserved: line.reserved,
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                cancel.cancel();
                write_error = Some(e);
            }
        }
        drop((lines_rx, done_tx));
        // The writer: results in input order, a permit back per line written.
        let mut pending = std::collections::BTreeMap::new();
        let mut next = done;
        let mut last_tick = Instant::now();
        loop {
            let got = done_rx.recv_timeout(Duration::from_millis(100));
            match got {
                Ok(d) => {
                    pending.insert(d.index, d);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            while let Some(d) = pending.remove(&next) {
                next += 1;
                if write_error.is_none()
                    && let Err(e) = out.write_all(&d.text)
                {
                    cancel.cancel();
                    write_error = Some(e);
                }
                if d.ok {
                    summary.succeeded += 1;
                } else {
                    summary.failed += 1;
                }
                let _ = permits_tx.try_send(());
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                if write_error.is_none()
                    && let Err(e) = out.flush()
                {
                    cancel.cancel();
                    write_error = Some(e);
                }
                summary.lines = lines_seen.load(Ordering::Relaxed);
                on_progress(&summary);
            }
        }
        // Lines the reader read are all computed (none is dropped), so the
        // output stays contiguous even when the run is cancelled.
        drop(permits_tx);
    });
    if write_error.is_none()
        && let Err(e) = out.flush()
    {
        write_error = Some(e);
    }
    summary.lines = lines_seen.load(Ordering::Relaxed);
    summary.retried = retried.load(Ordering::Relaxed);
    summary.retries = retries.load(Ordering::Relaxed);
    summary.cancelled = cancel.is_cancelled();
    summary.seconds = started.elapsed().as_secs_f64();
    match write_error {
        // The reader of our standard output went away (`| head`): a normal end.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            summary.output_closed = true;
            Ok(summary)
        }
        Some(e) => Err(Error::io(
            format!("cannot write {}", job.output.display()),
            &e,
        )),
        None => Ok(summary),
    }
}

/// Reads lines, skipping the first `skip`, one window permit and its bytes
/// in the budget per line; stops at the end, on cancel, or when the
/// workers are gone.
#[allow(clippy::too_many_arguments)]
fn read_lines<'b>(
    input: Box<dyn Read + Send>,
    skip: u64,
    max_input: u64,
    budget: &'b ByteBudget,
    permits: &crossbeam_channel::Receiver<()>,
    cancel: &CancelToken,
    seen: &AtomicU64,
    lines: crossbeam_channel::Sender<Line<'b>>,
) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut index = 0u64;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let mut buf = Vec::new();
        let read = (&mut reader)
            .take(max_input.saturating_add(1))
            .read_until(b'\n', &mut buf);
        let bytes = match read {
            Ok(0) => return,
            Ok(_) if buf.last() != Some(&b'\n') && buf.len() as u64 > max_input => {
                // Too long to hold: skip the rest of it, keep its place.
                let _ = reader.skip_until(b'\n');
                Err(format!(
                    "the line is over {max_input} bytes (--max-input); not read"
                ))
            }
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                Ok(buf)
            }
            Err(e) => Err(format!("cannot read the line: {e}")),
        };
        let failed_read = matches!(&bytes, Err(m) if m.starts_with("cannot read"));
        if index < skip {
            index += 1;
            if failed_read {
                return;
            }
            continue;
        }
        if permits.recv().is_err() {
            return;
        }
        let size = bytes.as_ref().map_or(0, |b| b.len() as u64);
        let reserved = budget.reserve(size.saturating_mul(2));
        seen.store(index + 1, Ordering::Relaxed);
        let line = Line {
            index,
            bytes,
            reserved,
        };
        if lines.send(line).is_err() || failed_read {
            return;
        }
        index += 1;
    }
}

/// Computes one line's result line (and whether it succeeded).
fn compute_line(
    job: &JsonlJob,
    runner: &mut ThreadRunner<'_>,
    task_name: &Arc<str>,
    line: &Line<'_>,
    retried: &AtomicU64,
    retries: &AtomicU64,
) -> (Vec<u8>, bool) {
    let number = line.index + 1;
    let fail = |id: Option<&serde_json::value::RawValue>, kind: &str, message: &str| {
        let mut text = serde_json::to_vec(&ErrorLine {
            line: number,
            id,
            error: kind,
            message,
        })
        .unwrap_or_default();
        text.push(b'\n');
        (text, false)
    };
    let bytes = match &line.bytes {
        Ok(bytes) => bytes,
        Err(why) => return fail(None, "too_long", why),
    };
    let record: Box<serde_json::value::RawValue> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return fail(None, "not_json", &format!("line {number} is not JSON: {e}")),
    };
    let (id, name) = match &job.id_field {
        None => (None, number.to_string()),
        Some(field) => match id_of(&record, field) {
            Some(pair) => (Some(pair.0), pair.1),
            None => {
                return fail(
                    None,
                    "no_id",
                    &format!("line {number} is not an object with a `{field}` field"),
                );
            }
        },
    };
    let task = TaskRef {
        task: Arc::clone(task_name),
        index: line.index,
    };
    let mut tries = 0usize;
    let result = codec::encode(
        &FileInput {
            name,
            data: bytes.clone(),
        },
        &task,
    )
    .and_then(|encoded| {
        let (result, errors) = run_retrying(runner, &task, encoded, &job.limits, job.retries);
        if !errors.is_empty() {
            retried.fetch_add(1, Ordering::Relaxed);
            retries.fetch_add(errors.len() as u64, Ordering::Relaxed);
        }
        tries = errors.len();
        let bytes = result?;
        crate::folder::output::decode_json(&bytes, &task, &format!("line {number}"))
            .map(str::to_string)
    });
    let json = match result {
        Ok(json) => json,
        Err(e) if tries > 0 => {
            let message = format!("{e} (failed {} times: {tries} retries)", tries + 1);
            return fail(id.as_deref(), e.kind().as_str(), &message);
        }
        Err(e) => return fail(id.as_deref(), e.kind().as_str(), &e.to_string()),
    };
    match serde_json::from_str::<&serde_json::value::RawValue>(&json) {
        Ok(ok) => {
            let mut text = serde_json::to_vec(&OkLine {
                line: number,
                id: id.as_deref(),
                ok,
            })
            .unwrap_or_default();
            text.push(b'\n');
            (text, true)
        }
        Err(e) => fail(
            id.as_deref(),
            "decode",
            &format!("the task's output for line {number} is not a JSON document: {e}"),
        ),
    }
}

/// The raw value of `field` in a record, and the name the task sees.
fn id_of(
    record: &serde_json::value::RawValue,
    field: &str,
) -> Option<(Box<serde_json::value::RawValue>, String)> {
    let object: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(record.get()).ok()?;
    let value = object.get(field)?.clone();
    let name = serde_json::from_str::<String>(value.get()).unwrap_or_else(|_| value.get().into());
    Some((value, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_field_is_read_as_text_or_json() {
        let rec: Box<serde_json::value::RawValue> =
            serde_json::from_str(r#"{"id":"a b","n":7}"#).unwrap();
        assert_eq!(id_of(&rec, "id").unwrap().1, "a b");
        assert_eq!(id_of(&rec, "n").unwrap().1, "7");
        assert!(id_of(&rec, "missing").is_none());
    }
}
