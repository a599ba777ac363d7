//! Async capability handlers (`capability_async`), for handlers that do
//! I/O: their futures run on one tokio runtime that sandpool starts on the
//! first async call and shares between the process's pools. The calling
//! task waits for the answer at most until its deadline (polling its abort),
//! then cancels the future: it is dropped at its next `.await`.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::{Serialize, de::DeserializeOwned};

use super::Capabilities;
use super::threads::{Waited, wait_for_answer};
use crate::sync::panic_message;

/// The future of an encoded response (or why the call failed).
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// An async handler erased to bytes: decodes the request (failing at once
/// when it does not decode) and returns the future of the encoded response.
pub(crate) type RawAsyncHandler = dyn Fn(&[u8]) -> Result<BoxFuture, String> + Send + Sync;

/// Worker threads of the shared runtime. Futures that wait on I/O need few;
/// a future that blocks its thread (synchronous I/O, a long computation)
/// holds one of these, so such work belongs in a threaded handler.
pub(crate) const RUNTIME_THREADS: usize = 2;

fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUNTIME_THREADS)
                .thread_name("sandpool-capability-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime of async handlers: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Turns a panic while polling the handler's future into an error.
struct CatchUnwind(BoxFuture);

impl Future for CatchUnwind {
    type Output = Result<Vec<u8>, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(format!(
                "the handler panicked: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

/// Erases a typed async handler to bytes.
pub(crate) fn erase<Req, Resp, E, F, Fut>(handler: F) -> std::sync::Arc<RawAsyncHandler>
where
    Req: DeserializeOwned,
    Resp: Serialize + 'static,
    E: fmt::Display + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    std::sync::Arc::new(move |bytes: &[u8]| -> Result<BoxFuture, String> {
        let request: Req = crate::codec::decode_exact(bytes).map_err(|e| {
            format!(
                "cannot decode the request as `{}`: {e}",
                std::any::type_name::<Req>()
            )
        })?;
        let future = handler(request);
        Ok(Box::pin(async move {
            let response = future
                .await
                .map_err(|e| format!("the handler failed: {e}"))?;
            let mut out = Vec::new();
            crate::codec::encode_into(&response, &mut out)
                .map_err(|e| format!("cannot encode the response: {e}"))?;
            Ok(out)
        }))
    })
}

/// Runs `handler` on `request` on the shared runtime and waits for it
/// until `deadline`, polling `abort`; at the deadline (or an abort) the
/// future is cancelled.
pub(crate) fn run_async(
    handler: &RawAsyncHandler,
    request: &[u8],
    deadline: Option<Instant>,
    abort: &dyn Fn() -> bool,
) -> Result<Vec<u8>, String> {
    let future = match catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(future) => future?,
        Err(panic) => {
            return Err(format!("the handler panicked: {}", panic_message(&*panic)));
        }
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let running = runtime()?.spawn(async move {
        let _ = tx.send(CatchUnwind(future).await);
    });
    match wait_for_answer(&rx, deadline, abort) {
        Waited::Answer(result) => result,
        Waited::Deadline => {
            running.abort();
            Err("the task's deadline passed while the handler ran; its future was cancelled".into())
        }
        Waited::Aborted => {
            running.abort();
            Err("the task was aborted while the handler ran; its future was cancelled".into())
        }
        Waited::Gone => Err("the handler's future ended without an answer".into()),
    }
}

impl Capabilities {
    /// Grants `name`, its handler an async function (see
    /// [`PoolBuilder::capability_async`](crate::PoolBuilder::capability_async)).
    ///
    /// ```
    /// let caps = sandpool::Capabilities::new()
    ///     .capability_async("id", |x: u8| async move { Ok::<_, String>(x) });
    /// assert_eq!(caps.names(), ["id"]);
    /// ```
    pub fn capability_async<Req, Resp, E, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, E>> + Send + 'static,
    {
        self.insert_async(name, erase(handler));
        self
    }
}

impl<In, Out> crate::PoolBuilder<In, Out> {
    /// Grants the capability `name`, answered by an async `handler`: for
    /// handlers that do I/O (a database client, an HTTP service). Tasks
    /// call it like any capability (`sandpool_guest::call`), and it fails
    /// them with the same errors as [`capability`](Self::capability).
    ///
    /// The futures run on one tokio runtime (2 worker threads, started on
    /// the first async call) shared by the process's pools; at
    /// [`Isolation::Process`](crate::Isolation::Process) they run in this
    /// process, for every worker. The task waits for the answer at most
    /// until its deadline ([`Limits::timeout`](crate::Limits::timeout)) or
    /// its abort, then the future is **cancelled** (dropped at its next
    /// `.await`) and the task fails with
    /// [`Error::Capability`](crate::Error::Capability). A future that
    /// blocks its thread instead of awaiting cannot be cancelled and holds
    /// a runtime thread: register blocking work with
    /// [`capability`](Self::capability) instead.
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// use std::time::Duration;
    /// let pool = sandpool::Pool::builder(task)
    ///     .capability_async("geo.population", |city: String| async move {
    ///         // Stands for a request to a remote service.
    ///         tokio::time::sleep(Duration::from_millis(1)).await;
    ///         match city.as_str() {
    ///             "Oslo" => Ok(709_000u64),
    ///             _ => Err(format!("no figure for {city}")),
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn capability_async<Req, Resp, E, F, Fut>(self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, E>> + Send + 'static,
    {
        self.capabilities(&Capabilities::new().capability_async(name, handler))
    }
}
