//! The in-process instance executor: identity and order of results, fault
//! containment, limits, isolation between tasks, cancellation and shutdown.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use common::{Mode, Spin, Spun, expected_checksum, ok_value, random_spins};

use std::collections::HashSet;
use std::time::Duration;

use sandpool::{Error, ErrorKind, Limits, Pool, Task};

fn spin_pool(workers: usize) -> Pool<Spin, Spun> {
    let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).expect("spin guest loads");
    Pool::builder(task)
        .workers(workers)
        .build()
        .expect("pool starts")
}

#[test]
fn map_returns_10000_results_matched_to_their_inputs_in_input_order() {
    let inputs = random_spins(10_000, 1);
    let pool = spin_pool(4);
    let mut count = 0;
    for (i, (input, result)) in inputs.iter().zip(pool.map(&inputs)).enumerate() {
        let out = result.unwrap_or_else(|e| panic!("input {i} failed: {e}"));
        assert_eq!(out.id, input.id, "result {i} belongs to input {}", out.id);
        assert_eq!(out.checksum, expected_checksum(input.id, input.rounds));
        count += 1;
    }
    assert_eq!(count, inputs.len());
}

#[test]
fn as_completed_yields_every_index_once_with_its_own_result() {
    let inputs = random_spins(10_000, 2);
    let pool = spin_pool(4);
    let mut seen = HashSet::new();
    for (index, result) in pool.as_completed(&inputs) {
        let out = result.expect("spin succeeds");
        assert_eq!(out.id, inputs[index].id);
        assert_eq!(
            out.checksum,
            expected_checksum(inputs[index].id, inputs[index].rounds)
        );
        assert!(seen.insert(index), "index {index} yielded twice");
    }
    assert_eq!(seen.len(), inputs.len());
}

#[test]
fn as_completed_yields_a_slow_first_input_after_faster_later_ones() {
    let pool = spin_pool(2);
    // Input 0 spins for hundreds of milliseconds; the others for microseconds.
    let inputs: Vec<Spin> = (0..20)
        .map(|id| Spin {
            id,
            rounds: if id == 0 { 400_000_000 } else { 10 },
        })
        .collect();
    let order: Vec<usize> = pool
        .as_completed(&inputs)
        .map(|(i, r)| {
            r.unwrap();
            i
        })
        .collect();
    assert_eq!(order.len(), 20);
    assert_ne!(order[0], 0, "a fast input finished first: {order:?}");
    assert_eq!(
        *order.last().unwrap(),
        0,
        "the slow input finished last: {order:?}"
    );
}

fn hostile_pool(limits: Limits) -> Pool<Mode, serde_bytes::ByteBuf> {
    let task = Task::from_file(common::guest("hostile")).expect("hostile guest loads");
    Pool::builder(task)
        .workers(2)
        .limits(limits)
        .build()
        .expect("pool starts")
}

#[test]
fn each_fault_fails_only_its_own_task_with_the_right_error() {
    let pool = hostile_pool(common::fault_limits());
    let (inputs, kinds) = common::fault_cases();
    let results: Vec<_> = pool.map(&inputs).collect();
    common::assert_faults_contained(&results, &kinds);
}

#[test]
fn a_panic_reports_its_message_and_a_guest_error_its_text() {
    let pool = hostile_pool(Limits::default());
    let err = pool
        .submit(&Mode::Panic("the sky fell".into()))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Panic { message, .. } if message.contains("the sky fell")),
        "{err}"
    );
    let err = pool
        .submit(&Mode::Fail("no such word".into()))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Guest { message, .. } if message == "no such word"),
        "{err}"
    );
}

#[test]
fn endless_recursion_is_a_trap_with_a_bounded_backtrace() {
    // Rust on wasm32 keeps its stack in linear memory: overflowing it runs off the
    // bottom of memory (out of bounds) before wasmtime's native stack limit is hit.
    let pool = hostile_pool(Limits::default());
    let err = pool.submit(&Mode::Recurse).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("out of bounds") || message.contains("stack overflow"),
        "{message}"
    );
    assert!(
        message.contains("recurse"),
        "the backtrace names the function: {message}"
    );
    assert!(
        message.lines().count() < 20,
        "backtrace is bounded: {message}"
    );
}

#[test]
fn per_task_limits_override_the_pool_defaults() {
    let pool = hostile_pool(Limits::default());
    let strict = Limits::default().timeout(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let err = pool
        .submit_with(&Mode::Loop, strict)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { limit, .. } if limit == Duration::from_millis(50)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline fired"
    );
    let small = Limits::default().max_output(4);
    let err = pool
        .submit_with(&Mode::Ok(1), small)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutputTooLarge {
                size: 9,
                limit: 4,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn fuel_limits_stop_a_task_that_runs_too_long() {
    let task: Task<u64, u64> = Task::from_file(common::guest("primes")).unwrap();
    let pool = Pool::builder(task)
        .workers(1)
        .limits(Limits::default().fuel(10_000))
        .build()
        .unwrap();
    assert_eq!(pool.submit(&10).unwrap().wait().unwrap(), 4);
    let err = pool.submit(&1_000_000).unwrap().wait().unwrap_err();
    assert!(
        matches!(err, Error::FuelExhausted { limit: 10_000, .. }),
        "{err}"
    );
}

#[test]
fn a_fuel_limit_on_an_unmetered_pool_is_a_config_error_not_a_hang() {
    let task: Task<u64, u64> = Task::from_file(common::guest("primes")).unwrap();
    let pool = Pool::builder(task).workers(1).build().unwrap();
    let err = pool
        .submit_with(&10, Limits::default().fuel(5))
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[test]
fn guest_output_is_captured_per_task_and_bounded() {
    let pool = hostile_pool(Limits::default().max_log(1000));
    let out = pool.submit(&Mode::Print(100_000)).unwrap().wait_output();
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(out.logs.stdout.bytes.len(), 1000);
    assert_eq!(out.logs.stderr.bytes.len(), 1000);
    assert_eq!(out.logs.stdout.dropped, 100_000 - 1000);
    assert!(out.logs.stdout.bytes.starts_with(b"xxxx"));
    let quiet = pool.submit(&Mode::Ok(3)).unwrap().wait_output();
    assert!(
        quiet.logs.stdout.bytes.is_empty(),
        "no output leaks from the previous task"
    );
}

#[test]
fn state_does_not_leak_between_tasks() {
    let task: Task<(), (u64, u64)> = Task::from_file(common::guest("counter")).unwrap();
    let pool = Pool::builder(task).workers(2).build().unwrap();
    let results: Vec<(u64, u64)> = pool.map(vec![(); 500]).map(|r| r.unwrap()).collect();
    assert_eq!(results.len(), 500);
    assert!(
        results.iter().all(|&r| r == (1, 1)),
        "every task sees a fresh counter: {:?}",
        &results[..5]
    );
}

#[test]
fn cancel_stops_a_queued_task_but_not_a_running_one() {
    let pool = hostile_pool(Limits::default().timeout(Duration::from_millis(500)));
    // Occupy both workers.
    let busy: Vec<_> = (0..2).map(|_| pool.submit(&Mode::Loop).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let queued = pool.submit(&Mode::Ok(5)).unwrap();
    assert!(queued.cancel(), "a queued task can be cancelled");
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    for handle in busy {
        assert!(!handle.cancel(), "a running task cannot be cancelled");
        assert_eq!(handle.wait().unwrap_err().kind(), ErrorKind::Timeout);
    }
}

#[test]
fn shutdown_with_cancel_queued_cancels_waiting_tasks_and_refuses_new_ones() {
    let pool = hostile_pool(Limits::default().timeout(Duration::from_millis(300)));
    let busy: Vec<_> = (0..2).map(|_| pool.submit(&Mode::Loop).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50));
    let queued: Vec<_> = (0..10)
        .map(|i| pool.submit(&Mode::Ok(i)).unwrap())
        .collect();
    pool.shutdown(true, true);
    for handle in queued {
        assert_eq!(handle.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    }
    for handle in busy {
        assert_eq!(
            handle.wait().unwrap_err().kind(),
            ErrorKind::Timeout,
            "running work finished"
        );
    }
    let err = pool.submit(&Mode::Ok(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShutDown);
    pool.shutdown(true, true); // twice is harmless
}

#[test]
fn shutdown_with_wait_finishes_queued_work() {
    let pool = spin_pool(2);
    let handles: Vec<_> = random_spins(200, 3)
        .iter()
        .map(|s| pool.submit(s).unwrap())
        .collect();
    pool.shutdown(true, false);
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.wait().unwrap().id, i as u64);
    }
}

#[test]
fn dropping_a_map_part_way_cancels_what_has_not_started() {
    let pool = hostile_pool(Limits::default().timeout(Duration::from_millis(200)));
    let inputs: Vec<Mode> = (0..1000).map(|_| Mode::Loop).collect();
    let mut results = pool.map(&inputs);
    assert_eq!(
        results.next().unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
    drop(results);
    // With the rest cancelled, a fresh task runs promptly instead of after ~1000 timeouts.
    let started = std::time::Instant::now();
    assert_eq!(ok_value(&pool.submit(&Mode::Ok(9)).unwrap().wait()), 9);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn map_pulls_inputs_lazily_so_an_endless_iterator_works() {
    let pool = spin_pool(2);
    let endless = (0u64..).map(|id| Spin { id, rounds: 10 });
    let first: Vec<u64> = pool.map(endless).take(50).map(|r| r.unwrap().id).collect();
    assert_eq!(first, (0..50).collect::<Vec<_>>());
}

#[test]
fn an_unset_window_starts_at_16_per_worker_and_stays_within_1024_per_worker() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let pool = spin_pool(2);
    // Cheap tasks first, so the pool knows its cost per task.
    let warm: Vec<Spin> = (0..500).map(|id| Spin { id, rounds: 1 }).collect();
    assert_eq!(pool.map(&warm).filter(|r| r.is_ok()).count(), 500);
    let taken = AtomicU64::new(0);
    let inputs = (0u64..5_000).map(|id| {
        taken.fetch_add(1, Ordering::SeqCst);
        Spin { id, rounds: 1 }
    });
    let mut results = pool.map(inputs);
    // Before any input's size is known, the call submits the least window.
    assert_eq!(taken.load(Ordering::SeqCst), 32, "16 per worker");
    assert_eq!(results.next().unwrap().unwrap().id, 0);
    let in_flight = taken.load(Ordering::SeqCst);
    assert!(
        in_flight <= 1 + 2 * 1024,
        "{in_flight} taken after one result"
    );
    let rest: Vec<u64> = results.map(|r| r.unwrap().id).collect();
    assert_eq!(rest, (1..5_000).collect::<Vec<_>>());
}

#[test]
fn handles_can_be_awaited_from_async_code() {
    let pool = spin_pool(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let handle = pool.submit_async(&Spin { id: 77, rounds: 5 }).await?;
        handle.await
    });
    assert_eq!(out.unwrap().id, 77);
}
