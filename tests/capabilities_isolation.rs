//! Process isolation around a capability's session: a worker killed while
//! the host runs its call loses only its task; the session in the pool's
//! process finishes the call, stays consistent (no poisoned lock) and
//! answers the replacement worker.
//!
//! The guest: `guest/examples/caller.rs`.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

#[path = "common/caller.rs"]
mod caller;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_bytes::ByteBuf;

use sandpool::{ErrorKind, Isolation, Limits, Pool};

use caller::{Answer, Plan, caller};

/// Generous: only a bound for a wait that should end at once.
const PATIENCE: Duration = Duration::from_secs(60);

/// The shared session: what the handlers have done.
#[derive(Default, Debug)]
struct Session {
    lookups: u64,
    slow_calls_finished: u64,
}

#[test]
fn a_worker_killed_while_its_call_runs_in_the_host_leaves_the_session_consistent() {
    let session = Arc::new(Mutex::new(Session::default()));
    let (started_tx, started) = crossbeam_channel::unbounded::<()>();
    let (release, release_rx) = crossbeam_channel::unbounded::<()>();
    let echo_session = Arc::clone(&session);
    let slow_session = Arc::clone(&session);
    let pool = Pool::builder(caller())
        .workers(1)
        .isolation(Isolation::Process)
        .limits(Limits::default().no_timeout())
        .capability("test.echo", move |bytes: ByteBuf| {
            echo_session.lock().unwrap().lookups += 1;
            Ok::<_, String>(bytes)
        })
        .capability("test.block", move |(): ()| {
            // Holds the session's lock across the whole call, as a
            // connection in use would be.
            let mut s = slow_session.lock().unwrap();
            let _ = started_tx.send(());
            release_rx
                .recv_timeout(PATIENCE)
                .map_err(|e| e.to_string())?;
            s.slow_calls_finished += 1;
            Ok::<ByteBuf, String>(ByteBuf::new())
        })
        .capability("test.fail", |_: String| {
            Ok::<ByteBuf, String>(ByteBuf::new())
        })
        .build()
        .unwrap();
    let blocked = pool.submit(&Plan::Block).unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    // At the process level an abort kills the worker, here mid-call.
    assert!(blocked.abort());
    let err = blocked.wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Aborted, "{err}");
    // The call was abandoned, not torn: the handler runs to its end.
    release.send(()).unwrap();
    let answer = pool
        .submit(&Plan::Repeat {
            times: 10,
            bytes: ByteBuf::from(b"after".to_vec()),
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        answer,
        Answer::Count(10),
        "the replacement worker calls the same session"
    );
    let s = session.lock().expect("the session's lock is not poisoned");
    assert_eq!(s.slow_calls_finished, 1, "{s:?}");
    assert_eq!(s.lookups, 10, "{s:?}");
}
