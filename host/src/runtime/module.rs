//! `CompiledModule`: a task module compiled once on a shared engine, checked
//! against guest ABI v1, with the `InstancePre` every task instantiates from
//! and the entry points that run one task in a fresh instance.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sandpool_guest::abi;
use wasmtime::{Engine, InstancePre, Linker, Module, ModuleExport, Store};

use super::abi::{Exports, abi_error, check_interface, invalid};
use super::engine::engine;
use super::instance::{RawOutcome, run_fresh};
use super::store::new_store;
use crate::capability::imports::CallBackend;
use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::grant::GrantRoot;
use crate::sandbox::{HostState, wasi};

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
        crate::capability::imports::add_to_linker(&mut linker)
            .map_err(|e| Error::Pool(format!("cannot set up capabilities: {e:#}")))?;
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
        let limits = Limits {
            timeout: Some(Duration::from_secs(10)),
            fuel: None,
            memory: 64 << 20,
            max_output: 0,
            max_log: 4096,
            ..Limits::default()
        };
        let mut store = new_store(self, &limits)?;
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

    /// A new instance in `store`, its ABI exports looked up and its
    /// `_initialize` (if any) run.
    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| e.context("cannot instantiate the module"))?;
        let exports = Exports::lookup(self, store, &instance)?;
        if let Some(init) = &exports.initialize {
            init.call(&mut *store, ())?;
        }
        Ok(exports)
    }

    /// Runs one task on `input` (already encoded) in a fresh instance.
    pub fn run_task(&self, limits: &Limits, task: &TaskRef, input: &[u8]) -> RawOutcome {
        run_fresh(self, limits, task, input, None, None)
    }

    /// [`run_task`](Self::run_task) with the pool's granted directory, if any, visible to the
    /// guest, and its capability calls answered by `calls`.
    pub fn run_task_calling(
        &self,
        limits: &Limits,
        task: &TaskRef,
        input: &[u8],
        grant: Option<&Arc<GrantRoot>>,
        calls: Option<&CallBackend>,
    ) -> RawOutcome {
        run_fresh(self, limits, task, input, grant, calls)
    }
}
