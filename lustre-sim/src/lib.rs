//! `lustre-sim`: a simulated Lustre client mount with N MDT HSM coordinators.
//!
//! No machine in this project has Lustre. This crate lets real copytools (C
//! or Rust) run against a simulated MDT:
//!
//! - [`daemon`]: the `lustre-simd` core. A folder `DIR` is the "mount": plain
//!   files under it are the filesystem; `DIR/.lustre-sim/` holds the sim's
//!   persistent state and its control socket `sim.sock`.
//! - [`wire`]: the request/response messages spoken over `sim.sock` (framed
//!   MessagePack) and a blocking [`wire::Client`]. The fake `liblustreapi.so.1`
//!   (`lustre-sim/fakelib`) and `lfs-sim` use it.
//! - [`paths`]: where the built artefacts are (`fake_lib_dir`,
//!   [`paths::LHSMTOOL_SIM`]) and how to find a mount root from a path.
//! - [`testing`]: helpers for integration tests (child processes that are
//!   killed on drop, polling with deadlines).
//!
//! # Layout
//! The library is std-only (threads, no tokio) because the fake library
//! cdylib depends on it. The binaries live behind the default `bins` feature.
//! See `lustre-sim/README.md` for the design and the IPC.

pub mod daemon;
pub mod error;
pub mod paths;
pub mod testing;
pub mod wire;

pub use error::SimError;
