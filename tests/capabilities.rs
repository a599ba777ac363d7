//! Host capabilities (`PoolBuilder::capability`): a guest calls a named,
//! typed host function; only what the module declares and the pool grants
//! can be called; handler failures, deadlines and the per-task caps fail
//! that one task, naming task, input and capability; the same at both
//! isolation levels (process workers forward their calls to this process).
//!
//! The guests: `guest/examples/caller.rs` (Rust SDK) and `guest/c/upper_c.c`
//! (raw imports).
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

#[path = "common/caller.rs"]
mod caller;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use sandpool::{Error, ErrorKind, Isolation, Limits, Pool, PoolBuilder, Task};

use caller::{Answer, LEVELS, Plan, caller};

/// A builder for the caller guest granting its three capabilities.
fn granted(isolation: Isolation, calls: Arc<AtomicU64>) -> PoolBuilder<Plan, Answer> {
    Pool::builder(caller())
        .workers(2)
        .isolation(isolation)
        .capability("test.echo", move |bytes: ByteBuf| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(bytes)
        })
        .capability("test.block", |(): ()| {
            std::thread::sleep(Duration::from_secs(3600));
            Ok::<ByteBuf, String>(ByteBuf::new())
        })
        .capability("test.fail", |how: String| match how.as_str() {
            "panic" => panic!("the handler blew up"),
            other => Err::<ByteBuf, String>(format!("refused: {other}")),
        })
}

fn pool(isolation: Isolation) -> Pool<Plan, Answer> {
    granted(isolation, Arc::default())
        .build()
        .expect("pool starts")
}

/// The task error of `plan`, checked to be a capability error naming `name` and input #`index`.
fn capability_error(pool: &Pool<Plan, Answer>, plan: Plan, name: &str) -> String {
    let err = pool.submit(&plan).unwrap().wait().unwrap_err();
    match &err {
        Error::Capability {
            task, capability, ..
        } => {
            assert_eq!(capability, name, "{err}");
            assert_eq!(&*task.task, "caller", "{err}");
        }
        other => panic!("expected a capability error, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Capability);
    err.to_string()
}

#[test]
fn values_round_trip_through_a_capability_at_both_levels() {
    for level in LEVELS {
        let calls = Arc::new(AtomicU64::new(0));
        let pool = granted(level, Arc::clone(&calls)).build().unwrap();
        let inputs: Vec<Plan> = (0..50u8)
            .map(|i| Plan::Echo(ByteBuf::from(vec![i; i as usize * 7])))
            .collect();
        for (i, result) in pool.map(&inputs).enumerate() {
            assert_eq!(
                result.unwrap(),
                Answer::Bytes(ByteBuf::from(vec![i as u8; i * 7])),
                "{level:?}"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            50,
            "one handler call per task, {level:?}"
        );
    }
}

#[test]
fn many_calls_in_one_task_all_reach_the_one_shared_handler() {
    for level in LEVELS {
        let calls = Arc::new(AtomicU64::new(0));
        let pool = granted(level, Arc::clone(&calls)).build().unwrap();
        let plan = Plan::Repeat {
            times: 500,
            bytes: ByteBuf::from(b"ping".to_vec()),
        };
        let answer = pool.submit(&plan).unwrap().wait().unwrap();
        assert_eq!(answer, Answer::Count(500), "{level:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 500, "{level:?}");
    }
}

#[test]
fn a_module_declaring_an_ungranted_capability_is_refused_at_build_naming_it() {
    for level in LEVELS {
        let err = Pool::builder(caller())
            .isolation(level)
            .capability("test.echo", |b: ByteBuf| Ok::<_, String>(b))
            .build()
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
        assert!(err.to_string().contains("`test.block`"), "{err}");
        assert!(err.to_string().contains("caller"), "{err}");
    }
}

#[test]
fn a_module_that_declares_nothing_loads_unchanged_with_or_without_grants() {
    let task: Task<ByteBuf, ByteBuf> = Task::from_file(common::guest("echo")).unwrap();
    let plain = Pool::builder(task.clone()).workers(1).build().unwrap();
    let granting = Pool::builder(task)
        .workers(1)
        .capability("test.echo", |b: ByteBuf| Ok::<_, String>(b))
        .build()
        .unwrap();
    let input = ByteBuf::from(b"same".to_vec());
    assert_eq!(plain.submit(&input).unwrap().wait().unwrap(), input);
    assert_eq!(granting.submit(&input).unwrap().wait().unwrap(), input);
}

#[test]
fn a_call_to_an_undeclared_name_fails_only_that_task() {
    for level in LEVELS {
        let pool = pool(level);
        let good = pool.submit(&Plan::Echo(ByteBuf::from(vec![1]))).unwrap();
        let message = capability_error(
            &pool,
            Plan::Raw {
                name: "db.secret".into(),
                bytes: ByteBuf::new(),
            },
            "db.secret",
        );
        assert!(message.contains("not declared"), "{message}");
        assert_eq!(good.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![1])));
    }
}

#[test]
fn malformed_request_bytes_fail_the_task_without_reaching_the_handler() {
    for level in LEVELS {
        let calls = Arc::new(AtomicU64::new(0));
        let pool = granted(level, Arc::clone(&calls)).build().unwrap();
        // A length prefix of 250 with nothing after it.
        let message = capability_error(
            &pool,
            Plan::Raw {
                name: "test.echo".into(),
                bytes: ByteBuf::from(vec![250]),
            },
            "test.echo",
        );
        assert!(message.contains("cannot decode the request"), "{message}");
        assert!(message.contains("input #0"), "{message}");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{level:?}");
    }
}

#[test]
fn a_handler_error_or_panic_fails_only_that_task_and_the_handler_stays_usable() {
    for level in LEVELS {
        let pool = pool(level);
        let message = capability_error(&pool, Plan::Fail("no such row".into()), "test.fail");
        assert!(message.contains("refused: no such row"), "{message}");
        let message = capability_error(&pool, Plan::Fail("panic".into()), "test.fail");
        assert!(
            message.contains("panicked: the handler blew up"),
            "{message}"
        );
        let after = pool.submit(&Plan::Echo(ByteBuf::from(vec![9]))).unwrap();
        assert_eq!(after.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![9])));
    }
}

#[test]
fn a_handler_that_blocks_forever_fails_its_task_at_the_deadline_and_others_go_on() {
    for level in LEVELS {
        let pool = granted(level, Arc::default())
            .limits(Limits::default().timeout(Duration::from_millis(300)))
            .build()
            .unwrap();
        let started = Instant::now();
        let blocked = pool.submit(&Plan::Block).unwrap();
        let others: Vec<_> = (0..20u8)
            .map(|i| pool.submit(&Plan::Echo(ByteBuf::from(vec![i]))).unwrap())
            .collect();
        let err = blocked.wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capability, "{err}");
        assert!(err.to_string().contains("`test.block`"), "{err}");
        assert!(err.to_string().contains("deadline"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failed at its deadline, not when the handler returns ({:?}, {level:?})",
            started.elapsed()
        );
        for (i, h) in others.into_iter().enumerate() {
            assert_eq!(
                h.wait().unwrap(),
                Answer::Bytes(ByteBuf::from(vec![i as u8]))
            );
        }
        // A second blocked call does not wait behind the first abandoned one.
        let again = pool.submit(&Plan::Block).unwrap().wait().unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Capability, "{again}");
    }
}

#[test]
fn aborting_a_task_blocked_in_a_handler_ends_it_promptly_and_abandons_the_call() {
    for level in LEVELS {
        let pool = granted(level, Arc::default())
            .limits(Limits::default().no_timeout())
            .build()
            .unwrap();
        let blocked = pool.submit(&Plan::Block).unwrap();
        while !blocked.is_running() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        assert!(blocked.abort(), "{level:?}");
        let err = blocked.wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Aborted, "{level:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{level:?}: {:?}",
            started.elapsed()
        );
        let after = pool.submit(&Plan::Echo(ByteBuf::from(vec![3]))).unwrap();
        assert_eq!(after.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![3])));
    }
}

#[test]
fn an_oversized_request_fails_the_task_before_the_handler_runs() {
    for level in LEVELS {
        let calls = Arc::new(AtomicU64::new(0));
        let pool = granted(level, Arc::clone(&calls))
            .limits(Limits::default().max_call_request(1000))
            .build()
            .unwrap();
        let message =
            capability_error(&pool, Plan::Echo(ByteBuf::from(vec![0; 2000])), "test.echo");
        assert!(message.contains("Limits::max_call_request"), "{message}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Small requests still pass.
        let ok = pool
            .submit(&Plan::Echo(ByteBuf::from(vec![0; 100])))
            .unwrap();
        assert!(ok.wait().is_ok());
    }
}

#[test]
fn responses_past_the_per_task_cap_fail_the_task() {
    for level in LEVELS {
        let pool = granted(level, Arc::default())
            .limits(Limits::default().max_call_response(10_000))
            .build()
            .unwrap();
        let plan = Plan::Repeat {
            times: 100,
            bytes: ByteBuf::from(vec![7; 500]),
        };
        let message = capability_error(&pool, plan, "test.echo");
        assert!(message.contains("Limits::max_call_response"), "{message}");
    }
}

#[test]
fn a_call_loop_past_the_cap_fails_the_task() {
    for level in LEVELS {
        let calls = Arc::new(AtomicU64::new(0));
        let pool = granted(level, Arc::clone(&calls))
            .limits(Limits::default().max_calls(25))
            .build()
            .unwrap();
        let plan = Plan::Repeat {
            times: 1_000_000,
            bytes: ByteBuf::new(),
        };
        let message = capability_error(&pool, plan, "test.echo");
        assert!(message.contains("Limits::max_calls"), "{message}");
        assert_eq!(calls.load(Ordering::SeqCst), 25, "{level:?}");
    }
}

#[test]
fn a_pool_without_grants_refuses_a_module_that_declares_capabilities() {
    let err = Pool::builder(caller()).build().expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
}

#[test]
fn an_invalid_capability_name_is_a_config_error() {
    let err = granted(Isolation::Instance, Arc::default())
        .capability("has space", |b: ByteBuf| Ok::<_, String>(b))
        .build()
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("`has space`"), "{err}");
}

#[test]
fn the_c_guest_calls_a_capability_through_the_raw_imports() {
    for level in LEVELS {
        let task: Task<String, String> =
            Task::from_file(common::c_guest("upper_c")).expect("the C guest loads");
        let pool = Pool::builder(task)
            .workers(2)
            .isolation(level)
            .capability("text.upper", |s: String| Ok::<_, String>(s.to_uppercase()))
            .build()
            .unwrap();
        let inputs: Vec<String> = (0..100).map(|i| format!("record {i} ok")).collect();
        for (input, output) in inputs.iter().zip(pool.map(&inputs)) {
            assert_eq!(output.unwrap(), input.to_uppercase(), "{level:?}");
        }
    }
}

#[test]
fn the_c_guest_calling_a_name_it_did_not_declare_fails_that_task_even_if_granted() {
    // `upper_c` calls `text.lower` (granted here, but not declared) on the input byte 0xFF
    // (bincode encodes a `u8` as its one byte).
    let task: Task<u8, String> = Task::from_file(common::c_guest("upper_c")).unwrap();
    let pool = Pool::builder(task)
        .workers(1)
        .capability("text.upper", |s: String| Ok::<_, String>(s.to_uppercase()))
        .capability("text.lower", |s: String| Ok::<_, String>(s.to_lowercase()))
        .build()
        .unwrap();
    let err = pool.submit(&255u8).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capability, "{err}");
    assert!(err.to_string().contains("`text.lower`"), "{err}");
    assert!(err.to_string().contains("not declared"), "{err}");
}

#[test]
fn inspect_lists_the_declared_capabilities() {
    let wasm = std::fs::read(common::guest("caller")).unwrap();
    let report = sandpool::inspect_module("caller", &wasm).unwrap();
    assert_eq!(
        report.capabilities,
        ["test.block", "test.echo", "test.fail"]
    );
    let wasm = std::fs::read(common::c_guest("upper_c")).unwrap();
    let report = sandpool::inspect_module("upper_c", &wasm).unwrap();
    assert_eq!(report.capabilities, ["text.upper"]);
}

#[path = "../host/examples/enrich.rs"]
#[allow(dead_code)] // the example's `main` is not run here
mod enrich_example;

#[test]
fn the_enrich_example_looks_records_up_in_sqlite_and_labels_them_with_one_model_session() {
    use enrich_example::{Customer, MODEL_LOADS, create_db, enrich, sample_records};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("customers.db");
    create_db(&db).unwrap();
    let wasm = common::guest("enrich");
    let records = sample_records();
    for level in LEVELS {
        let loads_before = MODEL_LOADS.load(Ordering::SeqCst);
        let results = enrich(&wasm, &db, level, &records).unwrap();
        assert_eq!(
            MODEL_LOADS.load(Ordering::SeqCst),
            loads_before + 1,
            "one model session for the whole pool, {level:?}"
        );
        assert_eq!(results.len(), records.len());
        for (record, result) in records.iter().zip(results) {
            let e = result.unwrap_or_else(|e| panic!("{level:?}: {e}"));
            assert_eq!(e.id, record.id);
            let want = match record.customer_id {
                1 => Some(("Ada", "London")),
                2 => Some(("Grace", "New York")),
                3 => Some(("Linus", "Helsinki")),
                4 => Some(("Barbara", "Boston")),
                _ => None,
            }
            .map(|(n, c)| Customer {
                name: n.into(),
                city: c.into(),
            });
            assert_eq!(e.customer, want, "record {}", record.id);
            let label = match record.id % 4 {
                0 => "praise",
                1 => "complaint",
                2 => "question",
                _ => "other",
            };
            assert_eq!(e.label.label, label, "record {}: {:?}", record.id, e.label);
        }
    }
    // The database was opened read-only and is unchanged.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4);
}

/// Runs `sandpool ARGS...`.
fn sandpool_cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .args(args)
        .output()
        .expect("the sandpool binary runs")
}

#[test]
fn sandpool_run_sqlite_grants_a_read_only_sql_capability_at_both_levels() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("customers.db");
    enrich_example::create_db(&db).unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for id in [1, 3, 9] {
        std::fs::write(inputs.join(format!("c{id}.txt")), id.to_string()).unwrap();
    }
    let wasm = common::guest("sql_lookup");
    for level in ["instance", "process"] {
        let out = dir.path().join(format!("out-{level}"));
        let db_arg = format!("{}:ro", db.display());
        let output = sandpool_cli(&[
            "run".as_ref(),
            wasm.as_os_str(),
            inputs.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--sqlite".as_ref(),
            db_arg.as_ref(),
            "--isolation".as_ref(),
            level.as_ref(),
            "--quiet".as_ref(),
        ]);
        assert!(
            output.status.success(),
            "{level}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let read = |name: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
        };
        assert_eq!(
            read("c1.txt.json"),
            serde_json::json!({"id": 1, "name": "Ada", "city": "London"})
        );
        assert_eq!(
            read("c3.txt.json"),
            serde_json::json!({"id": 3, "name": "Linus", "city": "Helsinki"})
        );
        assert_eq!(
            read("c9.txt.json"),
            serde_json::json!({"id": 9, "name": null, "city": null})
        );
    }
    // Without --sqlite the module, which declares `sql.query`, is refused, naming it.
    let output = sandpool_cli(&[
        "run".as_ref(),
        wasm.as_os_str(),
        inputs.as_os_str(),
        "-o".as_ref(),
        dir.path().join("denied").as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`sql.query`"), "{stderr}");
    // `sandpool inspect` lists what the module declares.
    let output = sandpool_cli(&["inspect".as_ref(), wasm.as_os_str()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("capabilities:\n  sql.query\n"), "{stdout}");
    // A writable database is refused at the flag.
    let output = sandpool_cli(&[
        "run".as_ref(),
        wasm.as_os_str(),
        inputs.as_os_str(),
        "--sqlite".as_ref(),
        format!("{}:rw", db.display()).as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(2));
}

/// A WAT task that declares `name` and sends its input payload as the
/// request to capability `call_name` (at `name_ptr`, `name_len` given), returning the response.
fn forwarder(declared: &str, call_name: &str, name_ptr: Option<u32>) -> Vec<u8> {
    let ptr = name_ptr.unwrap_or(0);
    format!(
        r#"(module
  (@custom "sandpool.capabilities" "{declared}\n")
  (import "sandpool_v1" "call" (func $call (param i32 i32 i32 i32) (result i64)))
  (import "sandpool_v1" "call_result" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 32)
  (data (i32.const 0) "{call_name}")
  (func (export "sandpool_abi_version") (result i32) i32.const 1)
  (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (local $n i64)
    (local.set $n (call $call (i32.const {ptr}) (i32.const {len}) (local.get $ptr) (local.get $len)))
    (i32.store8 (i32.const 65536) (i32.const 0))
    (drop (call $result (i32.const 65537) (i32.wrap_i64 (local.get $n))))
    (i64.or (i64.shl (i64.const 65536) (i64.const 32)) (i64.add (local.get $n) (i64.const 1)))))"#,
        len = call_name.len()
    )
    .into_bytes()
}

#[test]
fn the_sql_capability_answers_reads_and_refuses_statements_that_write() {
    use sandpool::sqlite::{SqlQuery, SqlValue};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("customers.db");
    enrich_example::create_db(&db).unwrap();
    let caps = sandpool::sqlite_query(&db).unwrap();
    let task: Task<SqlQuery, Vec<Vec<SqlValue>>> =
        Task::from_bytes("sql", forwarder("sql.query", "sql.query", None)).unwrap();
    let pool = Pool::builder(task)
        .workers(1)
        .capabilities(&caps)
        .build()
        .unwrap();
    let read = SqlQuery {
        sql: "SELECT name FROM customers WHERE id > ? ORDER BY id".into(),
        params: vec![SqlValue::Integer(2)],
    };
    assert_eq!(
        pool.submit(&read).unwrap().wait().unwrap(),
        vec![
            vec![SqlValue::Text("Linus".into())],
            vec![SqlValue::Text("Barbara".into())]
        ]
    );
    for sql in [
        "DELETE FROM customers",
        "INSERT INTO customers VALUES (9, 'x', 'y')",
        "DROP TABLE customers",
    ] {
        let write = SqlQuery {
            sql: sql.into(),
            params: vec![],
        };
        let err = pool.submit(&write).unwrap().wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capability, "{sql}: {err}");
        assert!(err.to_string().contains("`sql.query`"), "{err}");
    }
    let n: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4, "the database is unchanged");
}

#[test]
fn a_name_pointer_outside_linear_memory_fails_the_task_not_the_host() {
    let wasm = forwarder("test.echo", "test.echo", Some(0xffff_fff0));
    let task: Task<ByteBuf, ByteBuf> = Task::from_bytes("bad_pointer", wasm).unwrap();
    let pool = Pool::builder(task)
        .workers(1)
        .capability("test.echo", |b: ByteBuf| Ok::<_, String>(b))
        .build()
        .unwrap();
    let err = pool.submit(&ByteBuf::new()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capability, "{err}");
    assert!(err.to_string().contains("outside linear memory"), "{err}");
    // The same module with a good pointer works on the same kind of pool.
    let task: Task<ByteBuf, ByteBuf> =
        Task::from_bytes("good_pointer", forwarder("test.echo", "test.echo", None)).unwrap();
    let pool = Pool::builder(task)
        .workers(1)
        .capability("test.echo", |b: ByteBuf| Ok::<_, String>(b))
        .build()
        .unwrap();
    let input = ByteBuf::from(b"fine".to_vec());
    assert_eq!(pool.submit(&input).unwrap().wait().unwrap(), input);
}
