//! Safe logic of the fake library: finding the simulator, a per-process
//! connection pool, and the calls themselves on Rust types. Every function
//! returns `Result<T, i32>` with a negative errno.

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use lustre_sim::wire::{Reply, Request, Response, WireFid, read_frame, write_frame};

/// Negative-errno result.
pub type Errno<T> = Result<T, i32>;

/// One connection to a simulator shared by every thread of the process.
///
/// Calls are pipelined: a caller writes its request and queues a slot
/// (both under `send`, so the queue order is the wire order); a reader
/// thread reads the answers (the simulator answers in order) and fills the
/// slots. With many copytool threads this costs about one wake-up per call
/// instead of three (server thread, spurious write-space wake-up, caller).
struct Conn {
    send: Mutex<UnixStream>,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    dead: AtomicBool,
}

#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Option<Response>>>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, r: Option<Response>) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.ready.notify_one();
    }

    fn wait(&self) -> Option<Response> {
        let mut g = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = g.take() {
                return r;
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Conn {
    fn open(root: &Path) -> Errno<Arc<Conn>> {
        let sock = lustre_sim::paths::sock_path(root);
        let stream =
            UnixStream::connect(&sock).map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
        let read = stream
            .try_clone()
            .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
        let conn = Arc::new(Conn {
            send: Mutex::new(stream),
            queue: Mutex::new(VecDeque::new()),
            dead: AtomicBool::new(false),
        });
        let c = conn.clone();
        std::thread::Builder::new()
            .name("lustre-sim-rx".into())
            .spawn(move || c.read_loop(BufReader::with_capacity(64 << 10, read)))
            .map_err(|_| -libc::EAGAIN)?;
        Ok(conn)
    }

    fn read_loop(&self, mut r: BufReader<UnixStream>) {
        while let Ok(Some(resp)) = read_frame::<Response>(&mut r, "response") {
            let slot = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match slot {
                Some(s) => s.fill(Some(resp)),
                None => break, // an answer nobody asked for
            }
        }
        self.kill();
    }

    /// Mark dead and fail every queued call.
    fn kill(&self) {
        let _g = self.send.lock().unwrap_or_else(|e| e.into_inner());
        self.dead.store(true, Ordering::SeqCst);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for s in q.drain(..) {
            s.fill(None);
        }
        let _ = _g.shutdown(std::net::Shutdown::Both);
    }

    /// `None` when the connection failed (the caller may retry elsewhere).
    fn call(&self, req: &Request) -> Option<Response> {
        let slot = Arc::new(Slot::default());
        {
            let mut stream = self.send.lock().unwrap_or_else(|e| e.into_inner());
            if self.dead.load(Ordering::SeqCst) {
                return None;
            }
            self.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(slot.clone());
            if write_frame(&mut *stream, "request", req).is_err() {
                drop(stream);
                self.kill();
                return None;
            }
        }
        slot.wait()
    }
}

struct Pool {
    pid: u32,
    conns: HashMap<PathBuf, Arc<Conn>>,
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

fn conn_for(root: &Path, fresh: bool) -> Errno<Arc<Conn>> {
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.pid != std::process::id() {
        // After fork: the reader threads stayed in the parent.
        p.pid = std::process::id();
        p.conns.clear();
    }
    if !fresh {
        if let Some(c) = p.conns.get(root) {
            if !c.dead.load(Ordering::SeqCst) {
                return Ok(c.clone());
            }
        }
    }
    let c = Conn::open(root)?;
    p.conns.insert(root.to_path_buf(), c.clone());
    Ok(c)
}

/// Send one request to the simulator serving `root` over the process's
/// shared connection (re-established once if it broke, e.g. after a
/// simulator restart; connections are dropped after a fork).
pub fn call(root: &Path, req: &Request) -> Errno<Reply> {
    if let Some(r) = conn_for(root, false)?.call(req) {
        return r;
    }
    match conn_for(root, true)?.call(req) {
        Some(r) => r,
        None => Err(-libc::ECONNRESET),
    }
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
