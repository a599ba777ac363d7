//! The wasm runtime under both isolation levels: engines and the epoch
//! ticker, compiled modules, the one place a `Store` is set up, and the host
//! side of guest ABI v1.
//!
//! - `engine.rs`: the two shared engines (pooling allocator) and the epoch ticker.
//! - `module.rs`: `CompiledModule`: compile, check, instantiate.
//! - `compiled.rs`: `Compiled`: an ABI v1 module or a component (`component/`).
//! - `store.rs`: a fresh `Store` under a task's [`Limits`](crate::Limits).
//! - `abi.rs`: load-time ABI checks, typed exports, one call in and out.
//! - `trap.rs`: a wasmtime error as the task error that explains it.
//! - `instance.rs`: one task in a fresh instance (what both levels run).

pub(crate) mod abi;
pub(crate) mod compiled;
pub(crate) mod engine;
pub(crate) mod instance;
pub(crate) mod module;
pub(crate) mod store;
pub(crate) mod trap;
