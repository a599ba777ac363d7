//! `sandpool run` never loses or confuses an output (issue 18): names that
//! differ only in bytes, names that look like another input's error record
//! or sandpool's own files, inputs too large to read, two runs on one
//! output folder, an output folder inside the inputs, failed writes,
//! unreadable folders, and memory that stays flat in the number of inputs.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
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
    std::env::temp_dir().join(format!("sandpool-integrity-cache-{}", std::process::id()))
}

fn run_in(cwd: Option<&Path>, args: &[&OsStr]) -> Output {
    let mut cmd = sandpool();
    cmd.arg("run").args(args);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.output().unwrap()
}

fn run(args: &[&OsStr]) -> Output {
    run_in(None, args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn counts(s: &serde_json::Value) -> (u64, u64, u64) {
    (
        s["succeeded"].as_u64().unwrap(),
        s["failed"].as_u64().unwrap(),
        s["skipped"].as_u64().unwrap(),
    )
}

fn names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

fn doc_stats() -> PathBuf {
    common::guest("doc_stats")
}

fn probe() -> PathBuf {
    common::guest("file_probe")
}

fn stats_in(path: &Path) -> DocStats {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn names_that_are_not_utf8_and_differ_get_distinct_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join(OsStr::from_bytes(b"\xff.txt")), "one two\n").unwrap();
    std::fs::write(inputs.join(OsStr::from_bytes(b"\xfe.txt")), "alpha\n").unwrap();
    let args = [
        doc_stats().into_os_string(),
        inputs.into_os_string(),
        "-o".into(),
        out.clone().into_os_string(),
        "--json".into(),
    ];
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let first = run(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(counts(&summary(&first)), (2, 0, 0));
    assert_eq!(names(&out), ["%FE.txt.json", "%FF.txt.json"]);
    assert_eq!(
        stats_in(&out.join("%FF.txt.json")),
        doc_stats_of("one two\n")
    );
    assert_eq!(stats_in(&out.join("%FE.txt.json")), doc_stats_of("alpha\n"));
    let again = run(&args);
    assert_eq!(counts(&summary(&again)), (0, 0, 2), "a re-run skips both");
}

#[test]
fn an_input_named_like_another_inputs_error_record_keeps_its_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a"), "first").unwrap();
    std::fs::write(inputs.join("a.error"), "second").unwrap();
    let args = [
        probe().into_os_string(),
        inputs.clone().into_os_string(),
        "-o".into(),
        out.clone().into_os_string(),
        "--json".into(),
    ];
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let both_ok = run(&args);
    assert_eq!(
        counts(&summary(&both_ok)),
        (2, 0, 0),
        "{}",
        stderr(&both_ok)
    );
    assert_eq!(names(&out), ["a%2Eerror.json", "a.json"]);
    assert_eq!(counts(&summary(&run(&args))), (0, 0, 2), "both are done");

    // Now `a` fails: its error record must not overwrite `a.error`'s result.
    std::fs::write(inputs.join("a"), "fail: broken on purpose").unwrap();
    let mut forced = args.clone();
    forced.push("--force".as_ref());
    let one_failed = run(&forced);
    assert_eq!(one_failed.status.code(), Some(1));
    assert_eq!(counts(&summary(&one_failed)), (1, 1, 0));
    assert_eq!(names(&out), ["a%2Eerror.json", "a.error.json"]);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a.error.json")).unwrap()).unwrap();
    assert_eq!(record["input"], "a");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("broken on purpose")
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a%2Eerror.json")).unwrap()).unwrap();
    assert_eq!(result["name"], "a.error");
}

#[test]
fn a_top_level_input_named_like_a_temporary_file_is_computed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join(".sandpool-tmp-123-4"), "looks like ours").unwrap();
    std::fs::write(inputs.join(".sandpool-lock"), "so does this").unwrap();
    let args = [
        doc_stats().into_os_string(),
        inputs.into_os_string(),
        "-o".into(),
        out.clone().into_os_string(),
        "--json".into(),
    ];
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    assert_eq!(counts(&summary(&run(&args))), (2, 0, 0));
    assert_eq!(
        names(&out),
        ["%2Esandpool-lock.json", "%2Esandpool-tmp-123-4.json"]
    );
    assert_eq!(
        counts(&summary(&run(&args))),
        (0, 0, 2),
        "not swept, not redone"
    );
}

/// Runs `cmd` and returns its output and its peak resident memory in bytes.
/// Runs `cmd`, returning its output and the peak RSS of its own program,
/// polled from `VmHWM` while it runs. (Its `ru_maxrss` would also count
/// this test process, whose memory the child shares until its exec: with
/// other tests running here, that is noise of several MB.)
fn output_and_peak_rss(mut cmd: Command) -> (Output, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).unwrap();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).unwrap();
        buf
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib << 10);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, peak)
}

#[test]
fn inputs_over_max_input_fail_alone_before_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..6 {
        // Sparse: 1 GiB each as far as the size says, nothing on disk.
        let f = std::fs::File::create(inputs.join(format!("huge{i}.bin"))).unwrap();
        f.set_len(1 << 30).unwrap();
    }
    std::fs::write(inputs.join("small.txt"), "still fine").unwrap();
    let mut cmd = sandpool();
    cmd.args(["run".as_ref(), doc_stats().as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()])
        .args(["--jobs", "1", "--json"]);
    let (output, peak) = output_and_peak_rss(cmd);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(counts(&summary(&output)), (1, 6, 0));
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("huge3.bin.error.json")).unwrap()).unwrap();
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("1073741824 bytes") && message.contains("--max-input"),
        "{message}"
    );
    assert!(
        message.contains("134217728"),
        "half the 256 MiB memory cap: {message}"
    );
    // An explicit limit applies too.
    let small = run(&[
        doc_stats().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        dir.path().join("out2").as_os_str(),
        "--max-input".as_ref(),
        "4".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(counts(&summary(&small)), (0, 7, 0));
}

#[test]
fn a_second_run_on_a_locked_output_folder_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..40 {
        std::fs::write(inputs.join(format!("{i:02}.txt")), "spin: 100000000").unwrap();
    }
    let mut first = sandpool()
        .args(["run".as_ref(), probe().as_os_str(), inputs.as_os_str()])
        .args([
            "-o".as_ref(),
            out.as_os_str(),
            "--jobs".as_ref(),
            "1".as_ref(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !out.join(".sandpool-lock").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let second = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let text = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{text}");
    assert!(text.contains("in use"), "{text}");
    assert!(
        text.contains(&format!("pid {}", first.id())),
        "names the holder: {text}"
    );
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    first.kill().unwrap();
    first.wait().unwrap();
    // The killed holder's lock is free (the kernel dropped it); its
    // temporaries are swept; no input reports a false failure.
    std::fs::write(out.join(".sandpool-tmp-999999-1"), "half").unwrap();
    for i in 0..40 {
        std::fs::write(inputs.join(format!("{i:02}.txt")), format!("quick {i}")).unwrap();
    }
    let third = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    let s = summary(&third);
    assert_eq!(s["failed"].as_u64(), Some(0));
    assert_eq!(
        names(&out).len(),
        40,
        "40 outputs, no lock or temporary left"
    );
}

#[test]
fn an_output_folder_inside_the_inputs_is_skipped_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a.txt"), "a b").unwrap();
    std::fs::write(inputs.join("b.txt"), "c").unwrap();
    // The default `-o output`, run from inside the input folder, twice.
    for round in 0..3 {
        let out = run_in(
            Some(&inputs),
            &[doc_stats().as_os_str(), ".".as_ref(), "--json".as_ref()],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let s = summary(&out);
        assert_eq!(s["total"].as_u64(), Some(2), "round {round}: {s}");
        assert!(
            stderr(&out).contains("skipping it as input"),
            "{}",
            stderr(&out)
        );
        assert_eq!(s["output_inside_inputs"], "output");
    }
    assert_eq!(names(&inputs.join("output")), ["a.txt.json", "b.txt.json"]);
    // The output folder being the input folder cannot work at all.
    let same = run(&[
        doc_stats().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        inputs.as_os_str(),
    ]);
    assert_eq!(same.status.code(), Some(2));
    assert!(
        stderr(&same).contains("is the input folder"),
        "{}",
        stderr(&same)
    );
}

#[test]
fn a_failed_write_removes_its_temporary_and_the_summary_names_only_records_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    for name in ["good.txt", "blocked.txt", "half.txt"] {
        std::fs::write(inputs.join(name), "words here").unwrap();
    }
    // Non-empty folders where outputs should go: the renames into place fail.
    for blocker in [
        "blocked.txt.json",
        "blocked.txt.error.json",
        "half.txt.json",
    ] {
        std::fs::create_dir_all(out.join(blocker).join("keep")).unwrap();
    }
    let result = run(&[
        doc_stats().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    let text = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{text}");
    let s = summary(&result);
    assert_eq!(counts(&s), (1, 2, 0));
    assert_eq!(s["unrecorded"].as_u64(), Some(1));
    // `half.txt` could not write its result but did write its error record.
    let half: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("half.txt.error.json")).unwrap()).unwrap();
    assert_eq!(half["error"], "io");
    assert!(
        half["message"].as_str().unwrap().contains("cannot write"),
        "{half}"
    );
    // `blocked.txt` could record nothing: said on stderr, not pointed at.
    assert!(
        text.contains("blocked.txt failed") && text.contains("could not be written"),
        "{text}"
    );
    assert!(!text.contains("failed: blocked.txt"), "{text}");
    for failure in s["failures"].as_array().unwrap() {
        match failure["input"].as_str().unwrap() {
            "blocked.txt" => assert!(failure["error_file"].is_null(), "{failure}"),
            _ => assert!(Path::new(failure["error_file"].as_str().unwrap()).exists()),
        }
    }
    let left: Vec<_> = names(&out)
        .into_iter()
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "no temporary or lock left: {left:?}");
}

/// Runs `cmd` as an unprivileged user when this test runs as root (root
/// ignores file permissions), so that permissions apply either way.
fn unprivileged(cmd: &mut Command, dir: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534)
            .gid(65534)
            .env("SANDPOOL_CACHE_DIR", dir.join("cache"));
        cmd.arg("--no-cache");
    }
}

#[test]
fn an_unreadable_subfolder_fails_its_inputs_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(inputs.join("open")).unwrap();
    std::fs::create_dir_all(inputs.join("locked")).unwrap();
    std::fs::write(inputs.join("open/a.txt"), "a").unwrap();
    std::fs::write(inputs.join("locked/b.txt"), "b").unwrap();
    std::fs::write(inputs.join("top.txt"), "t").unwrap();
    std::fs::set_permissions(
        inputs.join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let wasm = dir.path().join("doc_stats.wasm");
    std::fs::copy(doc_stats(), &wasm).unwrap();
    let mut cmd = sandpool();
    cmd.args(["run".as_ref(), wasm.as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--json".as_ref()]);
    unprivileged(&mut cmd, dir.path());
    let result = cmd.output().unwrap();
    std::fs::set_permissions(
        inputs.join("locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_eq!(counts(&summary(&result)), (2, 1, 0));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("locked.error.json")).unwrap()).unwrap();
    assert_eq!(record["error"], "io");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("cannot list folder"),
        "{record}"
    );
    // Once it can be read, a re-run does its files and drops the stale record.
    let mut again = sandpool();
    again
        .args(["run".as_ref(), wasm.as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--json".as_ref()]);
    unprivileged(&mut again, dir.path());
    let again = again.output().unwrap();
    assert_eq!(counts(&summary(&again)), (1, 0, 2), "{}", stderr(&again));
    assert!(out.join("locked/b.txt.json").exists());
    assert!(
        !out.join("locked.error.json").exists(),
        "the stale record is gone"
    );
}

#[test]
fn an_output_folder_that_cannot_be_written_is_a_setup_error_before_any_task_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a.txt"), "a").unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    let wasm = dir.path().join("doc_stats.wasm");
    std::fs::copy(doc_stats(), &wasm).unwrap();
    let mut cmd = sandpool();
    cmd.args(["run".as_ref(), wasm.as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()]);
    unprivileged(&mut cmd, dir.path());
    let result = cmd.output().unwrap();
    let text = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot write to output folder"), "{text}");
    assert_eq!(
        text.trim().lines().count(),
        1,
        "one line, not one per input: {text}"
    );
    assert!(names(&out).is_empty());
}

#[test]
fn memory_stays_flat_in_the_number_of_inputs() {
    // On tmpfs when there is one: creating 40,000 files on a disk can take a minute.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let peak = |count: usize, name: &str| {
        let inputs = dir.path().join(name);
        for i in 0..count {
            let sub = inputs.join(format!("d{}", i % 16));
            if i < 16 {
                std::fs::create_dir_all(&sub).unwrap();
            }
            std::fs::write(
                sub.join(format!("file-with-a-longish-name-{i:06}.txt")),
                "x y",
            )
            .unwrap();
        }
        let mut cmd = sandpool();
        cmd.args(["run".as_ref(), doc_stats().as_os_str(), inputs.as_os_str()])
            .args([
                "-o".as_ref(),
                dir.path().join(format!("{name}-out")).as_os_str(),
            ])
            .arg("--quiet");
        let (output, peak) = output_and_peak_rss(cmd);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        peak
    };
    // The first run compiles the module (~10 MB more at its peak); the
    // next ones load it from the cache, so both measured runs do.
    peak(16, "warm-up");
    let small = peak(1_000, "small");
    let large = peak(40_000, "large");
    // Holding the list of inputs would cost ~200 bytes each: 8 MB here.
    assert!(
        large < small + (4 << 20),
        "1,000 inputs: {} KiB, 40,000 inputs: {} KiB",
        small >> 10,
        large >> 10
    );
}

#[test]
fn computing_starts_before_the_walk_ends() {
    use sandpool::{FileInput, FolderEvent, FolderJob, Task};
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..6_000 {
        std::fs::write(inputs.join(format!("{i}.txt")), format!("word {i}")).unwrap();
    }
    let task: Task<FileInput, String> = Task::from_file(doc_stats()).unwrap();
    let mut job = FolderJob::new(&inputs, dir.path().join("out"));
    job.workers = 1;
    let mut early = 0;
    let mut last = None;
    let summary = sandpool::run_folder(&task, &job, Default::default(), |event| {
        if let FolderEvent::Progress(p) = event {
            if !p.listed && p.processed() > 0 {
                early += 1;
            }
            last = Some(p);
        }
    })
    .unwrap();
    assert_eq!(summary.succeeded, 6_000);
    assert!(early > 0, "no input finished before the listing ended");
    let last = last.unwrap();
    assert!(last.listed && last.processed() == 6_000, "{last:?}");
}

#[test]
fn fail_fast_stops_starting_inputs_after_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    // Every 50th input fails: whatever order the folder lists them in, one
    // comes early, and at --jobs 1 nothing else is in flight when it does.
    for i in 0..3000 {
        let text = if i % 50 == 7 {
            "fail: on purpose"
        } else {
            "spin: 100000"
        };
        std::fs::write(inputs.join(format!("f{i}.txt")), text).unwrap();
    }
    let result = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--fail-fast".as_ref(),
        "--jobs".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let s = summary(&result);
    assert_eq!(s["failed"].as_u64(), Some(1), "{s}");
    assert_eq!(s["cancelled"], true);
    assert!(s["succeeded"].as_u64().unwrap() <= 3000 - 60, "{s}");
    let records = names(&out)
        .into_iter()
        .filter(|n| n.to_string_lossy().ends_with(".error.json"))
        .count();
    assert_eq!(records, 1);
}

/// A test that needs root cannot run here: a failure, unless the caller
/// opted out with `SANDPOOL_TEST_SKIP_PRIVILEGED=1` (then it says so), so a
/// skipped case never passes silently.
fn privileged_test_unavailable(why: &str) {
    assert!(
        std::env::var_os("SANDPOOL_TEST_SKIP_PRIVILEGED").is_some_and(|v| v == "1"),
        "{why} (set SANDPOOL_TEST_SKIP_PRIVILEGED=1 to skip this test knowingly)"
    );
    eprintln!("skipped (SANDPOOL_TEST_SKIP_PRIVILEGED=1): {why}");
}

#[test]
fn a_full_disk_leaves_no_temporary_and_every_failure_is_recorded_or_said() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        privileged_test_unavailable(
            "needs root to mount a small tmpfs in a private mount namespace",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::create_dir(&out).unwrap();
    for i in 0..40 {
        std::fs::write(inputs.join(format!("f{i:02}.txt")), format!("word{i} more")).unwrap();
    }
    let listing = dir.path().join("listing");
    // A 64 KiB file system (16 pages: one per small file) for the outputs,
    // seen only by this command; it fills up part way through the run.
    let script = r#"mount -t tmpfs -o size=64k tmpfs "$2" || exit 77
"$1" run "$3" "$4" -o "$2" --json --no-cache; rc=$?
ls -A "$2" > "$5"; exit $rc"#;
    let result = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_sandpool"))
        .args([
            out.as_os_str(),
            doc_stats().as_os_str(),
            inputs.as_os_str(),
            listing.as_os_str(),
        ])
        .output()
        .unwrap();
    let text = stderr(&result);
    if result.status.code() == Some(77) {
        privileged_test_unavailable(&format!("cannot mount a tmpfs here: {text}"));
        return;
    }
    assert_eq!(result.status.code(), Some(1), "{text}");
    let s = summary(&result);
    let (succeeded, failed, _) = counts(&s);
    assert_eq!(succeeded + failed, 40);
    assert!(succeeded > 0 && failed > 0, "{s}");
    let unrecorded = s["unrecorded"].as_u64().unwrap();
    let names = std::fs::read_to_string(&listing).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".sandpool-tmp")),
        "failed writes removed their temporaries: {names:?}"
    );
    let results = names.iter().filter(|n| n.ends_with(".txt.json")).count() as u64;
    let records = names.iter().filter(|n| n.ends_with(".error.json")).count() as u64;
    assert_eq!(results, succeeded, "{names:?}");
    assert_eq!(records, failed - unrecorded, "{names:?}");
    assert_eq!(
        text.matches("could not be written").count() as u64,
        unrecorded,
        "each unrecorded failure is said on stderr: {text}"
    );
    for failure in s["failures"].as_array().unwrap() {
        let file = failure["error_file"].as_str();
        let name = file.map(|f| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        assert!(
            name.is_none_or(|n| names.contains(&n.as_str())),
            "the summary names only records that exist: {failure}"
        );
    }
}

#[test]
fn reading_is_bounded_in_bytes_in_flight_not_in_count() {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..3 {
        // 40 MiB of zeros each (sparse: nothing stored, but read in full).
        let f = std::fs::File::create(inputs.join(format!("big{i}.bin"))).unwrap();
        f.set_len(40 << 20).unwrap();
    }
    let mut cmd = sandpool();
    cmd.args(["run".as_ref(), doc_stats().as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()])
        .args(["--memory", "96MiB", "--jobs", "2", "--json"]);
    let (output, peak) = output_and_peak_rss(cmd);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(counts(&summary(&output)), (3, 0, 0));
    // Measured here: ~130 MiB at --jobs 2, the same as at --jobs 1 (one
    // 40 MiB input in flight: its bytes, their encoded copy, the guest's
    // copies). Two at once, as two workers would read them without the
    // byte budget (each is under the 48 MiB --max-input), ~250 MiB.
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn a_killed_worker_process_fails_only_the_input_it_was_running() {
    // ~30 ms tasks: each goes to the worker in a frame of its own.
    kill_a_worker_mid_run(60, "spin: 30000000", 6);
}

#[test]
fn a_worker_killed_in_the_middle_of_a_frame_of_short_tasks_fails_only_its_running_task() {
    // ~1 ms tasks: a worker thread sends its read-ahead (many inputs) to
    // its worker process in one frame; the ones after the killed task go
    // to the replacement.
    kill_a_worker_mid_run(1500, "spin: 1000000", 200);
}

/// Runs `n` inputs (each `text` for the probe guest) at the process level
/// with 2 jobs, SIGKILLs one worker process once `after` outputs exist, and
/// checks that every input still ends with one output or record, and that
/// at most the task the worker was running failed, naming the worker.
fn kill_a_worker_mid_run(n: usize, text: &str, after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..n {
        std::fs::write(inputs.join(format!("{i:04}.txt")), text).unwrap();
    }
    let child = sandpool()
        .args(["run".as_ref(), probe().as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str()])
        .args(["--isolation", "process", "--jobs", "2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) < after {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
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
    let s = summary(&result);
    let (succeeded, failed, _) = counts(&s);
    assert_eq!(
        succeeded + failed,
        n as u64,
        "every input has an outcome: {s}"
    );
    // Killed mid-task (nearly always: the gaps between tasks are µs), that
    // task fails; killed between tasks, the next one goes to a new worker.
    assert!(failed <= 1, "only the task in flight is lost: {s}");
    if failed == 1 {
        assert_eq!(result.status.code(), Some(1));
        let failure = &s["failures"][0];
        assert_eq!(failure["error"], "worker_crashed", "{failure}");
        assert!(
            failure["message"].as_str().unwrap().contains(victim),
            "{failure}"
        );
    }
    assert_eq!(names(&out).len(), n, "one output or record per input");
}

/// Inputs of the mirrored-tree cases: relative path (bytes) → where its
/// result lands, relative to the output folder.
const MIRRORED: [(&[u8], &[u8]); 10] = [
    (b"x", b"x.json"),
    (b"x.json/y", b"x%2Ejson/y.json"),
    (b"x.error.json/z", b"x.error%2Ejson/z.json"),
    (b"d/a", b"d/a.json"),
    (b"d/a.error", b"d/a%2Eerror.json"),
    (b"d/\xff.txt", b"d/%FF.txt.json"),
    (b"d/\xfe.txt", b"d/%FE.txt.json"),
    (b".git/HEAD", b"%2Egit/HEAD.json"),
    (b"d/.hidden", b"d/%2Ehidden.json"),
    (b"d/e/50%.txt", b"d/e/50%25.txt.json"),
];

fn write_mirrored_inputs(inputs: &Path) {
    for (path, _) in MIRRORED {
        let path = inputs.join(OsStr::from_bytes(path));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, path.as_os_str().as_bytes()).unwrap();
    }
}

#[test]
fn a_mirrored_tree_keeps_files_and_folders_named_alike_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    write_mirrored_inputs(&inputs);
    let result = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    assert_eq!(counts(&summary(&result)), (MIRRORED.len() as u64, 0, 0));
    for (input, output) in MIRRORED {
        let at = out.join(OsStr::from_bytes(output));
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display())),
        )
        .unwrap();
        // Each output holds its own input's result (the probe echoes the name).
        assert_eq!(
            v["name"],
            String::from_utf8_lossy(input).as_ref(),
            "{}",
            at.display()
        );
        let id = sandpool::file_id(Path::new(OsStr::from_bytes(input)));
        assert_eq!(format!("{id}.json").as_bytes(), output);
    }
    let again = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(
        counts(&summary(&again)),
        (0, 0, MIRRORED.len() as u64),
        "a re-run resumes"
    );
}

#[test]
fn nested_temporaries_are_swept_and_nested_stale_records_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(inputs.join("d/e")).unwrap();
    std::fs::write(inputs.join("d/e/ok.txt"), "fine").unwrap();
    std::fs::write(inputs.join("d/e/bad.txt"), "fail: on purpose").unwrap();
    std::fs::create_dir_all(out.join("d/e")).unwrap();
    std::fs::write(out.join("d/e/.sandpool-tmp-1-1"), "half").unwrap();
    std::fs::write(out.join("d/e/ok.txt.error.json"), "{}\n").unwrap();
    std::fs::write(out.join("d/e/bad.txt.json"), "{\"stale\":true}\n").unwrap();
    let result = run(&[
        probe().as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
        "--force".as_ref(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_eq!(
        names(&out.join("d/e")),
        ["bad.txt.error.json", "ok.txt.json"],
        "temporary swept, stale result and stale record removed"
    );
}

#[test]
fn a_folder_that_cannot_be_listed_has_its_record_beside_it_in_the_mirrored_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(inputs.join("d/locked.json")).unwrap();
    std::fs::write(inputs.join("d/locked.json/b.txt"), "b").unwrap();
    std::fs::write(inputs.join("d/a.txt"), "a").unwrap();
    std::fs::set_permissions(
        inputs.join("d/locked.json"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let wasm = dir.path().join("doc_stats.wasm");
    std::fs::copy(doc_stats(), &wasm).unwrap();
    let mut cmd = sandpool();
    cmd.args(["run".as_ref(), wasm.as_os_str(), inputs.as_os_str()])
        .args(["-o".as_ref(), out.as_os_str(), "--json".as_ref()]);
    unprivileged(&mut cmd, dir.path());
    let result = cmd.output().unwrap();
    std::fs::set_permissions(
        inputs.join("d/locked.json"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_eq!(
        names(&out.join("d")),
        ["a.txt.json", "locked%2Ejson.error.json"]
    );
}
