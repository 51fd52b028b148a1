//! What each export does, with raw C arguments checked once here.

use crate::config::{self, SessionConfig};
use crate::error::ShimError;
use crate::handle::{self, CtHandle, SHIM_CT_MAGIC};
use crate::session::{Key, Session, Shared};
use crate::{log, sys};
use coordinatool_protocol::WireFid;
use lustre_bindings::action::HSMA_CANCEL;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_void};
use std::os::fd::AsRawFd;
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// How long register waits for the first connection attempt before returning
/// (the worker keeps retrying afterwards).
const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(6);

/// A copy action begun through a handle of ours.
#[derive(Debug)]
struct Tracked {
    shared: Arc<Shared>,
    key: Key,
    action: u32,
}

/// Copy-action handle address -> what it is. An entry is added by a
/// successful begin and removed by the matching end.
static TRACK: Mutex<BTreeMap<usize, Tracked>> = Mutex::new(BTreeMap::new());
/// The pid that last registered (fork detection).
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// Locks [`TRACK`]. In a forked child the lock may have been held by a thread
/// that does not exist there: only try it, and go untracked if taken.
fn track() -> Option<MutexGuard<'static, BTreeMap<usize, Tracked>>> {
    let owner = OWNER_PID.load(Ordering::SeqCst);
    if owner != 0 && owner != sys::pid() {
        return match TRACK.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
    }
    Some(TRACK.lock().unwrap_or_else(|e| e.into_inner()))
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// The fsname of the mount: the real `llapi_search_fsname`, else the mount's
/// base name (with a warning).
fn find_fsname(mnt: &CStr, path: &Path) -> String {
    if let Some(search) = crate::real::search_fsname() {
        let mut buf = [0 as c_char; 256];
        // SAFETY: mnt is NUL-terminated; buf has room for any fsname
        // (LUSTRE_MAXFSNAME is 8) and its NUL.
        let rc = unsafe { search(mnt.as_ptr(), buf.as_mut_ptr()) };
        if rc == 0 {
            buf[buf.len() - 1] = 0;
            // SAFETY: buf is NUL-terminated (forced above).
            let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
            let name = name.to_string_lossy().into_owned();
            if !name.is_empty() {
                return name;
            }
        }
        log_warn!(
            "llapi_search_fsname({}) failed ({rc}); using the mount's base name as fsname",
            path.display()
        );
    } else {
        log_warn!("llapi_search_fsname not found; using the mount's base name as fsname");
    }
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "lustre".to_string())
}

/// `llapi_hsm_copytool_register` with checked arguments: returns the handle.
pub fn register(
    mnt: &CStr,
    archives: &[i32],
    rfd_flags: c_int,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<*mut CtHandle, ShimError> {
    let cfg = config::load_client_config(env, &config::hostname())?;
    log::set_level(log::level_from_env(env, cfg.verbose));
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(mnt.to_bytes()));
    let mnt_fd = sys::open_dir(None, mnt).map_err(|source| ShimError::Open {
        path: path.clone(),
        source,
    })?;
    let fid_fd = sys::open_dir(Some(mnt_fd.as_raw_fd()), c".lustre/fid").map_err(|source| {
        ShimError::Open {
            path: path.join(".lustre/fid"),
            source,
        }
    })?;
    let ids = config::archive_ids(archives, &cfg.archive_ids)?;
    let fsname = find_fsname(mnt, &path);
    let scfg = SessionConfig::new(&cfg, fsname, ids);
    let addr = scfg.addr();
    let summary = format!(
        "mount {} fsname {:?} client_id {:?} archive ids {:?} hal_size {}",
        path.display(),
        scfg.fsname,
        scfg.client_id,
        scfg.archive_ids,
        scfg.hal_size
    );
    let session = Session::start(scfg)?;
    OWNER_PID.store(sys::pid(), Ordering::SeqCst);
    match session.wait_first_attempt(FIRST_ATTEMPT_WAIT) {
        Some(Ok(())) => log_info!("registered ({summary})"),
        Some(Err(e)) => log_warn!(
            "registered ({summary}) but coordinatoold at {addr} is not reachable yet ({e}); retrying in the background"
        ),
        None => log_warn!(
            "registered ({summary}); still connecting to coordinatoold at {addr} in the background"
        ),
    }
    let nonblock = rfd_flags & libc::O_NONBLOCK != 0;
    Ok(handle::new_handle(
        CString::from(mnt),
        mnt_fd,
        fid_fd,
        session,
        nonblock,
    ))
}

/// Raw `llapi_hsm_copytool_register`.
///
/// # Safety
/// C caller's contract: `priv_` writable, `mnt` a C string, `archives`
/// readable for `archive_count` ints (each checked for NULL here).
pub unsafe fn register_raw(
    priv_: *mut *mut CtHandle,
    mnt: *const c_char,
    archive_count: c_int,
    archives: *const c_int,
    rfd_flags: c_int,
) -> Result<c_int, ShimError> {
    if priv_.is_null() {
        return Err(ShimError::invalid("priv is NULL"));
    }
    if mnt.is_null() {
        return Err(ShimError::invalid("mnt is NULL"));
    }
    let count = usize::try_from(archive_count)
        .map_err(|_| ShimError::invalid(format!("archive_count is negative ({archive_count})")))?;
    if count > 0 && archives.is_null() {
        return Err(ShimError::invalid(format!(
            "archive_count is {count} but archives is NULL"
        )));
    }
    let ids: &[c_int] = if count == 0 {
        &[]
    } else {
        // SAFETY: archives is non-NULL and, per the caller, holds count ints.
        unsafe { std::slice::from_raw_parts(archives, count) }
    };
    // SAFETY: mnt is non-NULL and NUL-terminated (caller's contract).
    let mnt = unsafe { CStr::from_ptr(mnt) };
    let h = register(mnt, ids, rfd_flags, &env_var)?;
    // SAFETY: priv_ is non-NULL and writable (caller's contract).
    unsafe { *priv_ = h };
    Ok(0)
}

/// Raw `llapi_hsm_copytool_unregister`.
///
/// # Safety
/// `priv_` NULL or writable, `*priv_` NULL or a handle (ours or Lustre's).
pub unsafe fn unregister_raw(priv_: *mut *mut CtHandle) -> Result<c_int, ShimError> {
    if priv_.is_null() {
        return Err(ShimError::invalid("priv is NULL"));
    }
    // SAFETY: priv_ is non-NULL and readable.
    let ct = unsafe { *priv_ };
    // SAFETY: ct is NULL or a copytool handle (caller's contract).
    unsafe { handle::private(ct) }?;
    // SAFETY: priv_ is non-NULL and writable.
    unsafe { *priv_ = std::ptr::null_mut() };
    // SAFETY: ct is one of our live handles (checked above); the copytool no
    // longer uses it once it unregisters.
    unsafe { handle::destroy(ct) };
    log_info!("unregistered");
    Ok(0)
}

/// Raw `llapi_hsm_copytool_get_fd`.
///
/// # Safety
/// `ct` NULL or a copytool handle.
pub unsafe fn get_fd_raw(ct: *const CtHandle) -> Result<c_int, ShimError> {
    // SAFETY: forwarded caller's contract.
    let p = unsafe { handle::private(ct) }?;
    Ok(p.session.shared().ready_fd())
}

/// Raw `llapi_hsm_copytool_recv`.
///
/// # Safety
/// `ct` NULL or a copytool handle; `hal`/`msgsize` NULL or writable.
pub unsafe fn recv_raw(
    ct: *const CtHandle,
    hal: *mut *mut c_void,
    msgsize: *mut c_int,
) -> Result<c_int, ShimError> {
    // SAFETY: forwarded caller's contract.
    let p = unsafe { handle::private(ct) }?;
    if hal.is_null() || msgsize.is_null() {
        return Err(ShimError::invalid("hal or msgsize is NULL"));
    }
    let shared = p.session.shared();
    if shared.owner_pid() != sys::pid() {
        return Err(ShimError::Forked {
            what: "llapi_hsm_copytool_recv",
            pid: sys::pid(),
            owner: shared.owner_pid(),
        });
    }
    let ready = shared.take(p.nonblock)?;
    let len = c_int::try_from(ready.bytes.len()).map_err(|_| ShimError::TooLarge {
        len: ready.bytes.len(),
        max: c_int::MAX as usize,
    })?;
    let ptr = p.store_hal(&ready.bytes)?;
    // SAFETY: hal is non-NULL and writable (caller's contract).
    unsafe { *hal = ptr };
    // SAFETY: msgsize is non-NULL and writable (caller's contract).
    unsafe { *msgsize = len };
    log_debug!("recv: {} item(s), {len} bytes", ready.items);
    Ok(0)
}

/// What a begin needs from the caller's item: its key and action.
fn item_key(fixed: &[u8; 72]) -> (Key, u32) {
    let u32_at =
        |o: usize| u32::from_le_bytes([fixed[o], fixed[o + 1], fixed[o + 2], fixed[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&fixed[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let key = Key {
        cookie: u64_at(56),
        dfid: WireFid {
            seq: u64_at(24),
            oid: u32_at(32),
            ver: u32_at(36),
        },
    };
    (key, u32_at(4))
}

/// Raw `llapi_hsm_action_begin` wrapper.
///
/// # Safety
/// As the real function: `ct` a copytool handle, `hai` a readable
/// `hsm_action_item` (at least its 72-byte fixed part), `phcp` writable.
pub unsafe fn action_begin_raw(
    phcp: *mut *mut c_void,
    ct: *const CtHandle,
    hai: *const c_void,
    restore_mdt_index: c_int,
    restore_open_flags: c_int,
    is_error: bool,
) -> Result<c_int, ShimError> {
    // Our handle and the caller's item (read before the real call, which may
    // change its own copy's dfid for a restore).
    let ours = if ct.is_null() || hai.is_null() {
        None
    } else {
        // SAFETY: ct is a copytool handle (caller's contract).
        match unsafe { handle::private(ct) } {
            Ok(p) => {
                // SAFETY: hai points to at least the 72-byte fixed part.
                let fixed = unsafe { std::ptr::read_unaligned(hai.cast::<[u8; 72]>()) };
                let (key, action) = item_key(&fixed);
                Some((Arc::clone(p.session.shared()), key, action))
            }
            Err(_) => None,
        }
    };
    let rc = match crate::real::begin() {
        Ok(begin) => {
            // SAFETY: same arguments as our caller gave; our handle has the
            // prefix the real function reads (mnt_fd, open_by_fid_fd).
            unsafe {
                begin(
                    phcp,
                    ct.cast(),
                    hai,
                    restore_mdt_index,
                    restore_open_flags,
                    is_error,
                )
            }
        }
        Err(e) => {
            crate::log_error!("{e}");
            e.to_neg_errno()
        }
    };
    let Some((shared, key, action)) = ours else {
        return Ok(rc);
    };
    if rc == 0 && !phcp.is_null() {
        // SAFETY: phcp is non-NULL; the real begin filled it.
        let hcp = unsafe { *phcp };
        if !hcp.is_null() {
            if let Some(mut t) = track() {
                t.insert(
                    hcp as usize,
                    Tracked {
                        shared,
                        key,
                        action,
                    },
                );
            }
        }
    } else if rc < 0 && !is_error && action != HSMA_CANCEL {
        // The copytool cannot end what did not begin: report it now so the
        // daemon does not wait for it.
        log_warn!(
            "action_begin failed for cookie {:#x} fid {}: errno {}; reporting it done with that error",
            key.cookie,
            key.dfid,
            -rc
        );
        shared.post_done(key, -rc);
    }
    Ok(rc)
}

/// Raw `llapi_hsm_action_end` wrapper.
///
/// # Safety
/// As the real function.
pub unsafe fn action_end_raw(
    phcp: *mut *mut c_void,
    he: *const c_void,
    hp_flags: c_int,
    errval: c_int,
) -> Result<c_int, ShimError> {
    let tracked = if phcp.is_null() {
        None
    } else {
        // SAFETY: phcp is non-NULL and readable (caller's contract).
        let hcp = unsafe { *phcp };
        track().and_then(|mut t| t.remove(&(hcp as usize)))
    };
    let rc = match crate::real::end() {
        // SAFETY: the caller's arguments, unchanged.
        Ok(end) => unsafe { end(phcp, he, hp_flags, errval) },
        Err(e) => {
            crate::log_error!("{e}");
            e.to_neg_errno()
        }
    };
    if let Some(t) = tracked {
        if t.action == HSMA_CANCEL {
            log_debug!(
                "cancel item for cookie {:#x} ended (rc {rc}); the cancelled action reports its own completion",
                t.key.cookie
            );
        } else {
            let status = if errval != 0 {
                errval.checked_abs().unwrap_or(libc::EIO)
            } else if rc < 0 {
                -rc
            } else {
                0
            };
            t.shared.post_done(t.key, status);
        }
    }
    Ok(rc)
}

/// Whether `ct` is one of our handles (for tests and diagnostics).
///
/// # Safety
/// `ct` NULL or readable for a `u32`.
pub unsafe fn is_ours(ct: *const CtHandle) -> bool {
    // SAFETY: forwarded caller's contract.
    !ct.is_null() && unsafe { (*ct).magic } == SHIM_CT_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_from_fixed_part() {
        let it = crate::session::tests_support::item(21, 0x1234, 9);
        let ai: lustre_bindings::ActionItem = it.clone().into();
        let fixed = ai.encode_fixed();
        let (key, action) = item_key(&fixed);
        assert_eq!(action, 21);
        assert_eq!(key, Key::of(&it));
    }

    #[test]
    fn register_rejects_bad_arguments_and_non_lustre_mounts() {
        let env = |_: &str| None;
        // SAFETY: NULL priv is checked first.
        let e =
            unsafe { register_raw(std::ptr::null_mut(), c"/".as_ptr(), 0, std::ptr::null(), 0) }
                .unwrap_err();
        assert_eq!(e.to_neg_errno(), -libc::EINVAL);
        let mut h: *mut CtHandle = std::ptr::null_mut();
        // SAFETY: count > 0 with NULL archives is checked before any read.
        let e = unsafe { register_raw(&mut h, c"/".as_ptr(), 2, std::ptr::null(), 0) }.unwrap_err();
        assert!(e.to_string().contains("NULL"), "{e}");
        let ids = [1, -3];
        // SAFETY: ids holds 2 ints.
        let e = unsafe { register_raw(&mut h, c"/".as_ptr(), -1, ids.as_ptr(), 0) }.unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        // A directory without .lustre/fid is not Lustre: ENOENT naming the path.
        let dir = tempfile::tempdir().unwrap();
        let mnt = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let e = register(&mnt, &[], 0, &env).unwrap_err();
        assert_eq!(e.to_neg_errno(), -libc::ENOENT);
        assert!(e.to_string().contains(".lustre/fid"), "{e}");
        assert!(h.is_null());
    }
}
