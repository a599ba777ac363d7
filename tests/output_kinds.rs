//! `sandpool run`'s output kinds, run through the real CLI on the `outputs`
//! guest: JSON `{id}.json`, raw bytes `{id}.{ext}`, named files in
//! `{id}.files/` that appear whole or not at all (killed mid-write, the
//! re-run sweeps the half folder and redoes the input), resume and
//! `sandpool status` counting every kind, and JSON Lines mode refusing a
//! non-JSON output with an error line.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sandpool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandpool"));
    cmd.env(
        "SANDPOOL_CACHE_DIR",
        std::env::temp_dir().join("sandpool-output-kinds-test-cache"),
    );
    cmd
}

fn run(inputs: &Path, out: &Path, extra: &[&str]) -> Output {
    sandpool()
        .arg("run")
        .arg(common::guest("outputs"))
        .arg(inputs)
        .arg("-o")
        .arg(out)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir`, relative, sorted (folders not listed).
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let path = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                found.push(path.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// What the `outputs` guest writes as file `f` of `files N SIZE`.
fn part(f: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| ((f + i) % 251) as u8).collect()
}

/// Asserts `dir` is a complete `files n size` output.
fn assert_complete(dir: &Path, n: usize, size: usize) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..n).map(|f| format!("part-{f}.bin")).collect();
    expected.sort();
    assert_eq!(names, expected, "{} is not whole", dir.display());
    for f in 0..n {
        let bytes = std::fs::read(dir.join(format!("part-{f}.bin"))).unwrap();
        assert!(
            bytes == part(f, size),
            "{}/part-{f}.bin differs",
            dir.display()
        );
    }
}

#[test]
fn each_output_kind_is_written_under_its_mirrored_name() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a.txt"), "json");
    write(&inputs.join("tables/b.dat"), "bytes csv x,y 1,2");
    write(&inputs.join("pages/c.pdf"), "files 3 10");
    write(&inputs.join("d.txt"), "error");
    write(&inputs.join("e.txt"), "bytes json {}");
    write(&inputs.join("f.txt"), "bytes tar.gz x");
    let result = run(&inputs, &out, &["--json"]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_eq!(
        files(&out),
        [
            "a.txt.json",
            "d.txt.error.json",
            "e.txt.error.json",
            "f.txt.error.json",
            "pages/c.pdf.files/part-0.bin",
            "pages/c.pdf.files/part-1.bin",
            "pages/c.pdf.files/part-2.bin",
            "tables/b.dat.csv",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a.txt.json")).unwrap()).unwrap();
    assert_eq!(json["bytes"], 4);
    assert_eq!(
        std::fs::read(out.join("tables/b.dat.csv")).unwrap(),
        b"x,y 1,2",
        "raw bytes are written as they are"
    );
    assert_complete(&out.join("pages/c.pdf.files"), 3, 10);
    // A refused output is the host's decode failure, named as such.
    for (name, says) in [("e.txt", "reserved"), ("f.txt", "tar.gz")] {
        let bytes = std::fs::read(out.join(format!("{name}.error.json"))).unwrap();
        assert!(
            bytes.ends_with(b"}\n"),
            "a record ends with a newline, as a result does"
        );
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (&record["input"], &record["id"]),
            (&name.into(), &name.into())
        );
        assert_eq!(record["error"], "decode", "{record}");
        assert!(
            record["message"].as_str().unwrap().contains(says),
            "{record}"
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["succeeded"], 3, "{summary}");
}

#[test]
fn resume_and_status_count_raw_and_multi_file_outputs_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a"), "bytes png abc");
    write(&inputs.join("sub/b"), "files 2 5");
    write(&inputs.join("c"), "json");
    assert_eq!(run(&inputs, &out, &[]).status.code(), Some(0));
    let again = run(&inputs, &out, &["--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["skipped"], 3, "{summary}");
    assert_eq!(summary["succeeded"], 0, "{summary}");

    let status = sandpool()
        .args(["status".as_ref(), out.as_os_str(), inputs.as_os_str()])
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (s["done"].as_u64(), s["missing"].as_u64()),
        (Some(3), Some(0)),
        "{s}"
    );

    // Removing an output makes its input missing again, and only that one is redone.
    std::fs::remove_dir_all(out.join("sub/b.files")).unwrap();
    let status = sandpool()
        .args(["status".as_ref(), out.as_os_str(), inputs.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("sub/b"));
    let third = run(&inputs, &out, &["--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(
        (summary["skipped"].as_u64(), summary["succeeded"].as_u64()),
        (Some(2), Some(1))
    );
    assert_complete(&out.join("sub/b.files"), 2, 5);
}

#[test]
fn a_redone_input_leaves_only_its_new_output() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("x"), "files 4 3");
    assert_eq!(run(&inputs, &out, &[]).status.code(), Some(0));
    write(&inputs.join("x"), "files 2 7");
    assert_eq!(run(&inputs, &out, &["--force"]).status.code(), Some(0));
    assert_complete(&out.join("x.files"), 2, 7);
    write(&inputs.join("x"), "bytes csv 1");
    assert_eq!(run(&inputs, &out, &["--force"]).status.code(), Some(0));
    assert_eq!(files(&out), ["x.csv"]);
    write(&inputs.join("x"), "json");
    assert_eq!(run(&inputs, &out, &["--force"]).status.code(), Some(0));
    assert_eq!(files(&out), ["x.json"]);
    write(&inputs.join("x"), "files 1 1");
    assert_eq!(run(&inputs, &out, &["--force"]).status.code(), Some(0));
    assert_eq!(files(&out), ["x.files/part-0.bin"]);
    write(&inputs.join("x"), "error");
    assert_eq!(run(&inputs, &out, &["--force"]).status.code(), Some(1));
    assert_eq!(files(&out), ["x.error.json"]);
}

#[test]
fn a_multi_file_output_stopped_mid_write_is_not_seen_and_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("one"), "json");
    write(&inputs.join("two"), "files 5 100");
    // The process dies after writing 2 of the 5 files (test-faults hook:
    // an abort there, as a kill would).
    let died = sandpool()
        .arg("run")
        .arg(common::guest("outputs"))
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .args(["--quiet", "-j", "1"])
        .env("SANDPOOL_FAULT_ABORT_AT_FILE", "2")
        .output()
        .unwrap();
    assert_eq!(
        died.status.code(),
        None,
        "killed by SIGABRT: {}",
        stderr(&died)
    );
    assert!(!out.join("two.files").exists(), "a half output is visible");
    let half: Vec<String> = files(&out)
        .into_iter()
        .filter(|f| f.starts_with(".sandpool-tmp-"))
        .collect();
    assert_eq!(
        half.len(),
        2,
        "the two files written are in a temporary folder: {half:?}"
    );
    // Status (read-only) says missing and removes nothing.
    let status = sandpool()
        .args([
            "status".as_ref(),
            out.as_os_str(),
            inputs.as_os_str(),
            "--json".as_ref(),
        ])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["missing"], 1, "{s}");
    assert!(files(&out).iter().any(|f| f.starts_with(".sandpool-tmp-")));
    // The re-run sweeps the temporary folder and redoes the input whole.
    let again = run(&inputs, &out, &["--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["succeeded"], 1, "{summary}");
    assert_complete(&out.join("two.files"), 5, 100);
    assert!(
        files(&out).iter().all(|f| !f.contains(".sandpool-tmp-")),
        "{:?}",
        files(&out)
    );
}

#[test]
fn killed_at_any_moment_a_run_leaves_only_whole_multi_file_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    let (n, size) = (20, 20_000);
    for i in 0..200 {
        write(
            &inputs.join(format!("{i:03}")),
            &format!("files {n} {size}"),
        );
    }
    let mut child = sandpool()
        .arg("run")
        .arg(common::guest("outputs"))
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .args(["--quiet", "-j", "2"])
        .spawn()
        .unwrap();
    // Kill it once it has written something, mid-run.
    let start = std::time::Instant::now();
    while files_count(&out) < 100 && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let whole = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "files"))
        .inspect(|p| assert_complete(p, n, size))
        .count();
    assert!(whole < 200, "the kill came too late to test anything");
    let again = run(&inputs, &out, &["--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["skipped"].as_u64(), Some(whole as u64), "{summary}");
    for i in 0..200 {
        assert_complete(&out.join(format!("{i:03}.files")), n, size);
    }
    assert_eq!(files(&out).len(), 200 * n, "no temporaries left");
}

/// Files under `dir` now, while a run renames folders in it (what vanishes
/// mid-count is skipped).
fn files_count(dir: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in listing.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(e.path()),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}

#[test]
fn json_lines_mode_refuses_a_raw_output_with_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "\"json\"\n\"bytes png x\"\n\"files 2 2\"\n").unwrap();
    let result = sandpool()
        .arg("run")
        .arg(common::guest("outputs"))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["ok"].is_object(), "{}", lines[0]);
    for (line, kind) in [(&lines[1], "bytes"), (&lines[2], "files")] {
        assert_eq!(line["error"], "decode", "{line}");
        let message = line["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{kind}` output")) && message.contains("JSON Lines"),
            "{message}"
        );
    }
}

#[test]
fn a_guest_refusing_its_input_is_not_a_host_decode_failure() {
    // `spin` takes a `Spin` struct, not a file: the guest refuses the bytes
    // (result tag 2), at both isolation levels.
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    write(&inputs.join("a.txt"), "not a Spin");
    for isolation in ["instance", "process"] {
        let out = dir.path().join(isolation);
        let result = sandpool()
            .arg("run")
            .arg(common::guest("spin"))
            .arg(&inputs)
            .arg("-o")
            .arg(&out)
            .args(["--quiet", "--isolation", isolation])
            .output()
            .unwrap();
        assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("a.txt.error.json")).unwrap()).unwrap();
        assert_eq!(record["error"], "input_rejected", "{isolation}: {record}");
        assert!(
            record["message"]
                .as_str()
                .unwrap()
                .contains("could not decode its input"),
            "{record}"
        );
        assert_eq!(record["index"], 0, "{record}");
    }
}

/// A guest written from docs/abi.md alone, in WAT: its output is tag 0 and
/// the documented raw-bytes encoding `FF 01 len ext len data`, a constant
/// (so it does not need the Rust SDK at all).
#[test]
fn a_guest_without_the_sdk_writes_raw_bytes_by_the_documented_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write(&inputs.join("a.txt"), "anything");
    let wat = dir.path().join("raw.wat");
    std::fs::write(
        &wat,
        r#"(module
  (memory (export "memory") 1)
  ;; tag 0, FF 01, ext "csv", data "a,b\n"
  (data (i32.const 16) "\00\ff\01\03csv\04a,b\0a")
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 12))))"#,
    )
    .unwrap();
    let result = sandpool()
        .arg("run")
        .arg(&wat)
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    assert_eq!(files(&out), ["a.txt.csv"]);
    assert_eq!(std::fs::read(out.join("a.txt.csv")).unwrap(), b"a,b\n");
}
