//! Process isolation: persistent `sandpool worker` subprocesses that run
//! wasm tasks, supervised so a crashing worker loses only its task in flight.

/// Entry point of the hidden `sandpool worker` subcommand: serves tasks over
/// stdin/stdout until stdin closes. Returns the process exit code.
///
/// ```no_run
/// // In the `sandpool` binary: `sandpool worker` runs
/// let code = sandpool::process::worker_main();
/// ```
pub fn worker_main() -> std::process::ExitCode {
    eprintln!("sandpool worker: not implemented yet");
    std::process::ExitCode::from(2)
}
