//! The single integration-test binary of lustre-bindings.

/// Shared helpers: locating `/work/shared/testdata`.
mod common;

/// Golden HAL/KUC messages from `testdata/hal` and the §1.10 worked example.
mod golden;

/// Malformed HAL/KUC input: typed errors, never a panic.
mod malformed;

/// Property tests: codec and `active_requests` round trips.
mod roundtrip;

/// `active_requests` text: the real 100-line capture and per-field errors.
mod active_requests;

/// C ABI check: sizes and offsets from a C program against our headers (and
/// the real Lustre headers where installed).
mod abi;

/// The dlopen wrapper against the simulator's fake liblustreapi, when built.
mod llapi;
