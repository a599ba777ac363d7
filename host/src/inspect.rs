//! Describing a module without running a task: what it imports and exports,
//! its ABI version, and whether sandpool can run it (`sandpool inspect`).

use serde::Serialize;
use wasmtime::Module;

use crate::error::Error;
use crate::runtime::engine::engine;
use crate::runtime::module::CompiledModule;

/// One import or export of a module.
///
/// ```
/// let report = sandpool::inspect_module("tiny", br#"(module (memory (export "memory") 1))"#)?;
/// let memory = &report.exports[0];
/// assert_eq!((memory.module.as_str(), memory.name.as_str()), ("", "memory"));
/// assert!(memory.ty.starts_with("memory"));
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct ModuleItem {
    /// The import module (empty for exports).
    pub module: String,
    /// The item's name.
    pub name: String,
    /// Its wasm type, e.g. `func (i32, i32) -> i64` or `memory`.
    pub ty: String,
}

/// What `sandpool inspect` reports about a module.
///
/// ```
/// let report = sandpool::inspect_module("tiny", br#"(module (memory (export "memory") 1))"#)?;
/// assert!(report.imports.is_empty());
/// assert!(report.problem.is_some()); // no sandpool exports: not a task
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// `"module"` (a core module, guest ABI v1) or `"component"` (a
    /// WebAssembly component, `wit/task.wit`; its imports and exports are
    /// its world's, with an empty `module` and the item kind as `ty`).
    pub kind: &'static str,
    /// Imports, in module order.
    pub imports: Vec<ModuleItem>,
    /// Exports, in module order.
    pub exports: Vec<ModuleItem>,
    /// The ABI version the module reports, when it could be asked.
    pub abi_version: Option<u32>,
    /// Why sandpool cannot run it as a task; `None` for a valid task.
    pub problem: Option<String>,
    /// The host capabilities it declares it calls (custom section
    /// `sandpool.capabilities`); a pool must grant each of them.
    ///
    /// ```
    /// let wat = br#"(module (@custom "sandpool.capabilities" "db.lookup\n"))"#;
    /// assert_eq!(sandpool::inspect_module("m", wat)?.capabilities, ["db.lookup"]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub capabilities: Vec<String>,
}

fn describe(ty: &wasmtime::ExternType) -> String {
    match ty {
        wasmtime::ExternType::Func(f) => {
            let params: Vec<String> = f.params().map(|p| p.to_string()).collect();
            let results: Vec<String> = f.results().map(|p| p.to_string()).collect();
            format!("func ({}) -> ({})", params.join(", "), results.join(", "))
        }
        wasmtime::ExternType::Memory(m) => {
            format!("memory (min {} pages, 64-bit: {})", m.minimum(), m.is_64())
        }
        wasmtime::ExternType::Table(_) => "table".into(),
        wasmtime::ExternType::Global(g) => format!("global {}", g.content()),
        wasmtime::ExternType::Tag(_) => "tag".into(),
    }
}

/// Compiles `wasm` and describes it. Fails only if it is not a wasm module
/// at all; a module that is wasm but not a valid task gets a report whose
/// `problem` says why.
///
/// ```
/// let wat = br#"(module (memory (export "memory") 1))"#;
/// let report = sandpool::inspect_module("tiny", wat)?;
/// assert_eq!(report.exports[0].name, "memory");
/// assert!(report.problem.unwrap().contains("sandpool_abi_version"));
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn inspect_module(name: &str, wasm: &[u8]) -> Result<ModuleReport, Error> {
    if crate::runtime::compiled::is_component(wasm) {
        return inspect_component(name, wasm);
    }
    let engine = engine(false)?;
    let module = Module::new(&engine, wasm).map_err(|e| Error::InvalidModule {
        module: name.to_string(),
        reason: format!("{e:#}"),
    })?;
    let imports = module
        .imports()
        .map(|i| ModuleItem {
            module: i.module().to_string(),
            name: i.name().to_string(),
            ty: describe(&i.ty()),
        })
        .collect();
    let exports = module
        .exports()
        .map(|e| ModuleItem {
            module: String::new(),
            name: e.name().to_string(),
            ty: describe(&e.ty()),
        })
        .collect();
    let (capabilities, declared_problem) = match crate::capability::declared_names(wasm) {
        Ok(names) => (names, None),
        Err(e) => (Vec::new(), Some(format!("invalid module `{name}`: {e}"))),
    };
    let (abi_version, problem) = match CompiledModule::from_module(name, engine, module, false) {
        Ok(_) => (Some(sandpool_guest::abi::ABI_VERSION), None),
        Err(e) => {
            let reported = match &e {
                Error::AbiMismatch { reason, .. } => reason
                    .strip_prefix("the module reports ABI version ")
                    .and_then(|v| v.trim().parse().ok()),
                _ => None,
            };
            (reported, Some(e.to_string()))
        }
    };
    Ok(ModuleReport {
        kind: "module",
        imports,
        exports,
        abi_version,
        problem: problem.or(declared_problem),
        capabilities,
    })
}

/// [`inspect_module`] for a component: its world, read without compiling.
/// `problem` covers the load-time checks and the `run` export's presence;
/// its exact type is checked when the task is loaded.
fn inspect_component(name: &str, wasm: &[u8]) -> Result<ModuleReport, Error> {
    let world = crate::component::world::read(wasm).map_err(|e| Error::InvalidModule {
        module: name.to_string(),
        reason: e,
    })?;
    let item = |i: &crate::component::world::WorldItem| ModuleItem {
        module: String::new(),
        name: i.name.clone(),
        ty: i.kind.to_string(),
    };
    let run = crate::component::EXPORT_RUN;
    let (capabilities, declared_problem) = match crate::capability::declared_names(wasm) {
        Ok(names) => (names, None),
        Err(reason) => (Vec::new(), Some(reason)),
    };
    let problem = match crate::LoadLimits::default().check(name, wasm) {
        Err(e) => Some(e.to_string()),
        Ok(()) if declared_problem.is_some() => declared_problem,
        Ok(())
            if !world
                .exports
                .iter()
                .any(|e| e.name == run && e.kind == "func") =>
        {
            Some(format!(
                "the component does not export the function `{run}` (wit/task.wit)"
            ))
        }
        Ok(()) => None,
    };
    Ok(ModuleReport {
        kind: "component",
        imports: world.imports.iter().map(item).collect(),
        exports: world.exports.iter().map(item).collect(),
        abi_version: None,
        // The names its `sandpool.capabilities` section declares (as for a module).
        capabilities,
        problem,
    })
}
