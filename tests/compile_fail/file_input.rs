//! An open file is not a task input: the handle means nothing inside the
//! sandbox. Send the file's bytes (e.g. `sandpool::FileInput`) instead.
use sandpool::{Pool, Task};

fn main() -> Result<(), sandpool::Error> {
    let task: Task<std::fs::File, u64> = Task::from_file("line_count.wasm")?;
    let pool = Pool::builder(task).build()?;
    let file = std::fs::File::open("input.txt").expect("input.txt exists");
    pool.submit(&file)?.wait()?;
    Ok(())
}
