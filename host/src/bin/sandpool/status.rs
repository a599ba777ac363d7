//! `sandpool status`: `sandpool::folder_status` over the flags, as text or JSON.

use std::io::Write;
use std::process::ExitCode;

use sandpool::{InputState, StatusEntry};

use crate::args::StatusArgs;

/// Inputs listed by name in the readable report; `--json` lists them all.
const LISTED: usize = 20;

pub fn main(args: StatusArgs) -> ExitCode {
    let mut entries: Vec<StatusEntry> = Vec::new();
    let mut more = 0u64;
    let mut keep = |entry: StatusEntry| {
        if args.json || entries.len() < LISTED {
            entries.push(entry);
        } else {
            more += 1;
        }
    };
    // A JSON Lines run: both are files.
    let status = if args.inputs.is_file() && !args.output.is_dir() {
        sandpool::jsonl_status(&args.output, &args.inputs, &mut keep)
    } else {
        sandpool::folder_status(&args.inputs, &args.output, &mut keep)
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandpool: {e}");
            return ExitCode::from(crate::run::SETUP_ERROR);
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        value["inputs"] = serde_json::to_value(&entries).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "{} inputs in {}: {} done, {} failed, {} missing (outputs in {})",
            status.total,
            args.inputs.display(),
            status.done,
            status.failed,
            status.missing,
            status.output.display()
        );
        for e in &entries {
            let _ = match e.state {
                InputState::Failed => writeln!(
                    out,
                    "  failed:  {} ({})",
                    e.input,
                    e.error.as_deref().unwrap_or("unreadable record")
                ),
                _ => writeln!(out, "  missing: {}", e.input),
            };
        }
        if more > 0 {
            let _ = writeln!(out, "  ... and {more} more (--json lists them all)");
        }
    }
    if status.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
