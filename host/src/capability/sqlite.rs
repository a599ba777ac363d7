//! The built-in read-only SQL capability `sql.query` over one SQLite
//! database file (`sandpool run --sqlite PATH[:ro]`; feature `cli`).
//!
//! Request: [`SqlQuery`] (one statement and its positional parameters).
//! Response: the result rows, each a `Vec<`[`SqlValue`]`>`. The database is
//! opened read-only (`SQLITE_OPEN_READ_ONLY`) and every statement must be
//! read-only too (`sqlite3_stmt_readonly`), so a task can read but never
//! change it; at most [`MAX_ROWS`] rows per query.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Capabilities;
use crate::error::Error;

/// The name the SQL capability is granted under.
pub const SQL_QUERY: &str = "sql.query";

/// The most rows one query may return.
pub const MAX_ROWS: usize = 100_000;

/// One SQL value, as it crosses the boundary (bincode enum: variant index, then the value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// A blob.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The request of `sql.query`: one statement and its `?` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlQuery {
    /// One SQL statement, e.g. `SELECT name FROM customers WHERE id = ?`.
    pub sql: String,
    /// Its positional parameters.
    pub params: Vec<SqlValue>,
}

fn to_sql(value: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(f) => Value::Real(*f),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn from_sql(value: rusqlite::types::ValueRef<'_>) -> SqlValue {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

fn query(conn: &rusqlite::Connection, q: &SqlQuery) -> Result<Vec<Vec<SqlValue>>, String> {
    let mut stmt = conn.prepare_cached(&q.sql).map_err(|e| e.to_string())?;
    if !stmt.readonly() {
        return Err("only read-only statements are allowed".into());
    }
    let columns = stmt.column_count();
    let params: Vec<rusqlite::types::Value> = q.params.iter().map(to_sql).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        if out.len() == MAX_ROWS {
            return Err(format!("the query returns more than {MAX_ROWS} rows"));
        }
        let values = (0..columns)
            .map(|i| row.get_ref(i).map(from_sql).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(values);
    }
    Ok(out)
}

/// The capability `sql.query` over the SQLite database at `path`, opened
/// once, read-only, and shared by every task (one connection, one query
/// at a time).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("t.db");
/// rusqlite::Connection::open(&path)?.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
/// let caps = sandpool::sqlite_query(&path)?;
/// assert_eq!(caps.names(), ["sql.query"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sqlite_query(path: &Path) -> Result<Capabilities, Error> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .and_then(|c| {
            // Fails here, not in the first task, if the file is not a database.
            c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            Ok(c)
        })
        .map_err(|e| Error::Io {
            context: format!("cannot open the SQLite database {}", path.display()),
            message: e.to_string(),
        })?;
    let conn = Mutex::new(conn);
    Ok(
        Capabilities::new().capability(SQL_QUERY, move |q: SqlQuery| {
            let conn = crate::sync::lock(&conn);
            query(&conn, &q)
        }),
    )
}
