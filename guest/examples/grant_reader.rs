//! A command-line task for directory grants (`sandpool run --dir`): each
//! input file names a path in the granted directory, e.g. `/data/words.txt`,
//! and the output is that file's size and first line. An input of the form
//! `write PATH` writes the input's own name to PATH instead.
use sandpool_guest::{FileInput, Json};
use serde::Serialize;

#[derive(Serialize)]
struct Report {
    path: String,
    bytes: usize,
    first_line: String,
}

fn read(input: FileInput) -> Result<Json<Report>, String> {
    let text = input.text();
    if let Some(path) = text.trim().strip_prefix("write ") {
        std::fs::write(path, input.name.as_bytes())
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        return Ok(Json(Report {
            path: path.to_string(),
            bytes: input.name.len(),
            first_line: input.name.clone(),
        }));
    }
    let path = text.trim().to_string();
    let data = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let first_line = String::from_utf8_lossy(&data)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Json(Report {
        path,
        bytes: data.len(),
        first_line,
    }))
}
sandpool_guest::export_task!(read);
