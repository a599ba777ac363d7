//! Entry points for fuzzing every place where untrusted bytes enter the
//! host: a guest's output, a worker's frames, a module. Used by the
//! `fuzz/` cargo-fuzz targets and by `tests/fuzz_smoke.rs`. Not a stable
//! API: hidden from the docs and free to change.
//!
//! Each function must return normally for every input: a panic, a hang or
//! an unbounded allocation is a bug.
//!
//! ```
//! sandpool::fuzzing::guest_output(&[0, 2, b'o', b'k']);
//! sandpool::fuzzing::worker_frames(&[1, 0, 0, 0, 0]);
//! sandpool::fuzzing::module(b"not wasm");
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_bytes::ByteBuf;

use crate::error::TaskRef;
use crate::limits::Limits;

/// Output types a guest's bytes are decoded as: one of each kind of value
/// bincode can encode (integers of every width, floats, strings, bytes,
/// options, sequences, maps, enums, nesting).
#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Shape {
    Unit,
    Small(u8, i8, u16, i16, bool, char),
    Wide(u32, i32, u64, i64, u128, i128),
    Float(f32, f64),
    Text(String, Option<String>),
    Bytes(ByteBuf, Vec<u8>),
    Nested(Vec<Shape>),
    Map(BTreeMap<String, Vec<Option<u64>>>),
    Record {
        id: u64,
        name: String,
        tags: Vec<(String, u32)>,
    },
}

/// A guest's raw output (tag byte and value) through the host's decoding:
/// the result-tag split, then the value as several output types, the way a
/// `Pool<_, Out>` decodes it.
///
/// ```
/// sandpool::fuzzing::guest_output(&[1, 0xff, 0xfe]); // a guest error that is not UTF-8
/// ```
pub fn guest_output(bytes: &[u8]) {
    let task = TaskRef::new("fuzz", 0);
    let Ok(value) = crate::runtime::abi::decode_tagged(&task, bytes) else {
        return;
    };
    let _ = crate::codec::decode::<Shape>(&value, &task);
    let _ = crate::codec::decode::<String>(&value, &task);
    let _ = crate::codec::decode::<Vec<u64>>(&value, &task);
    let _ = crate::codec::decode::<crate::Json<serde_json::Value>>(&value, &task)
        .map(|json| json.0.to_string());
    let _ = crate::codec::decode::<sandpool_guest::workloads::DocStats>(&value, &task);
}

/// A byte stream as a worker process would send it to the supervisor,
/// through the real frame reader (over a pipe), each frame decoded as every
/// message the two sides exchange.
///
/// ```
/// sandpool::fuzzing::worker_frames(&[3, 0, 0, 0, 1, 2, 3]);
/// ```
pub fn worker_frames(bytes: &[u8]) {
    use std::io::Write;
    use std::os::fd::FromRawFd;

    use crate::exec::process::frame::{self, FrameReader};
    use crate::exec::process::wire::{FromWorker, Handshake, Hello, Request};

    // A pipe holds 64 KiB without a reader; longer inputs are cut there.
    let bytes = &bytes[..bytes.len().min(60 << 10)];
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    // SAFETY: `pipe2` just created both descriptors; each is owned once.
    let (reader, mut writer) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let written = writer.write_all(bytes);
    drop(writer);
    if written.is_err() {
        return;
    }
    let mut frames = FrameReader::new(reader);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    // The bound the supervisor uses for a response under default limits.
    let max = crate::exec::process::wire::max_response(&Limits::default());
    while let Ok(payload) = frames.read_frame(max, Some(deadline)) {
        if let Ok(FromWorker::Done(response)) = frame::decode::<FromWorker>(&payload) {
            if let Err(error) = response.result {
                let _ = (error.kind(), error.task().is_some(), error.to_string());
            }
            let _ = response.logs.elapsed;
        }
        let _ = frame::decode::<Handshake>(&payload);
        let _ = frame::decode::<Hello>(&payload);
        let _ = frame::decode::<Vec<Request<ByteBuf>>>(&payload);
    }
}

/// Untrusted wasm (binary or text): loaded as a task, and when it loads,
/// run once with tight limits (20 ms, 1 MiB of memory) on an empty input.
///
/// ```
/// sandpool::fuzzing::module(b"(module)");
/// ```
pub fn module(bytes: &[u8]) {
    let limits = crate::LoadLimits::default().compile_timeout(Duration::from_secs(10));
    let Ok(task) = crate::Task::<(), ()>::from_bytes_with("fuzz", bytes.to_vec(), limits) else {
        return;
    };
    let Ok(compiled) = task.module.compiled(false) else {
        return;
    };
    let limits = Limits::default()
        .timeout(Duration::from_millis(20))
        .memory(1 << 20)
        .max_output(1 << 20)
        .max_log(1 << 10);
    let task_ref = TaskRef::new(Arc::clone(&compiled.name), 0);
    let outcome = compiled.run_task(&limits, &task_ref, &[]);
    if let Ok(value) = outcome.result {
        let _ = crate::codec::decode::<()>(&value, &task_ref);
    }
}

/// Well-formed inputs for [`guest_output`]: every tag, and values of the
/// shapes it decodes, to start mutating from.
///
/// ```
/// for seed in sandpool::fuzzing::guest_output_seeds() {
///     sandpool::fuzzing::guest_output(&seed);
/// }
/// ```
pub fn guest_output_seeds() -> Vec<Vec<u8>> {
    let tagged = |tag: u8, value: Vec<u8>| {
        let mut out = vec![tag];
        out.extend(value);
        out
    };
    let encode = |value: &dyn erased::Encode| value.encode();
    vec![
        tagged(0, encode(&"hello".to_string())),
        tagged(0, encode(&vec![1u64, 300, 70_000, u64::MAX])),
        tagged(0, encode(&(1u32, (7u8, -1i8, 300u16, -300i16, true, 'é')))),
        tagged(
            0,
            encode(&(4u32, ("text".to_string(), Some("more".to_string())))),
        ),
        tagged(
            0,
            encode(&(
                8u32,
                42u64,
                "name".to_string(),
                vec![("t".to_string(), 1u32)],
            )),
        ),
        tagged(
            0,
            encode(&"{\"words\": 3, \"top\": [[\"a\", 2]]}".to_string()),
        ),
        tagged(1, b"the task failed".to_vec()),
        tagged(2, b"cannot decode the input".to_vec()),
        vec![0],
    ]
}

/// Well-formed frame streams for [`worker_frames`]: each message a worker
/// sends (and the handshake the supervisor sends), length-prefixed.
///
/// ```
/// for seed in sandpool::fuzzing::worker_frame_seeds() {
///     sandpool::fuzzing::worker_frames(&seed);
/// }
/// ```
pub fn worker_frame_seeds() -> Vec<Vec<u8>> {
    use crate::error::Error;
    use crate::exec::process::frame;
    use crate::exec::process::wire::{
        FileRef, FromWorker, Greeting, Handshake, Hello, ReadyInfo, Request, Response,
    };
    use crate::runtime::instance::TaskLogs;
    use crate::sandbox::CapturedStream;
    fn framed<T: serde::Serialize>(message: &T) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode(message, &mut out).expect("a seed message encodes");
        out
    }
    let logs = || TaskLogs {
        stdout: CapturedStream {
            bytes: b"out".to_vec(),
            dropped: 3,
        },
        stderr: CapturedStream::default(),
        elapsed: Duration::from_micros(5),
    };
    let task = |index| TaskRef::new("task", index);
    let done = |id, result| {
        framed(&FromWorker::Done(Response {
            id,
            result,
            logs: logs(),
        }))
    };
    let mut stream = framed(&Handshake::Ready(ReadyInfo {
        pid: 42,
        precompiled: true,
        fallback: None,
        load: Duration::from_millis(3),
    }));
    stream.extend(done(1, Ok(ByteBuf::from(vec![0, 2, b'o', b'k']))));
    stream.extend(done(
        2,
        Err(Error::Trap {
            task: task(2),
            message: "unreachable".into(),
        }),
    ));
    stream.extend(done(
        3,
        Err(Error::OutputTooLarge {
            task: task(3),
            size: 10,
            limit: 5,
        }),
    ));
    vec![
        stream,
        framed(&Handshake::Refused("protocol 9".into())),
        framed(&FromWorker::ProtocolError("bad request".into())),
        done(
            7,
            Err(Error::Timeout {
                task: task(7),
                limit: Duration::from_secs(1),
            }),
        ),
        framed(&Hello {
            greeting: Greeting {
                magic: crate::exec::process::wire::MAGIC,
                protocol: crate::exec::process::wire::PROTOCOL,
                version: crate::exec::process::wire::VERSION.into(),
            },
            name: "task".into(),
            fuel: false,
            wasm: FileRef {
                path: b"/tmp/task.wasm".to_vec(),
                sha256: [7; 32],
            },
            precompiled: None,
        }),
        framed(&vec![
            Request {
                id: 1,
                index: 0,
                limits: Limits::default(),
                input: ByteBuf::from(vec![1, 2, 3]),
            },
            Request {
                id: 2,
                index: 1,
                limits: Limits::default().max_log(0),
                input: ByteBuf::new(),
            },
        ]),
    ]
}

/// Encoding the seed values without naming each type at the call site.
mod erased {
    pub trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            sandpool_guest::abi::encode(self).unwrap_or_default()
        }
    }
}
