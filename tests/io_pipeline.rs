//! The I/O pool (native closures and async fns under a concurrency bound)
//! and read → compute → write pipelines over the I/O and wasm pools.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use common::{Spin, Spun};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sandpool::{Error, ErrorKind, IoPool, Order, Pipeline, Pool, ReturnWhen, Task};

fn spin_pool() -> Pool<Spin, Spun> {
    Pool::builder(Task::from_file(common::guest("spin")).unwrap())
        .workers(2)
        .build()
        .unwrap()
}

/// Tracks how many tasks run at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_thousand_sleeping_tasks_overlap_but_never_exceed_the_bound() {
    let pool = IoPool::builder().concurrency(100).build().unwrap();
    let gauge = Arc::new(Gauge::default());
    let started = Instant::now();
    let results: Vec<usize> = pool
        .map(0..1000usize, |i| {
            let gauge = Arc::clone(&gauge);
            async move {
                gauge.enter();
                tokio::time::sleep(Duration::from_millis(20)).await;
                gauge.leave();
                i
            }
        })
        .collect::<Result<_, _>>()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        results,
        (0..1000).collect::<Vec<_>>(),
        "map keeps input order"
    );
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(peak <= 100, "never more than 100 at once, saw {peak}");
    assert!(peak >= 50, "tasks overlapped (peak {peak})");
    // Sequentially this is 20 s; bounded at 100 it is about 0.2 s. Half of sequential is a
    // generous ceiling for a shared machine.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn blocking_closures_share_the_same_bound() {
    let pool = IoPool::builder().concurrency(4).build().unwrap();
    let gauge = Arc::new(Gauge::default());
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let gauge = Arc::clone(&gauge);
            pool.submit_blocking(move || {
                gauge.enter();
                std::thread::sleep(Duration::from_millis(5));
                gauge.leave();
                i
            })
            .unwrap()
        })
        .collect();
    let done: Vec<i32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(done, (0..40).collect::<Vec<_>>());
    assert!(gauge.peak.load(Ordering::SeqCst) <= 4);
}

#[test]
fn io_tasks_time_out_are_cancelled_and_report_panics() {
    let pool = IoPool::builder()
        .concurrency(1)
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let slow = pool
        .submit(async { tokio::time::sleep(Duration::from_secs(10)).await })
        .unwrap();
    let queued = pool.submit(async { 1 }).unwrap();
    assert!(queued.cancel());
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(slow.wait().unwrap_err().kind(), ErrorKind::Timeout);
    let panics = pool.submit(async { panic!("disk on fire") }).unwrap();
    let err: Error = panics.wait().unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn io_pool_shutdown_refuses_new_work_and_cancels_queued_work() {
    let pool = IoPool::builder().concurrency(1).build().unwrap();
    let running = pool
        .submit(async { tokio::time::sleep(Duration::from_millis(100)).await })
        .unwrap();
    // The first submission took the only slot when it was submitted, so the
    // second is queued however the runtime schedules their futures.
    let queued = pool.submit(async { 2 }).unwrap();
    pool.shutdown(true, true);
    assert!(running.wait().is_ok());
    assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(
        pool.submit(async {}).unwrap_err().kind(),
        ErrorKind::ShutDown
    );
    pool.shutdown(true, true);
}

#[test]
fn io_tasks_start_in_submission_order() {
    // concurrent.futures starts queued work first in, first out; so must the
    // I/O pool, whichever runtime thread polls which task first.
    for concurrency in [1, 3] {
        let pool = IoPool::builder()
            .concurrency(concurrency)
            .threads(2)
            .build()
            .unwrap();
        let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // Each task ends only after the one submitted before it has ended, so
        // the slots free up in submission order and task j can start only
        // once task j - concurrency has ended (which it did after it
        // started), however late a thread is scheduled. Slots handed out of
        // order would leave a task waiting for one that has no slot: that
        // shows as a timeout, not a hang.
        let ended = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
        let handles: Vec<_> = (0..200usize)
            .map(|i| {
                let started = std::sync::Arc::clone(&started);
                let ended = std::sync::Arc::clone(&ended);
                let blocking = pool.submit_blocking(move || {
                    started.lock().unwrap().push(i);
                    std::thread::sleep(Duration::from_micros(50));
                    let (count, turn) = &*ended;
                    let give_up = std::time::Instant::now() + Duration::from_secs(10);
                    let mut count = count.lock().unwrap();
                    while *count < i {
                        let left = give_up.saturating_duration_since(std::time::Instant::now());
                        assert!(
                            !left.is_zero(),
                            "task {i} waited for task {} to end",
                            *count
                        );
                        count = turn.wait_timeout(count, left).unwrap().0;
                    }
                    *count = i + 1;
                    turn.notify_all();
                });
                blocking.unwrap()
            })
            .collect();
        for h in handles {
            h.wait().unwrap();
        }
        let started = started.lock().unwrap().clone();
        let mut sorted = started.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
        // A task may record itself after one submitted up to `concurrency - 1`
        // later (both held slots at once), never after one further on.
        for (position, &i) in started.iter().enumerate() {
            assert!(
                i.abs_diff(position) < concurrency,
                "task {i} started {position}th at concurrency {concurrency}: {started:?}"
            );
        }
    }
}

#[test]
fn wait_returns_on_first_completed_first_error_or_all() {
    let io = IoPool::builder().build().unwrap();
    let slow = || {
        io.submit(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<u8, String>(0)
        })
        .unwrap()
    };
    let handles = vec![slow(), io.submit(async { Ok(1) }).unwrap()];
    let first = sandpool::wait(handles, ReturnWhen::FirstCompleted);
    assert_eq!(first.done.len(), 1);
    assert_eq!(first.done[0].0, 1);
    assert_eq!(first.pending.len(), 1);

    // Wasm handles work the same way; a failing one ends FirstError early.
    let pool: Pool<u64, u64> = Pool::builder(Task::from_file(common::guest("primes")).unwrap())
        .workers(2)
        .limits(sandpool::Limits::default().timeout(Duration::from_millis(100)))
        .build()
        .unwrap();
    let handles = vec![
        pool.submit(&10).unwrap(),
        pool.submit(&u64::MAX).unwrap(),
        pool.submit(&20).unwrap(),
    ];
    let waited = sandpool::wait(handles, ReturnWhen::FirstError);
    assert!(
        waited
            .done
            .iter()
            .any(|(i, r)| *i == 1 && r.as_ref().unwrap_err().kind() == ErrorKind::Timeout)
    );
    let all = sandpool::wait(
        waited.pending.into_iter().map(|(_, h)| h).collect(),
        ReturnWhen::AllCompleted,
    );
    assert!(all.pending.is_empty());
    assert!(all.done.iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn a_pipeline_over_100000_inputs_stays_within_its_bound_and_keeps_identities() {
    let io = IoPool::builder().build().unwrap();
    let pool = spin_pool();
    let pipeline = Pipeline::builder(&io)
        .read_concurrency(8)
        .compute_window(8)
        .write_concurrency(8)
        .build();
    let bound = 8 + 8 + 8;
    let run = pipeline.run(
        0..100_000u64,
        |&id: &u64| async move {
            Ok(Spin {
                id,
                rounds: (id % 7) as u32,
            })
        },
        &pool,
        |id: u64, out: Result<Spun, Error>| async move { (id, out.map(|o| o.id)) },
    );
    let stats = run.stats();
    let mut seen = vec![false; 100_000];
    for (index, (id, out)) in run {
        assert_eq!(index as u64, id, "index travels with the item");
        assert_eq!(out.unwrap(), id, "the output is its own input's");
        assert!(!std::mem::replace(&mut seen[index], true), "{index} twice");
    }
    assert!(seen.iter().all(|&s| s), "every input produced an output");
    assert!(
        stats.peak_in_flight() <= bound as u64,
        "peak {} > bound {bound}",
        stats.peak_in_flight()
    );
    assert!(stats.peak_in_flight() > 1, "stages overlapped");
}

#[test]
fn a_pipeline_in_input_order_yields_in_input_order() {
    let io = IoPool::builder().build().unwrap();
    let pool = spin_pool();
    let run = Pipeline::builder(&io).order(Order::Input).build().run(
        0..2000u64,
        |&id: &u64| async move {
            Ok(Spin {
                id,
                rounds: if id % 50 == 0 { 100_000 } else { 1 },
            })
        },
        &pool,
        |id: u64, out: Result<Spun, Error>| async move { (id, out) },
    );
    for (expected, (index, (id, out))) in run.enumerate() {
        assert_eq!(
            (index, id as usize, out.unwrap().id as usize),
            (expected, expected, expected)
        );
    }
}

#[test]
fn cancelling_a_pipeline_stops_new_work_and_leaves_no_partial_output() {
    let io = IoPool::builder().build().unwrap();
    let pool = spin_pool();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_path_buf();
    let pipeline = Pipeline::builder(&io)
        .read_concurrency(4)
        .compute_window(4)
        .write_concurrency(4)
        .build();
    let run = pipeline.run(
        0..50_000u64,
        |&id: &u64| async move { Ok(Spin { id, rounds: 20_000 }) },
        &pool,
        move |id: u64, out: Result<Spun, Error>| {
            let out_dir = out_dir.clone();
            async move {
                let out = out.unwrap();
                let body = format!("{{\"id\":{}}}", out.id).repeat(1000);
                // Atomic write: temporary file, then rename.
                let tmp = out_dir.join(format!("{id}.json.tmp"));
                tokio::fs::write(&tmp, body).await.unwrap();
                tokio::fs::rename(&tmp, out_dir.join(format!("{id}.json")))
                    .await
                    .unwrap();
                id
            }
        },
    );
    let token = run.cancel_token();
    let mut yielded = 0;
    let mut after_cancel = 0;
    for _ in run {
        yielded += 1;
        if yielded == 100 {
            token.cancel();
        } else if yielded > 100 {
            after_cancel += 1;
        }
    }
    assert!(
        after_cancel <= 4 + 4 + 4 + 16,
        "only items already in flight finish: {after_cancel}"
    );
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".json"), "no temporary file left: {name}");
        let id: u64 = name.trim_end_matches(".json").parse().unwrap();
        let body = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            body,
            format!("{{\"id\":{id}}}").repeat(1000),
            "complete output"
        );
        files += 1;
    }
    assert_eq!(files, yielded);
    assert!(files < 50_000);
}

#[test]
fn the_crawl_example_fetches_processes_and_writes_one_output_per_page() {
    // `cargo test` builds the examples next to the test binaries' folder.
    let exe = std::env::current_exe().unwrap();
    let crawl = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("crawl");
    assert!(crawl.exists(), "{} is built by cargo test", crawl.display());
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&crawl)
        .arg("30")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    for n in 0..30 {
        let stats: sandpool::workloads::DocStats =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{n}.json"))).unwrap())
                .unwrap();
        assert_eq!(stats.lines, 20, "page {n}");
        assert!(
            stats
                .top
                .iter()
                .any(|(w, c)| *w == n.to_string() && *c >= 20),
            "page {n}'s own number is its top word"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        30,
        "one file per page, no temporaries"
    );
}
