//! A plain struct of owned data deriving `Serialize` is a task input, and
//! one deriving `Deserialize` is a task output.
use sandpool::{ErrorKind, Pool, Task};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Job {
    id: u64,
    text: String,
    weights: Vec<f32>,
}

#[derive(Deserialize, Debug)]
struct Summary {
    id: u64,
    words: u32,
}

fn main() {
    // The module does not exist: this case only has to type-check (and run).
    match Task::<Job, Summary>::from_file("no/such/summarize.wasm") {
        Ok(task) => {
            let pool = Pool::builder(task).build().expect("pool starts");
            let job = Job {
                id: 1,
                text: "a b c".into(),
                weights: vec![0.5],
            };
            let summary = pool.submit(&job).expect("submitted").wait().expect("ran");
            println!("{} has {} words", summary.id, summary.words);
        }
        Err(err) => assert_eq!(err.kind(), ErrorKind::Io),
    }
}
