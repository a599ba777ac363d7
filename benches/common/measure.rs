//! Timing and resource use: per-call timers, CPU clocks, peak RSS, and a
//! child process measured by `wait4` (wall, user + system CPU, peak RSS).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::median;

/// Microseconds since `t0`.
pub fn micros_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}

/// Times `f` once per call, `n` calls; the per-call times in µs, sorted.
pub fn time_each(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        times.push(micros_since(t0));
    }
    times.sort_by(f64::total_cmp);
    times
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time this thread has run, in ns (not moved by other processes' load).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// User + system CPU seconds of this process so far (all its threads).
pub fn process_cpu_seconds() -> f64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 * 1e-9
}

/// Median µs of this thread's CPU time per call of `f`, over `rounds`
/// rounds of at least `round_ms` each.
pub fn cpu_per_call(rounds: usize, round_ms: u64, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let (cpu, wall) = (thread_cpu_ns(), Instant::now());
            let mut n = 0u32;
            while n == 0 || wall.elapsed().as_millis() < u128::from(round_ms) {
                f();
                n += 1;
            }
            (thread_cpu_ns() - cpu) as f64 / 1e3 / f64::from(n)
        })
        .collect();
    median(&mut times)
}

/// A `VmHWM:`-style field of `/proc/{pid}/status` in KiB (`pid` may be "self"); 0 if unknown.
pub fn status_kib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// This process's peak RSS in MiB.
pub fn own_peak_rss_mib() -> f64 {
    status_kib("self", "VmHWM:") / 1024.0
}

/// Largest RSS (KiB) of the children this process has waited for.
pub fn children_maxrss_kib() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0 {
        usage.ru_maxrss as f64
    } else {
        0.0
    }
}

/// What `wait4` reports about a finished child.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    /// User CPU of the child and of the descendants it waited for.
    pub user: Duration,
    /// System CPU, likewise.
    pub sys: Duration,
    /// Peak RSS of the largest single process among the child and its waited-for descendants.
    pub max_rss_kib: i64,
    pub ok: bool,
}

impl Measured {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// Runs `cmd` (stdout to null unless `keep_stdout`) and measures it with wait4;
/// returns the measurement and what it printed on stdout.
pub fn run_measured(cmd: &mut Command, keep_stdout: bool) -> (Measured, String) {
    use std::io::Read;
    let started = Instant::now();
    // Reaped below with wait4 (which also reports the child's rusage), not Child::wait.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; wait4 fills `status` and `usage`.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(r, pid, "wait4");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let measured = Measured {
        wall,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    };
    (measured, out)
}

/// Runs `cmd` and measures it with wait4 (its stdout discarded).
pub fn measure(cmd: &mut Command) -> Measured {
    run_measured(cmd, false).0
}
