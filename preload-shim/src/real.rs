//! The real liblustreapi functions, found once with `dlsym(RTLD_NEXT)`.
//!
//! Never call an `llapi_*` function through an `extern` declaration from the
//! shim: inside the process those names resolve to our own exports.

use crate::error::ShimError;
use std::ffi::{CStr, c_void};
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

/// `llapi_hsm_action_begin`.
pub type BeginFn = unsafe extern "C" fn(
    phcp: *mut *mut c_void,
    ct: *const c_void,
    hai: *const c_void,
    restore_mdt_index: c_int,
    restore_open_flags: c_int,
    is_error: bool,
) -> c_int;
/// `llapi_hsm_action_end`.
pub type EndFn = unsafe extern "C" fn(
    phcp: *mut *mut c_void,
    he: *const c_void,
    hp_flags: c_int,
    errval: c_int,
) -> c_int;
/// `llapi_search_fsname`.
pub type SearchFsnameFn =
    unsafe extern "C" fn(pathname: *const c_char, fsname: *mut c_char) -> c_int;

#[derive(Debug, Clone, Copy)]
struct Table {
    begin: Option<BeginFn>,
    end: Option<EndFn>,
    search_fsname: Option<SearchFsnameFn>,
}

static TABLE: OnceLock<Table> = OnceLock::new();

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: name is NUL-terminated; RTLD_NEXT is a valid pseudo-handle.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

fn table() -> &'static Table {
    TABLE.get_or_init(|| {
        let begin = lookup(c"llapi_hsm_action_begin");
        let end = lookup(c"llapi_hsm_action_end");
        let search = lookup(c"llapi_search_fsname");
        Table {
            begin: (!begin.is_null()).then(|| {
                // SAFETY: the symbol is liblustreapi's llapi_hsm_action_begin,
                // whose C prototype BeginFn reproduces.
                unsafe { std::mem::transmute::<*mut c_void, BeginFn>(begin) }
            }),
            end: (!end.is_null()).then(|| {
                // SAFETY: as above, for llapi_hsm_action_end and EndFn.
                unsafe { std::mem::transmute::<*mut c_void, EndFn>(end) }
            }),
            search_fsname: (!search.is_null()).then(|| {
                // SAFETY: as above, for llapi_search_fsname and SearchFsnameFn.
                unsafe { std::mem::transmute::<*mut c_void, SearchFsnameFn>(search) }
            }),
        }
    })
}

/// The real `llapi_hsm_action_begin`.
pub fn begin() -> Result<BeginFn, ShimError> {
    table().begin.ok_or(ShimError::MissingSymbol {
        symbol: "llapi_hsm_action_begin",
    })
}

/// The real `llapi_hsm_action_end`.
pub fn end() -> Result<EndFn, ShimError> {
    table().end.ok_or(ShimError::MissingSymbol {
        symbol: "llapi_hsm_action_end",
    })
}

/// The real `llapi_search_fsname`, if loaded.
pub fn search_fsname() -> Option<SearchFsnameFn> {
    table().search_fsname
}
