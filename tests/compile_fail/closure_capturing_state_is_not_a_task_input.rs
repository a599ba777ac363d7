//! A closure is not a task input: it is code plus captured state, not data.
use sandpool::{Pool, Task};

fn main() -> Result<(), sandpool::Error> {
    let task = Task::from_file("echo.wasm")?;
    let pool: Pool<_, u32> = Pool::builder(task).build()?;
    let offset = 1;
    let handle = pool.submit(&move |x: u32| x + offset)?;
    handle.wait()?;
    Ok(())
}
