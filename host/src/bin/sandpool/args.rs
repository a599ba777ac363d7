//! Command-line flags, defined once; `--help` is generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run CPU tasks as isolated WebAssembly, one output file per input.
#[derive(Parser, Debug)]
#[command(name = "sandpool", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a task module on every file of a folder.
    Run(RunArgs),
    /// Describe a module: exports, imports, ABI version, whether it is a valid task.
    Inspect(InspectArgs),
    /// Serve tasks over stdin/stdout (used by the process executor).
    #[command(hide = true)]
    Worker,
}

/// Flags of `sandpool run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The task module (.wasm).
    pub task: PathBuf,
    /// The folder of inputs.
    pub inputs: PathBuf,
}

/// Flags of `sandpool inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The module to describe.
    pub task: PathBuf,
}
