//! coordinatoold: a durable userspace Lustre HSM coordinator.
//!
//! # Layout
//! - [`config`]: settings in layers (defaults < file < `COORDINATOOL_<KEY>` < CLI).
//! - [`store`]: the sled store of every request not yet done.
//! - [`scheduler`]: the pure scheduler (no I/O, time passed in).
//! - [`kernel`]: the Lustre side, on one dedicated OS thread.
//! - [`driver`]: the single task owning the scheduler and the store.
//! - [`server`]: TCP accept and one task per connection.
//! - [`daemon`]: startup, run and shutdown, in order.
//! - [`notify`]: `sd_notify` over `$NOTIFY_SOCKET`.
//! - [`error`]: errors and exit codes.
//!
//! The wire protocol is specified in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod driver;
pub mod error;
pub mod kernel;
pub mod notify;
pub mod scheduler;
pub mod server;
pub mod store;
