//! Guest ABI v1: the names, tags and encoding both sides of the boundary agree on.
//!
//! This module is the single source of these constants: the host crate
//! (`sandpool`) imports them from here. The full contract, written for
//! authors of non-Rust guests, is in `docs/abi.md`.
//!
//! ```
//! use sandpool_guest::abi;
//! let bytes = abi::encode(&("id", 7u32)).unwrap();
//! let back: (String, u32) = abi::decode(&bytes).unwrap();
//! assert_eq!(back, ("id".to_string(), 7));
//! ```

use serde::{Serialize, de::DeserializeOwned};

/// The ABI version this crate implements; `sandpool_abi_version()` returns it.
///
/// ```
/// assert_eq!(sandpool_guest::abi::ABI_VERSION, 1);
/// ```
pub const ABI_VERSION: u32 = 1;

/// Export: `sandpool_abi_version() -> i32`.
///
/// ```
/// // C: __attribute__((export_name("sandpool_abi_version"))) uint32_t sandpool_abi_version(void)
/// assert_eq!(sandpool_guest::abi::EXPORT_ABI_VERSION, "sandpool_abi_version");
/// ```
pub const EXPORT_ABI_VERSION: &str = "sandpool_abi_version";
/// Export: `sandpool_alloc(len: i32) -> i32`, a buffer of `len` bytes for the input.
///
/// ```
/// // C: __attribute__((export_name("sandpool_alloc"))) uint8_t *sandpool_alloc(uint32_t len)
/// assert_eq!(sandpool_guest::abi::EXPORT_ALLOC, "sandpool_alloc");
/// ```
pub const EXPORT_ALLOC: &str = "sandpool_alloc";
/// Export: `sandpool_run(ptr: i32, len: i32) -> i64`, `(out_ptr << 32) | out_len`.
///
/// ```
/// // C: __attribute__((export_name("sandpool_run"))) uint64_t sandpool_run(uint8_t *ptr, uint32_t len)
/// assert_eq!(sandpool_guest::abi::EXPORT_RUN, "sandpool_run");
/// ```
pub const EXPORT_RUN: &str = "sandpool_run";
/// Export: the module's linear memory.
///
/// ```
/// assert_eq!(sandpool_guest::abi::EXPORT_MEMORY, "memory");
/// ```
pub const EXPORT_MEMORY: &str = "memory";
/// Optional export: WASI reactor initialiser, called once per instance before anything else.
///
/// ```
/// // clang -mexec-model=reactor exports it (C constructors, libc set-up).
/// assert_eq!(sandpool_guest::abi::EXPORT_INITIALIZE, "_initialize");
/// ```
pub const EXPORT_INITIALIZE: &str = "_initialize";

/// Import module of the host functions a guest may use.
///
/// ```
/// assert_eq!(sandpool_guest::abi::IMPORT_MODULE, "sandpool_v1");
/// ```
pub const IMPORT_MODULE: &str = "sandpool_v1";
/// Optional import `sandpool_v1.panic(ptr: i32, len: i32)`: the guest reports a
/// panic message just before it traps.
///
/// ```
/// // WAT: (import "sandpool_v1" "panic" (func (param i32 i32)))
/// assert_eq!(sandpool_guest::abi::IMPORT_PANIC, "panic");
/// ```
pub const IMPORT_PANIC: &str = "panic";

/// Output tag: success; the rest of the output is the bincode-encoded value.
///
/// ```
/// use sandpool_guest::abi;
/// let mut output = vec![abi::TAG_OK];
/// abi::encode_into(&300u32, &mut output).unwrap();
/// assert_eq!(output, [0, 0xfb, 0x2c, 0x01]);
/// ```
pub const TAG_OK: u8 = 0;
/// Output tag: the task returned an error; the rest is its UTF-8 message.
///
/// ```
/// use sandpool_guest::abi;
/// let mut output = vec![abi::TAG_GUEST_ERROR];
/// output.extend_from_slice("empty document".as_bytes());
/// assert_eq!(output[0], 1);
/// ```
pub const TAG_GUEST_ERROR: u8 = 1;
/// Output tag: the guest could not decode its input; the rest is the UTF-8 reason.
///
/// ```
/// use sandpool_guest::abi;
/// let reason = abi::decode::<u32>(&[0xff]).unwrap_err();
/// let mut output = vec![abi::TAG_INPUT_ERROR];
/// output.extend_from_slice(reason.as_bytes());
/// assert_eq!(output[0], 2);
/// ```
pub const TAG_INPUT_ERROR: u8 = 2;

/// The bincode configuration of the boundary: standard (little-endian, varint lengths).
///
/// ```
/// // Little-endian varints: 300 is a 0xFB marker, then 300 as a u16.
/// let bytes = bincode::serde::encode_to_vec(300u32, sandpool_guest::abi::config()).unwrap();
/// assert_eq!(bytes, [0xfb, 0x2c, 0x01]);
/// ```
pub fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` the way the boundary expects.
///
/// ```
/// assert_eq!(sandpool_guest::abi::encode(&5u8).unwrap(), vec![5]);
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Appends the encoding of `value` to `out`.
///
/// ```
/// let mut out = vec![0];
/// sandpool_guest::abi::encode_into(&1u8, &mut out).unwrap();
/// assert_eq!(out, vec![0, 1]);
/// ```
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decodes a whole buffer; trailing bytes are an error.
///
/// ```
/// assert!(sandpool_guest::abi::decode::<u8>(&[1, 2]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // The guest decodes what the host sent: its length already bounds every allocation.
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}
