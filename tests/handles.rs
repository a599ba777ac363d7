//! Issue 14's vocabulary: deadlines on map, as_completed and wait; timed
//! waits on handles; as_completed over a mix of handles; handle state;
//! abort of a running task on each level; I/O task errors; I/O windows.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use common::{Mode, Spin, Spun};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sandpool::{
    AnyHandle, Error, ErrorKind, Handle, IoPool, Isolation, Limits, Pool, ReturnWhen, Task,
};

type Hostile = Pool<Mode, serde_bytes::ByteBuf>;

fn hostile_pool(level: Isolation, workers: usize) -> Hostile {
    Pool::builder(Task::from_file(common::guest("hostile")).unwrap())
        .isolation(level)
        .workers(workers)
        .limits(Limits::default().timeout(Duration::from_secs(30)))
        .build()
        .unwrap()
}

fn spin_pool(workers: usize) -> Pool<Spin, Spun> {
    Pool::builder(Task::from_file(common::guest("spin")).unwrap())
        .workers(workers)
        .build()
        .unwrap()
}

fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn unfinished(err: &Error) -> (u64, u64) {
    match err {
        Error::DeadlineExceeded {
            unfinished, total, ..
        } => (*unfinished, *total),
        other => panic!("expected a deadline error, got {other}"),
    }
}

// Deadlines on map and as_completed.

fn map_deadline_cancels_unstarted_work_and_counts_the_unfinished(level: Isolation) {
    let pool = hostile_pool(level, 1);
    let started = Instant::now();
    let mut results = pool
        .map([Mode::Ok(0), Mode::Loop, Mode::Ok(2), Mode::Ok(3)])
        .timeout(Duration::from_millis(300));
    assert_eq!(common::ok_value(&results.next().unwrap()), 0);
    let err = results.next().unwrap().unwrap_err();
    assert_eq!(unfinished(&err), (3, 4), "{err}");
    assert!(err.to_string().contains("3 of 4 unfinished"), "{err}");
    assert_eq!(
        err.task().unwrap().index,
        1,
        "names the first unfinished input"
    );
    assert!(results.next().is_none(), "the map ends at its deadline");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(results);
    // Inputs 2 and 3 were cancelled; only the loop keeps the worker, until aborted or timed out.
}

#[test]
fn instance_map_deadline_cancels_unstarted_work_and_counts_the_unfinished() {
    map_deadline_cancels_unstarted_work_and_counts_the_unfinished(Isolation::Instance);
}

#[test]
fn process_map_deadline_cancels_unstarted_work_and_counts_the_unfinished() {
    map_deadline_cancels_unstarted_work_and_counts_the_unfinished(Isolation::Process);
}

#[test]
fn io_map_deadline_cancels_unstarted_work_and_counts_the_unfinished() {
    let pool = IoPool::builder().concurrency(1).window(4).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let mut results = pool
        .map(0..4, move |i| {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                if i > 0 {
                    // With one slot, whichever of 1..=3 gets it first holds it.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                i
            }
        })
        .timeout(Duration::from_millis(200));
    assert_eq!(results.next().unwrap().unwrap(), 0);
    let err = results.next().unwrap().unwrap_err();
    assert_eq!(unfinished(&err), (3, 4), "{err}");
    assert!(results.next().is_none());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "the two left waiting never ran"
    );
}

#[test]
fn as_completed_deadline_yields_the_finished_then_the_deadline_error() {
    let pool = hostile_pool(Isolation::Instance, 2);
    let mut it = pool
        .as_completed([Mode::Loop, Mode::Ok(1)])
        .timeout(Duration::from_millis(300));
    let (i, r) = it.next().unwrap();
    assert_eq!((i, common::ok_value(&r)), (1, 1));
    let (i, r) = it.next().unwrap();
    assert_eq!(i, 0);
    assert_eq!(unfinished(&r.unwrap_err()), (1, 2));
    assert!(it.next().is_none());
}

#[test]
fn io_as_completed_deadline_yields_the_finished_then_the_deadline_error() {
    let pool = IoPool::builder().build().unwrap();
    let mut it = pool
        .as_completed([3600u64, 0], |s| async move {
            tokio::time::sleep(Duration::from_secs(s)).await
        })
        .timeout(Duration::from_millis(200));
    assert_eq!(it.next().unwrap().0, 1);
    let (i, r) = it.next().unwrap();
    assert_eq!((i, unfinished(&r.unwrap_err())), (0, (1, 2)));
    assert!(it.next().is_none());
}

// wait with a deadline; timed waits on handles.

#[test]
fn wait_timeout_returns_done_and_pending_at_the_deadline() {
    let pool = hostile_pool(Isolation::Instance, 2);
    let io = IoPool::builder().build().unwrap();
    let looping = pool.submit(&Mode::Loop).unwrap();
    let handles: Vec<AnyHandle<serde_bytes::ByteBuf>> = vec![
        pool.submit(&Mode::Ok(7)).unwrap().into(),
        io.submit(async { serde_bytes::ByteBuf::from(vec![1]) })
            .unwrap()
            .into(),
        pool.submit(&Mode::Loop).unwrap().into(),
    ];
    let started = Instant::now();
    let waited = sandpool::wait_timeout(
        handles,
        ReturnWhen::AllCompleted,
        Duration::from_millis(300),
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let mut done: Vec<usize> = waited.done.iter().map(|(i, _)| *i).collect();
    done.sort();
    assert_eq!(done, [0, 1]);
    assert_eq!(waited.pending.len(), 1);
    assert_eq!(waited.pending[0].0, 2);
    for (_, h) in waited.pending {
        assert!(h.abort());
    }
    assert!(looping.abort());
}

#[test]
fn a_handle_wait_timeout_gives_the_handle_back_to_wait_again() {
    let pool = hostile_pool(Isolation::Instance, 1);
    let h = pool.submit(&Mode::Loop).unwrap();
    let h = h.wait_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(h.is_running());
    assert!(h.abort());
    let result = h.wait_timeout(Duration::from_secs(30)).ok().unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Aborted);

    let io = IoPool::builder().build().unwrap();
    let h = io
        .submit(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            5
        })
        .unwrap();
    let h = h.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(
        h.wait_timeout(Duration::from_secs(30))
            .ok()
            .unwrap()
            .unwrap(),
        5
    );
}

// as_completed over handles.

#[test]
fn as_completed_over_mixed_handles_yields_each_once_already_finished_first() {
    let wasm = spin_pool(2);
    let io = IoPool::builder().build().unwrap();
    let slow_wasm = wasm
        .submit(&Spin {
            id: 0,
            rounds: 300_000_000,
        })
        .unwrap();
    let slow_io = io
        .submit(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Spun { id: 1, checksum: 0 }
        })
        .unwrap();
    let done_wasm = wasm.submit(&Spin { id: 2, rounds: 1 }).unwrap();
    let done_io = io.submit(async { Spun { id: 3, checksum: 0 } }).unwrap();
    until("the quick ones finished", || {
        done_wasm.is_finished() && done_io.is_finished()
    });
    let handles: Vec<AnyHandle<Spun>> = vec![
        slow_wasm.into(),
        slow_io.into(),
        done_wasm.into(),
        done_io.into(),
    ];
    let order: Vec<usize> = sandpool::as_completed(handles)
        .map(|(pos, r)| {
            assert_eq!(r.unwrap().id, pos as u64, "each result is its own handle's");
            pos
        })
        .collect();
    assert_eq!(&order[..2], [2, 3], "already-finished handles come first");
    let mut rest = order[2..].to_vec();
    rest.sort();
    assert_eq!(rest, [0, 1], "every handle yielded once");
}

#[test]
fn as_completed_over_handles_with_a_deadline_gives_back_the_pending_ones() {
    let pool = hostile_pool(Isolation::Instance, 2);
    let handles = vec![
        pool.submit(&Mode::Ok(1)).unwrap(),
        pool.submit(&Mode::Loop).unwrap(),
    ];
    let mut it = sandpool::as_completed(handles).timeout(Duration::from_millis(300));
    assert_eq!(it.next().unwrap().0, 0);
    let (pos, r) = it.next().unwrap();
    assert_eq!((pos, unfinished(&r.unwrap_err())), (1, (1, 2)));
    assert!(it.next().is_none());
    let pending = it.into_pending();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].1.is_running(),
        "the deadline does not touch the task"
    );
    assert!(pending[0].1.abort());
}

// Handle state.

#[test]
fn handle_state_goes_queued_running_finished_on_wasm_and_io() {
    let pool = hostile_pool(Isolation::Instance, 1);
    let first = pool.submit(&Mode::Loop).unwrap();
    let second = pool.submit(&Mode::Ok(2)).unwrap();
    until("the loop runs", || first.is_running());
    assert!(!first.is_finished());
    assert!(!second.is_running() && !second.is_finished(), "queued");
    first.abort();
    until("the second finished", || second.is_finished());
    assert!(!second.is_running());
    assert!(first.is_finished() && !first.is_running());

    let io = IoPool::builder().concurrency(1).build().unwrap();
    let first = io.submit(std::future::pending::<()>()).unwrap();
    let second = io.submit(async {}).unwrap();
    until("the pending task runs", || first.is_running());
    assert!(!second.is_running() && !second.is_finished(), "queued");
    assert!(first.abort());
    until("the second finished", || second.is_finished());
    assert!(first.is_finished());
}

// Abort.

#[test]
fn abort_stops_a_running_instance_task_and_the_worker_goes_on() {
    let pool = hostile_pool(Isolation::Instance, 1);
    let looping = pool.submit(&Mode::Loop).unwrap();
    until("the loop runs", || looping.is_running());
    let asked = Instant::now();
    assert!(looping.abort());
    let err = looping.wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Aborted, "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped well before its 30 s deadline"
    );
    assert_eq!(
        common::ok_value(&pool.submit(&Mode::Ok(4)).unwrap().wait()),
        4
    );
}

#[test]
fn abort_kills_the_worker_process_running_the_task_and_it_is_replaced() {
    let pool = hostile_pool(Isolation::Process, 1);
    let before = pool.process_stats().unwrap();
    let looping = pool.submit(&Mode::Loop).unwrap();
    until("the loop runs", || looping.is_running());
    assert!(looping.abort());
    let err = looping.wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Aborted, "{err}");
    assert_eq!(
        common::ok_value(&pool.submit(&Mode::Ok(5)).unwrap().wait()),
        5
    );
    let after = pool.process_stats().unwrap();
    assert_eq!(
        after.crashed,
        before.crashed + 1,
        "the aborted worker was killed"
    );
    assert_ne!(after.worker_pids, before.worker_pids, "and replaced");
}

#[test]
fn abort_cancels_a_queued_task_and_refuses_a_finished_one() {
    let pool = hostile_pool(Isolation::Instance, 1);
    let looping = pool.submit(&Mode::Loop).unwrap();
    let queued = pool.submit(&Mode::Ok(1)).unwrap();
    assert!(queued.abort());
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    looping.abort();
    let done = pool.submit(&Mode::Ok(2)).unwrap();
    until("it finished", || done.is_finished());
    assert!(!done.abort(), "a finished task keeps its result");
    assert_eq!(common::ok_value(&done.wait()), 2);
}

// I/O task errors and windows.

#[test]
fn an_io_task_err_is_a_failure_for_wait_first_error() {
    let io = IoPool::builder().build().unwrap();
    let slow = io
        .submit_fallible(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<u8, String>(0)
        })
        .unwrap();
    let bad = io
        .submit_blocking_fallible(|| Err::<u8, _>("disk full".to_string()))
        .unwrap();
    let waited = sandpool::wait(vec![slow, bad], ReturnWhen::FirstError);
    assert_eq!(waited.done.len(), 1);
    let (pos, err) = &waited.done[0];
    let err = err.as_ref().unwrap_err();
    assert_eq!((*pos, err.kind()), (1, ErrorKind::Guest));
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(waited.pending.len(), 1);
    waited.pending[0].1.abort();
}

#[test]
fn the_io_map_window_bounds_how_many_inputs_are_submitted() {
    let io = IoPool::builder().concurrency(64).window(5).build().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let t = Arc::clone(&taken);
    let inputs = (0..).inspect(move |_| {
        t.fetch_add(1, Ordering::SeqCst);
    });
    let mut results = io.map(inputs, |i: u64| async move { i });
    assert_eq!(taken.load(Ordering::SeqCst), 5, "the call fills the window");
    assert_eq!(results.next().unwrap().unwrap(), 0);
    assert_eq!(
        taken.load(Ordering::SeqCst),
        5,
        "one taken, one pulled on the next call"
    );
    assert_eq!(results.next().unwrap().unwrap(), 1);
    assert_eq!(taken.load(Ordering::SeqCst), 6);
}
