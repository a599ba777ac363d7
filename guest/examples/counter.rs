//! Increments a global counter and returns it: 1 on every task if no state leaks.
use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static mut PLAIN_GLOBAL: u64 = 0;

fn count(_: ()) -> Result<(u64, u64), std::convert::Infallible> {
    let atomic = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    // SAFETY: a wasm instance runs one task on one thread.
    let plain = unsafe {
        PLAIN_GLOBAL += 1;
        PLAIN_GLOBAL
    };
    Ok((atomic, plain))
}
sandpool_guest::export_task!(count);
