//! Direct access to the fresh-instance path, and to one instance reused for
//! many calls, for the benchmarks in `benches/` (as `sandpool::__bench`,
//! feature `bench-hooks`). Not a stable API: hidden from the docs, free to change.
//!
//! ```
//! # let echo = r#"(module (memory (export "memory") 1)
//! #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
//! #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
//! #   (func (export "sandpool_run") (param i32 i32) (result i64)
//! #     (i32.store8 (i32.const 1023) (i32.const 0))
//! #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
//! #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
//! # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
//! use sandpool::{Limits, __bench::DirectRunner};
//! let runner = DirectRunner::new(&task, Limits::default())?;
//! let input = [3u8, 1, 2, 3]; // bincode of the byte string [1, 2, 3]
//! assert_eq!(runner.run_fresh(&input)?, input);
//! let mut reused = runner.reused_instance()?;
//! assert_eq!(reused.run(&input)?, input);
//! # Ok::<(), sandpool::Error>(())
//! ```

use std::sync::Arc;

use wasmtime::Store;

use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::runtime::abi::{self, Exports};
use crate::runtime::module::CompiledModule;
use crate::runtime::store::new_store;
use crate::sandbox::HostState;
use crate::task::Task;

/// Runs tasks of one module on the calling thread, with no pool.
///
/// ```
/// # let echo = r#"(module (memory (export "memory") 1)
/// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
/// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
/// #   (func (export "sandpool_run") (param i32 i32) (result i64)
/// #     (i32.store8 (i32.const 1023) (i32.const 0))
/// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
/// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
/// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
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
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
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
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
    /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// assert_eq!(runner.run_fresh(&[1, 7])?, vec![1, 7]); // bincode of vec![7u8]
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn run_fresh(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.module.run_task(&self.limits, &self.task, input).result
    }

    /// Bytes of linear memory the pooling allocator keeps resident in idle
    /// slots of this module's engine (`None` without the pooling allocator).
    ///
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
    /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// runner.run_fresh(&[0])?;
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
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
    /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// let mut instance = runner.reused_instance()?;
    /// assert_eq!(instance.run(&[1, 7])?, vec![1, 7]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn reused_instance(&self) -> Result<ReusedInstance, Error> {
        // Unbounded in time and fuel: the instance outlives many calls.
        let limits = Limits {
            timeout: None,
            fuel: None,
            ..self.limits
        };
        let mut store = new_store(&self.module, &limits)?;
        let exports = self
            .module
            .instantiate(&mut store)
            .map_err(|e| Error::Pool(format!("{e:#}")))?;
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
/// ```
/// # let echo = r#"(module (memory (export "memory") 1)
/// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
/// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
/// #   (func (export "sandpool_run") (param i32 i32) (result i64)
/// #     (i32.store8 (i32.const 1023) (i32.const 0))
/// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
/// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
/// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
/// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
/// let mut instance = runner.reused_instance()?;
/// for _ in 0..3 { instance.run(&[0])?; }
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
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let task: sandpool::Task<Vec<u8>, Vec<u8>> = sandpool::Task::from_bytes("echo", echo.into())?;
    /// # let runner = sandpool::__bench::DirectRunner::new(&task, sandpool::Limits::default())?;
    /// let mut instance = runner.reused_instance()?;
    /// assert_eq!(instance.run(&[2, 8, 9])?, vec![2, 8, 9]);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn run(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        abi::call(
            &mut self.store,
            &self.exports,
            &self.limits,
            &self.task,
            input,
        )
    }
}

pub use crate::component::Phases;

/// Runs tasks of one component (Python, JavaScript) on the calling thread, with no pool.
///
/// ```no_run
/// # let task: sandpool::Task<String, String> = sandpool::Task::from_file("probe_py.wasm")?;
/// let runner = sandpool::__bench::ComponentRunner::new(&task, sandpool::Limits::default())?;
/// let (output, phases) = runner.run_phases(&[3, b'h', b'i', b'!']);
/// println!("{output:?} {phases:?}");
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct ComponentRunner {
    component: Arc<crate::component::CompiledComponent>,
    limits: Limits,
    task: TaskRef,
}

impl std::fmt::Debug for ComponentRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentRunner")
            .field("task", &self.task)
            .finish()
    }
}

impl ComponentRunner {
    /// The task's compiled component (an error for an ABI v1 module).
    ///
    /// ```
    /// # let task = sandpool::doc_tasks::echo::<u64>();
    /// let err = sandpool::__bench::ComponentRunner::new(&task, sandpool::Limits::default());
    /// assert!(err.is_err(), "an ABI v1 module is not a component");
    /// ```
    pub fn new<In, Out>(task: &Task<In, Out>, limits: Limits) -> Result<Self, Error> {
        match task.module.compiled_task(limits.fuel.is_some())? {
            crate::runtime::compiled::Compiled::Component(component) => Ok(ComponentRunner {
                task: TaskRef::new(Arc::clone(&component.name), 0),
                component,
                limits,
            }),
            crate::runtime::compiled::Compiled::Module(_) => Err(Error::Config(format!(
                "`{}` is an ABI v1 module, not a component",
                task.name()
            ))),
        }
    }

    /// Runs one task in a fresh instance; `input` and the output are encoded.
    pub fn run_fresh(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.component
            .run_task_calling(&self.limits, &self.task, input, None, None)
            .result
    }

    /// [`run_fresh`](Self::run_fresh), timed phase by phase.
    pub fn run_phases(&self, input: &[u8]) -> (Result<Vec<u8>, Error>, Phases) {
        self.component.run_phases(&self.limits, &self.task, input)
    }
}
