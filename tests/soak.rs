//! The short form of the soak benchmark (`benches/soak.rs`, 1,000,000
//! tasks): 50,000 tiny tasks through the instance executor, and the
//! resident memory at the end within 10% of the memory after the first
//! 10,000. The full run is `cargo bench -p sandpool --bench soak`.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

#[path = "common/soak.rs"]
mod soak_run;

#[test]
fn memory_stays_flat_over_50000_fresh_instance_tasks() {
    let soak = soak_run::run(50_000, 10);
    eprint!("{}", soak.report());
    assert!(soak.baseline > 0);
    assert!(
        soak.passes(),
        "RSS grew {:.1}% after warm-up:\n{}",
        soak.growth_percent(),
        soak.report()
    );
}
