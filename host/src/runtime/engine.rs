//! The wasm engines: two process-wide engines (with and without fuel
//! metering), each backed by wasmtime's pooling allocator, and the one epoch
//! ticker thread that drives every task's deadline.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::Error;

/// How often the epoch ticker advances every engine's epoch.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Concurrent instances the pooling allocator has room for, per engine.
pub(crate) const POOL_SLOTS: u32 = 1000;

/// Idle slots the pooling allocator prefers to reuse (with their resident
/// pages) before it touches a slot no instance has used yet.
const WARM_SLOTS: u32 = 16;

/// Largest linear memory any task may have (the wasm32 maximum).
const MAX_MEMORY: usize = 4 << 30;

/// Concurrent component instances the component engines' pools have room for.
pub(crate) const COMPONENT_SLOTS: u32 = 64;

/// Core instances (and memories, tables) one component may hold: a
/// componentize-py task has about 30 core instances, 3 memories.
const CORE_PER_COMPONENT: u32 = 128;

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

/// The component engines' configuration: the module engines' plus pooling
/// room for whole components (many core instances and memories each, a
/// large instance context for CPython's thousands of functions).
fn component_config(fuel: bool, pooling: bool) -> Config {
    let mut config = engine_config(fuel, false);
    config.wasm_component_model(true);
    if pooling {
        let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
        let mut pool = PoolingAllocationConfig::new();
        let total_core = COMPONENT_SLOTS * CORE_PER_COMPONENT;
        pool.total_component_instances(COMPONENT_SLOTS)
            .total_core_instances(total_core)
            .total_memories(COMPONENT_SLOTS * 8)
            .total_tables(total_core)
            .max_core_instances_per_component(CORE_PER_COMPONENT)
            .max_memories_per_component(8)
            .max_tables_per_component(CORE_PER_COMPONENT)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(4 << 20)
            .table_elements(64 << 10)
            .max_memory_size(MAX_MEMORY)
            .linear_memory_keep_resident(if pagemap { 32 << 20 } else { 64 << 10 })
            .table_keep_resident(256 << 10)
            .max_unused_warm_slots(WARM_SLOTS)
            .pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn make_engine(fuel: bool) -> Result<Engine, String> {
    make_engine_with(fuel, engine_config)
}

fn make_engine_with(fuel: bool, config: fn(bool, bool) -> Config) -> Result<Engine, String> {
    match Engine::new(&config(fuel, true)) {
        Ok(engine) => Ok(engine),
        Err(pooled) => {
            // The pooling allocator reserves address space up front; where the
            // system refuses that, fall back to on-demand allocation (slower).
            tracing::warn!(
                "pooling allocator unavailable ({pooled:#}); using on-demand allocation"
            );
            Engine::new(&config(fuel, false)).map_err(|e| format!("{e:#}"))
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

/// The shared engine for components (`component/`), with or without fuel.
pub(crate) fn component_engine(fuel: bool) -> Result<Engine, Error> {
    static PLAIN: OnceLock<Result<Engine, String>> = OnceLock::new();
    static FUELED: OnceLock<Result<Engine, String>> = OnceLock::new();
    let slot = if fuel { &FUELED } else { &PLAIN };
    slot.get_or_init(|| {
        let engine = make_engine_with(fuel, component_config)?;
        start_ticker(engine.weak());
        Ok(engine)
    })
    .clone()
    .map_err(|e| Error::Pool(format!("cannot create the component engine: {e}")))
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
