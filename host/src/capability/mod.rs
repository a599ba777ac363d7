//! Host capabilities: named, typed functions of the host (a database
//! connection, a loaded model) that tasks may call, granted per pool and
//! denied by default. Only bincode values cross, in both directions.
//!
//! - [`Capabilities`]: the registry a [`PoolBuilder`](crate::PoolBuilder)
//!   collects, each handler erased to bytes in, bytes out (this file).
//! - `declared.rs`: the names a module declares it needs (custom section
//!   `sandpool.capabilities`), checked against the grants at build.
//! - `imports.rs`: the `sandpool_v1.call` / `call_result` host imports and
//!   the per-task accounting against [`Limits`](crate::Limits).
//! - `threads.rs`: the threads blocking handlers run on, so a task can be
//!   failed at its deadline and the call abandoned.
//! - `async_handlers.rs`: async handlers (`capability_async`), their
//!   futures on a shared tokio runtime, cancelled at the task's deadline.
//!
//! The guest contract is `docs/abi.md` ("Capabilities"); what a capability
//! exposes is `docs/security.md`.

mod async_handlers;
mod declared;
pub(crate) mod imports;
#[cfg(feature = "cli")]
mod sqlite;
mod threads;

#[cfg(feature = "cli")]
pub use sqlite::{MAX_ROWS, SQL_QUERY, SqlQuery, SqlValue, sqlite_query};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use async_handlers::RawAsyncHandler;
pub(crate) use declared::declared_names;

/// A handler erased to bytes: the encoded request in, the encoded response
/// (or the reason it failed) out.
pub(crate) type RawHandler = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync;

/// Where a capability's handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// On a capability thread; the task waits at most until its deadline.
    Threaded,
    /// On the task's own thread (no hand-off; the handler must not block).
    Inline,
}

/// One granted capability: its handler and where it runs.
pub(crate) enum Entry {
    /// On a capability thread; the task waits at most until its deadline.
    Threaded(Arc<RawHandler>),
    /// On the task's own thread (no hand-off; the handler must not block).
    Inline(Arc<RawHandler>),
    /// A future on the shared runtime, cancelled at the task's deadline.
    Async(Arc<RawAsyncHandler>),
}

/// The capabilities a pool (or a folder run) grants, by name: a set of
/// typed host handlers, shared by every task (and, at
/// [`Isolation::Process`](crate::Isolation::Process), answered in this
/// process for every worker). [`PoolBuilder::capability`](crate::PoolBuilder::capability)
/// adds to the pool's own set; this type carries one to
/// [`PoolBuilder::capabilities`](crate::PoolBuilder::capabilities) or
/// [`FolderJob::capabilities`](crate::FolderJob::capabilities).
///
/// ```
/// let caps = sandpool::Capabilities::new()
///     .capability("math.double", |x: u64| Ok::<_, String>(x * 2))
///     .capability_inline("math.neg", |x: i64| Ok::<_, String>(-x));
/// assert_eq!(caps.names(), ["math.double", "math.neg"]);
/// ```
#[derive(Clone, Default)]
pub struct Capabilities {
    entries: HashMap<String, Arc<Entry>>,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        f.debug_struct("Capabilities")
            .field("names", &names)
            .finish()
    }
}

/// Is `name` a valid capability name: 1 to 128 bytes of ASCII letters,
/// digits and `_ . : -`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The longest capability name.
pub(crate) const MAX_NAME: usize = 128;

impl Capabilities {
    /// An empty set: nothing granted.
    ///
    /// ```
    /// assert!(sandpool::Capabilities::new().names().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants `name`, its handler run on a capability thread (see
    /// [`PoolBuilder::capability`](crate::PoolBuilder::capability)).
    ///
    /// ```
    /// let caps = sandpool::Capabilities::new().capability("id", |x: u8| Ok::<_, String>(x));
    /// assert_eq!(caps.names(), ["id"]);
    /// ```
    pub fn capability<Req, Resp, E, F>(mut self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: fmt::Display,
        F: Fn(Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.insert(name, Mode::Threaded, handler);
        self
    }

    /// Grants `name`, its handler run on the task's own thread (see
    /// [`PoolBuilder::capability_inline`](crate::PoolBuilder::capability_inline)).
    ///
    /// ```
    /// let caps = sandpool::Capabilities::new().capability_inline("id", |x: u8| Ok::<_, String>(x));
    /// assert_eq!(caps.names(), ["id"]);
    /// ```
    pub fn capability_inline<Req, Resp, E, F>(mut self, name: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: fmt::Display,
        F: Fn(Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        self.insert(name, Mode::Inline, handler);
        self
    }

    /// The granted names, sorted.
    ///
    /// ```
    /// let caps = sandpool::Capabilities::new().capability("b", |x: u8| Ok::<_, String>(x));
    /// assert_eq!(caps.names(), ["b"]);
    /// ```
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds every capability of `other` (replacing those of the same name).
    pub(crate) fn extend(&mut self, other: &Capabilities) {
        for (name, entry) in &other.entries {
            self.entries.insert(name.clone(), Arc::clone(entry));
        }
    }

    /// Adds (or replaces) `name`, typed: the request is decoded as `Req`,
    /// the response encoded from `Resp`.
    pub(crate) fn insert<Req, Resp, E, F>(&mut self, name: &str, mode: Mode, handler: F)
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: fmt::Display,
        F: Fn(Req) -> Result<Resp, E> + Send + Sync + 'static,
    {
        let raw = move |bytes: &[u8]| -> Result<Vec<u8>, String> {
            let request: Req = crate::codec::decode_exact(bytes).map_err(|e| {
                format!(
                    "cannot decode the request as `{}`: {e}",
                    std::any::type_name::<Req>()
                )
            })?;
            let response = handler(request).map_err(|e| format!("the handler failed: {e}"))?;
            let mut out = Vec::new();
            crate::codec::encode_into(&response, &mut out)
                .map_err(|e| format!("cannot encode the response: {e}"))?;
            Ok(out)
        };
        self.insert_raw(name, mode, Arc::new(raw));
    }

    /// Adds (or replaces) `name` with a handler on bytes.
    pub(crate) fn insert_raw(&mut self, name: &str, mode: Mode, handler: Arc<RawHandler>) {
        let entry = match mode {
            Mode::Threaded => Entry::Threaded(handler),
            Mode::Inline => Entry::Inline(handler),
        };
        self.entries.insert(name.to_string(), Arc::new(entry));
    }

    /// Adds (or replaces) `name` with an async handler on bytes.
    pub(crate) fn insert_async(&mut self, name: &str, handler: Arc<RawAsyncHandler>) {
        self.entries
            .insert(name.to_string(), Arc::new(Entry::Async(handler)));
    }

    /// The first invalid name, if any.
    pub(crate) fn invalid_name(&self) -> Option<&str> {
        self.entries
            .keys()
            .map(String::as_str)
            .find(|n| !valid_name(n))
    }

    /// What module `module` (its wasm bytes) may call: the capabilities it
    /// declares, each of which must be granted. A module that declares none
    /// gets none (and loads unchanged).
    pub(crate) fn session_for(
        &self,
        module: &str,
        wasm: &[u8],
    ) -> Result<Arc<Session>, crate::error::Error> {
        let declared =
            declared_names(wasm).map_err(|reason| crate::error::Error::InvalidModule {
                module: module.to_string(),
                reason,
            })?;
        let mut entries = HashMap::new();
        for name in declared {
            match self.entries.get(&name) {
                Some(entry) => {
                    entries.insert(name, Arc::clone(entry));
                }
                None => {
                    return Err(crate::error::Error::CapabilityDenied {
                        module: module.to_string(),
                        capability: name,
                    });
                }
            }
        }
        Ok(Arc::new(Session { entries }))
    }
}

/// The capabilities one module's tasks may call: declared by the module and
/// granted by the pool.
#[derive(Default)]
pub(crate) struct Session {
    entries: HashMap<String, Arc<Entry>>,
}

impl Session {
    /// Runs `name` on `request` for a task whose deadline is `deadline`.
    /// `abort` is polled while a threaded or async handler runs. Only a
    /// threaded handler gets a copy of the request (its thread owns it).
    pub fn call(
        &self,
        name: &str,
        request: &[u8],
        deadline: Option<std::time::Instant>,
        abort: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, String> {
        let Some(entry) = self.entries.get(name) else {
            return Err(if self.entries.is_empty() {
                "the module declares no capabilities, so it may call none \
                 (declare names in the `sandpool.capabilities` custom section)"
                    .to_string()
            } else {
                "not declared by the module, or not granted by the pool".to_string()
            });
        };
        match &**entry {
            Entry::Inline(handler) => {
                let result = threads::run_caught(&**handler, request);
                if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    return Err("the task's deadline passed while the handler ran".into());
                }
                result
            }
            Entry::Threaded(handler) => {
                threads::run_on_thread(Arc::clone(handler), request.to_vec(), deadline, abort)
            }
            Entry::Async(handler) => {
                async_handlers::run_async(&**handler, request, deadline, abort)
            }
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("names", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}
