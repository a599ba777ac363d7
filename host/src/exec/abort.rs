//! Aborting a running in-process wasm task: the worker thread names the job
//! it runs, and the task's store checks that job's abort flag at every few
//! epoch ticks, counting the same ticks toward the task's own deadline.

use std::cell::RefCell;
use std::sync::Arc;

use wasmtime::{Store, Trap, UpdateDeadline};

use crate::exec::dispatch::JobState;
use crate::limits::Limits;
use crate::runtime::engine::ticks_for;

/// Epoch ticks between two looks at the abort flag (a tick is 1 ms): the
/// most an abort waits before the guest stops.
const CHECK_EVERY: u64 = 5;

thread_local! {
    static CURRENT: RefCell<Option<Arc<JobState>>> = const { RefCell::new(None) };
}

/// Runs `f` (one task on this thread) with `state` as the job an abort looks at.
pub(crate) fn with_job<R>(state: &Arc<JobState>, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(state)));
    let _reset = Reset;
    f()
}

/// The error a store returns when its task is aborted (reported as
/// [`Error::Aborted`](crate::Error::Aborted) by the dispatcher).
#[derive(Debug)]
struct AbortedByCaller;

impl std::fmt::Display for AbortedByCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted by the caller")
    }
}

impl std::error::Error for AbortedByCaller {}

/// Makes the task about to run in `store` abortable, if this thread runs a
/// job ([`with_job`]); otherwise (e.g. in a worker subprocess) does nothing.
/// The deadline `limits.timeout` still fires as a plain epoch interrupt.
pub(crate) fn arm<T: 'static>(store: &mut Store<T>, limits: &Limits) {
    let Some(job) = CURRENT.with(|c| c.borrow().clone()) else {
        return;
    };
    let mut remaining = limits.timeout.map_or(u64::MAX / 2, ticks_for);
    let step = remaining.min(CHECK_EVERY);
    remaining -= step;
    store.set_epoch_deadline(step);
    store.epoch_deadline_callback(move |_| {
        if job.abort_requested() {
            return Err(wasmtime::Error::new(AbortedByCaller));
        }
        if remaining == 0 {
            return Err(Trap::Interrupt.into());
        }
        let step = remaining.min(CHECK_EVERY);
        remaining -= step;
        Ok(UpdateDeadline::Continue(step))
    });
}

/// The abort flag of the job this thread runs, if any, for host code that
/// waits inside a task (a threaded capability call polls it).
pub(crate) fn current_abort_flag() -> Option<Box<dyn Fn() -> bool + Send>> {
    let job = CURRENT.with(|c| c.borrow().clone())?;
    Some(Box::new(move || job.abort_requested()))
}
