//! The machine and versions every benchmark prints beside its figures:
//! CPU model and count, kernel, load average, date, rustc, wasmtime,
//! sandpool's version and commit, Python.

use std::process::Command;

use super::{cpus, python, root};

/// The trimmed stdout (or stderr, if stdout is empty) of `cmd args`; "?" if it fails.
pub fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let out = if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            };
            String::from_utf8_lossy(out).trim().to_string()
        })
        .unwrap_or_else(|| "?".into())
}

/// The 1, 5 and 15-minute load averages, as /proc/loadavg gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 1-minute load average.
pub fn load_1min() -> f64 {
    load_average()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The version of `krate` recorded in the workspace's Cargo.lock.
pub fn locked_version(krate: &str) -> String {
    let lock = root().join("Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{krate}\"")
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "?".into()
}

/// Today's date and time, UTC.
pub fn date() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// The commit the benchmark was built from (short hash, `+dirty` if the tree differs).
pub fn git_revision() -> String {
    let dir = root().display().to_string();
    let rev = command_line("git", &["-C", &dir, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &dir, "diff", "--quiet", "HEAD"])
        .status()
        .is_ok_and(|s| s.code() == Some(1));
    if dirty { format!("{rev}+dirty") } else { rev }
}

/// The header lines (markdown bullets): date, machine, load, versions.
/// `with_python` adds the interpreter's version.
pub fn header(with_python: bool) -> Vec<String> {
    let mut lines = vec![
        format!("- date: {}", date()),
        format!(
            "- machine: {}, {} CPUs (nproc {}), {}",
            cpu_model(),
            cpus(),
            command_line("nproc", &[]),
            command_line("uname", &["-sr"])
        ),
        format!("- load average (1/5/15 min) at start: {}", load_average()),
        format!(
            "- rustc {} (host); guests built by {}",
            command_line("rustc", &["--version"]).trim_start_matches("rustc "),
            command_line("/usr/bin/rustc", &["--version"])
        ),
        format!(
            "- wasmtime {} (Cargo.lock), sandpool {} at {}",
            locked_version("wasmtime"),
            env!("CARGO_PKG_VERSION"),
            git_revision()
        ),
    ];
    if with_python {
        lines.push(format!("- {}", command_line(&python(), &["--version"])));
    }
    lines
}

/// Prints `# title`, a blank line and the header.
pub fn print_header(title: &str, with_python: bool) {
    println!("# {title}\n");
    for line in header(with_python) {
        println!("{line}");
    }
}
