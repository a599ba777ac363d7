//! Component tasks: WebAssembly components implementing `wit/task.wit`
//! (`export run: func(input: list<u8>) -> result<list<u8>, string>`), the
//! form Python (componentize-py) and JavaScript (componentize-js) tasks take.
//!
//! They sit beside ABI v1 modules behind the same [`Task<In, Out>`](crate::Task):
//! the load detects a component (`is_component`), and from there the same
//! limits, errors and levels apply. The bytes that cross are the same
//! bincode values as for a module (docs/abi.md), so the host's encoding and
//! decoding do not change; `ok` is the output value, `error` the task's
//! failure message (a message starting with [`INPUT_ERROR_PREFIX`] means the
//! guest could not decode its input).
//!
//! - `mod.rs`: [`CompiledComponent`]: compile, pre-instantiate, one task in a
//!   fresh instance.
//! - `wasi.rs`: the per-task store state: WASI 0.2, deny by default (a
//!   granted directory is the one preopen), captured stdout/stderr, the
//!   memory cap, the capability calls.
//! - `capabilities.rs`: the `sandpool:task/capabilities` import.
//! - `world.rs`: what a component imports and exports, for `sandpool inspect`
//!   and the load-time import check.

pub(crate) mod capabilities;
pub(crate) mod wasi;
pub(crate) mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use self::wasi::ComponentState;
use crate::capability::imports::{CallBackend, CallFailure};
use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::runtime::instance::{RawOutcome, TaskLogs};
use crate::sandbox::grant::GrantRoot;

/// The export every component task has (wit/task.wit).
pub(crate) const EXPORT_RUN: &str = "run";

/// An `error` message starting with this is an input the guest could not
/// decode ([`Error::Decode`]); the SDK helpers in guest/python and guest/js
/// use it. Any other message is [`Error::Guest`].
pub(crate) const INPUT_ERROR_PREFIX: &str = "cannot decode the input: ";

/// Guest messages are cut to this many bytes (as for ABI v1).
const MAX_GUEST_MESSAGE: usize = 64 << 10;

/// Epoch deadline of a task without a timeout (as `runtime/store.rs`).
const NO_DEADLINE: u64 = u64::MAX / 2;

/// The `run` function's type on the host side.
type RunFunc = wasmtime::component::TypedFunc<(Vec<u8>,), (Result<Vec<u8>, String>,)>;

/// A compiled component task, linked against WASI 0.2 and pre-instantiated.
pub(crate) struct CompiledComponent {
    pub name: Arc<str>,
    pub engine: Engine,
    pub component: Component,
    pub pre: InstancePre<ComponentState>,
    pub run: ComponentExportIndex,
    pub fuel: bool,
}

impl std::fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledComponent")
            .field("name", &self.name)
            .field("fuel", &self.fuel)
            .finish()
    }
}

fn invalid(name: &str, reason: String) -> Error {
    Error::InvalidModule {
        module: name.to_string(),
        reason,
    }
}

impl CompiledComponent {
    /// Compiles a component on the shared component engine and checks it.
    pub fn compile(name: &str, wasm: &[u8], fuel: bool) -> Result<Self, Error> {
        let engine = crate::runtime::engine::component_engine(fuel)?;
        let component = Component::new(&engine, wasm)
            .map_err(|e| invalid(name, format!("cannot compile the component: {e:#}")))?;
        Self::from_component(name, engine, component, fuel)
    }

    /// Wraps an already compiled component (e.g. deserialized from the cache).
    pub fn from_component(
        name: &str,
        engine: Engine,
        component: Component,
        fuel: bool,
    ) -> Result<Self, Error> {
        let mut linker = Linker::<ComponentState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| Error::Pool(format!("cannot set up WASI 0.2: {e:#}")))?;
        capabilities::add_to_linker(&mut linker).map_err(|e| {
            Error::Pool(format!(
                "cannot set up the `{}` import: {e:#}",
                capabilities::INTERFACE
            ))
        })?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            invalid(
                name,
                format!("the component needs what sandpool does not provide: {e:#}"),
            )
        })?;
        let run = component
            .get_export_index(None, EXPORT_RUN)
            .ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "the component does not export `{EXPORT_RUN}` (wit/task.wit: \
                         run: func(input: list<u8>) -> result<list<u8>, string>)"
                    ),
                )
            })?;
        let compiled = CompiledComponent {
            name: name.into(),
            engine,
            component,
            pre,
            run,
            fuel,
        };
        compiled.check_type()?;
        Ok(compiled)
    }

    /// Instantiates once to check that `run` has the type of wit/task.wit.
    fn check_type(&self) -> Result<(), Error> {
        let limits = Limits {
            timeout: Some(Duration::from_secs(10)),
            fuel: None,
            memory: 4 << 30,
            max_output: 0,
            max_log: 4096,
            ..Limits::default()
        };
        let mut store = self.new_store(&limits, None, None)?;
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| invalid(&self.name, format!("cannot instantiate: {e:#}")))?;
        instance
            .get_typed_func::<(Vec<u8>,), (Result<Vec<u8>, String>,)>(&mut store, self.run)
            .map_err(|e| {
                invalid(
                    &self.name,
                    format!(
                        "`{EXPORT_RUN}` is not `func(input: list<u8>) -> result<list<u8>, string>`: {e:#}"
                    ),
                )
            })?;
        Ok(())
    }

    /// A fresh store under `limits` (memory cap, deadline, fuel), with the
    /// granted directory, if any, and the capability calls' backend.
    fn new_store(
        &self,
        limits: &Limits,
        grant: Option<&GrantRoot>,
        calls: Option<&CallBackend>,
    ) -> Result<Store<ComponentState>, Error> {
        let state = ComponentState::new(limits, grant, calls)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.set_epoch_deadline(
            limits
                .timeout
                .map_or(NO_DEADLINE, crate::runtime::engine::ticks_for),
        );
        crate::exec::abort::arm(&mut store, limits);
        if self.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| Error::Pool(format!("{e:#}")))?;
        }
        Ok(store)
    }

    /// Runs one task on `input` (already encoded) in a fresh instance, with
    /// the pool's granted directory, if any, as its one preopen, and its
    /// capability calls answered by `calls`.
    pub fn run_task_calling(
        &self,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
        grant: Option<&GrantRoot>,
        calls: Option<&CallBackend>,
    ) -> RawOutcome {
        let started = Instant::now();
        if let Err(e) = crate::runtime::instance::fuel_available(self.fuel, limits, task) {
            return RawOutcome::failed_since(started, e);
        }
        let mut store = match self.new_store(limits, grant, calls) {
            Ok(store) => store,
            Err(e) => return RawOutcome::failed_since(started, e),
        };
        let result = self.call(&mut store, limits, task, input);
        let state = store.into_data();
        RawOutcome {
            result,
            logs: TaskLogs {
                stdout: state.stdout.take(),
                stderr: state.stderr.take(),
                elapsed: started.elapsed(),
            },
        }
    }

    /// Instantiates, calls `run` and maps its result to the task's.
    fn call(
        &self,
        store: &mut Store<ComponentState>,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| classify(store, limits, task, e.context("cannot instantiate")))?;
        let run: RunFunc = instance
            .get_typed_func(&mut *store, self.run)
            .map_err(|e| classify(store, limits, task, e))?;
        let (result,) = run
            .call(&mut *store, (input.to_vec(),))
            .map_err(|e| classify(store, limits, task, e))?;
        match result {
            Ok(output) if output.len() as u64 > limits.max_output => Err(Error::OutputTooLarge {
                task: task.clone(),
                size: output.len() as u64,
                limit: limits.max_output,
            }),
            Ok(output) => Ok(output),
            // A guest that caught its own allocation failure (Python's MemoryError)
            // still hit the memory cap: say so.
            Err(_) if store.data().memory_denied => Err(Error::MemoryLimit {
                task: task.clone(),
                limit: limits.memory,
            }),
            Err(message) => Err(guest_error(task, message)),
        }
    }
}

/// The task error for the `error` string a component returned.
fn guest_error(task: &TaskRef, mut message: String) -> Error {
    if message.len() > MAX_GUEST_MESSAGE {
        let mut cut = MAX_GUEST_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    match message.strip_prefix(INPUT_ERROR_PREFIX) {
        Some(reason) => Error::Decode {
            task: task.clone(),
            what: "input in the guest",
            reason: reason.to_string(),
        },
        None => Error::Guest {
            task: task.clone(),
            message,
        },
    }
}

/// Turns an error from wasmtime into the task error that explains it.
fn classify(
    store: &mut Store<ComponentState>,
    limits: &Limits,
    task: &TaskRef,
    err: wasmtime::Error,
) -> Error {
    if let Some(stopped) = crate::runtime::trap::limit_reached(&err, limits, task) {
        return stopped;
    }
    let task = task.clone();
    if let Some(failure) = err.downcast_ref::<CallFailure>() {
        return Error::Capability {
            task,
            capability: failure.capability.clone(),
            reason: failure.reason.clone(),
        };
    }
    let trap = err.downcast_ref::<Trap>().copied();
    if store.data().memory_denied {
        return Error::MemoryLimit {
            task,
            limit: limits.memory,
        };
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::Trap {
            task,
            message: format!("guest called exit({})", exit.0),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(backtrace) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        for line in backtrace
            .to_string()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(12)
        {
            message.push('\n');
            message.push_str(line);
        }
    }
    Error::Trap { task, message }
}

/// Where the time of one fresh-instance task goes (for the benchmarks).
#[cfg(feature = "bench-hooks")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    /// `Store` and WASI context created, limits set.
    pub store: Duration,
    /// `InstancePre::instantiate`: pooling slots, memory images, start functions.
    pub instantiate: Duration,
    /// Looking up and calling `run`, input and output copied.
    pub call: Duration,
    /// Dropping the store: slots returned to the pool, memories reset.
    pub drop: Duration,
    /// The same call again in the same instance (not part of a fresh
    /// task): the guest's own work, without the first call's page faults.
    pub again: Duration,
}

#[cfg(feature = "bench-hooks")]
impl CompiledComponent {
    /// [`run_task`](Self::run_task), timed phase by phase; then, in a second
    /// fresh instance, the call made twice and the second one timed.
    pub fn run_phases(
        &self,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
    ) -> (Result<Vec<u8>, Error>, Phases) {
        let mut phases = Phases::default();
        let t = Instant::now();
        let mut store = match self.new_store(limits, None, None) {
            Ok(store) => store,
            Err(e) => return (Err(e), phases),
        };
        phases.store = t.elapsed();
        let t = Instant::now();
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return (Err(classify(&mut store, limits, task, e)), phases),
        };
        phases.instantiate = t.elapsed();
        let t = Instant::now();
        let result = self.call_once(&mut store, &instance, limits, task, input);
        phases.call = t.elapsed();
        let t = Instant::now();
        drop(store);
        phases.drop = t.elapsed();
        if result.is_ok()
            && let Ok(mut store) = self.new_store(limits, None, None)
            && let Ok(instance) = self.pre.instantiate(&mut store)
            && self
                .call_once(&mut store, &instance, limits, task, input)
                .is_ok()
        {
            let t = Instant::now();
            let _ = self.call_once(&mut store, &instance, limits, task, input);
            phases.again = t.elapsed();
        }
        (result, phases)
    }

    fn call_once(
        &self,
        store: &mut Store<ComponentState>,
        instance: &wasmtime::component::Instance,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        instance
            .get_typed_func::<(Vec<u8>,), (Result<Vec<u8>, String>,)>(&mut *store, self.run)
            .and_then(|run| run.call(&mut *store, (input.to_vec(),)))
            .map_err(|e| classify(store, limits, task, e))
            .and_then(|(r,)| r.map_err(|m| guest_error(task, m)))
    }
}
