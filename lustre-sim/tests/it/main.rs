//! Integration tests for lustre-sim: each test starts its own `lustre-simd`
//! in a temporary folder and runs the `lhsmtool-sim` C copytool against the
//! fake `liblustreapi.so.1` (no coordinator).
//!
//! The fake library is a cdylib that `cargo test -p lustre-sim` does not
//! build: run `cargo build -p lustre-sim-fakelib` first (the tests fail with
//! that message otherwise).

mod common;

mod bad_calls;
mod cancel;
mod control;
mod cycle;
mod dispatch;
mod features;
mod text;
