//! Looks each input file's customer id up through the host's read-only SQL
//! capability (`sandpool run --sqlite customers.db`): the file holds an id,
//! the output is `{"id": .., "name": .., "city": ..}` (or `null` fields
//! for an unknown id).
use sandpool_guest::{FileInput, Json};
use serde::{Deserialize, Serialize};

sandpool_guest::capabilities!("sql.query");

/// `sandpool::sqlite::SqlValue`, as it crosses the boundary.
#[derive(Serialize, Deserialize, Debug)]
enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(serde_bytes::ByteBuf),
}

/// `sandpool::sqlite::SqlQuery`.
#[derive(Serialize)]
struct SqlQuery {
    sql: String,
    params: Vec<SqlValue>,
}

#[derive(Serialize)]
struct Customer {
    id: i64,
    name: Option<String>,
    city: Option<String>,
}

fn text(v: Option<&SqlValue>) -> Option<String> {
    match v {
        Some(SqlValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

fn lookup(input: FileInput) -> Result<Json<Customer>, String> {
    let id: i64 = input
        .text()
        .trim()
        .parse()
        .map_err(|e| format!("{}: not a customer id: {e}", input.name))?;
    let rows: Vec<Vec<SqlValue>> = sandpool_guest::call(
        "sql.query",
        &SqlQuery {
            sql: "SELECT name, city FROM customers WHERE id = ?".into(),
            params: vec![SqlValue::Integer(id)],
        },
    )
    .map_err(|e| e.to_string())?;
    let row = rows.first();
    Ok(Json(Customer {
        id,
        name: text(row.and_then(|r| r.first())),
        city: text(row.and_then(|r| r.get(1))),
    }))
}

sandpool_guest::export_task!(lookup);
