//! The `sandpool` command line: thin over the library.
//!
//! Exit codes: 0 all tasks succeeded, 1 some tasks failed, 2 usage or setup
//! error (bad flag, missing folder, unreadable or invalid module).
//! `status`: 0 every input done, 1 some failed or missing, 2 setup error.

mod args;
mod inspect;
mod jsonl;
mod nats;
mod run;
mod status;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    match cli.command {
        args::Command::Run(run_args) => run::main(run_args),
        args::Command::Inspect(inspect_args) => inspect::main(inspect_args),
        args::Command::Status(status_args) => status::main(status_args),
        args::Command::Worker(worker) if worker.nats.is_some() => nats::worker(worker),
        args::Command::Worker(_) => sandpool::process::worker_main(),
    }
}
