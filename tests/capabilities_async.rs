//! Async capability handlers (`PoolBuilder::capability_async`): futures on
//! the shared runtime answer guest calls like sync handlers, with the same
//! errors; the task's deadline or abort cancels (drops) the future; the
//! same at both isolation levels.
//!
//! The guest: `guest/examples/caller.rs`.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

#[path = "common/caller.rs"]
mod caller;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_bytes::ByteBuf;

use sandpool::{Error, ErrorKind, Isolation, Limits, Pool, PoolBuilder};

use caller::{Answer, LEVELS, Plan, caller};

/// Generous: only a bound for a wait that should end at once.
const PATIENCE: Duration = Duration::from_secs(60);

/// Sends on `tx` when dropped: tells the test a future was cancelled.
struct DropSignal(Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// What the async handlers report to the test.
struct Probes {
    /// Echo calls that reached the handler.
    calls: Arc<AtomicU64>,
    /// One message each time the blocking future starts.
    started: Receiver<()>,
    /// One message each time the blocking future is dropped.
    dropped: Receiver<()>,
}

/// A builder for the caller guest granting its three capabilities, each an async handler.
fn granted_async(isolation: Isolation) -> (PoolBuilder<Plan, Answer>, Probes) {
    let calls = Arc::new(AtomicU64::new(0));
    let (started_tx, started) = crossbeam_channel::unbounded();
    let (dropped_tx, dropped) = crossbeam_channel::unbounded();
    let counter = Arc::clone(&calls);
    let builder = Pool::builder(caller())
        .workers(2)
        .isolation(isolation)
        .capability_async("test.echo", move |bytes: ByteBuf| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                Ok::<_, String>(bytes)
            }
        })
        .capability_async("test.block", move |(): ()| {
            let started = started_tx.clone();
            let signal = DropSignal(dropped_tx.clone());
            async move {
                let _signal = signal;
                let _ = started.send(());
                std::future::pending::<()>().await;
                Ok::<ByteBuf, String>(ByteBuf::new())
            }
        })
        .capability_async("test.fail", |how: String| async move {
            tokio::task::yield_now().await;
            match how.as_str() {
                "panic" => panic!("the handler blew up"),
                other => Err::<ByteBuf, String>(format!("refused: {other}")),
            }
        });
    let probes = Probes {
        calls,
        started,
        dropped,
    };
    (builder, probes)
}

/// The same guest with the same failing handler, sync.
fn granted_sync(isolation: Isolation) -> PoolBuilder<Plan, Answer> {
    Pool::builder(caller())
        .workers(1)
        .isolation(isolation)
        .capability("test.echo", |bytes: ByteBuf| Ok::<_, String>(bytes))
        .capability("test.block", |(): ()| Ok::<ByteBuf, String>(ByteBuf::new()))
        .capability("test.fail", |how: String| match how.as_str() {
            "panic" => panic!("the handler blew up"),
            other => Err::<ByteBuf, String>(format!("refused: {other}")),
        })
}

/// The task error of `plan`, checked to be a capability error naming `name`.
fn capability_error(pool: &Pool<Plan, Answer>, plan: Plan, name: &str) -> Error {
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
    err
}

#[test]
fn values_round_trip_through_an_async_capability_at_both_levels() {
    for level in LEVELS {
        let (builder, probes) = granted_async(level);
        let pool = builder.build().unwrap();
        let inputs: Vec<Plan> = (0..40u8)
            .map(|i| Plan::Echo(ByteBuf::from(vec![i; i as usize * 11])))
            .collect();
        for (i, result) in pool.map(&inputs).enumerate() {
            assert_eq!(
                result.unwrap(),
                Answer::Bytes(ByteBuf::from(vec![i as u8; i * 11])),
                "{level:?}"
            );
        }
        let plan = Plan::Repeat {
            times: 300,
            bytes: ByteBuf::from(b"ping".to_vec()),
        };
        assert_eq!(
            pool.submit(&plan).unwrap().wait().unwrap(),
            Answer::Count(300)
        );
        assert_eq!(probes.calls.load(Ordering::SeqCst), 340, "{level:?}");
    }
}

#[test]
fn an_async_handler_error_or_panic_fails_its_task_with_the_same_error_as_a_sync_handler() {
    for level in LEVELS {
        let (builder, _probes) = granted_async(level);
        let pool = builder.build().unwrap();
        let sync_pool = granted_sync(level).build().unwrap();
        for how in ["no such row", "panic"] {
            let err = capability_error(&pool, Plan::Fail(how.into()), "test.fail");
            let sync = capability_error(&sync_pool, Plan::Fail(how.into()), "test.fail");
            assert_eq!(err.kind(), ErrorKind::Capability);
            assert_eq!(err.to_string(), sync.to_string(), "{level:?}");
        }
        let err = capability_error(&pool, Plan::Fail("panic".into()), "test.fail");
        assert!(
            err.to_string().contains("panicked: the handler blew up"),
            "{err}"
        );
        // The runtime and the handlers stay usable.
        let after = pool.submit(&Plan::Echo(ByteBuf::from(vec![9]))).unwrap();
        assert_eq!(after.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![9])));
    }
}

#[test]
fn malformed_bytes_to_an_async_handler_fail_the_task_before_the_handler_runs() {
    for level in LEVELS {
        let (builder, probes) = granted_async(level);
        let pool = builder.build().unwrap();
        let plan = Plan::Raw {
            name: "test.echo".into(),
            bytes: ByteBuf::from(vec![250]),
        };
        let err = capability_error(&pool, plan, "test.echo");
        assert!(
            err.to_string().contains("cannot decode the request"),
            "{err}"
        );
        assert!(err.to_string().contains("input #0"), "{err}");
        assert_eq!(probes.calls.load(Ordering::SeqCst), 0, "{level:?}");
    }
}

#[test]
fn the_deadline_fails_a_task_waiting_on_an_async_handler_and_cancels_its_future() {
    for level in LEVELS {
        let (builder, probes) = granted_async(level);
        let pool = builder
            .limits(Limits::default().timeout(Duration::from_millis(300)))
            .build()
            .unwrap();
        let err = capability_error(&pool, Plan::Block, "test.block");
        assert!(err.to_string().contains("deadline"), "{err}");
        assert!(err.to_string().contains("cancelled"), "{err}");
        probes.started.recv_timeout(PATIENCE).unwrap();
        probes
            .dropped
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("{level:?}: the future was not dropped: {e}"));
        // Other tasks go on calling the same handlers.
        let after = pool.submit(&Plan::Echo(ByteBuf::from(vec![4]))).unwrap();
        assert_eq!(after.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![4])));
    }
}

#[test]
fn aborting_a_task_waiting_on_an_async_handler_cancels_its_future() {
    for level in LEVELS {
        let (builder, probes) = granted_async(level);
        let pool = builder
            .limits(Limits::default().no_timeout())
            .build()
            .unwrap();
        let blocked = pool.submit(&Plan::Block).unwrap();
        // The future has started: the task waits in the call.
        probes.started.recv_timeout(PATIENCE).unwrap();
        assert!(blocked.abort(), "{level:?}");
        let err = blocked.wait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Aborted, "{level:?}: {err}");
        probes
            .dropped
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("{level:?}: the future was not dropped: {e}"));
        let after = pool.submit(&Plan::Echo(ByteBuf::from(vec![3]))).unwrap();
        assert_eq!(after.wait().unwrap(), Answer::Bytes(ByteBuf::from(vec![3])));
    }
}
