//! Only serializable values cross the boundary, and the compiler says so:
//! a closure, an open file or an `Rc` as task input does not compile (the
//! Rust version of Python's "Can't pickle local object"), while a plain
//! struct does. Cases in `tests/compile_fail/` with the expected compiler
//! output beside each; regenerate those with `TRYBUILD=overwrite`.

#[test]
fn only_serializable_values_are_accepted_as_task_input() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("../tests/compile_fail/*.rs");
    cases.pass("../tests/compile_pass/*.rs");
}
