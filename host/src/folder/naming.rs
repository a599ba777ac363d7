//! Output names: which file of the output folder belongs to which input.
//! The mapping from an input's relative path (bytes, as the OS stores it)
//! to its output id is injective, and no id can spell another input's
//! result, error record, or one of sandpool's own files. See docs/cli.md.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Prefix of the temporary files outputs are written to before their rename
/// (the one prefix every sandpool temporary file has). Starts with `.`,
/// which no output name does.
pub(crate) use crate::atomic_write::TEMP_PREFIX as TMP_PREFIX;

/// The lock file a run holds in its output folder (also starts with `.`).
pub(crate) const LOCK_NAME: &str = ".sandpool-lock";

/// Extension of a result.
pub(crate) const RESULT_SUFFIX: &str = ".json";

/// Extension of an error record (what no id ends with, plus `.json`).
pub(crate) const ERROR_SUFFIX: &str = ".error.json";

/// Longest path component kept whole; a longer one becomes a prefix, `%%`
/// and a hash, so that `{name}.error.json` stays well under the 255-byte
/// name limit.
pub(crate) const MAX_ID_BYTES: usize = 200;

/// Bytes of escaped prefix kept in front of the hash of a long id.
const LONG_ID_PREFIX: usize = 130;

/// The output id of an input: its path relative to the input folder, as
/// bytes, mirrored into a relative output path (`essays/a.txt` gives
/// `essays/a.txt`, whose result is `essays/a.txt.json`). Each path
/// component is kept as it is unless it cannot be mirrored safely; then,
/// and only then, bytes of it are escaped as `%XX`:
///
/// - `%` becomes `%25`, `\` `%5C`, control characters and every byte that
///   is not part of valid UTF-8 `%XX`, so names that are not UTF-8 keep
///   distinct ids;
/// - a leading `.` becomes `%2E` (so no output is hidden and no output can
///   be named like sandpool's own `.sandpool-*` files), and so does the `.`
///   of a trailing `.error` (so `a.error`'s result, `a%2Eerror.json`, is
///   never `a`'s error record, `a.error.json`);
/// - in a folder's name (every component but the last), the `.` of a
///   trailing `.json` or `.files` becomes `%2E`, so an output folder is
///   never named like a result, an error record or a multi-file output
///   (`{id}.files/`) in the same folder;
/// - a component longer than 200 bytes keeps its first ~130 bytes, then
///   `%%` and the SHA-256 of the component in hex (`%%` appears in no
///   other component).
///
/// Every other character (spaces, non-ASCII letters) stays as it is.
/// Decoding `%XX` gives back the original bytes, so distinct paths always
/// get distinct ids (long ones up to a SHA-256 collision).
///
/// ```
/// use std::path::Path;
/// use std::os::unix::ffi::OsStrExt;
/// assert_eq!(sandpool::file_id(Path::new("a/b c.txt")), "a/b c.txt");
/// assert_eq!(sandpool::file_id(Path::new("50%.txt")), "50%25.txt");
/// assert_eq!(sandpool::file_id(Path::new("día/ñ.md")), "día/ñ.md");
/// assert_eq!(sandpool::file_id(Path::new("a.error")), "a%2Eerror");
/// assert_eq!(sandpool::file_id(Path::new(".git/HEAD")), "%2Egit/HEAD");
/// assert_eq!(sandpool::file_id(Path::new("x.json/y")), "x%2Ejson/y");
/// assert_eq!(sandpool::file_id(Path::new("x.files/y")), "x%2Efiles/y");
/// let latin1 = std::ffi::OsStr::from_bytes(b"d/\xff.txt");
/// assert_eq!(sandpool::file_id(Path::new(latin1)), "d/%FF.txt");
/// ```
pub fn file_id(relative: &Path) -> String {
    id_of_bytes(&relative_bytes(relative))
}

/// The relative path as one byte string, components joined by `/`.
pub(crate) fn relative_bytes(relative: &Path) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(relative.as_os_str().len());
    for component in relative.components() {
        let part: &OsStr = match component {
            Component::Normal(part) => part,
            Component::CurDir => continue,
            other => other.as_os_str(),
        };
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// The id of an input file given as `/`-joined bytes (see [`file_id`]).
pub(crate) fn id_of_bytes(path: &[u8]) -> String {
    mirror(path, false)
}

/// The id of an input folder (every component named as a folder): where
/// its error record goes if it cannot be listed.
pub(crate) fn folder_id(path: &[u8]) -> String {
    mirror(path, true)
}

fn mirror(path: &[u8], last_is_folder: bool) -> String {
    let mut id = String::with_capacity(path.len() + 8);
    let mut parts = path.split(|&b| b == b'/').peekable();
    while let Some(part) = parts.next() {
        let is_folder = last_is_folder || parts.peek().is_some();
        id.push_str(&component_id(part, is_folder));
        if parts.peek().is_some() {
            id.push('/');
        }
    }
    id
}

/// One path component, escaped only where it cannot be mirrored.
fn component_id(part: &[u8], is_folder: bool) -> String {
    let mut id = String::with_capacity(part.len() + 8);
    let hex = |id: &mut String, b: u8| {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        id.push('%');
        id.push(DIGITS[usize::from(b >> 4)] as char);
        id.push(DIGITS[usize::from(b & 15)] as char);
    };
    for chunk in part.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '%' | '/' | '\\' => hex(&mut id, c as u8),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        hex(&mut id, b);
                    }
                }
                c => id.push(c),
            }
        }
        for &b in chunk.invalid() {
            hex(&mut id, b);
        }
    }
    if id.is_empty() || id.starts_with('.') {
        // An empty component cannot come from a walk; keep it visible anyway.
        if id.is_empty() {
            id.push_str("%2E%2E");
        } else {
            id.replace_range(..1, "%2E");
        }
    }
    let folder_tails = [".json", ".files"];
    let tails = [".error"]
        .into_iter()
        .chain(folder_tails.into_iter().filter(|_| is_folder));
    for tail in tails {
        if id.ends_with(tail) {
            let dot = id.len() - tail.len();
            id.replace_range(dot..dot + 1, "%2E");
        }
    }
    if id.len() > MAX_ID_BYTES {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(part);
        let mut cut = LONG_ID_PREFIX;
        // Cut at a character boundary and never inside a `%XX` escape.
        let splits_escape = |id: &str, cut: usize| {
            let b = id.as_bytes();
            b[cut - 1] == b'%' || b[cut - 2] == b'%'
        };
        while !id.is_char_boundary(cut) || splits_escape(&id, cut) {
            cut -= 1;
        }
        id.truncate(cut);
        id.push_str("%%");
        for b in digest {
            id.push_str(&format!("{b:02x}"));
        }
    }
    id
}

/// `{id}.json`: where an input's result goes.
pub(crate) fn result_name(id: &str) -> String {
    format!("{id}{RESULT_SUFFIX}")
}

/// `{id}.error.json`: where an input's error record goes.
pub(crate) fn error_name(id: &str) -> String {
    format!("{id}{ERROR_SUFFIX}")
}

/// The path as the task sees it (`FileInput::name`): relative,
/// `/`-separated, lossy UTF-8 (the id, not this, tells names apart).
pub(crate) fn display_name(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn id(bytes: &[u8]) -> String {
        id_of_bytes(bytes)
    }

    /// Decodes `%XX` escapes (the inverse of the encoding, for short ids).
    fn decode(id: &str) -> Vec<u8> {
        let b = id.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn names_that_are_not_utf8_get_distinct_ids() {
        assert_ne!(id(b"\xff.txt"), id(b"\xfe.txt"));
        assert_eq!(id(b"\xff.txt"), "%FF.txt");
        assert_eq!(id(b"caf\xe9/\xc3("), "caf%E9/%C3(");
    }

    #[test]
    fn a_result_name_is_never_another_inputs_error_record() {
        for (a, b) in [("a", "a.error"), ("x.txt", "x.txt.error"), ("", ".error")] {
            let results = [
                result_name(&id(a.as_bytes())),
                result_name(&id(b.as_bytes())),
            ];
            let errors = [error_name(&id(a.as_bytes())), error_name(&id(b.as_bytes()))];
            for r in &results {
                assert!(!errors.contains(r), "{r} is also an error record");
                assert!(!r.ends_with(ERROR_SUFFIX), "{r}");
            }
        }
    }

    #[test]
    fn no_id_is_hidden_or_a_temporary_or_lock_name() {
        for name in [".sandpool-tmp-1-2", ".sandpool-lock", ".", ".x", "..a"] {
            let i = id(name.as_bytes());
            assert!(!i.starts_with('.'), "{i}");
            assert!(!result_name(&i).starts_with(TMP_PREFIX));
            assert_ne!(result_name(&i), LOCK_NAME);
        }
    }

    #[test]
    fn ids_decode_back_to_the_path_so_distinct_paths_differ() {
        let paths: Vec<&[u8]> = vec![
            b"a/b",
            b"a%2Fb",
            b"a%2Fb/c",
            b"a/b%2Fc",
            b"a\\b",
            b"a%5Cb",
            b"x\ny",
            b"x%0Ay",
            b"a.error",
            b"a%2Eerror",
            b".a",
            b"%2Ea",
            b"\xff",
            b"%FF",
            b"\xc3\xa9",
            b"\xc3",
            b"a.error.error",
            b"a%%b",
            b"x.json/y",
            b"x%2Ejson/y",
            b".d/.e",
        ];
        let mut seen = HashSet::new();
        for p in &paths {
            let i = id(p);
            assert_eq!(decode(&i), *p, "{i}");
            assert!(!i.contains('\n') && !i.contains("%%"));
            assert_eq!(
                i.matches('/').count(),
                p.iter().filter(|&&b| b == b'/').count()
            );
            assert!(seen.insert(i.clone()), "duplicate {i}");
        }
    }

    #[test]
    fn long_ids_are_shortened_with_a_hash_and_stay_distinct() {
        let long_a = format!("{}/a", "d".repeat(300));
        let long_b = format!("{}/b", "d".repeat(300));
        let (a, b) = (id(long_b.as_bytes().split_at(300).0), id(long_a.as_bytes()));
        assert!(a.len() <= MAX_ID_BYTES);
        assert!(b.split('/').all(|c| c.len() <= MAX_ID_BYTES));
        let (long_a, long_b) = (
            format!("{}a", "d".repeat(300)),
            format!("{}b", "d".repeat(300)),
        );
        let (a, b) = (id(long_a.as_bytes()), id(long_b.as_bytes()));
        assert!(error_name(&a).len() < 255);
        assert_ne!(a, b);
        assert!(a.contains("%%"));
        // Escapes at the cut are never split.
        let escapes = "%".repeat(100);
        let e = id(escapes.as_bytes());
        let prefix = e.split("%%").next().unwrap();
        assert_eq!(prefix.len() % 3, 0, "{prefix}");
        let multibyte = "名".repeat(100);
        assert!(id(multibyte.as_bytes()).len() <= MAX_ID_BYTES);
    }

    #[test]
    fn relative_paths_join_components_with_slashes() {
        assert_eq!(relative_bytes(Path::new("a/./b")), b"a/b");
        assert_eq!(file_id(Path::new("a/b")), "a/b");
    }

    #[test]
    fn the_tree_is_mirrored_with_names_kept_as_they_are() {
        assert_eq!(id(b"essays/a.txt"), "essays/a.txt");
        assert_eq!(id("día/名前 x.md".as_bytes()), "día/名前 x.md");
        assert_eq!(result_name(&id(b"essays/a.txt")), "essays/a.txt.json");
    }

    #[test]
    fn a_folder_is_never_named_like_a_result_or_record_beside_it() {
        // Input `x` (a file) and input folder `x.json/` can live side by side.
        let file = result_name(&id(b"x"));
        let folder = id(b"x.json/y");
        assert_eq!(file, "x.json");
        assert_eq!(folder, "x%2Ejson/y");
        assert_ne!(folder.split('/').next().unwrap(), file);
        // A folder named `x.error.json` either.
        assert_eq!(id(b"x.error.json/y"), "x.error%2Ejson/y");
        assert_ne!(folder_id(b"x.error.json"), "x.error.json");
        // A folder's error record is never a file's result or record.
        let record = error_name(&folder_id(b"d"));
        assert_eq!(record, "d.error.json");
        assert_ne!(record, result_name(&id(b"d.error")));
        // Nor like a multi-file output: input `p` may write `p.files/`
        // beside input folder `p.files/`.
        assert_eq!(id(b"p.files/q"), "p%2Efiles/q");
        assert_eq!(id(b"p.files"), "p.files");
        // Every component is escaped on its own: hidden folders included.
        assert_eq!(id(b".git/x"), "%2Egit/x");
        assert_eq!(id(b"a.error/b.error"), "a%2Eerror/b%2Eerror");
    }
}
