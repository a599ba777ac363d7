//! The host side of guest ABI v1 (`docs/abi.md`): the load-time checks of
//! a module's imports and exports, the typed exports of a live instance, and
//! one call (input copied in, run entry called, tagged output decoded).

use sandpool_guest::abi;
use wasmtime::{Extern, ExternType, Memory, Module, Store, TypedFunc, ValType};

use super::module::CompiledModule;
use super::trap::classify;
use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::HostState;
use crate::sandbox::wasi_types::MODULE as WASI;

/// The longest guest error message kept.
const MAX_GUEST_MESSAGE: usize = 64 << 10;

pub(crate) fn abi_error(module: &str, reason: impl Into<String>) -> Error {
    Error::AbiMismatch {
        module: module.to_string(),
        expected: abi::ABI_VERSION,
        reason: reason.into(),
    }
}

pub(crate) fn invalid(module: &str, reason: impl Into<String>) -> Error {
    Error::InvalidModule {
        module: module.to_string(),
        reason: reason.into(),
    }
}

/// Checks exports and imports against ABI v1 without running anything.
pub(crate) fn check_interface(name: &str, module: &Module) -> Result<(), Error> {
    for import in module.imports() {
        if !is_provided_import(import.module()) {
            return Err(unknown_import(name, import.module(), import.name()));
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

/// The import modules a task may use; anything else is refused at load.
pub(crate) fn is_provided_import(module: &str) -> bool {
    module == WASI || module == abi::IMPORT_MODULE
}

/// A load-time error for an import the host does not provide.
fn unknown_import(module_name: &str, import_module: &str, name: &str) -> Error {
    Error::InvalidModule {
        module: module_name.to_string(),
        reason: format!(
            "it imports `{import_module}::{name}`, which sandpool does not provide \
             (tasks may import only `{WASI}` and `{}`)",
            abi::IMPORT_MODULE
        ),
    }
}

/// The ABI exports of one live instance, typed.
pub(crate) struct Exports {
    pub memory: Memory,
    pub initialize: Option<TypedFunc<(), ()>>,
    pub alloc: TypedFunc<i32, i32>,
    pub run: TypedFunc<(i32, i32), i64>,
}

impl Exports {
    /// Looks up the ABI exports of a fresh instance by their precomputed
    /// indices and types them without a run-time signature check.
    pub(crate) fn lookup(
        module: &CompiledModule,
        store: &mut Store<HostState>,
        instance: &wasmtime::Instance,
    ) -> wasmtime::Result<Exports> {
        let Some(Extern::Memory(memory)) = instance.get_module_export(&mut *store, &module.memory)
        else {
            return Err(wasmtime::format_err!("the module has no memory export"));
        };
        let initialize = match &module.initialize {
            Some(export) => Some(func(store, instance, export)?),
            None => None,
        };
        let alloc = func(store, instance, &module.alloc)?;
        let run = func(store, instance, &module.run)?;
        // SAFETY: `check_interface` verified at load that these exports of
        // this module have exactly these signatures (`_initialize: [] -> []`,
        // `sandpool_alloc: [i32] -> [i32]`, `sandpool_run: [i32 i32] -> [i64]`),
        // and `module.pre` instantiates that same module, so every instance's
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

/// Copies `input` into the instance, runs it, and copies the tagged output out.
pub(crate) fn call(
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
        abi::TAG_INPUT_ERROR => Err(Error::InputRejected {
            task: task.clone(),
            reason: message(),
        }),
        other => Err(Error::Decode {
            task: task.clone(),
            what: "output",
            reason: format!("unknown result tag {other} (expected 0, 1 or 2)"),
        }),
    }
}
