//! Process executor benchmark (work in progress).
fn main() {}
