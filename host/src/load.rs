//! Load-time limits: what a module may cost the host before any task runs.
//!
//! Compiling is the one step a hostile module can make expensive without
//! running: a few megabytes of wasm in one function can take Cranelift
//! tens of seconds, and a file can be arbitrarily large. So, before
//! compiling, sandpool refuses a module over [`LoadLimits::max_module_size`]
//! (checked on the file's size before it is read) or with a function body
//! over [`LoadLimits::max_function_size`], and compiles with a deadline,
//! [`LoadLimits::compile_timeout`]. All three fail with
//! [`Error::InvalidModule`](crate::Error::InvalidModule).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::Error;

/// Compilations running on helper threads, abandoned ones included.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one compilation in [`LoadLimits::compilations_in_flight`] while it lives.
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Limits on loading (parsing, compiling and checking) one task module.
///
/// ```
/// use std::time::Duration;
/// let limits = sandpool::LoadLimits::default()
///     .max_module_size(16 << 20)
///     .compile_timeout(Duration::from_secs(5));
/// assert_eq!(limits.max_module_size, 16 << 20);
/// assert_eq!(limits.max_function_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadLimits {
    /// The largest module accepted, in bytes (binary or text as given).
    /// Default: 64 MiB.
    pub max_module_size: usize,
    /// The largest single function body accepted, in bytes of binary wasm.
    /// Compile time grows faster than linearly with it. Default: 1 MiB
    /// (wasmtime's own cap is about 7.3 MiB).
    pub max_function_size: usize,
    /// How long compiling and checking a module may take. `None`: no limit.
    /// Default: 60 s. Compilation cannot be interrupted: when the deadline
    /// passes the load fails at once, and the compiler thread finishes in
    /// the background (its work bounded by the two size limits) and is
    /// discarded.
    pub compile_timeout: Option<Duration>,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_module_size: 64 << 20,
            max_function_size: 1 << 20,
            compile_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl LoadLimits {
    /// Sets the module-size cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_module_size(1 << 20).max_module_size, 1 << 20);
    /// ```
    pub fn max_module_size(mut self, bytes: usize) -> Self {
        self.max_module_size = bytes;
        self
    }

    /// Sets the function-body-size cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_function_size(4096).max_function_size, 4096);
    /// ```
    pub fn max_function_size(mut self, bytes: usize) -> Self {
        self.max_function_size = bytes;
        self
    }

    /// Sets the compile deadline.
    ///
    /// ```
    /// let l = sandpool::LoadLimits::default().compile_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(l.compile_timeout, Some(std::time::Duration::from_secs(1)));
    /// ```
    pub fn compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = Some(timeout);
        self
    }

    /// Removes the compile deadline.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().no_compile_timeout().compile_timeout, None);
    /// ```
    pub fn no_compile_timeout(mut self) -> Self {
        self.compile_timeout = None;
        self
    }

    /// How many module compilations are running right now on sandpool's
    /// compiler threads, including those abandoned at their
    /// [`compile_timeout`](Self::compile_timeout) and still finishing in the
    /// background. It drops back to 0 once they end: a compilation is never
    /// left running for ever.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::compilations_in_flight(), 0);
    /// ```
    pub fn compilations_in_flight() -> usize {
        IN_FLIGHT.load(Ordering::SeqCst)
    }

    /// Refuses a module of `size` bytes over the cap.
    pub(crate) fn check_size(&self, name: &str, size: u64) -> Result<(), Error> {
        if size > self.max_module_size as u64 {
            return Err(Error::InvalidModule {
                module: name.to_string(),
                reason: format!(
                    "the module is {size} bytes, over the limit of {} bytes (LoadLimits::max_module_size)",
                    self.max_module_size
                ),
            });
        }
        Ok(())
    }

    /// Checks `wasm` (binary or text) against the size caps without compiling it.
    /// Malformed modules pass: the compiler reports them with a better message.
    pub(crate) fn check(&self, name: &str, wasm: &[u8]) -> Result<(), Error> {
        self.check_size(name, wasm.len() as u64)?;
        let binary;
        let bytes = if wasm.starts_with(b"\0asm") {
            wasm
        } else {
            match wat::parse_bytes(wasm) {
                Ok(parsed) => {
                    binary = parsed.into_owned();
                    &binary[..]
                }
                Err(_) => return Ok(()),
            }
        };
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                return Ok(());
            };
            if let wasmparser::Payload::CodeSectionEntry(body) = payload {
                let size = body.range().len();
                if size > self.max_function_size {
                    return Err(Error::InvalidModule {
                        module: name.to_string(),
                        reason: format!(
                            "a function body is {size} bytes, over the limit of {} bytes \
                             (LoadLimits::max_function_size)",
                            self.max_function_size
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The error for a compilation that missed its deadline.
    pub(crate) fn timed_out(&self, name: &str) -> Error {
        Error::InvalidModule {
            module: name.to_string(),
            reason: format!(
                "compiling and checking the module took longer than {:?} (LoadLimits::compile_timeout)",
                self.compile_timeout.unwrap_or_default()
            ),
        }
    }
}
