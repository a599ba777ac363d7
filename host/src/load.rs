//! Load-time limits: what a module may cost the host before any task runs.
//!
//! Compiling is the one step a hostile module can make expensive without
//! running: a few megabytes of wasm in one function can take Cranelift
//! tens of seconds, 150,000 trivial functions take ~11 s and ~900 MB, and
//! a file can be arbitrarily large. So, before compiling, sandpool refuses
//! a module over [`LoadLimits::max_module_size`] (checked on the file's
//! size before it is read), with a function body over
//! [`LoadLimits::max_function_size`], with more functions, exports,
//! imports or globals than [`LoadLimits`] allows, with an import the host
//! does not provide, or whose instances could not fit the pooling
//! allocator's slots (tables, table elements, memories, instance size);
//! then it compiles with a deadline, [`LoadLimits::compile_timeout`]. All
//! fail with [`Error::InvalidModule`](crate::Error::InvalidModule), before
//! any compile work is spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::Error;

/// Compilations running on helper threads, abandoned ones included.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What the pre-compile check counts of a module.
#[derive(Default)]
struct Shape {
    /// Functions whose reference escapes (exported, or named in an element segment).
    escaped: std::collections::HashSet<u32>,
    imports: u64,
    imported_funcs: u64,
    globals: u64,
    tables: u64,
    memories: u64,
}

impl Shape {
    /// A lower bound of the instance context's size (wasmtime's `VMOffsets`
    /// on 64-bit: 32 bytes per escaped function, 24 per imported function,
    /// 16 per global) against the pooling slot's room.
    fn check_instance_size(&self) -> Result<(), String> {
        let escaped = self.escaped.len() as u64;
        let bytes = escaped * 32 + self.imported_funcs * 24 + self.globals * 16;
        if bytes > INSTANCE_SLOT_BYTES {
            return Err(format!(
                "an instance would need at least {bytes} bytes of context ({escaped} exported or \
                 table functions, {} imported functions, {} globals), over the {INSTANCE_SLOT_BYTES} \
                 bytes of a pooling slot",
                self.imported_funcs, self.globals
            ));
        }
        Ok(())
    }
}

/// Counts one compilation in [`LoadLimits::compilations_in_flight`] while it lives.
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Limits on loading (parsing, compiling and checking) one task module.
///
/// ```
/// use std::time::Duration;
/// let limits = sandpool::LoadLimits::default()
///     .max_module_size(16 << 20)
///     .compile_timeout(Duration::from_secs(5));
/// assert_eq!(limits.max_module_size, 16 << 20);
/// assert_eq!(limits.max_function_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadLimits {
    /// The largest module accepted, in bytes (binary or text as given).
    /// Default: 64 MiB.
    pub max_module_size: usize,
    /// The largest single function body accepted, in bytes of binary wasm.
    /// Compile time grows faster than linearly with it. Default: 1 MiB
    /// (wasmtime's own cap is about 7.3 MiB).
    pub max_function_size: usize,
    /// How long compiling and checking a module may take. `None`: no limit.
    /// Default: 60 s. Compilation cannot be interrupted: when the deadline
    /// passes the load fails at once, and the compiler thread finishes in
    /// the background (its work bounded by the two size limits) and is
    /// discarded.
    pub compile_timeout: Option<Duration>,
    /// The most functions a module may define. Compile time and memory grow
    /// with it (about 70 µs and 6 KB each for trivial ones). Default: 50,000.
    pub max_functions: u32,
    /// The most exports. Every exported function costs 32 bytes of the
    /// instance's fixed-size pooling slot. Default: 10,000.
    pub max_exports: u32,
    /// The most imports (sandpool provides about 50 functions). Default: 1,000.
    pub max_imports: u32,
    /// The most globals. Default: 10,000.
    pub max_globals: u32,
}

/// Room for an instance's context in a pooling slot (wasmtime's default
/// `max_core_instance_size`, which module.rs keeps).
const INSTANCE_SLOT_BYTES: u64 = 1 << 20;
/// Table elements a pooling slot has room for (wasmtime's default `table_elements`).
const TABLE_SLOT_ELEMENTS: u64 = 20_000;
/// Tables and memories per module the pool allows (module.rs).
const MAX_TABLES: u32 = 4;
const MAX_MEMORIES: u32 = 1;

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_module_size: 64 << 20,
            max_function_size: 1 << 20,
            compile_timeout: Some(Duration::from_secs(60)),
            max_functions: 50_000,
            max_exports: 10_000,
            max_imports: 1_000,
            max_globals: 10_000,
        }
    }
}

impl LoadLimits {
    /// Sets the module-size cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_module_size(1 << 20).max_module_size, 1 << 20);
    /// ```
    pub fn max_module_size(mut self, bytes: usize) -> Self {
        self.max_module_size = bytes;
        self
    }

    /// Sets the function-body-size cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_function_size(4096).max_function_size, 4096);
    /// ```
    pub fn max_function_size(mut self, bytes: usize) -> Self {
        self.max_function_size = bytes;
        self
    }

    /// Sets the compile deadline.
    ///
    /// ```
    /// let l = sandpool::LoadLimits::default().compile_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(l.compile_timeout, Some(std::time::Duration::from_secs(1)));
    /// ```
    pub fn compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = Some(timeout);
        self
    }

    /// Sets the most functions a module may define.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_functions(10).max_functions, 10);
    /// ```
    pub fn max_functions(mut self, count: u32) -> Self {
        self.max_functions = count;
        self
    }

    /// Sets the most exports a module may have.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_exports(10).max_exports, 10);
    /// ```
    pub fn max_exports(mut self, count: u32) -> Self {
        self.max_exports = count;
        self
    }

    /// Sets the most imports a module may have.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_imports(10).max_imports, 10);
    /// ```
    pub fn max_imports(mut self, count: u32) -> Self {
        self.max_imports = count;
        self
    }

    /// Sets the most globals a module may have (defined and imported).
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().max_globals(10).max_globals, 10);
    /// ```
    pub fn max_globals(mut self, count: u32) -> Self {
        self.max_globals = count;
        self
    }

    /// Removes the compile deadline.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::default().no_compile_timeout().compile_timeout, None);
    /// ```
    pub fn no_compile_timeout(mut self) -> Self {
        self.compile_timeout = None;
        self
    }

    /// How many module compilations are running right now on sandpool's
    /// compiler threads, including those abandoned at their
    /// [`compile_timeout`](Self::compile_timeout) and still finishing in the
    /// background. It drops back to 0 once they end: a compilation is never
    /// left running for ever.
    ///
    /// ```
    /// assert_eq!(sandpool::LoadLimits::compilations_in_flight(), 0);
    /// ```
    pub fn compilations_in_flight() -> usize {
        IN_FLIGHT.load(Ordering::SeqCst)
    }

    /// Refuses a module of `size` bytes over the cap.
    pub(crate) fn check_size(&self, name: &str, size: u64) -> Result<(), Error> {
        if size > self.max_module_size as u64 {
            return Err(Error::InvalidModule {
                module: name.to_string(),
                reason: format!(
                    "the module is {size} bytes, over the limit of {} bytes (LoadLimits::max_module_size)",
                    self.max_module_size
                ),
            });
        }
        Ok(())
    }

    /// Checks `wasm` (binary or text) against the size caps without compiling it.
    /// Malformed modules pass: the compiler reports them with a better message.
    pub(crate) fn check(&self, name: &str, wasm: &[u8]) -> Result<(), Error> {
        self.check_size(name, wasm.len() as u64)?;
        let binary;
        let bytes = if wasm.starts_with(b"\0asm") {
            wasm
        } else {
            match wat::parse_bytes(wasm) {
                Ok(parsed) => {
                    binary = parsed.into_owned();
                    &binary[..]
                }
                Err(_) => return Ok(()),
            }
        };
        if wasmparser::Parser::is_component(bytes) {
            return self.check_component(name, bytes);
        }
        let mut shape = Shape::default();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                return Ok(());
            };
            if let Err(reason) = self.check_payload(&payload, &mut shape) {
                return Err(Error::InvalidModule {
                    module: name.to_string(),
                    reason: format!("{reason} (checked before compiling)"),
                });
            }
        }
        shape
            .check_instance_size()
            .map_err(|reason| Error::InvalidModule {
                module: name.to_string(),
                reason: format!("{reason} (checked before compiling)"),
            })
    }

    /// A component (`component/`): the function-size cap on every nested core
    /// module, and top-level imports from WASI 0.2 only. The per-module
    /// counts do not apply (CPython alone defines ~12,000 functions); the
    /// pooling limits are the component engine's, checked when it is
    /// pre-instantiated.
    fn check_component(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let refuse = |reason: String| Error::InvalidModule {
            module: name.to_string(),
            reason: format!("{reason} (checked before compiling)"),
        };
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                return Ok(());
            };
            if let wasmparser::Payload::CodeSectionEntry(body) = &payload
                && body.range().len() > self.max_function_size
            {
                return Err(refuse(format!(
                    "a function body is {} bytes, over the limit of {} bytes \
                     (LoadLimits::max_function_size)",
                    body.range().len(),
                    self.max_function_size
                )));
            }
        }
        let world = crate::component::world::read(bytes).map_err(refuse)?;
        if let Some(import) = world
            .imports
            .iter()
            .find(|i| !crate::component::world::is_provided_import(&i.name))
        {
            return Err(refuse(format!(
                "the component imports `{}`, which sandpool does not provide \
                 (only WASI 0.2 and sandpool:task/capabilities)",
                import.name
            )));
        }
        Ok(())
    }

    /// Checks one section against the limits, counting into `shape`.
    fn check_payload(
        &self,
        payload: &wasmparser::Payload<'_>,
        shape: &mut Shape,
    ) -> Result<(), String> {
        use wasmparser::{ElementItems, Payload, TypeRef};
        let over = |what: &str, count: u64, limit: u32, field: &str| {
            format!(
                "the module has {count} {what}, over the limit of {limit} (LoadLimits::{field})"
            )
        };
        match payload {
            Payload::CodeSectionEntry(body) if body.range().len() > self.max_function_size => {
                return Err(format!(
                    "a function body is {} bytes, over the limit of {} bytes \
                     (LoadLimits::max_function_size)",
                    body.range().len(),
                    self.max_function_size
                ));
            }
            Payload::FunctionSection(reader) if reader.count() > self.max_functions => {
                return Err(over(
                    "functions",
                    reader.count().into(),
                    self.max_functions,
                    "max_functions",
                ));
            }
            Payload::ExportSection(reader) => {
                if reader.count() > self.max_exports {
                    return Err(over(
                        "exports",
                        reader.count().into(),
                        self.max_exports,
                        "max_exports",
                    ));
                }
                for export in reader.clone().into_iter().flatten() {
                    if export.kind == wasmparser::ExternalKind::Func {
                        shape.escaped.insert(export.index);
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports().flatten() {
                    shape.imports += 1;
                    if shape.imports > u64::from(self.max_imports) {
                        return Err(over(
                            "imports",
                            shape.imports,
                            self.max_imports,
                            "max_imports",
                        ));
                    }
                    if !crate::runtime::abi::is_provided_import(import.module) {
                        return Err(format!(
                            "it imports `{}::{}`, which sandpool does not provide",
                            import.module, import.name
                        ));
                    }
                    match import.ty {
                        TypeRef::Func(_) => shape.imported_funcs += 1,
                        TypeRef::Global(_) => shape.globals += 1,
                        TypeRef::Table(_) => shape.tables += 1,
                        TypeRef::Memory(_) => shape.memories += 1,
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                shape.globals += u64::from(reader.count());
                if shape.globals > u64::from(self.max_globals) {
                    return Err(over(
                        "globals",
                        shape.globals,
                        self.max_globals,
                        "max_globals",
                    ));
                }
            }
            Payload::TableSection(reader) => {
                for table in reader.clone().into_iter().flatten() {
                    shape.tables += 1;
                    if table.ty.initial > TABLE_SLOT_ELEMENTS {
                        return Err(format!(
                            "a table starts with {} elements; a pooling slot holds {TABLE_SLOT_ELEMENTS}",
                            table.ty.initial
                        ));
                    }
                }
            }
            Payload::MemorySection(reader) => shape.memories += u64::from(reader.count()),
            Payload::ElementSection(reader) => {
                for element in reader.clone().into_iter().flatten() {
                    match element.items {
                        ElementItems::Functions(funcs) => {
                            shape.escaped.extend(funcs.into_iter().flatten());
                        }
                        // Expressions may be `ref.null`: not counted (a lower bound).
                        ElementItems::Expressions(..) => {}
                    }
                }
            }
            _ => {}
        }
        if shape.tables > u64::from(MAX_TABLES) {
            return Err(format!(
                "the module has {} tables; at most {MAX_TABLES} are allowed",
                shape.tables
            ));
        }
        if shape.memories > u64::from(MAX_MEMORIES) {
            return Err(format!(
                "the module has {} memories; at most {MAX_MEMORIES} is allowed",
                shape.memories
            ));
        }
        Ok(())
    }

    /// The error for a compilation that missed its deadline.
    pub(crate) fn timed_out(&self, name: &str) -> Error {
        Error::InvalidModule {
            module: name.to_string(),
            reason: format!(
                "compiling and checking the module took longer than {:?} (LoadLimits::compile_timeout)",
                self.compile_timeout.unwrap_or_default()
            ),
        }
    }
}
