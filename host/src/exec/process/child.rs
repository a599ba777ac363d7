//! One `sandpool worker` child process: finding the program to run, the
//! handle the supervisor drives it through (pipes, frame reader, counters),
//! reaping it, and describing how it ended (signal name or exit status).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WorkerStart;
use super::frame::FrameReader;
use crate::error::Error;
use crate::sync::lock;

/// How long a worker asked to exit (stdin closed) may take before it is killed.
const EXIT_PATIENCE: Duration = Duration::from_secs(2);

/// The name of the worker program.
const PROGRAM: &str = "sandpool";

/// Finds the program to run as `PROGRAM worker`: the explicit option, else
/// `$SANDPOOL_WORKER_BIN`, else this executable if it is `sandpool`, else a
/// `sandpool` next to this executable or in its parent directory (where
/// cargo puts it relative to test and bench executables).
pub(crate) fn locate_program(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let checked = |path: PathBuf, source: &str| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Config(format!(
                "the worker program {} ({source}) is not a file",
                path.display()
            )))
        }
    };
    if let Some(path) = explicit {
        return checked(path.to_path_buf(), "PoolBuilder::worker_program");
    }
    if let Some(path) = std::env::var_os(super::WORKER_BIN_ENV).filter(|p| !p.is_empty()) {
        return checked(PathBuf::from(path), super::WORKER_BIN_ENV);
    }
    let exe = std::env::current_exe().map_err(|e| {
        Error::Config(format!(
            "cannot find the worker program (no current executable: {e})"
        ))
    })?;
    if exe.file_name().is_some_and(|n| n == PROGRAM) {
        return Ok(exe);
    }
    let near = exe
        .parent()
        .into_iter()
        .chain(exe.parent().and_then(Path::parent));
    for dir in near {
        let candidate = dir.join(PROGRAM);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Config(format!(
        "cannot find the `{PROGRAM}` program to run worker processes: set PoolBuilder::worker_program or ${}",
        super::WORKER_BIN_ENV
    )))
}

/// A signal's name, for crash reports.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}

/// "worker process 123 was killed by signal 9 (SIGKILL)" or "... exited with status 3".
pub(crate) fn describe_exit(pid: u32, status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => {
                let core = if status.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                };
                format!(
                    "worker process {pid} was killed by signal {signal} ({}{core})",
                    signal_name(signal)
                )
            }
            (None, Some(code)) => format!("worker process {pid} exited with status {code}"),
            (None, None) => format!("worker process {pid} ended ({status})"),
        },
        None => format!("worker process {pid} was lost (its exit status is unknown)"),
    }
}

/// Live worker pids and counters, shared by the supervisor and its processes.
#[derive(Debug, Default)]
pub(super) struct Registry {
    pub(super) pids: BTreeSet<u32>,
    pub(super) started: u64,
    pub(super) crashed: u64,
    pub(super) recycled: u64,
    pub(super) failed_starts: u64,
    pub(super) requests: u64,
    pub(super) tasks_sent: u64,
    pub(super) failed_in_a_row: u32,
    pub(super) gave_up: Option<String>,
    pub(super) last_start: Option<WorkerStart>,
}

/// One `sandpool worker` child process.
pub(super) struct WorkerProc {
    pub(super) child: Child,
    pub(super) pid: u32,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) reader: FrameReader<ChildStdout>,
    pub(super) spawned: Instant,
    pub(super) ready: bool,
    pub(super) tasks: u64,
    pub(super) next_id: u64,
    pub(super) buf: Vec<u8>,
    pub(super) status: Option<Option<ExitStatus>>,
    pub(super) registry: Arc<Mutex<Registry>>,
}

impl WorkerProc {
    /// Ends the process and reaps it: with `kill`, at once (SIGKILL); else
    /// closes its stdin and waits for it to exit, killing it if it takes
    /// longer than [`EXIT_PATIENCE`]. Returns its exit status (None if unknown).
    pub(super) fn reap(&mut self, kill: bool) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return status;
        }
        drop(self.stdin.take());
        if kill {
            let _ = self.child.kill();
        }
        let give_up = Instant::now() + EXIT_PATIENCE;
        let mut nap = Duration::from_micros(50);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Err(_) => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.status = Some(status);
        lock(&self.registry).pids.remove(&self.pid);
        status
    }

    pub(super) fn describe(&mut self, kill: bool) -> String {
        let status = self.reap(kill);
        describe_exit(self.pid, status)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        // An idle ready worker exits on EOF; one still starting is killed.
        let ready = self.ready;
        self.reap(!ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_signal_name_or_status() {
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(
            describe_exit(7, Some(killed)),
            "worker process 7 was killed by signal 9 (SIGKILL)"
        );
        let aborted = ExitStatus::from_raw(libc::SIGABRT | 0x80);
        assert_eq!(
            describe_exit(7, Some(aborted)),
            "worker process 7 was killed by signal 6 (SIGABRT, core dumped)"
        );
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            describe_exit(7, Some(exited)),
            "worker process 7 exited with status 3"
        );
        assert!(describe_exit(7, None).contains("lost"));
    }

    #[test]
    fn an_explicit_worker_program_must_exist() {
        let err = locate_program(Some(Path::new("/no/such/sandpool"))).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.to_string().contains("/no/such/sandpool"));
    }
}
