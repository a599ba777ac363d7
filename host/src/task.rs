//! `Task<In, Out>`: a loaded task module with the types that cross its boundary.
//!
//! Loading compiles the module once and checks it implements guest ABI v1;
//! pools built from the task share that compiled code. The type parameters
//! are where the compile-time boundary lives: `In` must be `Serialize` and
//! `Out` `DeserializeOwned`, so closures, files, `Rc`s and connections are
//! rejected by the compiler, not at run time.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;
use crate::load::LoadLimits;
use crate::runtime::compiled::{Compiled, is_component};
use crate::runtime::module::{CompiledModule, name_from_path};

pub(crate) struct TaskModule {
    pub name: Arc<str>,
    pub wasm: Arc<[u8]>,
    cache_dir: Option<PathBuf>,
    load_limits: LoadLimits,
    from_cache: Arc<std::sync::atomic::AtomicBool>,
    plain: OnceLock<Result<Compiled, Error>>,
    fueled: OnceLock<Result<Compiled, Error>>,
}

impl TaskModule {
    /// The module or component compiled for an engine with or without fuel
    /// metering (compiled once each).
    pub fn compiled_task(&self, fuel: bool) -> Result<Compiled, Error> {
        let slot = if fuel { &self.fueled } else { &self.plain };
        slot.get_or_init(|| self.compile_guarded(fuel)).clone()
    }

    /// The ABI v1 module (an error for a component task).
    pub fn compiled(&self, fuel: bool) -> Result<Arc<CompiledModule>, Error> {
        match self.compiled_task(fuel)? {
            Compiled::Module(module) => Ok(module),
            Compiled::Component(_) => Err(Error::Config(format!(
                "`{}` is a component task; this entry point takes ABI v1 modules only",
                self.name
            ))),
        }
    }

    /// Compiles under [`LoadLimits::compile_timeout`]: on a helper thread,
    /// abandoned (left to finish and be discarded) if it takes too long.
    fn compile_guarded(&self, fuel: bool) -> Result<Compiled, Error> {
        let job = CompileJob {
            name: Arc::clone(&self.name),
            wasm: Arc::clone(&self.wasm),
            cache_dir: self.cache_dir.clone(),
            from_cache: Arc::clone(&self.from_cache),
            fuel,
        };
        let Some(timeout) = self.load_limits.compile_timeout else {
            return job.run();
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let in_flight = crate::load::InFlight::start();
        let spawned = std::thread::Builder::new()
            .name("sandpool-compile".into())
            .spawn(move || {
                let _ = tx.send(job.run());
                drop(in_flight);
            });
        if let Err(e) = spawned {
            return Err(Error::Pool(format!("cannot start a compiler thread: {e}")));
        }
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(self.load_limits.timed_out(&self.name))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Pool(format!(
                "the compiler thread for `{}` died",
                self.name
            ))),
        }
    }
}

/// Everything compiling a module needs, owned, so it can run on its own thread.
struct CompileJob {
    name: Arc<str>,
    wasm: Arc<[u8]>,
    cache_dir: Option<PathBuf>,
    from_cache: Arc<std::sync::atomic::AtomicBool>,
    fuel: bool,
}

impl CompileJob {
    fn run(self) -> Result<Compiled, Error> {
        let Some(dir) = &self.cache_dir else {
            return Compiled::compile(&self.name, &self.wasm, self.fuel);
        };
        if is_component(&self.wasm) {
            return self.run_component(dir);
        }
        let engine = crate::runtime::engine::engine(self.fuel)?;
        let (module, source) = crate::cache::load_or_compile(dir, &engine, &self.wasm, self.fuel)
            .map_err(|e| Error::InvalidModule {
            module: self.name.to_string(),
            reason: format!("{e:#}"),
        })?;
        if source == crate::cache::Source::Cache {
            self.from_cache
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        CompiledModule::from_module(&self.name, engine, module, self.fuel)
            .map(|m| Compiled::Module(Arc::new(m)))
    }

    /// A component through the cache (`component/`).
    fn run_component(&self, dir: &Path) -> Result<Compiled, Error> {
        let engine = crate::runtime::engine::component_engine(self.fuel)?;
        let (component, source) = crate::cache::load_or_compile_component(
            dir, &engine, &self.wasm, self.fuel,
        )
        .map_err(|e| Error::InvalidModule {
            module: self.name.to_string(),
            reason: format!("{e:#}"),
        })?;
        if source == crate::cache::Source::Cache {
            self.from_cache
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        crate::component::CompiledComponent::from_component(
            &self.name, engine, component, self.fuel,
        )
        .map(|c| Compiled::Component(Arc::new(c)))
    }
}

/// A task module whose input type is `In` and output type is `Out`.
///
/// Cheap to clone; clones share the compiled module.
///
/// ```
/// use sandpool::{Pool, Task};
/// # let echo = r#"(module (memory (export "memory") 1)
/// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
/// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
/// #   (func (export "sandpool_run") (param i32 i32) (result i64)
/// #     (i32.store8 (i32.const 1023) (i32.const 0))
/// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
/// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
/// // A guest that returns its input (any ABI v1 module: text or binary).
/// let task: Task<u64, u64> = Task::from_bytes("echo", echo.into())?;
/// let pool = Pool::builder(task).workers(2).build()?;
/// assert_eq!(pool.submit(&100)?.wait()?, 100);
/// # Ok::<(), sandpool::Error>(())
/// ```
///
/// Only serializable values cross the boundary. A closure is not a task
/// input, the Rust version of Python's "Can't pickle local object":
///
/// ```compile_fail,E0277
/// use sandpool::{Pool, Task};
/// # fn main() -> Result<(), sandpool::Error> {
/// let task = Task::from_file("echo.wasm")?;
/// let pool: Pool<_, u32> = Pool::builder(task).build()?;
/// let offset = 1;
/// // error[E0277]: the trait bound `{closure}: Serialize` is not satisfied
/// pool.submit(&move |x: u32| x + offset)?.wait()?;
/// # Ok(()) }
/// ```
///
/// Nor is an open file (send its bytes, e.g. [`FileInput`](crate::FileInput)):
///
/// ```compile_fail,E0277
/// use sandpool::{Pool, Task};
/// # fn main() -> Result<(), sandpool::Error> {
/// // error[E0277]: the trait bound `File: Serialize` is not satisfied
/// let task: Task<std::fs::File, u64> = Task::from_file("line_count.wasm")?;
/// let pool = Pool::builder(task).build()?;
/// pool.submit(&std::fs::File::open("input.txt").expect("exists"))?.wait()?;
/// # Ok(()) }
/// ```
///
/// Nor an `Rc` (shared ownership cannot cross into a separate memory; this
/// holds while serde's `rc` feature is off in the workspace):
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use sandpool::{Pool, Task};
/// # fn main() -> Result<(), sandpool::Error> {
/// // error[E0277]: the trait bound `Rc<String>: Serialize` is not satisfied
/// let task: Task<Rc<String>, u64> = Task::from_file("word_count.wasm")?;
/// let pool = Pool::builder(task).build()?;
/// pool.submit(&Rc::new(String::from("shared text")))?.wait()?;
/// # Ok(()) }
/// ```
///
/// The same code with plain data compiles (`compile_fail` tests above fail
/// only for the reason they name):
///
/// ```
/// use sandpool::{Pool, Task};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Job { id: u64, text: String }
/// # fn main() -> Result<(), sandpool::Error> {
/// # let echo = r#"(module (memory (export "memory") 1)
/// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
/// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
/// #   (func (export "sandpool_run") (param i32 i32) (result i64)
/// #     (i32.store8 (i32.const 1023) (i32.const 0))
/// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
/// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
/// let task: Task<Job, Job> = Task::from_bytes("echo", echo.into())?;
/// let pool = Pool::builder(task).build()?;
/// let job = Job { id: 1, text: "plain data".into() };
/// assert_eq!(pool.submit(&job)?.wait()?, job);
/// let bytes: Task<Vec<u8>, Vec<u8>> = Task::from_bytes("echo", echo.into())?;
/// assert_eq!(Pool::builder(bytes).build()?.submit(&vec![1, 2, 3])?.wait()?, [1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct Task<In, Out> {
    pub(crate) module: Arc<TaskModule>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out> Clone for Task<In, Out> {
    fn clone(&self) -> Self {
        Task {
            module: Arc::clone(&self.module),
            _types: PhantomData,
        }
    }
}

impl<In, Out> std::fmt::Debug for Task<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.module.name)
            .field("bytes", &self.module.wasm.len())
            .finish()
    }
}

impl<In: Serialize, Out: DeserializeOwned> Task<In, Out> {
    /// Loads, compiles and checks the module at `path`; the task is named after the file stem.
    ///
    /// ```
    /// let err = sandpool::Task::<u64, u64>::from_file("/no/such/task.wasm").unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Io);
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_file_with(path, LoadLimits::default())
    }

    /// Like [`from_file`](Self::from_file), under explicit [`LoadLimits`]
    /// (module size, function size, compile deadline). The file's size is
    /// checked before it is read.
    ///
    /// ```
    /// let limits = sandpool::LoadLimits::default().max_module_size(1 << 20);
    /// let err = sandpool::Task::<u64, u64>::from_file_with("/no/such/task.wasm", limits).unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Io);
    /// ```
    pub fn from_file_with(path: impl AsRef<Path>, limits: LoadLimits) -> Result<Self, Error> {
        let path = path.as_ref();
        let wasm = read_module(path, &limits)?;
        Self::load(name_from_path(path), wasm, None, limits)
    }

    /// Compiles and checks a module from bytes (binary wasm, or text with the `wat` syntax).
    ///
    /// ```
    /// let err = sandpool::Task::<u64, u64>::from_bytes("junk", b"not wasm".to_vec()).unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::InvalidModule);
    /// ```
    pub fn from_bytes(name: impl Into<String>, wasm: Vec<u8>) -> Result<Self, Error> {
        Self::load(name.into(), wasm, None, LoadLimits::default())
    }

    /// Like [`from_bytes`](Self::from_bytes), under explicit [`LoadLimits`].
    ///
    /// ```
    /// let limits = sandpool::LoadLimits::default().max_module_size(4);
    /// let err = sandpool::Task::<u64, u64>::from_bytes_with("big", b"\0asm\x01\0\0\0".to_vec(), limits)
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::InvalidModule);
    /// ```
    pub fn from_bytes_with(
        name: impl Into<String>,
        wasm: Vec<u8>,
        limits: LoadLimits,
    ) -> Result<Self, Error> {
        Self::load(name.into(), wasm, None, limits)
    }

    /// Like [`from_file`](Self::from_file), but keeps the compiled module in
    /// `cache_dir` (see [`default_cache_dir`](crate::default_cache_dir)) so the
    /// next load of the same module skips compilation. Cache entries are
    /// checked (version, checksum) before use; a bad entry is recompiled.
    ///
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let tmp = std::env::temp_dir().join(format!("sandpool-doc-cache-{}", std::process::id()));
    /// # std::fs::create_dir_all(&tmp).unwrap();
    /// # let path = tmp.join("echo.wat");
    /// # std::fs::write(&path, echo).unwrap();
    /// // In an application: `sandpool::default_cache_dir()`.
    /// let dir = tmp.join("cache");
    /// let task = sandpool::Task::<u64, u64>::from_file_cached(&path, &dir)?;
    /// let again = sandpool::Task::<u64, u64>::from_file_cached(&path, &dir)?;
    /// assert!(again.loaded_from_cache());
    /// # std::fs::remove_dir_all(&tmp).unwrap();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn from_file_cached(
        path: impl AsRef<Path>,
        cache_dir: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let limits = LoadLimits::default();
        let wasm = read_module(path, &limits)?;
        Self::load(
            name_from_path(path),
            wasm,
            Some(cache_dir.as_ref().to_path_buf()),
            limits,
        )
    }

    /// Like [`from_file_cached`](Self::from_file_cached), under explicit
    /// [`LoadLimits`]: e.g. a longer compile deadline for a large component
    /// (a Python task compiles in seconds; under load, in tens of seconds).
    ///
    /// ```
    /// let limits = sandpool::LoadLimits::default().no_compile_timeout();
    /// let err = sandpool::Task::<u64, u64>::from_file_cached_with("/no/such.wasm", "/tmp/c", limits)
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::Io);
    /// ```
    pub fn from_file_cached_with(
        path: impl AsRef<Path>,
        cache_dir: impl AsRef<Path>,
        limits: LoadLimits,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let wasm = read_module(path, &limits)?;
        Self::load(
            name_from_path(path),
            wasm,
            Some(cache_dir.as_ref().to_path_buf()),
            limits,
        )
    }

    fn load(
        name: String,
        wasm: Vec<u8>,
        cache_dir: Option<PathBuf>,
        load_limits: LoadLimits,
    ) -> Result<Self, Error> {
        if !wasm.starts_with(b"\0asm") && !looks_like_text(&wasm) {
            return Err(Error::InvalidModule {
                module: name,
                reason:
                    "not a WebAssembly module (it does not start with the `\\0asm` magic bytes)"
                        .into(),
            });
        }
        load_limits.check(&name, &wasm)?;
        let module = Arc::new(TaskModule {
            name: name.into(),
            wasm: wasm.into(),
            cache_dir,
            load_limits,
            from_cache: Default::default(),
            plain: OnceLock::new(),
            fueled: OnceLock::new(),
        });
        module.compiled_task(false)?;
        Ok(Task {
            module,
            _types: PhantomData,
        })
    }
}

impl<In, Out> Task<In, Out> {
    /// The task's name, used in every error it causes.
    ///
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// # let path = std::env::temp_dir().join(format!("primes-{}.wat", std::process::id()));
    /// # std::fs::write(&path, echo).unwrap();
    /// // A module loaded from `.../primes-123.wat` is named after its file stem.
    /// let task = sandpool::Task::<u64, u64>::from_file(&path)?;
    /// assert_eq!(task.name(), format!("primes-{}", std::process::id()));
    /// let named = sandpool::Task::<u64, u64>::from_bytes("echo", echo.into())?;
    /// assert_eq!(named.name(), "echo");
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.module.name
    }

    /// Whether the compiled code came from the on-disk cache instead of the compiler.
    ///
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// let task = sandpool::Task::<u64, u64>::from_bytes("echo", echo.into())?;
    /// assert!(!task.loaded_from_cache());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn loaded_from_cache(&self) -> bool {
        self.module
            .from_cache
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The module's wasm bytes as loaded.
    ///
    /// ```
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// let task = sandpool::Task::<u64, u64>::from_bytes("echo", echo.into())?;
    /// assert_eq!(task.wasm(), echo.as_bytes(), "the bytes as loaded (here: text)");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wasm(&self) -> &[u8] {
        &self.module.wasm
    }

    /// The same module viewed with other boundary types (e.g. a generic
    /// `Json<serde_json::Value>` output instead of a concrete struct).
    ///
    /// ```
    /// use sandpool::{Pool, Task};
    /// # let echo = r#"(module (memory (export "memory") 1)
    /// #   (func (export "sandpool_abi_version") (result i32) i32.const 1)
    /// #   (func (export "sandpool_alloc") (param i32) (result i32) i32.const 1024)
    /// #   (func (export "sandpool_run") (param i32 i32) (result i64)
    /// #     (i32.store8 (i32.const 1023) (i32.const 0))
    /// #     (i64.or (i64.shl (i64.const 1023) (i64.const 32))
    /// #             (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))))"#;
    /// let numbers: Task<u32, u32> = Task::from_bytes("echo", echo.into())?;
    /// // The same compiled module, now seen as taking and returning text.
    /// let text: Task<String, String> = numbers.retype();
    /// assert_eq!(Pool::builder(text).build()?.submit(&"hi".into())?.wait()?, "hi");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn retype<In2: Serialize, Out2: DeserializeOwned>(&self) -> Task<In2, Out2> {
        Task {
            module: Arc::clone(&self.module),
            _types: PhantomData,
        }
    }
}

/// Reads a module file, refusing one over the size limit before reading it.
fn read_module(path: &Path, limits: &LoadLimits) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let fail = |e: std::io::Error| Error::io(format!("cannot read module {}", path.display()), &e);
    let file = std::fs::File::open(path).map_err(fail)?;
    let size = file.metadata().map_err(fail)?.len();
    let name = name_from_path(path);
    limits.check_size(&name, size)?;
    let mut wasm = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // Read one byte past the cap at most: the file may have grown since `metadata`.
    file.take(limits.max_module_size as u64 + 1)
        .read_to_end(&mut wasm)
        .map_err(fail)?;
    limits.check_size(&name, wasm.len() as u64)?;
    Ok(wasm)
}

/// Whether `bytes` could be the WebAssembly text format (starts with `(` or a comment).
fn looks_like_text(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    matches!(bytes.get(start), Some(b'(') | Some(b';'))
}
