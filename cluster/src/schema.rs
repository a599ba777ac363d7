//! The message schema: names of the streams, subjects, headers and
//! objects, the task payload's framing and the result statuses.
//!
//! - Task: subject `sandpool.task.{job}.{key}` on the WorkQueue stream
//!   `SANDPOOL_TASKS`, `Nats-Msg-Id` `{job}.{key}` (a resubmission within
//!   the duplicate window is dropped by the server); payload
//!   `[name length: u32 LE][name][input bytes]`, or `[name length][name]`
//!   and header `Sandpool-Object` naming the object that holds the bytes
//!   (inputs above [`INLINE_MAX`]).
//! - Result: subject `sandpool.result.{job}.{key}` on `SANDPOOL_RESULTS`,
//!   published with `Nats-Expected-Last-Subject-Sequence: 0` so that only
//!   the first result per input is stored; header `Sandpool-Status`
//!   (`ok`, `error`, `lost`); payload the handler's bytes.
//! - Objects (bucket `sandpool`): `module-{sha256}`, `job-{job}`,
//!   `input-{job}-{key}`.

use sha2::{Digest, Sha256};

/// The WorkQueue stream of tasks.
pub const TASKS_STREAM: &str = "SANDPOOL_TASKS";
/// The stream of results (first result per input only).
pub const RESULTS_STREAM: &str = "SANDPOOL_RESULTS";
/// The durable pull consumer every worker shares.
pub const WORKERS_CONSUMER: &str = "sandpool-workers";
/// The object store bucket of modules, job specs and large inputs.
pub const BUCKET: &str = "sandpool";
/// Header: the outcome of a result.
pub const STATUS_HEADER: &str = "Sandpool-Status";
/// Header: the object holding a large input's bytes.
pub const OBJECT_HEADER: &str = "Sandpool-Object";
/// Inputs up to this size travel inside the task message; larger ones as objects.
pub const INLINE_MAX: usize = 512 << 10;

/// The subject of a task.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::task_subject("j1", "k2"), "sandpool.task.j1.k2");
/// ```
pub fn task_subject(job: &str, key: &str) -> String {
    format!("sandpool.task.{job}.{key}")
}

/// The subject of a result.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::result_subject("j1", "k2"), "sandpool.result.j1.k2");
/// ```
pub fn result_subject(job: &str, key: &str) -> String {
    format!("sandpool.result.{job}.{key}")
}

/// The `(job, key)` of a task or result subject.
///
/// ```
/// use sandpool_cluster::schema::split_subject;
/// assert_eq!(split_subject("sandpool.result.j.k"), Some(("j", "k")));
/// assert_eq!(split_subject("other"), None);
/// ```
pub fn split_subject(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sandpool"), Some("task" | "result"), Some(job), Some(key))
            if parts.next().is_none() =>
        {
            Some((job, key))
        }
        _ => None,
    }
}

/// The subject token of an input: the first 128 bits of the SHA-256 of its
/// output id, in hex (a subject token cannot hold `.`, spaces or arbitrary bytes).
///
/// ```
/// let k = sandpool_cluster::schema::key_of(b"a.txt");
/// assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
/// assert_ne!(k, sandpool_cluster::schema::key_of(b"b.txt"));
/// ```
pub fn key_of(id: &[u8]) -> String {
    hex(&Sha256::digest(id)[..16])
}

/// Lower-case hex of `bytes`.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::hex(&[0, 255]), "00ff");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The object name of a module: `module-{sha256}`.
///
/// ```
/// assert!(sandpool_cluster::schema::module_object(b"\0asm").starts_with("module-"));
/// ```
pub fn module_object(wasm: &[u8]) -> String {
    format!("module-{}", hex(&Sha256::digest(wasm)))
}

/// The object name of a job's spec.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::job_object("j"), "job-j");
/// ```
pub fn job_object(job: &str) -> String {
    format!("job-{job}")
}

/// The object name of a large input.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::input_object("j", "k"), "input-j-k");
/// ```
pub fn input_object(job: &str, key: &str) -> String {
    format!("input-{job}-{key}")
}

/// Frames a task payload: the input's name, then (if inline) its bytes.
///
/// ```
/// use sandpool_cluster::schema::{frame, unframe};
/// let p = frame("a.txt", b"hello");
/// assert_eq!(unframe(&p), Some(("a.txt".to_string(), &b"hello"[..])));
/// ```
pub fn frame(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + name.len() + data.len());
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Splits a task payload into the input's name and the bytes after it;
/// `None` if it is not a framed payload.
///
/// ```
/// assert_eq!(sandpool_cluster::schema::unframe(b"\xff\xff\xff\xffx"), None);
/// ```
pub fn unframe(payload: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let name = payload.get(4..4usize.checked_add(len)?)?;
    let name = String::from_utf8(name.to_vec()).ok()?;
    Some((name, &payload[4 + len..]))
}

/// How a task ended, as its result message says.
///
/// ```
/// use sandpool_cluster::Status;
/// assert_eq!(Status::parse("lost"), Some(Status::Lost));
/// assert_eq!(Status::Ok.as_str(), "ok");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The task produced a result.
    Ok,
    /// The task failed; the payload is the handler's error record.
    Error,
    /// Every delivery up to `max_deliver` ended without a result (the
    /// workers died or stalled); the payload is a message saying so.
    Lost,
}

impl Status {
    /// The header value.
    ///
    /// ```
    /// assert_eq!(sandpool_cluster::Status::Error.as_str(), "error");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Lost => "lost",
        }
    }

    /// Parses a header value.
    ///
    /// ```
    /// assert_eq!(sandpool_cluster::Status::parse("maybe"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "ok" => Some(Status::Ok),
            "error" => Some(Status::Error),
            "lost" => Some(Status::Lost),
            _ => None,
        }
    }
}

/// What a handler returns for one input.
///
/// ```
/// let o = sandpool_cluster::Outcome { status: sandpool_cluster::Status::Ok, body: b"{}".to_vec() };
/// assert_eq!(o.body, b"{}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// [`Status::Ok`] or [`Status::Error`].
    pub status: Status,
    /// The result's bytes, collected as they are.
    pub body: Vec<u8>,
}

/// One result of a job, as the collector receives it.
///
/// ```
/// let r = sandpool_cluster::ResultMsg { key: "k".into(), status: sandpool_cluster::Status::Ok,
///     body: b"1".to_vec().into(), sequence: 7 };
/// assert_eq!(r.sequence, 7);
/// ```
#[derive(Debug, Clone)]
pub struct ResultMsg {
    /// The input's key.
    pub key: String,
    /// How it ended.
    pub status: Status,
    /// The result's bytes.
    pub body: bytes::Bytes,
    /// Its sequence in the results stream.
    pub sequence: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_frame_is_rejected_not_misread() {
        let p = frame("name", b"xy");
        for cut in 0..8 {
            assert_eq!(unframe(&p[..cut]), None, "cut at {cut}");
        }
        assert_eq!(unframe(&p[..8]), Some(("name".into(), &b""[..])));
        assert_eq!(split_subject("sandpool.task.j.k.extra"), None);
    }
}
