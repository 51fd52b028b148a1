//! End-to-end scenarios: real `lustre-simd`, `coordinatoold` and C copytools
//! under the preload shim, each in its own temporary folders. See
//! `coordinatool_tests` for the harness. Each module is one scenario family of
//! issue 7; every assertion is about behaviour an operator would see.

mod common;

mod bad_input;
mod bench;
mod cancel;
mod data;
mod flow;
mod grace;
mod lock_drain;
mod recovery;
mod restart;
