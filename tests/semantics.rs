//! Issue 14's executor fixes, one behaviour per test, on every level where
//! it applies: in-process instances, worker processes and the I/O pool.
//! Each test pins what CPython's `concurrent.futures` tests pin (or better).
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use common::{Mode, Spin, Spun};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sandpool::{ErrorKind, IoPool, Isolation, Limits, Pool, ReturnWhen, Task};

fn spin_pool(level: Isolation, workers: usize) -> Pool<Spin, Spun> {
    Pool::builder(Task::from_file(common::guest("spin")).unwrap())
        .isolation(level)
        .workers(workers)
        .build()
        .unwrap()
}

fn hostile_pool(level: Isolation, workers: usize) -> Pool<Mode, serde_bytes::ByteBuf> {
    Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
        .isolation(level)
        .workers(workers)
        .limits(Limits::default().timeout(Duration::from_secs(20)))
        .build()
        .unwrap()
}

fn spin(id: u64) -> Spin {
    Spin { id, rounds: 1000 }
}

/// A spin input that keeps a worker busy for a while (tens to hundreds of ms).
fn slow(id: u64) -> Spin {
    Spin {
        id,
        rounds: 200_000_000,
    }
}

// 1. shutdown(wait = true, cancel_queued = false) completes every submitted task.

fn shutdown_wait_completes_every_queued_task(level: Isolation) {
    let pool = spin_pool(level, 2);
    let handles: Vec<_> = (0..200).map(|i| pool.submit(&spin(i)).unwrap()).collect();
    pool.shutdown(true, false);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap().id, i as u64, "task {i} completed");
    }
}

#[test]
fn instance_shutdown_wait_completes_every_queued_task() {
    shutdown_wait_completes_every_queued_task(Isolation::Instance);
}

#[test]
fn process_shutdown_wait_completes_every_queued_task() {
    shutdown_wait_completes_every_queued_task(Isolation::Process);
}

#[test]
fn io_shutdown_wait_completes_every_queued_task() {
    let pool = IoPool::builder().concurrency(2).build().unwrap();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            pool.submit(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                i
            })
            .unwrap()
        })
        .collect();
    pool.shutdown(true, false);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap(), i, "task {i} completed");
    }
}

#[test]
fn io_shutdown_wait_completes_a_task_submitted_just_before() {
    let pool = IoPool::builder().build().unwrap();
    let h = pool
        .submit(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "done"
        })
        .unwrap();
    pool.shutdown(true, false);
    assert_eq!(h.wait().unwrap(), "done");
}

// 2. Dropping a pool lets submitted work finish; no handle is left without its result.

fn dropping_a_pool_lets_queued_and_running_tasks_finish(level: Isolation) {
    let pool = spin_pool(level, 1);
    let running = pool.submit(&slow(1)).unwrap();
    let queued = pool.submit(&spin(2)).unwrap();
    drop(pool);
    assert_eq!(running.wait().unwrap().id, 1);
    assert_eq!(queued.wait().unwrap().id, 2);
}

#[test]
fn instance_dropping_a_pool_lets_queued_and_running_tasks_finish() {
    dropping_a_pool_lets_queued_and_running_tasks_finish(Isolation::Instance);
}

#[test]
fn process_dropping_a_pool_lets_queued_and_running_tasks_finish() {
    dropping_a_pool_lets_queued_and_running_tasks_finish(Isolation::Process);
}

#[test]
fn io_dropping_a_pool_lets_running_async_and_blocking_tasks_finish() {
    let pool = IoPool::builder().concurrency(2).build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    let running_async = pool
        .submit(async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            1
        })
        .unwrap();
    let s = Arc::clone(&started);
    let running_blocking = pool
        .submit_blocking(move || {
            s.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            2
        })
        .unwrap();
    let queued = pool.submit(async { 3 }).unwrap();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    drop(pool);
    assert_eq!(running_async.wait().unwrap(), 1);
    assert_eq!(running_blocking.wait().unwrap(), 2);
    assert_eq!(queued.wait().unwrap(), 3);
}

#[test]
fn io_the_last_clone_dropped_inside_its_own_task_lets_the_task_finish() {
    let pool = IoPool::builder().build().unwrap();
    let inner = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let h = pool
        .submit(async move {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            drop(inner); // the last clone: dropped on one of the pool's own threads
            tokio::time::sleep(Duration::from_millis(20)).await;
            7
        })
        .unwrap();
    drop(pool);
    tx.send(()).unwrap();
    assert_eq!(h.wait().unwrap(), 7);
}

// 3. Blocking sandpool calls inside an IoPool::map callback work.

#[test]
fn io_map_callbacks_may_make_blocking_sandpool_calls() {
    let io = IoPool::builder().build().unwrap();
    let wasm = spin_pool(Isolation::Instance, 2);
    let ids: Vec<u64> = io
        .map(0..20u64, |i| {
            // Pool::submit, TaskHandle::wait and sandpool::wait, all blocking.
            let direct = wasm.submit(&spin(i)).unwrap().wait().unwrap().id;
            let waited = sandpool::wait(
                vec![wasm.submit(&spin(i)).unwrap()],
                ReturnWhen::AllCompleted,
            );
            let via_wait = waited.done[0].1.as_ref().unwrap().id;
            async move { direct + via_wait }
        })
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, (0..20).map(|i| 2 * i).collect::<Vec<_>>());
    let mut seen: Vec<usize> = io
        .as_completed(0..5u64, |i| {
            let id = wasm.submit(&spin(i)).unwrap().wait().unwrap().id;
            async move { id }
        })
        .map(|(i, r)| {
            assert_eq!(r.unwrap(), i as u64);
            i
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
}

// 4. wait(FirstError) does not treat a cancelled handle as a failure.

fn wait_first_error_ignores_a_cancelled_handle(level: Isolation) {
    let pool = spin_pool(level, 1);
    let busy = pool.submit(&slow(0)).unwrap();
    let queued = pool.submit(&spin(1)).unwrap();
    assert!(queued.cancel());
    let waited = sandpool::wait(vec![busy, queued], ReturnWhen::FirstError);
    assert!(waited.pending.is_empty(), "it waited for the busy task");
    assert_eq!(waited.done.len(), 2);
}

#[test]
fn instance_wait_first_error_ignores_a_cancelled_handle() {
    wait_first_error_ignores_a_cancelled_handle(Isolation::Instance);
}

#[test]
fn process_wait_first_error_ignores_a_cancelled_handle() {
    wait_first_error_ignores_a_cancelled_handle(Isolation::Process);
}

#[test]
fn io_wait_first_error_ignores_a_cancelled_handle() {
    let pool = IoPool::builder().concurrency(1).build().unwrap();
    let busy = pool
        .submit(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            0
        })
        .unwrap();
    let queued = pool.submit(async { 1 }).unwrap();
    assert!(queued.cancel());
    let waited = sandpool::wait(vec![busy, queued], ReturnWhen::FirstError);
    assert!(waited.pending.is_empty(), "it waited for the busy task");
    assert_eq!(waited.done.len(), 2);
}

// 5. cancel() on an already-cancelled handle returns true.

fn cancelling_twice_returns_true_both_times(level: Isolation) {
    let pool = spin_pool(level, 1);
    let _busy = pool.submit(&slow(0)).unwrap();
    let queued = pool.submit(&spin(1)).unwrap();
    assert!(queued.cancel());
    assert!(queued.cancel(), "already cancelled is cancelled");
    assert!(queued.is_cancelled());
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    let finished = pool.submit(&spin(2)).unwrap();
    while !finished.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!finished.cancel(), "a finished task cannot be cancelled");
}

#[test]
fn instance_cancelling_twice_returns_true_both_times() {
    cancelling_twice_returns_true_both_times(Isolation::Instance);
}

#[test]
fn process_cancelling_twice_returns_true_both_times() {
    cancelling_twice_returns_true_both_times(Isolation::Process);
}

#[test]
fn io_cancelling_twice_returns_true_both_times() {
    let pool = IoPool::builder().concurrency(1).build().unwrap();
    let _busy = pool
        .submit(async { tokio::time::sleep(Duration::from_millis(200)).await })
        .unwrap();
    let queued = pool.submit(async { 1 }).unwrap();
    assert!(queued.cancel());
    assert!(queued.cancel(), "already cancelled is cancelled");
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
}

// 6. A map's window counts as submitted: shutdown(wait) right after map runs it.

fn map_then_shutdown_delivers_the_window_then_one_shutdown_error(level: Isolation) {
    let pool = Pool::builder(Task::<Spin, Spun>::from_file(common::guest("spin")).unwrap())
        .isolation(level)
        .workers(2)
        .window(8)
        .build()
        .unwrap();
    let results = pool.map((0..).map(spin));
    pool.shutdown(true, false);
    let results: Vec<_> = results.collect();
    assert_eq!(results.len(), 9, "8 in the window, then the refused one");
    for (i, r) in results[..8].iter().enumerate() {
        assert_eq!(r.as_ref().unwrap().id, i as u64);
    }
    let refused = results[8].as_ref().unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ShutDown);
    assert_eq!(refused.task().unwrap().index, 8);
}

#[test]
fn instance_map_then_shutdown_delivers_the_window_then_one_shutdown_error() {
    map_then_shutdown_delivers_the_window_then_one_shutdown_error(Isolation::Instance);
}

#[test]
fn process_map_then_shutdown_delivers_the_window_then_one_shutdown_error() {
    map_then_shutdown_delivers_the_window_then_one_shutdown_error(Isolation::Process);
}

#[test]
fn io_map_then_shutdown_delivers_the_window_then_one_shutdown_error() {
    let pool = IoPool::builder().window(8).build().unwrap();
    let results = pool.map(0u64.., |i| async move { i });
    pool.shutdown(true, false);
    let results: Vec<_> = results.collect();
    assert_eq!(results.len(), 9, "8 in the window, then the refused one");
    for (i, r) in results[..8].iter().enumerate() {
        assert_eq!(*r.as_ref().unwrap(), i as u64);
    }
    assert_eq!(results[8].as_ref().unwrap_err().kind(), ErrorKind::ShutDown);
}

#[test]
fn as_completed_then_shutdown_delivers_the_window_then_one_shutdown_error() {
    let pool = Pool::builder(Task::<Spin, Spun>::from_file(common::guest("spin")).unwrap())
        .workers(2)
        .window(8)
        .build()
        .unwrap();
    let results = pool.as_completed((0..).map(spin));
    pool.shutdown(true, false);
    let mut results: Vec<_> = results.collect();
    results.sort_by_key(|(i, _)| *i);
    assert_eq!(results.len(), 9);
    assert!(results[..8].iter().all(|(_, r)| r.is_ok()));
    assert_eq!(
        results[8].1.as_ref().unwrap_err().kind(),
        ErrorKind::ShutDown
    );
}

// 7. A lazy map over an endless input ends after its first ShutDown.

fn a_map_over_an_endless_input_ends_at_the_first_shutdown_error(level: Isolation) {
    let pool = spin_pool(level, 1);
    pool.shutdown(true, false);
    let results: Vec<_> = pool.map((0..).map(spin)).collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap_err().kind(), ErrorKind::ShutDown);
    let completed: Vec<_> = pool.as_completed((0..).map(spin)).collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(
        completed[0].1.as_ref().unwrap_err().kind(),
        ErrorKind::ShutDown
    );
}

#[test]
fn instance_a_map_over_an_endless_input_ends_at_the_first_shutdown_error() {
    a_map_over_an_endless_input_ends_at_the_first_shutdown_error(Isolation::Instance);
}

#[test]
fn process_a_map_over_an_endless_input_ends_at_the_first_shutdown_error() {
    a_map_over_an_endless_input_ends_at_the_first_shutdown_error(Isolation::Process);
}

#[test]
fn io_a_map_over_an_endless_input_ends_at_the_first_shutdown_error() {
    let pool = IoPool::builder().build().unwrap();
    pool.shutdown(true, false);
    let results: Vec<_> = pool.map(0u64.., |i| async move { i }).collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap_err().kind(), ErrorKind::ShutDown);
    let completed: Vec<_> = pool.as_completed(0u64.., |i| async move { i }).collect();
    assert_eq!(completed.len(), 1);
}

// 8. Zero sizes are configuration errors, not silently clamped.

#[test]
fn window_zero_is_a_config_error_on_both_wasm_levels() {
    for level in [Isolation::Instance, Isolation::Process] {
        let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
        let err = Pool::builder(task).isolation(level).window(0).build();
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Config, "{level:?}");
    }
}

#[test]
fn queue_capacity_zero_is_a_config_error_on_both_wasm_levels() {
    for level in [Isolation::Instance, Isolation::Process] {
        let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
        let err = Pool::builder(task)
            .isolation(level)
            .queue_capacity(0)
            .build();
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Config, "{level:?}");
    }
}

#[test]
fn io_window_zero_is_a_config_error() {
    let err = IoPool::builder().window(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

// The wasm pools refuse hostile loops at their deadline even with abort armed.

#[test]
fn a_task_deadline_still_fires_as_a_timeout_with_abort_armed() {
    let pool = hostile_pool(Isolation::Instance, 1);
    let strict = Limits::default().timeout(Duration::from_millis(30));
    let err = pool
        .submit_with(&Mode::Loop, strict)
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

// PoolBuilder (issue 17): an option that does not apply to the pool's level is refused.

#[test]
fn process_only_options_on_an_instance_pool_are_a_config_error_naming_them() {
    let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
    let err = Pool::builder(task)
        .worker_grace(Duration::from_secs(1))
        .max_tasks_per_worker(10)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let message = err.to_string();
    assert!(
        message.contains("worker_grace")
            && message.contains("max_tasks_per_worker")
            && message.contains("Isolation::Process"),
        "{message}"
    );
}

#[test]
fn grant_options_on_a_process_pool_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
    let err = Pool::builder(task)
        .isolation(Isolation::Process)
        .grant_dir(dir.path(), "/data", sandpool::DirAccess::ReadOnly)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("grant_dir"), "{err}");
}

#[test]
fn max_file_writes_without_a_read_write_grant_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
    let read_only = Pool::builder(task.clone())
        .grant_dir(dir.path(), "/data", sandpool::DirAccess::ReadOnly)
        .max_file_writes(10)
        .build();
    assert_eq!(read_only.unwrap_err().kind(), ErrorKind::Config);
    let none = Pool::builder(task).max_file_writes(10).build();
    assert_eq!(none.unwrap_err().kind(), ErrorKind::Config);
}

#[test]
fn process_options_take_effect_on_a_process_pool() {
    let task: Task<Spin, Spun> = Task::from_file(common::guest("spin")).unwrap();
    let pool = Pool::builder(task)
        .isolation(Isolation::Process)
        .workers(1)
        .max_tasks_per_worker(2)
        .precompiled_module(false)
        .build()
        .unwrap();
    let ids: Vec<u64> = pool.map((0..5).map(spin)).map(|r| r.unwrap().id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let stats = pool.process_stats().unwrap();
    assert!(stats.recycled >= 2, "{stats:?}");
    assert!(!stats.last_start.unwrap().precompiled);
}

// Batched hand-off (issue 11): cheap tasks travel to a worker several at a time,
// and every guarantee still holds per task.

#[test]
fn shutdown_cancel_queued_also_cancels_unstarted_tasks_of_a_batch_a_worker_holds() {
    let pool: Pool<Mode, serde_bytes::ByteBuf> =
        Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
            .workers(1)
            .window(16)
            .limits(Limits::default().timeout(Duration::from_millis(300)))
            .build()
            .unwrap();
    // Cheap tasks teach the pool their cost, so the next map hands over batches (of 8 here).
    for r in pool.map((0..200).map(Mode::Ok)) {
        r.unwrap();
    }
    let inputs = std::iter::once(Mode::Loop).chain((1..16).map(Mode::Ok));
    let results = pool.map(inputs);
    std::thread::sleep(Duration::from_millis(50)); // the loop, first of its batch, runs
    pool.shutdown(false, true);
    let kinds: Vec<ErrorKind> = results.map(|r| r.unwrap_err().kind()).collect();
    assert_eq!(kinds[0], ErrorKind::Timeout);
    assert_eq!(kinds.len(), 16);
    assert!(
        kinds[1..].iter().all(|k| *k == ErrorKind::Cancelled),
        "nothing behind the loop ran, in its batch or after it: {kinds:?}"
    );
}

#[test]
fn a_batched_map_keeps_input_order_identity_and_per_task_errors() {
    let pool: Pool<Mode, serde_bytes::ByteBuf> =
        Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
            .workers(2)
            .build()
            .unwrap();
    let inputs: Vec<Mode> = (0..3000u64)
        .map(|i| {
            if i % 97 == 0 {
                Mode::Fail(format!("bad {i}"))
            } else {
                Mode::Ok(i)
            }
        })
        .collect();
    for (i, r) in pool.map(&inputs).enumerate() {
        if i % 97 == 0 {
            let err = r.unwrap_err();
            assert_eq!(
                (err.kind(), err.task().unwrap().index),
                (ErrorKind::Guest, i as u64)
            );
        } else {
            assert_eq!(common::ok_value(&r), i as u64);
        }
    }
    let mut seen = vec![false; inputs.len()];
    for (i, r) in pool.as_completed(&inputs) {
        assert_eq!(r.is_ok(), i % 97 != 0);
        assert!(!std::mem::replace(&mut seen[i], true), "{i} twice");
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn a_slow_task_in_a_batch_does_not_hold_back_the_results_before_it() {
    let pool: Pool<Mode, serde_bytes::ByteBuf> =
        Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
            .workers(1)
            .window(16)
            .limits(Limits::default().timeout(Duration::from_secs(5)))
            .build()
            .unwrap();
    for r in pool.map((0..200).map(Mode::Ok)) {
        r.unwrap(); // teaches the pool that tasks are cheap: the next map batches
    }
    let inputs = [Mode::Ok(0), Mode::Loop]
        .into_iter()
        .chain((2..8).map(Mode::Ok));
    let started = std::time::Instant::now();
    let mut results = pool.map(inputs);
    assert_eq!(common::ok_value(&results.next().unwrap()), 0);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "input 0 came after {:?}, held back by the loop behind it",
        started.elapsed()
    );
    assert_eq!(
        results.next().unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
}

#[test]
fn process_shutdown_cancel_queued_also_cancels_unstarted_tasks_of_a_batch_in_a_worker_frame() {
    let pool: Pool<Mode, serde_bytes::ByteBuf> =
        Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
            .isolation(sandpool::Isolation::Process)
            .workers(1)
            .window(16)
            .limits(Limits::default().timeout(Duration::from_millis(300)))
            .build()
            .unwrap();
    // Cheap tasks teach the pool their cost, so the next map hands over
    // batches, sent to the worker several per frame.
    for r in pool.map((0..200).map(Mode::Ok)) {
        r.unwrap();
    }
    let inputs = std::iter::once(Mode::Loop).chain((1..16).map(Mode::Ok));
    let results = pool.map(inputs);
    std::thread::sleep(Duration::from_millis(50)); // the loop, first of its frame, runs
    pool.shutdown(false, true);
    let kinds: Vec<ErrorKind> = results.map(|r| r.unwrap_err().kind()).collect();
    assert_eq!(kinds[0], ErrorKind::Timeout);
    assert_eq!(kinds.len(), 16);
    assert!(
        kinds[1..].iter().all(|k| *k == ErrorKind::Cancelled),
        "nothing behind the loop ran, in its frame or after it: {kinds:?}"
    );
}

#[test]
fn process_a_slow_task_in_a_batch_does_not_hold_back_the_results_before_it() {
    let pool: Pool<Mode, serde_bytes::ByteBuf> =
        Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
            .isolation(sandpool::Isolation::Process)
            .workers(1)
            .window(16)
            .limits(Limits::default().timeout(Duration::from_secs(5)))
            .build()
            .unwrap();
    for r in pool.map((0..200).map(Mode::Ok)) {
        r.unwrap(); // teaches the pool that tasks are cheap: the next map batches
    }
    let inputs = [Mode::Ok(0), Mode::Loop]
        .into_iter()
        .chain((2..8).map(Mode::Ok));
    let started = std::time::Instant::now();
    let mut results = pool.map(inputs);
    assert_eq!(common::ok_value(&results.next().unwrap()), 0);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "input 0 came after {:?}, held back by the loop behind it",
        started.elapsed()
    );
    assert_eq!(
        results.next().unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
}
