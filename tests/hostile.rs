//! The hostile-guest corpus: modules written to hurt the host, each of which
//! must fail with its own documented error, within its limits, and leave the
//! host healthy (no panic, bounded memory, no thread left behind).
//!
//! Hand-written modules live in `tests/hostile/*.wat` (each file says what
//! it does and what the host must answer); modules too big to write by hand
//! (100 MB of data, huge functions) are generated here by a tiny encoder.
//! The Rust guest modes (`guest/examples/hostile.rs`: memory bomb, endless
//! loop and recursion, huge output, log flood, panic) are covered by
//! `tests/executor.rs`; the WASI probes by `tests/fs_isolation.rs`.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::time::{Duration, Instant};

use sandpool::{Error, ErrorKind, Isolation, Limits, LoadLimits, Pool, Task};

fn corpus(name: &str) -> Vec<u8> {
    let path = common::workspace().join(format!("tests/hostile/{name}.wat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load<In: serde::Serialize, Out: serde::de::DeserializeOwned>(name: &str) -> Task<In, Out> {
    Task::from_bytes(name, corpus(name)).unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

fn pool<In, Out>(task: Task<In, Out>, limits: Limits) -> Pool<In, Out>
where
    In: serde::Serialize,
    Out: serde::de::DeserializeOwned + Send + 'static,
{
    Pool::builder(task)
        .workers(1)
        .limits(limits)
        .build()
        .expect("pool starts")
}

/// The control: a well-behaved task on a fresh pool still works.
fn assert_host_still_works() {
    use serde_bytes::ByteBuf;
    let echo: Task<ByteBuf, ByteBuf> =
        Task::from_file(common::guest("echo")).expect("echo guest loads");
    let pool = pool(echo, Limits::default());
    let input = ByteBuf::from(b"still fine".to_vec());
    assert_eq!(
        pool.submit(&input)
            .expect("submit")
            .wait()
            .expect("echo works"),
        input
    );
}

fn kind_of<T: std::fmt::Debug>(result: Result<T, Error>) -> ErrorKind {
    result.expect_err("the hostile task fails").kind()
}

#[test]
fn an_endless_loop_times_out_at_its_deadline_and_frees_its_worker() {
    let pool = pool(
        load::<(), ()>("infinite_loop"),
        Limits::default().timeout(Duration::from_millis(100)),
    );
    let started = Instant::now();
    // One worker: the second task can only run if the first one let go of it.
    let first = pool.submit(&()).unwrap();
    let second = pool.submit(&()).unwrap();
    for handle in [first, second] {
        match handle.wait() {
            Err(Error::Timeout { limit, .. }) => assert_eq!(limit, Duration::from_millis(100)),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let metered = Pool::builder(load::<(), ()>("infinite_loop"))
        .workers(1)
        .limits(Limits::default().fuel(1_000_000))
        .build()
        .unwrap();
    assert_eq!(
        kind_of(metered.submit(&()).unwrap().wait()),
        ErrorKind::FuelExhausted
    );
    assert_host_still_works();
}

#[test]
fn endless_recursion_on_the_wasm_stack_is_a_trap_not_a_host_stack_overflow() {
    let pool = pool(load::<(), ()>("deep_recursion"), Limits::default());
    for _ in 0..3 {
        match pool.submit(&()).unwrap().wait() {
            Err(Error::Trap { message, .. }) => {
                assert!(message.contains("call stack exhausted"), "{message}");
                assert!(
                    message.lines().count() <= 14,
                    "bounded backtrace: {message}"
                );
            }
            other => panic!("expected a stack-overflow trap, got {other:?}"),
        }
    }
    assert_host_still_works();
}

#[test]
fn memory_grows_exactly_to_the_cap_and_no_further() {
    let task = load::<u8, [u8; 4]>("memory_growth");
    let capped = pool(task.clone(), Limits::default().memory(16 << 20));
    let pages = |result: Result<[u8; 4], Error>| u32::from_le_bytes(result.expect("pages"));
    let before = common::rss();
    // Mode 0: grow one page at a time until refused; the guest sees the cap, exactly.
    assert_eq!(pages(capped.submit(&0).unwrap().wait()), 256);
    // Mode 3: the same, and every page is really usable.
    assert_eq!(pages(capped.submit(&3).unwrap().wait()), 256);
    // Modes 1 and 2: trapping after a refused growth is a memory-limit error.
    for mode in [1u8, 2] {
        match capped.submit(&mode).unwrap().wait() {
            Err(Error::MemoryLimit { limit, .. }) => assert_eq!(limit, 16 << 20),
            other => panic!("mode {mode}: expected MemoryLimit, got {other:?}"),
        }
    }
    // A large cap is enforced the same way (the memory is reserved, not touched).
    let large = pool(task, Limits::default().memory(1 << 30));
    assert_eq!(pages(large.submit(&0).unwrap().wait()), 16384);
    assert_eq!(
        kind_of(large.submit(&2).unwrap().wait()),
        ErrorKind::MemoryLimit
    );
    // Touched memory is released with the instance.
    for _ in 0..5 {
        pages(capped.submit(&3).unwrap().wait());
    }
    let grown = common::rss().saturating_sub(before);
    assert!(grown < 128 << 20, "RSS grew by {} MiB", grown >> 20);
    assert_host_still_works();
}

#[test]
fn every_malformed_output_is_its_own_decode_or_size_error() {
    let pool = pool(load::<u8, String>("bad_output"), Limits::default());
    let cases: [(u8, ErrorKind, &str); 12] = [
        (0, ErrorKind::OutputTooLarge, "4294967294 bytes of output"),
        (1, ErrorKind::Decode, "outside its"),
        (2, ErrorKind::Decode, "outside its"),
        (3, ErrorKind::Decode, "empty output"),
        (4, ErrorKind::Decode, "unknown result tag 7"),
        (5, ErrorKind::Decode, "cannot decode output"),
        (6, ErrorKind::Decode, "cannot decode output"),
        (7, ErrorKind::Decode, "cannot decode output"),
        (8, ErrorKind::Decode, "trailing bytes"),
        (9, ErrorKind::Decode, "cannot decode output"),
        (10, ErrorKind::Guest, "bad \u{fffd}\u{fffd} message"),
        (11, ErrorKind::Guest, "failed: xxxx"),
    ];
    for (mode, kind, text) in cases {
        let started = Instant::now();
        let err = pool.submit(&mode).unwrap().wait().unwrap_err();
        assert_eq!(err.kind(), kind, "mode {mode}: {err}");
        assert!(err.to_string().contains(text), "mode {mode}: {err}");
        assert_eq!(
            err.task().map(|t| t.task.to_string()),
            Some("bad_output".into())
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "mode {mode} took {:?}",
            started.elapsed()
        );
    }
    // The guest's 1 MiB message is cut to 64 KiB.
    match pool.submit(&11).unwrap().wait() {
        Err(Error::Guest { message, .. }) => assert_eq!(message.len(), 64 << 10),
        other => panic!("{other:?}"),
    }
    // A tighter output cap applies to the value, not to the control case.
    assert_eq!(pool.submit(&12).unwrap().wait().unwrap(), "ok");
    let tight = Pool::builder(load::<u8, String>("bad_output"))
        .workers(1)
        .limits(Limits::default().max_output(3))
        .build()
        .unwrap();
    assert_eq!(
        kind_of(tight.submit(&11).unwrap().wait()),
        ErrorKind::OutputTooLarge
    );
    assert_eq!(tight.submit(&12).unwrap().wait().unwrap(), "ok");
}

#[test]
fn an_input_buffer_outside_linear_memory_is_a_trap_and_nothing_is_written() {
    let pool = pool(load::<String, ()>("bad_alloc"), Limits::default());
    match pool.submit(&"x".repeat(100)).unwrap().wait() {
        Err(Error::Trap { message, .. }) => {
            assert!(message.contains("outside linear memory"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn reading_the_clock_in_a_tight_loop_still_times_out() {
    let pool = pool(
        load::<(), ()>("clock_loop"),
        Limits::default().timeout(Duration::from_millis(100)),
    );
    let started = Instant::now();
    assert_eq!(
        kind_of(pool.submit(&()).unwrap().wait()),
        ErrorKind::Timeout
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn writing_gigabytes_to_stdout_keeps_only_the_bounded_log() {
    let pool = pool(
        load::<(), ()>("stdout_flood"),
        Limits::default().max_log(1000),
    );
    let before = common::rss();
    let started = Instant::now();
    let out = pool.submit(&()).unwrap().wait_output();
    out.result.expect("flooding stdout is not an error");
    const WRITTEN: u64 = 4096 << 20;
    for stream in [&out.logs.stdout, &out.logs.stderr] {
        assert_eq!(stream.bytes.len(), 1000);
        assert!(stream.bytes.iter().all(|&b| b == b'y'));
        assert_eq!(stream.dropped, WRITTEN - 1000);
    }
    let grown = common::rss().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn raw_wasi_calls_reach_no_file_socket_descriptor_or_environment() {
    let pool = pool(load::<(), [u8; 16]>("wasi_denied"), Limits::default());
    let errnos = pool.submit(&()).unwrap().wait().unwrap();
    const EBADF: u8 = 8;
    const EFAULT: u8 = 21;
    const ENOSYS: u8 = 52;
    assert_eq!(
        errnos,
        [
            EBADF, EBADF, EBADF, EBADF, EBADF, EBADF, EBADF, EBADF, EBADF, EBADF, ENOSYS, EFAULT,
            0, 0, EBADF, EBADF
        ]
    );
}

#[test]
fn modules_that_import_what_the_host_does_not_provide_never_load() {
    for name in ["unknown_import", "unknown_wasi_import"] {
        let err = Task::<(), ()>::from_bytes(name, corpus(name)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidModule, "{name}: {err}");
    }
    let err = Task::<(), ()>::from_bytes("x", corpus("unknown_import")).unwrap_err();
    assert!(err.to_string().contains("env::system"), "{err}");
}

#[test]
fn modules_whose_shape_the_host_refuses_never_load() {
    for name in ["huge_initial_memory", "huge_table"] {
        let started = Instant::now();
        let err = Task::<(), ()>::from_bytes(name, corpus(name)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidModule, "{name}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_module_whose_start_function_hangs_fails_to_load_at_the_load_deadline() {
    let started = Instant::now();
    let err = Task::<(), ()>::from_bytes("start_loop", corpus("start_loop")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

/// A minimal wasm binary encoder for modules too big to write by hand.
mod wasm {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend(body);
    }

    fn name(s: &str, out: &mut Vec<u8>) {
        leb(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }

    /// A function `(i32, i32) -> i32` of `rounds` blocks of integer arithmetic
    /// (about 14 bytes each): cheap to run, slow to compile when large.
    pub fn arithmetic(rounds: usize) -> Vec<u8> {
        let mut code = Vec::with_capacity(rounds * 16);
        for k in 0..rounds {
            code.extend_from_slice(&[0x20, 0x00, 0x20, 0x01, 0x6c, 0x41]); // get 0, get 1, mul, const
            leb((k % 1_000_000) as u64, &mut code);
            code.extend_from_slice(&[0x6a, 0x21, 0x00]); // add, set 0
            code.extend_from_slice(&[0x20, 0x00, 0x20, 0x01, 0x73, 0x21, 0x01]); // get, get, xor, set 1
        }
        code.extend_from_slice(&[0x20, 0x00]); // result: local 0
        code
    }

    /// A guest-ABI module with `pages` of memory, one active data segment of
    /// `data` at address 0, and extra functions `(i32, i32) -> i32` with the given bodies.
    pub fn module(pages: u32, data: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        // Types: 0 () -> i32, 1 (i32) -> i32, 2 (i32 i32) -> i64, 3 (i32 i32) -> i32.
        section(
            1,
            vec![
                4, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7e, 0x60, 2,
                0x7f, 0x7f, 1, 0x7f,
            ],
            &mut out,
        );
        let mut funcs = Vec::new();
        leb(3 + extra.len() as u64, &mut funcs);
        funcs.extend_from_slice(&[0, 1, 2]);
        funcs.extend(std::iter::repeat_n(3, extra.len()));
        section(3, funcs, &mut out);
        let mut memory = vec![1, 0];
        leb(u64::from(pages), &mut memory);
        section(5, memory, &mut out);
        let mut exports = Vec::new();
        leb(4, &mut exports);
        for (export, kind, index) in [
            ("memory", 2u8, 0u8),
            ("sandpool_abi_version", 0, 0),
            ("sandpool_alloc", 0, 1),
            ("sandpool_run", 0, 2),
        ] {
            name(export, &mut exports);
            exports.extend_from_slice(&[kind, index]);
        }
        section(7, exports, &mut out);
        let mut bodies: Vec<Vec<u8>> = vec![
            vec![0x41, 0x01],       // i32.const 1
            vec![0x41, 0x80, 0x08], // i32.const 1024
            vec![0x42, 0x00],       // i64.const 0
        ];
        bodies.extend(extra.iter().cloned());
        let mut code = Vec::new();
        leb(bodies.len() as u64, &mut code);
        for body in bodies {
            let mut func = vec![0]; // no locals
            func.extend(body);
            func.push(0x0b); // end
            leb(func.len() as u64, &mut code);
            code.extend(func);
        }
        section(10, code, &mut out);
        if !data.is_empty() {
            let mut segments = vec![1, 0, 0x41, 0, 0x0b]; // one active segment at i32.const 0
            leb(data.len() as u64, &mut segments);
            segments.extend_from_slice(data);
            section(11, segments, &mut out);
        }
        out
    }
}

#[test]
fn the_encoder_builds_loadable_modules() {
    let module = wasm::module(1, b"hello", &[wasm::arithmetic(10)]);
    Task::<(), ()>::from_bytes("tiny", module).expect("a small generated module loads");
}

#[test]
fn a_module_with_100_mb_of_data_segments_is_refused_before_it_is_compiled() {
    let data = vec![0x5a; 100 << 20];
    let module = wasm::module(1700, &data, &[]);
    let started = Instant::now();
    let err = Task::<(), ()>::from_bytes("data100", module.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule);
    assert!(err.to_string().contains("max_module_size"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // From a file: refused on its size, before it is read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data100.wasm");
    std::fs::write(&path, &module).unwrap();
    let started = Instant::now();
    let err = Task::<(), ()>::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("max_module_size"), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Allowed in by a raised limit, it still cannot start: its 100 MiB of
    // initial memory is over the load-time instance's 64 MiB cap.
    let raised = LoadLimits::default().max_module_size(128 << 20);
    let err = Task::<(), ()>::from_bytes_with("data100", module, raised).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("instantiate"), "{err}");
}

#[test]
fn a_module_with_48_mb_of_data_runs_with_its_data_shared_copy_on_write() {
    let data = vec![0x5a; 48 << 20];
    let task: Task<(), ()> = Task::from_bytes("data48", wasm::module(800, &data, &[]))
        .expect("a 48 MB module is under the default limits");
    drop(data);
    let pool = pool(task, Limits::default().memory(64 << 20));
    let before = common::rss();
    for _ in 0..20 {
        // Its run returns an empty output: a decode error, after a full instantiation.
        assert_eq!(kind_of(pool.submit(&()).unwrap().wait()), ErrorKind::Decode);
    }
    let grown = common::rss().saturating_sub(before);
    assert!(
        grown < 200 << 20,
        "RSS grew by {} MiB over 20 tasks",
        grown >> 20
    );
}

#[test]
fn a_function_over_the_size_limit_is_refused_before_it_is_compiled() {
    // About 1.4 MB in one function: Cranelift would take seconds on it.
    let module = wasm::module(1, &[], &[wasm::arithmetic(100_000)]);
    let started = Instant::now();
    let err = Task::<(), ()>::from_bytes("big_function", module).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule);
    assert!(err.to_string().contains("max_function_size"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_module_that_compiles_too_slowly_fails_at_the_compile_deadline() {
    // Eight functions of ~140 KB each: under every size limit, but well over
    // 20 ms of compilation even on an idle machine.
    let bodies: Vec<Vec<u8>> = (0..8).map(|_| wasm::arithmetic(10_000)).collect();
    let module = wasm::module(1, &[], &bodies);
    let strict = LoadLimits::default().compile_timeout(Duration::from_millis(20));
    let started = Instant::now();
    let err = Task::<(), ()>::from_bytes_with("slow", module.clone(), strict).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::InvalidModule);
    assert!(err.to_string().contains("compile_timeout"), "{err}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // The same module is fine without the deadline: it was the deadline that failed it.
    Task::<(), ()>::from_bytes_with("slow", module, LoadLimits::default().no_compile_timeout())
        .expect("loads given the time");
    // The abandoned compilation finishes in the background: no thread is left behind.
    let deadline = Instant::now() + Duration::from_secs(60);
    while LoadLimits::compilations_in_flight() > 0 {
        assert!(Instant::now() < deadline, "a compilation is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn process_pool<In, Out>(task: Task<In, Out>, limits: Limits) -> Pool<In, Out>
where
    In: serde::Serialize,
    Out: serde::de::DeserializeOwned + Send + 'static,
{
    Pool::builder(task)
        .workers(1)
        .isolation(Isolation::Process)
        .limits(limits)
        .build()
        .expect("process pool starts")
}

#[test]
fn the_runtime_corpus_fails_the_same_way_under_process_isolation() {
    let limits = Limits::default()
        .timeout(Duration::from_millis(200))
        .memory(16 << 20);
    let process = |name: &str| process_pool(load::<(), ()>(name), limits);
    let unit = |name: &str| process(name).submit(&()).unwrap().wait();
    assert_eq!(kind_of(unit("infinite_loop")), ErrorKind::Timeout);
    assert_eq!(kind_of(unit("deep_recursion")), ErrorKind::Trap);
    assert_eq!(kind_of(unit("clock_loop")), ErrorKind::Timeout);
    let memory = process_pool(load::<u8, [u8; 4]>("memory_growth"), limits);
    assert_eq!(
        memory.submit(&0).unwrap().wait().unwrap(),
        256u32.to_le_bytes()
    );
    assert_eq!(
        kind_of(memory.submit(&1).unwrap().wait()),
        ErrorKind::MemoryLimit
    );
    let output = process_pool(load::<u8, String>("bad_output"), limits);
    for (mode, kind) in [
        (0u8, ErrorKind::OutputTooLarge),
        (1, ErrorKind::Decode),
        (2, ErrorKind::Decode),
        (5, ErrorKind::Decode),
        (9, ErrorKind::Decode),
    ] {
        assert_eq!(
            kind_of(output.submit(&mode).unwrap().wait()),
            kind,
            "mode {mode}"
        );
    }
    assert_eq!(output.submit(&12).unwrap().wait().unwrap(), "ok");
    assert_eq!(
        output.process_stats().map(|s| s.crashed),
        Some(0),
        "no worker died"
    );
}

/// A pool of corpus module `name` granting `host.echo` (bytes in, bytes out).
fn echo_granted<In, Out>(name: &str, isolation: Isolation, limits: Limits) -> Pool<In, Out>
where
    In: serde::Serialize,
    Out: serde::de::DeserializeOwned + Send + 'static,
{
    Pool::builder(load::<In, Out>(name))
        .workers(1)
        .isolation(isolation)
        .limits(limits)
        .capability("host.echo", |b: serde_bytes::ByteBuf| Ok::<_, String>(b))
        .build()
        .expect("pool starts")
}

#[test]
fn a_capability_call_flood_stops_at_the_call_cap_at_both_levels() {
    for level in [Isolation::Instance, Isolation::Process] {
        let pool = echo_granted::<(), ()>(
            "capability_call_flood",
            level,
            Limits::default().max_calls(1000),
        );
        let err = pool.submit(&()).unwrap().wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capability, "{level:?}: {err}");
        assert!(err.to_string().contains("`host.echo`"), "{err}");
        assert!(err.to_string().contains("1000 calls"), "{err}");
    }
}

#[test]
fn a_module_declaring_an_ungranted_capability_never_runs() {
    let err = Pool::builder(load::<(), ()>("capability_ungranted"))
        .capability("host.echo", |b: serde_bytes::ByteBuf| Ok::<_, String>(b))
        .build()
        .expect_err("refused at load");
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert!(err.to_string().contains("`host.secret`"), "{err}");
}

#[test]
fn misusing_call_result_fails_or_is_refused_without_harm_to_the_host() {
    for level in [Isolation::Instance, Isolation::Process] {
        let pool = echo_granted::<u8, [u8; 4]>("capability_bad_result", level, Limits::default());
        let err = pool.submit(&0).unwrap().wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capability, "{level:?}: {err}");
        assert!(err.to_string().contains("outside linear memory"), "{err}");
        // The guest returns `call_result`'s status as four little-endian bytes.
        let status = |mode: u8| i32::from_le_bytes(pool.submit(&mode).unwrap().wait().unwrap());
        assert_eq!(status(1), -2, "buffer too small, {level:?}");
        assert_eq!(status(2), -1, "no response waiting, {level:?}");
    }
}
