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
use crate::module::{CompiledModule, name_from_path};

pub(crate) struct TaskModule {
    pub name: Arc<str>,
    pub wasm: Arc<[u8]>,
    cache_dir: Option<PathBuf>,
    from_cache: std::sync::atomic::AtomicBool,
    plain: OnceLock<Result<Arc<CompiledModule>, Error>>,
    fueled: OnceLock<Result<Arc<CompiledModule>, Error>>,
}

impl TaskModule {
    /// The module compiled for an engine with or without fuel metering (compiled once each).
    pub fn compiled(&self, fuel: bool) -> Result<Arc<CompiledModule>, Error> {
        let slot = if fuel { &self.fueled } else { &self.plain };
        slot.get_or_init(|| self.compile(fuel).map(Arc::new))
            .clone()
    }

    fn compile(&self, fuel: bool) -> Result<CompiledModule, Error> {
        let Some(dir) = &self.cache_dir else {
            return CompiledModule::compile(&self.name, &self.wasm, fuel);
        };
        let engine = crate::module::engine(fuel)?;
        let (module, source) = crate::cache::load_or_compile(dir, &engine, &self.wasm, fuel)
            .map_err(|e| Error::InvalidModule {
                module: self.name.to_string(),
                reason: format!("{e:#}"),
            })?;
        if source == crate::cache::Source::Cache {
            self.from_cache
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        CompiledModule::from_module(&self.name, engine, module, fuel)
    }
}

/// A task module whose input type is `In` and output type is `Out`.
///
/// Cheap to clone; clones share the compiled module.
///
/// ```no_run
/// use sandpool::{Pool, Task};
/// let task: Task<u64, u64> = Task::from_file("primes.wasm")?;
/// let pool = Pool::builder(task).workers(2).build()?;
/// assert_eq!(pool.submit(&100)?.wait()?, 25);
/// # Ok::<(), sandpool::Error>(())
/// ```
///
/// Only serializable values cross the boundary. A closure is not a task
/// input, the Rust version of Python's "Can't pickle local object":
///
/// ```compile_fail
/// use sandpool::{Pool, Task};
/// let task = Task::from_file("echo.wasm").unwrap();
/// let pool = Pool::builder(task).build().unwrap();
/// let offset = 1;
/// pool.submit(&move |x: u32| x + offset); // error: the closure is not `Serialize`
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
        let path = path.as_ref();
        let wasm = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read module {}", path.display()), &e))?;
        Self::from_bytes(name_from_path(path), wasm)
    }

    /// Compiles and checks a module from bytes (binary wasm, or text with the `wat` syntax).
    ///
    /// ```
    /// let err = sandpool::Task::<u64, u64>::from_bytes("junk", b"not wasm".to_vec()).unwrap_err();
    /// assert_eq!(err.kind(), sandpool::ErrorKind::InvalidModule);
    /// ```
    pub fn from_bytes(name: impl Into<String>, wasm: Vec<u8>) -> Result<Self, Error> {
        Self::load(name.into(), wasm, None)
    }

    /// Like [`from_file`](Self::from_file), but keeps the compiled module in
    /// `cache_dir` (see [`default_cache_dir`](crate::default_cache_dir)) so the
    /// next load of the same module skips compilation. Cache entries are
    /// checked (version, checksum) before use; a bad entry is recompiled.
    ///
    /// ```no_run
    /// let dir = sandpool::default_cache_dir().expect("a home directory");
    /// let task = sandpool::Task::<u64, u64>::from_file_cached("primes.wasm", &dir)?;
    /// let again = sandpool::Task::<u64, u64>::from_file_cached("primes.wasm", &dir)?;
    /// assert!(again.loaded_from_cache());
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn from_file_cached(
        path: impl AsRef<Path>,
        cache_dir: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let wasm = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read module {}", path.display()), &e))?;
        Self::load(
            name_from_path(path),
            wasm,
            Some(cache_dir.as_ref().to_path_buf()),
        )
    }

    fn load(name: String, wasm: Vec<u8>, cache_dir: Option<PathBuf>) -> Result<Self, Error> {
        if !wasm.starts_with(b"\0asm") && !looks_like_text(&wasm) {
            return Err(Error::InvalidModule {
                module: name,
                reason:
                    "not a WebAssembly module (it does not start with the `\\0asm` magic bytes)"
                        .into(),
            });
        }
        let module = Arc::new(TaskModule {
            name: name.into(),
            wasm: wasm.into(),
            cache_dir,
            from_cache: Default::default(),
            plain: OnceLock::new(),
            fueled: OnceLock::new(),
        });
        module.compiled(false)?;
        Ok(Task {
            module,
            _types: PhantomData,
        })
    }
}

impl<In, Out> Task<In, Out> {
    /// The task's name, used in every error it causes.
    ///
    /// ```no_run
    /// let task = sandpool::Task::<u64, u64>::from_file("primes.wasm")?;
    /// assert_eq!(task.name(), "primes");
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.module.name
    }

    /// Whether the compiled code came from the on-disk cache instead of the compiler.
    ///
    /// ```no_run
    /// let task = sandpool::Task::<u64, u64>::from_file("primes.wasm")?;
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
    /// ```no_run
    /// let task = sandpool::Task::<u64, u64>::from_file("primes.wasm")?;
    /// assert!(task.wasm().starts_with(b"\0asm"));
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn wasm(&self) -> &[u8] {
        &self.module.wasm
    }

    /// The same module viewed with other boundary types (e.g. a generic
    /// `Json<serde_json::Value>` output instead of a concrete struct).
    ///
    /// ```no_run
    /// use sandpool::{Json, Task};
    /// let typed: Task<sandpool::FileInput, Json<serde_json::Value>> = Task::from_file("doc_stats.wasm")?;
    /// let raw: Task<sandpool::FileInput, String> = typed.retype();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn retype<In2: Serialize, Out2: DeserializeOwned>(&self) -> Task<In2, Out2> {
        Task {
            module: Arc::clone(&self.module),
            _types: PhantomData,
        }
    }
}

/// Whether `bytes` could be the WebAssembly text format (starts with `(` or a comment).
fn looks_like_text(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    matches!(bytes.get(start), Some(b'(') | Some(b';'))
}
