//! Safe logic of the fake library: finding the simulator, a per-process
//! connection pool, and the calls themselves on Rust types. Every function
//! returns `Result<T, i32>` with a negative errno.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use lustre_sim::wire::{Client, Reply, Request, Response, WireFid};

/// Negative-errno result.
pub type Errno<T> = Result<T, i32>;

struct Pool {
    pid: u32,
    conns: HashMap<PathBuf, Vec<Client>>,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        Mutex::new(Pool {
            pid: std::process::id(),
            conns: HashMap::new(),
        })
    })
}

/// Send one request to the simulator serving `root`, reusing a pooled
/// connection when there is one (connections are dropped after a fork).
pub fn call(root: &Path, req: &Request) -> Errno<Reply> {
    let pooled = {
        let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
        if p.pid != std::process::id() {
            p.pid = std::process::id();
            p.conns.clear();
        }
        p.conns.get_mut(root).and_then(Vec::pop)
    };
    let mut client = match pooled {
        Some(c) => c,
        None => Client::connect(root).map_err(|e| e.to_neg_errno())?,
    };
    let resp: Response = match client.call(req) {
        Ok(r) => r,
        Err(_) => {
            // A stale pooled connection (simulator restarted): retry once.
            let mut fresh = Client::connect(root).map_err(|e| e.to_neg_errno())?;
            let r = fresh.call(req).map_err(|e| e.to_neg_errno())?;
            client = fresh;
            r
        }
    };
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    p.conns.entry(root.to_path_buf()).or_default().push(client);
    resp
}

/// The mount root of the simulated Lustre containing `path`.
pub fn root_of_path(path: &Path) -> Errno<PathBuf> {
    lustre_sim::paths::find_mount_root(path).map_err(|e| e.to_neg_errno())
}

/// The path an open fd refers to.
pub fn fd_path(fd: i32) -> Errno<PathBuf> {
    if fd < 0 {
        return Err(-libc::EBADF);
    }
    std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| -libc::EBADF)
}

/// The mount root for an fd opened anywhere inside a simulated mount.
pub fn root_of_fd(fd: i32) -> Errno<PathBuf> {
    root_of_path(&fd_path(fd)?)
}

/// Relative path of `path` inside `root`.
pub fn rel_of(root: &Path, path: &Path) -> Errno<String> {
    let abs =
        lustre_sim::paths::absolute(path).map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    lustre_sim::paths::relative(root, &abs).ok_or(-libc::EINVAL)
}

/// FID of a path.
pub fn path2fid(path: &Path) -> Errno<WireFid> {
    std::fs::symlink_metadata(path).map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    let root = root_of_path(path).map_err(|_| -libc::ENOTTY)?;
    let rel = rel_of(&root, path)?;
    match call(&root, &Request::PathToFid { rel })? {
        Reply::Fid(f) => Ok(f),
        _ => Err(-libc::EPROTO),
    }
}

/// Path (relative to `root`) of a FID.
pub fn fid2rel(root: &Path, fid: WireFid) -> Errno<String> {
    match call(root, &Request::FidToPath { fid })? {
        Reply::Path(p) => Ok(p),
        _ => Err(-libc::EPROTO),
    }
}

/// Parse a FID like `llapi_fid_parse`: optional whitespace and `[`,
/// `seq:oid:ver` with C base-0 numbers, optional `]`. Returns the FID and
/// the number of bytes consumed.
pub fn parse_fid(s: &[u8]) -> Errno<(WireFid, usize)> {
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    if i < s.len() && s[i] == b'[' {
        i += 1;
    }
    let mut vals = [0u64; 3];
    for (k, v) in vals.iter_mut().enumerate() {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        let (n, used) = parse_c_ulong(&s[i..])?;
        *v = n;
        i += used;
        if k < 2 {
            if i >= s.len() || s[i] != b':' {
                return Err(-libc::EINVAL);
            }
            i += 1;
        }
    }
    if i < s.len() && s[i] == b']' {
        i += 1;
    }
    if vals[1] > u64::from(u32::MAX) || vals[2] > u64::from(u32::MAX) {
        return Err(-libc::ERANGE);
    }
    Ok((
        WireFid {
            seq: vals[0],
            oid: vals[1] as u32,
            ver: vals[2] as u32,
        },
        i,
    ))
}

/// `strtoull(s, &end, 0)`-like: returns the value and bytes used; no digits
/// is `-EINVAL`, overflow `-ERANGE`.
pub fn parse_c_ulong(s: &[u8]) -> Errno<(u64, usize)> {
    let (radix, start) = if s.len() >= 2 && s[0] == b'0' && (s[1] == b'x' || s[1] == b'X') {
        (16, 2)
    } else if !s.is_empty() && s[0] == b'0' {
        (8, 0)
    } else {
        (10, 0)
    };
    let mut i = start;
    let mut v: u64 = 0;
    while i < s.len() {
        let Some(d) = (s[i] as char).to_digit(radix) else {
            break;
        };
        v = v
            .checked_mul(u64::from(radix))
            .and_then(|x| x.checked_add(u64::from(d)))
            .ok_or(-libc::ERANGE)?;
        i += 1;
    }
    if i == start {
        return Err(-libc::EINVAL);
    }
    Ok((v, i))
}

/// `llapi_parse_size`.
pub fn parse_size(s: &[u8], units: &mut u64, bytes_spec: bool) -> Errno<u64> {
    if s.first() == Some(&b'-') {
        return Err(-1);
    }
    if *units == 0 {
        *units = 1;
    }
    let (v, used) = parse_c_ulong(s).map_err(|_| -1)?;
    let rest = &s[used..];
    if !rest.is_empty() {
        let shift = match rest[0].to_ascii_lowercase() {
            b'b' if rest.len() == 1 => {
                *units = if bytes_spec { 1 } else { 512 };
                None
            }
            b'k' => Some(10),
            b'm' => Some(20),
            b'g' => Some(30),
            b't' => Some(40),
            b'p' => Some(50),
            b'e' => Some(60),
            _ => return Err(-1),
        };
        if let Some(sh) = shift {
            let tail = &rest[1..];
            if !(tail.is_empty()
                || tail.eq_ignore_ascii_case(b"b")
                || tail.eq_ignore_ascii_case(b"ib"))
            {
                return Err(-1);
            }
            *units = 1u64 << sh;
        }
    }
    v.checked_mul(*units).ok_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fid_parsing() {
        let (f, used) = parse_fid(b" [0x200000401:0x1a:0x0] tail").unwrap();
        assert_eq!(
            f,
            WireFid {
                seq: 0x200000401,
                oid: 0x1a,
                ver: 0
            }
        );
        assert_eq!(used, 23);
        assert_eq!(
            parse_fid(b"0x1:2:3").unwrap().0,
            WireFid {
                seq: 1,
                oid: 2,
                ver: 3
            }
        );
        assert_eq!(parse_fid(b"[0x1:0x2]"), Err(-libc::EINVAL));
        assert_eq!(parse_fid(b"0x1:0x100000000:0"), Err(-libc::ERANGE));
        assert_eq!(parse_fid(b"junk"), Err(-libc::EINVAL));
    }

    #[test]
    fn size_parsing() {
        let mut u = 0;
        assert_eq!(parse_size(b"4k", &mut u, false), Ok(4096));
        let mut u = 0;
        assert_eq!(parse_size(b"10", &mut u, false), Ok(10));
        let mut u = 1 << 20;
        assert_eq!(parse_size(b"10", &mut u, false), Ok(10 << 20));
        let mut u = 0;
        assert_eq!(parse_size(b"2b", &mut u, false), Ok(1024));
        let mut u = 0;
        assert_eq!(parse_size(b"-1", &mut u, false), Err(-1));
        assert_eq!(parse_size(b"1x", &mut u, false), Err(-1));
    }
}
