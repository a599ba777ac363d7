//! JSON Lines mode: `sandpool run task.wasm records.jsonl -o results.jsonl`
//! (and `-` for stdin / stdout): a result line per input line, in input
//! order, error lines for failures, bounded memory, resume after a kill;
//! and the setup errors (exit 2) of both modes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sandpool::workloads::{DocStats, doc_stats_of};

fn sandpool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandpool"));
    cmd.env(
        "SANDPOOL_CACHE_DIR",
        std::env::temp_dir().join("sandpool-jsonl-test-cache"),
    );
    cmd
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    sandpool().arg("run").args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `{"text": ...}` records, the text varying with the line.
fn records(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{{\"k\":\"r{i}\",\"text\":\"w{} w{} line {i}\"}}\n",
                i % 7,
                i % 3
            )
        })
        .collect()
}

#[test]
fn results_come_in_input_order_each_carrying_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let text = records(3000);
    std::fs::write(&input, &text).unwrap();
    let doc_stats = common::guest("doc_stats");
    let result = run(&[
        doc_stats.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--jobs".as_ref(),
        "2".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let got = lines_of(&out);
    assert_eq!(got.len(), 3000);
    for (i, (line, record)) in got.iter().zip(text.lines()).enumerate() {
        assert_eq!(line["line"], i as u64 + 1);
        let stats: DocStats = serde_json::from_value(line["ok"].clone()).unwrap();
        assert_eq!(stats, doc_stats_of(record), "line {}", i + 1);
    }
}

#[test]
fn the_id_field_is_carried_into_results_and_given_to_the_task_as_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(
        &input,
        "{\"id\":\"a-1\"}\n{\"id\":42}\n{\"other\":1}\n[1,2]\n",
    )
    .unwrap();
    let probe = common::guest("file_probe");
    let result = run(&[
        probe.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--id-field".as_ref(),
        "id".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let got = lines_of(&out);
    assert_eq!(
        (got[0]["id"].clone(), got[0]["ok"]["name"].clone()),
        ("a-1".into(), "a-1".into())
    );
    assert_eq!(
        (got[1]["id"].clone(), got[1]["ok"]["name"].clone()),
        (42.into(), "42".into())
    );
    assert_eq!(
        got[1]["ok"]["bytes"],
        "{\"id\":42}".len(),
        "the line's bytes, no newline"
    );
    for (i, line) in got.iter().enumerate().skip(2) {
        assert_eq!(line["line"], i as u64 + 1);
        assert_eq!(line["error"], "no_id", "{line}");
    }
}

#[test]
fn a_line_that_is_not_json_is_an_error_line_and_the_rest_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"a\":1}\nnot json at all\n\n{\"b\":2}").unwrap();
    let result = run(&[
        common::guest("doc_stats").as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let s: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(2))
    );
    let got = lines_of(&out);
    let kinds: Vec<_> = got.iter().map(|l| l.get("error").cloned()).collect();
    assert_eq!(
        kinds,
        [None, Some("not_json".into()), Some("not_json".into()), None],
        "a last line without a newline is a line too"
    );
    assert!(
        got[1]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 is not JSON")
    );
}

#[test]
fn a_line_over_max_input_is_an_error_line_and_its_neighbours_keep_their_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let long = format!("{{\"t\":\"{}\"}}\n", "x".repeat(100_000));
    std::fs::write(&input, format!("{{\"t\":1}}\n{long}{{\"t\":3}}\n")).unwrap();
    let result = run(&[
        common::guest("doc_stats").as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--max-input".as_ref(),
        "10KiB".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let got = lines_of(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["error"], "too_long");
    assert_eq!(
        (got[2]["line"].as_u64(), got[2]["ok"]["words"].as_u64()),
        (Some(3), Some(2))
    );
}

#[test]
fn stdin_to_stdout_composes_in_a_pipe() {
    let mut child = sandpool()
        .args([
            "run".as_ref(),
            common::guest("doc_stats").as_os_str(),
            "-".as_ref(),
        ])
        .args(["-o", "-", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = records(500);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()).unwrap());
    let result = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    let out = String::from_utf8(result.stdout).unwrap();
    let numbers: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (1..=500).collect::<Vec<_>>());
}

#[test]
fn a_torn_output_is_resumed_without_redoing_or_duplicating_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, records(200)).unwrap();
    let args = [
        common::guest("doc_stats").into_os_string(),
        input.clone().into_os_string(),
        "-o".into(),
        out.clone().into_os_string(),
        "--json".into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    assert_eq!(run(&args).status.code(), Some(0));
    let full = std::fs::read_to_string(&out).unwrap();
    // As an interrupted run leaves it: 120 complete lines and half of one.
    let cut: usize = full.lines().take(120).map(|l| l.len() + 1).sum();
    std::fs::write(&out, &full[..cut + 10]).unwrap();
    let again = run(&args);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let s: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (s["skipped"].as_u64(), s["succeeded"].as_u64()),
        (Some(120), Some(80))
    );
    assert_eq!(s["truncated_torn_line"], true);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        full,
        "the same file as one whole run"
    );
}

#[test]
fn a_killed_run_resumes_with_every_line_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, records(100_000)).unwrap();
    let doc_stats = common::guest("doc_stats");
    let mut child = sandpool()
        .args(["run".as_ref(), doc_stats.as_os_str(), input.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--quiet".as_ref()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 4096 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let again = sandpool()
        .args(["run".as_ref(), doc_stats.as_os_str(), input.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--json".as_ref()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let s: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(
        s["skipped"].as_u64().unwrap() > 0,
        "resumed, not redone: {s}"
    );
    let numbers: Vec<u64> = lines_of(&out)
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 100_000);
    assert!(numbers.iter().enumerate().all(|(i, &n)| n == i as u64 + 1));
}

/// The peak RSS of a child's own program, polled from `VmHWM` while it runs
/// (the child's `ru_maxrss` also counts this test process, whose memory it
/// shared until its exec).
fn peak_rss_of(mut cmd: Command) -> (std::process::ExitStatus, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib << 10);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn memory_stays_flat_in_the_number_of_lines() {
    let dir = tempfile::tempdir().unwrap();
    let peak = |count: usize| {
        let input = dir.path().join(format!("in-{count}.jsonl"));
        std::fs::write(&input, records(count)).unwrap();
        let mut cmd = sandpool();
        cmd.args([
            "run".as_ref(),
            common::guest("doc_stats").as_os_str(),
            input.as_os_str(),
        ])
        .args([
            "-o".as_ref(),
            dir.path().join(format!("out-{count}.jsonl")).as_os_str(),
        ])
        .arg("--quiet");
        let (status, peak) = peak_rss_of(cmd);
        assert_eq!(status.code(), Some(0));
        peak
    };
    peak(100); // compiles and caches the module
    let small = peak(20_000);
    let large = peak(200_000);
    // Holding every line and result would cost ~200 bytes each: 36 MB more here.
    assert!(
        large < small + (8 << 20),
        "20,000 lines: {} KiB, 200,000 lines: {} KiB",
        small >> 10,
        large >> 10
    );
}

#[test]
fn bad_inputs_and_outputs_are_setup_errors_before_any_task_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("in")).unwrap();
    std::fs::write(d.join("in/a.txt"), "a").unwrap();
    std::fs::write(d.join("photo.png"), b"\x89PNG\r\n\x1a\n\x00\x00").unwrap();
    std::fs::write(d.join("a-file"), "x").unwrap();
    std::fs::write(d.join("r.jsonl"), "{}\n").unwrap();
    std::fs::create_dir(d.join("a-folder")).unwrap();
    let doc_stats = common::guest("doc_stats");
    let p = |name: &str| d.join(name).into_os_string();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![p("photo.png")],
            "neither a folder nor a JSON Lines file",
        ),
        (
            vec![p("in"), "-o".into(), p("a-file")],
            "is a file, not a folder",
        ),
        (
            vec![p("r.jsonl"), "-o".into(), p("a-folder")],
            "is a folder",
        ),
        (
            vec![p("r.jsonl"), "-o".into(), p("r.jsonl")],
            "is the input file",
        ),
        (
            vec![p("in"), "--id-field".into(), "id".into()],
            "JSON Lines input only",
        ),
        (
            vec![p("r.jsonl"), "--fail-fast".into()],
            "folder input only",
        ),
    ];
    for (args, says) in cases {
        let out = sandpool()
            .arg("run")
            .arg(&doc_stats)
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(d.join("a-file")).unwrap(),
        "x",
        "untouched"
    );
    assert_eq!(std::fs::read_to_string(d.join("r.jsonl")).unwrap(), "{}\n");
    assert!(!d.join("output").exists(), "no work started");
}

#[test]
fn a_line_that_times_out_is_retried_and_its_error_line_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    // Eight MB of words: far more than 2 ms of work for doc_stats.
    let words: Vec<String> = (0..800_000).map(|i| format!("word{i}")).collect();
    std::fs::write(&input, format!("{{\"t\":\"{}\"}}\n", words.join(" "))).unwrap();
    let result = run(&[
        common::guest("doc_stats").as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--timeout".as_ref(),
        "2ms".as_ref(),
        "--retries".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let s: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(
        (s["retried"].as_u64(), s["retries"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
    let got = lines_of(&out);
    assert_eq!(got[0]["error"], "timeout");
    assert!(
        got[0]["message"]
            .as_str()
            .unwrap()
            .contains("failed 3 times"),
        "{}",
        got[0]
    );
}

#[test]
fn a_line_that_runs_out_of_fuel_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"a\":1}\n").unwrap();
    // Too little fuel: a failure that would only repeat.
    let result = run(&[
        common::guest("doc_stats").as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--fuel".as_ref(),
        "10".as_ref(),
        "--retries".as_ref(),
        "3".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let s: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(s["retries"].as_u64(), Some(0), "{s}");
    assert_eq!(lines_of(&out)[0]["error"], "fuel_exhausted");
}

#[test]
fn ctrl_c_finishes_the_lines_in_flight_exits_130_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, records(100_000)).unwrap();
    let doc_stats = common::guest("doc_stats");
    let child = sandpool()
        .args(["run".as_ref(), doc_stats.as_os_str(), input.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 4096 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    let partial = std::fs::read_to_string(&out).unwrap();
    assert!(
        partial.ends_with('\n'),
        "no torn line after a graceful stop"
    );
    let done = partial.lines().count();
    assert!(done < 100_000, "stopped early");
    let again = sandpool()
        .args(["run".as_ref(), doc_stats.as_os_str(), input.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--json".as_ref()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let s: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(s["skipped"].as_u64(), Some(done as u64), "{s}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        100_000
    );
}
