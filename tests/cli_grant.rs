//! `sandpool run --dir HOST[:GUEST][:ro|rw]`: without it a task reaches no
//! file; with it, exactly one directory, read-only unless `:rw`.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(task: &Path, inputs: &Path, output: &Path, extra: &[&str]) -> Output {
    let cache =
        std::env::temp_dir().join(format!("sandpool-cli-grant-cache-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .env("SANDPOOL_CACHE_DIR", cache)
        .arg("run")
        .arg(task)
        .arg(inputs)
        .arg("-o")
        .arg(output)
        .args(["--jobs", "1", "--quiet"])
        .args(extra)
        .output()
        .expect("sandpool runs")
}

fn json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("a JSON document")
}

/// inputs/ asks for a file inside the grant, one outside it, and one write.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let granted = root.path().join("granted");
    let inputs = root.path().join("inputs");
    std::fs::create_dir_all(&granted).expect("mkdir");
    std::fs::create_dir_all(&inputs).expect("mkdir");
    std::fs::write(granted.join("words.txt"), "alpha beta\ngamma\n").expect("write");
    std::fs::write(root.path().join("secret.txt"), "host secret\n").expect("write");
    std::fs::write(inputs.join("inside"), "/data/words.txt").expect("write");
    std::fs::write(inputs.join("escape"), "/data/../secret.txt").expect("write");
    std::fs::write(inputs.join("writer"), "write /data/made.txt").expect("write");
    (root, granted, inputs)
}

#[test]
fn without_dir_a_task_reaches_no_file() {
    let (root, _granted, inputs) = setup();
    let out = root.path().join("out");
    let result = run(&common::guest("grant_reader"), &inputs, &out, &[]);
    assert_eq!(result.status.code(), Some(1), "{result:?}");
    for id in ["inside", "escape", "writer"] {
        assert!(out.join(format!("{id}.error.json")).exists(), "{id} failed");
        assert!(!out.join(format!("{id}.json")).exists());
    }
}

#[test]
fn a_read_only_dir_is_readable_and_nothing_else_is() {
    let (root, granted, inputs) = setup();
    let out = root.path().join("out");
    let dir = granted.display().to_string();
    let result = run(
        &common::guest("grant_reader"),
        &inputs,
        &out,
        &["--dir", &dir],
    );
    assert_eq!(result.status.code(), Some(1), "{result:?}");
    let inside = json(&out.join("inside.json"));
    assert_eq!(inside["first_line"], "alpha beta");
    assert_eq!(inside["bytes"], 17);
    let escape = json(&out.join("escape.error.json"));
    assert_eq!(escape["error"], "guest", "{escape}");
    assert!(!out.join("escape.json").exists());
    assert!(
        out.join("writer.error.json").exists(),
        "read-only refuses the write"
    );
    assert!(!granted.join("made.txt").exists());
}

#[test]
fn a_read_write_dir_at_a_chosen_guest_path_takes_writes() {
    let (root, granted, inputs) = setup();
    std::fs::write(inputs.join("inside"), "/in/words.txt").expect("write");
    std::fs::write(inputs.join("writer"), "write /in/made.txt").expect("write");
    let out = root.path().join("out");
    let dir = format!("{}:/in:rw", granted.display());
    let result = run(
        &common::guest("grant_reader"),
        &inputs,
        &out,
        &["--dir", &dir],
    );
    assert_eq!(
        result.status.code(),
        Some(1),
        "only the escape fails: {result:?}"
    );
    assert_eq!(json(&out.join("inside.json"))["first_line"], "alpha beta");
    assert_eq!(
        std::fs::read_to_string(granted.join("made.txt")).expect("written"),
        "writer"
    );
    assert!(out.join("escape.error.json").exists());
    assert_eq!(
        std::fs::read_to_string(root.path().join("secret.txt")).expect("read"),
        "host secret\n"
    );
}

#[test]
fn a_bad_dir_is_a_setup_error() {
    let (root, granted, inputs) = setup();
    let out = root.path().join("out");
    let task = common::guest("grant_reader");
    let missing = root.path().join("missing").display().to_string();
    for extra in [vec!["--dir", missing.as_str()], vec!["--dir", ":/data"]] {
        let result = run(&task, &inputs, &out, &extra);
        assert_eq!(result.status.code(), Some(2), "{extra:?}: {result:?}");
    }
    let dir = granted.display().to_string();
    let result = run(
        &task,
        &inputs,
        &out,
        &["--dir", &dir, "--isolation", "process"],
    );
    assert_eq!(result.status.code(), Some(2), "{result:?}");
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("Isolation::Instance"),
        "{result:?}"
    );
}
