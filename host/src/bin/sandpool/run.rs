//! `sandpool run`: flags in, `sandpool::run_folder` over them, progress and summary out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sandpool::{
    CancelToken, FileInput, FolderJob, FolderSummary, IoPool, Limits, Pool, Progress, Task,
};

use crate::args::{IsolationArg, RunArgs};

/// Exit code for usage and setup errors.
pub const SETUP_ERROR: u8 = 2;
/// Exit code when interrupted by Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;

fn setup_error(message: impl std::fmt::Display) -> ExitCode {
    // One line: wasm parse errors can span several.
    let message = message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("sandpool: {message}");
    ExitCode::from(SETUP_ERROR)
}

pub fn main(args: RunArgs) -> ExitCode {
    // Check the folder first: it is the cheapest mistake to report.
    match std::fs::metadata(&args.inputs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return setup_error(format!(
                "{} is not a folder; pass the folder that holds the inputs",
                args.inputs.display()
            ));
        }
        Err(e) => {
            return setup_error(format!(
                "cannot open input folder {}: {e}",
                args.inputs.display()
            ));
        }
    }
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
    let task = match loaded {
        Ok(task) => task,
        Err(e) => {
            return setup_error(format!(
                "{e} (is {} a sandpool task module? try `sandpool inspect`)",
                args.task.display()
            ));
        }
    };
    let load_time = started.elapsed();
    let limits = Limits {
        timeout: (!args.timeout.is_zero()).then_some(args.timeout),
        fuel: args.fuel,
        memory: args.memory,
        max_output: args.max_output,
        ..Limits::default()
    };
    let workers = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    if workers == 0 {
        return setup_error("--jobs must be at least 1");
    }
    let isolation = match args.isolation {
        IsolationArg::Instance => sandpool::Isolation::Instance,
        IsolationArg::Process => sandpool::Isolation::Process,
    };
    let mut builder = Pool::builder(task.clone())
        .workers(workers)
        .limits(limits)
        .isolation(isolation);
    if let Some(dir) = &args.dir {
        builder = builder.grant_dir(&dir.host, &dir.guest, dir.access);
    }
    let pool = match builder.build() {
        Ok(pool) => pool,
        Err(e) => return setup_error(e),
    };
    let io = match IoPool::builder().name("files").build() {
        Ok(io) => io,
        Err(e) => return setup_error(e),
    };
    if args.verbose {
        let how = if task.loaded_from_cache() {
            "loaded from the cache"
        } else {
            "compiled"
        };
        eprintln!(
            "sandpool: {} {how} in {:.1?}; {workers} workers",
            args.task.display(),
            load_time
        );
    }

    let cancel = CancelToken::default();
    install_ctrl_c(&io, cancel.clone(), args.quiet);
    let mut display = Display::new(&args);
    let job = FolderJob {
        inputs: args.inputs.clone(),
        output: args.output.clone(),
        force: args.force,
        fail_fast: args.fail_fast,
    };
    let summary = sandpool::run_folder(&pool, &io, &job, cancel.clone(), |p| display.update(p));
    display.finish();
    pool.shutdown(true, false);
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    report(&args, &summary, load_time);
    if cancel.is_cancelled() && summary.not_run > 0 {
        ExitCode::from(INTERRUPTED)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// First Ctrl-C: stop starting inputs, finish those in flight. Second: exit now
/// (outputs are renamed into place, so none is ever half-written).
fn install_ctrl_c(io: &IoPool, cancel: CancelToken, quiet: bool) {
    io.runtime().spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        if !quiet {
            eprintln!("\nsandpool: interrupted; finishing the inputs in flight (Ctrl-C again to stop at once)");
        }
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("sandpool: stopped; run the same command again to finish");
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_line: Instant,
}

impl Display {
    fn new(args: &RunArgs) -> Self {
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
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, p: Progress) {
        let todo = p.total - p.skipped;
        if let Some(bar) = &self.bar {
            bar.set_length(todo);
            bar.set_position(p.processed());
            bar.set_message(format!("done, {} failed, {} skipped", p.failed, p.skipped));
        } else if self.plain
            && (self.last_line.elapsed() >= Duration::from_secs(2) || p.processed() == todo)
        {
            self.last_line = Instant::now();
            let rate = p.processed() as f64 / p.elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "sandpool: {}/{todo} done, {} failed, {} skipped, {rate:.0} files/s",
                p.processed(),
                p.failed,
                p.skipped
            );
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn report(args: &RunArgs, s: &FolderSummary, load_time: Duration) {
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
        for f in &s.failures {
            eprintln!("sandpool: {}: {}", f.input, f.message);
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
    for f in &s.failures {
        let first_line = f.message.lines().next().unwrap_or_default();
        let _ = writeln!(
            err,
            "  failed: {} ({}): {first_line}",
            f.input,
            f.error.as_str()
        );
    }
    if s.failed > s.failures.len() as u64 {
        let _ = writeln!(
            err,
            "  ... and {} more; see {}/*.error.json",
            s.failed - s.failures.len() as u64,
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
