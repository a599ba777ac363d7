//! Running a task over a folder: one input per file, one output file per
//! input (`{id}.json`, or `{id}.error.json` for a failure), written
//! atomically so an interrupted run leaves only complete files and a re-run
//! resumes. `sandpool run` is this module plus flag parsing and display.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::io::IoPool;
use crate::pipeline::{CancelToken, Pipeline};
use crate::pool::Pool;
use sandpool_guest::FileInput;

/// Prefix of the temporary files outputs are written to before their rename.
const TMP_PREFIX: &str = ".sandpool-tmp-";

/// Longest file id kept as is; longer ids are shortened and suffixed with a hash.
const MAX_ID_BYTES: usize = 200;

/// One run of a task over a folder.
///
/// ```
/// let job = sandpool::FolderJob::new("inputs", "output");
/// assert!(!job.force);
/// ```
#[derive(Debug, Clone)]
pub struct FolderJob {
    /// The folder whose regular files are the inputs (searched recursively).
    pub inputs: PathBuf,
    /// Where `{id}.json` and `{id}.error.json` files go (created if missing).
    pub output: PathBuf,
    /// Recompute inputs whose output already exists.
    pub force: bool,
    /// Stop starting new inputs after the first failure.
    pub fail_fast: bool,
}

impl FolderJob {
    /// A job reading `inputs` and writing to `output`, resuming, not failing fast.
    ///
    /// ```
    /// let job = sandpool::FolderJob::new("in", "out");
    /// assert_eq!(job.output, std::path::PathBuf::from("out"));
    /// ```
    pub fn new(inputs: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        FolderJob {
            inputs: inputs.into(),
            output: output.into(),
            force: false,
            fail_fast: false,
        }
    }
}

/// One failed input, as recorded in the summary and its `.error.json` file.
///
/// ```no_run
/// # use sandpool::{FileInput, FolderJob, IoPool, Pool, Task};
/// # let pool = Pool::builder(Task::<FileInput, String>::from_file("doc_stats.wasm")?).build()?;
/// # let io = IoPool::builder().build()?;
/// # let job = FolderJob::new("inputs", "output");
/// let summary = sandpool::run_folder(&pool, &io, &job, Default::default(), |_| {})?;
/// for failure in &summary.failures {
///     eprintln!("{} ({}): {}: {}", failure.id, failure.input, failure.error.as_str(), failure.message);
/// }
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// The output id (file name stem) of the input.
    pub id: String,
    /// The input's path relative to the input folder.
    pub input: String,
    /// The error variant, e.g. `timeout` (see [`ErrorKind::as_str`]).
    pub error: ErrorKind,
    /// The full error message.
    pub message: String,
}

/// Progress of a folder run, reported after every input.
///
/// ```no_run
/// # use sandpool::{FileInput, FolderJob, IoPool, Pool, Task};
/// # let pool = Pool::builder(Task::<FileInput, String>::from_file("doc_stats.wasm")?).build()?;
/// # let io = IoPool::builder().build()?;
/// # let job = FolderJob::new("inputs", "output");
/// sandpool::run_folder(&pool, &io, &job, Default::default(), |p: sandpool::Progress| {
///     eprint!("\r{}/{} ({} failed)", p.skipped + p.processed(), p.total, p.failed);
/// })?;
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Inputs in the folder.
    pub total: u64,
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

/// What a folder run did.
///
/// ```no_run
/// # use sandpool::{FileInput, FolderJob, IoPool, Pool, Task};
/// # let pool = Pool::builder(Task::<FileInput, String>::from_file("doc_stats.wasm")?).build()?;
/// # let io = IoPool::builder().build()?;
/// # let job = FolderJob::new("inputs", "output");
/// let summary = sandpool::run_folder(&pool, &io, &job, Default::default(), |_| {})?;
/// println!("{}", serde_json::to_string_pretty(&summary).unwrap());
/// std::process::exit(if summary.failed == 0 { 0 } else { 1 });
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct FolderSummary {
    /// Inputs found.
    pub total: u64,
    /// Inputs whose valid output already existed (not recomputed).
    pub skipped: u64,
    /// Inputs computed successfully.
    pub succeeded: u64,
    /// Inputs that failed (each has an `.error.json`).
    pub failed: u64,
    /// Inputs not processed because the run was cancelled (Ctrl-C or fail-fast).
    pub not_run: u64,
    /// Whether the run was cancelled before every input was processed.
    pub cancelled: bool,
    /// The first few failures.
    pub failures: Vec<FailureRecord>,
    /// Where the outputs are.
    pub output: PathBuf,
    /// Wall-clock time of the run in seconds.
    pub seconds: f64,
}

/// The output id of an input: its path relative to the input folder, made
/// safe as a file name. `/` becomes `%2F`, `%` becomes `%25`, and control
/// characters and `\` are percent-encoded too, so distinct paths never get
/// the same id. Spaces and non-ASCII letters stay as they are. Ids longer than
/// 200 bytes are cut and suffixed with a hash of the full path.
///
/// ```
/// use std::path::Path;
/// assert_eq!(sandpool::file_id(Path::new("a/b c.txt")), "a%2Fb c.txt");
/// assert_eq!(sandpool::file_id(Path::new("a%2Fb c.txt")), "a%252Fb c.txt");
/// assert_eq!(sandpool::file_id(Path::new("día/ñ.md")), "día%2Fñ.md");
/// ```
pub fn file_id(relative: &Path) -> String {
    let text = relative_name(relative);
    let mut id = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => id.push_str("%25"),
            '/' => id.push_str("%2F"),
            '\\' => id.push_str("%5C"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    id.push_str(&format!("%{b:02X}"));
                }
            }
            c => id.push(c),
        }
    }
    if id.len() > MAX_ID_BYTES {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        let mut cut = 150;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
        id.push('~');
        id.extend(digest[..8].iter().map(|b| format!("{b:02x}")));
    }
    id
}

/// The path as the task sees it: relative, `/`-separated, lossy UTF-8.
fn relative_name(relative: &Path) -> String {
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every regular file under `dir`, as paths relative to it, sorted.
/// Symbolic links are not followed (a link to a directory could loop).
///
/// ```no_run
/// let files = sandpool::list_inputs(std::path::Path::new("inputs"))?;
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn list_inputs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("input folder {}", dir.display()), &e))?;
    if !meta.is_dir() {
        return Err(Error::Io {
            context: format!("input folder {}", dir.display()),
            message: "not a directory".into(),
        });
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs)
            .map_err(|e| Error::io(format!("cannot list {}", abs.display()), &e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", abs.display()), &e))?;
            let kind = entry
                .file_type()
                .map_err(|e| Error::io(format!("cannot stat {}", entry.path().display()), &e))?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `path` holds a complete output (a JSON document).
fn valid_output(path: &Path) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<&serde_json::value::RawValue>(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// then a rename, in one trip to the blocking pool; then removes `stale`
/// (the other kind of result for the same input, from an earlier run).
async fn write_atomic(
    dir: &Path,
    path: &Path,
    bytes: Vec<u8>,
    stale: &Path,
) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let (path, stale) = (path.to_path_buf(), stale.to_path_buf());
    let blocking = tokio::task::spawn_blocking(move || {
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    });
    blocking
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

struct Entry {
    index: u64,
    relative: PathBuf,
    id: String,
}

enum Outcome {
    Succeeded,
    Failed(FailureRecord),
}

/// Runs `pool`'s task over every file of `job.inputs`, reading and writing on
/// `io`, until done or `cancel` is cancelled. `progress` is called after
/// every input. Returns an error only for setup problems (missing folder,
/// unwritable output folder); task failures are counted in the summary and
/// recorded as `.error.json` files.
///
/// ```no_run
/// use sandpool::{FileInput, FolderJob, IoPool, Pool, Task};
/// let pool = Pool::builder(Task::<FileInput, String>::from_file("doc_stats.wasm")?).build()?;
/// let io = IoPool::builder().build()?;
/// let summary = sandpool::run_folder(&pool, &io, &FolderJob::new("inputs", "output"), Default::default(), |_| {})?;
/// println!("{} succeeded, {} failed", summary.succeeded, summary.failed);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn run_folder(
    pool: &Pool<FileInput, String>,
    io: &IoPool,
    job: &FolderJob,
    cancel: CancelToken,
    mut progress: impl FnMut(Progress),
) -> Result<FolderSummary, Error> {
    let started = Instant::now();
    let files = list_inputs(&job.inputs)?;
    std::fs::create_dir_all(&job.output).map_err(|e| {
        Error::io(
            format!("cannot create output folder {}", job.output.display()),
            &e,
        )
    })?;
    remove_stale_temporaries(&job.output);

    let total = files.len() as u64;
    let entries: Vec<Entry> = files
        .into_iter()
        .enumerate()
        .map(|(index, relative)| Entry {
            index: index as u64,
            id: file_id(&relative),
            relative,
        })
        .collect();
    // Resume: a valid `{id}.json` means the input is done. Checked on the I/O pool.
    let out_dir = Arc::new(job.output.clone());
    let todo: Vec<Entry> = if job.force {
        entries
    } else {
        let checks = io.map(entries, |entry| {
            let out_dir = Arc::clone(&out_dir);
            async move {
                let path = out_dir.join(format!("{}.json", entry.id));
                let done = tokio::task::spawn_blocking(move || valid_output(&path))
                    .await
                    .unwrap_or(false);
                (entry, done)
            }
        });
        let mut todo = Vec::new();
        for check in checks {
            let (entry, done) = check?;
            if !done {
                todo.push(entry);
            }
        }
        todo
    };
    let skipped = total - todo.len() as u64;
    let mut state = Progress {
        total,
        skipped,
        ..Default::default()
    };
    progress(state);

    let in_dir = Arc::new(job.inputs.clone());
    let write_dir = Arc::clone(&out_dir);
    let task_name: Arc<str> = pool.task_name().into();
    let pipeline = Pipeline::builder(io)
        .read_concurrency(32)
        .compute_window(pool.workers() * 8)
        .write_concurrency(32)
        .build();
    let run = pipeline.run(
        todo,
        move |entry: &Entry| {
            let path = in_dir.join(&entry.relative);
            let name = relative_name(&entry.relative);
            async move {
                let read = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || std::fs::read(path)
                });
                match read.await.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
                    Ok(data) => Ok(FileInput { name, data }),
                    Err(e) => Err(Error::io(
                        format!("cannot read input {}", path.display()),
                        &e,
                    )),
                }
            }
        },
        pool,
        move |entry: Entry, result: Result<String, Error>| {
            let dir = Arc::clone(&write_dir);
            let task = crate::error::TaskRef {
                task: Arc::clone(&task_name),
                index: entry.index,
            };
            async move { write_result(&dir, task, entry, result).await }
        },
    );
    let stop = run.cancel_token();
    let mut failures = Vec::new();
    let mut cancelled = false;
    for (_, outcome) in run {
        match outcome {
            Outcome::Succeeded => state.succeeded += 1,
            Outcome::Failed(record) => {
                state.failed += 1;
                if failures.len() < 10 {
                    failures.push(record);
                }
                if job.fail_fast {
                    stop.cancel();
                }
            }
        }
        if cancel.is_cancelled() {
            stop.cancel();
        }
        cancelled |= stop.is_cancelled();
        state.elapsed = started.elapsed();
        progress(state);
    }
    cancelled |= cancel.is_cancelled();
    let not_run = total - skipped - state.succeeded - state.failed;
    Ok(FolderSummary {
        total,
        skipped,
        succeeded: state.succeeded,
        failed: state.failed,
        not_run,
        cancelled: cancelled && not_run > 0,
        failures,
        output: job.output.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn write_result(
    dir: &Path,
    task: crate::error::TaskRef,
    entry: Entry,
    result: Result<String, Error>,
) -> Outcome {
    let ok_path = dir.join(format!("{}.json", entry.id));
    let err_path = dir.join(format!("{}.error.json", entry.id));
    let input = relative_name(&entry.relative);
    let failure = match result {
        Ok(json) => match serde_json::from_str::<&serde_json::value::RawValue>(&json) {
            Ok(_) => {
                let mut bytes = json.into_bytes();
                bytes.push(b'\n');
                match write_atomic(dir, &ok_path, bytes, &err_path).await {
                    Ok(()) => return Outcome::Succeeded,
                    Err(e) => Error::io(format!("cannot write {}", ok_path.display()), &e),
                }
            }
            Err(e) => Error::Decode {
                task,
                what: "output as JSON",
                reason: format!("the task's output for {input} is not a JSON document: {e}"),
            },
        },
        Err(e) => e,
    };
    let record = FailureRecord {
        id: entry.id,
        input,
        error: failure.kind(),
        message: failure.to_string(),
    };
    let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
    if let Err(e) = write_atomic(dir, &err_path, body, &ok_path).await {
        tracing::error!("cannot write {}: {e}", err_path.display());
    }
    Outcome::Failed(record)
}

/// Removes temporary files left by a run that was killed mid-write.
fn remove_stale_temporaries(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_distinct_paths_differ() {
        let paths = [
            "a/b", "a%2Fb", "a%2Fb/c", "a/b%2Fc", "a\\b", "a%5Cb", "x\ny", "x%0Ay",
        ];
        let ids: std::collections::HashSet<String> =
            paths.iter().map(|p| file_id(Path::new(p))).collect();
        assert_eq!(ids.len(), paths.len(), "{ids:?}");
        assert!(ids.iter().all(|id| !id.contains('/') && !id.contains('\n')));
    }

    #[test]
    fn long_ids_are_shortened_with_a_hash() {
        let long_a = format!("{}/a", "d".repeat(300));
        let long_b = format!("{}/b", "d".repeat(300));
        let (a, b) = (file_id(Path::new(&long_a)), file_id(Path::new(&long_b)));
        assert!(a.len() <= MAX_ID_BYTES && b.len() <= MAX_ID_BYTES);
        assert_ne!(a, b);
    }
}
