//! Soak: 1,000,000 tiny tasks (an 8-byte echo, each in a fresh instance)
//! through a 2-worker in-process pool, with the resident set sampled as it
//! goes. Passes when the RSS at the end is within 10% of the RSS after the
//! first 10,000 tasks: no memory is leaked per task.
//!
//! `SOAK_TASKS` sets the count (default 1,000,000), `SOAK_SAMPLES` the
//! number of samples (default 20). Prints the samples and the verdict;
//! exits 1 when it fails. Needs the guests (`scripts/build-guests.sh`).
//!
//! ```text
//! cargo bench -p sandpool --bench soak
//! SOAK_TASKS=5000000 cargo bench -p sandpool --bench soak
//! ```

#[path = "../tests/common/soak.rs"]
mod soak_run;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let tasks = env_u64("SOAK_TASKS", 1_000_000);
    let samples = env_u64("SOAK_SAMPLES", 20);
    println!("soak: {tasks} echo tasks through a 2-worker instance pool");
    let soak = soak_run::run(tasks, samples);
    print!("{}", soak.report());
    if !soak.passes() {
        std::process::exit(1);
    }
}
