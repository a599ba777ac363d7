//! The messages of the supervisor ↔ worker protocol, and their conversion
//! from and to the library's own types.
//!
//! ```text
//! supervisor                              worker (`sandpool worker`)
//!   Hello { magic, protocol, version,  ─▶   load the module once
//!           module files + hashes }    ◀─   Ready { pid, precompiled?, load time } | Refused(why)
//!   Request { id, index, limits, input } ─▶ fresh instance, run under the limits
//!                                      ◀─   Done(Response { id, result, logs }) | ProtocolError(why)
//!   (stdin closed)                     ─▶   exit 0
//! ```
//!
//! Every message is one frame ([`super::frame`]). Errors cross as
//! [`WireError`] without their [`TaskRef`]; the supervisor puts its own back.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, TaskRef};
use crate::instance::TaskLogs;
use crate::limits::Limits;
use crate::wasi::CapturedStream;

/// First bytes of every `Hello`.
pub(crate) const MAGIC: [u8; 8] = *b"SANDPOOL";

/// Version of this protocol; both sides must agree.
pub(crate) const PROTOCOL: u32 = 1;

/// The sandpool version both sides must share.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bound on a handshake frame in either direction.
pub(crate) const MAX_HANDSHAKE: usize = 1 << 20;

/// Bound on a request frame: the largest input a worker accepts, plus room for the rest.
pub(crate) const MAX_REQUEST: usize = MAX_INPUT + (64 << 10);

/// The largest encoded input the process executor sends (1 GiB).
pub(crate) const MAX_INPUT: usize = 1 << 30;

/// Room in a response frame beyond the output and logs (error messages, framing).
const RESPONSE_SLACK: u64 = 1 << 20;

/// Bound on a response frame for a task run under `limits`.
pub(crate) fn max_response(limits: &Limits) -> usize {
    let bound = limits
        .max_output
        .saturating_add((limits.max_log as u64).saturating_mul(2))
        .saturating_add(RESPONSE_SLACK)
        .min(u32::MAX as u64);
    usize::try_from(bound).unwrap_or(u32::MAX as usize)
}

/// The leading fields of a `Hello`, decodable whatever follows them, so a
/// worker of another version can still say why it refuses.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Greeting {
    pub magic: [u8; 8],
    pub protocol: u32,
    pub version: String,
}

/// A module file handed to the worker, with the SHA-256 its bytes must have.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct FileRef {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub sha256: [u8; 32],
}

/// Supervisor → worker, once: which module to load.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Hello {
    pub greeting: Greeting,
    /// The task's name (for errors).
    pub name: String,
    /// Compile for the fuel-metered engine.
    pub fuel: bool,
    /// The wasm bytes (fallback: compile them).
    pub wasm: FileRef,
    /// The precompiled module with its header (see `handoff`), when the pool hands one over.
    pub precompiled: Option<FileRef>,
}

/// Worker → supervisor, once: the outcome of the `Hello`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Handshake {
    /// The module is loaded; tasks may come.
    Ready(ReadyInfo),
    /// The worker cannot serve this module or this supervisor.
    Refused(String),
}

/// How a worker loaded its module.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct ReadyInfo {
    pub pid: u32,
    /// Loaded from the precompiled module (false: compiled from wasm).
    pub precompiled: bool,
    /// Why the precompiled module was not used, if one was offered.
    pub fallback: Option<String>,
    /// Time spent loading the module (deserialize or compile, then checks).
    pub load: Duration,
}

/// [`Limits`] on the wire.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireLimits {
    pub timeout: Option<Duration>,
    pub fuel: Option<u64>,
    pub memory: u64,
    pub max_output: u64,
    pub max_log: u64,
}

impl From<&Limits> for WireLimits {
    fn from(l: &Limits) -> Self {
        WireLimits {
            timeout: l.timeout,
            fuel: l.fuel,
            memory: l.memory,
            max_output: l.max_output,
            max_log: l.max_log as u64,
        }
    }
}

impl From<WireLimits> for Limits {
    fn from(l: WireLimits) -> Self {
        Limits {
            timeout: l.timeout,
            fuel: l.fuel,
            memory: l.memory,
            max_output: l.max_output,
            max_log: usize::try_from(l.max_log).unwrap_or(usize::MAX),
        }
    }
}

/// Supervisor → worker: one task. `I` is borrowed bytes when sending, owned when received.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request<I> {
    /// Echoed in the response, so a stale or mixed-up answer is caught.
    pub id: u64,
    /// The input's index (for the worker's own error messages).
    pub index: u64,
    pub limits: WireLimits,
    pub input: I,
}

/// Worker → supervisor, per request.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum FromWorker {
    /// The task ran (successfully or not).
    Done(Response),
    /// The worker could not read a request; it exits after sending this.
    ProtocolError(String),
}

/// One task's outcome.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Response {
    pub id: u64,
    pub result: Result<ByteBuf, WireError>,
    pub logs: WireLogs,
}

/// [`TaskLogs`] on the wire.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(crate) struct WireLogs {
    pub stdout: ByteBuf,
    pub stdout_dropped: u64,
    pub stderr: ByteBuf,
    pub stderr_dropped: u64,
    pub elapsed: Duration,
}

impl From<TaskLogs> for WireLogs {
    fn from(l: TaskLogs) -> Self {
        WireLogs {
            stdout: ByteBuf::from(l.stdout.bytes),
            stdout_dropped: l.stdout.dropped,
            stderr: ByteBuf::from(l.stderr.bytes),
            stderr_dropped: l.stderr.dropped,
            elapsed: l.elapsed,
        }
    }
}

impl From<WireLogs> for TaskLogs {
    fn from(l: WireLogs) -> Self {
        TaskLogs {
            stdout: CapturedStream {
                bytes: l.stdout.into_vec(),
                dropped: l.stdout_dropped,
            },
            stderr: CapturedStream {
                bytes: l.stderr.into_vec(),
                dropped: l.stderr_dropped,
            },
            elapsed: l.elapsed,
        }
    }
}

/// An [`Error`] on the wire, without its task (the supervisor knows it).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    InvalidModule {
        module: String,
        reason: String,
    },
    AbiMismatch {
        module: String,
        expected: u32,
        reason: String,
    },
    Config(String),
    Trap(String),
    Panic(String),
    Guest(String),
    Timeout(Duration),
    FuelExhausted(u64),
    MemoryLimit(u64),
    OutputTooLarge {
        size: u64,
        limit: u64,
    },
    Encode(String),
    Decode {
        what: String,
        reason: String,
    },
    WorkerCrashed(String),
    Cancelled,
    ShutDown,
    Pool(String),
    Io {
        context: String,
        message: String,
    },
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidModule { module, reason } => WireError::InvalidModule { module, reason },
            Error::AbiMismatch {
                module,
                expected,
                reason,
            } => WireError::AbiMismatch {
                module,
                expected,
                reason,
            },
            Error::Config(m) => WireError::Config(m),
            Error::Trap { message, .. } => WireError::Trap(message),
            Error::Panic { message, .. } => WireError::Panic(message),
            Error::Guest { message, .. } => WireError::Guest(message),
            Error::Timeout { limit, .. } => WireError::Timeout(limit),
            Error::FuelExhausted { limit, .. } => WireError::FuelExhausted(limit),
            Error::MemoryLimit { limit, .. } => WireError::MemoryLimit(limit),
            Error::OutputTooLarge { size, limit, .. } => WireError::OutputTooLarge { size, limit },
            Error::Encode { reason, .. } => WireError::Encode(reason),
            Error::Decode { what, reason, .. } => WireError::Decode {
                what: what.to_string(),
                reason,
            },
            Error::WorkerCrashed { reason, .. } => WireError::WorkerCrashed(reason),
            Error::Cancelled { .. } => WireError::Cancelled,
            Error::ShutDown { .. } => WireError::ShutDown,
            Error::Pool(m) => WireError::Pool(m),
            Error::Io { context, message } => WireError::Io { context, message },
            // Raised by the host side only, never by a worker.
            e @ (Error::Aborted { .. } | Error::DeadlineExceeded { .. }) => {
                WireError::Pool(e.to_string())
            }
        }
    }
}

impl WireError {
    /// The library error for `task`.
    pub fn into_error(self, task: &TaskRef) -> Error {
        let task = task.clone();
        match self {
            WireError::InvalidModule { module, reason } => Error::InvalidModule { module, reason },
            WireError::AbiMismatch {
                module,
                expected,
                reason,
            } => Error::AbiMismatch {
                module,
                expected,
                reason,
            },
            WireError::Config(m) => Error::Config(m),
            WireError::Trap(message) => Error::Trap { task, message },
            WireError::Panic(message) => Error::Panic { task, message },
            WireError::Guest(message) => Error::Guest { task, message },
            WireError::Timeout(limit) => Error::Timeout { task, limit },
            WireError::FuelExhausted(limit) => Error::FuelExhausted { task, limit },
            WireError::MemoryLimit(limit) => Error::MemoryLimit { task, limit },
            WireError::OutputTooLarge { size, limit } => {
                Error::OutputTooLarge { task, size, limit }
            }
            WireError::Encode(reason) => Error::Encode { task, reason },
            WireError::Decode { what, reason } => Error::Decode {
                task,
                what: static_what(&what),
                reason,
            },
            WireError::WorkerCrashed(reason) => Error::WorkerCrashed { task, reason },
            WireError::Cancelled => Error::Cancelled { task },
            WireError::ShutDown => Error::ShutDown { task },
            WireError::Pool(m) => Error::Pool(m),
            WireError::Io { context, message } => Error::Io { context, message },
        }
    }
}

/// `Error::Decode::what` is a static string; map the known ones back.
fn static_what(what: &str) -> &'static str {
    match what {
        "input in the guest" => "input in the guest",
        "frame" => "frame",
        "input" => "input",
        _ => "output",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_wire_with_the_supervisors_task() {
        let here = TaskRef::new("t", 4);
        let errors = [
            Error::Trap {
                task: here.clone(),
                message: "unreachable".into(),
            },
            Error::Timeout {
                task: here.clone(),
                limit: Duration::from_millis(7),
            },
            Error::MemoryLimit {
                task: here.clone(),
                limit: 9,
            },
            Error::OutputTooLarge {
                task: here.clone(),
                size: 10,
                limit: 4,
            },
            Error::Decode {
                task: here.clone(),
                what: "input in the guest",
                reason: "bad".into(),
            },
            Error::Config("fuel".into()),
        ];
        for e in errors {
            let wire = WireError::from(e.clone());
            let mut bytes = Vec::new();
            crate::codec::encode_into(&wire, &mut bytes).unwrap();
            let back: WireError = crate::codec::decode_exact(&bytes).unwrap();
            assert_eq!(back.into_error(&here).to_string(), e.to_string());
        }
    }

    #[test]
    fn limits_round_trip() {
        let l = Limits::default()
            .timeout(Duration::from_millis(3))
            .fuel(5)
            .memory(6)
            .max_output(7)
            .max_log(8);
        assert_eq!(Limits::from(WireLimits::from(&l)), l);
    }
}
