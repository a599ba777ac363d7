//! `sandpool status` of a JSON Lines run: which input lines have a result
//! line, an error line, or none yet, from the two files alone.

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::Error;
use crate::folder::status::{FolderStatus, InputState, StatusEntry};

/// Counts the lines of `input` against the result lines of `output`: a
/// line is done when its result line holds `ok`, failed when it holds
/// `error`, missing when the output has no line for it yet (a torn last
/// line counts as none). Calls `not_done` for each failed line, and once
/// for the range of missing lines (`input` is `lines N-M`). Memory is flat.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sandpool-jsonl-status-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("in.jsonl"), "{}\n{}\n{}\n").unwrap();
/// std::fs::write(dir.join("out.jsonl"), "{\"line\":1,\"ok\":{}}\n{\"line\":2,\"error\":\"trap\",\"message\":\"m\"}\n").unwrap();
/// let mut listed = Vec::new();
/// let s = sandpool::jsonl_status(&dir.join("out.jsonl"), &dir.join("in.jsonl"), |e| listed.push(e.input))?;
/// assert_eq!((s.done, s.failed, s.missing), (1, 1, 1));
/// assert_eq!(listed, ["line 2", "line 3"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn jsonl_status(
    output: &Path,
    input: &Path,
    mut not_done: impl FnMut(StatusEntry),
) -> Result<FolderStatus, Error> {
    let open = |path: &Path, what: &str| {
        std::fs::File::open(path)
            .map(|f| BufReader::with_capacity(1 << 16, f))
            .map_err(|e| Error::io(format!("cannot open {what} {}", path.display()), &e))
    };
    let mut inputs = open(input, "input file")?;
    let mut total = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = inputs
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", input.display()), &e))?;
        if n == 0 {
            break;
        }
        total += 1;
    }
    let mut status = FolderStatus {
        total,
        output: output.to_path_buf(),
        ..FolderStatus::default()
    };
    let mut results = open(output, "output file")?;
    let mut seen = 0u64;
    while seen < total {
        buf.clear();
        let n = results
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", output.display()), &e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        seen += 1;
        let line: serde_json::Value = serde_json::from_slice(&buf).unwrap_or_default();
        if line.get("ok").is_some() {
            status.done += 1;
        } else {
            status.failed += 1;
            not_done(StatusEntry {
                input: format!("line {seen}"),
                id: line
                    .get("id")
                    .map_or_else(|| seen.to_string(), |id| id.to_string()),
                state: InputState::Failed,
                error: line["error"].as_str().map(str::to_string),
            });
        }
    }
    status.missing = total - seen;
    if status.missing > 0 {
        let first = seen + 1;
        not_done(StatusEntry {
            input: if first == total {
                format!("line {first}")
            } else {
                format!("lines {first}-{total}")
            },
            id: first.to_string(),
            state: InputState::Missing,
            error: None,
        });
    }
    Ok(status)
}
