//! `libcoordinatool_preload.so`: makes an unmodified Lustre copytool take its
//! work from coordinatoold instead of the kernel.
//!
//! # How it works
//! Loaded with `LD_PRELOAD`, the library defines six liblustreapi symbols,
//! which the dynamic linker binds ahead of the real library:
//! - `llapi_hsm_copytool_register` opens the mount and `.lustre/fid`, reads the
//!   client configuration and starts one background thread that connects to
//!   the daemon (`ehlo` with the archive ids), retrying with backoff when it
//!   is unreachable. The kernel is not told about this copytool.
//! - `llapi_hsm_copytool_recv` returns the next batch, encoded as the
//!   `hsm_action_list` the kernel would have sent, in a buffer owned by the
//!   handle (valid until the next `recv`). With `O_NONBLOCK` in `rfd_flags` it
//!   returns `-EAGAIN` when nothing is ready.
//! - `llapi_hsm_copytool_get_fd` returns an eventfd readable exactly while a
//!   batch is ready (for `poll`/`epoll`; do not read it).
//! - `llapi_hsm_copytool_unregister` flushes completions, stops the thread,
//!   frees the handle.
//! - `llapi_hsm_action_begin`/`end` call the real functions (found with
//!   `dlsym(RTLD_NEXT)`) and report each completion to the daemon through the
//!   background thread, without blocking the caller.
//!
//! Everything else of liblustreapi is untouched. See `README.md` for
//! configuration and guarantees.
//!
//! # Layout
//! - [`exports`]: the C entry points (panic guard + errno).
//! - [`logic`]: argument checks and what each call does.
//! - [`handle`]: the `hsm_copytool_private`-compatible handle.
//! - [`session`]: the background thread, the tracker of running items, and the
//!   hand-offs with the copytool's threads.
//! - [`conn`]: the blocking, framed connection.
//! - [`real`]: the real liblustreapi functions.
//! - [`config`], [`log`], [`sys`], [`error`].

#[macro_use]
pub mod log;
pub mod config;
pub mod conn;
pub mod error;
pub mod exports;
pub mod handle;
pub mod logic;
pub mod real;
pub mod session;
pub mod sys;

pub use error::ShimError;
