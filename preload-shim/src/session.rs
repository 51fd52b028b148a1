//! The connection to coordinatoold and the one background thread that owns it.
//!
//! # Threads and hand-offs
//! - The **worker** thread (one per registered handle, named
//!   `coordinatool-preload`) owns the socket and a [`Tracker`] of every item
//!   the copytool was handed and has not been acknowledged as done. It sends
//!   `ehlo`, `recv`, `done`/`done_batch`, reads the answers, and reconnects with
//!   backoff. All process signals are blocked in it, so the copytool's signal
//!   handlers run on the copytool's own threads.
//! - **Batches** go from the worker to `llapi_hsm_copytool_recv` through a
//!   mutex-protected queue holding at most one encoded HAL (a new `recv` is
//!   sent only once the previous HAL was taken), mirrored by an eventfd that is
//!   readable exactly while a HAL is ready.
//! - **Completions** go from `llapi_hsm_action_end` (any thread, or a forked
//!   child) to the worker through a pipe of fixed 32-byte records (atomic,
//!   below `PIPE_BUF`): the caller never waits for the network.
//!
//! # Guarantees
//! - A completion is kept until the daemon acknowledges it; after a reconnect,
//!   `ehlo` lists every tracked item (running ones and completed-but-unacknowledged
//!   ones), then the unacknowledged completions are sent again.
//! - Memory is bounded: one ready HAL, and a tracker bounded by what the daemon
//!   hands out.

use crate::config::{ANSWER_SLACK, SessionConfig};
use crate::error::ShimError;
use crate::sys;
use coordinatool_protocol::{
    Done, Ehlo, PROTOCOL_VERSION, QueueItem, Recv, Reply, Request, Response, ResponseFrame, Role,
    WireFid, WireItem,
};
use lustre_bindings::action::HSMA_CANCEL;
use lustre_bindings::{ActionItem, ActionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What identifies a request: the cookie and the **original** dfid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `hai_cookie`.
    pub cookie: u64,
    /// `hai_dfid` as handed out.
    pub dfid: WireFid,
}

impl Key {
    /// The key of a wire item.
    pub fn of(item: &WireItem) -> Key {
        Key {
            cookie: item.cookie,
            dfid: item.dfid,
        }
    }
}

/// Size of one completion record.
pub const RECORD_LEN: usize = 32;
const REC_DONE: u32 = 1;

fn encode_record(kind: u32, key: Key, status: i32) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0..4].copy_from_slice(&kind.to_ne_bytes());
    r[4..8].copy_from_slice(&status.to_ne_bytes());
    r[8..16].copy_from_slice(&key.cookie.to_ne_bytes());
    r[16..24].copy_from_slice(&key.dfid.seq.to_ne_bytes());
    r[24..28].copy_from_slice(&key.dfid.oid.to_ne_bytes());
    r[28..32].copy_from_slice(&key.dfid.ver.to_ne_bytes());
    r
}

fn decode_record(r: &[u8]) -> (u32, Key, i32) {
    let u32_at = |o: usize| u32::from_ne_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&r[o..o + 8]);
        u64::from_ne_bytes(a)
    };
    let key = Key {
        cookie: u64_at(8),
        dfid: WireFid {
            seq: u64_at(16),
            oid: u32_at(24),
            ver: u32_at(28),
        },
    };
    (u32_at(0), key, u32_at(4) as i32)
}

/// Encodes a batch as the HAL the kernel would send, checking it fits `max`.
pub fn build_hal(list: &ActionList, max: usize) -> Result<Vec<u8>, ShimError> {
    let bytes = list.encode()?;
    if bytes.len() > max {
        return Err(ShimError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// Where a tracked item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Handed to the copytool, not ended.
    Running,
    /// Ended with `status`; its `done` is unsent (`inflight: None`) or sent as
    /// request `inflight` and not yet acknowledged.
    Ended {
        /// 0 or a positive errno.
        status: i32,
        /// Request id of the `done` carrying it.
        inflight: Option<u64>,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    item: WireItem,
    /// `hal_archive_id` of the batch it came in.
    archive_id: u32,
    /// `hal_flags` of the batch it came in.
    flags: u64,
    state: EntryState,
}

/// Every item received and not yet acknowledged as done, by key.
///
/// Besides the map of entries it keeps two indexes, so that every operation
/// of the worker's loop costs O(log n) per item it touches instead of a walk
/// of everything tracked (a batch can hold ~13 000 items):
/// - `unsent`: the keys in state `Ended { inflight: None }`;
/// - `inflight`: by request id, the keys whose `done` that request carries
///   (`Ended { inflight: Some(id) }`); an id is present only while it carries
///   at least one completion.
#[derive(Debug, Default)]
pub struct Tracker {
    map: BTreeMap<Key, Entry>,
    unsent: BTreeSet<Key>,
    inflight: HashMap<u64, Vec<Key>>,
}

impl Tracker {
    /// Records the items of a batch (with the batch's archive id and flags,
    /// announced again in `ehlo` after a reconnect); returns those to hand to
    /// the copytool. CANCEL items are delivered but not tracked (their key is
    /// the original request's); an item whose key is already tracked is not
    /// delivered twice.
    pub fn admit(&mut self, items: Vec<WireItem>, archive_id: u32, flags: u64) -> Vec<WireItem> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if item.action == HSMA_CANCEL {
                out.push(item);
                continue;
            }
            let key = Key::of(&item);
            match self.map.entry(key) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    log_warn!(
                        "coordinatoold sent cookie {:#x} fid {} again while it is still tracked here; not delivering it twice",
                        key.cookie,
                        key.dfid
                    );
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(Entry {
                        item: item.clone(),
                        archive_id,
                        flags,
                        state: EntryState::Running,
                    });
                    out.push(item);
                }
            }
        }
        out
    }

    /// Marks a running item ended. Unknown or already-ended keys are a no-op
    /// (a CANCEL and its action both ending): returns whether it was running.
    pub fn end(&mut self, key: Key, status: i32) -> bool {
        match self.map.get_mut(&key) {
            Some(e) if e.state == EntryState::Running => {
                e.state = EntryState::Ended {
                    status,
                    inflight: None,
                };
                self.unsent.insert(key);
                true
            }
            _ => false,
        }
    }

    /// Completions not yet sent, in key order.
    pub fn unsent(&self) -> Vec<Done> {
        self.unsent
            .iter()
            .filter_map(|k| match self.map.get(k).map(|e| e.state) {
                Some(EntryState::Ended {
                    status,
                    inflight: None,
                }) => Some(Done {
                    cookie: k.cookie,
                    dfid: k.dfid,
                    status,
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether some completion is not yet sent.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// How many completions are not yet sent.
    pub fn unsent_len(&self) -> usize {
        self.unsent.len()
    }

    /// Records that these completions went out as request `id`.
    pub fn mark_inflight(&mut self, dones: &[Done], id: u64) {
        for d in dones {
            let key = Key {
                cookie: d.cookie,
                dfid: d.dfid,
            };
            let Some(Entry {
                state: EntryState::Ended { inflight, .. },
                ..
            }) = self.map.get_mut(&key)
            else {
                continue;
            };
            match inflight.replace(id) {
                None => {
                    self.unsent.remove(&key);
                }
                Some(old) if old == id => continue,
                Some(old) => {
                    // Sent again under another id (not done by the worker):
                    // the old request no longer carries it.
                    if let Some(keys) = self.inflight.get_mut(&old) {
                        keys.retain(|k| *k != key);
                        if keys.is_empty() {
                            self.inflight.remove(&old);
                        }
                    }
                }
            }
            self.inflight.entry(id).or_default().push(key);
        }
    }

    /// Whether request `id` carries completions.
    pub fn is_inflight_id(&self, id: u64) -> bool {
        self.inflight.contains_key(&id)
    }

    /// Whether any completion awaits its acknowledgement.
    pub fn has_inflight(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// The daemon acknowledged request `id`: forget its completions.
    pub fn acked(&mut self, id: u64) -> usize {
        let Some(keys) = self.inflight.remove(&id) else {
            return 0;
        };
        let mut n = 0;
        for key in keys {
            if let Some(e) = self.map.get(&key)
                && matches!(e.state, EntryState::Ended { inflight: Some(i), .. } if i == id)
            {
                self.map.remove(&key);
                n += 1;
            }
        }
        n
    }

    /// After a disconnect: every sent-but-unacknowledged completion is unsent again.
    pub fn reset_inflight(&mut self) {
        for (_, keys) in self.inflight.drain() {
            for key in keys {
                if let Some(Entry {
                    state: EntryState::Ended { inflight, .. },
                    ..
                }) = self.map.get_mut(&key)
                {
                    *inflight = None;
                    self.unsent.insert(key);
                }
            }
        }
    }

    /// What `ehlo` announces as running: every tracked item, with the
    /// archive id and flags of the batch it came in.
    pub fn running_list(&self) -> Vec<QueueItem> {
        self.map
            .values()
            .map(|e| QueueItem {
                item: e.item.clone(),
                archive_id: e.archive_id,
                flags: e.flags,
            })
            .collect()
    }

    /// Number of tracked items.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// State of one key.
    pub fn state(&self, key: &Key) -> Option<EntryState> {
        self.map.get(key).map(|e| e.state)
    }
}

/// An encoded HAL ready for the copytool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyHal {
    /// The `hsm_action_list` bytes.
    pub bytes: Vec<u8>,
    /// Number of items.
    pub items: usize,
}

/// State shared between the worker, the copytool's threads and the exports.
#[derive(Debug)]
pub struct Shared {
    /// The settings.
    pub cfg: SessionConfig,
    stop: AtomicBool,
    ready: Mutex<VecDeque<ReadyHal>>,
    ready_fd: OwnedFd,
    /// Blocking recvs wait here (a semaphore eventfd: a token per HAL).
    wait_fd: OwnedFd,
    wake_fd: OwnedFd,
    comp_r: OwnedFd,
    comp_w: OwnedFd,
    pid: u32,
    first: Mutex<Option<Result<(), String>>>,
    first_cv: Condvar,
    connected: AtomicBool,
    connects: AtomicU64,
    tracked: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Whether the session is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The pid that started the session.
    pub fn owner_pid(&self) -> u32 {
        self.pid
    }

    /// Whether the worker is connected and past `ehlo`.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Successful handshakes so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    /// Items received and not yet acknowledged as done (running, or ended
    /// with the completion not yet acknowledged), as of the worker's last pass.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::SeqCst)
    }

    /// The fd that is readable exactly while a HAL is ready (for poll only).
    pub fn ready_fd(&self) -> RawFd {
        self.ready_fd.as_raw_fd()
    }

    fn post(&self, key: Key, status: i32) -> bool {
        let rec = encode_record(REC_DONE, key, status);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match sys::write_some(self.comp_w.as_raw_fd(), &rec) {
                Ok(RECORD_LEN) => return true,
                Ok(n) => {
                    log_error!("short write of a completion record ({n} of {RECORD_LEN} bytes)");
                    return false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.stopping() || Instant::now() >= deadline {
                        log_error!(
                            "completion of cookie {:#x} fid {} dropped: the completion pipe stayed full",
                            key.cookie,
                            key.dfid
                        );
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    log_error!("cannot queue a completion: {e}");
                    return false;
                }
            }
        }
    }

    /// Queues a completion for the daemon (0 or a positive errno). Returns at
    /// once; safe from any thread and from a forked child.
    pub fn post_done(&self, key: Key, status: i32) -> bool {
        log_debug!(
            "queueing done cookie={:#x} fid={} status={status}",
            key.cookie,
            key.dfid
        );
        self.post(key, status)
    }

    /// Wakes the worker (its own eventfd, apart from the completion pipe it
    /// does not watch while completions linger). Async-signal-safe.
    pub fn wake(&self) {
        // EAGAIN means the counter is already huge: the worker is woken anyway.
        let _ = sys::eventfd_add(&self.wake_fd, 1);
    }

    /// Takes the ready HAL: waits for one unless `nonblock` (then
    /// [`ShimError::Again`]); [`ShimError::Shutdown`] once stopping;
    /// [`ShimError::Interrupted`] when a signal handler installed without
    /// `SA_RESTART` ran while waiting (a handler with `SA_RESTART` has the
    /// wait go on), exactly as the real library's blocking `read`, so
    /// copytools that stop on a signal flag get back control.
    pub fn take(&self, nonblock: bool) -> Result<ReadyHal, ShimError> {
        loop {
            {
                let mut q = lock(&self.ready);
                if let Some(h) = q.pop_front() {
                    if q.is_empty() {
                        sys::eventfd_clear(&self.ready_fd);
                    }
                    drop(q);
                    // The worker sends the next recv now that the queue is empty.
                    self.wake();
                    return Ok(h);
                }
            }
            if self.stopping() {
                return Err(ShimError::Shutdown);
            }
            if nonblock {
                return Err(ShimError::Again);
            }
            // One blocking read, as the real library's read of the Lustre
            // pipe: the worker adds a token per HAL, and many on stop. A token
            // left by a HAL another thread took only costs a turn of the loop.
            match sys::eventfd_wait(&self.wait_fd) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    return Err(ShimError::Interrupted);
                }
                Err(source) => {
                    return Err(ShimError::Sys {
                        call: "read",
                        source,
                    });
                }
            }
        }
    }

    fn push_ready(&self, hal: ReadyHal) {
        let mut q = lock(&self.ready);
        q.push_back(hal);
        if q.len() == 1 {
            if let Err(e) = sys::eventfd_add(&self.ready_fd, 1) {
                log_error!("cannot signal the ready fd: {e}");
            }
        }
        drop(q);
        if let Err(e) = sys::eventfd_add(&self.wait_fd, 1) {
            log_error!("cannot wake a waiting recv: {e}");
        }
    }

    fn ready_is_empty(&self) -> bool {
        lock(&self.ready).is_empty()
    }

    fn set_first(&self, outcome: Result<(), String>) {
        let mut f = lock(&self.first);
        if f.is_none() {
            *f = Some(outcome);
            self.first_cv.notify_all();
        }
    }
}

/// Tokens added to the wait eventfd on stop: more than threads can wait.
const STOP_TOKENS: u64 = 1 << 40;

/// A started session: the shared state and the worker thread.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Session {
    /// Creates the fds and starts the worker, which connects in the background.
    pub fn start(cfg: SessionConfig) -> Result<Session, ShimError> {
        let ready_fd = sys::eventfd()?;
        let wait_fd = sys::eventfd_semaphore()?;
        let wake_fd = sys::eventfd()?;
        let (comp_r, comp_w) = sys::pipe()?;
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            ready: Mutex::new(VecDeque::new()),
            ready_fd,
            wait_fd,
            wake_fd,
            comp_r,
            comp_w,
            pid: sys::pid(),
            first: Mutex::new(None),
            first_cv: Condvar::new(),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            tracked: AtomicUsize::new(0),
        });
        let for_worker = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("coordinatool-preload".into())
            .spawn(move || {
                block_signals();
                let mut w = Worker {
                    shared: for_worker,
                    tracker: Tracker::default(),
                    partial: Vec::new(),
                };
                w.run();
            })
            .map_err(|source| ShimError::Sys {
                call: "pthread_create",
                source,
            })?;
        Ok(Session {
            shared,
            worker: Some(worker),
        })
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Waits (at most `timeout`) for the outcome of the first connection attempt.
    pub fn wait_first_attempt(&self, timeout: Duration) -> Option<Result<(), String>> {
        let deadline = Instant::now() + timeout;
        let mut f = lock(&self.shared.first);
        loop {
            if let Some(outcome) = f.as_ref() {
                return Some(outcome.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            f = self
                .shared
                .first_cv
                .wait_timeout(f, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the worker: it flushes pending completions (for up to 2 s if
    /// connected) and closes the connection. Waits up to `timeout` for it,
    /// then lets it finish on its own. In a forked child (which has no
    /// worker) nothing is waited for.
    pub fn stop(&mut self, timeout: Duration) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if sys::pid() != self.shared.pid {
            // A forked child: the worker thread does not exist here (never
            // touch it), and the fds are shared with the parent, whose
            // session goes on: wake nothing there.
            if let Some(worker) = self.worker.take() {
                std::mem::forget(worker);
            }
            return;
        }
        self.shared.wake();
        // Wake copytool threads blocked in recv or polling the ready fd
        // (they then see the stop): a token for every possible waiter.
        let _ = sys::eventfd_add(&self.shared.ready_fd, 1);
        let _ = sys::eventfd_add(&self.shared.wait_fd, STOP_TOKENS);
        let Some(worker) = self.worker.take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        while !worker.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if worker.is_finished() {
            if worker.join().is_err() {
                log_error!("the shim's background thread panicked");
            }
        } else {
            log_warn!(
                "the shim's background thread did not stop within {timeout:?}; leaving it to finish"
            );
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Blocks asynchronous signals in the calling (worker) thread so the host's
/// handlers run on its own threads.
fn block_signals() {
    // SAFETY: sigset_t is plain data; sigfillset initialises it fully.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe { libc::sigfillset(&mut set) };
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
    ] {
        // SAFETY: set is a valid, initialised sigset_t.
        unsafe { libc::sigdelset(&mut set, sig) };
    }
    // SAFETY: set is valid; the old mask is not wanted (NULL is allowed).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        log_warn!("cannot block signals in the shim's thread (error {rc})");
    }
}

/// Unsent completions that go out even while a batch is in flight.
const DONE_BATCH_EAGER: usize = 1024;

/// How long completions may wait in the pipe while a batch is in flight.
const COMPLETION_HOLD: Duration = Duration::from_millis(2);

/// How long the first unsent completion may wait for others before a batch
/// goes out (unless a recv, a stop or [`DONE_BATCH_EAGER`] sends it sooner).
/// The copytool has already reported the end to Lustre; this only delays the
/// daemon's bookkeeping, and turns one message per few items into one per
/// many (about a quarter of the shim's and the daemon's CPU per item went to
/// those messages, see docs/performance.md).
pub const DONE_LINGER: Duration = Duration::from_millis(5);

/// Whether the unsent completions (`unsent` of them, the oldest waiting for
/// `waited`) go out now. Completions go out in batches: one batch in flight
/// at a time (a second one once [`DONE_BATCH_EAGER`] wait), and a batch waits
/// up to [`DONE_LINGER`] for more completions, unless `now_anyway` (a recv
/// goes out now, or the session stops).
fn send_dones_now(
    unsent: usize,
    inflight: bool,
    waited: Option<Duration>,
    now_anyway: bool,
) -> bool {
    if unsent == 0 {
        return false;
    }
    if unsent >= DONE_BATCH_EAGER {
        return true;
    }
    !inflight && (now_anyway || waited.is_some_and(|w| w >= DONE_LINGER))
}

struct Worker {
    shared: Arc<Shared>,
    tracker: Tracker,
    partial: Vec<u8>,
}

impl Worker {
    fn run(&mut self) {
        let addr = self.shared.cfg.addr();
        let first = self.shared.cfg.first_backoff;
        let max = self.shared.cfg.max_backoff;
        let mut backoff = first;
        let mut failures: u64 = 0;
        let mut last_log: Option<Instant> = None;
        loop {
            self.drain();
            if self.shared.stopping() {
                break;
            }
            let started = Instant::now();
            match self.open() {
                Ok(mut conn) => {
                    if failures > 0 {
                        log_info!(
                            "connected to coordinatoold at {addr} after {failures} failed attempt(s)"
                        );
                    }
                    failures = 0;
                    last_log = None;
                    self.shared.set_first(Ok(()));
                    self.shared.connects.fetch_add(1, Ordering::SeqCst);
                    self.shared.connected.store(true, Ordering::SeqCst);
                    let res = self.serve(&mut conn);
                    self.shared.connected.store(false, Ordering::SeqCst);
                    self.tracker.reset_inflight();
                    match res {
                        Ok(()) => break,
                        Err(e) => {
                            log_warn!(
                                "connection to coordinatoold at {addr} lost: {e}; reconnecting ({} item(s) tracked)",
                                self.tracker.len()
                            );
                            if started.elapsed() > Duration::from_secs(10) {
                                backoff = first;
                            } else {
                                self.pause(backoff);
                                backoff = (backoff * 2).min(max);
                            }
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if last_log.is_none_or(|t: Instant| t.elapsed() >= max) {
                        log_warn!(
                            "coordinatoold at {addr} unreachable: {e}; retrying every {}s at most (attempt {failures}); the copytool keeps running",
                            max.as_secs_f32()
                        );
                        last_log = Some(Instant::now());
                    }
                    self.shared.set_first(Err(e.to_string()));
                    self.pause(backoff);
                    backoff = (backoff * 2).min(max);
                }
            }
        }
        self.drain();
        let left = self.tracker.len();
        if left > 0 {
            log_warn!(
                "stopping with {left} item(s) not acknowledged by coordinatoold; it hands them out again after its client grace period"
            );
        }
    }

    /// Waits `d`, draining completions and returning early when stopping.
    fn pause(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            self.drain();
            let now = Instant::now();
            if self.shared.stopping() || now >= deadline {
                return;
            }
            let _ = sys::poll_readable(
                [
                    self.shared.comp_r.as_raw_fd(),
                    self.shared.wake_fd.as_raw_fd(),
                ],
                deadline - now,
            );
            sys::eventfd_clear(&self.shared.wake_fd);
        }
    }

    /// Reads every queued completion record into the tracker.
    fn drain(&mut self) {
        self.drain_records();
        self.shared
            .tracked
            .store(self.tracker.len(), Ordering::SeqCst);
    }

    fn drain_records(&mut self) {
        let mut buf = [0u8; RECORD_LEN * 128];
        loop {
            match sys::read_some(self.shared.comp_r.as_raw_fd(), &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    let whole = self.partial.len() / RECORD_LEN * RECORD_LEN;
                    let records: Vec<u8> = self.partial.drain(..whole).collect();
                    for rec in records.chunks_exact(RECORD_LEN) {
                        let (kind, key, status) = decode_record(rec);
                        if kind != REC_DONE {
                            continue;
                        }
                        if self.tracker.end(key, status) {
                            log_debug!(
                                "done cookie={:#x} fid={} status={status}",
                                key.cookie,
                                key.dfid
                            );
                        } else {
                            log_debug!(
                                "completion for cookie {:#x} fid {} ignored: not running here (already ended, or a cancel)",
                                key.cookie,
                                key.dfid
                            );
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log_error!("reading the completion pipe failed: {e}");
                    return;
                }
            }
        }
    }

    fn open(&mut self) -> Result<crate::conn::Conn, ShimError> {
        let cfg = &self.shared.cfg;
        let mut conn = crate::conn::Conn::connect(&cfg.host, cfg.port, cfg.connect_timeout)?;
        let running = self.tracker.running_list();
        let announced = running.len();
        let reply = conn.hello(Ehlo {
            protocol_version: PROTOCOL_VERSION,
            client_id: cfg.client_id.clone(),
            role: Role::Agent,
            fsname: Some(cfg.fsname.clone()),
            archive_ids: cfg.archive_ids.clone(),
            running,
        })?;
        if reply.fsname != cfg.fsname {
            log_warn!(
                "coordinatoold serves filesystem {:?} but this copytool's mount is {:?}",
                reply.fsname,
                cfg.fsname
            );
        }
        log_info!(
            "connected to coordinatoold {} at {} as {:?} (archive ids {:?}; {} running item(s) announced, {} kept)",
            reply.server_version,
            conn.addr(),
            cfg.client_id,
            cfg.archive_ids,
            announced,
            reply.running_kept
        );
        Ok(conn)
    }

    fn serve(&mut self, conn: &mut crate::conn::Conn) -> Result<(), ShimError> {
        let answer_limit = Duration::from_millis(self.shared.cfg.recv_wait_ms) + ANSWER_SLACK;
        let mut recv_out: Option<u64> = None;
        let mut last_rx = Instant::now();
        let mut stop_deadline: Option<Instant> = None;
        // When the oldest unsent completion was first seen.
        let mut unsent_since: Option<Instant> = None;
        loop {
            self.drain();
            if !self.tracker.has_unsent() {
                unsent_since = None;
            } else if unsent_since.is_none() {
                unsent_since = Some(Instant::now());
            }
            let outstanding_before = recv_out.is_some() || self.tracker.has_inflight();
            let stopping = self.shared.stopping();
            let want_recv = !stopping && recv_out.is_none() && self.shared.ready_is_empty();
            if send_dones_now(
                self.tracker.unsent_len(),
                self.tracker.has_inflight(),
                unsent_since.map(|t| t.elapsed()),
                stopping || want_recv,
            ) {
                let unsent = self.tracker.unsent();
                let id = conn.next_id();
                self.tracker.mark_inflight(&unsent, id);
                unsent_since = None;
                let body = if unsent.len() == 1 {
                    Request::Done(unsent[0])
                } else {
                    Request::DoneBatch(unsent)
                };
                let sent = conn.send(body)?;
                debug_assert_eq!(sent, id);
                if !outstanding_before {
                    last_rx = Instant::now();
                }
            }
            if stopping {
                let dl =
                    *stop_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
                if !self.tracker.has_inflight() || Instant::now() >= dl {
                    return Ok(());
                }
            } else if want_recv {
                let cfg = &self.shared.cfg;
                let id = conn.send(Request::Recv(Recv {
                    max_archive: cfg.max_archive,
                    max_restore: cfg.max_restore,
                    max_remove: cfg.max_remove,
                    max_bytes: cfg.hal_size,
                    wait_ms: Some(cfg.recv_wait_ms),
                }))?;
                recv_out = Some(id);
                if !outstanding_before {
                    last_rx = Instant::now();
                }
            }
            let outstanding = recv_out.is_some() || self.tracker.has_inflight();
            if outstanding && last_rx.elapsed() > answer_limit {
                return Err(ShimError::Timeout {
                    addr: conn.addr().to_string(),
                    secs: answer_limit.as_secs(),
                });
            }
            // The completion pipe is watched only while nothing is unsent or
            // in flight: the first completion starts the linger, and the
            // ones that follow wait in the pipe (read at the next wake-up)
            // instead of waking this thread once each.
            let (wait, comp_fd) = if stopping {
                (Duration::from_millis(50), self.shared.comp_r.as_raw_fd())
            } else if self.tracker.has_inflight() {
                (COMPLETION_HOLD, -1)
            } else if let Some(t) = unsent_since {
                (DONE_LINGER.saturating_sub(t.elapsed()), -1)
            } else {
                (Duration::from_secs(1), self.shared.comp_r.as_raw_fd())
            };
            let [sock, woken, _] =
                sys::poll_readable([conn.fd(), self.shared.wake_fd.as_raw_fd(), comp_fd], wait)
                    .map_err(|source| ShimError::Sys {
                        call: "poll",
                        source,
                    })?;
            if woken {
                sys::eventfd_clear(&self.shared.wake_fd);
            }
            if sock {
                conn.fill()?;
                last_rx = Instant::now();
                while let Some(reply) = conn.next_reply()? {
                    self.on_reply(reply, &mut recv_out)?;
                }
                self.shared
                    .tracked
                    .store(self.tracker.len(), Ordering::SeqCst);
            }
        }
    }

    fn on_reply(
        &mut self,
        reply: ResponseFrame,
        recv_out: &mut Option<u64>,
    ) -> Result<(), ShimError> {
        if Some(reply.id) == *recv_out {
            *recv_out = None;
            return match reply.body {
                Reply::Ok(Response::Batch(b)) => {
                    self.on_batch(b);
                    Ok(())
                }
                Reply::Ok(other) => Err(ShimError::Unexpected {
                    op: "recv",
                    got: format!("{other:?}"),
                }),
                Reply::Err(reply) => Err(ShimError::Refused { op: "recv", reply }),
            };
        }
        if self.tracker.is_inflight_id(reply.id) {
            match reply.body {
                Reply::Ok(Response::Done) => {
                    let n = self.tracker.acked(reply.id);
                    log_debug!("{n} completion(s) acknowledged");
                }
                Reply::Ok(other) => {
                    return Err(ShimError::Unexpected {
                        op: "done",
                        got: format!("{other:?}"),
                    });
                }
                Reply::Err(e) => {
                    let n = self.tracker.acked(reply.id);
                    log_warn!(
                        "coordinatoold refused {n} completion(s): {e}; not sending them again"
                    );
                }
            }
            return Ok(());
        }
        log_debug!(
            "ignoring an answer to request {} (not outstanding)",
            reply.id
        );
        Ok(())
    }

    fn on_batch(&mut self, b: coordinatool_protocol::Batch) {
        if b.items.is_empty() {
            return; // the long poll ran out
        }
        let fresh = self.tracker.admit(b.items, b.archive_id, b.flags);
        if fresh.is_empty() {
            return;
        }
        let n = fresh.len();
        let fsname = if b.fsname.is_empty() {
            self.shared.cfg.fsname.clone()
        } else {
            b.fsname
        };
        let list = ActionList {
            flags: b.flags,
            archive_id: b.archive_id,
            fsname,
            items: fresh.iter().cloned().map(ActionItem::from).collect(),
        };
        match build_hal(&list, self.shared.cfg.hal_size as usize) {
            Ok(bytes) => {
                log_debug!(
                    "batch of {n} item(s) for archive {} ready ({} bytes)",
                    list.archive_id,
                    bytes.len()
                );
                self.shared.push_ready(ReadyHal { bytes, items: n });
            }
            Err(e) => {
                let status = -e.to_neg_errno();
                log_error!(
                    "cannot hand a batch of {n} item(s) to the copytool: {e}; reporting them failed (errno {status})"
                );
                for item in &fresh {
                    if item.action != HSMA_CANCEL {
                        self.tracker.end(Key::of(item), status);
                    }
                }
            }
        }
    }
}

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// An item with the given action, cookie and fid oid, no data.
    pub(crate) fn item(action: u32, cookie: u64, oid: u32) -> WireItem {
        item_data(action, cookie, oid, b"")
    }

    /// An item with data.
    pub(crate) fn item_data(action: u32, cookie: u64, oid: u32, data: &[u8]) -> WireItem {
        let fid = WireFid {
            seq: 0x200000401,
            oid,
            ver: 0,
        };
        WireItem::whole_file(action, fid, cookie, data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::item_data as item;
    use super::*;

    #[test]
    fn completions_linger_unless_a_recv_or_a_stop_sends_them() {
        let ms = Duration::from_millis;
        let linger = Some(DONE_LINGER);
        // Nothing to send.
        assert!(!send_dones_now(0, false, None, true));
        // One completion just ended: it waits for company...
        assert!(!send_dones_now(1, false, Some(ms(0)), false));
        assert!(!send_dones_now(40, false, Some(DONE_LINGER - ms(1)), false));
        // ...until the linger is over, or a recv or a stop goes out now.
        assert!(send_dones_now(1, false, linger, false));
        assert!(send_dones_now(1, false, Some(ms(0)), true));
        // One batch in flight at a time, unless very many wait.
        assert!(!send_dones_now(1, true, linger, true));
        assert!(!send_dones_now(DONE_BATCH_EAGER - 1, true, linger, true));
        assert!(send_dones_now(DONE_BATCH_EAGER, true, Some(ms(0)), false));
    }

    #[test]
    fn record_round_trip() {
        let key = Key::of(&item(20, 0xdead_beef_0001, 7, b""));
        let rec = encode_record(REC_DONE, key, -5);
        assert_eq!(decode_record(&rec), (REC_DONE, key, -5));
    }

    #[test]
    fn hal_from_batch_decodes_back_with_cancel_items() {
        let items = vec![
            item(20, 1, 1, b"some data"),
            item(23, 2, 2, b""),
            item(21, 3, 3, b"x\0y"),
        ];
        let list = ActionList {
            flags: 4,
            archive_id: 3,
            fsname: "testfs".into(),
            items: items.iter().cloned().map(ActionItem::from).collect(),
        };
        let bytes = build_hal(&list, 1 << 20).unwrap();
        let back = ActionList::decode(&bytes).unwrap();
        assert_eq!(back, list);
        let wire: Vec<WireItem> = back.items.iter().map(WireItem::from).collect();
        assert_eq!(wire, items);
        assert_eq!(back.items[1].action.as_u32(), HSMA_CANCEL);
        let err = build_hal(&list, bytes.len() - 1).unwrap_err();
        assert_eq!(err.to_neg_errno(), -libc::EMSGSIZE);
        let mut bad = list.clone();
        bad.fsname.clear();
        assert_eq!(
            build_hal(&bad, 1 << 20).unwrap_err().to_neg_errno(),
            -libc::EPROTO
        );
    }

    #[test]
    fn tracker_indexes_follow_every_transition() {
        let mut t = Tracker::default();
        let items: Vec<WireItem> = (0..6).map(|i| item(20, 100 + i, i as u32, b"")).collect();
        assert_eq!(t.admit(items.clone(), 1, 0).len(), 6);
        assert!(!t.has_unsent() && !t.has_inflight());
        for it in &items[..4] {
            assert!(t.end(Key::of(it), 0));
        }
        assert!(t.has_unsent());
        let first = t.unsent();
        assert_eq!(first.len(), 4);
        // Two requests carry two completions each.
        t.mark_inflight(&first[..2], 10);
        t.mark_inflight(&first[2..], 11);
        assert!(!t.has_unsent());
        assert!(t.is_inflight_id(10) && t.is_inflight_id(11) && !t.is_inflight_id(12));
        // One completion sent again under a third id leaves the first.
        t.mark_inflight(&first[..1], 12);
        assert_eq!(t.acked(10), 1);
        assert!(!t.is_inflight_id(10));
        assert_eq!(t.acked(10), 0);
        // Disconnect: what 11 and 12 carried is unsent again, exactly once.
        t.reset_inflight();
        assert!(!t.has_inflight());
        let again = t.unsent();
        assert_eq!(again.len(), 3);
        assert_eq!(t.acked(11), 0);
        assert_eq!(t.len(), 5);
        t.mark_inflight(&again, 13);
        assert!(t.unsent().is_empty());
        assert_eq!(t.acked(13), 3);
        assert!(!t.has_inflight() && !t.has_unsent());
        assert_eq!(t.len(), 2);
        assert_eq!(t.running_list().len(), 2);
    }

    #[test]
    fn tracker_finishes_a_large_batch_quickly() {
        // 13 000 items (a 1 MiB batch) ended, sent and acknowledged a few
        // at a time: each step touches only what it changes.
        let n = 13_000u64;
        let mut t = Tracker::default();
        let items: Vec<WireItem> = (0..n).map(|i| item(20, i + 1, i as u32, b"")).collect();
        let start = Instant::now();
        assert_eq!(t.admit(items.clone(), 1, 0).len(), n as usize);
        let mut id = 0;
        for chunk in items.chunks(3) {
            for it in chunk {
                assert!(t.end(Key::of(it), 0));
            }
            assert!(!t.has_inflight());
            let unsent = t.unsent();
            assert_eq!(unsent.len(), chunk.len());
            id += 1;
            t.mark_inflight(&unsent, id);
            assert!(t.is_inflight_id(id));
            assert_eq!(t.acked(id), chunk.len());
        }
        assert!(t.is_empty());
        // Quadratic handling took seconds here; linear takes milliseconds.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn tracker_lifecycle() {
        let mut t = Tracker::default();
        let a = item(20, 1, 1, b"");
        let b = item(21, 2, 2, b"");
        let cancel_a = item(23, 1, 1, b"");
        let got = t.admit(vec![a.clone(), b.clone()], 3, 4);
        assert_eq!(got.len(), 2);
        // A duplicate is not delivered; a cancel is delivered but not tracked.
        let got = t.admit(vec![a.clone(), cancel_a.clone()], 5, 0);
        assert_eq!(got, vec![cancel_a]);
        assert_eq!(t.len(), 2);
        assert!(t.end(Key::of(&a), 0));
        // Second end of the same key (cancel + action): no-op, never a crash.
        assert!(!t.end(Key::of(&a), 125));
        assert!(!t.end(Key::of(&item(20, 99, 9, b"")), 0));
        let unsent = t.unsent();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].status, 0);
        t.mark_inflight(&unsent, 7);
        assert!(t.is_inflight_id(7) && t.has_inflight());
        assert!(t.unsent().is_empty());
        // Disconnect: it becomes unsent again, and is still announced.
        t.reset_inflight();
        assert_eq!(t.unsent().len(), 1);
        assert_eq!(t.running_list().len(), 2);
        t.mark_inflight(&t.unsent(), 8);
        assert_eq!(t.acked(7), 0);
        assert_eq!(t.acked(8), 1);
        assert_eq!(t.state(&Key::of(&a)), None);
        assert_eq!(t.state(&Key::of(&b)), Some(EntryState::Running));
        // Announced with the archive id and flags of the batch it came in.
        assert_eq!(
            t.running_list(),
            vec![QueueItem {
                item: b,
                archive_id: 3,
                flags: 4
            }]
        );
    }
}
