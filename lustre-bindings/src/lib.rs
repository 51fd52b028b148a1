//! The Lustre HSM copytool ABI, for coordinatool.
//!
//! Nothing here links liblustreapi: the pure codecs work anywhere, and the
//! [`llapi`] wrapper `dlopen`s the library at run time.
//!
//! # Layout
//!
//! - [`sys`]: committed bindgen output of `include/lustre_hsm_subset.h`
//!   (types and constants only, plus C function-pointer typedefs for the llapi
//!   calls). Regenerate with `cargo run -p lustre-bindings-regen`.
//! - [`fid`]: [`Fid`] (`struct lu_fid`), its binary and text forms.
//! - [`action`]: [`HsmAction`] (`enum hsm_copytool_action`) and
//!   [`action::flags`] (request, progress, state and status constants).
//! - [`hal`]: the pure `hsm_action_list` encoder/decoder ([`ActionList`],
//!   [`ActionItem`], [`Extent`]) and [`split_into_hals`].
//! - [`kuc`]: the 8-byte kernel-to-userspace pipe header ([`KucHeader`]).
//! - [`active_requests`]: the MDT's `hsm/active_requests` text
//!   ([`ActiveRequest`]).
//! - [`llapi`]: a safe wrapper over a `dlopen`ed `liblustreapi.so.1`
//!   (copytool registration, receive, begin/progress/end).
//!
//! All binary formats are little-endian and packed; decoders never panic on
//! any input and report typed errors naming the offending offset or field.
#![warn(missing_docs)]

pub mod action;
pub mod active_requests;
pub mod fid;
pub mod hal;
pub mod kuc;
pub mod llapi;
pub mod sys;

pub use action::{HsmAction, flags};
pub use active_requests::{ActiveRequest, ActiveRequestError};
pub use fid::{Fid, FidParseError};
pub use hal::{ActionItem, ActionList, Extent, HalError, split_into_hals};
pub use kuc::{KucError, KucHeader};

pub use llapi::{CopyAction, Copytool, Llapi, LlapiError};
