//! Output kinds of `sandpool run` on the host side: reading a task's output
//! value ([`sandpool_guest::output::OutputRef`]: JSON, raw bytes with an
//! extension, or named files), writing each kind into the output tree, and
//! telling which input a raw or multi-file output belongs to (for resume
//! and `sandpool status`).
//!
//! For input id `{id}` (its mirrored path):
//!
//! - JSON: `{id}.json` (the document, then a newline);
//! - raw bytes with extension `ext`: `{id}.{ext}`, written as a temporary
//!   file and renamed, like a JSON result;
//! - files: the folder `{id}.files/`, written under a temporary name
//!   (`.sandpool-tmp-…`, swept by the next run if this one dies) and then
//!   renamed whole, so it exists complete or not at all. Redone by
//!   `--force`, it is swapped with the old folder in one `renameat2`
//!   (`RENAME_EXCHANGE`), and the old one is removed after.
//!
//! An input counts as done when `{id}.json` holds a JSON document, or when
//! an `{id}.{ext}` file or an `{id}.files/` folder exists. The JSON case
//! costs no syscall more than before: whether an input may have another
//! kind of output is a lookup in the output folder's start-up record.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

use sandpool_guest::output::{OutputRef, check_ext};

use crate::error::{Error, TaskRef};

use super::writer::{OutDir, unlink, write_and_close};

/// Suffix of a multi-file output's folder.
pub(crate) const FILES_SUFFIX: &str = ".files";

/// Decodes a task's output value and checks it: a JSON output must be one
/// JSON document. `input` names the input in the message.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    task: &TaskRef,
    input: &str,
) -> Result<OutputRef<'a>, Error> {
    let output = OutputRef::decode(bytes).map_err(|reason| Error::Decode {
        task: task.clone(),
        what: "output",
        reason: format!("the task's output for {input}: {reason}"),
    })?;
    if let OutputRef::Json(json) = &output
        && let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(json)
    {
        return Err(Error::Decode {
            task: task.clone(),
            what: "output as JSON",
            reason: format!("the task's output for {input} is not a JSON document: {e}"),
        });
    }
    Ok(output)
}

/// Decodes an output value for JSON Lines mode, where every result is a
/// JSON document on one line: a raw or multi-file output is an error (its
/// line says so). The caller checks the text is JSON as it copies it.
pub(crate) fn decode_json<'a>(
    bytes: &'a [u8],
    task: &TaskRef,
    input: &str,
) -> Result<&'a str, Error> {
    let output = OutputRef::decode(bytes).map_err(|reason| Error::Decode {
        task: task.clone(),
        what: "output",
        reason: format!("the task's output for {input}: {reason}"),
    })?;
    match output {
        OutputRef::Json(json) => Ok(json),
        other => Err(Error::Decode {
            task: task.clone(),
            what: "output",
            reason: format!(
                "the task returned a `{}` output for {input}; JSON Lines mode writes only \
                 JSON results (run the task over a folder of inputs to write other kinds)",
                other.kind()
            ),
        }),
    }
}

/// The input id a raw or multi-file output at `path` (relative to the
/// output folder) belongs to, if it is named like one: a folder
/// `{id}.files`, or a file `{id}.{ext}` with a valid, unreserved extension.
pub(crate) fn owner_of(path: &[u8], is_dir: bool) -> Option<&[u8]> {
    let start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let last = &path[start..];
    let dot = last.iter().rposition(|&b| b == b'.')?;
    if dot == 0 {
        return None;
    }
    let suffix = &last[dot + 1..];
    let ok = if is_dir {
        suffix == &FILES_SUFFIX.as_bytes()[1..]
    } else {
        std::str::from_utf8(suffix).is_ok_and(|ext| check_ext(ext).is_ok())
    };
    ok.then(|| &path[..start + dot])
}

/// Names of the raw and multi-file outputs of `id` present now (a listing
/// of its folder), each with whether it is a folder.
pub(crate) fn other_outputs(out: &OutDir, id: &str) -> Vec<(String, bool)> {
    let (parent, last) = match id.rfind('/') {
        Some(slash) => (&id[..slash], &id[slash + 1..]),
        None => ("", id),
    };
    let Ok(listing) = std::fs::read_dir(out.path().join(parent)) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in listing.flatten() {
        let name = entry.file_name();
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if owner_of(bytes, is_dir) == Some(last.as_bytes())
            && let Some(name) = name.to_str()
        {
            let path = if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}/{name}")
            };
            found.push((path, is_dir));
        }
    }
    found
}

/// Whether input `id` has a raw or multi-file output (no syscall when the
/// start-up record says it cannot).
pub(crate) fn has_other(out: &OutDir, id: &str) -> bool {
    out.may_have_other(id) && !other_outputs(out, id).is_empty()
}

/// Removes the raw and multi-file outputs of `id` except `keep` (stale
/// after a newer result or an error record).
pub(crate) fn remove_others(out: &OutDir, id: &str, keep: Option<&str>) {
    if !out.may_have_other(id) {
        return;
    }
    for (name, is_dir) in other_outputs(out, id) {
        if Some(name.as_str()) != keep {
            let _ = out.remove_any(&name, is_dir);
        }
    }
}

/// Where a raw output of `id` goes.
pub(crate) fn bytes_name(id: &str, ext: &str) -> String {
    format!("{id}.{ext}")
}

/// Where a multi-file output of `id` goes.
pub(crate) fn files_name(id: &str) -> String {
    format!("{id}{FILES_SUFFIX}")
}

fn cstr(name: &str) -> std::io::Result<CString> {
    CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn last_error<T>() -> std::io::Result<T> {
    Err(std::io::Error::last_os_error())
}

/// Writes a multi-file output to `name` (a folder) atomically: the files
/// go into a temporary folder beside it, which is then renamed into place
/// (or swapped with an existing `name`, then the old one removed). On any
/// failure the temporary folder is removed and `name` is left as it was.
pub(crate) fn write_files(
    out: &OutDir,
    name: &str,
    files: &[(&str, &[u8])],
    tmp: u64,
) -> std::io::Result<()> {
    let tmp_name = out.tmp_name(name, tmp);
    let made = match make_dir(out, &tmp_name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.contains('/') => {
            out.create_parents(name)?;
            make_dir(out, &tmp_name)
        }
        other => other,
    };
    let dir = made?;
    let filled = fill(&dir, files).and_then(|()| {
        drop(dir);
        rename_into_place(out, &tmp_name, name)
    });
    if filled.is_err() {
        let _ = out.remove_any(&tmp_name, true);
    }
    filled
}

/// Creates folder `name` and opens it.
fn make_dir(out: &OutDir, name: &str) -> std::io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
    if unsafe { libc::mkdirat(out.fd(), c.as_ptr(), 0o755) } != 0 {
        return last_error();
    }
    // SAFETY: as above.
    let fd = unsafe {
        libc::openat(
            out.fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let _ = out.remove_any(name, true);
        return Err(e);
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes every file into the open folder `dir`.
fn fill(dir: &OwnedFd, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    for (i, (name, data)) in files.iter().enumerate() {
        fault_point(i);
        let c = cstr(name)?;
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd < 0 {
            return last_error();
        }
        // SAFETY: a fresh descriptor we own.
        write_and_close(
            std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }),
            data,
        )?;
    }
    Ok(())
}

/// Renames the finished temporary folder to `name`; if `name` exists,
/// swaps the two in one step and removes the old output.
fn rename_into_place(out: &OutDir, tmp_name: &str, name: &str) -> std::io::Result<()> {
    let (from, to) = (cstr(tmp_name)?, cstr(name)?);
    // SAFETY: valid descriptors and NUL-terminated names; the result is checked.
    let rc = unsafe {
        libc::renameat2(
            out.fd(),
            from.as_ptr(),
            out.fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A file system without renameat2's flags (some network and FUSE
        // ones): move the old output aside first. Between the two renames
        // neither exists, which resume reads as not done: never as half.
        return rename_aside(out, tmp_name, name);
    }
    if e.kind() != std::io::ErrorKind::AlreadyExists {
        return Err(e);
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::renameat2(
            out.fd(),
            from.as_ptr(),
            out.fd(),
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return last_error();
    }
    // The old output now has the temporary name; a file there (a stale
    // output named like a folder) is removed as a file.
    if out.remove_any(tmp_name, true).is_err() {
        let _ = unlink(out.fd(), &from);
    }
    Ok(())
}

/// [`rename_into_place`] with plain renames.
fn rename_aside(out: &OutDir, tmp_name: &str, name: &str) -> std::io::Result<()> {
    let old_name = format!("{tmp_name}-old");
    let (from, to, old) = (cstr(tmp_name)?, cstr(name)?, cstr(&old_name)?);
    // SAFETY: valid descriptors and NUL-terminated names; results are checked.
    if unsafe { libc::renameat(out.fd(), to.as_ptr(), out.fd(), old.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    // SAFETY: as above.
    if unsafe { libc::renameat(out.fd(), from.as_ptr(), out.fd(), to.as_ptr()) } != 0 {
        return last_error();
    }
    if out.remove_any(&old_name, true).is_err() {
        let _ = out.remove(&old_name);
    }
    Ok(())
}

/// The `test-faults` hook of the kill-mid-write test: with
/// `SANDPOOL_FAULT_ABORT_AT_FILE=N`, the process aborts just before it
/// writes file N of a multi-file output (as a kill would stop it there).
#[cfg(feature = "test-faults")]
fn fault_point(index: usize) {
    static AT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        std::env::var("SANDPOOL_FAULT_ABORT_AT_FILE")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if *at == Some(index) {
        std::process::abort();
    }
}

#[cfg(not(feature = "test-faults"))]
fn fault_point(_index: usize) {}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpool_guest::output::RESERVED_EXTS;

    #[test]
    fn outputs_are_owned_by_the_id_they_were_written_for() {
        assert_eq!(owner_of(b"a/b.txt.png", false), Some(&b"a/b.txt"[..]));
        assert_eq!(owner_of(b"a/b.txt.files", true), Some(&b"a/b.txt"[..]));
        // A JSON result or an error record is not a raw output.
        assert_eq!(owner_of(b"b.txt.json", false), None);
        assert_eq!(owner_of(b"b.error.json", false), None);
        // A mirrored folder is not a multi-file output, a `.files` file not either.
        assert_eq!(owner_of(b"photos.png", true), None);
        assert_eq!(owner_of(b"x.files", false), None);
        assert_eq!(owner_of(b".png", false), None);
        for ext in RESERVED_EXTS {
            assert_eq!(owner_of(format!("x.{ext}").as_bytes(), false), None);
        }
    }

    #[test]
    fn a_multi_file_output_replaces_an_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutDir::open(dir.path()).unwrap();
        let first: [(&str, &[u8]); 2] = [("a", b"1"), ("b", b"2")];
        write_files(&out, "x/y.files", &first, 1).unwrap();
        let second: [(&str, &[u8]); 1] = [("c", b"3")];
        write_files(&out, "x/y.files", &second, 2).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("x/y.files"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["c"]);
        assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 1);
        // A failed write (a duplicate name) leaves the old output and no temporary.
        let dup: [(&str, &[u8]); 2] = [("d", b""), ("d", b"")];
        assert!(write_files(&out, "x/y.files", &dup, 3).is_err());
        assert_eq!(std::fs::read(dir.path().join("x/y.files/c")).unwrap(), b"3");
        assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 1);
        let others = other_outputs(&out, "x/y");
        assert_eq!(others, [("x/y.files".to_string(), true)]);
    }
}
