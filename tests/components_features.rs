//! What component tasks (Python and JavaScript) share with ABI v1 modules beyond running:
//! host capabilities (declared in the component, granted by the pool,
//! answered in process or forwarded from a worker process), the output
//! kinds of `sandpool run` (raw bytes, named files), and a granted
//! directory as the one WASI 0.2 preopen.
//!
//! The components are the ones scripts/build-components.sh built under
//! target/guest/components; compiled code is cached under target/ as in
//! tests/components.rs.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use sandpool::{DirAccess, ErrorKind, Isolation, Pool, Task};

use common::{component_cache as cache, load_component as load};

fn double(x: u64) -> Result<u64, String> {
    x.checked_mul(2).ok_or_else(|| format!("{x} is too large"))
}

/// Runs `component` (the capability guest: `math.double(n) + 1`) at both
/// levels with `math.double` granted, including a call the handler refuses.
fn calls_a_granted_capability_at_both_levels(component: &str) {
    for isolation in [Isolation::Instance, Isolation::Process] {
        let task: Task<u64, u64> = load(&common::component(component));
        let pool = Pool::builder(task)
            .workers(1)
            .isolation(isolation)
            .capability("math.double", double)
            .build()
            .unwrap();
        let got: Vec<u64> = pool.map(&[1u64, 20, 300]).map(|r| r.unwrap()).collect();
        assert_eq!(got, [3, 41, 601], "{component} {isolation:?}");
        // The handler's error fails the task, naming the capability.
        let err = pool.submit(&u64::MAX).unwrap().wait().unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Capability,
            "{component} {isolation:?}: {err}"
        );
        assert!(err.to_string().contains("math.double"), "{err}");
        assert!(err.to_string().contains("too large"), "{err}");
    }
}

#[test]
fn a_python_component_calls_a_granted_capability_at_both_levels() {
    calls_a_granted_capability_at_both_levels("capability_py");
}

#[test]
fn a_javascript_component_calls_a_granted_capability_at_both_levels() {
    calls_a_granted_capability_at_both_levels("capability_js");
    // Past 2^53 (where a JS Number stops being exact) the guest's BigInt
    // u64 keeps every bit: 2 * (2^62 + 3) + 1.
    let task: Task<u64, u64> = load(&common::component("capability_js"));
    let pool = Pool::builder(task)
        .capability("math.double", double)
        .build()
        .unwrap();
    let n = (1u64 << 62) + 3;
    assert_eq!(pool.submit(&n).unwrap().wait().unwrap(), 2 * n + 1);
}

#[test]
fn a_component_declaring_a_capability_the_pool_does_not_grant_is_refused_at_build() {
    for component in ["capability_py", "capability_js"] {
        let task: Task<u64, u64> = load(&common::component(component));
        let err = Pool::builder(task).build().unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::CapabilityDenied,
            "{component}: {err}"
        );
        assert!(err.to_string().contains("math.double"), "{err}");
    }
}

#[test]
fn a_component_calling_a_capability_it_did_not_declare_fails_the_task() {
    // The probe declares no capability: even a granted name is refused, and
    // without any grant the same.
    for granted in [true, false] {
        let task: Task<String, String> = load(&common::component("probe_py"));
        let builder = Pool::builder(task);
        let builder = match granted {
            true => builder.capability("math.double", double),
            false => builder,
        };
        let pool = builder.build().unwrap();
        let err = pool
            .submit(&"call:math.double".into())
            .unwrap()
            .wait()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Capability,
            "granted {granted}: {err}"
        );
        if granted {
            assert!(err.to_string().contains("math.double"), "{err}");
        }
    }
}

/// Runs `component` (the kinds guest) through `sandpool run` on one input of
/// each kind and checks the files written.
fn sandpool_run_writes_raw_and_multi_file_outputs(component: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (inputs, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a.raw"), "shout this\n").unwrap();
    std::fs::write(inputs.join("b.many"), "first line\nsecond\nthird\n").unwrap();
    std::fs::write(inputs.join("c.txt"), "12345").unwrap();
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .env("SANDPOOL_CACHE_DIR", cache())
        .arg("run")
        .arg(common::component(component))
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "{component}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("a.raw.txt")).unwrap(),
        "SHOUT THIS\n"
    );
    let files = out.join("b.many.files");
    assert_eq!(
        std::fs::read_to_string(files.join("lines.txt")).unwrap(),
        "3"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("first.txt")).unwrap(),
        "first line"
    );
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 2);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("c.txt.json")).unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"bytes": 5}));
}

#[test]
fn sandpool_run_writes_raw_and_multi_file_outputs_of_a_python_task() {
    sandpool_run_writes_raw_and_multi_file_outputs("kinds_py");
}

#[test]
fn sandpool_run_writes_raw_and_multi_file_outputs_of_a_javascript_task() {
    sandpool_run_writes_raw_and_multi_file_outputs("kinds_js");
}

#[test]
fn a_granted_directory_is_the_one_preopen_of_a_component() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "granted text").unwrap();
    let submit = |pool: &Pool<String, String>, command: &str| {
        pool.submit(&command.to_string()).unwrap().wait()
    };

    // Read-only: reads work, writes are refused, nothing outside is reachable.
    let pool = Pool::builder(load(&common::component("probe_py")))
        .grant_dir(dir.path(), "/data", DirAccess::ReadOnly)
        .build()
        .unwrap();
    assert_eq!(submit(&pool, "read:/data/f.txt").unwrap(), "granted text");
    let denied = submit(&pool, "write:/data/new.txt").unwrap();
    assert!(denied.starts_with("denied"), "{denied}");
    assert!(!dir.path().join("new.txt").exists());
    let err = submit(&pool, "read:/data/../../etc/passwd").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Guest, "{err}");

    // Read-write: the write lands in the host directory.
    let pool = Pool::builder(load(&common::component("probe_py")))
        .grant_dir(dir.path(), "/data", DirAccess::ReadWrite)
        .build()
        .unwrap();
    assert_eq!(submit(&pool, "write:/data/new.txt").unwrap(), "wrote");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written"
    );

    // Without a grant the same file cannot be opened: no preopen at all.
    let pool = Pool::builder(load(&common::component("probe_py")))
        .build()
        .unwrap();
    let err = submit(&pool, "read:/data/f.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Guest, "{err}");
    let found: serde_json::Value = serde_json::from_str(&submit(&pool, "reach").unwrap()).unwrap();
    assert!(
        found["root"]
            .as_str()
            .unwrap_or_default()
            .starts_with("denied"),
        "{found}"
    );
}

#[test]
fn inspect_lists_the_capabilities_a_component_declares() {
    let wasm = std::fs::read(common::component("capability_py")).unwrap();
    let report = sandpool::inspect_module("capability_py", &wasm).unwrap();
    assert_eq!(report.kind, "component");
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.capabilities, ["math.double"]);
    assert!(
        report
            .imports
            .iter()
            .any(|i| i.name == "sandpool:task/capabilities@0.1.0")
    );
}
