//! A link-compatible fake `liblustreapi.so.1` that talks to `lustre-simd`.
//!
//! # How it works
//! - Every export is `#[unsafe(no_mangle)] extern "C"`, wraps its body in
//!   `catch_unwind` (a panic returns `-EIO`), turns raw arguments into Rust
//!   types, and calls the safe [`logic`] module, which talks to the simulator
//!   over `DIR/.lustre-sim/sim.sock` ([`lustre_sim::wire`]).
//! - The simulator is always found from a path or from an fd
//!   (`/proc/self/fd/N`): begin/progress/end/get_fd/get_dfid never look a
//!   copytool handle up in a registry and never check its magic; they only
//!   read `mnt_fd` (the layout prefix shared with the real library, the
//!   coordinatool preload shim and rustreapi's mover handle).
//! - Registration: a FIFO is created in `DIR/.lustre-sim/agents/` and opened
//!   for reading (it plays the kernel pipe's read end), the simulator opens
//!   it for writing and keeps the registration connection open; closing that
//!   connection (unregister, or the process dying) unregisters the agent.
//!   KUC messages arrive on the FIFO exactly as on the kernel pipe.
//! - `llapi_error`, `llapi_printf` and `llapi_hsm_log_error` take C varargs
//!   or a `va_list`, so they live in `msg.c`; the public names are exported
//!   here as naked tail jumps into the hidden C implementations (a Rust
//!   cdylib only exports Rust symbols).

mod logic;

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use lustre_bindings::action::flags::HP_FLAG_COMPLETED;
use lustre_bindings::hal::HAI_HEADER_LEN;
use lustre_bindings::kuc::{
    HMT_ACTION_LIST, KUC_HEADER_LEN, KUC_MAGIC, KUC_MSG_SHUTDOWN, KUC_TRANSPORT_GENERIC,
    KUC_TRANSPORT_HSM,
};
use lustre_bindings::{Fid, HsmAction};
use lustre_sim::wire::{self, Progress, Reply, Request, UserItem, WireFid};

use logic::Errno;

/// `CT_PRIV_MAGIC` of the real library.
pub const CT_PRIV_MAGIC: c_int = 0xC0BE2001_u32 as c_int;
/// `CP_PRIV_MAGIC` of the real library.
pub const CP_PRIV_MAGIC: u32 = 0x19880429;
/// Receive buffer: `HAL_MAXSIZE` plus the KUC header.
const KUC_BUF_LEN: usize = (1 << 20) + KUC_HEADER_LEN;

/// `struct hsm_copytool_private`: the six-field prefix of the real library,
/// then our own fields.
#[repr(C)]
#[derive(Debug)]
pub struct CopytoolPriv {
    magic: c_int,
    mnt: *mut c_char,
    kuch: *mut u8,
    mnt_fd: c_int,
    open_by_fid_fd: c_int,
    kuc: *mut c_void,
    inner: *mut CtInner,
}

#[derive(Debug)]
struct CtInner {
    /// The registration connection: closing it unregisters.
    reg: UnixStream,
    /// Read end of the KUC FIFO.
    rfd: OwnedFd,
    /// Registered archive ids, empty for all.
    archives: Vec<u32>,
    /// 8-aligned receive buffer; `kuch` points here.
    buf: Vec<u64>,
    /// `struct lustre_kernelcomm` bytes; `kuc` points here.
    kuc: Vec<u32>,
    mnt: std::ffi::CString,
}

/// `struct hsm_copy`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct HsmCopy {
    hc_data_version: u64,
    hc_flags: u16,
    hc_errval: u16,
    padding: u32,
    hc_hai: [u8; HAI_HEADER_LEN],
}

/// `struct hsm_copyaction_private`: the real prefix (magic, fds, ct, copy,
/// statx), then our own fields. Allocated with `calloc` so a shim may
/// `realloc` it, as the C coordinatool preload does.
#[repr(C)]
#[derive(Debug)]
pub struct CopyactionPriv {
    magic: u32,
    source_fd: i32,
    data_fd: i32,
    ct_priv: *const c_void,
    copy: HsmCopy,
    statx: [u64; 32],
    root: *mut PathBuf,
}

fn fid_at(bytes: &[u8], off: usize) -> Fid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[off..off + 16]);
    Fid::from_bytes(&b)
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[off..off + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(b)
}

impl HsmCopy {
    fn action(&self) -> HsmAction {
        HsmAction::from_u32(u32_at(&self.hc_hai, 4))
    }
    fn fid(&self) -> Fid {
        fid_at(&self.hc_hai, 8)
    }
    fn dfid(&self) -> Fid {
        fid_at(&self.hc_hai, 24)
    }
    fn set_fid(&mut self, f: Fid) {
        self.hc_hai[8..24].copy_from_slice(&f.to_bytes());
    }
    fn set_dfid(&mut self, f: Fid) {
        self.hc_hai[24..40].copy_from_slice(&f.to_bytes());
    }
    fn cookie(&self) -> u64 {
        u64_at(&self.hc_hai, 56)
    }
}

/// Run `f`, turning a panic into `-EIO`.
/// The mount root for an fd inside a simulated mount, cached by the fd's
/// `(st_dev, st_ino)` so that the hot calls (begin, get_mdt_index) cost one
/// `fstat` instead of a `/proc/self/fd` readlink and a walk up the folders.
fn root_of_fd_cached(fd: c_int) -> Errno<PathBuf> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    /// (device, inode) of a directory fd -> (that directory's path, mount root).
    type RootCache = HashMap<(u64, u64), (PathBuf, PathBuf)>;
    static CACHE: OnceLock<Mutex<RootCache>> = OnceLock::new();
    if fd < 0 {
        return Err(-libc::EBADF);
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes at most one `struct stat` into `st`.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return Err(errno_now());
    }
    // SAFETY: zero-initialised, then filled by a successful fstat.
    let st = unsafe { st.assume_init() };
    let key = (st.st_dev, st.st_ino);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let hit = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    if let Some((dir, root)) = hit {
        // (device, inode) pairs are reused once a folder is deleted: trust
        // the cached entry only while its path is still that directory.
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&dir).is_ok_and(|m| (m.dev(), m.ino()) == key) {
            return Ok(root);
        }
    }
    let dir = logic::fd_path(fd)?;
    let root = logic::root_of_path(&dir)?;
    // Only directories are cached (a mount fd); files may be renamed.
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (dir, root.clone()));
    }
    Ok(root)
}

fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(-libc::EIO)
}

fn rc(r: Errno<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e,
    }
}

fn errno_now() -> i32 {
    -std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn cstr_path<'a>(p: *const c_char) -> Errno<&'a Path> {
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    Ok(Path::new(std::ffi::OsStr::from_bytes(s.to_bytes())))
}

/// # Safety
/// `out` is NULL or points to 16 writable bytes.
unsafe fn write_fid(out: *mut c_void, fid: WireFid) -> Errno<()> {
    if out.is_null() {
        return Err(-libc::EINVAL);
    }
    let b = Fid::from(fid).to_bytes();
    // SAFETY: `out` has room for a 16-byte `struct lu_fid` (packed, align 1).
    unsafe { ptr::copy_nonoverlapping(b.as_ptr(), out.cast::<u8>(), 16) };
    Ok(())
}

/// # Safety
/// `p` is NULL or points to 16 readable bytes.
unsafe fn read_fid(p: *const c_void) -> Errno<WireFid> {
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    let mut b = [0u8; 16];
    // SAFETY: `p` points to a 16-byte `struct lu_fid`.
    unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), b.as_mut_ptr(), 16) };
    Ok(Fid::from_bytes(&b).into())
}

/// # Safety
/// `p` is NULL or points to a `struct hsm_extent` (16 bytes).
unsafe fn read_extent(p: *const c_void) -> Errno<(u64, u64)> {
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    let mut b = [0u8; 16];
    // SAFETY: `p` points to 16 readable bytes.
    unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), b.as_mut_ptr(), 16) };
    Ok((u64_at(&b, 0), u64_at(&b, 8)))
}

/// # Safety
/// `dst` is NULL or has room for `len` bytes.
unsafe fn copy_out_str(dst: *mut c_char, len: usize, s: &[u8]) -> Errno<()> {
    if dst.is_null() {
        return Err(-libc::EINVAL);
    }
    if s.len() + 1 > len {
        return Err(-libc::EOVERFLOW);
    }
    // SAFETY: `dst` has room for `len >= s.len() + 1` bytes.
    unsafe { ptr::copy_nonoverlapping(s.as_ptr(), dst.cast::<u8>(), s.len()) };
    // SAFETY: index `s.len()` is within the `len` bytes.
    let end = unsafe { dst.add(s.len()) };
    // SAFETY: `end` is within the buffer.
    unsafe { *end = 0 };
    Ok(())
}

// ---- library state, messages --------------------------------------------

/// Exported variable read by `llapi_liblustreapi_initialized()`.
#[unsafe(no_mangle)]
pub static liblustreapi_initialized: AtomicBool = AtomicBool::new(true);

static MSG_LEVEL: AtomicI32 = AtomicI32::new(7); // LLAPI_MSG_MAX
static ERROR_CB: AtomicUsize = AtomicUsize::new(0);

/// `void llapi_msg_set_level(int level)`.
#[unsafe(no_mangle)]
pub extern "C" fn llapi_msg_set_level(level: c_int) {
    MSG_LEVEL.store(level.clamp(0, 7), Ordering::Relaxed);
}

/// `int llapi_msg_get_level(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn llapi_msg_get_level() -> c_int {
    MSG_LEVEL.load(Ordering::Relaxed)
}

/// `llapi_log_callback_t`.
pub type LogCallback = Option<unsafe extern "C" fn(c_uint, c_int, *const c_char, *mut c_void)>;

/// `llapi_log_callback_t llapi_error_callback_set(llapi_log_callback_t)`:
/// NULL restores the default; returns the previous one (NULL for default).
#[unsafe(no_mangle)]
pub extern "C" fn llapi_error_callback_set(cb: LogCallback) -> LogCallback {
    let new = cb.map_or(0, |f| f as usize);
    let old = ERROR_CB.swap(new, Ordering::SeqCst);
    if old == 0 {
        None
    } else {
        // SAFETY: `old` was stored from a valid function pointer of this type.
        Some(unsafe {
            std::mem::transmute::<
                usize,
                unsafe extern "C" fn(c_uint, c_int, *const c_char, *mut c_void),
            >(old)
        })
    }
}

/// For `msg.c`: the current callback, or NULL for the default.
#[unsafe(no_mangle)]
pub extern "C" fn fakelib_error_callback() -> LogCallback {
    let cur = ERROR_CB.load(Ordering::SeqCst);
    if cur == 0 {
        None
    } else {
        // SAFETY: stored from a valid function pointer of this type.
        Some(unsafe {
            std::mem::transmute::<
                usize,
                unsafe extern "C" fn(c_uint, c_int, *const c_char, *mut c_void),
            >(cur)
        })
    }
}

unsafe extern "C" {
    fn fakelib_llapi_error_impl();
    fn fakelib_llapi_printf_impl();
    fn fakelib_hsm_log_error_impl();
    fn fakelib_register_event_fifo(path: *const c_char) -> c_int;
    fn fakelib_unregister_event_fifo(path: *const c_char) -> c_int;
}

/// Defines an exported symbol that is a bare tail jump to a C function, so
/// variadic arguments (or a `va_list`) reach the C code untouched: stable
/// Rust cannot define variadic functions, and a cdylib exports only Rust
/// symbols. x86_64 and aarch64 only.
macro_rules! c_trampoline {
    ($(#[$doc:meta])* $name:ident => $target:ident) => {
        $(#[$doc])*
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() {
            // SAFETY: a bare tail jump; registers and stack are the caller's,
            // so the C function sees exactly the original call.
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {0}", sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {0}", sym $target);
        }
    };
}

c_trampoline!(
    /// `void llapi_error(enum llapi_message_level, int err, const char *fmt, ...)`.
    llapi_error => fakelib_llapi_error_impl
);
c_trampoline!(
    /// `void llapi_printf(enum llapi_message_level, const char *fmt, ...)`.
    llapi_printf => fakelib_llapi_printf_impl
);
c_trampoline!(
    /// `void llapi_hsm_log_error(enum llapi_message_level, int, const char *, va_list)`.
    llapi_hsm_log_error => fakelib_hsm_log_error_impl
);

/// `int llapi_hsm_register_event_fifo(const char *path)`.
///
/// # Safety
/// `path` is NULL or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_register_event_fifo(path: *const c_char) -> c_int {
    // SAFETY: forwarded as is to the C implementation, which checks NULL.
    guard(|| unsafe { fakelib_register_event_fifo(path) })
}

/// `int llapi_hsm_unregister_event_fifo(const char *path)`.
///
/// # Safety
/// `path` is NULL or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_unregister_event_fifo(path: *const c_char) -> c_int {
    // SAFETY: forwarded as is to the C implementation, which checks NULL.
    guard(|| unsafe { fakelib_unregister_event_fifo(path) })
}

/// `int llapi_parse_size(const char *optarg, unsigned long long *size,
/// unsigned long long *size_units, int bytes_spec)`: 0 or -1.
///
/// # Safety
/// Pointers are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_parse_size(
    optarg: *const c_char,
    size: *mut u64,
    size_units: *mut u64,
    bytes_spec: c_int,
) -> c_int {
    guard(|| {
        if optarg.is_null() || size.is_null() || size_units.is_null() {
            return -1;
        }
        // SAFETY: non-NULL C string from the caller.
        let s = unsafe { CStr::from_ptr(optarg) }.to_bytes();
        // SAFETY: `size_units` is a valid pointer from the caller.
        let mut units = unsafe { *size_units };
        let r = logic::parse_size(s, &mut units, bytes_spec != 0);
        // SAFETY: valid pointer from the caller.
        unsafe { *size_units = units };
        match r {
            Ok(v) => {
                // SAFETY: valid pointer from the caller.
                unsafe { *size = v };
                0
            }
            Err(_) => -1,
        }
    })
}

// ---- FIDs and paths -------------------------------------------------------

/// `int llapi_search_fsname(const char *pathname, char *fsname)`.
///
/// # Safety
/// `pathname` is a C string; `fsname` has room for the name (at most 8
/// characters plus NUL on a simulated mount).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_search_fsname(
    pathname: *const c_char,
    fsname: *mut c_char,
) -> c_int {
    guard(|| {
        // SAFETY: C string from the caller (NULL checked).
        let path = match unsafe { cstr_path(pathname) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        if fsname.is_null() {
            return -libc::EINVAL;
        }
        let Ok(root) = logic::root_of_path(path) else {
            return -libc::ENODEV;
        };
        match logic::call(&root, &Request::Hello) {
            Ok(Reply::Hello { fsname: name, .. }) => {
                // SAFETY: callers size the buffer for a Lustre fsname
                // (LUSTRE_MAXFSNAME + 1 at least); ours are at most 8.
                rc(unsafe { copy_out_str(fsname, name.len() + 1, name.as_bytes()) })
            }
            Ok(_) => -libc::EPROTO,
            Err(_) => -libc::ENODEV,
        }
    })
}

/// `int llapi_fid_parse(const char *fidstr, struct lu_fid *fid, char **endptr)`.
///
/// # Safety
/// `fidstr` is a C string; `fid` points to 16 bytes; `endptr` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_fid_parse(
    fidstr: *const c_char,
    fid: *mut c_void,
    endptr: *mut *mut c_char,
) -> c_int {
    guard(|| {
        let set_errno = |e: c_int| {
            // SAFETY: returns this thread's errno location.
            let loc = unsafe { libc::__errno_location() };
            // SAFETY: a valid, thread-local int.
            unsafe { *loc = e };
        };
        if fidstr.is_null() || fid.is_null() {
            set_errno(libc::EINVAL);
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL C string.
        let s = unsafe { CStr::from_ptr(fidstr) }.to_bytes();
        match logic::parse_fid(s) {
            Ok((f, used)) => {
                // SAFETY: `fid` points to a `struct lu_fid`.
                if let Err(e) = unsafe { write_fid(fid, f) } {
                    return e;
                }
                if !endptr.is_null() {
                    // SAFETY: `used <= s.len()`, within the string.
                    let end = unsafe { fidstr.add(used) }.cast_mut();
                    // SAFETY: `endptr` is non-NULL and writable.
                    unsafe { *endptr = end };
                }
                0
            }
            Err(e) => {
                set_errno(-e);
                e
            }
        }
    })
}

fn fid2path_common(root: &Path, fid: WireFid) -> Errno<String> {
    logic::fid2rel(root, fid)
}

/// `int llapi_fid2path(const char *device, const char *fidstr, char *path,
/// int pathlen, long long *recno, int *linkno)`. `device` is a mount path
/// (or an fsname, matched against the mount containing the current folder).
/// The result is relative to the mount root.
///
/// # Safety
/// C strings and buffers as documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_fid2path(
    device: *const c_char,
    fidstr: *const c_char,
    path: *mut c_char,
    pathlen: c_int,
    _recno: *mut i64,
    _linkno: *mut c_int,
) -> c_int {
    guard(|| {
        if device.is_null() || fidstr.is_null() || path.is_null() || pathlen <= 0 {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL C strings from the caller.
        let dev = unsafe { CStr::from_ptr(device) }.to_bytes();
        // SAFETY: as above.
        let fs = unsafe { CStr::from_ptr(fidstr) }.to_bytes();
        let root = if dev.first() == Some(&b'/') {
            logic::root_of_path(Path::new(std::ffi::OsStr::from_bytes(dev)))
        } else {
            std::env::current_dir()
                .map_err(|_| -libc::ENODEV)
                .and_then(|d| logic::root_of_path(&d))
                .and_then(|r| match logic::call(&r, &Request::Hello) {
                    Ok(Reply::Hello { fsname, .. }) if fsname.as_bytes() == dev => Ok(r),
                    _ => Err(-libc::ENODEV),
                })
        };
        let root = match root {
            Ok(r) => r,
            Err(_) => return -libc::ENODEV,
        };
        let fid = match logic::parse_fid(fs) {
            Ok((f, _)) => f,
            Err(e) => return e,
        };
        match fid2path_common(&root, fid) {
            // SAFETY: `path` has `pathlen` bytes.
            Ok(rel) => rc(unsafe { copy_out_str(path, pathlen as usize, rel.as_bytes()) }),
            Err(e) => e,
        }
    })
}

/// `int llapi_fid2path_at(int mnt_fd, const struct lu_fid *fid, char *path,
/// int pathlen, long long *recno, int *linkno)`.
///
/// # Safety
/// Pointers valid as documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_fid2path_at(
    mnt_fd: c_int,
    fid: *const c_void,
    path: *mut c_char,
    pathlen: c_int,
    _recno: *mut i64,
    _linkno: *mut c_int,
) -> c_int {
    guard(|| {
        if path.is_null() || pathlen <= 0 {
            return -libc::EINVAL;
        }
        // SAFETY: `fid` is NULL or a `struct lu_fid`.
        let fid = match unsafe { read_fid(fid) } {
            Ok(f) => f,
            Err(e) => return e,
        };
        let root = match logic::root_of_fd(mnt_fd) {
            Ok(r) => r,
            Err(e) => return e,
        };
        match fid2path_common(&root, fid) {
            // SAFETY: `path` has `pathlen` bytes.
            Ok(rel) => rc(unsafe { copy_out_str(path, pathlen as usize, rel.as_bytes()) }),
            Err(e) => e,
        }
    })
}

/// `int llapi_path2fid(const char *path, struct lu_fid *fid)`.
///
/// # Safety
/// `path` a C string, `fid` 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_path2fid(path: *const c_char, fid: *mut c_void) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let p = match unsafe { cstr_path(path) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        match logic::path2fid(p) {
            // SAFETY: `fid` is NULL or 16 writable bytes.
            Ok(f) => rc(unsafe { write_fid(fid, f) }),
            Err(e) => e,
        }
    })
}

/// `int llapi_fd2fid(int fd, struct lu_fid *fid)`.
///
/// # Safety
/// `fid` 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_fd2fid(fd: c_int, fid: *mut c_void) -> c_int {
    guard(|| {
        let p = match logic::fd_path(fd) {
            Ok(p) => p,
            Err(e) => return e,
        };
        match logic::path2fid(&p) {
            // SAFETY: `fid` is NULL or 16 writable bytes.
            Ok(f) => rc(unsafe { write_fid(fid, f) }),
            Err(e) => e,
        }
    })
}

fn open_flags_path(path: &Path, flags: c_int) -> Errno<c_int> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| -libc::EINVAL)?;
    // SAFETY: `c` is a valid C string; open has no other preconditions.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600) };
    if fd < 0 { Err(errno_now()) } else { Ok(fd) }
}

/// `int llapi_open_by_fid(const char *lustre_dir, const struct lu_fid *fid, int open_flags)`.
///
/// # Safety
/// `lustre_dir` a C string, `fid` 16 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_open_by_fid(
    lustre_dir: *const c_char,
    fid: *const c_void,
    open_flags: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let dir = match unsafe { cstr_path(lustre_dir) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: `fid` NULL or 16 bytes.
        let fid = match unsafe { read_fid(fid) } {
            Ok(f) => f,
            Err(e) => return e,
        };
        let r = logic::root_of_path(dir)
            .and_then(|root| logic::fid2rel(&root, fid).map(|rel| root.join(rel)))
            .and_then(|p| open_flags_path(&p, open_flags & !lustre_bindings_o_lov_delay_create()));
        match r {
            Ok(fd) => fd,
            Err(e) => e,
        }
    })
}

/// `O_LOV_DELAY_CREATE` (`O_NOCTTY | FASYNC`): meaningless outside Lustre.
fn lustre_bindings_o_lov_delay_create() -> c_int {
    libc::O_NOCTTY | libc::O_ASYNC
}

/// `int llapi_get_mdt_index_by_fid(int fd, const struct lu_fid *fid, int *mdt_index)`.
///
/// # Safety
/// `fid` 16 bytes, `mdt_index` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_get_mdt_index_by_fid(
    fd: c_int,
    fid: *const c_void,
    mdt_index: *mut c_int,
) -> c_int {
    guard(|| {
        if mdt_index.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: `fid` NULL or 16 bytes.
        let fid = match unsafe { read_fid(fid) } {
            Ok(f) => f,
            Err(e) => return e,
        };
        let r =
            root_of_fd_cached(fd).and_then(|root| logic::call(&root, &Request::FidToMdt { fid }));
        match r {
            Ok(Reply::Index(i)) => {
                // SAFETY: non-NULL writable int.
                unsafe { *mdt_index = i };
                0
            }
            Ok(_) => -libc::EPROTO,
            Err(e) => e,
        }
    })
}

// ---- HSM: user side ---------------------------------------------------------

fn state_of(path: &Path) -> Errno<wire::HsmState> {
    let fid = logic::path2fid(path)?;
    let root = logic::root_of_path(path)?;
    match logic::call(&root, &Request::StateGet { fid })? {
        Reply::State(s) => Ok(s),
        _ => Err(-libc::EPROTO),
    }
}

/// Looks up `path`'s HSM state and writes `encode(state)` (the C struct's
/// little-endian bytes) to `out`: the shared body of `llapi_hsm_state_get`
/// and `llapi_hsm_current_action`.
///
/// # Safety
/// `path` a C string or NULL, `out` NULL or `N` writable bytes.
unsafe fn state_out<const N: usize>(
    path: *const c_char,
    out: *mut c_void,
    encode: impl FnOnce(&wire::HsmState) -> [u8; N],
) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let p = match unsafe { cstr_path(path) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        if out.is_null() {
            return -libc::EINVAL;
        }
        match state_of(p) {
            Ok(s) => {
                let b = encode(&s);
                // SAFETY: the caller passes `N` writable bytes at `out`.
                unsafe { ptr::copy_nonoverlapping(b.as_ptr(), out.cast::<u8>(), N) };
                0
            }
            Err(e) => e,
        }
    })
}

/// `int llapi_hsm_state_get(const char *path, struct hsm_user_state *hus)`.
///
/// # Safety
/// `path` a C string, `hus` 32 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_state_get(path: *const c_char, hus: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is the one `state_out` needs (N = 32).
    unsafe {
        state_out(path, hus, |s| {
            let mut b = [0u8; 32];
            b[0..4].copy_from_slice(&s.states.to_le_bytes());
            b[4..8].copy_from_slice(&s.archive_id.to_le_bytes());
            b[8..12].copy_from_slice(&s.in_progress_state.to_le_bytes());
            b[12..16].copy_from_slice(&s.in_progress_action.to_le_bytes());
            b[16..24].copy_from_slice(&s.offset.to_le_bytes());
            b[24..32].copy_from_slice(&s.length.to_le_bytes());
            b
        })
    }
}

/// `int llapi_hsm_current_action(const char *path, struct hsm_current_action *hca)`.
///
/// # Safety
/// `path` a C string, `hca` 24 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_current_action(path: *const c_char, hca: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is the one `state_out` needs (N = 24).
    unsafe {
        state_out(path, hca, |s| {
            let mut b = [0u8; 24];
            b[0..4].copy_from_slice(&s.in_progress_state.to_le_bytes());
            b[4..8].copy_from_slice(&s.in_progress_action.to_le_bytes());
            b[8..16].copy_from_slice(&s.offset.to_le_bytes());
            b[16..24].copy_from_slice(&s.length.to_le_bytes());
            b
        })
    }
}

/// `int llapi_hsm_state_set(const char *path, __u64 setmask, __u64 clearmask, __u32 archive_id)`.
///
/// # Safety
/// `path` a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_state_set(
    path: *const c_char,
    setmask: u64,
    clearmask: u64,
    archive_id: u32,
) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let p = match unsafe { cstr_path(path) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let r = logic::path2fid(p).and_then(|fid| {
            let root = logic::root_of_path(p)?;
            logic::call(
                &root,
                &Request::StateSet {
                    fid,
                    setmask,
                    clearmask,
                    archive_id,
                },
            )
        });
        rc(r.map(|_| ()))
    })
}

/// `struct hsm_user_request *llapi_hsm_user_request_alloc(int itemcount, int data_len)`.
#[unsafe(no_mangle)]
pub extern "C" fn llapi_hsm_user_request_alloc(itemcount: c_int, data_len: c_int) -> *mut c_void {
    catch_unwind(|| {
        if itemcount < 0 || data_len < 0 {
            return ptr::null_mut();
        }
        let len = 24 + 32 * itemcount as usize + data_len as usize;
        // SAFETY: plain allocation; the caller releases it with free().
        unsafe { libc::calloc(1, len) }
    })
    .unwrap_or(ptr::null_mut())
}

/// `int llapi_hsm_request(const char *path, const struct hsm_user_request *request)`.
///
/// # Safety
/// `path` a C string; `request` a complete user request.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_request(path: *const c_char, request: *const c_void) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let p = match unsafe { cstr_path(path) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        if request.is_null() {
            return -libc::EINVAL;
        }
        let mut head = [0u8; 24];
        // SAFETY: a request starts with its 24-byte `struct hsm_request`.
        unsafe { ptr::copy_nonoverlapping(request.cast::<u8>(), head.as_mut_ptr(), 24) };
        let action = u32_at(&head, 0);
        let archive_id = u32_at(&head, 4);
        let flags = u64_at(&head, 8);
        let count = u32_at(&head, 16) as usize;
        let data_len = u32_at(&head, 20) as usize;
        if count > 1 << 20 || data_len > 1 << 20 {
            return -libc::EINVAL;
        }
        let mut body = vec![0u8; 32 * count + data_len];
        // SAFETY: the request holds `count` items then `data_len` bytes
        // after its header (hur_len), per the API contract.
        let items_ptr = unsafe { request.cast::<u8>().add(24) };
        // SAFETY: as above: `body.len()` readable bytes follow the header.
        unsafe { ptr::copy_nonoverlapping(items_ptr, body.as_mut_ptr(), body.len()) };
        let items = (0..count)
            .map(|i| UserItem {
                fid: fid_at(&body, 32 * i).into(),
                offset: u64_at(&body, 32 * i + 16),
                length: u64_at(&body, 32 * i + 24),
            })
            .collect();
        let data = body[32 * count..].to_vec();
        let r = logic::root_of_path(p).and_then(|root| {
            logic::call(
                &root,
                &Request::HsmRequest {
                    action,
                    archive_id,
                    flags,
                    items,
                    data,
                },
            )
        });
        rc(r.map(|_| ()))
    })
}

/// `int llapi_hsm_import(const char *dst, int archive, const struct stat *st,
/// unsigned long long stripe_size, int stripe_offset, int stripe_count,
/// int stripe_pattern, char *pool_name, struct lu_fid *newfid)`.
///
/// # Safety
/// `dst` a C string, `st` a `struct stat`, `newfid` 16 writable bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn llapi_hsm_import(
    dst: *const c_char,
    archive: c_int,
    st: *const libc::stat,
    _stripe_size: u64,
    _stripe_offset: c_int,
    _stripe_count: c_int,
    _stripe_pattern: c_int,
    _pool_name: *mut c_char,
    newfid: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: C string (NULL checked).
        let p = match unsafe { cstr_path(dst) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        if st.is_null() || archive < 0 {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL `struct stat` from the caller.
        let st = unsafe { &*st };
        let r = logic::root_of_path(p).and_then(|root| {
            let rel = logic::rel_of(&root, p)?;
            logic::call(
                &root,
                &Request::Import {
                    rel,
                    archive_id: archive as u32,
                    size: st.st_size as u64,
                    mode: st.st_mode,
                    mtime: st.st_mtime,
                },
            )
        });
        match r {
            Ok(Reply::Fid(f)) => {
                if newfid.is_null() {
                    0
                } else {
                    // SAFETY: 16 writable bytes.
                    rc(unsafe { write_fid(newfid, f) })
                }
            }
            Ok(_) => -libc::EPROTO,
            Err(e) => e,
        }
    })
}

// ---- HSM: copytool registration and receive ---------------------------------

fn make_fifo(root: &Path) -> Errno<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = lustre_sim::paths::agents_dir(root);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("ct-{}-{n}-{nanos:x}.fifo", std::process::id()));
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| -libc::EINVAL)?;
    // SAFETY: valid C string; mkfifo has no other preconditions.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(errno_now());
    }
    Ok(path)
}

fn register(mnt: &Path, archives: Vec<u32>, rfd_flags: c_int) -> Errno<*mut CopytoolPriv> {
    let mnt_file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
        .open(mnt)
        .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    let fid_dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(mnt.join(".lustre/fid"))
        .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    let root = logic::root_of_path(mnt).map_err(|_| -libc::ENOENT)?;
    let fifo = make_fifo(&root)?;
    let cleanup = |e: i32| {
        let _ = std::fs::remove_file(&fifo);
        e
    };
    let rfile = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|e| cleanup(-e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut client = wire::Client::connect(&root).map_err(|e| cleanup(e.to_neg_errno()))?;
    let resp = client
        .call(&Request::Register {
            fifo: fifo.clone(),
            archives: archives.clone(),
            pid: std::process::id(),
        })
        .map_err(|e| cleanup(e.to_neg_errno()))?;
    let _ = std::fs::remove_file(&fifo);
    match resp {
        Ok(Reply::Registered { .. }) => {}
        Ok(_) => return Err(-libc::EPROTO),
        Err(e) => return Err(e),
    }
    let rfd: OwnedFd = rfile.into();
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(rfd.as_raw_fd(), libc::F_SETFL, rfd_flags) } < 0 {
        return Err(errno_now());
    }
    let all = archives.is_empty();
    let mut kuc = vec![
        u32::MAX, // lk_wfd: our write end is closed (LK_NOFD)
        rfd.as_raw_fd() as u32,
        std::process::id(),
        lustre_bindings::kuc::KUC_GRP_HSM,
        archives.len() as u32,
        if all { 0 } else { 2 }, // LK_FLG_DATANR
    ];
    kuc.extend_from_slice(&archives);
    let mnt_c = std::ffi::CString::new(mnt.as_os_str().as_bytes()).map_err(|_| -libc::EINVAL)?;
    let mut inner = Box::new(CtInner {
        reg: client.into_stream(),
        rfd,
        archives,
        buf: vec![0u64; KUC_BUF_LEN.div_ceil(8)],
        kuc,
        mnt: mnt_c,
    });
    let ct = CopytoolPriv {
        magic: CT_PRIV_MAGIC,
        mnt: inner.mnt.as_ptr().cast_mut(),
        kuch: inner.buf.as_mut_ptr().cast::<u8>(),
        mnt_fd: mnt_file.into_raw_fd(),
        open_by_fid_fd: fid_dir.into_raw_fd(),
        kuc: inner.kuc.as_mut_ptr().cast::<c_void>(),
        inner: Box::into_raw(inner),
    };
    Ok(Box::into_raw(Box::new(ct)))
}

/// `int llapi_hsm_copytool_register(struct hsm_copytool_private **priv,
/// const char *mnt, int archive_count, int *archives, int rfd_flags)`.
///
/// # Safety
/// `priv_` writable; `mnt` a C string; `archives` holds `archive_count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_register(
    priv_: *mut *mut CopytoolPriv,
    mnt: *const c_char,
    archive_count: c_int,
    archives: *const c_int,
    rfd_flags: c_int,
) -> c_int {
    guard(|| {
        if priv_.is_null() || archive_count < 0 || (archive_count > 0 && archives.is_null()) {
            return -libc::EINVAL;
        }
        // SAFETY: C string (NULL checked).
        let mnt = match unsafe { cstr_path(mnt) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let ids: &[c_int] = if archive_count == 0 {
            &[]
        } else {
            // SAFETY: `archives` holds `archive_count` ints per the API.
            unsafe { std::slice::from_raw_parts(archives, archive_count as usize) }
        };
        if ids.iter().any(|&a| a < 0) {
            return -libc::EINVAL;
        }
        let list: Vec<u32> = if ids.contains(&0) {
            Vec::new()
        } else {
            let mut v: Vec<u32> = ids.iter().map(|&a| a as u32).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        match register(mnt, list, rfd_flags) {
            Ok(ct) => {
                // SAFETY: `priv_` is writable (checked non-NULL).
                unsafe { *priv_ = ct };
                0
            }
            Err(e) => e,
        }
    })
}

/// # Safety
/// `ct` is NULL or a handle from our register.
unsafe fn our_ct<'a>(ct: *const CopytoolPriv) -> Errno<&'a mut CopytoolPriv> {
    if ct.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL; the magic field is first in every known layout.
    let magic = unsafe { (*ct).magic };
    if magic != CT_PRIV_MAGIC {
        return Err(-libc::EINVAL);
    }
    // SAFETY: our magic: this is one of our `CopytoolPriv`s.
    let ct = unsafe { &mut *ct.cast_mut() };
    if ct.inner.is_null() {
        return Err(-libc::EINVAL);
    }
    Ok(ct)
}

/// `int llapi_hsm_copytool_unregister(struct hsm_copytool_private **priv)`.
///
/// # Safety
/// `priv_` NULL or a pointer to a handle from our register.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_unregister(priv_: *mut *mut CopytoolPriv) -> c_int {
    guard(|| {
        if priv_.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL pointer to the caller's handle pointer.
        let ctp = unsafe { *priv_ };
        // SAFETY: NULL or a handle; checked by magic.
        if let Err(e) = unsafe { our_ct(ctp) } {
            return e;
        }
        // SAFETY: ours (magic checked), allocated by `Box::new` in register.
        let ct = unsafe { Box::from_raw(ctp) };
        // SAFETY: `inner` came from `Box::into_raw` in register.
        let inner = unsafe { Box::from_raw(ct.inner) };
        let CtInner { reg, rfd, .. } = *inner;
        drop(rfd);
        let mut reg = reg;
        let _ = wire::write_frame(&mut reg, "request", &Request::Unregister);
        let _: Result<Option<wire::Response>, _> = wire::read_frame(&mut reg, "response");
        drop(reg);
        // SAFETY: fds opened by register and owned by the handle.
        unsafe {
            libc::close(ct.mnt_fd);
        }
        // SAFETY: as above.
        unsafe {
            libc::close(ct.open_by_fid_fd);
        }
        // SAFETY: `priv_` is writable.
        unsafe { *priv_ = ptr::null_mut() };
        0
    })
}

/// `int llapi_hsm_copytool_get_fd(struct hsm_copytool_private *ct)`.
///
/// # Safety
/// `ct` NULL or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_get_fd(ct: *mut CopytoolPriv) -> c_int {
    guard(|| {
        // SAFETY: NULL or a handle; checked by magic.
        match unsafe { our_ct(ct) } {
            // SAFETY: `inner` is valid for our handles.
            Ok(ct) => unsafe { (*ct.inner).rfd.as_raw_fd() },
            Err(e) => e,
        }
    })
}

enum ReadOutcome {
    Done,
    Eof,
}

/// Read exactly `buf.len()` bytes from a pipe. `first` marks the start of a
/// message: EAGAIN/EINTR/EOF before any byte are reported as such; inside a
/// message we wait (poll) and keep reading.
fn read_full(fd: &OwnedFd, buf: &mut [u8], first: bool) -> Errno<ReadOutcome> {
    let mut got = 0;
    let mut file = File::from(
        fd.try_clone()
            .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?,
    );
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => {
                return if got == 0 && first {
                    Ok(ReadOutcome::Eof)
                } else {
                    Err(-libc::EPROTO)
                };
            }
            Ok(n) => got += n,
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(libc::EIO);
                if got == 0 && first && (code == libc::EAGAIN || code == libc::EINTR) {
                    return Err(-code);
                }
                if code == libc::EAGAIN {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 1000) };
                } else if code != libc::EINTR {
                    return Err(-code);
                }
            }
        }
    }
    Ok(ReadOutcome::Done)
}

fn recv(ct: &mut CopytoolPriv) -> Errno<(*mut c_void, c_int)> {
    // SAFETY: `inner` is valid for our handles (checked by the caller).
    let inner = unsafe { &mut *ct.inner };
    let buf_ptr = inner.buf.as_mut_ptr().cast::<u8>();
    let cap = inner.buf.len() * 8;
    // SAFETY: `buf` is a live allocation of `cap` bytes owned by the handle.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf_ptr, cap) };
    loop {
        match read_full(&inner.rfd, &mut buf[..KUC_HEADER_LEN], true)? {
            ReadOutcome::Eof => return Err(-libc::EPIPE),
            ReadOutcome::Done => {}
        }
        let magic = u16::from_le_bytes([buf[0], buf[1]]);
        let transport = buf[2];
        let msgtype = u16::from_le_bytes([buf[4], buf[5]]);
        let msglen = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
        if magic != KUC_MAGIC || msglen < KUC_HEADER_LEN {
            return Err(-libc::EPROTO);
        }
        if msglen > cap {
            return Err(-libc::EMSGSIZE);
        }
        if msglen > KUC_HEADER_LEN {
            if let ReadOutcome::Eof =
                read_full(&inner.rfd, &mut buf[KUC_HEADER_LEN..msglen], false)?
            {
                return Err(-libc::EPROTO);
            }
        }
        match transport {
            KUC_TRANSPORT_GENERIC => {
                if msgtype == KUC_MSG_SHUTDOWN {
                    return Err(-libc::ESHUTDOWN);
                }
                continue;
            }
            KUC_TRANSPORT_HSM => {
                if msgtype != HMT_ACTION_LIST {
                    return Err(-libc::EPROTO);
                }
            }
            _ => continue,
        }
        let payload = &buf[KUC_HEADER_LEN..msglen];
        if payload.len() < 32 {
            return Err(-libc::EPROTO);
        }
        let archive_id = u32_at(payload, 24);
        if !inner.archives.is_empty() && !inner.archives.contains(&archive_id) {
            continue; // not ours: silently skipped
        }
        // SAFETY: within the buffer (8 < msglen <= cap).
        let hal = unsafe { buf_ptr.add(KUC_HEADER_LEN) };
        return Ok((hal.cast::<c_void>(), (msglen - KUC_HEADER_LEN) as c_int));
    }
}

/// `int llapi_hsm_copytool_recv(struct hsm_copytool_private *ct,
/// struct hsm_action_list **hal, int *msgsize)`.
///
/// # Safety
/// `ct` NULL or a handle; `hal`, `msgsize` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_copytool_recv(
    ct: *mut CopytoolPriv,
    hal: *mut *mut c_void,
    msgsize: *mut c_int,
) -> c_int {
    guard(|| {
        if hal.is_null() || msgsize.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: NULL or a handle; checked by magic.
        let ct = match unsafe { our_ct(ct) } {
            Ok(c) => c,
            Err(e) => return e,
        };
        match recv(ct) {
            Ok((p, n)) => {
                // SAFETY: both pointers are writable (checked non-NULL).
                unsafe {
                    *hal = p;
                }
                // SAFETY: as above.
                unsafe {
                    *msgsize = n;
                }
                0
            }
            Err(e) => e,
        }
    })
}

// ---- HSM: copy actions --------------------------------------------------------

/// # Safety
/// `hcp` NULL or a copy action from our begin.
unsafe fn our_hcp<'a>(hcp: *const CopyactionPriv) -> Errno<&'a mut CopyactionPriv> {
    if hcp.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL; magic is the first field of the layout.
    if unsafe { (*hcp).magic } != CP_PRIV_MAGIC {
        return Err(-libc::EINVAL);
    }
    // SAFETY: our magic: one of our copy actions.
    Ok(unsafe { &mut *hcp.cast_mut() })
}

fn open_path(path: &Path, flags: c_int) -> Errno<c_int> {
    match open_flags_path(path, flags | libc::O_NOATIME) {
        Err(e) if e == -libc::EPERM => open_flags_path(path, flags),
        r => r,
    }
}

fn begin(hcp: &mut CopyactionPriv, root: &Path, is_error: bool) -> Errno<()> {
    if is_error {
        return Ok(());
    }
    let action = hcp.copy.action();
    match action {
        HsmAction::Remove => Ok(()), // no ioctl; a missing file is fine
        HsmAction::Archive | HsmAction::Restore => {
            let fid = if action == HsmAction::Archive {
                hcp.copy.dfid()
            } else {
                hcp.copy.fid()
            };
            let reply = logic::call(
                root,
                &Request::CopyStart {
                    cookie: hcp.copy.cookie(),
                    fid: fid.into(),
                    action: action.as_u32(),
                },
            )?;
            let Reply::CopyStarted { source, volatile } = reply else {
                return Err(-libc::EPROTO);
            };
            if let Some(rel) = source {
                hcp.source_fd = open_path(
                    &root.join(rel),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                )?;
            }
            if let Some((path, vfid)) = volatile {
                hcp.data_fd = open_flags_path(&path, libc::O_WRONLY)?;
                hcp.copy.set_dfid(vfid.into());
            }
            Ok(())
        }
        _ => {
            logic::call(
                root,
                &Request::CopyStart {
                    cookie: hcp.copy.cookie(),
                    fid: hcp.copy.fid().into(),
                    action: action.as_u32(),
                },
            )?;
            Ok(())
        }
    }
}

/// Free a copy action: close its fds, drop its private part, `free` it.
///
/// # Safety
/// `hcp` is one of ours, not used afterwards.
unsafe fn free_hcp(hcp: *mut CopyactionPriv) {
    // SAFETY: ours per the contract.
    let h = unsafe { &mut *hcp };
    for fd in [h.source_fd, h.data_fd] {
        if fd >= 0 {
            // SAFETY: fds opened by begin and owned by the copy action.
            unsafe { libc::close(fd) };
        }
    }
    if !h.root.is_null() {
        // SAFETY: from `Box::into_raw` in begin.
        drop(unsafe { Box::from_raw(h.root) });
    }
    h.magic = 0;
    // SAFETY: allocated with calloc in begin (or realloc'd by a shim).
    unsafe { libc::free(hcp.cast::<c_void>()) };
}

/// `int llapi_hsm_action_begin(struct hsm_copyaction_private **phcp,
/// const struct hsm_copytool_private *ct, const struct hsm_action_item *hai,
/// int restore_mdt_index, int restore_open_flags, bool is_error)`.
///
/// Works with any `ct` whose `mnt_fd` is valid (the magic is not checked).
///
/// # Safety
/// `phcp` writable; `ct` NULL or a handle with the real prefix; `hai` an item.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_begin(
    phcp: *mut *mut CopyactionPriv,
    ct: *const CopytoolPriv,
    hai: *const c_void,
    _restore_mdt_index: c_int,
    _restore_open_flags: c_int,
    is_error: bool,
) -> c_int {
    guard(|| {
        if phcp.is_null() || ct.is_null() || hai.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: `ct` has the real six-field prefix; only mnt_fd is read.
        let mnt_fd = unsafe { (*ct).mnt_fd };
        let root = match root_of_fd_cached(mnt_fd) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut fixed = [0u8; HAI_HEADER_LEN];
        // SAFETY: an item has at least its 72-byte fixed part.
        unsafe { ptr::copy_nonoverlapping(hai.cast::<u8>(), fixed.as_mut_ptr(), HAI_HEADER_LEN) };
        fixed[0..4].copy_from_slice(&(HAI_HEADER_LEN as u32).to_le_bytes());
        // SAFETY: plain allocation, released by `free_hcp`.
        let p = unsafe { libc::calloc(1, std::mem::size_of::<CopyactionPriv>()) }
            .cast::<CopyactionPriv>();
        if p.is_null() {
            return -libc::ENOMEM;
        }
        // SAFETY: `p` is a fresh, suitably aligned allocation of the right size.
        unsafe {
            p.write(CopyactionPriv {
                magic: CP_PRIV_MAGIC,
                source_fd: -1,
                data_fd: -1,
                ct_priv: ct.cast::<c_void>(),
                copy: HsmCopy {
                    hc_data_version: 0,
                    hc_flags: 0,
                    hc_errval: 0,
                    padding: 0,
                    hc_hai: fixed,
                },
                statx: [0; 32],
                root: Box::into_raw(Box::new(root.clone())),
            })
        };
        // SAFETY: just initialised.
        let h = unsafe { &mut *p };
        match begin(h, &root, is_error) {
            Ok(()) => {
                // SAFETY: `phcp` is writable.
                unsafe { *phcp = p };
                0
            }
            Err(e) => {
                // SAFETY: ours, not published.
                unsafe { free_hcp(p) };
                e
            }
        }
    })
}

/// `int llapi_hsm_action_progress(struct hsm_copyaction_private *hcp,
/// const struct hsm_extent *he, __u64 total, int hp_flags)`.
///
/// # Safety
/// `hcp` NULL or a copy action; `he` an extent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_progress(
    hcp: *mut CopyactionPriv,
    he: *const c_void,
    _total: u64,
    hp_flags: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a copy action; checked by magic.
        let h = match unsafe { our_hcp(hcp) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: NULL or a `struct hsm_extent`.
        let (offset, length) = match unsafe { read_extent(he) } {
            Ok(x) => x,
            Err(e) => return e,
        };
        if h.root.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: set by begin.
        let root = unsafe { &*h.root };
        let p = Progress {
            cookie: h.copy.cookie(),
            fid: h.copy.dfid().into(),
            offset,
            length,
            flags: hp_flags as u32,
            errval: 0,
        };
        rc(logic::call(root, &Request::Progress(p)).map(|_| ()))
    })
}

/// `int llapi_hsm_action_end(struct hsm_copyaction_private **phcp,
/// const struct hsm_extent *he, int hp_flags, int errval)`. Frees and NULLs
/// `*phcp` even on error.
///
/// # Safety
/// `phcp` NULL or a pointer to a copy action; `he` an extent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_end(
    phcp: *mut *mut CopyactionPriv,
    he: *const c_void,
    hp_flags: c_int,
    errval: c_int,
) -> c_int {
    guard(|| {
        if phcp.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL pointer to the caller's copy action pointer.
        let p = unsafe { *phcp };
        // SAFETY: NULL or a copy action; checked by magic.
        let h = match unsafe { our_hcp(p) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: NULL or a `struct hsm_extent`.
        let ext = unsafe { read_extent(he) };
        let result = (|| {
            let (offset, length) = ext?;
            if h.root.is_null() {
                return Err(-libc::EINVAL);
            }
            // SAFETY: set by begin.
            let root = unsafe { &*h.root };
            let action = h.copy.action();
            if action == HsmAction::Restore && errval == 0 && h.data_fd >= 0 {
                // SAFETY: fsync on our fd.
                unsafe { libc::fsync(h.data_fd) };
            }
            if matches!(action, HsmAction::Archive | HsmAction::Restore) {
                let d = h.copy.dfid();
                h.copy.set_fid(d);
            }
            h.copy.hc_flags = (hp_flags | HP_FLAG_COMPLETED) as u16;
            h.copy.hc_errval = errval.unsigned_abs() as u16;
            let p = Progress {
                cookie: h.copy.cookie(),
                fid: h.copy.fid().into(),
                offset,
                length,
                flags: hp_flags as u32,
                errval: errval.unsigned_abs(),
            };
            logic::call(root, &Request::CopyEnd(p)).map(|_| ())
        })();
        // SAFETY: ours; the caller's pointer is cleared right after.
        unsafe { free_hcp(p) };
        // SAFETY: `phcp` is writable.
        unsafe { *phcp = ptr::null_mut() };
        rc(result)
    })
}

/// `int llapi_hsm_action_get_dfid(const struct hsm_copyaction_private *hcp, struct lu_fid *fid)`.
///
/// # Safety
/// `hcp` NULL or a copy action; `fid` 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_get_dfid(
    hcp: *const CopyactionPriv,
    fid: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a copy action; checked by magic.
        let h = match unsafe { our_hcp(hcp) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        if !matches!(h.copy.action(), HsmAction::Archive | HsmAction::Restore) {
            return -libc::EINVAL;
        }
        // SAFETY: 16 writable bytes (NULL checked).
        rc(unsafe { write_fid(fid, h.copy.dfid().into()) })
    })
}

/// `int llapi_hsm_action_get_fd(const struct hsm_copyaction_private *hcp)`:
/// a `dup` of the source (ARCHIVE) or volatile (RESTORE) fd.
///
/// # Safety
/// `hcp` NULL or a copy action.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llapi_hsm_action_get_fd(hcp: *const CopyactionPriv) -> c_int {
    guard(|| {
        // SAFETY: NULL or a copy action; checked by magic.
        let h = match unsafe { our_hcp(hcp) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        let fd = match h.copy.action() {
            HsmAction::Archive => h.source_fd,
            HsmAction::Restore => h.data_fd,
            _ => return -libc::EINVAL,
        };
        // SAFETY: dup has no memory-safety preconditions.
        let d = unsafe { libc::dup(fd) };
        if d < 0 { errno_now() } else { d }
    })
}

const _: () = assert!(std::mem::size_of::<HsmCopy>() == 88);
const _: () = assert!(std::mem::offset_of!(CopyactionPriv, copy) == 24);
const _: () = assert!(std::mem::offset_of!(CopytoolPriv, mnt_fd) == 24);
const _: () = assert!(std::mem::offset_of!(CopytoolPriv, kuc) == 32);
