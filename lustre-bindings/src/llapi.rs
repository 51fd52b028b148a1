//! A safe wrapper over a `dlopen`ed `liblustreapi.so.1`.
//!
//! The library is opened at run time (`RTLD_NOW | RTLD_LOCAL`) rather than
//! linked, so this crate builds and runs on machines without Lustre, and a
//! test can point it at the simulator's fake library instead. Every symbol is
//! resolved once, in [`Llapi::load`]; a missing copytool symbol is an error
//! naming it.
//!
//! Handles are RAII: a [`Copytool`] unregisters when dropped, and a
//! [`CopyAction`] dropped without [`CopyAction::end`] is ended with
//! `ECANCELED` so the MDT does not wait for it until its timeout.
//!
//! All llapi calls return 0 or a negative errno; a negative return becomes
//! `io::Error::from_raw_os_error(-rc)`.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::fid::Fid;
use crate::hal::{ActionItem, Extent};
use crate::sys;
use crate::sys::fns;

/// The library [`Llapi::load`] opens by default (the 2.12+ SONAME).
pub const DEFAULT_LIBRARY: &str = "liblustreapi.so.1";

/// Buffer size for `llapi_search_fsname` (the library assumes up to
/// `PATH_MAX`).
const FSNAME_BUF: usize = 4096 + 1;

/// Errors loading liblustreapi.
#[derive(Debug, thiserror::Error)]
pub enum LlapiError {
    /// `dlopen` failed.
    #[error("cannot dlopen {path}: {message}")]
    Open {
        /// The path or name given to `dlopen`.
        path: String,
        /// `dlerror()`.
        message: String,
    },
    /// A required symbol is missing.
    #[error("{path} does not export {symbol}: {message}")]
    MissingSymbol {
        /// The library.
        path: String,
        /// The missing symbol.
        symbol: &'static str,
        /// `dlerror()`.
        message: String,
    },
    /// The library path contains a NUL byte.
    #[error("library path {path:?} contains a NUL byte")]
    BadPath {
        /// The path.
        path: PathBuf,
    },
}

/// The resolved entry points.
#[derive(Clone, Copy)]
struct Fns {
    register: fns::llapi_hsm_copytool_register_fn,
    unregister: fns::llapi_hsm_copytool_unregister_fn,
    get_fd: fns::llapi_hsm_copytool_get_fd_fn,
    recv: fns::llapi_hsm_copytool_recv_fn,
    begin: fns::llapi_hsm_action_begin_fn,
    end: fns::llapi_hsm_action_end_fn,
    progress: fns::llapi_hsm_action_progress_fn,
    get_dfid: fns::llapi_hsm_action_get_dfid_fn,
    action_get_fd: fns::llapi_hsm_action_get_fd_fn,
    search_fsname: Option<fns::llapi_search_fsname_fn>,
    msg_set_level: Option<fns::llapi_msg_set_level_fn>,
}

/// A loaded liblustreapi.
///
/// `Send + Sync`: after [`Llapi::load`] the struct is immutable (a library
/// handle that is never closed, and plain function addresses). The functions
/// themselves keep no shared mutable state except the message level, an
/// integer; every stateful call goes through a handle ([`Copytool`],
/// [`CopyAction`]) whose own thread-safety is documented there.
pub struct Llapi {
    path: String,
    /// Kept for the lifetime of the process: the library is never
    /// `dlclose`d, since it may hold global state and file descriptors.
    _handle: *mut c_void,
    fns: Fns,
}

// SAFETY: see the type documentation: immutable after construction, and the
// handle is only an opaque token that is never used again.
unsafe impl Send for Llapi {}
// SAFETY: as for Send: no interior mutability, all methods take `&self` and
// call thread-safe library functions.
unsafe impl Sync for Llapi {}

impl std::fmt::Debug for Llapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llapi").field("path", &self.path).finish()
    }
}

fn dlerror_message() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a thread-local,
    // NUL-terminated string valid until the next dl* call on this thread,
    // which we copy at once.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: non-null, NUL-terminated (dlerror contract), copied now.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Resolves `name` in `handle`; NULL when absent.
fn dlsym(handle: *mut c_void, name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: clearing the thread-local error state has no precondition.
    unsafe { libc::dlerror() };
    // SAFETY: `handle` comes from a successful dlopen and is never closed;
    // `name` is NUL-terminated.
    let sym = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if sym.is_null() {
        Err(dlerror_message())
    } else {
        Ok(sym)
    }
}

macro_rules! resolve {
    ($handle:expr, $path:expr, $name:literal, $ty:ty) => {{
        let sym = dlsym($handle, $name).map_err(|message| LlapiError::MissingSymbol {
            path: $path.clone(),
            symbol: $name.to_str().unwrap_or("?"),
            message,
        })?;
        // SAFETY: the symbol is the liblustreapi function of that name, whose
        // C prototype (include/lustre/lustreapi.h) is exactly `$ty`; data and
        // function pointers have the same size on every platform we support.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(sym) }
    }};
}

macro_rules! resolve_opt {
    ($handle:expr, $name:literal, $ty:ty) => {{
        match dlsym($handle, $name) {
            // SAFETY: as in `resolve!`: the symbol has the prototype `$ty`.
            Ok(sym) => Some(unsafe { std::mem::transmute::<*mut c_void, $ty>(sym) }),
            Err(_) => None,
        }
    }};
}

fn neg_errno(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(rc)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

fn c_extent(extent: Extent) -> sys::hsm_extent {
    sys::hsm_extent {
        offset: extent.offset,
        length: extent.length,
    }
}

impl Llapi {
    /// Opens `path` (default [`DEFAULT_LIBRARY`], found through the normal
    /// `dlopen` search) and resolves its symbols.
    pub fn load(path: Option<&Path>) -> Result<Arc<Llapi>, LlapiError> {
        let name = path.map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), Path::to_path_buf);
        let shown = name.display().to_string();
        let c_name = CString::new(name.as_os_str().as_bytes())
            .map_err(|_| LlapiError::BadPath { path: name.clone() })?;
        // SAFETY: `c_name` is NUL-terminated. Loading runs the library's
        // constructors, which is the documented purpose of this call.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(LlapiError::Open {
                path: shown,
                message: dlerror_message(),
            });
        }
        let fns = Fns {
            register: resolve!(
                handle,
                shown,
                c"llapi_hsm_copytool_register",
                fns::llapi_hsm_copytool_register_fn
            ),
            unregister: resolve!(
                handle,
                shown,
                c"llapi_hsm_copytool_unregister",
                fns::llapi_hsm_copytool_unregister_fn
            ),
            get_fd: resolve!(
                handle,
                shown,
                c"llapi_hsm_copytool_get_fd",
                fns::llapi_hsm_copytool_get_fd_fn
            ),
            recv: resolve!(
                handle,
                shown,
                c"llapi_hsm_copytool_recv",
                fns::llapi_hsm_copytool_recv_fn
            ),
            begin: resolve!(
                handle,
                shown,
                c"llapi_hsm_action_begin",
                fns::llapi_hsm_action_begin_fn
            ),
            end: resolve!(
                handle,
                shown,
                c"llapi_hsm_action_end",
                fns::llapi_hsm_action_end_fn
            ),
            progress: resolve!(
                handle,
                shown,
                c"llapi_hsm_action_progress",
                fns::llapi_hsm_action_progress_fn
            ),
            get_dfid: resolve!(
                handle,
                shown,
                c"llapi_hsm_action_get_dfid",
                fns::llapi_hsm_action_get_dfid_fn
            ),
            action_get_fd: resolve!(
                handle,
                shown,
                c"llapi_hsm_action_get_fd",
                fns::llapi_hsm_action_get_fd_fn
            ),
            search_fsname: resolve_opt!(
                handle,
                c"llapi_search_fsname",
                fns::llapi_search_fsname_fn
            ),
            msg_set_level: resolve_opt!(
                handle,
                c"llapi_msg_set_level",
                fns::llapi_msg_set_level_fn
            ),
        };
        tracing::debug!(path = %shown, "loaded liblustreapi");
        Ok(Arc::new(Llapi {
            path: shown,
            _handle: handle,
            fns,
        }))
    }

    /// The path or name the library was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `llapi_msg_set_level`: the library's log verbosity (0 off … 6 debug).
    /// A no-op if the library lacks the symbol.
    pub fn msg_set_level(&self, level: i32) {
        if let Some(f) = self.fns.msg_set_level {
            // SAFETY: plain integer argument; the function only stores it.
            unsafe { f(level) }
        }
    }

    /// `llapi_search_fsname`: the name of the Lustre filesystem holding `path`.
    pub fn search_fsname(&self, path: &Path) -> io::Result<String> {
        let f = self.fns.search_fsname.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} does not export llapi_search_fsname", self.path),
            )
        })?;
        let c = c_path(path)?;
        let mut buf = vec![0u8; FSNAME_BUF];
        // SAFETY: `c` is NUL-terminated; `buf` is larger than any fsname the
        // library writes (it assumes at most PATH_MAX).
        let rc = unsafe { f(c.as_ptr(), buf.as_mut_ptr().cast::<c_char>()) };
        neg_errno(rc)?;
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// `llapi_hsm_copytool_register`: registers a copytool on the Lustre
    /// mount `mnt` for `archives` (empty means all), with a non-blocking
    /// receive pipe if `nonblock`.
    pub fn copytool_register(
        self: &Arc<Self>,
        mnt: &Path,
        archives: &[u32],
        nonblock: bool,
    ) -> io::Result<Copytool> {
        let c_mnt = c_path(mnt)?;
        let mut ids = archives
            .iter()
            .map(|&a| c_int::try_from(a))
            .collect::<Result<Vec<c_int>, _>>()
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "archive ids above i32::MAX cannot be registered through llapi",
                )
            })?;
        let count = c_int::try_from(ids.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many archive ids"))?;
        let rfd_flags = if nonblock { libc::O_NONBLOCK } else { 0 };
        let mut ct: *mut sys::hsm_copytool_private = std::ptr::null_mut();
        // SAFETY: `ct` is a valid out-pointer; `c_mnt` is NUL-terminated;
        // `ids` holds `count` ints (its pointer is non-null even when empty)
        // and outlives the call; the library copies what it keeps.
        let rc = unsafe {
            (self.fns.register)(&mut ct, c_mnt.as_ptr(), count, ids.as_mut_ptr(), rfd_flags)
        };
        neg_errno(rc)?;
        if ct.is_null() {
            return Err(io::Error::other(
                "llapi_hsm_copytool_register returned no handle",
            ));
        }
        tracing::debug!(mnt = %mnt.display(), ?archives, nonblock, "copytool registered");
        Ok(Copytool {
            inner: Arc::new(CtInner {
                llapi: Arc::clone(self),
                ct,
                recv_lock: Mutex::new(()),
            }),
        })
    }
}

struct CtInner {
    llapi: Arc<Llapi>,
    /// NULL once unregistered.
    ct: *mut sys::hsm_copytool_private,
    /// liblustreapi receives into one buffer per copytool (`ct->kuch`):
    /// receives must not overlap.
    recv_lock: Mutex<()>,
}

impl CtInner {
    fn unregister_now(&mut self) -> io::Result<()> {
        if self.ct.is_null() {
            return Ok(());
        }
        // SAFETY: `self.ct` came from a successful register and is still
        // registered; we have exclusive access (`&mut self`), and no
        // CopyAction can exist since each holds a reference to this value.
        let rc = unsafe { (self.llapi.fns.unregister)(&mut self.ct) };
        self.ct = std::ptr::null_mut();
        neg_errno(rc).map(|_| ())
    }
}

impl Drop for CtInner {
    fn drop(&mut self) {
        if let Err(e) = self.unregister_now() {
            tracing::warn!(error = %e, "llapi_hsm_copytool_unregister failed on drop");
        }
    }
}

/// A registered copytool (`struct hsm_copytool_private`).
///
/// # Thread safety
///
/// `Copytool` is `Send` and `Sync`. liblustreapi's receive reads the pipe
/// into a buffer owned by the copytool handle, so receives are serialised by
/// an internal lock ([`Copytool::recv`] by `&mut self` as well). Everything
/// else — `llapi_hsm_copytool_get_fd` and `llapi_hsm_action_begin` — only
/// reads fields fixed at registration (`mnt_fd`, `open_by_fid_fd`, the pipe
/// fd) and allocates its own per-action state, so a `&Copytool` can begin
/// actions on one thread while another thread blocks in
/// [`Copytool::recv_shared`]. Unregistration needs exclusive ownership.
pub struct Copytool {
    inner: Arc<CtInner>,
}

// SAFETY: the handle is heap memory owned by the library and not tied to the
// thread that registered it (no thread-local state).
unsafe impl Send for CtInner {}
// SAFETY: see `Copytool`'s "Thread safety": the only call that mutates the
// handle (recv) is serialised by `recv_lock`; the others only read fields
// that never change after registration; unregister needs `&mut`.
unsafe impl Sync for CtInner {}

impl std::fmt::Debug for Copytool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copytool")
            .field("library", &self.inner.llapi.path)
            .field("handle", &self.inner.ct)
            .finish()
    }
}

impl Copytool {
    /// `llapi_hsm_copytool_recv`: waits for (or, if registered non-blocking,
    /// polls for: `WouldBlock`) the next HAL and returns a copy of its
    /// `msgsize` bytes. Decode it with [`crate::ActionList::decode`].
    /// `ESHUTDOWN` means the kernel tore the session down.
    pub fn recv(&mut self) -> io::Result<Vec<u8>> {
        self.recv_shared()
    }

    /// [`Copytool::recv`] through a shared reference, for when other threads
    /// use the same `Copytool` concurrently (receives are serialised).
    pub fn recv_shared(&self) -> io::Result<Vec<u8>> {
        let _guard = self
            .inner
            .recv_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut hal: *mut sys::hsm_action_list = std::ptr::null_mut();
        let mut msgsize: c_int = 0;
        // SAFETY: `ct` is registered (only unregistered with exclusive
        // ownership); receives are serialised by `recv_lock`; both
        // out-pointers are valid.
        let rc = unsafe { (self.inner.llapi.fns.recv)(self.inner.ct, &mut hal, &mut msgsize) };
        neg_errno(rc)?;
        let len = usize::try_from(msgsize).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("negative msgsize {msgsize}"),
            )
        })?;
        if hal.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "llapi_hsm_copytool_recv returned a NULL hal",
            ));
        }
        // SAFETY: on success the library points `hal` at `msgsize` readable
        // bytes in its receive buffer, valid until the next receive on this
        // copytool, which `recv_lock` (still held) prevents; we copy them now.
        let bytes = unsafe { std::slice::from_raw_parts(hal.cast::<u8>(), len) };
        Ok(bytes.to_vec())
    }

    /// `llapi_hsm_copytool_get_fd`: the receive pipe, for poll/epoll. The fd
    /// stays owned by the copytool.
    pub fn fd(&self) -> io::Result<RawFd> {
        // SAFETY: `ct` is registered; get_fd only reads the pipe fd.
        let rc = unsafe { (self.inner.llapi.fns.get_fd)(self.inner.ct) };
        neg_errno(rc)
    }

    /// Waits until the copytool's fd is readable (a message, or the end of
    /// the pipe, is there) or `timeout` passes; `Ok(true)` when readable.
    /// With a non-blocking registration this lets one thread block on the
    /// Lustre pipe instead of polling `recv` on a timer. `EINTR` counts as
    /// "not readable yet".
    pub fn wait_readable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let fd = self.fd()?;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `pfd` is one valid pollfd on our stack for the whole call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
    }

    /// `llapi_hsm_action_begin` for `item` (its data is passed along but
    /// the library keeps only the fixed part). `mdt_index` -1 means default;
    /// `open_flags` are the RESTORE volatile file's open flags; `is_error`
    /// only prepares an error report through [`CopyAction::end`].
    pub fn action_begin(
        &self,
        item: &ActionItem,
        mdt_index: i32,
        open_flags: i32,
        is_error: bool,
    ) -> io::Result<CopyAction> {
        // An 8-aligned buffer holding the encoded item, as in a real HAL.
        let mut bytes = Vec::with_capacity(item.encoded_len());
        item.encode_into(&mut bytes);
        let mut words = vec![0u64; bytes.len() / 8];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        let mut hcp: *mut sys::hsm_copyaction_private = std::ptr::null_mut();
        // SAFETY: `ct` is registered and begin only reads its immutable
        // fields (see `Copytool`); `words` holds a complete encoded item
        // (hai_len bytes plus padding) and outlives the call; `hcp` is a
        // valid out-pointer.
        let rc = unsafe {
            (self.inner.llapi.fns.begin)(
                &mut hcp,
                self.inner.ct,
                words.as_ptr().cast::<sys::hsm_action_item>(),
                mdt_index,
                open_flags,
                is_error,
            )
        };
        neg_errno(rc)?;
        if hcp.is_null() {
            return Err(io::Error::other(
                "llapi_hsm_action_begin returned no handle",
            ));
        }
        Ok(CopyAction {
            inner: Arc::clone(&self.inner),
            hcp,
            cookie: item.cookie,
        })
    }

    /// `llapi_hsm_copytool_unregister`. If [`CopyAction`]s are still alive,
    /// returns `ResourceBusy` and the copytool is unregistered when the last
    /// of them ends or is dropped.
    pub fn unregister(self) -> io::Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.unregister_now(),
            Err(shared) => {
                let outstanding = Arc::strong_count(&shared) - 1;
                drop(shared);
                Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{outstanding} copy action(s) still in progress; the copytool will be unregistered when they end"
                    ),
                ))
            }
        }
    }
}

/// One copy in progress (`struct hsm_copyaction_private`), from
/// [`Copytool::action_begin`]. Keeps its copytool registered while alive.
/// Dropping it without [`CopyAction::end`] ends it with `ECANCELED`.
pub struct CopyAction {
    inner: Arc<CtInner>,
    /// NULL once ended.
    hcp: *mut sys::hsm_copyaction_private,
    cookie: u64,
}

// SAFETY: the action handle is heap memory owned by the library and not tied
// to a thread; the copytool part it refers to is `Sync` (see `Copytool`).
unsafe impl Send for CopyAction {}

impl std::fmt::Debug for CopyAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyAction")
            .field("cookie", &format_args!("{:#x}", self.cookie))
            .field("handle", &self.hcp)
            .finish()
    }
}

impl CopyAction {
    /// The cookie of the item this action was begun for.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// `llapi_hsm_action_progress`: `extent` is the range copied since the
    /// last report; `total` only feeds the event log. `ECANCELED` means the
    /// request was cancelled.
    pub fn progress(&mut self, extent: Extent, total: u64, flags: i32) -> io::Result<()> {
        let he = c_extent(extent);
        // SAFETY: `hcp` is live (only cleared by `end`, which consumes self);
        // `he` is valid for the call.
        let rc = unsafe { (self.inner.llapi.fns.progress)(self.hcp, &he, total, flags) };
        neg_errno(rc).map(|_| ())
    }

    /// `llapi_hsm_action_end`: finishes the action (`errval` 0 for success,
    /// else an errno; its sign does not matter). The handle is released even
    /// when this fails.
    pub fn end(mut self, extent: Extent, flags: i32, errval: i32) -> io::Result<()> {
        self.end_now(extent, flags, errval)
    }

    fn end_now(&mut self, extent: Extent, flags: i32, errval: i32) -> io::Result<()> {
        if self.hcp.is_null() {
            return Ok(());
        }
        let he = c_extent(extent);
        // SAFETY: `hcp` is live and exclusively ours (`&mut self`); the
        // library frees it and sets it to NULL even on error; `he` is valid.
        let rc = unsafe { (self.inner.llapi.fns.end)(&mut self.hcp, &he, flags, errval) };
        self.hcp = std::ptr::null_mut();
        neg_errno(rc).map(|_| ())
    }

    /// `llapi_hsm_action_get_dfid`: the data FID (the volatile file for a
    /// RESTORE). `EINVAL` unless the action is ARCHIVE or RESTORE.
    pub fn dfid(&self) -> io::Result<Fid> {
        let mut fid = sys::lu_fid {
            f_seq: 0,
            f_oid: 0,
            f_ver: 0,
        };
        // SAFETY: `hcp` is live; `fid` is a valid out-pointer.
        let rc = unsafe { (self.inner.llapi.fns.get_dfid)(self.hcp, &mut fid) };
        neg_errno(rc)?;
        Ok(Fid::new(fid.f_seq, fid.f_oid, fid.f_ver))
    }

    /// `llapi_hsm_action_get_fd`: a new descriptor on the source (ARCHIVE) or
    /// volatile (RESTORE) file, owned by the caller.
    pub fn fd(&self) -> io::Result<OwnedFd> {
        // SAFETY: `hcp` is live.
        let rc = unsafe { (self.inner.llapi.fns.action_get_fd)(self.hcp) };
        let fd = neg_errno(rc)?;
        // SAFETY: on success the library returns a fresh dup() that nothing
        // else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Drop for CopyAction {
    fn drop(&mut self) {
        if self.hcp.is_null() {
            return;
        }
        tracing::warn!(
            cookie = self.cookie,
            "copy action dropped without end; ending it with ECANCELED"
        );
        if let Err(e) = self.end_now(Extent::new(0, 0), 0, libc::ECANCELED) {
            tracing::warn!(cookie = self.cookie, error = %e, "llapi_hsm_action_end failed on drop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_clear_error() {
        let err = Llapi::load(Some(Path::new("/nonexistent/liblustreapi.so.1"))).unwrap_err();
        assert!(matches!(err, LlapiError::Open { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/liblustreapi.so.1"));
    }

    #[test]
    fn missing_symbol_is_named() {
        let err = Llapi::load(Some(Path::new("libc.so.6"))).unwrap_err();
        match err {
            LlapiError::MissingSymbol { symbol, .. } => {
                assert_eq!(symbol, "llapi_hsm_copytool_register")
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn bad_path() {
        assert!(matches!(
            Llapi::load(Some(Path::new("a\0b"))),
            Err(LlapiError::BadPath { .. })
        ));
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Llapi>();
        send_sync::<Copytool>();
        send::<CopyAction>();
    }
}
