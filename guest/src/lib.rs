//! # sandpool-guest: write sandpool tasks as plain Rust functions
//!
//! A sandpool task is a WebAssembly module that turns one serialized input
//! into one serialized output. This crate hides the module's side of the
//! boundary (the [guest ABI v1](abi)): allocation of the input buffer,
//! bincode decoding and encoding, error reporting, and turning panics into
//! an error the host can name.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! pub struct Job { pub text: String }
//!
//! #[derive(Serialize)]
//! pub struct Summary { pub words: usize }
//!
//! pub fn summarize(job: Job) -> Result<Summary, String> {
//!     Ok(Summary { words: job.text.split_whitespace().count() })
//! }
//!
//! // In a `cdylib` crate built for `wasm32-wasip1`, this exports the ABI:
//! sandpool_guest::export_task!(summarize);
//! # fn main() {}
//! ```
//!
//! Build the crate with `crate-type = ["cdylib"]` for `wasm32-wasip1` and
//! hand the `.wasm` file to the host (`sandpool::Task::from_file`, or
//! `sandpool run task.wasm inputs/`).
//!
//! ## Layout
//! - [`abi`]: the export names, result tags and version shared with the host.
//! - [`export_task!`]: the macro that exports a function as a task.
//! - [`FileInput`] and [`Json`]: the wire types the `sandpool run` command uses.
//! - [`workloads`]: reference workloads used by the example guests and the
//!   host's native baselines (feature `workloads`, on by default).

use std::fmt::Display;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

pub mod abi;
pub mod call;
pub mod output;
pub use call::{CallError, call}; // host capabilities (issue 12)
#[cfg(feature = "workloads")]
pub mod workloads;

/// The input `sandpool run` passes to a task: one file of the input folder.
///
/// ```
/// let input = sandpool_guest::FileInput { name: "a/b.txt".into(), data: b"hello".to_vec() };
/// assert_eq!(input.text(), "hello");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInput {
    /// The file's path relative to the input folder, with `/` separators.
    pub name: String,
    /// The file's bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl FileInput {
    /// The file's bytes decoded as UTF-8, invalid sequences replaced by U+FFFD.
    ///
    /// ```
    /// let input = sandpool_guest::FileInput { name: "x".into(), data: vec![b'a', 0xff] };
    /// assert_eq!(input.text(), "a\u{fffd}");
    /// ```
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }
}

/// A value that crosses the boundary as a JSON document (a string).
///
/// `sandpool run` writes each task's output to `{id}.json`, so a task used
/// from the command line returns `Json<T>` (or [`output::Output`] to write
/// raw bytes or several files instead). On the host, `Json<T>` decodes
/// the same bytes back into `T`, or `Json<serde_json::Value>` into any JSON.
///
/// ```
/// use sandpool_guest::Json;
/// let bytes = bincode::serde::encode_to_vec(Json(vec![1, 2]), bincode::config::standard()).unwrap();
/// let (back, _): (Json<Vec<u32>>, usize) =
///     bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
/// assert_eq!(back.0, vec![1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text)
            .map(Json)
            .map_err(serde::de::Error::custom)
    }
}

/// Exports a function `fn(In) -> Result<Out, E>` as a sandpool task.
///
/// `In: DeserializeOwned`, `Out: Serialize`, `E: Display`. The macro
/// defines the ABI v1 exports (`sandpool_abi_version`, `sandpool_alloc`,
/// `sandpool_run`) and installs a panic hook that reports the panic message
/// to the host before the module aborts. Invoke it once per crate.
///
/// ```
/// fn double(x: u64) -> Result<u64, std::convert::Infallible> { Ok(x * 2) }
/// sandpool_guest::export_task!(double);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_task {
    ($task:path) => {
        /// ABI version of this task module (sandpool guest ABI).
        #[unsafe(no_mangle)]
        pub extern "C" fn sandpool_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// Allocates the input buffer the host writes into.
        #[unsafe(no_mangle)]
        pub extern "C" fn sandpool_alloc(len: u32) -> u32 {
            $crate::__private::alloc(len)
        }

        /// Runs the task on the input at `ptr..ptr+len`; returns `(out_ptr << 32) | out_len`.
        #[unsafe(no_mangle)]
        pub extern "C" fn sandpool_run(ptr: u32, len: u32) -> u64 {
            // SAFETY: the host passes back the buffer `sandpool_alloc(len)` returned.
            unsafe { $crate::__private::run(ptr, len, $task) }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    //! Implementation of the exports generated by [`export_task!`](crate::export_task).

    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// The last output, kept alive until the next call so the host can read it.
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// Allocates a zeroed input buffer of `len` bytes and leaks it to the host.
    pub fn alloc(len: u32) -> u32 {
        let buf: Box<[u8]> = vec![0u8; len as usize].into_boxed_slice();
        Box::into_raw(buf).cast::<u8>() as usize as u32
    }

    /// Decodes the input, calls `task`, and stores the tagged output.
    ///
    /// # Safety
    /// `ptr`/`len` must be a buffer returned by [`alloc`] with the same `len`,
    /// not yet passed to `run`.
    pub unsafe fn run<In, Out, E>(ptr: u32, len: u32, task: fn(In) -> Result<Out, E>) -> u64
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: Display,
    {
        install_panic_hook();
        let slice = std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len as usize);
        // SAFETY: per the contract, this is the box `alloc` leaked.
        let input: Box<[u8]> = unsafe { Box::from_raw(slice) };
        let mut out = Vec::new();
        match crate::abi::decode::<In>(&input) {
            Err(e) => {
                out.push(crate::abi::TAG_INPUT_ERROR);
                out.extend_from_slice(e.as_bytes());
            }
            Ok(value) => {
                drop(input);
                match task(value) {
                    Ok(output) => {
                        out.push(crate::abi::TAG_OK);
                        if let Err(e) = crate::abi::encode_into(&output, &mut out) {
                            out.clear();
                            out.push(crate::abi::TAG_GUEST_ERROR);
                            out.extend_from_slice(format!("cannot encode output: {e}").as_bytes());
                        }
                    }
                    Err(e) => {
                        out.push(crate::abi::TAG_GUEST_ERROR);
                        out.extend_from_slice(e.to_string().as_bytes());
                    }
                }
            }
        }
        OUTPUT.with(|slot| {
            let mut slot = slot.borrow_mut();
            *slot = out;
            ((slot.as_ptr() as usize as u64) << 32) | slot.len() as u64
        })
    }

    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = info.to_string();
                report_panic(message.as_bytes());
            }));
        });
    }

    #[cfg(target_family = "wasm")]
    fn report_panic(message: &[u8]) {
        #[link(wasm_import_module = "sandpool_v1")]
        unsafe extern "C" {
            fn panic(ptr: *const u8, len: usize);
        }
        // SAFETY: the host reads `len` bytes at `ptr` from linear memory and copies them.
        unsafe { panic(message.as_ptr(), message.len()) }
    }

    #[cfg(not(target_family = "wasm"))]
    fn report_panic(message: &[u8]) {
        eprintln!("{}", String::from_utf8_lossy(message));
    }
}
