//! Integration tests of coordinatoold against lustre-sim: real `lustre-simd`
//! and `coordinatoold` processes, the fake liblustreapi, and a Rust test
//! agent speaking the protocol (it does `action_begin`/`action_end` through
//! the fake library itself, as a mover under the shim would).
//!
//! Needs `cargo build -p lustre-sim -p lustre-sim-fakelib -p coordinatoold`
//! first (the tests say so clearly when something is missing).

mod harness;

/// Requests flow MDT → daemon → agent → done, and the MDT ends empty.
mod flow;

/// The daemon is SIGKILLed while holding queued and running requests.
mod crash;

/// Protocol errors: handshake checks, garbage frames, locks.
mod protocol;

/// Operations: SIGHUP, the kernel side going away and coming back, request
/// expiry, archive ids of `queue`.
mod ops;
