//! Enriches a record through two host capabilities (host/examples/enrich.rs):
//! `db.customer` looks the customer up in the host's SQLite database,
//! `model.classify` labels the note with the host's shared model session.
use serde::{Deserialize, Serialize};

sandpool_guest::capabilities!("db.customer", "model.classify");

/// One raw record.
#[derive(Deserialize)]
struct Record {
    id: u64,
    customer_id: i64,
    note: String,
}

/// A customer row, as the host's `db.customer` capability returns it.
#[derive(Deserialize, Serialize)]
struct Customer {
    name: String,
    city: String,
}

/// The model's answer.
#[derive(Deserialize, Serialize)]
struct Label {
    label: String,
    score: f32,
}

/// The enriched record.
#[derive(Serialize)]
struct Enriched {
    id: u64,
    customer: Option<Customer>,
    label: Label,
}

fn enrich(record: Record) -> Result<Enriched, String> {
    let customer: Option<Customer> =
        sandpool_guest::call("db.customer", &record.customer_id).map_err(|e| e.to_string())?;
    let label: Label =
        sandpool_guest::call("model.classify", &record.note).map_err(|e| e.to_string())?;
    Ok(Enriched {
        id: record.id,
        customer,
        label,
    })
}

sandpool_guest::export_task!(enrich);
