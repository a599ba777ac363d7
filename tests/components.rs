//! Component tasks (Python and JavaScript, `wit/task.wit`) behind the same
//! `Task<In, Out>` as ABI v1 modules: the same outputs as the Rust guest on
//! the bundled inputs, at both levels and from `sandpool run`; limits,
//! errors, captured output and the deny-by-default WASI 0.2 context.
//!
//! Compiling a Python component takes seconds, so every load goes through a
//! compiled-code cache under target/ that later runs reuse.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandpool::workloads::DocStats;
use sandpool::{ErrorKind, FileInput, Isolation, Json, Limits, Pool, Task};

use common::{component_cache as cache, load_component as load};

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every file under inputs/, as the `FileInput`s `sandpool run` would send.
fn bundled_inputs() -> Vec<FileInput> {
    let root = common::workspace().join("inputs");
    let found: Vec<FileInput> = files_under(&root)
        .into_iter()
        .map(|path| FileInput {
            name: path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            data: std::fs::read(&path).unwrap(),
        })
        .collect();
    assert!(found.len() >= 5, "the bundled inputs are there");
    found
}

fn doc_stats_with(path: &Path, isolation: Isolation, inputs: &[FileInput]) -> Vec<DocStats> {
    let task: Task<FileInput, Json<DocStats>> = load(path);
    let pool = Pool::builder(task)
        .workers(2)
        .isolation(isolation)
        .build()
        .unwrap();
    pool.map(inputs)
        .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", path.display())).0)
        .collect()
}

#[test]
fn python_and_javascript_doc_stats_match_the_rust_guest_on_the_bundled_inputs() {
    let inputs = bundled_inputs();
    let rust = doc_stats_with(&common::guest("doc_stats"), Isolation::Instance, &inputs);
    // The Rust guest is the reference, and the inputs exercise it: Unicode
    // words, invalid UTF-8 (latin1.txt), several lines.
    assert!(
        rust.iter()
            .any(|s| s.top.iter().any(|(w, _)| !w.is_ascii()))
    );
    for name in ["doc_stats_py", "doc_stats_js"] {
        let got = doc_stats_with(&common::component(name), Isolation::Instance, &inputs);
        for ((input, want), got) in inputs.iter().zip(&rust).zip(&got) {
            assert_eq!(got, want, "{name} on {}", input.name);
        }
    }
}

#[test]
fn a_component_runs_at_the_process_level_too() {
    let inputs = bundled_inputs();
    let rust = doc_stats_with(&common::guest("doc_stats"), Isolation::Instance, &inputs);
    let got = doc_stats_with(
        &common::component("doc_stats_py"),
        Isolation::Process,
        &inputs,
    );
    assert_eq!(got, rust);
}

#[test]
fn sandpool_run_writes_the_same_files_for_a_python_task_as_for_the_rust_one() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = common::workspace().join("inputs");
    let run = |task: &Path, out: &Path| {
        let result = std::process::Command::new(env!("CARGO_BIN_EXE_sandpool"))
            .env("SANDPOOL_CACHE_DIR", cache())
            .arg("run")
            .args([
                task.as_os_str(),
                inputs.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            result.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    };
    let (rust_out, py_out) = (tmp.path().join("rust"), tmp.path().join("py"));
    run(&common::guest("doc_stats"), &rust_out);
    run(&common::component("doc_stats_py"), &py_out);
    let mut compared = 0;
    for path in files_under(&rust_out) {
        if path.extension().is_some_and(|e| e == "json") {
            let want: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let other = py_out.join(path.strip_prefix(&rust_out).unwrap());
            let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&other).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", other.display()));
            assert_eq!(got, want, "{}", path.display());
            compared += 1;
        }
    }
    assert!(compared >= 5, "compared {compared} outputs");
}

fn probe() -> Task<String, String> {
    load(&common::component("probe_py"))
}

#[test]
fn a_component_task_has_the_same_limits_and_errors_as_a_module() {
    let limits = Limits::default()
        .timeout(Duration::from_millis(300))
        .memory(256 << 20);
    let pool = Pool::builder(probe())
        .workers(2)
        .limits(limits)
        .build()
        .unwrap();

    assert_eq!(
        pool.submit(&"echo:hi".into()).unwrap().wait().unwrap(),
        "hi"
    );

    let started = Instant::now();
    let err = pool.submit(&"spin".into()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let err = pool
        .submit(&"alloc:1000000000".into())
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");

    let err = pool.submit(&"raise".into()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Guest, "{err}");
    assert!(
        err.to_string()
            .contains("ValueError: the probe was asked to fail"),
        "{err}"
    );

    // Bytes that are not a String: the guest's helper says it cannot decode them.
    let bytes: Task<Vec<u8>, String> = probe().retype();
    let raw = Pool::builder(bytes).build().unwrap();
    let err = raw.submit(&vec![0xff; 3]).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");

    // One failing task never stops the others.
    assert_eq!(
        pool.submit(&"echo:after".into()).unwrap().wait().unwrap(),
        "after"
    );
}

#[test]
fn a_component_output_is_captured_and_bounded() {
    let pool = Pool::builder(probe())
        .limits(Limits::default().max_log(100))
        .build()
        .unwrap();
    let output = pool.submit(&"print".into()).unwrap().wait_output();
    assert_eq!(output.result.unwrap(), "printed");
    assert_eq!(output.logs.stdout.bytes, b"hello from python\n");
    assert_eq!(output.logs.stderr.bytes.len(), 100);
    assert_eq!(output.logs.stderr.dropped, 10_001 - 100);
}

#[test]
fn a_component_reaches_no_environment_files_or_network() {
    let pool = Pool::builder(probe()).build().unwrap();
    let found: serde_json::Value =
        serde_json::from_str(&pool.submit(&"reach".into()).unwrap().wait().unwrap()).unwrap();
    assert_eq!(found["env"], serde_json::json!({}), "{found}");
    assert_eq!(found["argv"], serde_json::json!([]), "{found}");
    for what in ["root", "passwd", "socket"] {
        let seen = found[what].as_str().unwrap_or_default();
        assert!(seen.starts_with("denied"), "{what}: {found}");
    }
}

#[test]
fn a_fuel_limit_stops_a_component() {
    let pool = Pool::builder(probe())
        .fuel_metering(true)
        .limits(Limits::default().fuel(5_000_000))
        .build()
        .unwrap();
    let err = pool.submit(&"spin".into()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FuelExhausted, "{err}");
}

#[test]
fn inspect_tells_a_component_from_a_module() {
    let py = std::fs::read(common::component("doc_stats_py")).unwrap();
    let report = sandpool::inspect_module("doc_stats_py", &py).unwrap();
    assert_eq!(report.kind, "component");
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert!(
        report
            .exports
            .iter()
            .any(|e| e.name == "run" && e.ty == "func")
    );
    assert!(
        report
            .imports
            .iter()
            .all(|i| i.name.starts_with("wasi:") || i.name == "sandpool:task/capabilities@0.1.0")
    );
    assert!(
        report
            .imports
            .iter()
            .any(|i| i.name.starts_with("wasi:cli/stdout"))
    );
    let rust = std::fs::read(common::guest("doc_stats")).unwrap();
    assert_eq!(
        sandpool::inspect_module("doc_stats", &rust).unwrap().kind,
        "module"
    );
}

#[test]
fn bad_input_to_a_javascript_task_is_a_decode_error_naming_the_problem() {
    // A String where a FileInput is expected: its name, then no data.
    let task: Task<String, String> = load(&common::component("doc_stats_js"));
    let pool = Pool::builder(task).build().unwrap();
    let err = pool.submit(&"x".into()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("input ends at byte"), "{err}");
}

#[test]
fn a_component_importing_anything_but_wasi_is_refused_before_compiling() {
    let wasm = wat::parse_str(r#"(component (import "env:host/secrets" (instance)))"#).unwrap();
    let err = Task::<u64, u64>::from_bytes("secrets", wasm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("env:host/secrets"), "{err}");
    assert!(
        err.to_string().contains("checked before compiling"),
        "{err}"
    );
}

#[test]
fn a_component_without_the_run_export_is_refused_at_load() {
    let wasm = wat::parse_str("(component)").unwrap();
    let err = Task::<u64, u64>::from_bytes("empty", wasm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("does not export `run`"), "{err}");
}
