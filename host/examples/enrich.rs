//! Enriching records through host capabilities: a real SQLite database and
//! a shared "model session", each loaded once in the host, called by
//! sandboxed tasks that can reach nothing else.
//!
//! - `db.customer`: looks a customer up in a SQLite file opened once,
//!   read-only (`rusqlite`, bundled SQLite), behind a mutex: the session a
//!   Python process pool could not pickle.
//! - `model.classify`: a small keyword classifier loaded once and shared by
//!   every task through an `Arc` (the seed's GPU row, without a GPU).
//!
//! The task is `guest/examples/enrich.rs` (build it with
//! `scripts/build-guests.sh`). Run: `cargo run --release --example enrich`
//! (`-- process` for worker subprocesses). tests/capabilities.rs runs it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use sandpool::{Isolation, Pool, Task};

/// One raw record (the guest's input).
#[derive(Serialize, Debug, Clone)]
pub struct Record {
    /// The record's id.
    pub id: u64,
    /// The customer it is about (a row of `customers`, or none).
    pub customer_id: i64,
    /// Free text to classify.
    pub note: String,
}

/// A customer row (`db.customer`'s response).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Customer {
    /// The customer's name.
    pub name: String,
    /// Where the customer lives.
    pub city: String,
}

/// The model's answer (`model.classify`'s response).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Label {
    /// The winning label (`other` when no keyword matched).
    pub label: String,
    /// Its share of the matched weight, 0 to 1.
    pub score: f32,
}

/// An enriched record (the guest's output).
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Enriched {
    /// The record's id.
    pub id: u64,
    /// The customer row, if the id is in the database.
    pub customer: Option<Customer>,
    /// The model's label for the note.
    pub label: Label,
}

/// How many times a model session was loaded (the example loads one).
pub static MODEL_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The "model": keyword weights per label, loaded once.
pub struct Model {
    weights: HashMap<&'static str, (&'static str, f32)>,
}

impl Model {
    /// Loads the model (counted in [`MODEL_LOADS`]).
    pub fn load() -> Model {
        MODEL_LOADS.fetch_add(1, Ordering::SeqCst);
        let table = [
            ("refund", ("complaint", 2.0)),
            ("broken", ("complaint", 1.5)),
            ("late", ("complaint", 1.0)),
            ("thanks", ("praise", 1.5)),
            ("great", ("praise", 2.0)),
            ("love", ("praise", 2.0)),
            ("price", ("question", 1.0)),
            ("how", ("question", 1.5)),
            ("when", ("question", 1.5)),
        ];
        Model {
            weights: table.into_iter().collect(),
        }
    }

    /// The label with the most weight in `text`, and its share of the total.
    pub fn classify(&self, text: &str) -> Label {
        let mut scores: HashMap<&str, f32> = HashMap::new();
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .map(str::to_lowercase)
        {
            if let Some((label, w)) = self.weights.get(word.as_str()) {
                *scores.entry(label).or_default() += w;
            }
        }
        let total: f32 = scores.values().sum();
        let best = scores
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)));
        match best {
            Some((label, w)) => Label {
                label: label.to_string(),
                score: w / total,
            },
            None => Label {
                label: "other".into(),
                score: 0.0,
            },
        }
    }
}

/// Creates the example's customer database at `path`.
pub fn create_db(path: &Path) -> rusqlite::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
         INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'),
                                      (3, 'Linus', 'Helsinki'), (4, 'Barbara', 'Boston');",
    )
}

/// Enriches `records` with the task module at `wasm`, the database at `db`
/// and one model session, on a pool at `isolation`.
pub fn enrich(
    wasm: &Path,
    db: &Path,
    isolation: Isolation,
    records: &[Record],
) -> Result<Vec<sandpool::Result<Enriched>>, Box<dyn std::error::Error>> {
    // The sessions: opened and loaded once, here in the host.
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let conn = Mutex::new(conn);
    let model = Arc::new(Model::load());

    let task: Task<Record, Enriched> = Task::from_file(wasm)?;
    let pool = Pool::builder(task)
        .workers(2)
        .isolation(isolation)
        .capability("db.customer", move |id: i64| {
            let conn = conn
                .lock()
                .map_err(|_| "the connection lock is poisoned".to_string())?;
            let row = conn.query_row(
                "SELECT name, city FROM customers WHERE id = ?1",
                [id],
                |r| {
                    Ok(Customer {
                        name: r.get(0)?,
                        city: r.get(1)?,
                    })
                },
            );
            match row {
                Ok(c) => Ok(Some(c)),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
        .capability_inline("model.classify", move |text: String| {
            Ok::<_, String>(model.classify(&text))
        })
        .build()?;
    Ok(pool.map(records).collect())
}

/// Some records to enrich.
pub fn sample_records() -> Vec<Record> {
    let notes = [
        "Great service, thanks!",
        "The parcel came late and broken, I want a refund",
        "How much is the price of the blue one?",
        "ok",
    ];
    (0..40)
        .map(|i| Record {
            id: i,
            customer_id: (i % 6) as i64, // ids 0 and 5 are not in the database
            note: notes[i as usize % notes.len()].to_string(),
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let isolation = match std::env::args().nth(1).as_deref() {
        Some("process") => Isolation::Process,
        _ => Isolation::Instance,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/guest/wasm32-wasip1/release/examples/enrich.wasm");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("customers.db");
    create_db(&db)?;
    for result in enrich(&wasm, &db, isolation, &sample_records())? {
        match result {
            Ok(e) => println!(
                "#{:<3} {:<20} {:<10} ({:.2})",
                e.id,
                e.customer
                    .map(|c| format!("{} ({})", c.name, c.city))
                    .unwrap_or_else(|| "unknown customer".into()),
                e.label.label,
                e.label.score
            ),
            Err(e) => println!("{e}"),
        }
    }
    Ok(())
}
