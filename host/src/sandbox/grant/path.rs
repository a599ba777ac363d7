//! Guest paths as the grant reads them: bounded, NUL-free C strings, and the
//! split of a path into the parent directory to open and one plain name.

use std::ffi::CString;

use crate::sandbox::memory::slice;
use crate::sandbox::wasi_types::errno::{EINVAL, ENAMETOOLONG, ENOENT, ENOTCAPABLE};

/// The longest path a guest may pass, in bytes.
pub(super) const MAX_PATH: usize = 4096;

/// A guest path as a C string: at most 4096 bytes, no NUL, not empty.
pub(super) fn guest_path(mem: &[u8], ptr: i32, len: i32) -> Result<CString, i32> {
    let len = len as u32 as usize;
    if len > MAX_PATH {
        return Err(ENAMETOOLONG);
    }
    let bytes = slice(mem, ptr, len)?;
    if bytes.is_empty() {
        return Err(ENOENT);
    }
    CString::new(bytes).map_err(|_| EINVAL)
}

/// Splits a path into its parent (`.` when none) and its last component,
/// which must be a plain name (not `.` or `..`). Absolute paths are refused.
pub(super) fn split_parent(path: &CString) -> Result<(CString, CString), i32> {
    let bytes = path.as_bytes();
    if bytes.starts_with(b"/") {
        return Err(ENOTCAPABLE);
    }
    let trimmed = match bytes.iter().rposition(|&b| b != b'/') {
        Some(last) => &bytes[..=last],
        None => return Err(ENOTCAPABLE),
    };
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&trimmed[..slash], &trimmed[slash + 1..]),
        None => (&b"."[..], trimmed),
    };
    if name == b"." || name == b".." {
        return Err(EINVAL);
    }
    let parent = if parent.is_empty() { &b"."[..] } else { parent };
    // Neither part has a NUL: they come from a `CString`.
    Ok((
        CString::new(parent).map_err(|_| EINVAL)?,
        CString::new(name).map_err(|_| EINVAL)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_keeps_one_plain_name() {
        let split = |p: &str| {
            split_parent(&CString::new(p).unwrap()).map(|(a, b)| {
                (
                    a.to_string_lossy().into_owned(),
                    b.to_string_lossy().into_owned(),
                )
            })
        };
        assert_eq!(split("a"), Ok((".".into(), "a".into())));
        assert_eq!(split("a/b/"), Ok(("a".into(), "b".into())));
        assert_eq!(split("x/../y"), Ok(("x/..".into(), "y".into())));
        assert_eq!(split("a/.."), Err(EINVAL));
        assert_eq!(split("."), Err(EINVAL));
        assert_eq!(split("/etc/passwd"), Err(ENOTCAPABLE));
        assert_eq!(split("///"), Err(ENOTCAPABLE));
    }
}
