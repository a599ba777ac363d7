//! Loading a task module: compile once, check it implements guest ABI v1,
//! and prepare an `InstancePre` from which every task gets a fresh instance.
//!
//! All modules share two process-wide engines (with and without fuel
//! metering), each backed by wasmtime's pooling allocator, and one epoch
//! ticker thread that drives task deadlines.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sandpool_guest::abi;
use wasmtime::{
    Config, Enabled, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    ModuleExport, PoolingAllocationConfig, Store, ValType,
};

use crate::error::Error;
use crate::wasi::{self, HostState};

/// How often the epoch ticker advances every engine's epoch.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Concurrent instances the pooling allocator has room for, per engine.
pub(crate) const POOL_SLOTS: u32 = 1000;

/// Idle slots the pooling allocator prefers to reuse (with their resident
/// pages) before it touches a slot no instance has used yet.
const WARM_SLOTS: u32 = 16;

/// Largest linear memory any task may have (the wasm32 maximum).
const MAX_MEMORY: usize = 4 << 30;

fn engine_config(fuel: bool, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    config.max_wasm_stack(1 << 20);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if pooling {
        // Per-task cost is dominated by returning a slot to the pool: resetting
        // its linear memory to the module's initial image. By default wasmtime
        // `madvise`s the memory away, so every task page-faults its stack, data
        // and heap back in, and each `madvise` flushes the TLB of every core
        // running this process (18 µs per 1 KiB echo task on 2 cores, most of it
        // in the kernel). With `PAGEMAP_SCAN` (Linux 6.7+) wasmtime instead finds
        // the pages the task actually wrote and restores just those with
        // `memcpy`/`memset`, up to `linear_memory_keep_resident` bytes, keeping
        // them mapped: no syscall but the scan, no fault, no TLB shootdown
        // (about 5 µs per task). The keep-resident budget covers a 1 MiB input
        // round trip (~2.1 MiB written); a slot keeps at most that much
        // resident while idle. Without `PAGEMAP_SCAN` (older kernels) the same
        // setting would `memset` the first 4 MiB of every memory, so it is
        // only used when the scan is available. What stays resident is bounded
        // by the slots ever used: about max(concurrent instances,
        // `WARM_SLOTS`) slots, each holding at most the keep-resident budget.
        let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
        let keep_resident = if pagemap { 4 << 20 } else { 64 << 10 };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .max_memory_size(MAX_MEMORY)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(64 << 10)
            .max_unused_warm_slots(WARM_SLOTS)
            .pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn make_engine(fuel: bool) -> Result<Engine, String> {
    match Engine::new(&engine_config(fuel, true)) {
        Ok(engine) => Ok(engine),
        Err(pooled) => {
            // The pooling allocator reserves address space up front; where the
            // system refuses that, fall back to on-demand allocation (slower).
            tracing::warn!(
                "pooling allocator unavailable ({pooled:#}); using on-demand allocation"
            );
            Engine::new(&engine_config(fuel, false)).map_err(|e| format!("{e:#}"))
        }
    }
}

/// The shared engine for modules with (`fuel = true`) or without fuel metering.
pub(crate) fn engine(fuel: bool) -> Result<Engine, Error> {
    static PLAIN: OnceLock<Result<Engine, String>> = OnceLock::new();
    static FUELED: OnceLock<Result<Engine, String>> = OnceLock::new();
    let slot = if fuel { &FUELED } else { &PLAIN };
    let engine = slot
        .get_or_init(|| {
            let engine = make_engine(fuel)?;
            start_ticker(engine.weak());
            Ok(engine)
        })
        .clone()
        .map_err(|e| Error::Pool(format!("cannot create the wasm engine: {e}")))?;
    Ok(engine)
}

fn start_ticker(engine: wasmtime::EngineWeak) {
    let spawned = std::thread::Builder::new()
        .name("sandpool-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker thread: {e}; task deadlines will not fire");
    }
}

/// Epoch ticks that cover `timeout`, with one tick of slack for the partial first tick.
pub(crate) fn ticks_for(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
}

/// A compiled, checked task module, ready to instantiate.
pub(crate) struct CompiledModule {
    pub name: Arc<str>,
    pub engine: Engine,
    pub module: Module,
    pub pre: InstancePre<HostState>,
    pub fuel: bool,
    pub memory: ModuleExport,
    pub alloc: ModuleExport,
    pub run: ModuleExport,
    pub initialize: Option<ModuleExport>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("name", &self.name)
            .field("fuel", &self.fuel)
            .finish()
    }
}

/// The task name for a module file: its file stem.
pub(crate) fn name_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn abi_error(module: &str, reason: impl Into<String>) -> Error {
    Error::AbiMismatch {
        module: module.to_string(),
        expected: abi::ABI_VERSION,
        reason: reason.into(),
    }
}

fn invalid(module: &str, reason: impl Into<String>) -> Error {
    Error::InvalidModule {
        module: module.to_string(),
        reason: reason.into(),
    }
}

/// Checks exports and imports against ABI v1 without running anything.
pub(crate) fn check_interface(name: &str, module: &Module) -> Result<(), Error> {
    for import in module.imports() {
        if !wasi::is_provided_import(import.module()) {
            return Err(wasi::unknown_import(name, import.module(), import.name()));
        }
    }
    let func = |params: &[ValType], results: &[ValType]| (params.to_vec(), results.to_vec());
    let expected = [
        (abi::EXPORT_ABI_VERSION, func(&[], &[ValType::I32])),
        (abi::EXPORT_ALLOC, func(&[ValType::I32], &[ValType::I32])),
        (
            abi::EXPORT_RUN,
            func(&[ValType::I32, ValType::I32], &[ValType::I64]),
        ),
    ];
    for (export, (params, results)) in expected {
        let describe = format!("`{export}` ({params:?}) -> ({results:?})");
        match module.get_export(export) {
            None => return Err(abi_error(name, format!("missing export {describe}"))),
            Some(ExternType::Func(ty)) => {
                let ok = ty.params().count() == params.len()
                    && ty.results().count() == results.len()
                    && ty.params().zip(&params).all(|(a, b)| ValType::eq(&a, b))
                    && ty.results().zip(&results).all(|(a, b)| ValType::eq(&a, b));
                if !ok {
                    return Err(abi_error(
                        name,
                        format!("export `{export}` has type {ty}, expected {describe}"),
                    ));
                }
            }
            Some(_) => {
                return Err(abi_error(
                    name,
                    format!("export `{export}` is not a function"),
                ));
            }
        }
    }
    match module.get_export(abi::EXPORT_MEMORY) {
        Some(ExternType::Memory(ty)) if !ty.is_64() => {}
        Some(ExternType::Memory(_)) => {
            return Err(abi_error(name, "export `memory` is a 64-bit memory"));
        }
        _ => {
            return Err(abi_error(
                name,
                "missing export `memory` (a 32-bit linear memory)",
            ));
        }
    }
    if let Some(ty) = module.get_export(abi::EXPORT_INITIALIZE)
        && !matches!(&ty, ExternType::Func(f) if f.params().len() == 0 && f.results().len() == 0)
    {
        return Err(abi_error(
            name,
            "export `_initialize` must be a function with no parameters or results",
        ));
    }
    Ok(())
}

impl CompiledModule {
    /// Compiles `wasm` (binary or text) and checks it.
    pub fn compile(name: &str, wasm: &[u8], fuel: bool) -> Result<Self, Error> {
        let engine = engine(fuel)?;
        let module = Module::new(&engine, wasm).map_err(|e| invalid(name, format!("{e:#}")))?;
        Self::from_module(name, engine, module, fuel)
    }

    /// Wraps an already compiled module (e.g. deserialized from the cache).
    pub fn from_module(
        name: &str,
        engine: Engine,
        module: Module,
        fuel: bool,
    ) -> Result<Self, Error> {
        check_interface(name, &module)?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)
            .map_err(|e| Error::Pool(format!("cannot set up WASI: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| invalid(name, format!("{e:#}")))?;
        let export = |n: &str| module.get_export_index(n);
        let missing = |n: &str| abi_error(name, format!("missing export `{n}`"));
        let compiled = CompiledModule {
            name: name.into(),
            memory: export(abi::EXPORT_MEMORY).ok_or_else(|| missing(abi::EXPORT_MEMORY))?,
            alloc: export(abi::EXPORT_ALLOC).ok_or_else(|| missing(abi::EXPORT_ALLOC))?,
            run: export(abi::EXPORT_RUN).ok_or_else(|| missing(abi::EXPORT_RUN))?,
            initialize: export(abi::EXPORT_INITIALIZE),
            engine,
            module,
            pre,
            fuel,
        };
        compiled.check_version()?;
        Ok(compiled)
    }

    /// Instantiates the module once and asks it for its ABI version.
    fn check_version(&self) -> Result<(), Error> {
        let name = &*self.name;
        let mut store = Store::new(&self.engine, HostState::new(64 << 20, 4096));
        store.limiter(|s| s);
        store.set_epoch_deadline(ticks_for(Duration::from_secs(10)));
        if self.fuel {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| Error::Pool(format!("{e:#}")))?;
        }
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| invalid(name, format!("cannot instantiate: {e:#}")))?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, abi::EXPORT_INITIALIZE) {
            init.call(&mut store, ())
                .map_err(|e| invalid(name, format!("`_initialize` failed: {e:#}")))?;
        }
        let version = instance
            .get_typed_func::<(), i32>(&mut store, abi::EXPORT_ABI_VERSION)
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| abi_error(name, format!("`{}` failed: {e:#}", abi::EXPORT_ABI_VERSION)))?;
        if version as u32 != abi::ABI_VERSION {
            return Err(abi_error(
                name,
                format!("the module reports ABI version {}", version as u32),
            ));
        }
        Ok(())
    }
}
