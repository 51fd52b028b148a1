//! The copytool handle handed to the copytool as `struct hsm_copytool_private *`.
//!
//! Its first six fields have the layout of liblustreapi's own private struct,
//! because the **real** `llapi_hsm_action_begin`/`end` receive it and read
//! `mnt_fd` and `open_by_fid_fd` (never the magic). The magic is deliberately
//! not Lustre's, so the real library's copytool calls reject it.

use crate::error::ShimError;
use crate::session::Session;
use std::ffi::{CString, c_void};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_char, c_int};

/// Our magic (Lustre's `CT_PRIV_MAGIC` is 0xC0BE2001).
pub const SHIM_CT_MAGIC: u32 = 0xC52C9B6F;

/// `struct hsm_copytool_private` as far as liblustreapi knows it, then ours.
#[repr(C)]
#[derive(Debug)]
pub struct CtHandle {
    /// [`SHIM_CT_MAGIC`].
    pub magic: u32,
    /// The mount path (NUL-terminated, owned).
    pub mnt: *mut c_char,
    /// The receive buffer: 8 bytes where a KUC header would be, then the HAL.
    pub kuch: *mut c_void,
    /// `open(mnt)`.
    pub mnt_fd: c_int,
    /// `openat(mnt_fd, ".lustre/fid")`.
    pub open_by_fid_fd: c_int,
    /// Unused (NULL): there is no kernel registration.
    pub kuc: *mut c_void,
    /// Our own state.
    pub private: *mut Private,
}

/// The shim's state behind a handle.
#[derive(Debug)]
pub struct Private {
    /// The connection.
    pub session: Session,
    /// Whether `recv` is non-blocking (`O_NONBLOCK` in `rfd_flags`).
    pub nonblock: bool,
    buf: *mut u64,
    buf_words: usize,
    _mnt_fd: OwnedFd,
    _fid_fd: OwnedFd,
}

// SAFETY: buf is owned by Private (a leaked Box<[u64]> freed in Drop) and only
// written by llapi_hsm_copytool_recv, which the copytool calls from one thread
// at a time, as with the real library.
unsafe impl Send for Private {}
// SAFETY: as above; every other field is Sync.
unsafe impl Sync for Private {}

impl Private {
    /// Bytes available for the HAL (after the 8-byte header slot).
    pub fn hal_capacity(&self) -> usize {
        self.buf_words * 8 - 8
    }

    /// Copies `hal` into the buffer; returns a pointer to it (8-byte aligned).
    pub fn store_hal(&self, hal: &[u8]) -> Result<*mut c_void, ShimError> {
        if hal.len() > self.hal_capacity() {
            return Err(ShimError::TooLarge {
                len: hal.len(),
                max: self.hal_capacity(),
            });
        }
        // SAFETY: buf has buf_words >= 1 words, so one word past the start is
        // in bounds (or one past the end when buf_words == 1, with no copy).
        let dst = unsafe { self.buf.add(1) }.cast::<u8>();
        // SAFETY: dst has hal_capacity() >= hal.len() writable bytes, and the
        // regions cannot overlap (hal is a Rust-owned Vec).
        unsafe { std::ptr::copy_nonoverlapping(hal.as_ptr(), dst, hal.len()) };
        Ok(dst.cast())
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.buf, self.buf_words);
        // SAFETY: buf/buf_words come from Box::into_raw of a Box<[u64]> in
        // new_handle and are freed only here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Builds a handle; the caller hands the pointer to C and frees it with [`destroy`].
pub fn new_handle(
    mnt: CString,
    mnt_fd: OwnedFd,
    fid_fd: OwnedFd,
    session: Session,
    nonblock: bool,
) -> *mut CtHandle {
    let hal_size = session.shared().cfg.hal_size as usize;
    let buf_words = hal_size.div_ceil(8) + 1;
    let buf = Box::into_raw(vec![0u64; buf_words].into_boxed_slice()).cast::<u64>();
    let raw_mnt_fd = mnt_fd.as_raw_fd();
    let raw_fid_fd = fid_fd.as_raw_fd();
    let private = Box::new(Private {
        session,
        nonblock,
        buf,
        buf_words,
        _mnt_fd: mnt_fd,
        _fid_fd: fid_fd,
    });
    Box::into_raw(Box::new(CtHandle {
        magic: SHIM_CT_MAGIC,
        mnt: mnt.into_raw(),
        kuch: buf.cast(),
        mnt_fd: raw_mnt_fd,
        open_by_fid_fd: raw_fid_fd,
        kuc: std::ptr::null_mut(),
        private: Box::into_raw(private),
    }))
}

/// Checks a handle pointer and returns our state.
///
/// # Safety
/// `ct` must be NULL or point to readable memory of at least a `u32` (any
/// copytool handle); when its magic is ours it must come from [`new_handle`]
/// and not have been destroyed.
pub unsafe fn private<'a>(ct: *const CtHandle) -> Result<&'a Private, ShimError> {
    if ct.is_null() {
        return Err(ShimError::BadHandle { what: "NULL" });
    }
    if !ct.is_aligned() {
        return Err(ShimError::BadHandle { what: "misaligned" });
    }
    // SAFETY: ct is non-NULL and aligned; the caller guarantees it is readable.
    let magic = unsafe { (*ct).magic };
    if magic != SHIM_CT_MAGIC {
        return Err(ShimError::BadHandle {
            what: "wrong magic",
        });
    }
    // SAFETY: the magic is ours, so ct is a live CtHandle from new_handle.
    let p = unsafe { (*ct).private };
    // SAFETY: private was set by new_handle from Box::into_raw and lives until destroy.
    Ok(unsafe { &*p })
}

/// Frees a handle: stops the session (flushing completions), closes the fds.
///
/// # Safety
/// `ct` must come from [`new_handle`], not be destroyed yet, and no other
/// thread may be using it.
pub unsafe fn destroy(ct: *mut CtHandle) {
    // SAFETY: ct comes from Box::into_raw in new_handle (caller's contract).
    let mut h = unsafe { Box::from_raw(ct) };
    h.magic = 0;
    // SAFETY: private comes from Box::into_raw in new_handle and is freed only here.
    let mut p = unsafe { Box::from_raw(h.private) };
    p.session.stop(std::time::Duration::from_secs(3));
    drop(p);
    // SAFETY: mnt comes from CString::into_raw in new_handle.
    drop(unsafe { CString::from_raw(h.mnt) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn prefix_matches_liblustreapi_layout() {
        // int magic; char *mnt; struct kuc_hdr *kuch; int mnt_fd;
        // int open_by_fid_fd; struct lustre_kernelcomm *kuc;
        assert_eq!(offset_of!(CtHandle, magic), 0);
        assert_eq!(offset_of!(CtHandle, mnt), size_of::<*const u8>());
        assert_eq!(offset_of!(CtHandle, kuch), 2 * size_of::<*const u8>());
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(offset_of!(CtHandle, mnt), 8);
            assert_eq!(offset_of!(CtHandle, kuch), 16);
            assert_eq!(offset_of!(CtHandle, mnt_fd), 24);
            assert_eq!(offset_of!(CtHandle, open_by_fid_fd), 28);
            assert_eq!(offset_of!(CtHandle, kuc), 32);
            assert_eq!(offset_of!(CtHandle, private), 40);
        }
        assert_ne!(SHIM_CT_MAGIC, 0xC0BE2001);
    }

    #[test]
    fn bad_handles_are_einval() {
        // SAFETY: NULL is explicitly allowed.
        let e = unsafe { private(std::ptr::null()) }.unwrap_err();
        assert_eq!(e.to_neg_errno(), -libc::EINVAL);
        let fake = CtHandle {
            magic: 0xC0BE2001,
            mnt: std::ptr::null_mut(),
            kuch: std::ptr::null_mut(),
            mnt_fd: -1,
            open_by_fid_fd: -1,
            kuc: std::ptr::null_mut(),
            private: std::ptr::null_mut(),
        };
        // SAFETY: fake is a readable CtHandle; its magic is not ours.
        let e = unsafe { private(&fake) }.unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
    }
}
