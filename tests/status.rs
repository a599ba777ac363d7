//! `sandpool status OUT INPUTS`: done / failed / missing against the inputs,
//! readable and `--json`, with documented exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn sandpool(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .args(args)
        .env(
            "SANDPOOL_CACHE_DIR",
            std::env::temp_dir().join("sandpool-status-test-cache"),
        )
        .output()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run_probe(inputs: &Path, out: &Path) -> Output {
    let probe = common::guest("file_probe");
    sandpool(&[
        "run".as_ref(),
        probe.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
}

fn status(out: &Path, inputs: &Path, json: bool) -> Output {
    let mut args = vec!["status".as_ref(), out.as_os_str(), inputs.as_os_str()];
    if json {
        args.push("--json".as_ref());
    }
    sandpool(&args)
}

#[test]
fn status_counts_done_failed_and_missing_against_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a.txt"), "fine");
    write(&inputs.join("sub/b.txt"), "fine too");
    write(&inputs.join("sub/bad.txt"), "fail: on purpose");
    assert_eq!(run_probe(&inputs, &out).status.code(), Some(1));
    write(&inputs.join("sub/new.txt"), "added after the run");

    let text = status(&out, &inputs, false);
    assert_eq!(text.status.code(), Some(1), "not everything is done");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("4 inputs"), "{stdout}");
    assert!(stdout.contains("2 done, 1 failed, 1 missing"), "{stdout}");
    assert!(stdout.contains("failed:  sub/bad.txt (guest)"), "{stdout}");
    assert!(stdout.contains("missing: sub/new.txt"), "{stdout}");
    assert!(
        !stdout.contains("a.txt"),
        "done inputs are not listed: {stdout}"
    );

    let json = status(&out, &inputs, true);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["done"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        (v["failed"].as_u64(), v["missing"].as_u64()),
        (Some(1), Some(1))
    );
    let mut listed: Vec<(String, String)> = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["input"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("sub/bad.txt".to_string(), "failed".to_string()),
            ("sub/new.txt".to_string(), "missing".to_string())
        ]
    );
}

#[test]
fn status_of_a_complete_output_folder_exits_0_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a.txt"), "fine");
    write(&inputs.join("d/e/b.txt"), "fine");
    assert_eq!(run_probe(&inputs, &out).status.code(), Some(0));
    let before = std::fs::read(out.join("d/e/b.txt.json")).unwrap();
    let result = status(&out, &inputs, false);
    assert_eq!(result.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("2 done, 0 failed, 0 missing"), "{stdout}");
    assert_eq!(std::fs::read(out.join("d/e/b.txt.json")).unwrap(), before);
}

#[test]
fn a_result_that_is_not_json_counts_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a.txt"), "fine");
    write(&out.join("a.txt.json"), "{\"torn");
    let result = status(&out, &inputs, false);
    assert_eq!(result.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("0 done, 0 failed, 1 missing"), "{stdout}");
}

#[test]
fn status_of_a_folder_that_does_not_exist_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    write(&inputs.join("a.txt"), "fine");
    let result = status(&dir.path().join("nowhere"), &inputs, false);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("nowhere"), "names the folder: {stderr}");
    let result = status(&inputs, &dir.path().join("absent"), true);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("absent"));
}

#[test]
fn status_of_a_json_lines_run_counts_result_and_error_lines_against_input_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"a\":1}\nnot json\n{\"b\":2}\n").unwrap();
    let doc_stats = common::guest("doc_stats");
    let run = sandpool(&[
        "run".as_ref(),
        doc_stats.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    // Lines added since the run, and a torn result line from a killed run.
    let mut more = std::fs::read_to_string(&input).unwrap();
    more.push_str("{\"c\":3}\n{\"d\":4}\n{\"e\":5}\n");
    std::fs::write(&input, more).unwrap();
    let mut torn = std::fs::read_to_string(&out).unwrap();
    torn.push_str("{\"line\":4,\"o");
    std::fs::write(&out, torn).unwrap();

    let text = status(&out, &input, false);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("6 inputs"), "{stdout}");
    assert!(stdout.contains("2 done, 1 failed, 3 missing"), "{stdout}");
    assert!(stdout.contains("failed:  line 2 (not_json)"), "{stdout}");
    assert!(stdout.contains("missing: lines 4-6"), "{stdout}");

    let json = status(&out, &input, true);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v["done"].as_u64(), v["missing"].as_u64()),
        (Some(2), Some(3))
    );
}
