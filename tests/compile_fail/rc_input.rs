//! An `Rc` is not a task input: shared ownership cannot cross into a
//! separate memory. (This holds while serde's `rc` feature is off in the
//! workspace; with it, `Rc<T>` would serialize as a copy of `T`.)
use std::rc::Rc;

use sandpool::{Pool, Task};

fn main() -> Result<(), sandpool::Error> {
    let task: Task<Rc<String>, u64> = Task::from_file("word_count.wasm")?;
    let pool = Pool::builder(task).build()?;
    let text = Rc::new(String::from("shared text"));
    pool.submit(&Rc::clone(&text))?.wait()?;
    Ok(())
}
