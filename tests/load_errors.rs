//! Modules that are not sandpool tasks fail at load with a clear error, never a panic.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use sandpool::{Error, ErrorKind, Task};

fn load_wat(wat: &str) -> Result<Task<u64, u64>, Error> {
    Task::from_bytes("fixture", wat.as_bytes().to_vec())
}

#[test]
fn a_file_that_is_not_wasm_is_an_invalid_module() {
    let err =
        Task::<u64, u64>::from_bytes("junk", b"\x7fELF this is not wasm".to_vec()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("junk"), "names the module: {err}");
}

#[test]
fn a_truncated_module_is_an_invalid_module() {
    let bytes = std::fs::read(common::guest("echo")).unwrap();
    let err = Task::<u64, u64>::from_bytes("cut", bytes[..bytes.len() / 2].to_vec()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let err = Task::<u64, u64>::from_file("/definitely/not/here.wasm").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains("/definitely/not/here.wasm"),
        "{err}"
    );
}

#[test]
fn a_module_missing_the_run_export_is_an_abi_mismatch() {
    let err = load_wat(
        r#"(module (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AbiMismatch, "{err}");
    assert!(
        err.to_string().contains("sandpool_run"),
        "names the export: {err}"
    );
}

#[test]
fn a_module_without_memory_is_an_abi_mismatch() {
    let err = load_wat(
        r#"(module
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AbiMismatch, "{err}");
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn an_export_with_the_wrong_signature_is_an_abi_mismatch() {
    let err = load_wat(
        r#"(module (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AbiMismatch, "{err}");
    assert!(err.to_string().contains("sandpool_run"), "{err}");
}

#[test]
fn a_module_with_another_abi_version_is_an_abi_mismatch_naming_the_version() {
    let err = load_wat(
        r#"(module (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 7)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::AbiMismatch { reason, .. } if reason.contains("version 7")),
        "{err}"
    );
}

#[test]
fn a_module_importing_unknown_host_functions_is_an_invalid_module() {
    let err = load_wat(
        r#"(module (import "env" "launch_missiles" (func))
             (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("env::launch_missiles"), "{err}");
}

#[test]
fn a_module_whose_start_function_traps_is_an_invalid_module() {
    let err = load_wat(
        r#"(module (memory (export "memory") 1)
             (func $start unreachable) (start $start)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
}

#[test]
fn every_example_guest_loads() {
    for name in ["doc_stats", "primes", "echo", "counter", "spin", "hostile"] {
        Task::<u64, u64>::from_file(common::guest(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A module of `count` trivial functions, `exports` of them exported.
fn many_functions(count: usize, exports: usize) -> Vec<u8> {
    let mut wat = String::from(
        r#"(module (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0)"#,
    );
    for i in 0..count {
        if i < exports {
            wat.push_str(&format!("(func (export \"f{i}\"))"));
        } else {
            wat.push_str("(func)");
        }
    }
    wat.push(')');
    wat::parse_str(&wat).unwrap()
}

#[test]
fn too_many_functions_are_refused_before_compiling() {
    let started = std::time::Instant::now();
    let err = Task::<u64, u64>::from_bytes("many", many_functions(150_000, 0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("150003 functions") && text.contains("max_functions"),
        "{text}"
    );
    assert!(text.contains("before compiling"), "{text}");
    // Compiling 150k functions takes ~11 s here; refusing them takes a parse.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn too_many_exports_are_refused_before_compiling() {
    let err = Task::<u64, u64>::from_bytes("exports", many_functions(20_000, 15_000)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("max_exports"), "{err}");
}

#[test]
fn exports_over_the_pooling_slot_are_refused_before_compiling_even_when_allowed() {
    let limits = sandpool::LoadLimits::default().max_exports(100_000);
    let err = Task::<u64, u64>::from_bytes_with("slot", many_functions(40_000, 40_000), limits)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("pooling slot"), "{err}");
}

#[test]
fn an_unknown_import_is_refused_before_compiling() {
    let err = load_wat(
        r#"(module (import "env" "evil" (func)) (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(
        err.to_string().contains("env::evil") && err.to_string().contains("before compiling"),
        "{err}"
    );
}

#[test]
fn a_table_larger_than_a_pooling_slot_is_refused_before_compiling() {
    let err = load_wat(
        r#"(module (table 100000 funcref) (memory (export "memory") 1)
             (func (export "sandpool_abi_version") (result i32) i32.const 1)
             (func (export "sandpool_alloc") (param i32) (result i32) i32.const 0)
             (func (export "sandpool_run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("100000 elements"), "{err}");
}

#[test]
fn a_module_within_every_count_limit_still_loads() {
    let task = Task::<u64, u64>::from_bytes("fine", many_functions(2_000, 500));
    assert!(task.is_ok(), "{:?}", task.err());
}
