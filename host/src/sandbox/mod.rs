//! The sandbox: everything a guest can reach from inside its instance. Deny
//! by default: the WASI preview 1 shim (`wasi.rs`) over per-task host state
//! (`state.rs`), and one granted directory when the pool asks for it (`grant/`).
//!
//! - `state.rs`: the per-task host state a `Store` holds (memory limiter,
//!   bounded stdout/stderr capture, panic message, file table).
//! - `wasi.rs`: every `wasi_snapshot_preview1` function, deny-by-default.
//! - `grant/`: a host directory confined with `openat2(RESOLVE_BENEATH)`.
//! - `memory.rs`: bounds-checked reads and writes of guest memory.
//! - `wasi_types.rs`, `errno.rs`: the WASI numbers and the host-errno mapping
//!   the shim and the grant share.

pub(crate) mod errno;
pub(crate) mod grant;
pub(crate) mod memory;
pub(crate) mod state;
pub(crate) mod wasi;
pub(crate) mod wasi_types;

pub use state::CapturedStream;
pub(crate) use state::{GuestExit, HostState};
