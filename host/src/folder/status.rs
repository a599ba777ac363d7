//! `sandpool status`: which inputs of a folder are done, failed or missing
//! in an output folder, read without running anything (and without the
//! output folder's lock: during a run it is a snapshot).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Error;

use super::naming::{display_name, error_name, folder_id, id_of_bytes, result_name};
use super::walk;
use super::writer::OutDir;

/// Where one input stands in an output folder.
///
/// ```
/// assert_eq!(serde_json::to_string(&sandpool::InputState::Missing).unwrap(), "\"missing\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    /// `{id}.json` holds a JSON document, or a raw output `{id}.{ext}` or a
    /// multi-file output `{id}.files/` exists: a run skips it.
    Done,
    /// `{id}.error.json` exists (and no valid result): the last run failed it.
    Failed,
    /// Neither: never run, or interrupted before it was.
    Missing,
}

/// One input that is not done.
///
/// ```
/// let e = sandpool::StatusEntry { input: "a.txt".into(), id: "a.txt".into(),
///     state: sandpool::InputState::Failed, error: Some("trap".into()) };
/// assert!(serde_json::to_string(&e).unwrap().contains("\"state\":\"failed\""));
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// The input's path relative to the input folder (lossy UTF-8).
    pub input: String,
    /// Its output id (exact; see [`crate::file_id`]).
    pub id: String,
    /// Failed or missing.
    pub state: InputState,
    /// For a failed input, the `error` kind of its record (`trap`, `timeout`, ...).
    pub error: Option<String>,
}

/// Counts of done, failed and missing inputs.
///
/// ```
/// let s = sandpool::FolderStatus { done: 2, failed: 1, missing: 0, ..Default::default() };
/// assert!(!s.complete());
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderStatus {
    /// Inputs found.
    pub total: u64,
    /// Inputs with a valid result.
    pub done: u64,
    /// Inputs with an error record.
    pub failed: u64,
    /// Inputs with neither.
    pub missing: u64,
    /// The output folder checked.
    pub output: PathBuf,
}

impl FolderStatus {
    /// Whether every input is done.
    ///
    /// ```
    /// let s = sandpool::FolderStatus { total: 3, done: 3, ..Default::default() };
    /// assert!(s.complete());
    /// ```
    pub fn complete(&self) -> bool {
        self.done == self.total
    }
}

/// Checks every file under `inputs` against `output`, calling `not_done`
/// for each input that is failed or missing (in listing order) and
/// returning the counts. Memory holds 8 bytes per name in the output
/// tree (to find raw and multi-file outputs without a listing per input). The
/// output folder is skipped if it lies inside the inputs, as a run does.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sandpool-status-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("in/sub")).unwrap();
/// std::fs::create_dir_all(dir.join("out/sub")).unwrap();
/// std::fs::write(dir.join("in/sub/a.txt"), "a").unwrap();
/// std::fs::write(dir.join("in/b.txt"), "b").unwrap();
/// std::fs::write(dir.join("out/sub/a.txt.json"), "{}\n").unwrap();
/// let mut missing = Vec::new();
/// let s = sandpool::folder_status(&dir.join("in"), &dir.join("out"), |e| missing.push(e.input))?;
/// assert_eq!((s.done, s.failed, s.missing), (1, 0, 1));
/// assert_eq!(missing, ["b.txt"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn folder_status(
    inputs: &Path,
    output: &Path,
    mut not_done: impl FnMut(StatusEntry),
) -> Result<FolderStatus, Error> {
    let meta = std::fs::metadata(inputs)
        .map_err(|e| Error::io(format!("cannot open input folder {}", inputs.display()), &e))?;
    if !meta.is_dir() {
        return Err(Error::Io {
            context: format!("input folder {}", inputs.display()),
            message: "not a folder".into(),
        });
    }
    let out_meta = std::fs::metadata(output).map_err(|e| {
        Error::io(
            format!("cannot open output folder {}", output.display()),
            &e,
        )
    })?;
    if !out_meta.is_dir() {
        return Err(Error::Io {
            context: format!("output folder {}", output.display()),
            message: "not a folder".into(),
        });
    }
    let mut out = OutDir::open(output)?;
    // Which inputs have a raw or multi-file output: one listing of the
    // output tree, kept as 8 bytes per name (nothing is removed).
    out.scan_tree(walk::DirId::of(inputs).ok(), false)?;
    let mut status = FolderStatus {
        output: output.to_path_buf(),
        ..FolderStatus::default()
    };
    walk::walk(
        inputs,
        Some(walk::DirId::from_metadata(&out_meta)),
        |path, unlisted| {
            status.total += 1;
            let id = match unlisted {
                Some(_) => folder_id(&path),
                None => id_of_bytes(&path),
            };
            if out.holds_json(&result_name(&id)) || super::output::has_other(&out, &id) {
                status.done += 1;
                return true;
            }
            let record = std::fs::read(out.path().join(error_name(&id)));
            let (state, error) = match record {
                Ok(bytes) => {
                    status.failed += 1;
                    let kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string));
                    (InputState::Failed, kind)
                }
                Err(_) => {
                    status.missing += 1;
                    (InputState::Missing, None)
                }
            };
            not_done(StatusEntry {
                input: display_name(&path),
                id,
                state,
                error,
            });
            true
        },
        |_| {},
        |_| {},
    );
    Ok(status)
}
