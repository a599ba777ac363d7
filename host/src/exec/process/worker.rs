//! The `sandpool worker` process: load the module once, then run the tasks
//! of each request frame (a batch of one or more), each in a fresh instance
//! under its own limits, answering each as it finishes, until the supervisor
//! closes stdin.
//!
//! Stdin and stdout carry only frames: at start the worker moves them to
//! private descriptors and points descriptor 0 at `/dev/null` and 1 at
//! stderr, so nothing else in the process can read or corrupt the protocol.
//!
//! Exit codes: 0 when stdin closes, 2 when the handshake fails (the reason
//! is sent as `Refused` and printed on stderr), 3 on a malformed request.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::faults::Faults;
use super::frame::{self, FrameError, FrameReader, write_frame};
use super::handoff;
use super::wire::{
    CallReply, CallRequest, FromWorker, Greeting, Handshake, Hello, MAGIC, MAX_HANDSHAKE,
    MAX_REQUEST, PROTOCOL, ReadyInfo, Request, Response, VERSION,
};
use crate::capability::imports::{CallBackend, Forward};
use crate::error::{Error, TaskRef};
use crate::runtime::compiled::Compiled;
use crate::sync::lock;

/// Why the worker stopped early.
struct Fatal {
    code: u8,
    message: String,
}

/// The worker's entry point (see [`super::worker_main`]).
pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("sandpool worker: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

fn run() -> Result<(), Fatal> {
    let setup = |e: io::Error| Fatal {
        code: 2,
        message: format!("cannot set up the protocol channel: {e}"),
    };
    let (input, mut output) = protocol_channels().map_err(setup)?;
    let mut input = FrameReader::new(input);
    let faults = Faults::from_env();
    let module = handshake(&mut input, &mut output, &faults)?;
    serve(input, output, &module, &faults)
}

/// Moves the protocol to private descriptors; fd 0 becomes /dev/null, fd 1 a copy of stderr.
fn protocol_channels() -> io::Result<(File, File)> {
    let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 on descriptors this process holds open; no memory is passed.
    // Without a usable stderr, fd 1 goes to /dev/null as well.
    let moved = unsafe {
        libc::dup2(null.as_raw_fd(), 0) >= 0
            && (libc::dup2(2, 1) >= 0 || libc::dup2(null.as_raw_fd(), 1) >= 0)
    };
    if !moved {
        return Err(io::Error::last_os_error());
    }
    Ok((input, output))
}

fn send<W: Write + AsFd, T: serde::Serialize>(
    output: &mut W,
    message: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    frame::encode(message, buf)?;
    write_frame(output, buf, None)
}

/// Reads the `Hello`, loads the module and answers `Ready` (or `Refused`).
fn handshake<R: Read + AsFd, W: Write + AsFd>(
    input: &mut FrameReader<R>,
    output: &mut W,
    faults: &Faults,
) -> Result<Compiled, Fatal> {
    let mut buf = Vec::new();
    let mut refuse = |output: &mut W, message: String| {
        let _ = send(output, &Handshake::Refused(message.clone()), &mut buf);
        Fatal { code: 2, message }
    };
    let payload = match input.read_frame(MAX_HANDSHAKE, None) {
        Ok(payload) => payload,
        Err(FrameError::Eof) => {
            return Err(Fatal {
                code: 2,
                message: "stdin closed before the handshake".into(),
            });
        }
        Err(e) => return Err(refuse(output, format!("cannot read the handshake: {e}"))),
    };
    match crate::codec::decode_prefix::<Greeting>(&payload) {
        Ok(g) if g.magic == MAGIC && g.protocol == PROTOCOL && g.version == VERSION => {}
        Ok(g) if g.magic == MAGIC => {
            return Err(refuse(
                output,
                format!(
                    "this worker is sandpool {VERSION} (protocol {PROTOCOL}), the pool is sandpool {} (protocol {})",
                    g.version, g.protocol
                ),
            ));
        }
        _ => {
            return Err(refuse(
                output,
                "the handshake is not from a sandpool pool".into(),
            ));
        }
    }
    let hello: Hello = match frame::decode(&payload) {
        Ok(hello) => hello,
        Err(e) => return Err(refuse(output, format!("cannot read the handshake: {e}"))),
    };
    faults.at_start();
    let (module, info) = match load(&hello) {
        Ok(loaded) => loaded,
        Err(e) => return Err(refuse(output, e)),
    };
    send(output, &Handshake::Ready(info), &mut buf).map_err(|e| Fatal {
        code: 2,
        message: format!("cannot answer the handshake: {e}"),
    })?;
    Ok(module)
}

/// Loads the module: the precompiled one when it checks out, else compiled from wasm.
fn load(hello: &Hello) -> Result<(Compiled, ReadyInfo), String> {
    let started = Instant::now();
    let mut fallback = None;
    if let Some(pre) = &hello.precompiled {
        match load_precompiled(pre, hello) {
            Ok(module) => {
                let info = ReadyInfo {
                    pid: std::process::id(),
                    precompiled: true,
                    fallback,
                    load: started.elapsed(),
                };
                return Ok((module, info));
            }
            Err(e) => fallback = Some(e),
        }
    }
    let wasm = handoff::read_wasm(&hello.wasm)?;
    let module = Compiled::compile(&hello.name, &wasm, hello.fuel).map_err(|e| e.to_string())?;
    let info = ReadyInfo {
        pid: std::process::id(),
        precompiled: false,
        fallback,
        load: started.elapsed(),
    };
    Ok((module, info))
}

fn load_precompiled(pre: &super::wire::FileRef, hello: &Hello) -> Result<Compiled, String> {
    let bytes = handoff::read_checked(pre)?;
    let payload = handoff::verify_precompiled(&bytes, hello.fuel, &pre.sha256)?;
    // SAFETY: wasmtime requires deserialized bytes to come from `Module::serialize`
    // (`Component::serialize`: `Compiled::serialize`) and to be unmodified. The header says this sandpool version wrote them for
    // this engine (fuel flag), the handshake proved the supervisor is this same
    // version, and their SHA-256 matches the hash that supervisor sent over this
    // process's private stdin pipe: they are exactly the bytes it serialized.
    // Engine compatibility itself is checked by `deserialize`.
    unsafe { Compiled::deserialize(&hello.name, payload, hello.fuel) }
}

/// The protocol channel, shared by the request loop and the tasks'
/// capability calls (which send a `Call` frame and read the `CallReply`).
struct Channel<R, W> {
    input: FrameReader<R>,
    output: W,
    buf: Vec<u8>,
}

/// Forwards a task's capability calls to the supervisor (`capability/`).
struct ForwardCalls<R, W> {
    channel: Arc<Mutex<Channel<R, W>>>,
    /// The request id of the task running now.
    current: AtomicU64,
    /// The channel broke during a call: the worker must stop after the task.
    broken: AtomicBool,
}

impl<R, W> Forward for ForwardCalls<R, W>
where
    R: Read + AsFd + Send + 'static,
    W: Write + AsFd + Send + 'static,
{
    fn call(
        &self,
        name: &str,
        request: &[u8],
        remaining: Option<Duration>,
    ) -> Result<Vec<u8>, String> {
        let id = self.current.load(Ordering::Relaxed);
        let mut guard = lock(&self.channel);
        let channel = &mut *guard;
        let message = FromWorker::Call(CallRequest {
            id,
            name: name.to_string(),
            request: ByteBuf::from(request.to_vec()),
            remaining,
        });
        let broken = |e: String| {
            self.broken.store(true, Ordering::Relaxed);
            Err(format!("the call could not be forwarded to the pool: {e}"))
        };
        if let Err(e) = send(&mut channel.output, &message, &mut channel.buf) {
            return broken(e.to_string());
        }
        let reply = channel
            .input
            .read_frame_spinning(MAX_REQUEST, None, super::forward::call_spin())
            .and_then(|payload| frame::decode::<CallReply>(&payload));
        match reply {
            Ok(CallReply { id: got, result }) if got == id => result.map(ByteBuf::into_vec),
            Ok(CallReply { id: got, .. }) => broken(format!("a reply to request {got}, not {id}")),
            Err(e) => broken(e.to_string()),
        }
    }
}

/// Serves requests until stdin closes.
fn serve<R, W>(
    input: FrameReader<R>,
    output: W,
    module: &Compiled,
    faults: &Faults,
) -> Result<(), Fatal>
where
    R: Read + AsFd + Send + 'static,
    W: Write + AsFd + Send + 'static,
{
    let name: Arc<str> = Arc::clone(module.name());
    let channel = Arc::new(Mutex::new(Channel {
        input,
        output,
        buf: Vec::new(),
    }));
    let forward = Arc::new(ForwardCalls {
        channel: Arc::clone(&channel),
        current: AtomicU64::new(0),
        broken: AtomicBool::new(false),
    });
    let calls = CallBackend::Forward(Arc::clone(&forward) as Arc<dyn Forward>);
    loop {
        let mut guard = lock(&channel);
        let ch = &mut *guard;
        let batch = ch
            .input
            .read_frame(MAX_REQUEST, None)
            .and_then(|payload| frame::decode::<Vec<Request<ByteBuf>>>(&payload));
        let batch = match batch {
            Ok(batch) => batch,
            Err(FrameError::Eof) => return Ok(()),
            Err(e) => {
                let message = format!("bad request: {e}");
                let _ = send(
                    &mut ch.output,
                    &FromWorker::ProtocolError(message.clone()),
                    &mut ch.buf,
                );
                return Err(Fatal { code: 3, message });
            }
        };
        drop(guard);
        // One answer per task, sent as soon as it is done: if this process
        // dies, the supervisor knows which tasks finished and which did not.
        for request in batch {
            let task = TaskRef {
                task: Arc::clone(&name),
                index: request.index,
            };
            forward.current.store(request.id, Ordering::Relaxed);
            let outcome =
                module.run_task_calling(&request.limits, &task, &request.input, None, Some(&calls));
            faults.after_task(&outcome.logs);
            let response = Response {
                id: request.id,
                result: outcome.result.map(ByteBuf::from),
                logs: outcome.logs,
            };
            let mut guard = lock(&channel);
            let ch = &mut *guard;
            let (output, buf) = (&mut ch.output, &mut ch.buf);
            let sent = match send(output, &FromWorker::Done(response), buf) {
                Err(FrameError::TooLarge { len, max }) => {
                    let error = Error::Pool(format!(
                        "the task's response of {len} bytes is over the frame limit of {max}"
                    ));
                    let response = Response {
                        id: request.id,
                        result: Err(error),
                        logs: Default::default(),
                    };
                    send(output, &FromWorker::Done(response), buf)
                }
                other => other,
            };
            sent.map_err(|e| Fatal {
                code: 3,
                message: format!("cannot send a response: {e}"),
            })?;
            if forward.broken.load(Ordering::Relaxed) {
                return Err(Fatal {
                    code: 3,
                    message: "the protocol channel broke during a capability call".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::pipe;

    use super::super::wire::max_response;
    use super::*;
    use crate::limits::Limits;

    /// A minimal ABI v1 module in text form: echoes its input.
    const ECHO_WAT: &str = r#"(module
        (memory (export "memory") 1)
        (func (export "sandpool_abi_version") (result i32) i32.const 1)
        (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
            (i32.store8 (i32.const 1023) (i32.const 0))
            (i64.or (i64.shl (i64.const 1023) (i64.const 32))
                    (i64.extend_i32_u (i32.add (local.get $len) (i32.const 1))))))"#;

    fn echo() -> Compiled {
        Compiled::compile("echo", ECHO_WAT.as_bytes(), false).unwrap()
    }

    fn request(id: u64, input: &[u8]) -> Vec<u8> {
        let limits = Limits::default();
        let mut out = Vec::new();
        frame::encode(
            &vec![Request {
                id,
                index: id,
                limits,
                input: serde_bytes::Bytes::new(input),
            }],
            &mut out,
        )
        .unwrap();
        out
    }

    /// Runs `serve` on the given request bytes; returns its result and the frames it wrote.
    fn serve_bytes(bytes: Vec<u8>) -> (Result<(), String>, Vec<FromWorker>) {
        let (req_r, mut req_w) = pipe().unwrap();
        let (resp_r, resp_w) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = req_w.write_all(&bytes);
        });
        let module = echo();
        let served = serve(FrameReader::new(req_r), resp_w, &module, &Faults::default());
        writer.join().unwrap();
        let mut reader = FrameReader::new(resp_r);
        let mut frames = Vec::new();
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        while let Ok(payload) = reader.read_frame(max_response(&Limits::default()), deadline) {
            frames.push(frame::decode(&payload).unwrap());
        }
        (served.map_err(|f| f.message), frames)
    }

    #[test]
    fn serves_requests_until_stdin_closes() {
        let mut bytes = request(1, b"hello");
        bytes.extend(request(2, b"again"));
        let (served, frames) = serve_bytes(bytes);
        assert!(served.is_ok());
        assert_eq!(frames.len(), 2);
        for (frame, (id, want)) in frames.iter().zip([(1, b"hello"), (2, b"again")]) {
            let FromWorker::Done(r) = frame else {
                panic!("expected a response, got {frame:?}")
            };
            assert_eq!(r.id, id);
            assert_eq!(r.result.as_ref().unwrap().as_slice(), want);
        }
    }

    #[test]
    fn a_batch_is_answered_task_by_task_in_order() {
        let limits = Limits::default();
        let batch: Vec<Request<&serde_bytes::Bytes>> = [b"one".as_slice(), b"", b"three"]
            .iter()
            .zip(10..)
            .map(|(input, id)| Request {
                id,
                index: id,
                limits,
                input: serde_bytes::Bytes::new(input),
            })
            .collect();
        let mut bytes = Vec::new();
        frame::encode(&batch, &mut bytes).unwrap();
        bytes.extend(request(13, b"next frame"));
        let (served, frames) = serve_bytes(bytes);
        assert!(served.is_ok());
        let answers: Vec<(u64, Vec<u8>)> = frames
            .iter()
            .map(|frame| match frame {
                FromWorker::Done(r) => (r.id, r.result.as_ref().unwrap().to_vec()),
                other => panic!("expected a response, got {other:?}"),
            })
            .collect();
        assert_eq!(
            answers,
            [
                (10, b"one".to_vec()),
                (11, vec![]),
                (12, b"three".to_vec()),
                (13, b"next frame".to_vec())
            ]
        );
    }

    #[test]
    fn a_malformed_request_is_reported_and_ends_the_worker_without_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![3, 0, 0, 0, 0xff, 0xff, 0xff], // garbage payload
            vec![9, 0, 0, 0, 1, 2],             // truncated body
            vec![1, 0],                         // truncated header
            u32::MAX.to_le_bytes().to_vec(),    // length over the limit
            {
                let mut r = request(1, b"x");
                r.push(0);
                let n = r.len() - 4;
                r[..4].copy_from_slice(&(n as u32).to_le_bytes());
                r
            }, // trailing byte
        ];
        for (i, bytes) in cases.into_iter().enumerate() {
            let (served, frames) = serve_bytes(bytes);
            let err = served.expect_err("a malformed request ends the worker");
            assert!(err.contains("bad request"), "case {i}: {err}");
            assert!(
                matches!(frames.as_slice(), [FromWorker::ProtocolError(_)]),
                "case {i}: {frames:?}"
            );
        }
    }

    #[test]
    fn a_valid_request_after_a_good_one_still_works_and_a_bad_one_stops_it() {
        let mut bytes = request(1, b"ok");
        bytes.extend([2, 0, 0, 0, 0xff, 0xff]);
        let (served, frames) = serve_bytes(bytes);
        assert!(served.is_err());
        assert!(
            matches!(&frames[..], [FromWorker::Done(r), FromWorker::ProtocolError(_)] if r.id == 1)
        );
    }

    #[test]
    fn a_handshake_from_another_version_is_refused_with_a_reason() {
        let (req_r, mut req_w) = pipe().unwrap();
        let (resp_r, mut resp_w) = pipe().unwrap();
        let greeting = Greeting {
            magic: MAGIC,
            protocol: PROTOCOL + 1,
            version: "0.0.0-other".into(),
        };
        let mut out = Vec::new();
        frame::encode(&(greeting, "whatever follows"), &mut out).unwrap();
        req_w.write_all(&out).unwrap();
        let err = handshake(
            &mut FrameReader::new(req_r),
            &mut resp_w,
            &Faults::default(),
        )
        .expect_err("refused");
        assert_eq!(err.code, 2);
        assert!(err.message.contains("0.0.0-other"), "{}", err.message);
        let payload = FrameReader::new(resp_r)
            .read_frame(MAX_HANDSHAKE, None)
            .unwrap();
        assert!(
            matches!(frame::decode::<Handshake>(&payload).unwrap(), Handshake::Refused(m) if m.contains("0.0.0-other"))
        );
        // Not a sandpool handshake at all.
        let (req_r, mut req_w) = pipe().unwrap();
        req_w
            .write_all(&[4, 0, 0, 0, b'j', b'u', b'n', b'k'])
            .unwrap();
        let err = handshake(
            &mut FrameReader::new(req_r),
            &mut resp_w,
            &Faults::default(),
        )
        .expect_err("refused");
        assert!(
            err.message.contains("not from a sandpool pool"),
            "{}",
            err.message
        );
    }
}
