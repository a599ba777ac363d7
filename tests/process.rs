//! The process executor (`Isolation::Process`): the same results as in
//! process, and crash containment: a worker killed by a signal, aborting,
//! exiting or hanging fails only its in-flight task and is replaced;
//! restart storms are bounded; workers are recycled; and no worker process
//! outlives the pool.
//!
//! Tests run one at a time (a lock), because several of them count this
//! process's child processes.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use common::{Mode, Spin, Spun, expected_checksum, ok_value, random_spins};

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sandpool::{Error, ErrorKind, Isolation, Limits, Pool, Task};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Children of this process running the `sandpool` program (any state, zombies included): (pid, state).
fn worker_children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." — comm may contain spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me && comm == "sandpool" {
            found.push((pid, state));
        }
    }
    found
}

/// Waits (bounded) until no worker process of ours is left, zombies included.
fn assert_no_workers_remain() {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = worker_children();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "worker processes remain after shutdown: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn spin_task() -> Task<Spin, Spun> {
    Task::from_file(common::guest("spin")).expect("spin guest loads")
}

fn spin_pool(workers: usize) -> Pool<Spin, Spun> {
    Pool::builder(spin_task())
        .workers(workers)
        .isolation(Isolation::Process)
        .build()
        .expect("pool starts")
}

/// What `Mode::Print` writes to stderr; the workers' test hook watches for it.
const MARKER: &str = "xxxxxxxxxx";

fn hostile_task() -> Task<Mode, serde_bytes::ByteBuf> {
    Task::from_file(common::guest("hostile")).expect("hostile guest loads")
}

fn hostile_builder() -> sandpool::PoolBuilder<Mode, serde_bytes::ByteBuf> {
    Pool::builder(hostile_task()).isolation(Isolation::Process)
}

#[test]
fn map_returns_10000_results_matched_to_their_inputs_in_input_order() {
    let _serial = serial();
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
    assert_eq!(pool.process_stats().unwrap().crashed, 0);
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn as_completed_yields_every_index_once_with_its_own_result() {
    let _serial = serial();
    let inputs = random_spins(2_000, 2);
    let pool = spin_pool(2);
    let mut seen = HashSet::new();
    for (index, result) in pool.as_completed(&inputs) {
        let out = result.expect("spin succeeds");
        assert_eq!(
            out.checksum,
            expected_checksum(inputs[index].id, inputs[index].rounds)
        );
        assert!(seen.insert(index), "index {index} yielded twice");
    }
    assert_eq!(seen.len(), inputs.len());
}

#[test]
fn sigkill_of_a_worker_mid_map_fails_exactly_its_in_flight_task() {
    let _serial = serial();
    const VICTIM: usize = 500;
    // Short tasks, except the victim's, which runs for seconds: it is in flight when the kill lands.
    let inputs: Vec<Spin> = (0..1000)
        .map(|id| Spin {
            id,
            rounds: if id as usize == VICTIM {
                u32::MAX
            } else {
                2_000
            },
        })
        .collect();
    let pool = spin_pool(2);
    let mut results = Vec::with_capacity(inputs.len());
    let mut killer = None;
    for (i, result) in pool.map(&inputs).enumerate() {
        results.push(result);
        if i == VICTIM - 1 {
            // The victim has started. Once the other worker has drained the window and
            // gone idle, the victim's worker is the only one running: kill exactly it.
            let pool = pool.clone();
            killer = Some(std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    let pids = pool.process_stats().unwrap().worker_pids;
                    let running: Vec<u32> = pids
                        .iter()
                        .copied()
                        .filter(|&p| proc_state(p) == Some('R'))
                        .collect();
                    if pids.len() == 2 && running.len() == 1 {
                        // SAFETY: sending a signal to our own child process.
                        assert_eq!(unsafe { libc::kill(running[0] as i32, libc::SIGKILL) }, 0);
                        return running[0];
                    }
                    assert!(
                        Instant::now() < deadline,
                        "never saw exactly one busy worker: {pids:?}"
                    );
                }
            }));
        }
    }
    let killed = killer
        .expect("the map got past the victim")
        .join()
        .expect("killer thread");
    assert_eq!(results.len(), inputs.len());
    for (i, result) in results.iter().enumerate() {
        if i == VICTIM {
            let err = result.as_ref().expect_err("the in-flight task fails");
            assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
            assert_eq!(err.task().map(|t| t.index), Some(VICTIM as u64));
            let message = err.to_string();
            assert!(
                message.contains("SIGKILL") && message.contains(&killed.to_string()),
                "{message}"
            );
        } else {
            let out = result
                .as_ref()
                .unwrap_or_else(|e| panic!("input {i} failed: {e}"));
            assert_eq!(
                (out.id, out.checksum),
                (i as u64, expected_checksum(i as u64, inputs[i].rounds))
            );
        }
    }
    let stats = pool.process_stats().unwrap();
    assert_eq!(stats.crashed, 1, "{stats:?}");
    assert_eq!(
        stats.started, 3,
        "two workers plus one replacement: {stats:?}"
    );
    assert!(!stats.worker_pids.contains(&killed));
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn an_abort_in_a_worker_fails_only_its_task_and_the_map_goes_on() {
    let _serial = serial();
    const VICTIM: usize = 500;
    let pool = hostile_builder()
        .workers(2)
        .worker_env("SANDPOOL_WORKER_FAULT", format!("abort:{MARKER}"))
        .build()
        .expect("pool starts");
    let inputs: Vec<Mode> = (0..1000)
        .map(|i| {
            if i == VICTIM {
                Mode::Print(100)
            } else {
                Mode::Ok(i as u64)
            }
        })
        .collect();
    let results: Vec<_> = pool.map(&inputs).collect();
    assert_eq!(results.len(), inputs.len());
    for (i, result) in results.iter().enumerate() {
        if i == VICTIM {
            let err = result.as_ref().expect_err("the aborting task fails");
            assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
            assert_eq!(err.task().map(|t| t.index), Some(VICTIM as u64));
            assert!(err.to_string().contains("signal 6 (SIGABRT"), "{err}");
        } else {
            assert_eq!(ok_value(result), i as u64);
        }
    }
    assert_eq!(pool.process_stats().unwrap().crashed, 1);
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn every_kind_of_worker_death_is_named_and_the_worker_replaced() {
    let _serial = serial();
    for (action, expect) in [
        ("segv", "signal 11 (SIGSEGV"),
        ("exit", "exited with status 3"),
        ("abort", "signal 6 (SIGABRT"),
    ] {
        let pool = hostile_builder()
            .workers(1)
            .worker_env("SANDPOOL_WORKER_FAULT", format!("{action}:{MARKER}"))
            .build()
            .unwrap();
        let err = pool.submit(&Mode::Print(100)).unwrap().wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{action}: {err}");
        assert!(err.to_string().contains(expect), "{action}: {err}");
        // The replacement serves the next task.
        assert_eq!(
            ok_value(&pool.submit(&Mode::Ok(7)).unwrap().wait()),
            7,
            "{action}"
        );
        pool.shutdown(true, false);
    }
    assert_no_workers_remain();
}

#[test]
fn a_worker_that_stops_answering_is_killed_after_the_deadline_plus_grace() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(1)
        .limits(Limits::default().timeout(Duration::from_millis(500)))
        // Generous, so that a loaded machine does not turn the ordinary
        // timeout below into a missed answer.
        .worker_grace(Duration::from_millis(1500))
        .worker_env("SANDPOOL_WORKER_FAULT", format!("hang:{MARKER}"))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = pool.submit(&Mode::Print(100)).unwrap().wait().unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
    assert!(
        err.to_string().contains("did not answer within 2s"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    // A task that times out inside the worker is an ordinary timeout, not a crash.
    let err = pool.submit(&Mode::Loop).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(ok_value(&pool.submit(&Mode::Ok(1)).unwrap().wait()), 1);
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn a_restart_storm_at_build_is_a_pool_error_after_a_bounded_number_of_starts() {
    let _serial = serial();
    let started = Instant::now();
    let err = hostile_builder()
        .workers(2)
        .max_failed_starts(4)
        .worker_env("SANDPOOL_WORKER_FAULT_AT_START", "always")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pool, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("after 4 failed start-ups in a row"),
        "{message}"
    );
    assert!(
        message.contains("SIGABRT") && message.contains("before it was ready"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_no_workers_remain();
}

#[test]
fn a_restart_storm_later_fails_tasks_at_once_with_the_reason_instead_of_looping() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("crash-at-start");
    let pool = hostile_builder()
        .workers(1)
        .max_failed_starts(3)
        .worker_env("SANDPOOL_WORKER_FAULT_AT_START", &flag)
        .worker_env("SANDPOOL_WORKER_FAULT", format!("abort:{MARKER}"))
        .build()
        .unwrap();
    assert_eq!(ok_value(&pool.submit(&Mode::Ok(1)).unwrap().wait()), 1);
    // From now on every new worker dies while starting.
    std::fs::write(&flag, b"").unwrap();
    let err = pool.submit(&Mode::Print(100)).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("SIGABRT"), "{err}");
    let started = Instant::now();
    let err = pool.submit(&Mode::Ok(2)).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
    assert!(err.to_string().contains("gave up starting"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Later tasks fail at once with the same reason; no future hangs.
    let started = Instant::now();
    let handles: Vec<_> = (0..20)
        .map(|i| pool.submit(&Mode::Ok(i)).unwrap())
        .collect();
    for handle in handles {
        let err = handle.wait().unwrap_err();
        assert!(err.to_string().contains("gave up starting"), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stats = pool.process_stats().unwrap();
    assert_eq!(stats.failed_starts, 3, "{stats:?}");
    assert!(stats.gave_up.is_some());
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn max_tasks_per_worker_recycles_workers() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(1)
        .max_tasks_per_worker(10)
        .build()
        .unwrap();
    let first = pool.process_stats().unwrap().worker_pids;
    let results: Vec<_> = pool.map((0..35).map(Mode::Ok)).collect();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(ok_value(result), i as u64);
    }
    let stats = pool.process_stats().unwrap();
    assert_eq!(stats.recycled, 3, "{stats:?}");
    assert_eq!(stats.started, 4, "{stats:?}");
    assert_eq!(stats.crashed, 0);
    assert_eq!(stats.worker_pids.len(), 1);
    assert_ne!(
        stats.worker_pids, first,
        "a fresh process serves after recycling"
    );
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn a_replacement_started_long_before_it_is_needed_is_still_used() {
    let _serial = serial();
    // The recycled worker's replacement starts at once but is first asked for
    // its handshake at the next task, well after its start timeout.
    let pool = hostile_builder()
        .workers(1)
        .max_tasks_per_worker(1)
        .worker_start_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for i in 0..3 {
        assert_eq!(ok_value(&pool.submit(&Mode::Ok(i)).unwrap().wait()), i);
        std::thread::sleep(Duration::from_millis(600));
    }
    let stats = pool.process_stats().unwrap();
    assert_eq!(
        (stats.failed_starts, stats.crashed, stats.recycled),
        (0, 0, 3),
        "{stats:?}"
    );
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn workers_load_the_precompiled_module_unless_told_to_compile() {
    let _serial = serial();
    let pool = spin_pool(1);
    let start = pool.process_stats().unwrap().last_start.unwrap();
    assert!(start.precompiled && start.fallback.is_none(), "{start:?}");
    let cold = Pool::builder(spin_task())
        .workers(1)
        .isolation(Isolation::Process)
        .precompiled_module(false)
        .build()
        .unwrap();
    let start = cold.process_stats().unwrap().last_start.unwrap();
    assert!(!start.precompiled, "{start:?}");
    assert_eq!(
        cold.submit(&Spin { id: 3, rounds: 10 })
            .unwrap()
            .wait()
            .unwrap()
            .checksum,
        expected_checksum(3, 10)
    );
    // The explicit program option works the same as discovery.
    let explicit = Pool::builder(spin_task())
        .workers(1)
        .isolation(Isolation::Process)
        .worker_program(env!("CARGO_BIN_EXE_sandpool"))
        .build()
        .unwrap();
    assert_eq!(
        explicit
            .submit(&Spin { id: 4, rounds: 10 })
            .unwrap()
            .wait()
            .unwrap()
            .id,
        4
    );
    drop((pool, cold, explicit));
    assert_no_workers_remain();
}

#[test]
fn each_fault_fails_only_its_own_task_with_the_same_error_as_in_process() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(2)
        .limits(common::fault_limits())
        .build()
        .unwrap();
    let (inputs, kinds) = common::fault_cases();
    let results: Vec<_> = pool.map(&inputs).collect();
    common::assert_faults_contained(&results, &kinds);
    let err = pool
        .submit(&Mode::Panic("the sky fell".into()))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Panic { message, .. } if message.contains("the sky fell")),
        "{err}"
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
        "per-task limits cross too: {err}"
    );
    assert_eq!(
        pool.process_stats().unwrap().crashed,
        0,
        "guest faults never cost a worker"
    );
}

#[test]
fn guest_output_travels_back_captured_and_bounded() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(1)
        .limits(Limits::default().max_log(1000))
        .build()
        .unwrap();
    let out = pool.submit(&Mode::Print(100_000)).unwrap().wait_output();
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(out.logs.stdout.bytes.len(), 1000);
    assert_eq!(out.logs.stderr.bytes.len(), 1000);
    assert_eq!(out.logs.stdout.dropped, 100_000 - 1000);
    assert!(out.logs.stdout.bytes.starts_with(b"xxxx"));
    assert!(out.logs.elapsed > Duration::ZERO);
    let quiet = pool.submit(&Mode::Ok(3)).unwrap().wait_output();
    assert!(
        quiet.logs.stdout.bytes.is_empty(),
        "no output leaks from the previous task"
    );
}

#[test]
fn shutdown_cancels_queued_work_and_dropping_the_pool_reaps_its_workers() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(2)
        .limits(Limits::default().timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
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
    assert_eq!(
        pool.submit(&Mode::Ok(1)).unwrap_err().kind(),
        ErrorKind::ShutDown
    );
    assert_no_workers_remain();

    let pool = hostile_builder().workers(2).build().unwrap();
    assert_eq!(pool.process_stats().unwrap().worker_pids.len(), 2);
    let handle = pool.submit(&Mode::Ok(5)).unwrap();
    drop(pool);
    assert_eq!(
        ok_value(&handle.wait()),
        5,
        "work submitted before the drop completes"
    );
    assert_no_workers_remain();
}

#[test]
fn a_worker_that_answers_with_a_bad_frame_fails_only_that_task_and_is_replaced() {
    let _serial = serial();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A valid `Ready` handshake (bincode: variant 0, pid 5, precompiled, no fallback, 0 s load),
    // then (once the request is surely in flight) one bad answer to it.
    let ready = r"printf '\006\000\000\000\000\005\001\000\000\000'";
    let answers = [
        (
            "garbage",
            r"printf '\003\000\000\000\377\377\377'",
            "sent a bad frame",
        ),
        (
            "oversized",
            r"printf '\377\377\377\177'",
            "sent a bad frame",
        ),
        // `Done` for request 7 (an empty `Ok` and empty logs) when request 0 was sent.
        (
            "wrong-id",
            r"printf '\012\000\000\000\000\007\000\000\000\000\000\000\000\000'",
            "answered request 7 instead of 0",
        ),
        (
            "truncated",
            r"printf '\050\000\000\000\000\007'; exit 4",
            "exited with status 4",
        ),
    ];
    for (name, answer, expect) in answers {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\n{ready}\nsleep 0.5\n{answer}\nexec sleep 30\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pool = Pool::builder(spin_task())
            .workers(1)
            .isolation(Isolation::Process)
            .worker_program(&path)
            .build()
            .unwrap_or_else(|e| panic!("{name}: the handshake is valid: {e}"));
        let started = Instant::now();
        for round in 0..2 {
            let err = pool
                .submit(&Spin { id: 1, rounds: 1 })
                .unwrap()
                .wait()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{name}: {err}");
            assert!(
                err.to_string().contains(expect),
                "{name} round {round}: {err}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            started.elapsed()
        );
        let stats = pool.process_stats().unwrap();
        assert_eq!(
            (stats.crashed, stats.started),
            (2, 2),
            "{name}: each bad answer cost one worker: {stats:?}"
        );
        pool.shutdown(true, false);
    }
}

#[test]
fn a_worker_program_that_is_not_a_sandpool_worker_is_an_error_not_a_hang() {
    let _serial = serial();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let scripts = [
        (
            "garbage",
            "printf '\\377\\377\\377\\377'; exec sleep 30",
            "not a sandpool worker",
        ),
        (
            "junk-frame",
            "printf '\\004\\000\\000\\000junk'; exec sleep 30",
            "not a compatible sandpool worker",
        ),
        (
            "quitter",
            "exit 7",
            "exited with status 7 before it was ready",
        ),
    ];
    for (name, body, expect) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let started = Instant::now();
        let err = Pool::builder(spin_task())
            .workers(1)
            .isolation(Isolation::Process)
            .worker_program(&path)
            .max_failed_starts(2)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Pool, "{name}: {err}");
        assert!(err.to_string().contains(expect), "{name}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            started.elapsed()
        );
    }
    let err = Pool::builder(spin_task())
        .isolation(Isolation::Process)
        .worker_program("/no/such/program")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_no_workers_remain();
}

#[test]
fn repeated_random_worker_kills_lose_only_the_tasks_in_flight() {
    let _serial = serial();
    let inputs = random_spins(10_000, 7);
    let pool = spin_pool(2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (pool, stop) = (pool.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut kills = 0u64;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && kills < 8 {
                std::thread::sleep(Duration::from_millis(20));
                n += 1;
                let pids = pool.process_stats().unwrap().worker_pids;
                if let Some(&pid) = pids.get((n % 2) as usize) {
                    // SAFETY: sending a signal to our own child process.
                    if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                        kills += 1;
                    }
                }
            }
            kills
        })
    };
    let results: Vec<_> = pool.map(&inputs).collect();
    stop.store(true, std::sync::atomic::Ordering::Release);
    let kills = killer.join().expect("killer thread");
    eprintln!("{kills} workers killed");
    assert!(kills >= 2, "the killer struck repeatedly ({kills} kills)");
    let mut crashed = 0;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(out) => assert_eq!(
                (out.id, out.checksum),
                (i as u64, expected_checksum(i as u64, inputs[i].rounds)),
                "a surviving task's result is its own"
            ),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WorkerCrashed, "input {i}: {e}");
                assert_eq!(e.task().map(|t| t.index), Some(i as u64));
                crashed += 1;
            }
        }
    }
    // A kill loses at most the one task its worker had in flight (none if it was idle).
    assert!(crashed <= kills, "{crashed} tasks lost to {kills} kills");
    assert_eq!(results.len(), 10_000);
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

/// Runs a warm-up map so the pool knows what a task costs and hands later
/// maps over in batches of several tasks.
fn warm_up(pool: &Pool<Mode, serde_bytes::ByteBuf>) {
    for (i, result) in pool.map((0..300).map(Mode::Ok)).enumerate() {
        assert_eq!(ok_value(&result), i as u64);
    }
}

#[test]
fn a_batched_process_map_keeps_input_order_and_identity_with_per_task_errors() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(1)
        .limits(common::fault_limits())
        .build()
        .unwrap();
    warm_up(&pool);
    let before = pool.process_stats().unwrap();
    // Faults scattered through 2,000 cheap tasks, so most frames carry a
    // fault between well-behaved tasks.
    let inputs: Vec<Mode> = (0..2000u64)
        .map(|i| match i % 50 {
            7 => Mode::Trap,
            23 => Mode::Fail(format!("bad input {i}")),
            41 => Mode::Panic(format!("boom {i}")),
            _ => Mode::Ok(i),
        })
        .collect();
    let results: Vec<_> = pool.map(&inputs).collect();
    assert_eq!(results.len(), inputs.len());
    for (i, result) in results.iter().enumerate() {
        let expected = match i % 50 {
            7 => Some(ErrorKind::Trap),
            23 => Some(ErrorKind::Guest),
            41 => Some(ErrorKind::Panic),
            _ => None,
        };
        match expected {
            None => assert_eq!(ok_value(result), i as u64),
            Some(kind) => {
                let err = result.as_ref().expect_err("the fault fails");
                assert_eq!(err.kind(), kind, "input {i}: {err}");
                assert_eq!(err.task().map(|t| t.index), Some(i as u64), "{err}");
                if kind != ErrorKind::Trap {
                    assert!(err.to_string().contains(&format!(" {i}")), "{err}");
                }
            }
        }
    }
    let after = pool.process_stats().unwrap();
    let frames = after.requests - before.requests;
    let sent = after.tasks_sent - before.tasks_sent;
    assert_eq!(sent, inputs.len() as u64, "each task sent once: {after:?}");
    assert!(
        frames * 2 <= sent,
        "the map sent several tasks per frame: {frames} frames for {sent} tasks"
    );
    assert_eq!(after.crashed, 0, "{after:?}");
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn a_worker_aborting_in_the_middle_of_a_batch_fails_only_the_task_it_was_running() {
    let _serial = serial();
    let pool = hostile_builder()
        .workers(1)
        .worker_env("SANDPOOL_WORKER_FAULT", format!("abort:{MARKER}"))
        .build()
        .unwrap();
    warm_up(&pool);
    let before = pool.process_stats().unwrap();
    // Twenty victims, each crashing its worker wherever it falls in its frame.
    let victim = |i: usize| i % 100 == 37;
    let inputs: Vec<Mode> = (0..2000)
        .map(|i| {
            if victim(i) {
                Mode::Print(100)
            } else {
                Mode::Ok(i as u64)
            }
        })
        .collect();
    let results: Vec<_> = pool.map(&inputs).collect();
    assert_eq!(results.len(), inputs.len());
    for (i, result) in results.iter().enumerate() {
        if victim(i) {
            let err = result.as_ref().expect_err("the aborting task fails");
            assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
            assert_eq!(err.task().map(|t| t.index), Some(i as u64), "{err}");
            assert!(err.to_string().contains("signal 6 (SIGABRT"), "{err}");
        } else {
            assert_eq!(ok_value(result), i as u64, "input {i}");
        }
    }
    let after = pool.process_stats().unwrap();
    assert_eq!(after.crashed - before.crashed, 20, "{after:?}");
    let sent = after.tasks_sent - before.tasks_sent;
    assert!(
        sent > inputs.len() as u64,
        "tasks a crashed worker had not started were sent again: {sent} sent for {} inputs",
        inputs.len()
    );
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn a_worker_sigkilled_in_the_middle_of_a_batch_fails_only_its_running_task_and_names_it() {
    let _serial = serial();
    const VICTIM: usize = 400;
    let pool = hostile_builder()
        .workers(1)
        .limits(Limits::default().timeout(Duration::from_secs(30)))
        .build()
        .unwrap();
    warm_up(&pool);
    let inputs: Vec<Mode> = (0..800)
        .map(|i| {
            if i == VICTIM {
                Mode::Loop
            } else {
                Mode::Ok(i as u64)
            }
        })
        .collect();
    let mut results = Vec::with_capacity(inputs.len());
    let mut killed = None;
    for (i, result) in pool.map(&inputs).enumerate() {
        results.push(result);
        if i == VICTIM - 1 {
            // The one worker is now on the victim, which never ends.
            std::thread::sleep(Duration::from_millis(200));
            let pids = pool.process_stats().unwrap().worker_pids;
            assert_eq!(pids.len(), 1, "{pids:?}");
            // SAFETY: sending a signal to our own child process.
            assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);
            killed = Some(pids[0]);
        }
    }
    let killed = killed.expect("the map got to the victim");
    assert_eq!(results.len(), inputs.len());
    for (i, result) in results.iter().enumerate() {
        if i == VICTIM {
            let err = result.as_ref().expect_err("the running task fails");
            assert_eq!(err.kind(), ErrorKind::WorkerCrashed, "{err}");
            assert_eq!(err.task().map(|t| t.index), Some(VICTIM as u64));
            let message = err.to_string();
            assert!(
                message.contains("SIGKILL") && message.contains(&killed.to_string()),
                "{message}"
            );
        } else {
            assert_eq!(ok_value(result), i as u64, "input {i}");
        }
    }
    let stats = pool.process_stats().unwrap();
    assert_eq!(stats.crashed, 1, "{stats:?}");
    assert!(!stats.worker_pids.contains(&killed));
    pool.shutdown(true, false);
    assert_no_workers_remain();
}

#[test]
fn tasks_of_a_queued_batch_cancelled_before_a_worker_takes_it_are_never_sent() {
    let _serial = serial();
    let pool = hostile_builder().workers(1).build().unwrap();
    warm_up(&pool);
    // Keep the one worker busy while a map queues its batches behind it.
    let busy = pool
        .submit_with(
            &Mode::Loop,
            Limits::default().timeout(Duration::from_millis(500)),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let before = pool.process_stats().unwrap();
    let map = pool.map((0..200).map(Mode::Ok));
    drop(map); // cancels every task that has not started
    assert_eq!(busy.wait().unwrap_err().kind(), ErrorKind::Timeout);
    // The worker has taken the cancelled batches by the time the next task runs.
    let results: Vec<_> = pool.map([Mode::Ok(7)]).collect();
    assert_eq!(ok_value(&results[0]), 7);
    let after = pool.process_stats().unwrap();
    assert_eq!(
        after.tasks_sent - before.tasks_sent,
        1,
        "only the task after the cancelled map reached a worker: {after:?}"
    );
    pool.shutdown(true, false);
    assert_no_workers_remain();
}
