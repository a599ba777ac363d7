//! Only serializable values cross the boundary, and the compiler says so:
//! a closure, an open file or an `Rc` as task input does not compile (the
//! Rust version of Python's "Can't pickle local object"), while a plain
//! struct does. Cases in `tests/compile_fail/` with the expected compiler
//! output beside each; regenerate those with `TRYBUILD=overwrite`.

#[test]
fn only_serializable_values_are_accepted_as_task_input() {
    let cases = trybuild::TestCases::new();
    // Only `compile_fail` cases: trybuild then runs `cargo check`, not a full
    // build of the dependencies, which keeps the suite fast.
    cases.compile_fail("../tests/compile_fail/*.rs");
}

/// The counterpart: a plain struct of owned data deriving `Serialize` is a
/// task input and one deriving `Deserialize` an output. This compiles as
/// part of this test file; at run time the module is missing, which is an
/// I/O error naming it rather than a type error.
#[test]
fn a_plain_struct_is_accepted_as_task_input() {
    use sandpool::{ErrorKind, Task};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize)]
    struct Job {
        id: u64,
        text: String,
        weights: Vec<f32>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Summary {
        id: u64,
        words: u32,
    }

    let err = Task::<Job, Summary>::from_file("no/such/summarize.wasm").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("summarize.wasm"));
}
