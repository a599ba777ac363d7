//! `sandpool run --retries N`: transient failures (a deadline, a worker
//! crash) are run again, a guest's own error or trap never; what was
//! retried is in the summary and in `--json`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn sandpool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandpool"));
    cmd.env(
        "SANDPOOL_CACHE_DIR",
        std::env::temp_dir().join("sandpool-retries-test-cache"),
    );
    cmd
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json summary: {e}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn probe_run(inputs: &Path, out: &Path, extra: &[&str]) -> Output {
    sandpool()
        .args(["run".as_ref(), common::guest("file_probe").as_os_str()])
        .args([inputs.as_os_str(), "-o".as_ref(), out.as_os_str()])
        .args(["--json"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_timeout_is_retried_n_times_then_recorded_with_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("slow.txt"), "spin: 100000000000000");
    write(&inputs.join("ok.txt"), "fine");
    let result = probe_run(&inputs, &out, &["--timeout", "200ms", "--retries", "2"]);
    assert_eq!(result.status.code(), Some(1));
    let s = summary(&result);
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (s["retried"].as_u64(), s["retries"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
    let r = &s["retried_inputs"][0];
    assert_eq!(r["input"], "slow.txt");
    assert_eq!(r["errors"], serde_json::json!(["timeout", "timeout"]));
    assert_eq!(r["succeeded"], false);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("slow.txt.error.json")).unwrap()).unwrap();
    assert_eq!(record["error"], "timeout");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("failed 3 times"),
        "{record}"
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("1 inputs retried (2 retries in all)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("retried: slow.txt (timeout, timeout), then failed"),
        "{stderr}"
    );
}

#[test]
fn a_guest_error_or_a_trap_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("err.txt"), "fail: the guest says no");
    write(&inputs.join("trap.txt"), "trap");
    let result = probe_run(&inputs, &out, &["--retries", "3"]);
    assert_eq!(result.status.code(), Some(1));
    let s = summary(&result);
    assert_eq!(s["failed"].as_u64(), Some(2));
    assert_eq!(
        (s["retried"].as_u64(), s["retries"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(s["retried_inputs"], serde_json::json!([]));
}

#[test]
fn without_retries_a_timeout_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("slow.txt"), "spin: 100000000000000");
    let result = probe_run(&inputs, &out, &["--timeout", "200ms"]);
    let s = summary(&result);
    assert_eq!(
        (s["failed"].as_u64(), s["retries"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn an_input_whose_worker_process_was_killed_is_retried_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..60 {
        write(&inputs.join(format!("{i:02}.txt")), "spin: 30000000");
    }
    let child = sandpool()
        .args(["run".as_ref(), common::guest("file_probe").as_os_str()])
        .args([inputs.as_os_str(), "-o".as_ref(), out.as_os_str()])
        .args([
            "--isolation",
            "process",
            "--jobs",
            "2",
            "--json",
            "--retries",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) < 6 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let workers = Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&workers.stdout).into_owned();
    let victim = pids.lines().next().expect("a worker process");
    assert!(
        Command::new("kill")
            .args(["-KILL", victim])
            .status()
            .unwrap()
            .success()
    );
    let result = child.wait_with_output().unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let s = summary(&result);
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(60), Some(0)),
        "{s}"
    );
    // Killed mid-task (nearly always), that task was run again.
    assert!(s["retried"].as_u64().unwrap() <= 1, "{s}");
    if s["retried"] == 1 {
        assert_eq!(
            s["retried_inputs"][0]["errors"],
            serde_json::json!(["worker_crashed"])
        );
        assert_eq!(s["retried_inputs"][0]["succeeded"], true);
    }
}
