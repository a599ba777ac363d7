//! `sandpool run TASK records.jsonl`: JSON Lines mode, `sandpool::run_jsonl`
//! over the flags, a summary on stderr (or stdout with `--json`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sandpool::{CancelToken, FileInput, JsonlJob, JsonlSummary, Task};

use crate::args::RunArgs;
use crate::run::{INTERRUPTED, install_ctrl_c, limits, setup_error};

pub fn main(args: &RunArgs, task: &Task<FileInput, String>, load_time: Duration) -> ExitCode {
    let output = args.output.clone().unwrap_or_else(|| "-".into());
    let to_stdout = output.as_os_str() == "-";
    let mut job = JsonlJob::new(&args.inputs, &output);
    job.id_field = args.id_field.clone();
    job.force = args.force;
    job.max_input = args.max_input.map(|s| s.0);
    job.isolation = args.isolation;
    job.limits = limits(args);
    match crate::run::capabilities(args) {
        Ok(caps) => job.capabilities = caps,
        Err(message) => return setup_error(message),
    }
    job.retries = args.retries;
    if let Some(jobs) = args.jobs {
        job.workers = jobs;
    }
    let cancel = CancelToken::default();
    install_ctrl_c(cancel.clone(), args.quiet);
    let plain = !args.quiet;
    let mut last_line = Instant::now();
    let summary = sandpool::run_jsonl(task, &job, cancel.clone(), |s| {
        if plain && last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            eprintln!(
                "sandpool: line {}: {} succeeded, {} failed, {} skipped",
                s.lines, s.succeeded, s.failed, s.skipped
            );
        }
    });
    let s = match summary {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    report(args, &s, to_stdout, load_time);
    if s.output_closed {
        ExitCode::SUCCESS
    } else if s.cancelled {
        ExitCode::from(INTERRUPTED)
    } else if s.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn report(args: &RunArgs, s: &JsonlSummary, to_stdout: bool, load_time: Duration) {
    if args.json {
        let mut value = serde_json::to_value(s).unwrap_or_default();
        value["module_load_seconds"] = serde_json::json!(load_time.as_secs_f64());
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        // The results own stdout when they go there.
        if to_stdout {
            eprintln!("{text}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
    if args.quiet {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "sandpool: {} lines: {} succeeded, {} failed, {} skipped (already done) in {:.2}s",
        s.lines, s.succeeded, s.failed, s.skipped, s.seconds
    );
    if s.truncated_torn_line {
        let _ = writeln!(
            err,
            "sandpool: cut a torn last line (from an interrupted run) off the output"
        );
    }
    if s.retried > 0 {
        let _ = writeln!(
            err,
            "sandpool: {} lines retried ({} retries in all)",
            s.retried, s.retries
        );
    }
    if s.failed > 0 {
        let _ = writeln!(
            err,
            "sandpool: failed lines are error lines in the output (\"error\": kind)"
        );
    }
    if s.cancelled && !s.output_closed {
        let _ = writeln!(
            err,
            "sandpool: stopped early; run the same command again to finish the rest"
        );
    }
}
