//! Guest ABI v1 implemented in C (guest/c/echo_c.c, clang-19, no Rust SDK)
//! passes the same host checks as the Rust guests.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use sandpool::{ErrorKind, Pool, Task};

fn c_pool<In: serde::Serialize, Out: serde::de::DeserializeOwned + Send + 'static>() -> Pool<In, Out>
{
    let task: Task<In, Out> =
        Task::from_file(common::c_guest("echo_c")).expect("the C guest loads");
    Pool::builder(task).workers(2).build().expect("pool starts")
}

#[test]
fn the_c_guest_echoes_values_in_input_order() {
    let pool = c_pool::<(u64, String), (u64, String)>();
    let inputs: Vec<(u64, String)> = (0..2000).map(|i| (i, format!("item {i}"))).collect();
    let outputs: Vec<(u64, String)> = pool.map(&inputs).map(|r| r.unwrap()).collect();
    assert_eq!(outputs, inputs);
}

#[test]
fn the_c_guest_sees_fresh_state_on_every_task() {
    // echo_c reports a guest error if its global call counter is not 1.
    let pool = c_pool::<u64, u64>();
    for r in pool.map(0..300u64) {
        r.expect("no state leaked");
    }
}

#[test]
fn a_trap_in_the_c_guest_fails_only_that_task() {
    // `()` encodes to zero bytes, on which echo_c traps.
    let values = c_pool::<Option<u8>, Option<u8>>();
    let ok = values.submit(&Some(1)).unwrap();
    let unit = c_pool::<(), ()>();
    let err = unit.submit(&()).unwrap().wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert_eq!(ok.wait().unwrap(), Some(1));
}
