//! Where [`AsCompleted`](crate::AsCompleted) collects finished results: a
//! queue that wakes its consumer once per batch instead of once per result.
//!
//! Workers push each result as it finishes. A push wakes a waiting consumer
//! only when it ends a batch (one worker runs a batch in order, so the
//! batch's last task is the last to finish), or when the consumer has
//! already waited longer than a batch was expected to take (a slow task in
//! the middle of a batch must not hold back the results after it). The
//! consumer in turn waits no longer than that patience before it takes what
//! has arrived, so a result that finished before a slow one is never held
//! back for long either.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// A batching result queue between worker threads and one consumer.
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Since when the consumer has been waiting, and how long it is willing
    /// to wait for a batch to end; `None` while it is not waiting.
    waiting: Option<(Instant, Duration)>,
}

impl<T> Inbox<T> {
    pub(crate) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                waiting: None,
            }),
            ready: Condvar::new(),
        }
    }

    /// Adds a finished result. `ends_batch`: the last result of the batch
    /// it was handed over in (or one that was not part of a batch).
    pub(crate) fn push(&self, item: T, ends_batch: bool) {
        let mut state = lock(&self.state);
        state.queue.push_back(item);
        let wake = match state.waiting {
            None => false,
            Some((since, patience)) => ends_batch || since.elapsed() >= patience,
        };
        if wake {
            state.waiting = None;
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Moves every queued result into `into`. While none is queued it
    /// waits: until a batch ends, or a result arrives after `patience`, or
    /// `patience` passes with results queued, or `deadline` (`None`: no
    /// deadline) passes. Returns `false` only when the deadline passed with
    /// nothing queued.
    pub(crate) fn take_all(
        &self,
        into: &mut VecDeque<T>,
        patience: Duration,
        deadline: Option<Instant>,
    ) -> bool {
        let mut state = lock(&self.state);
        let started = Instant::now();
        let patient_until = started.checked_add(patience);
        while state.queue.is_empty() {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                state.waiting = None;
                return false;
            }
            // Until the patience runs out, wake up at its end to take what
            // arrived without waking us; after it, every arrival wakes us.
            let mut until = deadline;
            if let Some(p) = patient_until
                && now < p
            {
                until = Some(until.map_or(p, |d| d.min(p)));
            }
            state.waiting = Some((started, patience));
            state = match until {
                None => self
                    .ready
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    self.ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        state.waiting = None;
        into.extend(state.queue.drain(..));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_batch_end_wakes_the_consumer_with_the_whole_batch() {
        let inbox = Arc::new(Inbox::new());
        let producer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                for i in 0..5 {
                    inbox.push(i, i == 4);
                }
            })
        };
        let mut got = VecDeque::new();
        // Patience far longer than the batch: only the batch's end wakes it.
        assert!(inbox.take_all(&mut got, Duration::from_secs(30), None));
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_result_before_a_slow_task_is_taken_after_the_patience() {
        let inbox = Arc::new(Inbox::new());
        let producer = {
            let inbox = Arc::clone(&inbox);
            // The batch's first result; its end never comes.
            std::thread::spawn(move || inbox.push(7, false))
        };
        let mut got = VecDeque::new();
        let t0 = Instant::now();
        assert!(inbox.take_all(&mut got, Duration::from_millis(30), None));
        producer.join().unwrap();
        assert_eq!(got, [7]);
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn queued_results_are_taken_without_waiting() {
        let inbox = Inbox::new();
        inbox.push(1, false);
        inbox.push(2, false);
        let mut got = VecDeque::new();
        let t0 = Instant::now();
        assert!(inbox.take_all(&mut got, Duration::from_secs(30), None));
        assert_eq!(got, [1, 2]);
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_result_after_the_patience_wakes_the_consumer_at_once() {
        let inbox = Arc::new(Inbox::new());
        let producer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                inbox.push(1, false);
            })
        };
        let mut got = VecDeque::new();
        assert!(inbox.take_all(&mut got, Duration::from_millis(5), None));
        producer.join().unwrap();
        assert_eq!(got, [1]);
    }

    #[test]
    fn the_deadline_ends_an_empty_wait() {
        let inbox: Inbox<u8> = Inbox::new();
        let mut got = VecDeque::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!inbox.take_all(&mut got, Duration::from_secs(1), Some(deadline)));
        assert!(got.is_empty());
    }
}
