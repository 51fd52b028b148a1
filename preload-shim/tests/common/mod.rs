//! A small in-test coordinatoold speaking the real protocol, recording what
//! it receives, with controls to hand out batches and drop connections.
#![allow(dead_code)]

use coordinatool_protocol::frame::{FrameBuffer, encode_frame};
use coordinatool_protocol::{
    Batch, Done, Ehlo, EhloReply, PROTOCOL_VERSION, Recv, Reply, Request, RequestFrame, Response,
    ResponseFrame, WireFid, WireItem,
};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the fake daemon saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A connection's `ehlo` (with the connection number).
    Ehlo(usize, Ehlo),
    /// A `recv`.
    Recv(usize, Recv),
    /// One completion (from `done` or `done_batch`).
    Done(usize, Done),
    /// After the `Done`s of one `done` or `done_batch` message: how many it
    /// carried.
    DoneMessage(usize, usize),
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    batches: VecDeque<Batch>,
    conns: Vec<TcpStream>,
}

pub struct FakeDaemon {
    pub port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl FakeDaemon {
    pub fn start() -> FakeDaemon {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn on(listener: TcpListener) -> FakeDaemon {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        st.0.lock().unwrap().conns.push(s.try_clone().unwrap());
                        let (st2, sp2) = (st.clone(), sp.clone());
                        let conn = n;
                        n += 1;
                        std::thread::spawn(move || serve(conn, s, st2, sp2));
                    }
                    Err(_) => {
                        let _ = crate::common::wait_readable(&listener, Duration::from_millis(20));
                    }
                }
            }
        });
        FakeDaemon { port, state, stop }
    }

    /// Hands out this batch on the next `recv`.
    pub fn push_batch(&self, b: Batch) {
        self.state.0.lock().unwrap().batches.push_back(b);
        self.state.1.notify_all();
    }

    /// Drops every current connection (as a daemon crash would).
    pub fn kill_connections(&self) {
        let mut s = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        for c in s.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.state.0.lock().unwrap().events.clone()
    }

    /// Waits until `pred` holds on the events, or panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.0.lock().unwrap();
        loop {
            if pred(&s.events) {
                return s.events.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; events: {:#?}",
                s.events
            );
            s = self.state.1.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    pub fn dones(&self) -> Vec<Done> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Done(_, d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kill_connections();
        self.state.1.notify_all();
    }
}

pub fn wait_readable<T: std::os::fd::AsRawFd>(fd: &T, timeout: Duration) -> bool {
    coordinatool_preload::sys::poll_readable([fd.as_raw_fd()], timeout).unwrap()[0]
}

fn send(s: &mut TcpStream, id: u64, body: Reply) -> bool {
    let bytes = encode_frame(&ResponseFrame { id, body }).unwrap();
    s.write_all(&bytes).is_ok()
}

fn serve(
    conn: usize,
    mut s: TcpStream,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut fb = FrameBuffer::new();
    let mut pending_recv: Option<(u64, Instant, u64)> = None;
    let mut buf = [0u8; 65536];
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => fb.push(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        loop {
            let msg: Option<RequestFrame> = match fb.next_message() {
                Ok(m) => m,
                Err(_) => return,
            };
            let Some(RequestFrame { id, body }) = msg else {
                break;
            };
            let (lock, cv) = &*state;
            match body {
                Request::Ehlo(e) => {
                    lock.lock().unwrap().events.push(Event::Ehlo(conn, e));
                    cv.notify_all();
                    let ok = send(
                        &mut s,
                        id,
                        Reply::Ok(Response::Ehlo(EhloReply {
                            protocol_version: PROTOCOL_VERSION,
                            fsname: "testfs".into(),
                            server_version: "fake".into(),
                            running_kept: 0,
                        })),
                    );
                    if !ok {
                        return;
                    }
                }
                Request::Recv(r) => {
                    let wait = r.wait_ms.unwrap_or(u64::MAX / 2);
                    lock.lock().unwrap().events.push(Event::Recv(conn, r));
                    cv.notify_all();
                    pending_recv = Some((id, Instant::now(), wait));
                }
                Request::Done(d) => {
                    {
                        let mut st = lock.lock().unwrap();
                        st.events.push(Event::Done(conn, d));
                        st.events.push(Event::DoneMessage(conn, 1));
                    }
                    cv.notify_all();
                    if !send(&mut s, id, Reply::Ok(Response::Done)) {
                        return;
                    }
                }
                Request::DoneBatch(ds) => {
                    {
                        let mut st = lock.lock().unwrap();
                        let n = ds.len();
                        for d in ds {
                            st.events.push(Event::Done(conn, d));
                        }
                        st.events.push(Event::DoneMessage(conn, n));
                    }
                    cv.notify_all();
                    if !send(&mut s, id, Reply::Ok(Response::Done)) {
                        return;
                    }
                }
                other => panic!("fake daemon: unexpected request {other:?}"),
            }
        }
        if let Some((id, since, wait)) = pending_recv {
            let batch = state.0.lock().unwrap().batches.pop_front();
            let reply = match batch {
                Some(b) => Some(b),
                None if since.elapsed() >= Duration::from_millis(wait) => Some(Batch {
                    archive_id: 0,
                    flags: 0,
                    fsname: "testfs".into(),
                    items: vec![],
                }),
                None => None,
            };
            if let Some(b) = reply {
                pending_recv = None;
                if !send(&mut s, id, Reply::Ok(Response::Batch(b))) {
                    return;
                }
            }
        }
    }
}

pub fn item(action: u32, cookie: u64, oid: u32) -> WireItem {
    let fid = WireFid {
        seq: 0x200000401,
        oid,
        ver: 0,
    };
    WireItem::whole_file(action, fid, cookie, format!("data-{cookie}").into_bytes())
}

pub fn batch(archive_id: u32, items: Vec<WireItem>) -> Batch {
    Batch {
        archive_id,
        flags: 0,
        fsname: "testfs".into(),
        items,
    }
}

pub const T: Duration = Duration::from_secs(10);

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The built `libcoordinatool_preload.so`.
pub fn shim_path() -> PathBuf {
    let dir = profile_dir();
    for p in [
        dir.join("libcoordinatool_preload.so"),
        dir.join("deps/libcoordinatool_preload.so"),
    ] {
        if p.exists() {
            return p;
        }
    }
    panic!(
        "libcoordinatool_preload.so not found under {}",
        dir.display()
    );
}

fn gcc(args: &[&std::ffi::OsStr]) {
    let st = Command::new("gcc")
        .args(["-Wall", "-Werror", "-O0"])
        .args(args)
        .status()
        .expect("gcc must be installed");
    assert!(st.success(), "gcc {args:?} failed");
}

/// Builds the stub "real" library (SONAME liblustreapi.so.1) in `tmp/lib/`
/// and the copytool `tests/c/<name>.c` linked against it, as `tmp/<name>`.
/// Returns (the copytool, the library folder).
pub fn build_copytool(tmp: &Path, name: &str) -> (PathBuf, PathBuf) {
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let lib = tmp.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let so = lib.join("liblustreapi.so.1");
    gcc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-Wl,-soname,liblustreapi.so.1".as_ref(),
        "-o".as_ref(),
        so.as_os_str(),
        c.join("stub_lustreapi.c").as_os_str(),
    ]);
    std::os::unix::fs::symlink("liblustreapi.so.1", lib.join("liblustreapi.so")).unwrap();
    let exe = tmp.join(name);
    let ldir = format!("-L{}", lib.display());
    gcc(&[
        "-o".as_ref(),
        exe.as_os_str(),
        c.join(format!("{name}.c")).as_os_str(),
        ldir.as_ref(),
        "-llustreapi".as_ref(),
    ]);
    (exe, lib)
}

/// A child's stdout, line by line as it comes (read by a thread).
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

impl Lines {
    pub fn of(child: &mut Child) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits up to [`T`] for a line equal to `line`.
    pub fn wait_for(&mut self, line: &str) {
        let deadline = Instant::now() + T;
        while !self.seen.iter().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(e) => panic!(
                    "no {line:?} from the copytool ({e}); lines: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Once the child has exited: every line, joined.
    pub fn rest(mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.seen.extend(self.rx.try_iter());
        self.seen.join("\n")
    }
}

/// Builds `tests/c/<name>.c` in `tmp` and makes the command that runs it
/// under the shim: a mount `tmp/testfs` (its `.lustre/fid` made), the
/// config file `tmp/<name>.conf` holding `conf`, the daemon on `port`, as
/// `client_id`, stdout and stderr piped. The mount comes first in its
/// arguments.
pub fn shimmed_copytool(tmp: &Path, name: &str, conf: &str, port: u16, client_id: &str) -> Command {
    let mnt = tmp.join("testfs");
    std::fs::create_dir_all(mnt.join(".lustre/fid")).unwrap();
    let conf_path = tmp.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let (exe, lib) = build_copytool(tmp, name);
    let mut cmd = Command::new(exe);
    cmd.arg(&mnt)
        .env("LD_PRELOAD", shim_path())
        .env("LD_LIBRARY_PATH", &lib)
        .env("COORDINATOOL_CONF", &conf_path)
        .env("COORDINATOOL_HOST", "127.0.0.1")
        .env("COORDINATOOL_PORT", port.to_string())
        .env("COORDINATOOL_CLIENT_ID", client_id)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for the child, which must exit with 0; returns (its stdout lines
/// joined, its stderr).
pub fn finish_ok(child: Child, lines: Lines) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = lines.rest();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}
