//! The executors: the wasm [`Pool`](crate::Pool) at both isolation levels
//! (in process, `in_process.rs`; worker subprocesses, `process/`) over one
//! queue and set of worker threads (`dispatch.rs`), the native [`IoPool`](crate::IoPool),
//! and the vocabulary they share: builder, handles, iterators, `wait`, deadlines.

pub(crate) mod abort;
pub(crate) mod block;
pub(crate) mod builder;
pub(crate) mod completed;
pub(crate) mod dispatch;
pub(crate) mod handles;
pub(crate) mod in_process;
pub(crate) mod inbox;
pub(crate) mod io;
pub(crate) mod io_handle;
pub(crate) mod io_map;
pub(crate) mod map;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub mod process;
pub(crate) mod wait;
