//! What a task run by `sandpool run` writes for an input: a JSON document
//! (the default, and all that a task returning a JSON string can write),
//! raw bytes with an extension the task names (`.png`, `.csv`), or several
//! named files written together.
//!
//! A task returns [`Output`] instead of [`Json`](crate::Json) to choose.
//! The encoding is compatible with older tasks: [`Output::Json`] travels
//! exactly as a `Json<T>` does (a bincode string), and the other kinds
//! start with the byte [`MARKER`] (`0xFF`), which no bincode string can
//! start with. The format, for authors of non-Rust guests, is in
//! `docs/abi.md` ("Output kinds").
//!
//! ```
//! use sandpool_guest::output::{Output, OutputRef};
//! let out = Output::bytes("csv", b"a,b\n1,2\n".to_vec());
//! let bytes = sandpool_guest::abi::encode(&out).unwrap();
//! assert_eq!(&bytes[..2], &[0xFF, 1]);
//! match OutputRef::decode(&bytes).unwrap() {
//!     OutputRef::Bytes { ext, data } => assert_eq!((ext, data), ("csv", &b"a,b\n1,2\n"[..])),
//!     other => panic!("{other:?}"),
//! }
//! ```

use serde::Serialize;
use serde::ser::SerializeTuple;

/// First byte of a non-JSON output value: a bincode string never starts
/// with it (`0xFF` is not a varint marker).
///
/// ```
/// assert_eq!(sandpool_guest::output::MARKER, 0xFF);
/// ```
pub const MARKER: u8 = 0xFF;

/// Output kind byte after [`MARKER`]: a JSON document (a string follows).
///
/// ```
/// assert_eq!(sandpool_guest::output::KIND_JSON, 0);
/// ```
pub const KIND_JSON: u8 = 0;
/// Output kind byte after [`MARKER`]: raw bytes (extension, then bytes).
///
/// ```
/// assert_eq!(sandpool_guest::output::KIND_BYTES, 1);
/// ```
pub const KIND_BYTES: u8 = 1;
/// Output kind byte after [`MARKER`]: named files (a count, then name and bytes of each).
///
/// ```
/// assert_eq!(sandpool_guest::output::KIND_FILES, 2);
/// ```
pub const KIND_FILES: u8 = 2;

/// Longest extension of a [`Output::Bytes`] output, in bytes.
///
/// ```
/// assert!(sandpool_guest::output::check_ext(&"x".repeat(sandpool_guest::output::MAX_EXT)).is_ok());
/// ```
pub const MAX_EXT: usize = 16;
/// Most files in one [`Output::Files`] output.
///
/// ```
/// assert_eq!(sandpool_guest::output::MAX_FILES, 10_000);
/// ```
pub const MAX_FILES: usize = 10_000;
/// Longest file name in an [`Output::Files`] output, in bytes.
///
/// ```
/// assert!(sandpool_guest::output::check_file_name(&"n".repeat(201)).is_err());
/// ```
pub const MAX_FILE_NAME: usize = 200;

/// Extensions a [`Output::Bytes`] output may not have: they would be read
/// as a JSON result, an error record or a multi-file output.
///
/// ```
/// assert!(sandpool_guest::output::RESERVED_EXTS.contains(&"json"));
/// ```
pub const RESERVED_EXTS: &[&str] = &["json", "files"];

/// One file of an [`Output::Files`] output.
///
/// ```
/// let f = sandpool_guest::output::NamedFile { name: "page-1.txt".into(), data: b"hi".to_vec() };
/// assert_eq!(f.name, "page-1.txt");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// The file's name: one path component (see [`check_file_name`]).
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// What `sandpool run` writes for one input `{id}` (its mirrored path):
///
/// - [`Output::Json`]: `{id}.json`, the document and a newline;
/// - [`Output::Bytes`]: `{id}.{ext}`, the bytes as they are;
/// - [`Output::Files`]: a folder `{id}.files/` holding the files, which
///   appears whole (it is written under a temporary name, then renamed).
///
/// ```
/// use sandpool_guest::output::Output;
/// let json = Output::json(&vec![1, 2]).unwrap();
/// assert_eq!(json, Output::Json("[1,2]".into()));
/// // A JSON output encodes exactly like `Json<T>`: older hosts read it too.
/// let old = sandpool_guest::abi::encode(&sandpool_guest::Json(vec![1, 2])).unwrap();
/// assert_eq!(sandpool_guest::abi::encode(&json).unwrap(), old);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A JSON document (the text is checked by the host, written as it is).
    Json(String),
    /// Raw bytes written to `{id}.{ext}`.
    Bytes {
        /// The extension, without the dot: 1 to [`MAX_EXT`] ASCII letters,
        /// digits, `-` or `_`, not one of [`RESERVED_EXTS`].
        ext: String,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Several files, written together into `{id}.files/`.
    Files(Vec<NamedFile>),
}

impl Output {
    /// A JSON output holding `value`.
    ///
    /// ```
    /// let out = sandpool_guest::output::Output::json(&serde_json::json!({"n": 1})).unwrap();
    /// assert_eq!(out, sandpool_guest::output::Output::Json(r#"{"n":1}"#.into()));
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, String> {
        serde_json::to_string(value)
            .map(Output::Json)
            .map_err(|e| e.to_string())
    }

    /// A raw output with extension `ext` (`"png"`, `"csv"`).
    ///
    /// ```
    /// let out = sandpool_guest::output::Output::bytes("png", vec![0x89, b'P']);
    /// assert!(matches!(out, sandpool_guest::output::Output::Bytes { .. }));
    /// ```
    pub fn bytes(ext: impl Into<String>, data: Vec<u8>) -> Output {
        Output::Bytes {
            ext: ext.into(),
            data,
        }
    }

    /// A multi-file output from `(name, bytes)` pairs.
    ///
    /// ```
    /// let out = sandpool_guest::output::Output::files([("a.txt", b"1".to_vec()), ("b.txt", b"2".to_vec())]);
    /// assert!(matches!(out, sandpool_guest::output::Output::Files(ref f) if f.len() == 2));
    /// ```
    pub fn files<N: Into<String>>(files: impl IntoIterator<Item = (N, Vec<u8>)>) -> Output {
        Output::Files(
            files
                .into_iter()
                .map(|(name, data)| NamedFile {
                    name: name.into(),
                    data,
                })
                .collect(),
        )
    }
}

/// Bytes serialized as a length-prefixed byte string (bincode: varint length, then the bytes).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::Json(text) => s.serialize_str(text),
            Output::Bytes { ext, data } => {
                let mut t = s.serialize_tuple(4)?;
                t.serialize_element(&MARKER)?;
                t.serialize_element(&KIND_BYTES)?;
                t.serialize_element(ext.as_str())?;
                t.serialize_element(&Bytes(data))?;
                t.end()
            }
            Output::Files(files) => {
                let mut t = s.serialize_tuple(3)?;
                t.serialize_element(&MARKER)?;
                t.serialize_element(&KIND_FILES)?;
                let pairs: Vec<(&str, Bytes<'_>)> = files
                    .iter()
                    .map(|f| (f.name.as_str(), Bytes(&f.data)))
                    .collect();
                t.serialize_element(&pairs)?;
                t.end()
            }
        }
    }
}

/// A decoded output value, borrowing from the output bytes (what the host
/// reads; see [`OutputRef::decode`]).
///
/// ```
/// let bytes = sandpool_guest::abi::encode(&sandpool_guest::Json(7)).unwrap();
/// let out = sandpool_guest::output::OutputRef::decode(&bytes).unwrap();
/// assert_eq!(out, sandpool_guest::output::OutputRef::Json("7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputRef<'a> {
    /// A JSON document's text (not yet checked to be JSON).
    Json(&'a str),
    /// Raw bytes and their extension (checked by [`check_ext`]).
    Bytes {
        /// The extension, without the dot.
        ext: &'a str,
        /// The bytes.
        data: &'a [u8],
    },
    /// Named files (each name checked by [`check_file_name`], no two alike).
    Files(Vec<(&'a str, &'a [u8])>),
}

/// A reader of the bincode encoding that checks every length against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or("the output ends early (a byte is missing)")?;
        self.bytes = rest;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        if n > self.bytes.len() as u64 {
            return Err(format!(
                "a length of {n} bytes runs past the end of the output ({} bytes left)",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n as usize);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let fixed = |r: &mut Self, n: u64| -> Result<u64, String> {
            let b = r.take(n)?;
            let mut v = [0u8; 8];
            v[..b.len()].copy_from_slice(b);
            Ok(u64::from_le_bytes(v))
        };
        match self.byte()? {
            b @ 0..=250 => Ok(u64::from(b)),
            251 => fixed(self, 2),
            252 => fixed(self, 4),
            253 => fixed(self, 8),
            b => Err(format!("invalid length marker 0x{b:02X}")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(n)
    }

    fn text(&mut self, what: &str) -> Result<&'a str, String> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| format!("{what} is not UTF-8: {e}"))
    }
}

impl<'a> OutputRef<'a> {
    /// Decodes an output value (the bytes after the result tag), checking
    /// the extension and file names; trailing bytes are an error. Lengths
    /// are checked against the bytes present before anything is read, so a
    /// hostile length costs nothing.
    ///
    /// ```
    /// use sandpool_guest::output::{Output, OutputRef};
    /// let out = Output::files([("a.txt", b"1".to_vec())]);
    /// let bytes = sandpool_guest::abi::encode(&out).unwrap();
    /// assert_eq!(OutputRef::decode(&bytes).unwrap(), OutputRef::Files(vec![("a.txt", &b"1"[..])]));
    /// let bad = sandpool_guest::abi::encode(&Output::files([("../x", vec![])])).unwrap();
    /// assert!(OutputRef::decode(&bad).unwrap_err().contains("../x"));
    /// ```
    pub fn decode(bytes: &'a [u8]) -> Result<OutputRef<'a>, String> {
        let mut r = Reader { bytes };
        let out = if bytes.first() == Some(&MARKER) {
            r.byte()?;
            match r.byte()? {
                KIND_JSON => OutputRef::Json(r.text("the JSON output")?),
                KIND_BYTES => {
                    let ext = r.text("the extension")?;
                    check_ext(ext)?;
                    OutputRef::Bytes {
                        ext,
                        data: r.bytes()?,
                    }
                }
                KIND_FILES => {
                    let count = r.varint()?;
                    if count > MAX_FILES as u64 {
                        return Err(format!(
                            "{count} files in one output, over the limit of {MAX_FILES}"
                        ));
                    }
                    let mut files: Vec<(&str, &[u8])> = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        let name = r.text("a file name")?;
                        check_file_name(name)?;
                        files.push((name, r.bytes()?));
                    }
                    let mut names: Vec<&str> = files.iter().map(|f| f.0).collect();
                    names.sort_unstable();
                    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                        return Err(format!("two files are named {:?}", w[0]));
                    }
                    OutputRef::Files(files)
                }
                k => {
                    return Err(format!(
                        "unknown output kind {k} (expected {KIND_JSON}, {KIND_BYTES} or {KIND_FILES})"
                    ));
                }
            }
        } else {
            OutputRef::Json(r.text("the JSON output")?)
        };
        if !r.bytes.is_empty() {
            return Err(format!("{} trailing bytes after the value", r.bytes.len()));
        }
        Ok(out)
    }

    /// The kind's name: `json`, `bytes` or `files`.
    ///
    /// ```
    /// assert_eq!(sandpool_guest::output::OutputRef::Json("1").kind(), "json");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            OutputRef::Json(_) => "json",
            OutputRef::Bytes { .. } => "bytes",
            OutputRef::Files(_) => "files",
        }
    }
}

/// Checks a raw output's extension: 1 to [`MAX_EXT`] ASCII letters,
/// digits, `-` or `_`, and not one of [`RESERVED_EXTS`] (in any case).
///
/// ```
/// use sandpool_guest::output::check_ext;
/// assert!(check_ext("png").is_ok());
/// assert!(check_ext("tar.gz").is_err());
/// assert!(check_ext("JSON").is_err());
/// ```
pub fn check_ext(ext: &str) -> Result<(), String> {
    let ok_chars = ext
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ext.is_empty() || ext.len() > MAX_EXT || !ok_chars {
        return Err(format!(
            "output extension {ext:?} is not 1 to {MAX_EXT} ASCII letters, digits, `-` or `_`"
        ));
    }
    if RESERVED_EXTS.iter().any(|r| r.eq_ignore_ascii_case(ext)) {
        return Err(format!(
            "output extension {ext:?} is reserved (use Output::Json for JSON)"
        ));
    }
    Ok(())
}

/// Checks a file name of a multi-file output: one path component of 1 to
/// [`MAX_FILE_NAME`] bytes, no `/`, `\`, NUL or control character, not
/// starting with `.` (no hidden files, no `.` or `..`).
///
/// ```
/// use sandpool_guest::output::check_file_name;
/// assert!(check_file_name("page 1.txt").is_ok());
/// assert!(check_file_name("a/b").is_err());
/// assert!(check_file_name(".hidden").is_err());
/// ```
pub fn check_file_name(name: &str) -> Result<(), String> {
    let bad_char = name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control());
    if name.is_empty() || name.len() > MAX_FILE_NAME || bad_char || name.starts_with('.') {
        return Err(format!(
            "output file name {name:?} is not one path component of 1 to {MAX_FILE_NAME} bytes \
             without `/`, `\\` or control characters, not starting with `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_json_matches_the_old_encoding() {
        let cases = [
            Output::Json("{\"a\":1}".into()),
            Output::bytes("png", vec![0; 300]),
            Output::files([("a", vec![1]), ("b.txt", vec![])]),
        ];
        for out in cases {
            let bytes = crate::abi::encode(&out).unwrap();
            let back = OutputRef::decode(&bytes).unwrap();
            match (&out, back) {
                (Output::Json(t), OutputRef::Json(b)) => assert_eq!(t, b),
                (Output::Bytes { ext, data }, OutputRef::Bytes { ext: e, data: d }) => {
                    assert_eq!((ext.as_str(), data.as_slice()), (e, d));
                }
                (Output::Files(f), OutputRef::Files(g)) => {
                    assert_eq!(f.len(), g.len());
                    for (a, b) in f.iter().zip(g) {
                        assert_eq!((a.name.as_str(), a.data.as_slice()), b);
                    }
                }
                (a, b) => panic!("{a:?} came back as {b:?}"),
            }
        }
        // The marker form of JSON decodes too (for guests in other languages).
        assert_eq!(
            OutputRef::decode(&[MARKER, KIND_JSON, 1, b'7']).unwrap(),
            OutputRef::Json("7")
        );
    }

    #[test]
    fn bad_outputs_are_refused_with_a_reason() {
        let enc = |o: &Output| crate::abi::encode(o).unwrap();
        let dup = enc(&Output::files([("a", vec![]), ("a", vec![])]));
        assert!(OutputRef::decode(&dup).unwrap_err().contains("two files"));
        assert!(OutputRef::decode(&enc(&Output::bytes("json", vec![]))).is_err());
        assert!(OutputRef::decode(&enc(&Output::bytes("", vec![]))).is_err());
        assert!(
            OutputRef::decode(&[MARKER, 9])
                .unwrap_err()
                .contains("kind 9")
        );
        // A length far past the end is refused before anything is allocated.
        let huge = [MARKER, KIND_BYTES, 1, b'x', 253, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(
            OutputRef::decode(&huge)
                .unwrap_err()
                .contains("past the end")
        );
        let mut trailing = enc(&Output::Json("1".into()));
        trailing.push(0);
        assert!(
            OutputRef::decode(&trailing)
                .unwrap_err()
                .contains("trailing")
        );
        assert!(OutputRef::decode(&[]).is_err());
    }
}
