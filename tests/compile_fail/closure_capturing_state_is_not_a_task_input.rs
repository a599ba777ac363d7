//! A closure is not a task input: it is code plus captured state, not data.
//! (The long file name is deliberate: rustc lays out the error differently
//! when the closure's path is short, so a long one keeps the expected output
//! the same in every checkout.)
use sandpool::{Pool, Task};

fn main() -> Result<(), sandpool::Error> {
    let task = Task::from_file("echo.wasm")?;
    let pool: Pool<_, u32> = Pool::builder(task).build()?;
    let offset = 1;
    let handle = pool.submit(&move |x: u32| x + offset)?;
    handle.wait()?;
    Ok(())
}
