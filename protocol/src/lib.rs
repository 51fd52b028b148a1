//! The coordinatool wire protocol, shared by `coordinatoold`, the preload shim and
//! `coordinatool-ctl`.
//!
//! # Layout
//! - [`frame`]: length-prefixed MessagePack frames with a hard size cap, blocking
//!   and (feature `tokio`) async helpers, and an incremental [`frame::FrameBuffer`].
//! - [`messages`]: every request and reply. Structs are encoded as maps with named
//!   fields so that new optional fields can be added without breaking peers.
//! - [`conf`]: the `key value` configuration file shared by the daemon and its
//!   clients (`/etc/coordinatool.conf`), with size and number parsing.
//! - [`client`]: a small blocking client (connect with a clear error, handshake,
//!   one request at a time) used by `coordinatool-ctl` and tests.
//!
//! # Compatibility policy
//! [`messages::PROTOCOL_VERSION`] is sent by the client in `ehlo`; the daemon
//! refuses a different major version with `EPROTO`. Within one version, fields
//! may only be added, and every added field must have a default
//! (`#[serde(default)]`), so an older peer simply ignores what it does not know.
//! The full specification is in `docs/protocol.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod conf;
pub mod frame;
pub mod messages;

pub use frame::{FrameError, MAX_FRAME_LEN};
pub use messages::*;
