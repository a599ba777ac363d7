//! End-to-end tests of the `sandpool` binary.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sandpool::workloads::{DocStats, doc_stats_of};

fn sandpool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandpool"));
    cmd.env("SANDPOOL_CACHE_DIR", cache_dir());
    cmd
}

fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sandpool-cli-test-cache-{}", std::process::id()))
}

/// `sandpool run ARGS...`
fn run(args: &[&std::ffi::OsStr]) -> Output {
    sandpool()
        .arg("run")
        .args(args)
        .output()
        .expect("sandpool runs")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every file under `dir`, relative, recursively (`/`-joined, lossy).
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

fn doc_stats() -> PathBuf {
    common::guest("doc_stats")
}

#[test]
fn nested_folders_with_spaces_and_unicode_get_one_matching_output_each_in_a_mirrored_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    let files = [
        ("top.txt", "one two two"),
        ("sub dir/with space.txt", "Alpha beta ALPHA"),
        ("sub dir/deeper/ünïcödé 名前.md", "名前 名前 ünïcödé"),
        ("a%2Fb.txt", "percent in the name"),
        ("a/b.txt", "slash in the path"),
    ];
    for (name, text) in files {
        write(&inputs.join(name), text);
    }
    let result = run(&[
        doc_stats().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for (name, text) in files {
        let id = sandpool::file_id(Path::new(name));
        let got: DocStats =
            serde_json::from_slice(&std::fs::read(out.join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(got, doc_stats_of(text), "output of {name}");
    }
    // The tree is mirrored, names kept as they are (`%` alone is escaped).
    for name in [
        "top.txt.json",
        "sub dir/with space.txt.json",
        "sub dir/deeper/ünïcödé 名前.md.json",
        "a%252Fb.txt.json",
        "a/b.txt.json",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    assert_eq!(
        files_under(&out).len(),
        files.len(),
        "one file per input, nothing else"
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains(&out.display().to_string()),
        "says where outputs went: {stderr}"
    );
}

#[test]
fn a_rerun_recomputes_only_the_missing_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..50 {
        write(
            &inputs.join(format!("f{i:02}.txt")),
            &format!("word{i} common"),
        );
    }
    let args = [
        doc_stats().into_os_string(),
        inputs.clone().into_os_string(),
        "-o".into(),
        out.clone().into_os_string(),
        "--json".into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let first = summary(&run(&args));
    assert_eq!(
        (first["succeeded"].as_u64(), first["skipped"].as_u64()),
        (Some(50), Some(0))
    );
    let kept = out.join("f07.txt.json");
    let kept_time = std::fs::metadata(&kept).unwrap().modified().unwrap();
    for i in [3, 11, 42] {
        std::fs::remove_file(out.join(format!("f{i:02}.txt.json"))).unwrap();
    }
    std::fs::write(out.join("f20.txt.json"), b"{\"trunc").unwrap(); // a corrupt output is redone
    std::thread::sleep(Duration::from_millis(20));
    let second = summary(&run(&args));
    assert_eq!(
        (second["succeeded"].as_u64(), second["skipped"].as_u64()),
        (Some(4), Some(46))
    );
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        kept_time,
        "done outputs untouched"
    );
    let redone: DocStats =
        serde_json::from_slice(&std::fs::read(out.join("f20.txt.json")).unwrap()).unwrap();
    assert_eq!(redone, doc_stats_of("word20 common"));
    let mut forced_args = args.clone();
    forced_args.push("--force".as_ref());
    let forced = summary(&run(&forced_args));
    assert_eq!(forced["succeeded"].as_u64(), Some(50));
}

#[test]
fn failing_inputs_give_exit_code_1_and_one_error_file_each() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..20 {
        let text = match i {
            4 => "fail: no good".to_string(),
            9 => "trap".to_string(),
            _ => format!("fine {i}"),
        };
        write(&inputs.join(format!("{i:02}.txt")), &text);
    }
    let probe = common::guest("file_probe");
    let result = run(&[
        probe.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(
        result.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let s = summary(&result);
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(18), Some(2))
    );
    let guest_err: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("04.txt.error.json")).unwrap()).unwrap();
    assert_eq!(guest_err["error"], "guest");
    assert!(guest_err["message"].as_str().unwrap().contains("no good"));
    assert_eq!(guest_err["input"], "04.txt");
    let trap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("09.txt.error.json")).unwrap()).unwrap();
    assert_eq!(trap["error"], "trap");
    assert!(!out.join("04.txt.json").exists() && !out.join("09.txt.json").exists());
    let probe_out: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("05.txt.json")).unwrap()).unwrap();
    assert_eq!(probe_out["name"], "05.txt", "the task saw its own file");
    let errors = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".error.json")
        })
        .count();
    assert_eq!(errors, 2);
}

#[test]
fn setup_errors_give_exit_code_2_and_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let in_dir = dir.path().join("in");
    let cases: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![junk.as_os_str(), in_dir.as_os_str()],
        vec![
            doc_stats().into_os_string().leak(),
            dir.path().join("missing").into_os_string().leak(),
        ],
        vec![
            dir.path().join("nope.wasm").into_os_string().leak(),
            in_dir.as_os_str(),
        ],
        vec![
            doc_stats().into_os_string().leak(),
            in_dir.as_os_str(),
            "--memory".as_ref(),
            "lots".as_ref(),
        ],
    ];
    for args in cases {
        let mut full = vec!["run".as_ref()];
        full.extend(args.iter().copied());
        let out = sandpool().args(&full).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.trim().is_empty());
    }
    let out = sandpool()
        .args(["run".as_ref(), junk.as_os_str(), in_dir.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("junk"), "{stderr}");
}

#[test]
fn sigint_leaves_only_complete_outputs_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..400 {
        write(&inputs.join(format!("{i:03}.txt")), "spin: 3000000");
    }
    let probe = common::guest("file_probe");
    let child = sandpool()
        .args([
            "run".as_ref(),
            probe.as_os_str(),
            inputs.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--jobs".as_ref(),
            "2".as_ref(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some outputs exist, then interrupt.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) < 10 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait_with_output().unwrap();
    assert_eq!(
        status.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let done: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(done.len() < 400, "stopped early ({} outputs)", done.len());
    for path in &done {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".txt.json"), "only complete outputs: {name}");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).expect("complete JSON");
        assert_eq!(format!("{}.json", v["name"].as_str().unwrap()), name);
    }
    let rerun = run(&[
        probe.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(rerun.status.code(), Some(0));
    let s = summary(&rerun);
    assert_eq!(
        s["skipped"].as_u64().unwrap() + s["succeeded"].as_u64().unwrap(),
        400
    );
    assert_eq!(
        s["skipped"].as_u64().unwrap(),
        done.len() as u64,
        "the re-run skips what was done"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 400);
}

#[test]
fn ten_thousand_files_each_get_their_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..10_000 {
        write(
            &inputs.join(format!("d{}/f{i}.txt", i % 10)),
            &format!("file {i} says w{} w{}", i % 97, i % 13),
        );
    }
    let result = run(&[
        doc_stats().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(0));
    assert_eq!(summary(&result)["succeeded"].as_u64(), Some(10_000));
    for i in 0..10_000 {
        let id = sandpool::file_id(Path::new(&format!("d{}/f{i}.txt", i % 10)));
        let got: DocStats =
            serde_json::from_slice(&std::fs::read(out.join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(
            got,
            doc_stats_of(&format!("file {i} says w{} w{}", i % 97, i % 13)),
            "file {i}"
        );
    }
}

#[test]
fn the_second_run_of_a_module_loads_it_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    write(&inputs.join("a.txt"), "a");
    let cache = dir.path().join("cache");
    let go = || {
        sandpool()
            .env("SANDPOOL_CACHE_DIR", &cache)
            .args([
                "run".as_ref(),
                doc_stats().as_os_str(),
                inputs.as_os_str(),
                "-o".as_ref(),
                dir.path().join("o").as_os_str(),
                "--verbose".as_ref(),
                "--force".as_ref(),
            ])
            .output()
            .unwrap()
    };
    let first = String::from_utf8_lossy(&go().stderr).into_owned();
    assert!(first.contains("compiled"), "{first}");
    let second = String::from_utf8_lossy(&go().stderr).into_owned();
    assert!(second.contains("loaded from the cache"), "{second}");
    // A tampered entry is not trusted: it is recompiled.
    for entry in std::fs::read_dir(cache.join("modules")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let third = String::from_utf8_lossy(&go().stderr).into_owned();
    assert!(third.contains("compiled"), "{third}");
}

#[test]
fn inspect_tells_a_valid_task_from_an_invalid_one() {
    let out = sandpool()
        .args(["inspect".as_ref(), doc_stats().as_os_str()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("sandpool_run") && text.contains("valid sandpool task: yes"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("bare.wat");
    std::fs::write(&wat, r#"(module (memory (export "memory") 1))"#).unwrap();
    let out = sandpool()
        .args(["inspect".as_ref(), wat.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid sandpool task: no"));
}

/// The exit codes docs/abi.md documents for a module that is not a task:
/// `inspect` reports it (1), `run` refuses it before any input (2), and a
/// file that is not WebAssembly at all is 2 for both.
#[test]
fn inspect_and_run_exit_codes_for_a_module_that_is_not_a_task_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("bare.wat");
    std::fs::write(&wat, r#"(module (memory (export "memory") 1))"#).unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "not wasm").unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a.txt"), "a").unwrap();
    let code = |args: &[&std::ffi::OsStr]| sandpool().args(args).output().unwrap().status.code();
    assert_eq!(code(&["inspect".as_ref(), wat.as_os_str()]), Some(1));
    assert_eq!(code(&["inspect".as_ref(), junk.as_os_str()]), Some(2));
    let out = dir.path().join("out");
    for module in [&wat, &junk] {
        let run = [
            "run".as_ref(),
            module.as_os_str(),
            inputs.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ];
        assert_eq!(code(&run), Some(2), "{}", module.display());
    }
    assert!(!out.join("a.txt.json").exists() && !out.join("a.txt.error.json").exists());
}

#[test]
fn help_reads_like_a_manual() {
    let out = sandpool().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--jobs",
        "--isolation",
        "--timeout",
        "--memory",
        "--fuel",
        "--max-output",
        "--force",
        "--fail-fast",
        "--json",
        "EXAMPLES",
    ] {
        assert!(text.contains(flag), "run --help mentions {flag}");
    }
    let top =
        String::from_utf8_lossy(&sandpool().arg("--help").output().unwrap().stdout).into_owned();
    assert!(top.contains("EXIT STATUS"), "{top}");
}

#[test]
fn repeated_sigkill_and_rerun_ends_with_every_output_present_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..300 {
        write(
            &inputs.join(format!("k{i:03}.txt")),
            &format!("spin: {}", 200_000 + (i % 7) * 300_000),
        );
    }
    let probe = common::guest("file_probe");
    let args = [
        "run".as_ref(),
        probe.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ];
    let mut kills = 0;
    let mut finished = false;
    for attempt in 0..100u64 {
        let mut child = sandpool().args(args).spawn().unwrap();
        // Kill at a varying moment: 50-250 ms into the run.
        std::thread::sleep(Duration::from_millis(50 + (attempt * 37) % 200));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert_eq!(status.code(), Some(0));
                finished = true;
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                // Whatever a killed run left, every final-named file is complete.
                for entry in std::fs::read_dir(&out).into_iter().flatten() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "json") {
                        let body = std::fs::read(&path).unwrap();
                        serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|e| {
                            panic!("{} is partial after SIGKILL: {e}", path.display())
                        });
                    }
                }
            }
        }
    }
    assert!(kills > 0, "the run was killed at least once");
    if !finished {
        let status = sandpool().args(args).status().unwrap();
        assert_eq!(status.code(), Some(0));
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        300,
        "every output and no leftover temporary file: {:?}",
        names
            .iter()
            .filter(|n| !n.ends_with(".txt.json"))
            .collect::<Vec<_>>()
    );
    for i in 0..300 {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("k{i:03}.txt.json"))).unwrap())
                .unwrap();
        assert_eq!(v["name"], format!("k{i:03}.txt"));
    }
}

#[test]
fn process_isolation_gives_the_same_outputs_and_contains_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    for i in 0..30 {
        write(
            &inputs.join(format!("sub/{i:02} x.txt")),
            if i == 7 { "trap" } else { "fine" },
        );
    }
    let probe = common::guest("file_probe");
    let result = run(&[
        probe.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--isolation".as_ref(),
        "process".as_ref(),
        "--jobs".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(
        result.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let s = summary(&result);
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(29), Some(1))
    );
    let err: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sub/07 x.txt.error.json")).unwrap())
            .unwrap();
    assert_eq!(err["error"], "trap");
    let ok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sub/08 x.txt.json")).unwrap()).unwrap();
    assert_eq!(ok["name"], "sub/08 x.txt");
}

#[test]
fn help_states_the_librarys_default_limits() {
    let out = sandpool().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let limits = sandpool::Limits::default();
    let mib = |bytes: u64| format!("[default: {}MiB]", bytes >> 20);
    assert!(text.contains(&mib(limits.memory)), "{text}");
    assert!(text.contains(&mib(limits.max_output)), "{text}");
    let timeout = limits.timeout.unwrap().as_secs();
    assert!(text.contains(&format!("[default: {timeout}s]")), "{text}");
    assert!(text.contains("--max-input"), "{text}");
}
