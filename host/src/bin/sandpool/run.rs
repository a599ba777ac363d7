//! `sandpool run`: flags in, `sandpool::run_folder` over them, progress and summary out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sandpool::{
    CancelToken, DirGrant, FileInput, FolderEvent, FolderJob, FolderSummary, Limits, Progress, Task,
};

use crate::args::RunArgs;

/// Exit code for usage and setup errors.
pub const SETUP_ERROR: u8 = 2;
/// Exit code when interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

pub fn setup_error(message: impl std::fmt::Display) -> ExitCode {
    // One line: wasm parse errors can span several.
    let message = message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("sandpool: {message}");
    ExitCode::from(SETUP_ERROR)
}

/// What INPUTS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Folder,
    JsonLines,
}

/// Whether a regular file is JSON Lines: named so, or its first line is JSON.
fn looks_like_json_lines(path: &std::path::Path) -> bool {
    let named = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jsonl" | "ndjson" | "json"));
    if named {
        return true;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = Vec::new();
    let read = std::io::BufRead::read_until(
        &mut std::io::BufReader::new(std::io::Read::take(file, 1 << 20)),
        b'\n',
        &mut first,
    );
    read.is_ok()
        && (first.is_empty() || serde_json::from_slice::<serde_json::Value>(&first).is_ok())
}

/// Decides the mode and checks the flags fit it, before anything is loaded.
fn check_setup(args: &RunArgs) -> Result<Mode, String> {
    let mode = if args.inputs.as_os_str() == "-" {
        Mode::JsonLines
    } else {
        match std::fs::metadata(&args.inputs) {
            Ok(meta) if meta.is_dir() => Mode::Folder,
            Ok(meta) if meta.is_file() => {
                if !looks_like_json_lines(&args.inputs) {
                    return Err(format!(
                        "{} is neither a folder nor a JSON Lines file (its first line is not JSON); \
                         pass the folder that holds the inputs, or a .jsonl file",
                        args.inputs.display()
                    ));
                }
                Mode::JsonLines
            }
            // A pipe or a device (`<(zcat x.gz)`): read as JSON Lines.
            Ok(_) => Mode::JsonLines,
            Err(e) => return Err(format!("cannot open input {}: {e}", args.inputs.display())),
        }
    };
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    match mode {
        Mode::Folder => {
            if args.id_field.is_some() {
                return Err("--id-field applies to JSON Lines input only".into());
            }
            let out = folder_output(args);
            if let Ok(meta) = std::fs::metadata(&out)
                && !meta.is_dir()
            {
                return Err(format!(
                    "the output {} is a file, not a folder; a folder of inputs needs an output folder (-o OUT_DIR)",
                    out.display()
                ));
            }
        }
        Mode::JsonLines => {
            for (set, flag) in [
                (args.dir.is_some(), "--dir"),
                (args.fail_fast, "--fail-fast"),
            ] {
                if set {
                    return Err(format!("{flag} applies to folder input only"));
                }
            }
            let out = args.output.clone().unwrap_or_else(|| "-".into());
            if out.as_os_str() != "-" {
                if out.is_dir() {
                    return Err(format!(
                        "the output {} is a folder; JSON Lines input writes one JSON Lines file (-o results.jsonl)",
                        out.display()
                    ));
                }
                use std::os::unix::fs::MetadataExt;
                if let (Ok(a), Ok(b)) = (std::fs::metadata(&args.inputs), std::fs::metadata(&out))
                    && a.dev() == b.dev()
                    && a.ino() == b.ino()
                {
                    return Err(format!(
                        "the output {} is the input file; choose another output file",
                        out.display()
                    ));
                }
            }
        }
    }
    Ok(mode)
}

/// The output folder of a folder run.
pub(crate) fn folder_output(args: &RunArgs) -> std::path::PathBuf {
    args.output.clone().unwrap_or_else(|| "output".into())
}

/// Loads the task module (from the cache when it can), or says why not.
pub fn load_task(args: &RunArgs) -> Result<(Task<FileInput, String>, Duration), ExitCode> {
    let started = Instant::now();
    let cache = if args.no_cache {
        None
    } else {
        sandpool::default_cache_dir()
    };
    let loaded = match &cache {
        Some(dir) => Task::<FileInput, String>::from_file_cached(&args.task, dir),
        None => Task::<FileInput, String>::from_file(&args.task),
    };
    match loaded {
        Ok(task) => Ok((task, started.elapsed())),
        Err(e) => Err(setup_error(format!(
            "{e} (is {} a sandpool task module? try `sandpool inspect`)",
            args.task.display()
        ))),
    }
}

/// The capabilities the flags grant (`--sqlite`).
pub fn capabilities(args: &RunArgs) -> Result<sandpool::Capabilities, String> {
    match &args.sqlite {
        None => Ok(sandpool::Capabilities::new()),
        Some(path) => sandpool::sqlite_query(path).map_err(|e| e.to_string()),
    }
}

/// The limits the flags ask for.
pub fn limits(args: &RunArgs) -> Limits {
    Limits {
        timeout: (!args.timeout.0.is_zero()).then_some(args.timeout.0),
        fuel: args.fuel,
        memory: args.memory.0,
        max_output: args.max_output.0,
        ..Limits::default()
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    // Check the inputs and flags first: they are the cheapest mistakes to report.
    let mode = match check_setup(&args) {
        Ok(mode) => mode,
        Err(message) => return setup_error(message),
    };
    let (task, load_time) = match load_task(&args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Some(url) = &args.nats {
        if mode == Mode::JsonLines {
            return setup_error("--nats applies to folder input only");
        }
        return crate::nats::run(&args, url, &task, load_time);
    }
    if mode == Mode::JsonLines {
        return crate::jsonl::main(&args, &task, load_time);
    }
    let mut job = FolderJob::new(&args.inputs, folder_output(&args));
    job.force = args.force;
    job.fail_fast = args.fail_fast;
    job.retries = args.retries;
    job.max_input = args.max_input.map(|s| s.0);
    job.isolation = args.isolation;
    if let Some(jobs) = args.jobs {
        job.workers = jobs;
    }
    job.limits = limits(&args);
    match capabilities(&args) {
        Ok(caps) => job.capabilities = caps,
        Err(message) => return setup_error(message),
    }
    job.grant = args.dir.as_ref().map(|d| DirGrant {
        host: d.host.clone(),
        guest: d.guest.clone(),
        access: d.access,
    });
    if args.verbose {
        let how = if task.loaded_from_cache() {
            "loaded from the cache"
        } else {
            "compiled"
        };
        eprintln!(
            "sandpool: {} {how} in {:.1?}; {} workers",
            args.task.display(),
            load_time,
            job.workers
        );
    }

    let cancel = CancelToken::default();
    install_ctrl_c(cancel.clone(), args.quiet);
    let mut display = Display::new(&args);
    let summary = sandpool::run_folder(&task, &job, cancel.clone(), |event| display.event(event));
    display.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    report(&args, &summary, load_time);
    if cancel.is_cancelled() && summary.cancelled {
        ExitCode::from(INTERRUPTED)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// First Ctrl-C: stop starting inputs, finish those in flight. Second: exit now
/// (outputs are renamed into place, so none is ever half-written; the next
/// run removes the temporary files left behind).
pub fn install_ctrl_c(cancel: CancelToken, quiet: bool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandpool: cannot watch for Ctrl-C ({e}); it will stop the run at once");
            return;
        }
    };
    // Registered here, before any input is read, so no Ctrl-C is missed.
    let signal = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    });
    let Ok(mut signal) = signal else {
        return;
    };
    let watcher = std::thread::Builder::new()
        .name("sandpool-ctrl-c".into())
        .spawn(move || {
            runtime.block_on(async move {
                if signal.recv().await.is_none() {
                    return;
                }
                if !quiet {
                    eprintln!(
                        "\nsandpool: interrupted; finishing the inputs in flight (Ctrl-C again to stop at once)"
                    );
                }
                cancel.cancel();
                if signal.recv().await.is_some() {
                    eprintln!("sandpool: stopped; run the same command again to finish");
                    std::process::exit(i32::from(INTERRUPTED));
                }
            })
        });
    if let Err(e) = watcher {
        eprintln!("sandpool: cannot watch for Ctrl-C ({e})");
    }
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
pub(crate) struct Display {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    verbose: bool,
    last_line: Instant,
}

impl Display {
    pub(crate) fn new(args: &RunArgs) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !args.quiet).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}, {per_sec}, ETA {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Display {
            bar,
            plain: !terminal && !args.quiet,
            verbose: args.verbose,
            last_line: Instant::now(),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn event(&mut self, event: FolderEvent<'_>) {
        match event {
            FolderEvent::Progress(p) => self.update(p),
            FolderEvent::Failed(f) => {
                // A failure that has no error record exists only here: always say it.
                if let Some(why) = &f.not_recorded {
                    self.say(&format!(
                        "sandpool: {} failed ({}): {}; and its error record could not be written: {why}",
                        f.record.input,
                        f.record.error.as_str(),
                        first_line(&f.record.message)
                    ));
                } else if self.verbose {
                    self.say(&format!(
                        "sandpool: {} failed ({}): {}",
                        f.record.input,
                        f.record.error.as_str(),
                        first_line(&f.record.message)
                    ));
                }
            }
            FolderEvent::OutputInsideInputs(path) => self.say(&format!(
                "sandpool: the output folder is inside the input folder (at {}); skipping it as input",
                path.display()
            )),
            FolderEvent::Swept(n) if self.verbose => self.say(&format!(
                "sandpool: removed {n} temporary files left by an interrupted run"
            )),
            _ => {}
        }
    }

    fn update(&mut self, p: Progress) {
        let todo = p.total - p.skipped;
        if let Some(bar) = &self.bar {
            bar.set_length(todo);
            bar.set_position(p.processed());
            bar.set_message(format!("done, {} failed, {} skipped", p.failed, p.skipped));
        } else if self.plain
            && (self.last_line.elapsed() >= Duration::from_secs(2)
                || (p.listed && p.processed() == todo))
        {
            self.last_line = Instant::now();
            let rate = p.processed() as f64 / p.elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "sandpool: {}/{todo}{} done, {} failed, {} skipped, {rate:.0} files/s",
                p.processed(),
                if p.listed { "" } else { "+" },
                p.failed,
                p.skipped
            );
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

pub(crate) fn report(args: &RunArgs, s: &FolderSummary, load_time: Duration) {
    if args.json {
        let mut value = serde_json::to_value(s).unwrap_or_default();
        value["module_load_seconds"] = serde_json::json!(load_time.as_secs_f64());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    if args.quiet {
        for f in s.failures.iter().filter(|f| f.error_file.is_some()) {
            eprintln!("sandpool: {}: {}", f.record.input, f.record.message);
        }
        return;
    }
    let rate = (s.succeeded + s.failed) as f64 / s.seconds.max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "sandpool: {} inputs: {} succeeded, {} failed, {} skipped (already done){} in {:.2}s ({rate:.0} files/s)",
        s.total,
        s.succeeded,
        s.failed,
        s.skipped,
        if s.not_run > 0 {
            format!(", {} not run", s.not_run)
        } else {
            String::new()
        },
        s.seconds
    );
    let _ = writeln!(err, "sandpool: outputs in {}", s.output.display());
    if s.retried > 0 {
        let _ = writeln!(
            err,
            "sandpool: {} inputs retried ({} retries in all)",
            s.retried, s.retries
        );
        for r in &s.retried_inputs {
            let _ = writeln!(
                err,
                "  retried: {} ({}), then {}",
                r.input,
                r.errors.join(", "),
                if r.succeeded { "succeeded" } else { "failed" }
            );
        }
        let more = s.retried.saturating_sub(s.retried_inputs.len() as u64);
        if more > 0 {
            let _ = writeln!(err, "  ... and {more} more");
        }
    }
    // Only records that exist are pointed at; unrecorded failures were said as they happened.
    let recorded: Vec<_> = s
        .failures
        .iter()
        .filter(|f| f.error_file.is_some())
        .collect();
    for f in &recorded {
        let _ = writeln!(
            err,
            "  failed: {} ({}): {}",
            f.record.input,
            f.record.error.as_str(),
            first_line(&f.record.message)
        );
    }
    let more = (s.failed - s.unrecorded).saturating_sub(recorded.len() as u64);
    if more > 0 {
        let _ = writeln!(
            err,
            "  ... and {more} more; see the .error.json files under {}",
            s.output.display()
        );
    }
    if s.unrecorded > 0 {
        let _ = writeln!(
            err,
            "sandpool: {} failures could not be recorded in {} (said above, as they happened)",
            s.unrecorded,
            s.output.display()
        );
    }
    if s.cancelled {
        let _ = writeln!(
            err,
            "sandpool: stopped early; run the same command again to finish the rest"
        );
    }
}
