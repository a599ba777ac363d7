//! What a component task can reach: WASI 0.2 under the same deny-by-default
//! rules as the preview-1 shim (`sandbox/wasi.rs`). No preopened directory
//! unless the pool grants one (then that one directory, read-only unless
//! granted read-write), no environment variables, no arguments, no network (sockets and name
//! lookup refused), stdin empty, stdout/stderr captured into bounded
//! [`CapturedStream`]s (bytes past [`Limits::max_log`] counted, never an
//! error for the guest); clocks and random work as in the preview-1 shim
//! (host wall and monotonic clocks, the host's secure random source).
//! The state also holds the task's capability calls ([`CallState`]).

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capability::imports::{CallBackend, CallState};
use crate::error::Error;
use crate::limits::Limits;
use crate::sandbox::CapturedStream;
use crate::sandbox::grant::GrantRoot;

/// Per-task state of a component's `Store`: its WASI context and resource
/// table, the memory cap and whether it refused a growth, and the captures.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit: usize,
    /// Whether a memory or table growth was refused (the cap was hit).
    pub memory_denied: bool,
    pub stdout: Capture,
    pub stderr: Capture,
    /// The task's capability calls: who answers them and what it has used
    /// (`None`: the pool grants no capabilities).
    pub calls: Option<Box<CallState>>,
}

impl ComponentState {
    /// Fresh state for one task under `limits`, with the pool's granted
    /// directory, if any, and its capability calls answered by `calls`.
    pub fn new(
        limits: &Limits,
        grant: Option<&GrantRoot>,
        calls: Option<&CallBackend>,
    ) -> Result<Self, Error> {
        let stdout = Capture::new(limits.max_log);
        let stderr = Capture::new(limits.max_log);
        // WasiCtxBuilder starts from nothing: no preopens, env, args or
        // sockets (socket_addr_check denies every address, name lookup off).
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            // Synchronous calls: file operations run on the task's thread.
            .allow_blocking_current_thread(true);
        if let Some(grant) = grant {
            let (dir, guest, access) = grant.parts();
            // The grant's descriptor, reopened through /proc: the same
            // directory even if its host path was renamed since `build`.
            // cap-std confines every path the guest names beneath it.
            let perms = match access {
                crate::DirAccess::ReadOnly => FsPerms::ReadOnly,
                crate::DirAccess::ReadWrite => FsPerms::ReadWrite,
            };
            builder
                .preopened_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()), guest, perms)
                .map_err(|e| {
                    Error::Config(format!(
                        "cannot open the granted directory for a component task: {e:#}"
                    ))
                })?;
        }
        Ok(ComponentState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            memory_limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
            memory_denied: false,
            stdout,
            stderr,
            calls: calls.map(|backend| CallState::new(backend.clone(), limits)),
        })
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for ComponentState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A component may have several memories; the cap applies to each, as
        // for a module's one memory (`Limits::memory`).
        let _ = current;
        if desired > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The same bound as the pooling slot's table room.
        Ok(desired <= 1 << 20)
    }
}

/// A bounded capture of one standard stream, shared with the WASI context.
#[derive(Clone)]
pub(crate) struct Capture {
    stream: Arc<Mutex<CapturedStream>>,
    bound: usize,
}

impl Capture {
    fn new(bound: usize) -> Self {
        Capture {
            stream: Arc::default(),
            bound,
        }
    }

    fn write(&self, data: &[u8]) {
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        stream.write(data, self.bound);
    }

    /// What was captured.
    pub fn take(&self) -> CapturedStream {
        std::mem::take(&mut *self.stream.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        Capture::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what is past the bound is counted and dropped.
        Ok(64 << 10)
    }
}
