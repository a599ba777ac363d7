//! `Compiled`: a task's compiled code, either an ABI v1 module
//! ([`CompiledModule`]) or a component ([`CompiledComponent`]), with what
//! both levels need of either: run one task, hand the code to a worker.

use std::sync::Arc;

use wasmtime::{Engine, Precompiled};

use super::instance::RawOutcome;
use super::module::CompiledModule;
use crate::capability::imports::CallBackend;
use crate::component::CompiledComponent;
use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::grant::GrantRoot;

/// A task's compiled code.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    /// A core module implementing guest ABI v1.
    Module(Arc<CompiledModule>),
    /// A component implementing wit/task.wit.
    Component(Arc<CompiledComponent>),
}

/// Whether `wasm` is a component (by its header), not a core module.
pub(crate) fn is_component(wasm: &[u8]) -> bool {
    wasmparser::Parser::is_component(wasm)
}

impl Compiled {
    /// Compiles `wasm`, a module (binary or text) or a component.
    pub fn compile(name: &str, wasm: &[u8], fuel: bool) -> Result<Self, Error> {
        if is_component(wasm) {
            return CompiledComponent::compile(name, wasm, fuel).map(|c| Self::Component(c.into()));
        }
        CompiledModule::compile(name, wasm, fuel).map(|m| Self::Module(m.into()))
    }

    /// Loads code serialized by [`serialize`](Self::serialize) on this
    /// sandpool version's engine for `fuel`.
    ///
    /// # Safety
    /// `payload` must be exactly bytes that `serialize` produced (wasmtime
    /// runs them as machine code); see `Module::deserialize`.
    pub unsafe fn deserialize(name: &str, payload: &[u8], fuel: bool) -> Result<Self, String> {
        match Engine::detect_precompiled(payload) {
            Some(Precompiled::Component) => {
                let engine = super::engine::component_engine(fuel).map_err(|e| e.to_string())?;
                // SAFETY: the caller's contract.
                let component =
                    unsafe { wasmtime::component::Component::deserialize(&engine, payload) }
                        .map_err(|e| format!("{e:#}"))?;
                CompiledComponent::from_component(name, engine, component, fuel)
                    .map(|c| Self::Component(c.into()))
                    .map_err(|e| e.to_string())
            }
            _ => {
                let engine = super::engine::engine(fuel).map_err(|e| e.to_string())?;
                // SAFETY: the caller's contract.
                let module = unsafe { wasmtime::Module::deserialize(&engine, payload) }
                    .map_err(|e| format!("{e:#}"))?;
                CompiledModule::from_module(name, engine, module, fuel)
                    .map(|m| Self::Module(m.into()))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The compiled code as bytes for [`deserialize`](Self::deserialize).
    pub fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Module(m) => m.module.serialize(),
            Compiled::Component(c) => c.component.serialize(),
        }
    }

    /// The task's name.
    pub fn name(&self) -> &Arc<str> {
        match self {
            Compiled::Module(m) => &m.name,
            Compiled::Component(c) => &c.name,
        }
    }

    /// Whether the code meters fuel.
    pub fn fuel(&self) -> bool {
        match self {
            Compiled::Module(m) => m.fuel,
            Compiled::Component(c) => c.fuel,
        }
    }

    /// Runs one task on `input` (already encoded) in a fresh instance, with
    /// the pool's granted directory, if any, and its capability calls
    /// answered by `calls`.
    pub fn run_task_calling(
        &self,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
        grant: Option<&Arc<GrantRoot>>,
        calls: Option<&CallBackend>,
    ) -> RawOutcome {
        match self {
            Compiled::Module(m) => m.run_task_calling(limits, task, input, grant, calls),
            Compiled::Component(c) => {
                c.run_task_calling(limits, task, input, grant.map(|g| &**g), calls)
            }
        }
    }
}
