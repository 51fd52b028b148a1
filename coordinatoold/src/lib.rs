//! coordinatoold: a durable userspace Lustre HSM coordinator.
//!
//! # Layout
//! - [`config`]: settings in layers (defaults < file < `COORDINATOOL_<KEY>` < CLI).
//! - [`store`]: the sled store of every request not yet done.
//! - [`scheduler`]: the pure scheduler (no I/O, time passed in).
//! - [`fasthash`]: the hasher of the scheduler's hot maps.
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
pub mod fasthash;
pub mod kernel;
pub mod notify;
pub mod scheduler;
pub mod server;
pub mod store;

/// Runs blocking work (store writes and flushes, replay, joining the kernel
/// thread) from async code: through `block_in_place` on a multi-threaded
/// runtime (the other tasks move to another worker), directly on a
/// current-thread runtime (the daemon's: the work is what that thread has to
/// do next anyway, and commands queue meanwhile to be handled as one group).
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
