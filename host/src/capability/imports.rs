//! The `sandpool_v1` capability imports and the per-task accounting:
//!
//! - `call(name_ptr, name_len, req_ptr, req_len) -> i64`: runs capability
//!   `name` on the request bytes; returns the response's length, the
//!   response waiting in the host for `call_result`.
//! - `call_result(ptr, len) -> i32`: copies the waiting response to `ptr`
//!   (`len` must be at least its length); returns its length, `-1` when no
//!   response waits, `-2` when `len` is too small (the response keeps waiting).
//!
//! Every failure of a call (name not granted, a cap of [`Limits`] reached, a
//! range outside linear memory, the handler's error, panic or deadline)
//! fails the task with [`Error::Capability`](crate::Error::Capability):
//! the guest never sees a half-done call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Linker};

use super::Session;
use crate::limits::Limits;
use crate::sandbox::HostState;
use crate::sandbox::memory::{memory, slice, slice_mut};

/// Import `call`.
pub(crate) const IMPORT_CALL: &str = "call";
/// Import `call_result`.
pub(crate) const IMPORT_CALL_RESULT: &str = "call_result";

/// `call_result`: no response is waiting.
pub(crate) const NO_RESPONSE: i32 = -1;
/// `call_result`: the buffer is smaller than the response.
pub(crate) const BUFFER_TOO_SMALL: i32 = -2;

/// Why a call failed the task; `runtime::trap::classify` turns it into
/// [`Error::Capability`](crate::Error::Capability) for the task.
#[derive(Debug)]
pub(crate) struct CallFailure {
    pub capability: String,
    pub reason: String,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "capability `{}` failed: {}",
            self.capability, self.reason
        )
    }
}

impl std::error::Error for CallFailure {}

/// Answers calls somewhere else: a `sandpool worker` forwards them to the
/// pool's process over the frame protocol.
pub(crate) trait Forward: Send + Sync {
    /// Runs `name` on `request` in the pool's process; `remaining` is the
    /// task's time left. The error is the reason the call failed.
    fn call(
        &self,
        name: &str,
        request: &[u8],
        remaining: Option<Duration>,
    ) -> Result<Vec<u8>, String>;
}

/// Who answers a task's calls.
#[derive(Clone)]
pub(crate) enum CallBackend {
    /// The pool's own session, in this process.
    Local(Arc<Session>),
    /// The pool's process, through a worker's protocol channel.
    Forward(Arc<dyn Forward>),
}

/// One task's calls: who answers them, what it has used, the waiting response.
pub(crate) struct CallState {
    backend: CallBackend,
    deadline: Option<Instant>,
    limits: Limits,
    calls: u32,
    request_bytes: u64,
    response_bytes: u64,
    pending: Option<Vec<u8>>,
    /// Polled while a threaded handler runs (the in-process abort).
    abort: Option<Box<dyn Fn() -> bool + Send>>,
}

impl CallState {
    /// The call state of a task that started now under `limits`.
    pub fn new(backend: CallBackend, limits: &Limits) -> Box<Self> {
        Box::new(CallState {
            backend,
            deadline: limits.timeout.map(|t| Instant::now() + t),
            limits: *limits,
            calls: 0,
            request_bytes: 0,
            response_bytes: 0,
            pending: None,
            abort: crate::exec::abort::current_abort_flag(),
        })
    }
}

fn fail(capability: &str, reason: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(CallFailure {
        capability: capability.to_string(),
        reason: reason.into(),
    })
}

fn call(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    req_ptr: i32,
    req_len: i32,
) -> wasmtime::Result<i64> {
    let (mem, state) = memory(&mut caller).map_err(|_| fail("?", "the module has no memory"))?;
    let name_len = name_len as u32 as usize;
    let name = match slice(mem, name_ptr, name_len.min(super::MAX_NAME + 1)) {
        Ok(bytes) if name_len <= super::MAX_NAME => match std::str::from_utf8(bytes) {
            Ok(name) => name,
            Err(_) => {
                return Err(fail(
                    &String::from_utf8_lossy(bytes),
                    "the name is not UTF-8",
                ));
            }
        },
        Ok(_) => {
            return Err(fail(
                "?",
                format!(
                    "the name is {name_len} bytes long, over the limit of {}",
                    super::MAX_NAME
                ),
            ));
        }
        Err(_) => {
            return Err(fail(
                "?",
                format!("the name at {name_ptr:#x}+{name_len} is outside linear memory"),
            ));
        }
    };
    let Some(calls) = state.calls.as_deref_mut() else {
        return Err(fail(
            name,
            "this pool grants no capabilities (PoolBuilder::capability)",
        ));
    };
    let req_len = req_len as u32 as usize;
    let Ok(request) = slice(mem, req_ptr, req_len) else {
        return Err(fail(
            name,
            format!("the request at {req_ptr:#x}+{req_len} is outside linear memory"),
        ));
    };
    let response = calls
        .dispatch(name, request)
        .map_err(wasmtime::Error::new)?;
    let len = response.len();
    calls.pending = Some(response);
    Ok(len as i64)
}

impl CallState {
    /// Runs one call of the task: checks the per-task caps, asks the
    /// backend (in this process or forwarded to the pool's) and counts the
    /// response against its cap. Shared by the ABI v1 import above and the
    /// component import (`component/`), so both enforce the same limits
    /// with the same messages.
    pub(crate) fn dispatch(&mut self, name: &str, request: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let fail = |reason: String| CallFailure {
            capability: name.to_string(),
            reason,
        };
        if self.calls >= self.limits.max_calls {
            return Err(fail(format!(
                "the task made {} calls, the limit (Limits::max_calls)",
                self.limits.max_calls
            )));
        }
        let req_len = request.len() as u64;
        let total = self.request_bytes.saturating_add(req_len);
        if total > self.limits.max_call_request {
            return Err(fail(format!(
                "a request of {req_len} bytes brings the task's requests to {total} bytes, \
                 over the limit of {} (Limits::max_call_request)",
                self.limits.max_call_request
            )));
        }
        self.calls += 1;
        self.request_bytes = total;
        self.pending = None;
        let result = match &self.backend {
            CallBackend::Local(session) => {
                let abort = self.abort.as_deref();
                let never = || false;
                session.call(name, request, self.deadline, abort.unwrap_or(&never))
            }
            CallBackend::Forward(forward) => {
                let remaining = self
                    .deadline
                    .map(|d| d.saturating_duration_since(Instant::now()));
                forward.call(name, request, remaining)
            }
        };
        let response = result.map_err(fail)?;
        let len = response.len() as u64;
        let total = self.response_bytes.saturating_add(len);
        if total > self.limits.max_call_response {
            return Err(fail(format!(
                "a response of {len} bytes brings the task's responses to {total} bytes, \
                 over the limit of {} (Limits::max_call_response)",
                self.limits.max_call_response
            )));
        }
        self.response_bytes = total;
        Ok(response)
    }
}

fn call_result(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let (mem, state) = memory(&mut caller).map_err(|_| fail("?", "the module has no memory"))?;
    let Some(calls) = state.calls.as_deref_mut() else {
        return Ok(NO_RESPONSE);
    };
    let Some(response) = calls.pending.as_ref() else {
        return Ok(NO_RESPONSE);
    };
    if (len as u32 as usize) < response.len() {
        return Ok(BUFFER_TOO_SMALL);
    }
    let Ok(out) = slice_mut(mem, ptr, response.len()) else {
        return Err(fail(
            "?",
            format!(
                "call_result: the buffer at {ptr:#x}+{} is outside linear memory",
                response.len()
            ),
        ));
    };
    out.copy_from_slice(response);
    let n = response.len() as i32;
    calls.pending = None;
    Ok(n)
}

/// Defines `sandpool_v1.call` and `sandpool_v1.call_result`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let module = sandpool_guest::abi::IMPORT_MODULE;
    linker.func_wrap(module, IMPORT_CALL, call)?;
    linker.func_wrap(module, IMPORT_CALL_RESULT, call_result)?;
    Ok(())
}
