//! The `lustre-simd` server: socket, connection threads, per-agent writer
//! threads, and the dispatcher thread driving [`sim::Sim`].
//!
//! Threads:
//! - one acceptor on `DIR/.lustre-sim/sim.sock`, one thread per connection;
//! - one dispatcher: wakes on events (new request, completion,
//!   registration, parameter change) or every second; runs housekeeping when
//!   `loop_period` elapsed and dispatches WAITING records;
//! - one saver: copies the state under the lock when it changed and writes
//!   it out without the lock (atomic rename), at most every 200 ms and at
//!   most ~10% of the time (the pause after a save is 10 times its cost);
//! - one writer per agent, so a stuck copytool cannot block the others;
//! - with `--trace`, one flusher for the trace file.

pub mod records;
pub mod sim;
pub mod trace;

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::SimError;
use crate::paths;
use crate::wire::{self, Reply, Request, Response};
use sim::{Control, Outgoing, Sim};

/// Current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct Config {
    /// The mount point.
    pub root: PathBuf,
    /// Filesystem name; `None` keeps the saved one (or `lustre`).
    pub fsname: Option<String>,
    /// Number of MDTs; `None` keeps the saved count (or 1).
    pub mdts: Option<u32>,
    /// Append one line per dispatched item to this file (`--trace`).
    pub trace: Option<PathBuf>,
}

struct Shared {
    root: PathBuf,
    sim: Mutex<Sim>,
    kick: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    writers: Mutex<Vec<JoinHandle<()>>>,
    save_lock: Mutex<()>,
    tracer: Option<Arc<trace::Tracer>>,
}

impl Shared {
    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kick(&self) {
        *self.kick.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Write a snapshot to `state.json` (temporary file, fsync, rename).
    fn save(&self, snap: &sim::Snapshot) -> Result<(), SimError> {
        let _g = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = paths::state_file(&self.root);
        let tmp = path.with_extension("json.tmp");
        let f =
            File::create(&tmp).map_err(|e| SimError::io(format!("create {}", tmp.display()), e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        snap.write_json(&mut w).map_err(|e| SimError::State {
            path: tmp.clone(),
            message: e.to_string(),
        })?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data())
            .map_err(|e| SimError::io(format!("write {}", tmp.display()), e))?;
        fs::rename(&tmp, &path)
            .map_err(|e| SimError::io(format!("rename to {}", path.display()), e))
    }

    fn save_now(&self) -> Result<(), SimError> {
        let snap = {
            let mut sim = self.sim();
            sim.dirty = false;
            sim.snapshot()
        };
        self.save(&snap)
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
    fsname: String,
    mdts: u32,
    root: PathBuf,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn validate_fsname(name: &str) -> Result<(), SimError> {
    if name.is_empty()
        || name.len() > 8
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(SimError::Config(format!(
            "fsname {name:?} must be 1 to 8 characters of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

impl Daemon {
    /// Prepare `root`, load or create the state, bind the socket and start
    /// the threads. Returns once the socket is listening.
    pub fn start(cfg: Config) -> Result<Daemon, SimError> {
        let root = cfg
            .root
            .canonicalize()
            .map_err(|e| SimError::io(format!("mount point {}", cfg.root.display()), e))?;
        if !root.is_dir() {
            return Err(SimError::Config(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        if let Some(n) = &cfg.fsname {
            validate_fsname(n)?;
        }
        if let Some(m) = cfg.mdts {
            if !(1..=16).contains(&m) {
                return Err(SimError::Config(format!(
                    "--mdts {m} must be within 1..=16"
                )));
            }
        }
        for d in [
            root.join(".lustre/fid"),
            paths::volatile_dir(&root),
            paths::agents_dir(&root),
        ] {
            fs::create_dir_all(&d)
                .map_err(|e| SimError::io(format!("create {}", d.display()), e))?;
        }
        let state = paths::state_file(&root);
        let now = now_ms();
        let sim = match fs::read(&state) {
            Ok(bytes) => {
                let sim =
                    Sim::load_json(&root, &bytes, now).map_err(|message| SimError::State {
                        path: state.clone(),
                        message,
                    })?;
                if let Some(n) = &cfg.fsname {
                    if *n != sim.fsname {
                        return Err(SimError::Config(format!(
                            "{} holds fsname {:?}, not {n:?}",
                            state.display(),
                            sim.fsname
                        )));
                    }
                }
                if let Some(m) = cfg.mdts {
                    if m as usize != sim.mdts.len() {
                        return Err(SimError::Config(format!(
                            "{} holds {} MDTs, not {m}",
                            state.display(),
                            sim.mdts.len()
                        )));
                    }
                }
                sim
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Sim::new(
                &root,
                cfg.fsname.as_deref().unwrap_or("lustre"),
                cfg.mdts.unwrap_or(1),
                now,
            ),
            Err(e) => return Err(SimError::io(format!("read {}", state.display()), e)),
        };
        let fsname = sim.fsname.clone();
        let mdts = sim.mdts.len() as u32;
        let tracer = cfg.trace.as_deref().map(trace::Tracer::open).transpose()?;
        let mut sim = sim;
        sim.tracer = tracer.clone();
        let fsfile = root.join(paths::STATE_DIR).join("fsname");
        fs::write(&fsfile, format!("{fsname}\n"))
            .map_err(|e| SimError::io(format!("write {}", fsfile.display()), e))?;

        let sock = paths::sock_path(&root);
        if UnixStream::connect(&sock).is_ok() {
            return Err(SimError::Config(format!(
                "a simulator already serves {}",
                root.display()
            )));
        }
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .map_err(|e| SimError::io(format!("bind {}", sock.display()), e))?;

        let shared = Arc::new(Shared {
            root: root.clone(),
            sim: Mutex::new(sim),
            kick: Mutex::new(true),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            writers: Mutex::new(Vec::new()),
            save_lock: Mutex::new(()),
            tracer,
        });
        shared.save_now()?;
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(shared, listener))
                .map_err(|e| SimError::io("spawn the acceptor", e))?;
        }
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dispatch".into())
                .spawn(move || dispatch_loop(shared))
                .map_err(|e| SimError::io("spawn the dispatcher", e))?;
        }
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("save".into())
                .spawn(move || save_loop(shared))
                .map_err(|e| SimError::io("spawn the saver", e))?;
        }
        tracing::info!(root = %root.display(), fsname, mdts, "simulator started");
        Ok(Daemon {
            shared,
            fsname,
            mdts,
            root,
        })
    }

    /// The filesystem name.
    pub fn fsname(&self) -> &str {
        &self.fsname
    }

    /// The number of MDTs.
    pub fn mdts(&self) -> u32 {
        self.mdts
    }

    /// The canonical mount root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stop: send KUC SHUTDOWN to every agent, let the writers drain (at
    /// most 2 s), save the state and remove the socket.
    pub fn shutdown(self) -> Result<(), SimError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.kick();
        {
            let mut sim = self.shared.sim();
            let frame = lustre_bindings::KucHeader::shutdown().encode().to_vec();
            for a in sim.agents.values() {
                let _ = a.tx.send(Outgoing {
                    frame: frame.clone(),
                    items: Vec::new(),
                });
            }
            sim.agents.clear();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let writers = std::mem::take(
            &mut *self
                .shared
                .writers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for w in writers {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let r = self.shared.save_now();
        if let Some(t) = &self.shared.tracer {
            t.flush();
        }
        let _ = fs::remove_file(paths::sock_path(&self.root));
        tracing::info!("simulator stopped");
        r
    }
}

fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let shared = shared.clone();
                if let Err(e) = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || serve_conn(shared, stream))
                {
                    tracing::error!(error = %e, "cannot spawn a connection thread");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn dispatch_loop(shared: Arc<Shared>) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        {
            let mut sim = shared.sim();
            let now = now_ms();
            sim.housekeeping(now, false);
            sim.dispatch(now);
        }
        let kick = shared.kick.lock().unwrap_or_else(|p| p.into_inner());
        let (mut kick, _) = shared
            .wake
            .wait_timeout_while(kick, Duration::from_secs(1), |k| !*k)
            .unwrap_or_else(|p| p.into_inner());
        *kick = false;
    }
}

/// Shortest pause between two saves.
const SAVE_MIN_PERIOD: Duration = Duration::from_millis(200);
/// Longest pause between two saves, whatever they cost.
const SAVE_MAX_PERIOD: Duration = Duration::from_secs(5);

fn save_loop(shared: Arc<Shared>) {
    let mut next = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if Instant::now() < next {
            continue;
        }
        let start = Instant::now();
        let snap = {
            let mut sim = shared.sim();
            if !sim.dirty {
                continue;
            }
            sim.dirty = false;
            sim.snapshot()
        };
        if let Err(e) = shared.save(&snap) {
            tracing::error!(error = %e, "cannot save the state");
        }
        drop(snap);
        let cost = start.elapsed();
        next = Instant::now() + (cost * 10).clamp(SAVE_MIN_PERIOD, SAVE_MAX_PERIOD);
    }
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    let ok = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        let n = now_ms() ^ u64::from(std::process::id()) << 32;
        b[..8].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn serve_conn(shared: Arc<Shared>, stream: UnixStream) {
    let mut agent: Option<u64> = None;
    // Answers are batched: flushed when no further request is buffered
    // (clients pipeline their calls).
    let mut out = std::io::BufWriter::with_capacity(64 << 10, &stream);
    let mut reader = match stream.try_clone() {
        Ok(s) => std::io::BufReader::with_capacity(64 << 10, s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot clone a connection");
            return;
        }
    };
    loop {
        let req: Request = match wire::read_frame(&mut reader, "request") {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "connection dropped");
                break;
            }
        };
        let resp: Response = match req {
            Request::Register {
                fifo,
                archives,
                pid,
            } => {
                if agent.is_some() {
                    Err(-libc::EEXIST)
                } else {
                    register(&shared, &fifo, archives, pid).map(|(id, uuid)| {
                        agent = Some(id);
                        Reply::Registered { uuid }
                    })
                }
            }
            Request::Unregister => {
                if let Some(id) = agent.take() {
                    shared.sim().remove_agent(id);
                    tracing::info!(agent = id, "agent unregistered");
                }
                Ok(Reply::Ok)
            }
            other => handle(&shared, other),
        };
        if let Err(e) = wire::write_frame(&mut out, "response", &resp) {
            tracing::debug!(error = %e, "cannot answer");
            break;
        }
        if reader.buffer().is_empty() {
            if let Err(e) = out.flush() {
                tracing::debug!(error = %e, "cannot answer");
                break;
            }
        }
    }
    if let Some(id) = agent {
        shared.sim().remove_agent(id);
        tracing::info!(agent = id, "agent connection closed: unregistered");
        shared.kick();
    }
}

fn register(
    shared: &Arc<Shared>,
    fifo: &Path,
    archives: Vec<u32>,
    pid: u32,
) -> Result<(u64, String), i32> {
    {
        let sim = shared.sim();
        if sim
            .mdts
            .iter()
            .any(|m| m.tun.hsm_control == Control::Stopped)
        {
            return Err(-libc::ENXIO);
        }
    }
    // Only FIFOs the fake library made in our agents/ folder.
    let dir = paths::agents_dir(&shared.root);
    if fifo.parent() != Some(dir.as_path()) {
        return Err(-libc::EINVAL);
    }
    let md = fs::symlink_metadata(fifo).map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    if !md.file_type().is_fifo() {
        return Err(-libc::EINVAL);
    }
    // Non-blocking open fails with ENXIO when no reader is there; then a
    // blocking open, which returns at once since a reader exists.
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut ids: Vec<u32> = if archives.contains(&0) {
        Vec::new()
    } else {
        archives
    };
    ids.sort_unstable();
    ids.dedup();
    let uuid = random_uuid();
    let (tx, rx) = channel();
    let id = shared.sim().add_agent(uuid.clone(), ids.clone(), tx);
    let handle = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("agent-{id}"))
            .spawn(move || writer_loop(shared, id, file, rx))
            .map_err(|_| -libc::ENOMEM)?
    };
    shared
        .writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(handle);
    tracing::info!(agent = id, pid, uuid, archives = ?ids, "agent registered");
    shared.kick();
    Ok((id, uuid))
}

fn writer_loop(shared: Arc<Shared>, id: u64, mut fifo: File, rx: Receiver<Outgoing>) {
    let mut failed = false;
    for msg in rx {
        if failed {
            shared.sim().delivery_failed(id, &msg.items);
            continue;
        }
        if let Err(e) = fifo.write_all(&msg.frame) {
            tracing::warn!(agent = id, error = %e, "delivery failed: unregistering the agent");
            failed = true;
            shared.sim().delivery_failed(id, &msg.items);
            shared.kick();
        }
    }
}

fn handle(shared: &Shared, req: Request) -> Response {
    let now = now_ms();
    // Only what can free a slot, add work or change tunables wakes the
    // dispatcher (lookups, COPY_START and progress cannot).
    let kick = matches!(
        req,
        Request::HsmRequest { .. }
            | Request::CopyEnd(_)
            | Request::SetParam { .. }
            | Request::StateSet { .. }
            | Request::Release { .. }
            | Request::Import { .. }
    );
    let mut sim = shared.sim();
    let resp = match req {
        Request::Hello => Ok(Reply::Hello {
            fsname: sim.fsname.clone(),
            mdts: sim.mdts.len() as u32,
        }),
        Request::PathToFid { rel } => sim.path_to_fid(&rel).map(Reply::Fid),
        Request::FidToPath { fid } => sim.fid_to_path(fid).map(Reply::Path),
        Request::FidToMdt { fid } => sim
            .mdt_of(fid)
            .map(|m| Reply::Index(m as i32))
            .ok_or(-libc::ENOENT),
        Request::StateGet { fid } => sim.state_get(fid).map(Reply::State),
        Request::StateSet {
            fid,
            setmask,
            clearmask,
            archive_id,
        } => sim
            .state_set(fid, setmask, clearmask, archive_id)
            .map(|_| Reply::Ok),
        Request::HsmRequest {
            action,
            archive_id,
            flags,
            items,
            data,
        } => sim
            .hsm_request(action, archive_id, flags, &items, &data, now)
            .map(|_| Reply::Ok),
        Request::Release { fid } => sim.release(fid).map(|_| Reply::Ok),
        Request::CopyStart {
            cookie,
            fid,
            action,
        } => sim
            .copy_start(cookie, fid, action, now)
            .map(|(source, volatile)| Reply::CopyStarted { source, volatile }),
        Request::Progress(p) => sim.progress(p, false, now).map(|_| Reply::Ok),
        Request::CopyEnd(p) => sim.progress(p, true, now).map(|_| Reply::Ok),
        Request::GetParam { pattern } => sim.get_params(&pattern).map(Reply::Params),
        Request::SetParam { name, value } => {
            let r = sim.set_param(&name, &value, now).map(|_| Reply::Ok);
            if r.is_ok() {
                // New tunables (e.g. a shorter loop_period) apply now.
                sim.housekeeping(now, true);
            }
            r
        }
        Request::Import {
            rel,
            archive_id,
            size,
            mode,
            mtime,
        } => sim
            .import(&rel, archive_id, size, mode, mtime)
            .map(Reply::Fid),
        Request::PathsToFids { rels } => Ok(Reply::Fids(
            rels.iter().map(|r| sim.path_to_fid(r)).collect(),
        )),
        Request::Register { .. } | Request::Unregister => Err(-libc::EINVAL),
    };
    let kick = kick && sim.dispatch_pending();
    drop(sim);
    if kick {
        shared.kick();
    }
    resp
}
