//! `sandpool inspect`: what a module imports and exports, and whether it is a task.

use std::process::ExitCode;

use crate::args::InspectArgs;

pub fn main(args: InspectArgs) -> ExitCode {
    let bytes = match std::fs::read(&args.task) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sandpool: cannot read {}: {e}", args.task.display());
            return ExitCode::from(crate::run::SETUP_ERROR);
        }
    };
    let report = match sandpool::inspect_module(&args.task.display().to_string(), &bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sandpool: {e}");
            return ExitCode::from(crate::run::SETUP_ERROR);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!("module:      {}", args.task.display());
        println!("size:        {} bytes", bytes.len());
        println!("kind:        {}", report.kind);
        if report.kind == "module" {
            println!(
                "abi version: {}",
                report
                    .abi_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "none".into())
            );
        }
        println!("imports:");
        for i in &report.imports {
            if i.module.is_empty() {
                println!("  {}  {}", i.name, i.ty);
            } else {
                println!("  {}::{}  {}", i.module, i.name, i.ty);
            }
        }
        println!("exports:");
        for e in &report.exports {
            println!("  {}  {}", e.name, e.ty);
        }
        println!("capabilities:");
        for c in &report.capabilities {
            println!("  {c}");
        }
        match &report.problem {
            None => println!("valid sandpool task: yes"),
            Some(p) => println!("valid sandpool task: no: {p}"),
        }
    }
    if report.problem.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
