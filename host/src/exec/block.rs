//! Blocking on a future from plain threads: a minimal thread-parking
//! executor for the blocking forms of the API (`wait`, `submit`, iterators).
//!
//! Unlike `futures::executor::block_on` it has no "already inside an
//! executor" check, so a blocking sandpool call made from a callback that
//! another blocking sandpool call is driving does not panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match block_on_until(future.as_mut(), None) {
        Some(out) => out,
        None => unreachable!("without a deadline block_on_until only returns a value"),
    }
}

/// Polls `future` on this thread until it is ready or `deadline` passes
/// (`None`: no deadline). The future stays with the caller, so what it
/// holds can be taken back after a deadline.
pub(crate) fn block_on_until<F: Future + ?Sized>(
    mut future: Pin<&mut F>,
    deadline: Option<Instant>,
) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                std::thread::park_timeout(deadline - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nested_blocking_does_not_panic() {
        let inner = block_on(async { block_on(async { 7 }) });
        assert_eq!(inner, 7);
    }

    #[test]
    fn a_deadline_returns_the_future_unfinished() {
        let mut never = std::pin::pin!(futures::future::pending::<()>());
        let start = Instant::now();
        let got = block_on_until(never.as_mut(), Some(start + Duration::from_millis(20)));
        assert!(got.is_none());
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
