//! The C entry points: the only `#[unsafe(no_mangle)]` functions. Each one
//! catches panics (none may cross into C) and returns 0 or a negative errno.

use crate::error::ShimError;
use crate::handle::CtHandle;
use crate::logic;
use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

fn guard(name: &'static str, f: impl FnOnce() -> Result<c_int, ShimError>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(rc)) => rc,
        Ok(Err(e)) => {
            match e {
                ShimError::Again | ShimError::Shutdown | ShimError::Interrupted => {
                    log_debug!("{name}: {e}")
                }
                _ => log_warn!("{name}: {e}"),
            }
            e.to_neg_errno()
        }
        Err(_) => {
            log_error!("{name}: internal error (panic); returning -EIO");
            -libc::EIO
        }
    }
}

/// Registers the copytool with coordinatoold instead of the kernel.
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_register(
    priv_: *mut *mut CtHandle,
    mnt: *const c_char,
    archive_count: c_int,
    archives: *mut c_int,
    rfd_flags: c_int,
) -> c_int {
    guard("llapi_hsm_copytool_register", || {
        // SAFETY: the C caller's arguments, checked inside.
        unsafe { logic::register_raw(priv_, mnt, archive_count, archives, rfd_flags) }
    })
}

/// Stops the background thread (flushing completions) and frees the handle.
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_unregister(priv_: *mut *mut CtHandle) -> c_int {
    guard("llapi_hsm_copytool_unregister", || {
        // SAFETY: the C caller's arguments, checked inside.
        unsafe { logic::unregister_raw(priv_) }
    })
}

/// Returns an fd readable exactly while work is ready. For poll/epoll only:
/// do not read from it.
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_get_fd(ct: *mut CtHandle) -> c_int {
    guard("llapi_hsm_copytool_get_fd", || {
        // SAFETY: the C caller's argument, checked inside.
        unsafe { logic::get_fd_raw(ct) }
    })
}

/// Returns the next batch of work as a HAL in the handle's buffer.
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_recv(
    ct: *mut CtHandle,
    hal: *mut *mut c_void,
    msgsize: *mut c_int,
) -> c_int {
    guard("llapi_hsm_copytool_recv", || {
        // SAFETY: the C caller's arguments, checked inside.
        unsafe { logic::recv_raw(ct, hal, msgsize) }
    })
}

/// Calls the real `llapi_hsm_action_begin` and remembers the request's key.
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_begin(
    phcp: *mut *mut c_void,
    ct: *const CtHandle,
    hai: *const c_void,
    restore_mdt_index: c_int,
    restore_open_flags: c_int,
    is_error: bool,
) -> c_int {
    guard("llapi_hsm_action_begin", || {
        // SAFETY: the C caller's arguments, passed on unchanged.
        unsafe {
            logic::action_begin_raw(
                phcp,
                ct,
                hai,
                restore_mdt_index,
                restore_open_flags,
                is_error,
            )
        }
    })
}

/// Calls the real `llapi_hsm_action_end` and queues the completion for the
/// daemon (returns without waiting for the network).
///
/// # Safety
/// liblustreapi's contract for this function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_end(
    phcp: *mut *mut c_void,
    he: *const c_void,
    hp_flags: c_int,
    errval: c_int,
) -> c_int {
    guard("llapi_hsm_action_end", || {
        // SAFETY: the C caller's arguments, passed on unchanged.
        unsafe { logic::action_end_raw(phcp, he, hp_flags, errval) }
    })
}
