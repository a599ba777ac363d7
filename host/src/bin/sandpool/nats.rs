//! `sandpool run --nats URL` and `sandpool worker --nats URL`: the command
//! line over [`sandpool::Cluster`] (docs/scaling.md).

use std::process::ExitCode;
use std::time::Duration;

use sandpool::{FileInput, Task};

use crate::args::{RunArgs, WorkerArgs};
use crate::run::setup_error;

/// `sandpool run --nats URL`: submit, collect, report as a local run does.
#[cfg(feature = "nats")]
pub fn run(args: &RunArgs, url: &str, task: &Task<FileInput, String>, load: Duration) -> ExitCode {
    use crate::run::{Display, INTERRUPTED, folder_output, install_ctrl_c, limits, report};
    if args.dir.is_some() {
        return setup_error("--dir names a folder of this machine; it cannot apply with --nats");
    }
    let cluster = match sandpool::Cluster::connect(url) {
        Ok(cluster) => cluster,
        Err(e) => return setup_error(e),
    };
    let mut job = sandpool::FolderJob::new(&args.inputs, folder_output(args));
    job.force = args.force;
    job.fail_fast = args.fail_fast;
    job.retries = args.retries;
    job.max_input = args.max_input.map(|s| s.0);
    job.isolation = args.isolation;
    job.limits = limits(args);
    let cancel = sandpool::CancelToken::default();
    install_ctrl_c(cancel.clone(), args.quiet);
    let mut display = Display::new(args);
    let summary = cluster.run_folder(task, &job, cancel.clone(), |e| display.event(e));
    display.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    report(args, &summary, load);
    if summary.cancelled {
        ExitCode::from(INTERRUPTED)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `sandpool worker --nats URL`: serve until Ctrl-C (or SIGTERM), then
/// finish the tasks in flight and say what was done.
#[cfg(feature = "nats")]
pub fn worker(args: WorkerArgs) -> ExitCode {
    let url = args.nats.clone().unwrap_or_default();
    if args.jobs == Some(0) {
        return setup_error("--jobs must be at least 1");
    }
    let settings = sandpool::ClusterSettings::default()
        .with_ack_wait(args.ack_wait.0.max(Duration::from_millis(500)))
        .with_max_deliver(args.max_deliver);
    let cluster = match sandpool::Cluster::connect_with(&url, settings) {
        Ok(cluster) => cluster,
        Err(e) => return setup_error(e),
    };
    let workers = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let cancel = sandpool::CancelToken::default();
    crate::run::install_ctrl_c(cancel.clone(), args.quiet);
    if !args.quiet {
        eprintln!("sandpool worker: serving {url} with {workers} tasks at a time");
    }
    match cluster.serve(workers, cancel) {
        Ok(stats) => {
            if !args.quiet {
                eprintln!(
                    "sandpool worker: {} tasks run, {} duplicate results refused, {} redelivered tasks already done, {} given up (max_deliver)",
                    stats.ran, stats.duplicates, stats.already_done, stats.lost
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => setup_error(e),
    }
}

/// Without the `nats` feature: say so.
#[cfg(not(feature = "nats"))]
pub fn run(_: &RunArgs, _: &str, _: &Task<FileInput, String>, _: Duration) -> ExitCode {
    setup_error("this sandpool was built without the `nats` feature (--nats)")
}

/// Without the `nats` feature: say so.
#[cfg(not(feature = "nats"))]
pub fn worker(_: WorkerArgs) -> ExitCode {
    setup_error("this sandpool was built without the `nats` feature (--nats)")
}
