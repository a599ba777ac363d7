//! Tests of the supervisor's batch calls (`calls.rs`): crashes, aborts and
//! logs inside a batch, against real worker processes.

use super::super::child::locate_program;
use super::super::supervisor::ProcessBackend;
use super::super::{ProcessOptions, ProcessStats};
use super::*;
use crate::exec::dispatch::Backend;
use crate::runtime::compiled::Compiled;

/// An ABI v1 module that writes its input to stderr and returns it.
const STDERR_ECHO: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "sandpool_abi_version") (result i32) i32.const 1)
    (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store8 (i32.const 1023) (i32.const 0))
        (i64.or (i64.shl (i64.const 1023) (i64.const 32))
                (i64.extend_i32_u (i32.add (local.get $len) (i32.const 1))))))"#;

#[test]
fn a_worker_lost_mid_batch_fails_only_the_task_it_was_running() {
    let program = locate_program(None).unwrap_or_else(|e| {
        panic!("this test runs the `sandpool` binary, which `cargo test` builds: {e}")
    });
    let compiled =
        Compiled::compile("stderr_echo", STDERR_ECHO.as_bytes(), false).expect("the module loads");
    let options = ProcessOptions {
        program: Some(program),
        env: vec![("SANDPOOL_WORKER_FAULT".into(), "abort:CRASH".into())],
        ..ProcessOptions::default()
    };
    let backend = ProcessBackend::start(
        "stderr_echo",
        &compiled,
        STDERR_ECHO.as_bytes(),
        &options,
        1,
    )
    .expect("a worker starts");
    let mut slot = backend.start_worker(0).expect("a slot");
    let limits = Limits::default();
    let inputs: [&[u8]; 5] = [b"a", b"b", b"CRASH", b"c", b"d"];
    let tasks: Vec<TaskRef> = (0..5).map(|i| TaskRef::new("stderr_echo", i)).collect();
    let batch: Vec<TaskInput<'_>> = tasks
        .iter()
        .zip(inputs)
        .map(|(task, input)| TaskInput {
            task,
            input,
            limits: &limits,
            state: None,
        })
        .collect();
    let mut sink = Collect::new(batch.len());
    backend.sup.run_batch(&mut slot, &batch, &mut sink);
    let outcomes: Vec<RawOutcome> = sink.0.into_iter().map(Option::unwrap).collect();
    assert_eq!(outcomes.len(), 5);
    for i in [0, 1, 3, 4] {
        assert_eq!(
            outcomes[i].result.as_deref().ok(),
            Some(inputs[i]),
            "task {i} (a `sandpool` binary built without the test-faults feature \
             does not crash on cue: `cargo test` builds it with it)"
        );
    }
    match &outcomes[2].result {
        Err(Error::WorkerCrashed { task, reason }) => {
            assert_eq!(task.index, 2);
            assert!(reason.contains("SIGABRT"), "{reason}");
        }
        other => panic!("expected the crash on task 2, got {other:?}"),
    }
    assert_eq!(backend.sup.stats().crashed, 1);
}

/// An ABI v1 module: input "L…" spins forever, "S…" spins for a while
/// (a second or so), anything else is echoed.
const LOOP_OR_ECHO: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "sandpool_abi_version") (result i32) i32.const 1)
    (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
        (local $n i32)
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 76))
            (then (loop $forever (br $forever))))
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 83))
            (then
                (local.set $n (i32.const 1000000000))
                (loop $slow
                    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                    (br_if $slow (i32.ne (local.get $n) (i32.const 0))))))
        (i32.store8 (i32.const 1023) (i32.const 0))
        (i64.or (i64.shl (i64.const 1023) (i64.const 32))
                (i64.extend_i32_u (i32.add (local.get $len) (i32.const 1))))))"#;

/// Begins jobs as the dispatcher does (queued → running) and keeps the
/// outcomes.
struct StartingSink<'a> {
    jobs: &'a [Job],
    outcomes: Vec<Option<RawOutcome>>,
}

impl BatchSink for StartingSink<'_> {
    fn begin(&mut self, i: usize) -> bool {
        self.jobs[i].state.start() || self.jobs[i].state.is_running()
    }
    fn done(&mut self, i: usize, outcome: RawOutcome) {
        assert!(self.outcomes[i].is_none(), "one outcome per task");
        self.outcomes[i] = Some(outcome);
    }
}

/// Runs `inputs` as one batch of queued jobs on a one-worker backend,
/// aborting task `victim` after `after`; returns the outcomes (None: no
/// outcome, the job was cancelled) and the jobs (to read their states).
fn batch_with_abort(
    inputs: &[&[u8]],
    victim: usize,
    after: Duration,
) -> (Vec<Option<RawOutcome>>, Vec<Job>, ProcessStats) {
    let program = locate_program(None).unwrap_or_else(|e| {
        panic!("this test runs the `sandpool` binary, which `cargo test` builds: {e}")
    });
    let compiled = Compiled::compile("loop_or_echo", LOOP_OR_ECHO.as_bytes(), false)
        .expect("the module loads");
    let options = ProcessOptions {
        program: Some(program),
        ..ProcessOptions::default()
    };
    let backend = ProcessBackend::start(
        "loop_or_echo",
        &compiled,
        LOOP_OR_ECHO.as_bytes(),
        &options,
        1,
    )
    .expect("a worker starts");
    let mut slot = backend.start_worker(0).expect("a slot");
    let jobs: Vec<Job> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            Job::direct(
                TaskRef::new("loop_or_echo", i as u64),
                input.to_vec(),
                Limits::default(),
            )
        })
        .collect();
    let state = Arc::clone(&jobs[victim].state);
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(after);
        assert!(state.abort(), "the victim has not finished");
    });
    let refs: Vec<&Job> = jobs.iter().collect();
    let mut sink = StartingSink {
        jobs: &jobs,
        outcomes: (0..jobs.len()).map(|_| None).collect(),
    };
    backend.run_batch(&mut slot, &refs, &mut sink);
    let outcomes = sink.outcomes;
    aborter.join().expect("the aborting thread");
    let stats = backend.sup.stats();
    (outcomes, jobs, stats)
}

fn assert_echoed(outcomes: &[Option<RawOutcome>], inputs: &[&[u8]], which: &[usize]) {
    for &i in which {
        let result = outcomes[i].as_ref().map(|o| &o.result);
        assert_eq!(
            result.and_then(|r| r.as_deref().ok()),
            Some(inputs[i]),
            "task {i}: {result:?}"
        );
    }
}

fn assert_killed(outcome: &Option<RawOutcome>, index: u64) {
    match outcome.as_ref().map(|o| &o.result) {
        Some(Err(Error::WorkerCrashed { task, reason })) => {
            assert_eq!(task.index, index);
            assert!(reason.contains("SIGKILL"), "{reason}");
        }
        other => panic!("expected task {index} to be killed, got {other:?}"),
    }
}

#[test]
fn an_abort_of_the_running_task_of_a_batch_kills_only_it_and_the_rest_run() {
    let inputs: [&[u8]; 5] = [b"a", b"b", b"L", b"c", b"d"];
    let (outcomes, jobs, stats) = batch_with_abort(&inputs, 2, Duration::from_millis(300));
    assert_eq!(outcomes.len(), 5);
    assert_echoed(&outcomes, &inputs, &[0, 1, 3, 4]);
    assert_killed(&outcomes[2], 2);
    assert!(jobs[2].state.abort_requested());
    assert_eq!(stats.crashed, 1, "{stats:?}");
    assert_eq!(stats.started, 2, "the replacement ran the rest: {stats:?}");
    assert_eq!(
        stats.requests, 2,
        "one frame, then one for the rest: {stats:?}"
    );
    assert_eq!(stats.tasks_sent, 5 + 2, "{stats:?}");
}

#[test]
fn an_abort_of_a_task_waiting_in_the_frame_cancels_it_and_spares_the_others() {
    let inputs: [&[u8]; 4] = [b"a", b"S", b"c", b"d"];
    let (outcomes, jobs, stats) = batch_with_abort(&inputs, 2, Duration::from_millis(50));
    assert_eq!(outcomes.len(), 4);
    assert_echoed(&outcomes, &inputs, &[0, 1, 3]);
    assert!(
        outcomes[2].is_none(),
        "{:?}",
        outcomes[2].as_ref().map(|o| &o.result)
    );
    assert!(jobs[2].state.is_cancelled());
    assert_eq!(stats.crashed, 0, "{stats:?}");
    assert_eq!(stats.requests, 1, "{stats:?}");
}
