//! Calling host capabilities: named, typed functions the pool grants (a
//! database lookup, a shared model). Declare the names the module needs with
//! [`capabilities!`](crate::capabilities) (a pool that does not grant one of
//! them refuses the module), then [`call`] them.
//!
//! ```no_run
//! sandpool_guest::capabilities!("db.lookup");
//!
//! fn enrich(id: u64) -> Result<String, String> {
//!     let name: Option<String> =
//!         sandpool_guest::call("db.lookup", &id).map_err(|e| e.to_string())?;
//!     Ok(name.unwrap_or_default())
//! }
//! ```
//!
//! The contract for other languages (imports `sandpool_v1.call` and
//! `sandpool_v1.call_result`, the custom section) is in `docs/abi.md`.

use serde::{Serialize, de::DeserializeOwned};

/// The custom section that lists the capabilities a module may call.
///
/// ```
/// assert_eq!(sandpool_guest::call::SECTION, "sandpool.capabilities");
/// ```
pub const SECTION: &str = "sandpool.capabilities";

/// Import `sandpool_v1.call(name_ptr, name_len, req_ptr, req_len) -> i64`.
///
/// ```
/// assert_eq!(sandpool_guest::call::IMPORT_CALL, "call");
/// ```
pub const IMPORT_CALL: &str = "call";

/// Import `sandpool_v1.call_result(ptr, len) -> i32`.
///
/// ```
/// assert_eq!(sandpool_guest::call::IMPORT_CALL_RESULT, "call_result");
/// ```
pub const IMPORT_CALL_RESULT: &str = "call_result";

/// Why a call did not produce a value. Failures on the host's side (the
/// handler's error, a cap reached, a name not granted) do not come back
/// here: they fail the task, and the host reports them.
///
/// ```
/// let e = sandpool_guest::call::CallError::Decode("unexpected end".into());
/// assert!(e.to_string().contains("unexpected end"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The request could not be encoded.
    Encode(String),
    /// The response could not be decoded as the expected type.
    Decode(String),
    /// The host answered with an unexpected status code.
    Host(i64),
    /// Not running inside a sandpool host (e.g. a native unit test).
    Unavailable,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Encode(e) => write!(f, "cannot encode the request: {e}"),
            CallError::Decode(e) => write!(f, "cannot decode the response: {e}"),
            CallError::Host(code) => write!(f, "the host answered status {code}"),
            CallError::Unavailable => f.write_str("capabilities need a sandpool host"),
        }
    }
}

impl std::error::Error for CallError {}

/// Calls capability `name` with `request`; returns its response.
///
/// ```
/// // Outside a sandpool host there is nothing to call.
/// let r = sandpool_guest::call::<u64, u64>("math.double", &2);
/// assert_eq!(r, Err(sandpool_guest::call::CallError::Unavailable));
/// ```
pub fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
    name: &str,
    request: &Req,
) -> Result<Resp, CallError> {
    let bytes = crate::abi::encode(request).map_err(CallError::Encode)?;
    let response = call_raw(name, &bytes)?;
    crate::abi::decode(&response).map_err(CallError::Decode)
}

/// Calls capability `name` with request bytes already encoded; returns the
/// response's bytes.
///
/// ```
/// assert!(sandpool_guest::call::call_raw("x", &[]).is_err());
/// ```
pub fn call_raw(name: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
    imp::call_raw(name, request)
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::CallError;

    #[link(wasm_import_module = "sandpool_v1")]
    unsafe extern "C" {
        fn call(name_ptr: *const u8, name_len: usize, req_ptr: *const u8, req_len: usize) -> i64;
        fn call_result(ptr: *mut u8, len: usize) -> i32;
    }

    pub(super) fn call_raw(name: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
        // SAFETY: the host reads `name` and `request` from linear memory; both are live slices.
        let len = unsafe { call(name.as_ptr(), name.len(), request.as_ptr(), request.len()) };
        let Ok(len) = usize::try_from(len) else {
            return Err(CallError::Host(len));
        };
        let mut out = vec![0u8; len];
        if len == 0 {
            return Ok(out);
        }
        // SAFETY: the host writes at most `len` bytes into `out`, which has `len` bytes.
        let got = unsafe { call_result(out.as_mut_ptr(), out.len()) };
        if got as usize != len {
            return Err(CallError::Host(got.into()));
        }
        Ok(out)
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::CallError;

    pub(super) fn call_raw(_name: &str, _request: &[u8]) -> Result<Vec<u8>, CallError> {
        Err(CallError::Unavailable)
    }
}

/// Copies `s` into an array of `N` bytes (for [`capabilities!`](crate::capabilities)).
#[doc(hidden)]
pub const fn __section_bytes<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declares the capabilities this module calls: the names go into the
/// module's `sandpool.capabilities` custom section, which the host reads at
/// load (a pool that does not grant one of them refuses the module) and
/// `sandpool inspect` lists. May be used more than once per module.
///
/// ```
/// sandpool_guest::capabilities!("db.lookup", "model.classify");
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! capabilities {
    ($($name:literal),+ $(,)?) => {
        const _: () = {
            const NAMES: &str = concat!($($name, "\n"),+);
            #[cfg_attr(target_family = "wasm", unsafe(link_section = "sandpool.capabilities"))]
            #[used]
            static SANDPOOL_CAPABILITIES: [u8; NAMES.len()] =
                $crate::call::__section_bytes::<{ NAMES.len() }>(NAMES);
        };
    };
}
