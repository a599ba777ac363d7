//! Running one task in a fresh wasm instance: the unit of work of both the
//! in-process executor and the `sandpool worker` subprocess.
//!
//! A task gets its own `Store` and instance from the module's `InstancePre`
//! (pooling allocator slot), its input copied in, the run export called
//! under its limits, and its output copied out. The instance is then
//! dropped, so no state survives into the next task.

use std::time::{Duration, Instant};

use sandpool_guest::abi;
use wasmtime::{Extern, Memory, Store, Trap, TypedFunc, WasmBacktrace};

use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::module::{CompiledModule, ticks_for};
use crate::wasi::{CapturedStream, GuestExit, HostState};

/// Wasm backtrace lines kept in a trap message.
const MAX_BACKTRACE_LINES: usize = 12;

/// The longest guest error message kept.
const MAX_GUEST_MESSAGE: usize = 64 << 10;

/// What a task left behind besides its result: captured output and timing.
///
/// ```no_run
/// # let pool = sandpool::Pool::builder(sandpool::Task::<u64, u64>::from_file("primes.wasm")?).build()?;
/// let logs = pool.submit(&1000)?.wait_output().logs;
/// println!("{} bytes on stdout in {:?}", logs.stdout.bytes.len(), logs.elapsed);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct TaskLogs {
    /// Captured standard output (bounded by [`Limits::max_log`]).
    pub stdout: CapturedStream,
    /// Captured standard error (bounded by [`Limits::max_log`]).
    pub stderr: CapturedStream,
    /// Wall-clock time from instantiation to output copied out.
    pub elapsed: Duration,
}

/// The raw outcome of one task: encoded output bytes or an error, plus logs.
#[derive(Debug)]
pub(crate) struct RawOutcome {
    pub result: Result<Vec<u8>, Error>,
    pub logs: TaskLogs,
}

impl CompiledModule {
    /// Runs one task on `input` (already encoded) in a fresh instance.
    pub fn run_task(&self, limits: &Limits, task: &TaskRef, input: &[u8]) -> RawOutcome {
        self.run_task_granted(limits, task, input, None)
    }

    /// [`run_task`](Self::run_task) with the pool's granted directory, if any, visible to the guest.
    pub fn run_task_granted(
        &self,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
        grant: Option<&std::sync::Arc<crate::grant::GrantRoot>>,
    ) -> RawOutcome {
        let started = Instant::now();
        let memory_limit = usize::try_from(limits.memory).unwrap_or(usize::MAX);
        let mut state = HostState::new(memory_limit, limits.max_log);
        if let Some(root) = grant {
            state.files = Some(Box::new(crate::grant::FileTable::new(
                std::sync::Arc::clone(root),
            )));
        }
        let mut store = Store::new(&self.engine, state);
        let result = self.run_in(&mut store, limits, task, input);
        let state = store.into_data();
        RawOutcome {
            result,
            logs: TaskLogs {
                stdout: state.stdout,
                stderr: state.stderr,
                elapsed: started.elapsed(),
            },
        }
    }

    fn run_in(
        &self,
        store: &mut Store<HostState>,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        store.limiter(|s| s);
        match limits.timeout {
            Some(t) => store.set_epoch_deadline(ticks_for(t)),
            None => store.set_epoch_deadline(u64::MAX / 2),
        }
        crate::abort::arm(store, limits); // TaskHandle::abort (in process only)
        if self.fuel {
            let fuel = limits.fuel.unwrap_or(u64::MAX);
            store
                .set_fuel(fuel)
                .map_err(|e| Error::Pool(format!("{e:#}")))?;
        } else if limits.fuel.is_some() {
            return Err(Error::Config(format!(
                "{task}: a fuel limit needs a pool built with fuel metering (PoolBuilder::fuel_metering)"
            )));
        }
        let fail =
            |store: &mut Store<HostState>, err: wasmtime::Error| classify(store, limits, task, err);

        let instance = match self.pre.instantiate(&mut *store) {
            Ok(instance) => instance,
            Err(e) => return Err(fail(store, e.context("cannot instantiate the module"))),
        };
        let exports = match self.exports(store, &instance) {
            Ok(exports) => exports,
            Err(e) => return Err(fail(store, e)),
        };
        if let Some(init) = &exports.initialize
            && let Err(e) = init.call(&mut *store, ())
        {
            return Err(fail(store, e));
        }
        call_task(store, &exports, limits, task, input)
    }

    /// Looks up the ABI exports of a fresh instance by their precomputed
    /// indices and types them without a run-time signature check.
    fn exports(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::Instance,
    ) -> wasmtime::Result<Exports> {
        let Some(Extern::Memory(memory)) = instance.get_module_export(&mut *store, &self.memory)
        else {
            return Err(wasmtime::format_err!("the module has no memory export"));
        };
        let initialize = match &self.initialize {
            Some(export) => Some(func(store, instance, export)?),
            None => None,
        };
        let alloc = func(store, instance, &self.alloc)?;
        let run = func(store, instance, &self.run)?;
        // SAFETY: `check_interface` verified at load that these exports of
        // this module have exactly these signatures (`_initialize: [] -> []`,
        // `sandpool_alloc: [i32] -> [i32]`, `sandpool_run: [i32 i32] -> [i64]`),
        // and `self.pre` instantiates that same module, so every instance's
        // exports have them too. This skips `Func::typed`'s per-call type
        // registry lookups on the hot path.
        let (initialize, alloc, run) = unsafe {
            (
                initialize.map(|f| TypedFunc::new_unchecked(&*store, f)),
                TypedFunc::new_unchecked(&*store, alloc),
                TypedFunc::new_unchecked(&*store, run),
            )
        };
        Ok(Exports {
            memory,
            initialize,
            alloc,
            run,
        })
    }
}

/// The ABI exports of one live instance, typed.
struct Exports {
    memory: Memory,
    initialize: Option<TypedFunc<(), ()>>,
    alloc: TypedFunc<i32, i32>,
    run: TypedFunc<(i32, i32), i64>,
}

/// Copies `input` into the instance, runs it, and copies the tagged output out.
fn call_task(
    store: &mut Store<HostState>,
    exports: &Exports,
    limits: &Limits,
    task: &TaskRef,
    input: &[u8],
) -> Result<Vec<u8>, Error> {
    let fail =
        |store: &mut Store<HostState>, err: wasmtime::Error| classify(store, limits, task, err);
    let len = u32::try_from(input.len()).map_err(|_| Error::Encode {
        task: task.clone(),
        reason: format!(
            "input of {} bytes is over the 4 GiB wasm32 limit",
            input.len()
        ),
    })?;
    let memory = exports.memory;
    let ptr = match exports.alloc.call(&mut *store, len as i32) {
        Ok(ptr) => ptr,
        Err(e) => return Err(fail(store, e.context("`sandpool_alloc` failed"))),
    };
    if let Err(e) = memory.write(&mut *store, ptr as u32 as usize, input) {
        return Err(Error::Trap {
            task: task.clone(),
            message: format!(
                "`sandpool_alloc({len})` returned {ptr:#x}, outside linear memory: {e}"
            ),
        });
    }
    let packed = match exports.run.call(&mut *store, (ptr, len as i32)) {
        Ok(packed) => packed as u64,
        Err(e) => return Err(fail(store, e)),
    };
    let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    let payload_len = out_len.saturating_sub(1) as u64;
    if payload_len > limits.max_output {
        return Err(Error::OutputTooLarge {
            task: task.clone(),
            size: payload_len,
            limit: limits.max_output,
        });
    }
    let data = memory.data(&*store);
    let Some(output) = out_ptr
        .checked_add(out_len)
        .and_then(|end| data.get(out_ptr..end))
    else {
        return Err(Error::Decode {
            task: task.clone(),
            what: "output",
            reason: format!(
                "the guest returned the range {out_ptr:#x}+{out_len}, outside its {} bytes of linear memory",
                data.len()
            ),
        });
    };
    decode_tagged(task, output)
}

fn func(
    store: &mut Store<HostState>,
    instance: &wasmtime::Instance,
    export: &wasmtime::ModuleExport,
) -> wasmtime::Result<wasmtime::Func> {
    match instance.get_module_export(&mut *store, export) {
        Some(Extern::Func(f)) => Ok(f),
        _ => Err(wasmtime::format_err!("export is not a function")),
    }
}

/// Splits a tagged output into the value bytes or the guest's error.
pub(crate) fn decode_tagged(task: &TaskRef, output: &[u8]) -> Result<Vec<u8>, Error> {
    let Some((&tag, rest)) = output.split_first() else {
        return Err(Error::Decode {
            task: task.clone(),
            what: "output",
            reason: "empty output (no result tag)".into(),
        });
    };
    let message =
        || String::from_utf8_lossy(&rest[..rest.len().min(MAX_GUEST_MESSAGE)]).into_owned();
    match tag {
        abi::TAG_OK => Ok(rest.to_vec()),
        abi::TAG_GUEST_ERROR => Err(Error::Guest {
            task: task.clone(),
            message: message(),
        }),
        abi::TAG_INPUT_ERROR => Err(Error::Decode {
            task: task.clone(),
            what: "input in the guest",
            reason: message(),
        }),
        other => Err(Error::Decode {
            task: task.clone(),
            what: "output",
            reason: format!("unknown result tag {other} (expected 0, 1 or 2)"),
        }),
    }
}

/// Turns an error from wasmtime into the task error that explains it.
fn classify(
    store: &mut Store<HostState>,
    limits: &Limits,
    task: &TaskRef,
    err: wasmtime::Error,
) -> Error {
    let task = task.clone();
    let trap = err.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return Error::Timeout {
            task,
            limit: limits.timeout.unwrap_or_default(),
        };
    }
    if trap == Some(Trap::OutOfFuel) {
        return Error::FuelExhausted {
            task,
            limit: limits.fuel.unwrap_or(u64::MAX),
        };
    }
    let state = store.data_mut();
    if state.memory_denied {
        return Error::MemoryLimit {
            task,
            limit: limits.memory,
        };
    }
    if let Some(message) = state.panic.take() {
        return Error::Panic { task, message };
    }
    if let Some(exit) = err.downcast_ref::<GuestExit>() {
        return Error::Trap {
            task,
            message: exit.to_string(),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(backtrace) = err.downcast_ref::<WasmBacktrace>() {
        let frames = backtrace.to_string();
        let lines: Vec<&str> = frames.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(MAX_BACKTRACE_LINES) {
            message.push('\n');
            message.push_str(line);
        }
        if lines.len() > MAX_BACKTRACE_LINES {
            message.push_str(&format!(
                "\n    ... {} more frames",
                lines.len() - MAX_BACKTRACE_LINES
            ));
        }
    }
    Error::Trap { task, message }
}

/// Direct access to the fresh-instance path, and to one instance reused for
/// many calls, for the benchmarks in `benches/`. Not a stable API: hidden
/// from the docs and free to change.
///
/// ```no_run
/// use sandpool::{Limits, Task, __bench::DirectRunner};
/// let task: Task<serde_bytes::ByteBuf, serde_bytes::ByteBuf> = Task::from_file("echo.wasm")?;
/// let runner = DirectRunner::new(&task, Limits::default())?;
/// let input = [3u8, 1, 2, 3]; // bincode of the byte string [1, 2, 3]
/// assert_eq!(runner.run_fresh(&input)?, input);
/// let mut reused = runner.reused_instance()?;
/// assert_eq!(reused.run(&input)?, input);
/// # Ok::<(), sandpool::Error>(())
/// ```
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;

    use wasmtime::Store;

    use super::{Exports, call_task};
    use crate::error::{Error, TaskRef};
    use crate::limits::Limits;
    use crate::module::CompiledModule;
    use crate::task::Task;
    use crate::wasi::HostState;

    /// Runs tasks of one module on the calling thread, with no pool.
    ///
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub struct DirectRunner {
        module: Arc<CompiledModule>,
        limits: Limits,
        task: TaskRef,
    }

    impl std::fmt::Debug for DirectRunner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("DirectRunner")
                .field("task", &self.task)
                .finish()
        }
    }

    impl DirectRunner {
        /// Compiles (or reuses) the task's module for these limits.
        ///
        /// ```no_run
        /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
        /// let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
        /// # Ok::<(), sandpool::Error>(())
        /// ```
        pub fn new<In, Out>(task: &Task<In, Out>, limits: Limits) -> Result<Self, Error> {
            let module = task.module.compiled(limits.fuel.is_some())?;
            Ok(DirectRunner {
                task: TaskRef::new(Arc::clone(&module.name), 0),
                module,
                limits,
            })
        }

        /// Runs one task in a fresh instance (the executor's own path);
        /// `input` is encoded, and so is the output.
        ///
        /// ```no_run
        /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
        /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
        /// assert_eq!(runner.run_fresh(&[10])?, vec![4]);
        /// # Ok::<(), sandpool::Error>(())
        /// ```
        pub fn run_fresh(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
            self.module.run_task(&self.limits, &self.task, input).result
        }

        /// Bytes of linear memory the pooling allocator keeps resident in idle
        /// slots of this module's engine (`None` without the pooling allocator).
        ///
        /// ```no_run
        /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
        /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
        /// runner.run_fresh(&[10])?;
        /// println!("{:?} bytes kept warm", runner.warm_memory_bytes());
        /// # Ok::<(), sandpool::Error>(())
        /// ```
        pub fn warm_memory_bytes(&self) -> Option<usize> {
            let metrics = self.module.engine.pooling_allocator_metrics()?;
            Some(metrics.unused_memory_bytes_resident())
        }

        /// One instance that every call reuses: no isolation between calls,
        /// the floor of any call path.
        ///
        /// ```no_run
        /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
        /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
        /// let mut instance = runner.reused_instance()?;
        /// assert_eq!(instance.run(&[10])?, vec![4]);
        /// # Ok::<(), sandpool::Error>(())
        /// ```
        pub fn reused_instance(&self) -> Result<ReusedInstance, Error> {
            let module = &self.module;
            let memory_limit = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
            let mut store = Store::new(
                &module.engine,
                HostState::new(memory_limit, self.limits.max_log),
            );
            store.limiter(|s| s);
            store.set_epoch_deadline(u64::MAX / 2);
            if module.fuel {
                store
                    .set_fuel(u64::MAX)
                    .map_err(|e| Error::Pool(format!("{e:#}")))?;
            }
            let fail = |e: wasmtime::Error| Error::Pool(format!("{e:#}"));
            let instance = module.pre.instantiate(&mut store).map_err(fail)?;
            let exports = module.exports(&mut store, &instance).map_err(fail)?;
            if let Some(init) = &exports.initialize {
                init.call(&mut store, ()).map_err(fail)?;
            }
            Ok(ReusedInstance {
                store,
                exports,
                limits: self.limits,
                task: self.task.clone(),
            })
        }
    }

    /// One live instance that runs call after call (see [`DirectRunner::reused_instance`]).
    ///
    /// ```no_run
    /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
    /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// let mut instance = runner.reused_instance()?;
    /// for _ in 0..3 { instance.run(&[10])?; }
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub struct ReusedInstance {
        store: Store<HostState>,
        exports: Exports,
        limits: Limits,
        task: TaskRef,
    }

    impl std::fmt::Debug for ReusedInstance {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ReusedInstance")
                .field("task", &self.task)
                .finish()
        }
    }

    impl ReusedInstance {
        /// Runs one call in the same instance as every other call.
        ///
        /// ```no_run
        /// # let task: sandpool::Task<u64, u64> = sandpool::Task::from_file("primes.wasm")?;
        /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
        /// let mut instance = runner.reused_instance()?;
        /// assert_eq!(instance.run(&[100])?, vec![25]);
        /// # Ok::<(), sandpool::Error>(())
        /// ```
        pub fn run(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
            call_task(
                &mut self.store,
                &self.exports,
                &self.limits,
                &self.task,
                input,
            )
        }
    }
}
