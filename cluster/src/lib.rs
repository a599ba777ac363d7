//! # sandpool-cluster: scale-out plumbing over NATS JetStream
//!
//! The broker side of `sandpool run --nats` and `sandpool worker --nats`,
//! with no knowledge of wasm: streams, the message schema, submitting and
//! collecting, and the worker loop over a [`Handler`] callback that turns
//! one input's bytes into one result's bytes. The `sandpool` crate (feature
//! `nats`) supplies the handler (a [`sandpool::Pool`]-style run of the
//! task) and writes the collected results into the output folder.
//!
//! ## Layout
//! - [`schema`]: stream, subject, header and object names; the task
//!   payload's framing; the input key; [`Outcome`].
//! - [`broker`]: [`Broker`]: connecting (a bad URL or a server that is down
//!   is an error, not a hang), the streams, the object store, submitting,
//!   the results of a job ([`Results`]) and cleaning up.
//! - [`worker`]: [`serve`], the worker loop: pull, heartbeat, write the
//!   result (first one wins), then ack.
//!
//! Delivery semantics and their proof: `docs/scaling.md`.
//!
//! [`sandpool::Pool`]: https://docs.rs/sandpool
//!
//! ```
//! // The key of an input is derived from its output id: the same input
//! // always gets the same task and result subjects.
//! let key = sandpool_cluster::schema::key_of(b"essays/a.txt");
//! assert_eq!(key.len(), 32);
//! assert_eq!(key, sandpool_cluster::schema::key_of(b"essays/a.txt"));
//! ```

pub mod broker;
pub mod schema;
pub mod worker;

pub use broker::{Broker, Results, Settings};
pub use schema::{Outcome, ResultMsg, Status};
pub use worker::{Handler, Job, TaskIn, WorkerOptions, WorkerStats, serve};

/// What can go wrong between sandpool and the broker.
///
/// ```
/// let e = sandpool_cluster::ClusterError::Connect {
///     url: "nats://nowhere:4222".into(),
///     reason: "connection refused".into(),
/// };
/// assert!(e.to_string().contains("nowhere"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The server could not be reached or the URL is not a NATS URL.
    #[error("cannot connect to the NATS server at {url}: {reason}")]
    Connect {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server is reachable but refused to set up a stream, consumer or
    /// bucket (JetStream off, a conflicting stream, no permission).
    #[error("NATS JetStream setup failed: {0}")]
    Setup(String),
    /// A broker operation failed (the server went away and did not come back in time).
    #[error("NATS JetStream: {0}")]
    Broker(String),
}

/// This crate's result type.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
