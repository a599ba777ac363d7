//! Running a task over a folder (`sandpool run`): one input per file, one
//! output file per input, written atomically so an interrupted run leaves
//! only complete files and a re-run resumes. Each worker thread reads its
//! input, runs the task and writes the output itself.
//!
//! Files: `naming` (output names), `lock` (one run per output folder),
//! `walk` (streaming listing and the queue to the workers), `input`
//! (bounded reads), `runner` (running a task on the calling thread),
//! `worker` (one input from file to output), `writer` (the output folder),
//! `output` (output kinds: JSON, raw bytes, named files),
//! `status` (done / failed / missing against the inputs), `jsonl` (JSON
//! Lines mode: a line per input, results in input order).

mod input;
mod jsonl;
mod lock;
mod naming;
mod output;
#[cfg(feature = "nats")]
mod remote;
mod runner;
pub(crate) mod status;
mod walk;
mod worker;
mod writer;

use std::cell::Cell;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::exec::builder::Isolation;
use crate::exec::pipeline::CancelToken;
use crate::limits::Limits;
use crate::task::Task;
use sandpool_guest::FileInput;

pub use jsonl::{JsonlJob, JsonlSummary, jsonl_status, run_jsonl};
pub use naming::file_id;
#[cfg(feature = "nats")]
pub use remote::{Cluster, ClusterSettings, WorkerStats};
pub use runner::DirGrant;
pub use status::{FolderStatus, InputState, StatusEntry, folder_status};

/// How often the caller's callback hears of progress, at most.
const TICK: Duration = Duration::from_millis(100);

/// First failures kept in the summary.
const KEPT_FAILURES: usize = 10;

/// One run of a task over a folder: where, how many workers, which limits.
///
/// ```
/// let mut job = sandpool::FolderJob::new("inputs", "output");
/// job.workers = 2;
/// job.max_input = Some(1 << 20);
/// assert!(!job.force);
/// assert_eq!(job.effective_max_input(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FolderJob {
    /// The folder whose regular files are the inputs (searched recursively;
    /// symbolic links are not followed).
    pub inputs: PathBuf,
    /// Where `{id}.json` and `{id}.error.json` files go (created if
    /// missing). If it lies inside `inputs`, it is skipped by the walk.
    pub output: PathBuf,
    /// Recompute inputs whose output already exists.
    pub force: bool,
    /// Stop starting new inputs after the first failure.
    pub fail_fast: bool,
    /// Inputs larger than this many bytes fail without being read.
    /// `None`: half of `limits.memory` (the guest holds the input's bytes
    /// and its decoded copy, so a larger one cannot succeed).
    pub max_input: Option<u64>,
    /// Worker threads, each reading, running and writing its own inputs
    /// (default: the number of CPUs).
    pub workers: usize,
    /// Where each task runs (default: a fresh instance in this process).
    pub isolation: Isolation,
    /// Limits of every task.
    pub limits: Limits,
    /// A host directory every task may use (instance isolation only).
    pub grant: Option<DirGrant>,
    /// Host capabilities every task may call (both isolation levels; a
    /// module that declares one not granted here is refused).
    pub capabilities: crate::capability::Capabilities,
    /// Extra attempts per input after a transient failure (a deadline or a
    /// worker crash; never a guest's own error, a trap, fuel or memory).
    pub retries: u32,
}

impl FolderJob {
    /// A job reading `inputs` and writing to `output`: resuming, not
    /// failing fast, one worker per CPU, default limits.
    ///
    /// ```
    /// let job = sandpool::FolderJob::new("in", "out");
    /// assert_eq!(job.output, std::path::PathBuf::from("out"));
    /// assert_eq!(job.limits, sandpool::Limits::default());
    /// ```
    pub fn new(inputs: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        FolderJob {
            inputs: inputs.into(),
            output: output.into(),
            force: false,
            fail_fast: false,
            max_input: None,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            isolation: Isolation::default(),
            limits: Limits::default(),
            grant: None,
            capabilities: Default::default(),
            retries: 0,
        }
    }

    /// The input size limit in force: `max_input`, or half the memory cap.
    ///
    /// ```
    /// let job = sandpool::FolderJob::new("in", "out");
    /// assert_eq!(job.effective_max_input(), sandpool::Limits::default().memory / 2);
    /// ```
    pub fn effective_max_input(&self) -> u64 {
        self.max_input.unwrap_or(self.limits.memory / 2)
    }
}

/// One failed input, as written to its `.error.json` file.
///
/// ```
/// let record = sandpool::FailureRecord {
///     id: "a/%FF.txt".into(),
///     input: "a/\u{fffd}.txt".into(),
///     index: 0,
///     error: sandpool::ErrorKind::Trap,
///     message: "task `t` input #0 trapped: unreachable".into(),
/// };
/// assert!(serde_json::to_string(&record).unwrap().contains("\"error\":\"trap\""));
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// The output id of the input (its path in the output folder without
    /// `.json` or `.error.json`; exact, see [`file_id`]). It differs from
    /// `input` where a name had to be escaped (bytes that are not UTF-8,
    /// `%`, a leading `.`, ...): only `id` tells such inputs apart.
    pub id: String,
    /// The input's path relative to the input folder (lossy UTF-8, for
    /// reading: the name the task was given).
    pub input: String,
    /// The input's position in the sorted listing: the `N` of `input #N`
    /// in messages, stable from run to run for an unchanged folder.
    pub index: u64,
    /// The error variant, e.g. `timeout` (see [`ErrorKind::as_str`]).
    pub error: ErrorKind,
    /// The full error message.
    pub message: String,
}

/// One failed input as the run reports it: its record and whether the
/// record could be written.
///
/// ```
/// # let record = sandpool::FailureRecord { id: "a".into(), input: "a".into(), index: 0,
/// #     error: sandpool::ErrorKind::Io, message: "m".into() };
/// let failure = sandpool::Failure { record, error_file: None, not_recorded: Some("disk full".into()) };
/// assert!(failure.error_file.is_none());
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What failed and why.
    #[serde(flatten)]
    pub record: FailureRecord,
    /// The `.error.json` file holding the record, if it could be written.
    pub error_file: Option<PathBuf>,
    /// Why the record could not be written (then it exists only here).
    pub not_recorded: Option<String>,
}

/// An input that was run again after a transient failure.
///
/// ```
/// let r = sandpool::Retried { input: "a.txt".into(), id: "a.txt".into(), retries: 1,
///     errors: vec!["timeout".into()], succeeded: true };
/// assert!(serde_json::to_string(&r).unwrap().contains("\"succeeded\":true"));
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Retried {
    /// The input's relative path (lossy UTF-8).
    pub input: String,
    /// Its output id.
    pub id: String,
    /// Extra attempts made.
    pub retries: u32,
    /// The error kind of each failed attempt that was retried (`timeout`, `worker_crashed`).
    pub errors: Vec<String>,
    /// Whether the last attempt succeeded.
    pub succeeded: bool,
}

/// Retried inputs kept in the summary.
const KEPT_RETRIED: usize = 100;

/// Progress of a folder run.
///
/// ```
/// let p = sandpool::Progress { total: 10, succeeded: 3, failed: 1, ..Default::default() };
/// assert_eq!(p.processed(), 4);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Inputs found so far (final once `listed` is true).
    pub total: u64,
    /// Whether the listing of the input folder has ended.
    pub listed: bool,
    /// Inputs skipped because their output already existed.
    pub skipped: u64,
    /// Inputs computed successfully in this run.
    pub succeeded: u64,
    /// Inputs that failed in this run.
    pub failed: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Inputs finished in this run (succeeded or failed).
    ///
    /// ```
    /// let p = sandpool::Progress { succeeded: 3, failed: 1, ..Default::default() };
    /// assert_eq!(p.processed(), 4);
    /// ```
    pub fn processed(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// What a folder run tells its caller while it goes (on the caller's thread).
///
/// ```
/// fn show(event: sandpool::FolderEvent<'_>) {
///     match event {
///         sandpool::FolderEvent::Progress(p) => eprint!("\r{}/{}", p.processed(), p.total),
///         sandpool::FolderEvent::Failed(f) => eprintln!("\n{}: {}", f.record.input, f.record.message),
///         _ => {}
///     }
/// }
/// show(sandpool::FolderEvent::Progress(Default::default()));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FolderEvent<'a> {
    /// Counters, at most every 100 ms and once at the end.
    Progress(Progress),
    /// An input failed (reported within about 100 ms).
    Failed(&'a Failure),
    /// The output folder lies inside the input folder, at this path; it is
    /// not read as input.
    OutputInsideInputs(&'a Path),
    /// Temporary files left by runs that died were removed from the output folder.
    Swept(u64),
}

/// What a folder run did.
///
/// ```
/// let s = sandpool::FolderSummary::default();
/// assert_eq!(s.total, 0);
/// assert!(serde_json::to_string(&s).unwrap().contains("\"unrecorded\":0"));
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderSummary {
    /// Inputs found.
    pub total: u64,
    /// Inputs whose valid output already existed (not recomputed).
    pub skipped: u64,
    /// Inputs computed successfully.
    pub succeeded: u64,
    /// Inputs that failed.
    pub failed: u64,
    /// Failed inputs whose `.error.json` could not be written either.
    pub unrecorded: u64,
    /// Inputs found but not processed because the run was cancelled
    /// (Ctrl-C or fail-fast); the walk also stops, so more may exist.
    pub not_run: u64,
    /// Whether the run was cancelled before every input was processed.
    pub cancelled: bool,
    /// The first few failures.
    pub failures: Vec<Failure>,
    /// Inputs run again after a transient failure (`--retries`).
    pub retried: u64,
    /// Extra attempts made in all.
    pub retries: u64,
    /// The first 100 retried inputs, with what each retry was for.
    pub retried_inputs: Vec<Retried>,
    /// Where the outputs are.
    pub output: PathBuf,
    /// The output folder's path relative to the inputs, when it lies inside them (skipped).
    pub output_inside_inputs: Option<PathBuf>,
    /// Wall-clock time of the run in seconds.
    pub seconds: f64,
}

/// Counts a worker thread out when it ends, however it ends.
struct Ended<'a> {
    running: &'a Mutex<usize>,
    ended: &'a Condvar,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.ended.notify_all();
    }
}

fn open_dir(path: &Path, what: &str) -> Result<OwnedFd, Error> {
    let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| Error::Config(format!("{what} {} contains a NUL byte", path.display())))?;
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            format!("cannot open {what} {}", path.display()),
            &std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `task` over every file of `job.inputs` until done or `cancel` is
/// cancelled, telling `on_event` of progress and failures.
///
/// Everything that can make the whole run impossible is checked before
/// any task runs and returned as an error (a setup error, exit 2 in the
/// CLI): a missing input folder, an output folder that cannot be created,
/// locked or written, the output folder being the input folder, a pool
/// that cannot start. Everything else is a failure of one input, recorded
/// in `{id}.error.json` and counted in the summary: a file that cannot be
/// read or is too large, a folder that cannot be listed, a task error.
///
/// ```
/// use sandpool::{FileInput, FolderEvent, FolderJob, Task};
/// let dir = std::env::temp_dir().join(format!("sandpool-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("in")).unwrap();
/// std::fs::write(dir.join("in/a.txt"), "hello").unwrap();
/// // A task that returns the JSON document `{}` for any input.
/// let task: Task<FileInput, String> = Task::from_bytes("empty", br#"(module
///   (memory (export "memory") 1)
///   (data (i32.const 16) "\00\02{}")
///   (func (export "sandpool_abi_version") (result i32) i32.const 1)
///   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
///   (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0x1000000004))"#.to_vec())?;
/// let job = FolderJob::new(dir.join("in"), dir.join("out"));
/// let summary = sandpool::run_folder(&task, &job, Default::default(), |_: FolderEvent<'_>| {})?;
/// assert_eq!((summary.succeeded, summary.failed), (1, 0));
/// assert_eq!(std::fs::read_to_string(dir.join("out/a.txt.json")).unwrap(), "{}\n");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn run_folder(
    task: &Task<FileInput, String>,
    job: &FolderJob,
    cancel: CancelToken,
    mut on_event: impl FnMut(FolderEvent<'_>),
) -> Result<FolderSummary, Error> {
    let started = Instant::now();
    if job.workers == 0 {
        return Err(Error::Config(
            "a folder run needs at least one worker".into(),
        ));
    }
    // Declared first so that it is released last, after every worker is gone.
    let (_lock, out, out_id) = prepare_output(job, &mut on_event)?;
    let root = open_dir(&job.inputs, "input folder")?;
    let max_input = job.effective_max_input();
    let budget = input::ByteBudget::new(max_input.saturating_mul(2).max(64 << 20));
    let shared = runner::SharedRunner::start(
        task,
        job.isolation,
        &job.limits,
        job.grant.as_ref(),
        &job.capabilities,
        job.workers,
    )?;

    let counters = worker::Counters::default();
    let feed = walk::Feed::default();
    let (failures_tx, failures_rx) = crossbeam_channel::unbounded::<Failure>();
    let (retried_tx, retried_rx) = crossbeam_channel::unbounded::<Retried>();
    let cx = worker::Context {
        feed: &feed,
        out: &out,
        root: &root,
        budget: &budget,
        max_input,
        limits: job.limits,
        force: job.force,
        fail_fast: job.fail_fast,
        workers: job.workers,
        task: Arc::clone(&task.module.name),
        counters: &counters,
        cancel: &cancel,
        failures: failures_tx,
        max_retries: job.retries,
        retried: retried_tx,
    };
    let running = Mutex::new(job.workers);
    let ended = Condvar::new();
    let mut kept: Vec<Failure> = Vec::new();
    let mut kept_retried: Vec<Retried> = Vec::new();
    let mut found = 0u64;
    let mut listed = false;
    let inside: Cell<Option<PathBuf>> = Cell::new(None);
    let mut said_inside = false;
    let spawned = std::thread::scope(|s| {
        for id in 0..job.workers {
            let (cx, shared, running, ended) = (&cx, &shared, &running, &ended);
            let spawned = std::thread::Builder::new()
                .name(format!("sandpool-folder-{id}"))
                .stack_size(8 << 20)
                .spawn_scoped(s, move || {
                    // Counted out even if the worker panics, so the wait below ends.
                    let _ended = Ended { running, ended };
                    worker::work(cx, id, shared.worker(id));
                });
            if let Err(e) = spawned {
                feed.stop();
                return Err(Error::Pool(format!("cannot start folder worker {id}: {e}")));
            }
        }
        let mut last_tick = Instant::now();
        let mut complete = true;
        // Reports progress and failures, and turns a cancel into a stop.
        let mut tick = |found: u64, listed: bool| {
            if cancel.is_cancelled() {
                feed.stop();
            }
            if !said_inside && let Some(path) = inside.take() {
                on_event(FolderEvent::OutputInsideInputs(&path));
                inside.set(Some(path));
                said_inside = true;
            }
            for retried in retried_rx.try_iter() {
                if kept_retried.len() < KEPT_RETRIED {
                    kept_retried.push(retried);
                }
            }
            for failure in failures_rx.try_iter() {
                on_event(FolderEvent::Failed(&failure));
                if kept.len() < KEPT_FAILURES {
                    kept.push(failure);
                }
            }
            on_event(FolderEvent::Progress(Progress {
                total: found,
                listed,
                skipped: counters.skipped.load(Ordering::Relaxed),
                succeeded: counters.succeeded.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                elapsed: started.elapsed(),
            }));
        };
        walk::walk(
            &job.inputs,
            Some(out_id),
            |path, unlisted| {
                if cancel.is_cancelled() || counters.stop.load(Ordering::Relaxed) {
                    feed.stop();
                    complete = false;
                    return false;
                }
                let entry = walk::Entry {
                    index: found,
                    path,
                    unlisted,
                };
                let pushed = feed.push(entry, TICK, &mut || {
                    tick(found, false);
                    last_tick = Instant::now();
                });
                if pushed {
                    found += 1;
                } else {
                    complete = false;
                }
                if found.is_multiple_of(256) && last_tick.elapsed() >= TICK {
                    tick(found, false);
                    last_tick = Instant::now();
                }
                pushed
            },
            |folder| {
                // A folder listed now had its error record (if any) from an earlier run.
                let stale = naming::error_name(&naming::folder_id(folder));
                if out.may_exist(&stale) {
                    let _ = out.remove(&stale);
                }
            },
            |path| {
                let path: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(path);
                inside.set(Some(PathBuf::from(path)));
            },
        );
        feed.finish();
        listed = complete;
        let mut left = running.lock().unwrap_or_else(|p| p.into_inner());
        while *left > 0 {
            drop(left);
            tick(found, listed);
            left = running.lock().unwrap_or_else(|p| p.into_inner());
            if *left > 0 {
                left = ended
                    .wait_timeout(left, TICK)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        drop(left);
        tick(found, listed);
        Ok(())
    });
    spawned?;
    drop(shared);
    let (skipped, succeeded, failed) = (
        counters.skipped.load(Ordering::Relaxed),
        counters.succeeded.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
    );
    let not_run = found - skipped - succeeded - failed;
    Ok(FolderSummary {
        total: found,
        skipped,
        succeeded,
        failed,
        unrecorded: counters.unrecorded.load(Ordering::Relaxed),
        not_run,
        cancelled: (cancel.is_cancelled() || counters.stop.load(Ordering::Relaxed))
            && (not_run > 0 || !listed),
        failures: kept,
        retried: counters.retried.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        retried_inputs: kept_retried,
        output: job.output.clone(),
        output_inside_inputs: inside.take(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Makes the output folder ready for a run of `job` (local or on a
/// cluster): checks that the inputs are a folder, creates the output
/// folder, refuses it if it is the input folder, takes the run's lock on it
/// (a second run is refused), checks that it is writable, and sweeps the
/// temporary files of dead runs (said through `on_event`). Returns the
/// lock (keep it until every writer is done), the folder and its identity
/// (for the walk to skip it).
pub(crate) fn prepare_output(
    job: &FolderJob,
    on_event: &mut impl FnMut(FolderEvent<'_>),
) -> Result<(lock::OutputLock, writer::OutDir, walk::DirId), Error> {
    let inputs_meta = std::fs::metadata(&job.inputs)
        .map_err(|e| Error::io(format!("input folder {}", job.inputs.display()), &e))?;
    if !inputs_meta.is_dir() {
        return Err(Error::Io {
            context: format!("input folder {}", job.inputs.display()),
            message: "not a folder".into(),
        });
    }
    std::fs::create_dir_all(&job.output).map_err(|e| {
        Error::io(
            format!("cannot create output folder {}", job.output.display()),
            &e,
        )
    })?;
    let out_id = walk::DirId::of(&job.output)
        .map_err(|e| Error::io(format!("output folder {}", job.output.display()), &e))?;
    if walk::DirId::of(&job.inputs).ok() == Some(out_id) {
        return Err(Error::Config(format!(
            "the output folder {} is the input folder; choose another output folder",
            job.output.display()
        )));
    }
    let lock = lock::OutputLock::acquire(&job.output)?;
    let mut out = writer::OutDir::open(&job.output)?;
    out.probe_writable()?;
    out.scan(walk::DirId::of(&job.inputs).ok())?;
    if out.swept > 0 {
        on_event(FolderEvent::Swept(out.swept));
    }
    Ok((lock, out, out_id))
}
