//! The messages of the supervisor ↔ worker protocol, and their conversion
//! from and to the library's own types.
//!
//! ```text
//! supervisor                              worker (`sandpool worker`)
//!   Hello { magic, protocol, version,  ─▶   load the module once
//!           module files + hashes }    ◀─   Ready { pid, precompiled?, load time } | Refused(why)
//!   [Request { id, index, limits, input }, ...]
//!                                      ─▶   each in order: fresh instance, run under its limits
//!                                      ◀─   Done(Response { id, result, logs }) per task, as it
//!                                           finishes | ProtocolError(why)
//!                                           while a task runs, per capability call:
//!                                      ◀─   Call(CallRequest { id, name, request, remaining })
//!   CallReply { id, result }           ─▶   (the handler ran in the supervisor's process)
//!   (stdin closed)                     ─▶   exit 0
//! ```
//!
//! Every message is one frame ([`super::frame`]). The library's own types
//! cross as they are: [`Limits`], [`TaskLogs`] and [`Error`] have one serde
//! form shared by both isolation levels (the supervisor still puts its own
//! [`TaskRef`](crate::TaskRef) into an error, so a worker cannot mislabel one).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::Error;
use crate::limits::Limits;
use crate::runtime::instance::TaskLogs;

/// First bytes of every `Hello`.
pub(crate) const MAGIC: [u8; 8] = *b"SANDPOOL";

/// Version of this protocol; both sides must agree.
pub(crate) const PROTOCOL: u32 = 2;

/// The sandpool version both sides must share.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bound on a handshake frame in either direction.
pub(crate) const MAX_HANDSHAKE: usize = 1 << 20;

/// Bound on a request frame: the largest input (or batch of inputs) a worker accepts, plus room for the rest.
pub(crate) const MAX_REQUEST: usize = MAX_INPUT + (64 << 10);

/// The most tasks in one request frame.
pub(crate) const MAX_BATCH: usize = 256;

/// Room each request of a batch takes besides its input (id, index,
/// limits, length prefixes), counted against [`MAX_INPUT`] when batching.
pub(crate) const REQUEST_OVERHEAD: usize = 64;

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

/// Supervisor → worker: one task. A request frame holds a batch of them
/// (`[Request]`, at least one); the worker answers each with its own
/// `Done` as it finishes. `I` is borrowed bytes when sending, owned when received.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request<I> {
    /// Echoed in the response, so a stale or mixed-up answer is caught.
    pub id: u64,
    /// The input's index (for the worker's own error messages).
    pub index: u64,
    pub limits: Limits,
    pub input: I,
}

/// Worker → supervisor, per request.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum FromWorker {
    /// The task ran (successfully or not).
    Done(Response),
    /// The worker could not read a request; it exits after sending this.
    ProtocolError(String),
    /// The running task calls a host capability; the supervisor answers
    /// with a [`CallReply`] frame on the worker's stdin (`capability/`).
    Call(CallRequest),
}

/// Worker → supervisor: one capability call of the task of request `id`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct CallRequest {
    pub id: u64,
    pub name: String,
    pub request: ByteBuf,
    /// The task's time left (its deadline, as the worker counts it).
    pub remaining: Option<Duration>,
}

/// Supervisor → worker: the answer to the [`CallRequest`] of request `id`:
/// the response bytes, or why the call failed (the task then fails).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct CallReply {
    pub id: u64,
    pub result: Result<ByteBuf, String>,
}

/// One task's outcome.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Response {
    pub id: u64,
    pub result: Result<ByteBuf, Error>,
    pub logs: TaskLogs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TaskRef;
    use crate::sandbox::CapturedStream;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
        let mut bytes = Vec::new();
        crate::codec::encode_into(value, &mut bytes).unwrap();
        crate::codec::decode_exact(&bytes).unwrap()
    }

    #[test]
    fn every_error_survives_the_wire_unchanged() {
        let here = TaskRef::new("t", 4);
        let mut errors = vec![
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
            Error::Capability {
                task: here.clone(),
                capability: "db.lookup".into(),
                reason: "the handler failed: gone".into(),
            },
            Error::CapabilityDenied {
                module: "m".into(),
                capability: "db.lookup".into(),
            },
            Error::Config("fuel".into()),
            Error::AbiMismatch {
                module: "m".into(),
                expected: 1,
                reason: "r".into(),
            },
            Error::Io {
                context: "c".into(),
                message: "m".into(),
            },
        ];
        // Every decode target the crate names keeps its exact meaning.
        for what in [
            "output",
            "input",
            "input in the guest",
            "frame",
            "output as JSON",
        ] {
            errors.push(Error::Decode {
                task: here.clone(),
                what,
                reason: "bad".into(),
            });
        }
        for e in errors {
            let back = round_trip(&e);
            assert_eq!(back.kind(), e.kind());
            assert_eq!(back.task(), e.task());
            assert_eq!(back.to_string(), e.to_string());
        }
    }

    #[test]
    fn an_unknown_decode_target_is_a_malformed_frame_not_a_silent_change() {
        let real = Error::Decode {
            task: TaskRef::new("t", 0),
            what: "frame",
            reason: String::new(),
        };
        let mut bytes = Vec::new();
        crate::codec::encode_into(&real, &mut bytes).unwrap();
        // Overwrite the 5-byte name `frame` with another 5-byte name.
        let at = bytes.windows(5).position(|w| w == b"frame").unwrap();
        bytes[at..at + 5].copy_from_slice(b"fruit");
        let err = crate::codec::decode_exact::<Error>(&bytes).unwrap_err();
        assert!(err.contains("unknown decode target `fruit`"), "{err}");
    }

    #[test]
    fn capability_calls_and_replies_round_trip() {
        let call = FromWorker::Call(CallRequest {
            id: 7,
            name: "db.lookup".into(),
            request: ByteBuf::from(vec![1, 2, 3]),
            remaining: Some(Duration::from_millis(250)),
        });
        match round_trip(&call) {
            FromWorker::Call(c) => {
                assert_eq!((c.id, c.name.as_str()), (7, "db.lookup"));
                assert_eq!(c.request.as_slice(), [1, 2, 3]);
                assert_eq!(c.remaining, Some(Duration::from_millis(250)));
            }
            other => panic!("{other:?}"),
        }
        let reply = round_trip(&CallReply {
            id: 7,
            result: Err("refused".into()),
        });
        assert_eq!(
            (reply.id, reply.result.unwrap_err().as_str()),
            (7, "refused")
        );
    }

    #[test]
    fn limits_and_logs_round_trip() {
        let l = Limits::default()
            .timeout(Duration::from_millis(3))
            .fuel(5)
            .memory(6)
            .max_output(7)
            .max_log(8)
            .max_calls(9)
            .max_call_request(10)
            .max_call_response(11);
        assert_eq!(round_trip(&l), l);
        let logs = TaskLogs {
            stdout: CapturedStream {
                bytes: b"out".to_vec(),
                dropped: 2,
            },
            stderr: CapturedStream::default(),
            elapsed: Duration::from_micros(5),
        };
        assert_eq!(round_trip(&logs), logs);
    }
}
