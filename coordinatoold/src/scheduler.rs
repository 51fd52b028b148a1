//! The pure scheduler: every request the daemon holds, every agent, the
//! queues, and the hand-out policy. No I/O, no clock reads, no tokio: the
//! current time (`now`, milliseconds since the Unix epoch) is passed in.
//!
//! Every state change is reported through an outbox the driver drains after
//! each call ([`Scheduler::take_effects`]): the keys whose stored record
//! changed ([`Effects::dirty`], to write or delete in one store batch), the
//! batches to send to agents, and the reports to make to Lustre. The driver
//! persists first and only then sends, so an assignment is durable before an
//! agent sees it.
//!
//! # Queues
//! Waiting requests sit in FIFO queues keyed by (action, archive id, flags),
//! so a `recv` only looks at the heads of a few queues, never at every
//! waiting request. Removing a waiting request (cancel, `done`) leaves a stale
//! entry in its queue that is skipped (and dropped) when it reaches the head:
//! every enqueue gets a fresh sequence number and an entry is live only if the
//! request still waits with that number.
//!
//! # Expiry of waiting requests
//! With [`SchedConfig::waiting_expiry_ms`] set, a request still waiting (never
//! handed out, or requeued) that long after the daemon first received it is
//! dropped by [`Scheduler::tick`] and reported to Lustre as failed with
//! `ETIMEDOUT`, because the MDT would otherwise cancel it silently. Deadlines
//! sit in a min-heap with the same stale-entry rule as the queues.
//!
//! # Reconnect affinity
//! An agent that reconnects within its grace period but does not announce
//! some requests it held (typically: its mover process was restarted and
//! lost its memory) gets them back: they wait in a queue *reserved* for that
//! agent, served to it before the global queues (within its limits, byte
//! budget and archive ids), and never to anyone else. The reservation ends,
//! and the requests go to the global queues, when the agent disconnects again
//! and its grace period ends, or [`SchedConfig::grace_ms`] after the
//! reconnect if it has not taken them by then. Reserved requests are waiting
//! requests (counted as waiting, subject to expiry, stored without an agent);
//! the reservation itself is not persisted, so after a daemon restart they
//! are ordinary waiting requests.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU32, NonZeroU64};

use crate::fasthash::{FastMap, FastSet};
use coordinatool_protocol::{
    ActionCounts, AgentInfo, Batch, QueueItem, RequestInfo, RequestState, WireFid, WireItem,
};
use lustre_bindings::HsmAction;
use lustre_bindings::hal::{HAI_HEADER_LEN, HAL_MAXSIZE, align8, header_len};
use serde::{Deserialize, Serialize};

/// Requests one batch takes from the queues, at most (besides the `recv`'s
/// own limits and byte budget). Handing out costs about a microsecond per
/// item, so this bounds the time of one `recv` to well under a millisecond
/// even when the agent asks for everything (the shim's default: a 1 MiB HAL
/// holds ~13 000 items); the agent asks again as soon as it has room.
pub const MAX_BATCH_ITEMS: usize = 512;

/// The three action types the scheduler queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// ARCHIVE.
    Archive = 0,
    /// RESTORE.
    Restore = 1,
    /// REMOVE.
    Remove = 2,
}

impl Kind {
    /// All kinds, in the index order of the protocol's `[archive, restore, remove]` arrays.
    pub const ALL: [Kind; 3] = [Kind::Archive, Kind::Restore, Kind::Remove];
    /// The default hand-out order: restores unblock users waiting on a read.
    pub const DEFAULT_ORDER: [Kind; 3] = [Kind::Restore, Kind::Remove, Kind::Archive];

    /// From a `hai_action` value.
    pub fn from_action(action: u32) -> Option<Kind> {
        match HsmAction::from_u32(action) {
            HsmAction::Archive => Some(Kind::Archive),
            HsmAction::Restore => Some(Kind::Restore),
            HsmAction::Remove => Some(Kind::Remove),
            _ => None,
        }
    }

    /// Index in the protocol arrays.
    pub fn idx(self) -> usize {
        self as usize
    }

    /// Upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Archive => "ARCHIVE",
            Kind::Restore => "RESTORE",
            Kind::Remove => "REMOVE",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "archive" => Ok(Kind::Archive),
            "restore" => Ok(Kind::Restore),
            "remove" => Ok(Kind::Remove),
            other => Err(format!(
                "unknown action {other:?} (expected archive, restore or remove)"
            )),
        }
    }
}

/// Identity of a request: cookies are unique per MDT only, so the dfid joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqKey {
    /// `hai_cookie`.
    pub cookie: u64,
    /// `hai_dfid`.
    pub dfid: WireFid,
}

impl ReqKey {
    /// The key of an item.
    pub fn of(item: &WireItem) -> ReqKey {
        ReqKey {
            cookie: item.cookie,
            dfid: item.dfid,
        }
    }
}

impl std::fmt::Display for ReqKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}/{}", self.cookie, self.dfid)
    }
}

/// One request as held in memory and in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The item, data included.
    pub item: WireItem,
    /// `hal_archive_id` of the HAL it came in.
    pub archive_id: u32,
    /// `hal_flags` of the HAL it came in.
    pub flags: u64,
    /// When the daemon first received it (ms since the epoch).
    pub received_at_ms: u64,
    /// The agent it is assigned to, if any.
    #[serde(default)]
    pub agent: Option<String>,
    /// Lustre asked to cancel it while it was running.
    #[serde(default)]
    pub cancel_pending: bool,
}

impl From<Box<Record>> for Record {
    fn from(rec: Box<Record>) -> Record {
        *rec
    }
}

impl Record {
    /// Its key.
    pub fn key(&self) -> ReqKey {
        ReqKey::of(&self.item)
    }
}

/// Bytes an item takes in a HAL.
pub fn item_hal_len(item: &WireItem) -> usize {
    align8(HAI_HEADER_LEN + item.data.len())
}

/// Scheduler errors (answered to the peer with the errno).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// Another connection uses this agent id.
    #[error("agent id {id:?} is already used by another connection")]
    AgentIdInUse {
        /// The id.
        id: String,
    },
    /// The agent has no connection (a `recv` from an unknown connection).
    #[error("agent {id:?} is not connected")]
    NotConnected {
        /// The id.
        id: String,
    },
    /// A `recv` is already outstanding for this agent.
    #[error("agent {id:?} already has a recv outstanding")]
    RecvPending {
        /// The id.
        id: String,
    },
}

impl SchedError {
    /// The errno to answer with.
    pub fn errno(&self) -> i32 {
        match self {
            SchedError::AgentIdInUse { .. } => libc_errno::EEXIST,
            SchedError::NotConnected { .. } => libc_errno::ENOTCONN,
            SchedError::RecvPending { .. } => libc_errno::EINVAL,
        }
    }
}

/// The errno values the daemon answers with (Linux numbering), spelt out so
/// this crate needs no libc.
pub mod libc_errno {
    /// ENOENT.
    pub const ENOENT: i32 = 2;
    /// E2BIG.
    pub const E2BIG: i32 = 7;
    /// EEXIST.
    pub const EEXIST: i32 = 17;
    /// EINVAL.
    pub const EINVAL: i32 = 22;
    /// EPERM.
    pub const EPERM: i32 = 1;
    /// EPROTO.
    pub const EPROTO: i32 = 71;
    /// ENOTCONN.
    pub const ENOTCONN: i32 = 107;
    /// ESHUTDOWN.
    pub const ESHUTDOWN: i32 = 108;
    /// ETIMEDOUT.
    pub const ETIMEDOUT: i32 = 110;
    /// ECANCELED.
    pub const ECANCELED: i32 = 125;
    /// EIO.
    pub const EIO: i32 = 5;
}

/// Something to report to Lustre for an item: `action_begin(is_error)` then
/// `action_end(errval)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LustreReport {
    /// The item (its cookie and fids identify the request).
    pub item: WireItem,
    /// Positive errno.
    pub errval: i32,
}

/// A waiting request dropped by [`Scheduler::tick`] because it waited too
/// long; it is also reported to Lustre (`ETIMEDOUT`) through the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its key (cookie and dfid).
    pub key: ReqKey,
    /// `hai_fid`.
    pub fid: WireFid,
    /// Its action.
    pub kind: Kind,
    /// Its archive id.
    pub archive_id: u32,
    /// Time since the daemon first received it.
    pub age_ms: u64,
}

/// A batch to send to the agent whose `recv` carried `token`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The token of the `recv`.
    pub token: u64,
    /// The agent.
    pub agent: String,
    /// The batch (empty when the `recv`'s wait ran out).
    pub batch: Batch,
}

/// What the driver must do after a scheduler call.
#[derive(Debug, Default)]
pub struct Effects {
    /// Keys whose stored record must be rewritten (if the request still
    /// exists) or deleted (if it does not).
    pub dirty: Vec<ReqKey>,
    /// Whether some dirty key is a new or updated record (not only deletions).
    pub wrote: bool,
    /// Batches for waiting agents (after the store is flushed).
    pub deliveries: Vec<Delivery>,
    /// Reports to Lustre.
    pub reports: Vec<LustreReport>,
}

impl Effects {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.deliveries.is_empty() && self.reports.is_empty()
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// Filesystem name put in every batch.
    pub fsname: String,
    /// Hand-out order of the action types.
    pub order: [Kind; 3],
    /// How long a disconnected agent keeps its requests.
    pub grace_ms: u64,
    /// Server-side cap on one batch's encoded HAL size.
    pub max_hal_bytes: u32,
    /// Archive ids the daemon registered for with Lustre (empty: all).
    /// `queue` items for other archive ids are rejected.
    pub archive_ids: Vec<u32>,
    /// A request still waiting this long after the daemon received it is
    /// dropped and reported to Lustre as failed (`None`: never). The daemon
    /// sets 90% of `mdt_request_timeout`.
    pub waiting_expiry_ms: Option<u64>,
}

impl SchedConfig {
    /// The expiry delay for an MDT `active_request_timeout` of `secs`
    /// seconds: 90% of it (`None` for 0, disabled).
    pub fn expiry_for_mdt_timeout(secs: u64) -> Option<u64> {
        (secs > 0).then(|| secs.saturating_mul(900))
    }
}

/// The limits of a `recv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvSpec {
    /// Per kind (archive, restore, remove); `None` is unlimited.
    pub limits: [Option<u32>; 3],
    /// Byte budget of the batch, as an encoded HAL.
    pub max_bytes: u32,
    /// Answer with an empty batch at this time (ms since epoch), if set.
    pub deadline: Option<u64>,
}

#[derive(Debug, Clone)]
struct Waiting {
    token: u64,
    spec: RecvSpec,
}

#[derive(Debug, Clone)]
struct Cancel {
    item: WireItem,
    archive_id: u32,
    flags: u64,
}

#[derive(Debug)]
struct Agent {
    connected: bool,
    peer: Option<String>,
    archive_ids: Vec<u32>,
    running: FastSet<ReqKey>,
    running_counts: [u64; 3],
    done_counts: [u64; 3],
    limits: [Option<u32>; 3],
    max_bytes: u32,
    waiting: Option<Waiting>,
    disconnected_at: Option<u64>,
    last_served: u64,
    cancels: VecDeque<Cancel>,
    /// Waiting requests reserved for this agent (reconnect affinity), with
    /// a (seq, key) stale-entry rule like the global queues'.
    reserved: VecDeque<(u64, ReqKey)>,
    /// When the reservation ends (set while `reserved` may be non-empty).
    reserved_until: Option<u64>,
}

impl Agent {
    fn new(now: u64, connected: bool) -> Agent {
        Agent {
            connected,
            peer: None,
            archive_ids: Vec::new(),
            running: FastSet::default(),
            running_counts: [0; 3],
            done_counts: [0; 3],
            limits: [None; 3],
            max_bytes: 0,
            waiting: None,
            disconnected_at: if connected { None } else { Some(now) },
            last_served: 0,
            cancels: VecDeque::new(),
            reserved: VecDeque::new(),
            reserved_until: None,
        }
    }

    fn accepts(&self, archive_id: u32) -> bool {
        self.archive_ids.is_empty() || self.archive_ids.contains(&archive_id)
    }
}

/// An agent id, interned ([`Names`]): 4 bytes in each entry instead of a
/// `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AgentId(NonZeroU32);

/// Agent ids seen so far (never forgotten: there are few).
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<String, AgentId>,
    names: Vec<String>,
}

impl Names {
    fn intern(&mut self, name: &str) -> AgentId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let n = u32::try_from(self.names.len() + 1)
            .ok()
            .and_then(NonZeroU32::new)
            .expect("fewer than 2^32 agent ids");
        let id = AgentId(n);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    fn get(&self, id: AgentId) -> &str {
        &self.names[id.0.get() as usize - 1]
    }
}

/// One request as held in memory: the fields of a [`Record`], compact
/// (`hai_data` boxed only when non-empty, the agent interned). 120
/// bytes, in a dense slab ([`Requests`]).
#[derive(Debug)]
struct Entry {
    key: ReqKey,
    fid: WireFid,
    extent_offset: u64,
    extent_length: u64,
    gid: u64,
    received_at_ms: u64,
    flags: u64,
    /// `Some(seq)` while waiting in a queue.
    wait_seq: Option<NonZeroU64>,
    data: Option<Box<[u8]>>,
    action: u32,
    archive_id: u32,
    agent: Option<AgentId>,
    kind: Kind,
    cancel_pending: bool,
}

impl Entry {
    fn new(rec: Record, kind: Kind, agent: Option<AgentId>) -> Entry {
        let Record {
            item,
            archive_id,
            flags,
            received_at_ms,
            agent: _,
            cancel_pending,
        } = rec;
        Entry {
            key: ReqKey {
                cookie: item.cookie,
                dfid: item.dfid,
            },
            fid: item.fid,
            extent_offset: item.extent_offset,
            extent_length: item.extent_length,
            gid: item.gid,
            received_at_ms,
            flags,
            wait_seq: None,
            data: (!item.data.is_empty()).then(|| item.data.into_boxed_slice()),
            action: item.action,
            archive_id,
            agent,
            kind,
            cancel_pending,
        }
    }

    fn data(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    /// The item, as handed out.
    fn item(&self) -> WireItem {
        WireItem {
            action: self.action,
            fid: self.fid,
            dfid: self.key.dfid,
            extent_offset: self.extent_offset,
            extent_length: self.extent_length,
            cookie: self.key.cookie,
            gid: self.gid,
            data: self.data().to_vec(),
        }
    }

    /// Bytes the item takes in a HAL.
    fn hal_len(&self) -> usize {
        align8(HAI_HEADER_LEN + self.data().len())
    }
}

/// Every request held: a dense slab of entries and an index by key.
/// Removal swaps the last entry into the hole.
///
/// The index is keyed by cookie alone (`HashMap<u64, u32>`: a 16-byte slot,
/// against 32 for the whole 24-byte key; hashbrown sizes tables to a power of
/// two with a 7/8 load factor, so at 1M requests that is 2^21 slots, ≈ 35 MB
/// instead of ≈ 69 MB). Cookies are unique per MDT only, so a second request
/// with the cookie of a held one but another dfid goes to `clash` (by full
/// key); `clash` only ever holds keys whose cookie is also in `by_cookie`.
#[derive(Debug, Default)]
struct Requests {
    slab: Vec<Entry>,
    by_cookie: FastMap<u64, u32>,
    clash: BTreeMap<ReqKey, u32>,
}

/// Every key with cookie `cookie`, for a range of `Requests::clash`.
fn cookie_range(cookie: u64) -> std::ops::RangeInclusive<ReqKey> {
    let fid = |n32, n64| WireFid {
        seq: n64,
        oid: n32,
        ver: n32,
    };
    ReqKey {
        cookie,
        dfid: fid(0, 0),
    }..=ReqKey {
        cookie,
        dfid: fid(u32::MAX, u64::MAX),
    }
}

impl Requests {
    fn reserve(&mut self, additional: usize) {
        self.slab.reserve(additional);
        self.by_cookie.reserve(additional);
    }

    fn len(&self) -> usize {
        self.slab.len()
    }

    fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The slab index of `key`.
    fn index_of(&self, key: &ReqKey) -> Option<u32> {
        let &i = self.by_cookie.get(&key.cookie)?;
        if self.slab[i as usize].key == *key {
            Some(i)
        } else {
            self.clash.get(key).copied()
        }
    }

    fn get(&self, key: &ReqKey) -> Option<&Entry> {
        self.index_of(key).map(|i| &self.slab[i as usize])
    }

    fn get_mut(&mut self, key: &ReqKey) -> Option<&mut Entry> {
        self.index_of(key).map(|i| &mut self.slab[i as usize])
    }

    /// Adds the entry `make()` unless its key is present (one hash of the
    /// cookie: this is the replay's hot path); returns its slab index, or
    /// `None` for a duplicate.
    fn insert_new(&mut self, key: ReqKey, make: impl FnOnce() -> Entry) -> Option<u32> {
        let i = u32::try_from(self.slab.len()).expect("fewer than 2^32 requests");
        match self.by_cookie.entry(key.cookie) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                if self.slab[*o.get() as usize].key == key {
                    return None;
                }
                match self.clash.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => return None,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
            }
        }
        self.slab.push(make());
        Some(i)
    }

    fn remove(&mut self, key: &ReqKey) -> Option<Entry> {
        let i = self.index_of(key)?;
        if self.by_cookie.get(&key.cookie) == Some(&i) {
            // Another request with this cookie, if any, becomes the primary.
            match self.clash.range(cookie_range(key.cookie)).next() {
                Some((&other, &j)) => {
                    self.clash.remove(&other);
                    self.by_cookie.insert(key.cookie, j);
                }
                None => {
                    self.by_cookie.remove(&key.cookie);
                }
            }
        } else {
            self.clash.remove(key);
        }
        let e = self.slab.swap_remove(i as usize);
        if let Some(moved) = self.slab.get(i as usize) {
            // It was at the old last index, `len`.
            let (from, moved) = (self.slab.len() as u32, moved.key);
            match self.by_cookie.get_mut(&moved.cookie) {
                Some(p) if *p == from => *p = i,
                _ => {
                    self.clash.insert(moved, i);
                }
            }
        }
        Some(e)
    }

    /// The key of the request with cookie `cookie` waiting with queue seq
    /// `seq` (seqs are never reused), if it still waits with it.
    fn waiting_key(&self, cookie: u64, seq: u64) -> Option<ReqKey> {
        let waits = |e: &&Entry| e.wait_seq.map(NonZeroU64::get) == Some(seq);
        let &i = self.by_cookie.get(&cookie)?;
        let primary = &self.slab[i as usize];
        if waits(&primary) {
            return Some(primary.key);
        }
        self.clash
            .range(cookie_range(cookie))
            .map(|(_, &j)| &self.slab[j as usize])
            .find(waits)
            .map(|e| e.key)
    }

    fn values(&self) -> std::slice::Iter<'_, Entry> {
        self.slab.iter()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QueueKey {
    kind: Kind,
    archive_id: u32,
    flags: u64,
}

/// What happened to an item offered by Lustre, `queue` or replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A new request.
    Added,
    /// Already known (same cookie and dfid).
    Duplicate,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The request was waiting: removed and reported to Lustre as canceled.
    Canceled,
    /// The request is running: the cancel goes to its agent.
    Forwarded,
    /// No such request.
    Unknown,
}

/// Answer to a (re)connecting agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// Announced running requests that stay with the agent.
    pub kept: u32,
    /// Requests it held that it did not announce, now waiting in its
    /// reserved queue (handed back to it first).
    pub reserved: u32,
    /// Requests it held that it did not announce and can no longer take
    /// (archive id no longer served), now in the global queues.
    pub requeued: u32,
}

/// The scheduler.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedConfig,
    requests: Requests,
    names: Names,
    /// Waiting requests as (wait seq, cookie): 16 bytes an entry (the key
    /// is found again with [`Requests::waiting_key`]). An entry is live only
    /// if a request with that cookie still waits with that seq.
    queues: BTreeMap<QueueKey, VecDeque<(u64, u64)>>,
    waiting_counts: [u64; 3],
    done: [u64; 3],
    failed: [u64; 3],
    canceled: [u64; 3],
    agents: HashMap<String, Agent>,
    next_seq: u64,
    serve_clock: u64,
    locked: bool,
    effects: Effects,
    dirty_set: FastSet<ReqKey>,
    /// (deadline, wait seq, cookie) of waiting requests, when expiry is on.
    /// An entry is live only if the request still waits with that seq.
    expiry: BinaryHeap<Reverse<(u64, u64, u64)>>,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(cfg: SchedConfig) -> Scheduler {
        Scheduler {
            cfg,
            requests: Requests::default(),
            names: Names::default(),
            queues: BTreeMap::new(),
            waiting_counts: [0; 3],
            done: [0; 3],
            failed: [0; 3],
            canceled: [0; 3],
            agents: HashMap::new(),
            // From 1: a queue seq is held as a `NonZeroU64` in `Entry`.
            next_seq: 1,
            serve_clock: 0,
            locked: false,
            effects: Effects::default(),
            dirty_set: FastSet::default(),
            expiry: BinaryHeap::new(),
        }
    }

    /// Makes room for `additional` more requests (replay).
    pub fn reserve(&mut self, additional: usize) {
        self.requests.reserve(additional);
        if self.cfg.waiting_expiry_ms.is_some() {
            self.expiry.reserve(additional);
        }
    }

    /// The settings.
    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// Takes what the driver must do.
    pub fn take_effects(&mut self) -> Effects {
        self.dirty_set.clear();
        std::mem::take(&mut self.effects)
    }

    fn mark(&mut self, key: ReqKey, wrote: bool) {
        if self.dirty_set.insert(key) {
            self.effects.dirty.push(key);
        }
        self.effects.wrote |= wrote;
    }

    /// The keys of every request held (store checkpoints).
    pub fn keys(&self) -> Vec<ReqKey> {
        self.requests.values().map(|e| e.key).collect()
    }

    /// The record of a request (rebuilt from its compact entry).
    pub fn record(&self, key: &ReqKey) -> Option<Record> {
        self.requests.get(key).map(|e| Record {
            item: e.item(),
            archive_id: e.archive_id,
            flags: e.flags,
            received_at_ms: e.received_at_ms,
            agent: e.agent.map(|a| self.names.get(a).to_string()),
            cancel_pending: e.cancel_pending,
        })
    }

    /// The agent holding a request, if any.
    fn holder(&self, e: &Entry) -> Option<&str> {
        e.agent.map(|a| self.names.get(a))
    }

    /// Number of requests held (waiting or running).
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Waiting requests per kind (archive, restore, remove).
    pub fn waiting_counts(&self) -> [u64; 3] {
        self.waiting_counts
    }

    /// Running requests per kind, over all agents.
    pub fn running_counts(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for a in self.agents.values() {
            for (o, c) in out.iter_mut().zip(a.running_counts) {
                *o += c;
            }
        }
        out
    }

    /// Whether hand-out is stopped.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Ids of the connected agents.
    pub fn connected_agents(&self) -> usize {
        self.agents.values().filter(|a| a.connected).count()
    }

    fn enqueue(&mut self, key: ReqKey) {
        self.enqueue_to(key, None);
    }

    /// Queues a request: in the global queues, or in the reserved queue of
    /// agent `reserve_for` (which must exist).
    fn enqueue_to(&mut self, key: ReqKey, reserve_for: Option<&str>) {
        if let Some(idx) = self.requests.index_of(&key) {
            self.enqueue_at(idx, reserve_for);
        }
    }

    /// [`Scheduler::enqueue_to`] of the request at slab index `idx`.
    fn enqueue_at(&mut self, idx: u32, reserve_for: Option<&str>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = &mut self.requests.slab[idx as usize];
        let key = e.key;
        debug_assert!(e.wait_seq.is_none());
        e.wait_seq = NonZeroU64::new(seq);
        e.agent = None;
        let qk = QueueKey {
            kind: e.kind,
            archive_id: e.archive_id,
            flags: e.flags,
        };
        self.waiting_counts[e.kind.idx()] += 1;
        if let Some(t) = self.cfg.waiting_expiry_ms {
            let deadline = e.received_at_ms.saturating_add(t);
            self.expiry.push(Reverse((deadline, seq, key.cookie)));
        }
        match reserve_for.and_then(|id| self.agents.get_mut(id)) {
            Some(a) => a.reserved.push_back((seq, key)),
            None => self
                .queues
                .entry(qk)
                .or_default()
                .push_back((seq, key.cookie)),
        }
    }

    /// Whether `(seq, key)` is a live queue entry.
    fn live(&self, seq: u64, key: &ReqKey) -> bool {
        self.requests
            .get(key)
            .is_some_and(|e| e.wait_seq.map(NonZeroU64::get) == Some(seq))
    }

    /// Sorts keys by receive time, then cookie (the order requests held by
    /// an agent go back to a queue in).
    fn oldest_first(&self, mut keys: Vec<ReqKey>) -> Vec<ReqKey> {
        keys.sort_by_key(|k| {
            (
                self.requests.get(k).map_or(0, |e| e.received_at_ms),
                k.cookie,
            )
        });
        keys
    }

    /// Ends the reservation of agent `id`: its reserved requests go to the
    /// global queues (at their back, as a requeue does).
    fn release_reserved(&mut self, id: &str) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        a.reserved_until = None;
        let entries: Vec<(u64, ReqKey)> = a.reserved.drain(..).collect();
        let mut released = 0u32;
        for (seq, key) in entries {
            if !self.live(seq, &key) {
                continue;
            }
            if let Some(e) = self.requests.get_mut(&key) {
                e.wait_seq = None;
                self.waiting_counts[e.kind.idx()] -= 1;
            }
            self.enqueue(key);
            released += 1;
        }
        if released > 0 {
            tracing::info!(
                agent = id,
                released,
                "reservation over; the agent's former requests are open to every agent"
            );
        }
    }

    /// The earliest live expiry deadline, dropping stale heap tops.
    fn next_expiry(&mut self) -> Option<u64> {
        while let Some(&Reverse((deadline, seq, cookie))) = self.expiry.peek() {
            if self.requests.waiting_key(cookie, seq).is_some() {
                return Some(deadline);
            }
            self.expiry.pop();
        }
        None
    }

    /// Drops the waiting requests whose expiry deadline is `now` or earlier
    /// and reports them to Lustre with `ETIMEDOUT`.
    fn expire_waiting(&mut self, now: u64) -> Vec<Expired> {
        let mut out = Vec::new();
        while let Some(&Reverse((deadline, seq, cookie))) = self.expiry.peek() {
            if deadline > now {
                break;
            }
            self.expiry.pop();
            let Some(key) = self.requests.waiting_key(cookie, seq) else {
                continue;
            };
            let Some(e) = self.remove(&key) else {
                continue;
            };
            self.failed[e.kind.idx()] += 1;
            out.push(Expired {
                key,
                fid: e.fid,
                kind: e.kind,
                archive_id: e.archive_id,
                age_ms: now.saturating_sub(e.received_at_ms),
            });
            self.effects.reports.push(LustreReport {
                item: e.item(),
                errval: libc_errno::ETIMEDOUT,
            });
        }
        out
    }

    /// Validates an item for queueing (`queue` and EHLO adoption).
    pub fn validate(&self, item: &WireItem, archive_id: u32) -> Result<Kind, String> {
        let kind = Kind::from_action(item.action).ok_or_else(|| {
            format!(
                "action {} ({}) cannot be queued (expected ARCHIVE, RESTORE or REMOVE)",
                item.action,
                HsmAction::from_u32(item.action)
            )
        })?;
        if archive_id == 0 {
            return Err("archive id 0 is not valid".into());
        }
        let registered = &self.cfg.archive_ids;
        if !registered.is_empty() && !registered.contains(&archive_id) {
            return Err(format!(
                "archive id {archive_id} is not one this coordinatoold registered for with \
                 Lustre ({registered:?}): such a request never comes from this MDT \
                 registration and no agent set is meant for it"
            ));
        }
        let need = header_len(&self.cfg.fsname) + item_hal_len(item);
        if need > HAL_MAXSIZE {
            return Err(format!(
                "item needs {need} bytes in a HAL, more than the {HAL_MAXSIZE}-byte maximum"
            ));
        }
        Ok(kind)
    }

    /// Adds a new request (from Lustre, `queue`, or the store at start). A
    /// record with an agent is held for that agent (created disconnected if
    /// unknown, so its grace period starts now). Items that are not ARCHIVE,
    /// RESTORE or REMOVE must be filtered by the caller; they are ignored here.
    pub fn offer(&mut self, rec: impl Into<Record>, now: u64, persist: bool) -> Offer {
        let mut rec: Record = rec.into();
        let key = rec.key();
        let Some(kind) = Kind::from_action(rec.item.action) else {
            return Offer::Duplicate;
        };
        let agent = rec.agent.take();
        let (fid, archive_id) = (rec.item.fid, rec.archive_id);
        let cancel = rec.cancel_pending.then(|| Cancel {
            item: cancel_item(&rec.item),
            archive_id,
            flags: rec.flags,
        });
        let names = &mut self.names;
        let Some(idx) = self.requests.insert_new(key, || {
            let agent_id = agent.as_deref().map(|a| names.intern(a));
            Entry::new(rec, kind, agent_id)
        }) else {
            return Offer::Duplicate;
        };
        if persist {
            // Not at replay: one line per stored request would flood the log.
            tracing::debug!(cookie = key.cookie, fid = %fid, action = kind.name(),
                archive_id, agent = ?agent, "request added");
        }
        match agent {
            Some(id) => {
                let a = self
                    .agents
                    .entry(id)
                    .or_insert_with(|| Agent::new(now, false));
                a.running.insert(key);
                a.running_counts[kind.idx()] += 1;
                if let Some(c) = cancel {
                    a.cancels.push_back(c);
                }
            }
            None => self.enqueue_at(idx, None),
        }
        if persist {
            self.mark(key, true);
        }
        Offer::Added
    }

    fn assign(&mut self, key: ReqKey, agent_id: &str) {
        let Some(e) = self.requests.get_mut(&key) else {
            return;
        };
        if e.wait_seq.take().is_some() {
            self.waiting_counts[e.kind.idx()] -= 1;
        }
        e.agent = Some(self.names.intern(agent_id));
        let kind = e.kind;
        tracing::debug!(cookie = key.cookie, fid = %e.fid, action = kind.name(),
            archive_id = e.archive_id, agent = agent_id, "request assigned");
        if let Some(a) = self.agents.get_mut(agent_id)
            && a.running.insert(key)
        {
            a.running_counts[kind.idx()] += 1;
        }
        self.mark(key, true);
    }

    /// Takes a request away from its agent and queues it again.
    fn requeue(&mut self, key: ReqKey) {
        self.requeue_to(key, None);
    }

    /// Takes a request away from its agent and queues it again, in the
    /// global queues or reserved for agent `reserve_for`.
    fn requeue_to(&mut self, key: ReqKey, reserve_for: Option<&str>) {
        let Some(e) = self.requests.get_mut(&key) else {
            return;
        };
        let kind = e.kind;
        if let Some(id) = e.agent.take()
            && let Some(a) = self.agents.get_mut(self.names.get(id))
            && a.running.remove(&key)
        {
            a.running_counts[kind.idx()] -= 1;
        }
        if e.wait_seq.is_none() {
            tracing::debug!(cookie = key.cookie, fid = %e.fid, action = kind.name(),
                archive_id = e.archive_id, reserved_for = ?reserve_for, "request requeued");
            self.enqueue_to(key, reserve_for);
        }
        self.mark(key, true);
    }

    /// Forgets a request; returns its entry.
    fn remove(&mut self, key: &ReqKey) -> Option<Entry> {
        let e = self.requests.remove(key)?;
        if e.wait_seq.is_some() {
            self.waiting_counts[e.kind.idx()] -= 1;
        }
        if let Some(id) = e.agent
            && let Some(a) = self.agents.get_mut(self.names.get(id))
            && a.running.remove(key)
        {
            a.running_counts[e.kind.idx()] -= 1;
        }
        self.mark(*key, false);
        Some(e)
    }

    /// A `done` from any connection. Unknown keys are accepted (double ack).
    /// Returns whether the request was known.
    pub fn done(&mut self, key: ReqKey, status: i32, now: u64) -> bool {
        let known = self.done_one(key, status);
        if known {
            self.pass(now);
        }
        known
    }

    /// Several `done`s (a `DoneBatch`), with one dispatch pass at the end
    /// instead of one per request. Returns how many were known.
    pub fn done_many(&mut self, dones: impl IntoIterator<Item = (ReqKey, i32)>, now: u64) -> usize {
        let known = dones
            .into_iter()
            .filter(|&(key, status)| self.done_one(key, status))
            .count();
        if known > 0 {
            self.pass(now);
        }
        known
    }

    fn done_one(&mut self, key: ReqKey, status: i32) -> bool {
        let Some(e) = self.remove(&key) else {
            tracing::debug!(cookie = key.cookie, dfid = %key.dfid, "done for an unknown request (double ack?)");
            return false;
        };
        let k = e.kind.idx();
        if e.cancel_pending {
            self.canceled[k] += 1;
        } else if status == 0 {
            self.done[k] += 1;
        } else {
            self.failed[k] += 1;
        }
        if let Some(id) = e.agent
            && let Some(a) = self.agents.get_mut(self.names.get(id))
        {
            a.done_counts[k] += 1;
            // Pending cancels of a finished request are pointless.
            a.cancels.retain(|c| ReqKey::of(&c.item) != key);
        }
        tracing::debug!(cookie = key.cookie, fid = %e.fid, action = e.kind.name(),
            archive_id = e.archive_id, agent = ?e.agent.map(|a| self.names.get(a)), status, "request done");
        true
    }

    /// A CANCEL item from Lustre (or ctl): a waiting request is removed and
    /// reported as canceled; a running one has the cancel sent to its agent.
    pub fn cancel(&mut self, cancel: &WireItem, now: u64) -> CancelOutcome {
        let key = ReqKey::of(cancel);
        let Some(e) = self.requests.get_mut(&key) else {
            tracing::debug!(cookie = key.cookie, dfid = %key.dfid, "cancel for an unknown request ignored");
            return CancelOutcome::Unknown;
        };
        match e.agent.map(|a| self.names.get(a).to_string()) {
            None => {
                let e = self.remove(&key).expect("present: checked above");
                self.canceled[e.kind.idx()] += 1;
                tracing::debug!(cookie = key.cookie, fid = %e.fid, action = e.kind.name(),
                    archive_id = e.archive_id, "waiting request canceled");
                self.effects.reports.push(LustreReport {
                    item: cancel.clone(),
                    errval: libc_errno::ECANCELED,
                });
                CancelOutcome::Canceled
            }
            Some(agent) => {
                if !e.cancel_pending {
                    e.cancel_pending = true;
                    let c = Cancel {
                        item: cancel_item_from(cancel, e),
                        archive_id: e.archive_id,
                        flags: e.flags,
                    };
                    tracing::debug!(cookie = key.cookie, fid = %e.fid, action = e.kind.name(),
                        archive_id = e.archive_id, agent = %agent, "cancel forwarded to agent");
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.cancels.push_back(c);
                    }
                    self.mark(key, true);
                    self.pass(now);
                }
                CancelOutcome::Forwarded
            }
        }
    }

    /// Keys of the requests whose fid or dfid is `fid` (for `ctl cancel`).
    pub fn keys_for_fid(&self, fid: &WireFid) -> Vec<ReqKey> {
        self.requests
            .values()
            .filter(|e| e.fid == *fid || e.key.dfid == *fid)
            .map(|e| e.key)
            .collect()
    }

    /// A CANCEL item for a known request (for `ctl cancel`).
    pub fn cancel_item_for(&self, key: &ReqKey) -> Option<WireItem> {
        self.requests.get(key).map(|e| cancel_item(&e.item()))
    }

    /// An agent connects (`ehlo`). `running` lists what it still runs, each
    /// item with the archive id and flags of the batch it came in.
    ///
    /// Announced requests stay (or become) its own; a request nobody knows
    /// (the daemon's state was lost) is adopted with the announced archive
    /// id and flags. Requests it held but did not announce are reserved for
    /// it (see the module documentation), unless it no longer serves their
    /// archive id: those go to the global queues.
    pub fn connect(
        &mut self,
        id: &str,
        peer: Option<String>,
        archive_ids: Vec<u32>,
        running: &[QueueItem],
        now: u64,
    ) -> Result<Connected, SchedError> {
        if self.agents.get(id).is_some_and(|a| a.connected) {
            return Err(SchedError::AgentIdInUse { id: id.to_string() });
        }
        let a = self
            .agents
            .entry(id.to_string())
            .or_insert_with(|| Agent::new(now, true));
        a.connected = true;
        a.disconnected_at = None;
        a.peer = peer;
        a.waiting = None;
        a.archive_ids = archive_ids;
        let held = a.running.iter().copied().collect();
        let held = self.oldest_first(held);
        let mut listed = HashSet::new();
        let mut kept = 0u32;
        for qi in running {
            let item = &qi.item;
            let key = ReqKey::of(item);
            if !listed.insert(key) {
                continue;
            }
            match self.requests.get(&key) {
                Some(e) => match self.holder(e) {
                    Some(holder) if holder == id => kept += 1,
                    Some(holder) if self.agents.get(holder).is_some_and(|h| h.connected) => {
                        tracing::warn!(
                            cookie = key.cookie,
                            agent = id,
                            holder,
                            "agent announces a request another connected agent holds; left with the holder"
                        );
                    }
                    _ => {
                        if e.agent.is_some() {
                            // Held by a disconnected agent: release it first.
                            self.requeue(key);
                        }
                        self.assign(key, id);
                        kept += 1;
                    }
                },
                None => {
                    if let Err(reason) = self.validate(item, qi.archive_id) {
                        tracing::warn!(cookie = key.cookie, fid = %item.fid, agent = id,
                            archive_id = qi.archive_id, %reason,
                            "announced running request unknown here and not adoptable; left to the agent");
                        continue;
                    }
                    // Came from Lustre before our state was lost: re-create it.
                    self.offer(
                        Record {
                            item: item.clone(),
                            archive_id: qi.archive_id,
                            flags: qi.flags,
                            received_at_ms: now,
                            agent: Some(id.to_string()),
                            cancel_pending: false,
                        },
                        now,
                        true,
                    );
                    kept += 1;
                }
            }
        }
        // Reserved requests of an earlier reconnect it can no longer take
        // are released; the others stay reserved, for a fresh grace period.
        let stale: Vec<(u64, ReqKey)> = self
            .agents
            .get(id)
            .map(|a| a.reserved.iter().copied().collect())
            .unwrap_or_default();
        let mut requeued = 0u32;
        let mut keep = VecDeque::new();
        for (seq, key) in stale {
            if !self.live(seq, &key) {
                continue;
            }
            let archive_id = self.requests.get(&key).map_or(0, |e| e.archive_id);
            if self.agents.get(id).is_some_and(|a| a.accepts(archive_id)) {
                keep.push_back((seq, key));
            } else {
                if let Some(e) = self.requests.get_mut(&key) {
                    e.wait_seq = None;
                    self.waiting_counts[e.kind.idx()] -= 1;
                }
                self.enqueue(key);
                requeued += 1;
            }
        }
        if let Some(a) = self.agents.get_mut(id) {
            a.reserved = keep;
        }
        let mut reserved = 0u32;
        for key in held {
            if listed.contains(&key) {
                continue;
            }
            let archive_id = self.requests.get(&key).map_or(0, |e| e.archive_id);
            if self.agents.get(id).is_some_and(|a| a.accepts(archive_id)) {
                self.requeue_to(key, Some(id));
                reserved += 1;
            } else {
                self.requeue(key);
                requeued += 1;
            }
        }
        if let Some(a) = self.agents.get_mut(id) {
            a.reserved_until =
                (!a.reserved.is_empty()).then(|| now.saturating_add(self.cfg.grace_ms));
        }
        self.settle_orphan_cancels(id);
        tracing::info!(agent = id, kept, reserved, requeued, "agent connected");
        self.pass(now);
        Ok(Connected {
            kept,
            reserved,
            requeued,
        })
    }

    /// Cancels pending for `id` whose request is no longer held by it: a
    /// waiting one is canceled at once; others are dropped.
    fn settle_orphan_cancels(&mut self, id: &str) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        let cancels: Vec<Cancel> = a.cancels.drain(..).collect();
        let mut keep = VecDeque::new();
        for c in cancels {
            let key = ReqKey::of(&c.item);
            match self.requests.get(&key).map(|e| self.holder(e) == Some(id)) {
                Some(true) => keep.push_back(c),
                Some(false) if self.requests.get(&key).is_some_and(|e| e.agent.is_none()) => {
                    let e = self.remove(&key).expect("present: checked above");
                    self.canceled[e.kind.idx()] += 1;
                    self.effects.reports.push(LustreReport {
                        item: c.item,
                        errval: libc_errno::ECANCELED,
                    });
                }
                Some(false) | None => {}
            }
        }
        if let Some(a) = self.agents.get_mut(id) {
            a.cancels = keep;
        }
    }

    /// An agent's connection closed: it keeps its requests for the grace period.
    pub fn disconnect(&mut self, id: &str, now: u64) {
        if let Some(a) = self.agents.get_mut(id) {
            a.connected = false;
            a.waiting = None;
            a.peer = None;
            a.disconnected_at = Some(now);
            tracing::info!(
                agent = id,
                running = a.running.len(),
                grace_ms = self.cfg.grace_ms,
                "agent disconnected; its requests are held for the grace period"
            );
        }
    }

    /// A `recv`: the agent waits for work. Answered (maybe at once) through
    /// a [`Delivery`] carrying `token`.
    pub fn recv(
        &mut self,
        id: &str,
        token: u64,
        spec: RecvSpec,
        now: u64,
    ) -> Result<(), SchedError> {
        let a = self
            .agents
            .get_mut(id)
            .filter(|a| a.connected)
            .ok_or_else(|| SchedError::NotConnected { id: id.to_string() })?;
        if a.waiting.is_some() {
            return Err(SchedError::RecvPending { id: id.to_string() });
        }
        a.limits = spec.limits;
        a.max_bytes = spec.max_bytes;
        a.waiting = Some(Waiting { token, spec });
        self.pass(now);
        Ok(())
    }

    /// Stops or resumes hand-out.
    pub fn set_locked(&mut self, locked: bool, now: u64) {
        self.locked = locked;
        if !locked {
            self.pass(now);
        }
    }

    /// The next time [`Scheduler::tick`] has something to do (grace ends,
    /// `recv` waits, expiry of waiting requests).
    pub fn next_deadline(&mut self) -> Option<u64> {
        let expiry = self.next_expiry();
        let agents = self
            .agents
            .values()
            .filter_map(|a| {
                let grace = a
                    .disconnected_at
                    .filter(|_| !a.connected)
                    .map(|t| t.saturating_add(self.cfg.grace_ms));
                let wait = a.waiting.as_ref().and_then(|w| w.spec.deadline);
                [grace, wait, a.reserved_until].into_iter().flatten().min()
            })
            .min();
        match (agents, expiry) {
            (Some(a), Some(x)) => Some(a.min(x)),
            (a, x) => a.or(x),
        }
    }

    /// Handles expired grace periods, waiting requests past their expiry
    /// (returned, and reported to Lustre through the effects) and `recv`
    /// waits. Requests requeued by a grace expiry are checked for expiry
    /// before anything is handed out.
    pub fn tick(&mut self, now: u64) -> Vec<Expired> {
        let expired: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                !a.connected
                    && a.disconnected_at
                        .is_some_and(|t| t.saturating_add(self.cfg.grace_ms) <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.expire_agent(&id);
        }
        let reservations_over: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.reserved_until.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in reservations_over {
            self.release_reserved(&id);
        }
        let dropped = self.expire_waiting(now);
        let timed_out: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                a.waiting
                    .as_ref()
                    .and_then(|w| w.spec.deadline)
                    .is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // Serve what can be served before answering empty.
        self.pass(now);
        for id in timed_out {
            if let Some(a) = self.agents.get_mut(&id)
                && let Some(w) = a.waiting.take()
            {
                self.effects.deliveries.push(Delivery {
                    token: w.token,
                    agent: id.clone(),
                    batch: Batch {
                        archive_id: 0,
                        flags: 0,
                        fsname: self.cfg.fsname.clone(),
                        items: Vec::new(),
                    },
                });
            }
        }
        dropped
    }

    fn expire_agent(&mut self, id: &str) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        let keys = a.running.iter().copied().collect();
        let keys = self.oldest_first(keys);
        tracing::info!(
            agent = id,
            requeued = keys.len(),
            "agent grace period over; requeueing its requests"
        );
        for key in keys {
            self.requeue(key);
        }
        self.release_reserved(id);
        self.settle_orphan_cancels(id);
        self.agents.remove(id);
    }

    /// Serves every waiting agent that can be served, least recently served
    /// first. With several agents waiting, each batch is capped at a fair
    /// share of the waiting requests, so one agent cannot take everything;
    /// no batch takes more than [`MAX_BATCH_ITEMS`] from the queues.
    pub fn pass(&mut self, now: u64) {
        let _ = now;
        if self.locked {
            return;
        }
        let mut waiting: Vec<(u64, String)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.connected && a.waiting.is_some())
            .map(|(id, a)| (a.last_served, id.clone()))
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort();
        let total: u64 = self.waiting_counts.iter().sum();
        let n = waiting.len() as u64;
        let cap = if n > 1 {
            usize::try_from(total.div_ceil(n).max(1)).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        }
        .min(MAX_BATCH_ITEMS);
        for (_, id) in waiting {
            if let Some(batch) = self.build_batch(&id, cap) {
                self.serve_clock += 1;
                let a = self.agents.get_mut(&id).expect("listed above");
                a.last_served = self.serve_clock;
                let w = a.waiting.take().expect("waiting: filtered above");
                self.effects.deliveries.push(Delivery {
                    token: w.token,
                    agent: id,
                    batch,
                });
            }
        }
    }

    /// The head of a queue, dropping stale entries.
    fn head(&mut self, qk: &QueueKey) -> Option<ReqKey> {
        let q = self.queues.get_mut(qk)?;
        while let Some(&(seq, cookie)) = q.front() {
            match self.requests.waiting_key(cookie, seq) {
                Some(key) => return Some(key),
                None => {
                    q.pop_front();
                }
            }
        }
        self.queues.remove(qk);
        None
    }

    fn head_seq(&mut self, qk: &QueueKey) -> Option<u64> {
        let key = self.head(qk)?;
        self.requests
            .get(&key)
            .and_then(|e| e.wait_seq.map(NonZeroU64::get))
    }

    fn build_batch(&mut self, id: &str, cap: usize) -> Option<Batch> {
        let a = self.agents.get(id)?;
        let spec = a.waiting.as_ref()?.spec;
        let budget = (spec.max_bytes.min(self.cfg.max_hal_bytes)) as usize;
        let mut used = header_len(&self.cfg.fsname);

        // Cancels first, in a batch of their own.
        if let Some(first) = a.cancels.front() {
            let (archive_id, flags) = (first.archive_id, first.flags);
            let a = self.agents.get_mut(id)?;
            let mut items = Vec::new();
            let mut rest = VecDeque::new();
            while let Some(c) = a.cancels.pop_front() {
                let len = item_hal_len(&c.item);
                if c.archive_id == archive_id
                    && c.flags == flags
                    && (items.is_empty() || used + len <= budget)
                {
                    used += len;
                    items.push(c.item);
                } else {
                    rest.push_back(c);
                }
            }
            a.cancels = rest;
            for it in &items {
                tracing::debug!(cookie = it.cookie, fid = %it.fid, action = "CANCEL",
                    archive_id, agent = id, "cancel delivered");
            }
            return Some(Batch {
                archive_id,
                flags,
                fsname: self.cfg.fsname.clone(),
                items,
            });
        }

        // Its reserved requests first; the batch's archive id and flags are
        // then those of the first one taken.
        let mut keys: Vec<ReqKey> = Vec::new();
        let mut chosen = if a.reserved.is_empty() {
            None
        } else {
            self.take_reserved(id, &spec, budget, &mut used, &mut keys)
        };
        let from_reserved = keys.len();
        let a = self.agents.get(id)?;
        let accepts: Vec<u32> = a.archive_ids.clone();
        let running = a.running_counts;
        let accepts_fn = |archive: u32| accepts.is_empty() || accepts.contains(&archive);
        'kinds: for kind in self.cfg.order {
            let room = match spec.limits[kind.idx()] {
                Some(l) => u64::from(l).saturating_sub(running[kind.idx()]),
                None => u64::MAX,
            };
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            // The fair-share cap applies to what is taken from the global
            // queues only: nobody else may take reserved requests.
            let room = room.min(cap.saturating_sub(keys.len() - from_reserved));
            if room == 0 {
                continue;
            }
            let qk = match chosen {
                Some((archive_id, flags)) => QueueKey {
                    kind,
                    archive_id,
                    flags,
                },
                None => {
                    // The queue of this kind whose head arrived first.
                    let candidates: Vec<QueueKey> = self
                        .queues
                        .keys()
                        .filter(|q| q.kind == kind && accepts_fn(q.archive_id))
                        .copied()
                        .collect();
                    let mut best: Option<(u64, QueueKey)> = None;
                    for q in candidates {
                        if let Some(seq) = self.head_seq(&q)
                            && best.is_none_or(|(s, _)| seq < s)
                        {
                            best = Some((seq, q));
                        }
                    }
                    match best {
                        Some((_, q)) => q,
                        None => continue,
                    }
                }
            };
            let mut taken = 0;
            while taken < room {
                let Some(key) = self.head(&qk) else {
                    break;
                };
                let len = self.requests.get(&key).map(|e| e.hal_len()).unwrap_or(0);
                if used + len > budget {
                    if keys.is_empty() && taken == 0 {
                        // Even alone it does not fit this agent's budget: try
                        // the next kind rather than stalling.
                        continue 'kinds;
                    }
                    break 'kinds;
                }
                used += len;
                if let Some(q) = self.queues.get_mut(&qk) {
                    q.pop_front();
                }
                self.assign(key, id);
                keys.push(key);
                taken += 1;
                chosen = Some((qk.archive_id, qk.flags));
            }
        }
        let (archive_id, flags) = chosen?;
        let items = keys
            .iter()
            .filter_map(|k| self.requests.get(k).map(|e| e.item()))
            .collect();
        Some(Batch {
            archive_id,
            flags,
            fsname: self.cfg.fsname.clone(),
            items,
        })
    }

    /// Moves reserved requests of agent `id` into the batch being built, in
    /// the configured kind order then reservation order, within the agent's
    /// limits and byte budget and with one archive id and flags; returns
    /// those. Reserved requests that do not fit stay reserved.
    fn take_reserved(
        &mut self,
        id: &str,
        spec: &RecvSpec,
        budget: usize,
        used: &mut usize,
        keys: &mut Vec<ReqKey>,
    ) -> Option<(u32, u64)> {
        let a = self.agents.get_mut(id)?;
        let mut entries: Vec<(u64, ReqKey)> = a.reserved.drain(..).collect();
        let accepts: Vec<u32> = a.archive_ids.clone();
        let running = a.running_counts;
        entries.retain(|(seq, key)| self.live(*seq, key));
        let mut taken = vec![false; entries.len()];
        let mut chosen: Option<(u32, u64)> = None;
        for kind in self.cfg.order {
            let mut room = match spec.limits[kind.idx()] {
                Some(l) => u64::from(l).saturating_sub(running[kind.idx()]),
                None => u64::MAX,
            };
            for (i, (_, key)) in entries.iter().enumerate() {
                if room == 0 {
                    break;
                }
                let Some(e) = self.requests.get(key) else {
                    continue;
                };
                let here = (e.archive_id, e.flags);
                if e.kind != kind
                    || chosen.is_some_and(|c| c != here)
                    || !(accepts.is_empty() || accepts.contains(&here.0))
                {
                    continue;
                }
                let len = e.hal_len();
                if *used + len > budget {
                    continue;
                }
                *used += len;
                taken[i] = true;
                room -= 1;
                chosen = Some(here);
                keys.push(*key);
            }
        }
        let mut rest = VecDeque::new();
        for (i, (seq, key)) in entries.into_iter().enumerate() {
            if taken[i] {
                self.assign(key, id);
            } else {
                rest.push_back((seq, key));
            }
        }
        if let Some(a) = self.agents.get_mut(id) {
            if rest.is_empty() {
                a.reserved_until = None;
            }
            a.reserved = rest;
        }
        chosen
    }

    /// Per-kind counters for `status`.
    pub fn action_counts(&self) -> Vec<ActionCounts> {
        let running = self.running_counts();
        Kind::ALL
            .iter()
            .map(|k| {
                let i = k.idx();
                ActionCounts {
                    action: k.name().to_string(),
                    waiting: self.waiting_counts[i],
                    running: running[i],
                    done: self.done[i],
                    failed: self.failed[i],
                    canceled: self.canceled[i],
                }
            })
            .collect()
    }

    /// Agents for `status`, connected first.
    pub fn agent_infos(&self, now: u64) -> Vec<AgentInfo> {
        let mut out: Vec<AgentInfo> = self
            .agents
            .iter()
            .map(|(id, a)| AgentInfo {
                client_id: id.clone(),
                connected: a.connected,
                waiting: a.waiting.is_some(),
                archive_ids: a.archive_ids.clone(),
                peer: a.peer.clone(),
                running: a.running_counts,
                done: a.done_counts,
                limits: a.limits,
                max_bytes: a.max_bytes,
                grace_remaining_ms: a
                    .disconnected_at
                    .filter(|_| !a.connected)
                    .map(|t| t.saturating_add(self.cfg.grace_ms).saturating_sub(now)),
            })
            .collect();
        out.sort_by(|x, y| {
            y.connected
                .cmp(&x.connected)
                .then_with(|| x.client_id.cmp(&y.client_id))
        });
        out
    }

    /// Pending cancels over all agents.
    pub fn pending_cancels(&self) -> u64 {
        self.agents.values().map(|a| a.cancels.len() as u64).sum()
    }

    /// Ages of the oldest request and of the oldest waiting request.
    pub fn oldest(&self, now: u64) -> (Option<u64>, Option<u64>) {
        let mut all: Option<u64> = None;
        let mut waiting: Option<u64> = None;
        for e in self.requests.values() {
            let t = e.received_at_ms;
            all = Some(all.map_or(t, |a| a.min(t)));
            if e.wait_seq.is_some() {
                waiting = Some(waiting.map_or(t, |a| a.min(t)));
            }
        }
        (
            all.map(|t| now.saturating_sub(t)),
            waiting.map(|t| now.saturating_sub(t)),
        )
    }

    fn state_of(&self, e: &Entry) -> RequestState {
        match self.holder(e) {
            None => RequestState::Waiting,
            Some(id) if self.agents.get(id).is_some_and(|a| a.connected) => RequestState::Running,
            Some(_) => RequestState::Orphaned,
        }
    }

    /// A filtered listing, oldest first.
    pub fn list(&self, filter: &coordinatool_protocol::List, now: u64) -> (Vec<RequestInfo>, bool) {
        let mut matched: Vec<&Entry> = self
            .requests
            .values()
            .filter(|e| {
                filter.state.is_none_or(|s| self.state_of(e) == s)
                    && filter.action.is_none_or(|a| e.action == a)
                    && filter
                        .agent
                        .as_ref()
                        .is_none_or(|a| self.holder(e) == Some(a.as_str()))
                    && filter.archive_id.is_none_or(|a| e.archive_id == a)
            })
            .collect();
        matched.sort_by_key(|e| (e.received_at_ms, e.key.cookie));
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        let truncated = matched.len() > limit;
        let out = matched
            .into_iter()
            .take(limit)
            .map(|e| RequestInfo {
                item: e.item(),
                archive_id: e.archive_id,
                flags: e.flags,
                state: self.state_of(e),
                agent: self.holder(e).map(str::to_string),
                age_ms: now.saturating_sub(e.received_at_ms),
                cancel_pending: e.cancel_pending,
            })
            .collect();
        (out, truncated)
    }

    /// Drops every outstanding `recv` (at shutdown).
    pub fn drop_waiting(&mut self) {
        for a in self.agents.values_mut() {
            a.waiting = None;
        }
    }
}

/// The CANCEL item for a request (same cookie and fids).
pub fn cancel_item(item: &WireItem) -> WireItem {
    WireItem {
        action: lustre_bindings::action::HSMA_CANCEL,
        ..item.clone()
    }
}

fn cancel_item_from(cancel: &WireItem, original: &Entry) -> WireItem {
    let mut c = cancel.clone();
    c.action = lustre_bindings::action::HSMA_CANCEL;
    c.fid = original.fid;
    c.dfid = original.key.dfid;
    c.cookie = original.key.cookie;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    fn cfg() -> SchedConfig {
        SchedConfig {
            fsname: "testfs".into(),
            order: Kind::DEFAULT_ORDER,
            grace_ms: 1000,
            max_hal_bytes: 1 << 20,
            archive_ids: Vec::new(),
            waiting_expiry_ms: None,
        }
    }

    fn fid(n: u32) -> WireFid {
        WireFid {
            seq: 0x200000401,
            oid: n,
            ver: 0,
        }
    }

    fn item(action: u32, n: u32) -> WireItem {
        WireItem::whole_file(action, fid(n), u64::from(n) + 100, Vec::new())
    }

    fn rec(action: u32, n: u32, archive_id: u32) -> Record {
        Record {
            item: item(action, n),
            archive_id,
            flags: 0,
            received_at_ms: T0 + u64::from(n),
            agent: None,
            cancel_pending: false,
        }
    }

    const A: u32 = 20;
    const R: u32 = 21;
    const X: u32 = 22;

    #[test]
    fn requests_sharing_a_cookie_are_indexed_apart() {
        // Several MDTs may hand out the same cookie with other dfids: the
        // cookie-keyed index sends the second and later ones to `clash`.
        let mut r = Requests::default();
        let same_cookie = |n: u32| {
            let mut x = rec(A, n, 1);
            x.item.cookie = 7;
            x
        };
        let keys: Vec<ReqKey> = (1..=4).map(|n| same_cookie(n).key()).collect();
        let other = rec(A, 9, 1);
        for n in 1..=4 {
            let x = same_cookie(n);
            assert!(
                r.insert_new(x.key(), || Entry::new(x, Kind::Archive, None))
                    .is_some()
            );
        }
        assert!(
            r.insert_new(keys[2], || Entry::new(same_cookie(3), Kind::Archive, None))
                .is_none(),
            "a duplicate in clash"
        );
        assert!(
            r.insert_new(keys[0], || Entry::new(same_cookie(1), Kind::Archive, None))
                .is_none(),
            "a duplicate as primary"
        );
        let ok = other.key();
        assert!(
            r.insert_new(ok, || Entry::new(other, Kind::Archive, None))
                .is_some()
        );
        assert_eq!(r.len(), 5);
        let check = |r: &Requests, live: &[ReqKey]| {
            assert_eq!(r.len(), live.len());
            for k in live {
                assert_eq!(r.get(k).map(|e| e.key), Some(*k));
            }
        };
        // Remove the primary (promotes a clash), then a clash entry, with
        // swap_remove moving entries of either map around.
        // Queue entries are (seq, cookie): each finds its own request.
        for (n, k) in keys.iter().enumerate() {
            r.get_mut(k).unwrap().wait_seq = NonZeroU64::new(10 + n as u64);
        }
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(r.waiting_key(7, 10 + n as u64), Some(*k));
        }
        assert_eq!(r.waiting_key(7, 99), None);
        assert_eq!(r.waiting_key(8, 10), None);
        assert!(r.remove(&keys[0]).is_some());
        assert!(r.remove(&keys[0]).is_none());
        assert_eq!(r.waiting_key(7, 10), None, "a removed request is stale");
        assert_eq!(r.waiting_key(7, 13), Some(keys[3]));
        check(&r, &[keys[1], keys[2], keys[3], ok]);
        assert!(r.remove(&keys[2]).is_some());
        check(&r, &[keys[1], keys[3], ok]);
        assert!(r.remove(&ok).is_some());
        check(&r, &[keys[1], keys[3]]);
        assert!(r.remove(&keys[1]).is_some());
        assert!(r.remove(&keys[3]).is_some());
        assert!(r.is_empty() && r.by_cookie.is_empty() && r.clash.is_empty());
    }

    #[test]
    fn compact_entries_round_trip_and_removal_keeps_the_index_right() {
        // Compact: well under the 144-byte Record it replaces.
        assert!(std::mem::size_of::<Entry>() <= 120);
        let mut s = Scheduler::new(cfg());
        let mut with_data = rec(A, 1, 2);
        with_data.item.data = b"x\0y".to_vec();
        with_data.flags = 4;
        with_data.cancel_pending = true;
        with_data.agent = Some("mover".into());
        let plain = rec(R, 2, 3);
        let other = rec(X, 3, 3);
        for r in [&with_data, &plain, &other] {
            assert_eq!(s.offer(r.clone(), T0, false), Offer::Added);
        }
        assert_eq!(s.offer(plain.clone(), T0, false), Offer::Duplicate);
        for r in [&with_data, &plain, &other] {
            assert_eq!(s.record(&r.key()).as_ref(), Some(r));
        }
        // Removing the first entry moves the last one into its slot.
        assert!(s.done(with_data.key(), 0, T0));
        assert_eq!(s.record(&with_data.key()), None);
        assert_eq!(s.record(&plain.key()).as_ref(), Some(&plain));
        assert_eq!(s.record(&other.key()).as_ref(), Some(&other));
        assert!(s.done(other.key(), 0, T0));
        assert_eq!(s.record(&plain.key()).as_ref(), Some(&plain));
        assert_eq!(s.len(), 1);
    }

    fn qi(action: u32, n: u32, archive_id: u32, flags: u64) -> QueueItem {
        QueueItem {
            item: item(action, n),
            archive_id,
            flags,
        }
    }

    fn spec() -> RecvSpec {
        RecvSpec {
            limits: [None; 3],
            max_bytes: 1 << 20,
            deadline: None,
        }
    }

    fn oids(d: &Delivery) -> Vec<u32> {
        d.batch.items.iter().map(|i| i.fid.oid).collect()
    }

    fn sched_with(items: &[(u32, u32, u32)]) -> Scheduler {
        let mut s = Scheduler::new(cfg());
        for &(action, n, archive) in items {
            assert_eq!(s.offer(rec(action, n, archive), T0, true), Offer::Added);
        }
        s.take_effects();
        s
    }

    #[test]
    fn offer_persists_and_dedups() {
        let mut s = Scheduler::new(cfg());
        assert_eq!(s.offer(rec(A, 1, 1), T0, true), Offer::Added);
        assert_eq!(s.offer(rec(A, 1, 1), T0, true), Offer::Duplicate);
        let e = s.take_effects();
        assert_eq!(e.dirty.len(), 1);
        assert!(e.wrote);
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
    }

    #[test]
    fn default_order_restore_remove_archive_fifo_within_type() {
        let mut s = sched_with(&[(A, 1, 1), (X, 2, 1), (R, 3, 1), (A, 4, 1), (R, 5, 1)]);
        s.connect("m1", None, vec![], &[], T0).unwrap();
        s.recv("m1", 7, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].token, 7);
        assert_eq!(oids(&e.deliveries[0]), vec![3, 5, 2, 1, 4]);
        // Assignment is persisted with the delivery.
        assert_eq!(e.dirty.len(), 5);
        assert_eq!(
            s.record(&ReqKey::of(&item(A, 1))).unwrap().agent.as_deref(),
            Some("m1")
        );
        assert_eq!(s.waiting_counts(), [0, 0, 0]);
        assert_eq!(s.running_counts(), [2, 2, 1]);
    }

    #[test]
    fn configured_order_is_followed() {
        let mut s = Scheduler::new(SchedConfig {
            order: [Kind::Archive, Kind::Remove, Kind::Restore],
            ..cfg()
        });
        for (a, n) in [(R, 1), (A, 2), (X, 3)] {
            s.offer(rec(a, n, 1), T0, true);
        }
        s.connect("m", None, vec![], &[], T0).unwrap();
        s.recv("m", 1, spec(), T0).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![2, 3, 1]);
    }

    #[test]
    fn per_type_limits_and_zero_means_never() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1), (A, 3, 1), (R, 4, 1)]);
        s.connect("m", None, vec![], &[], T0).unwrap();
        let mut sp = spec();
        sp.limits = [Some(2), Some(0), None];
        s.recv("m", 1, sp, T0).unwrap();
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![1, 2]);
        // At the limit: nothing more until a done.
        s.recv("m", 2, sp, T0).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
        assert!(s.done(ReqKey::of(&item(A, 1)), 0, T0));
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![3]);
        assert_eq!(s.waiting_counts(), [0, 1, 0]);
    }

    #[test]
    fn byte_budget_is_never_exceeded() {
        let mut s = Scheduler::new(cfg());
        for n in 0..10 {
            let mut r = rec(A, n, 1);
            r.item.data = vec![b'x'; 100]; // 172 -> 176 bytes in a HAL
            s.offer(r, T0, true);
        }
        s.connect("m", None, vec![], &[], T0).unwrap();
        let mut sp = spec();
        // header 32 + align8("testfs\0") = 40; 3 items = 528; total 568.
        sp.max_bytes = 40 + 3 * 176 + 100;
        s.recv("m", 1, sp, T0).unwrap();
        let e = s.take_effects();
        let b = &e.deliveries[0].batch;
        assert_eq!(b.items.len(), 3);
        let hal = lustre_bindings::ActionList {
            flags: b.flags,
            archive_id: b.archive_id,
            fsname: b.fsname.clone(),
            items: b.items.iter().cloned().map(Into::into).collect(),
        };
        assert!(hal.encode().unwrap().len() <= sp.max_bytes as usize);
    }

    #[test]
    fn archive_ids_match_and_one_archive_and_flags_per_batch() {
        let mut s = Scheduler::new(cfg());
        s.offer(rec(A, 1, 2), T0, true);
        s.offer(rec(A, 2, 3), T0, true);
        let mut r = rec(A, 3, 2);
        r.flags = 4;
        s.offer(r, T0, true);
        s.offer(rec(A, 4, 2), T0, true);
        s.connect("only3", None, vec![3], &[], T0).unwrap();
        s.recv("only3", 1, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![2]);
        assert_eq!(e.deliveries[0].batch.archive_id, 3);
        s.connect("any", None, vec![], &[], T0).unwrap();
        s.recv("any", 2, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![1, 4]);
        assert_eq!(e.deliveries[0].batch.flags, 0);
        s.recv("any", 3, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![3]);
        assert_eq!(e.deliveries[0].batch.flags, 4);
        // Nobody serves archive 9: it waits, it is never handed out.
        s.offer(rec(A, 9, 9), T0, true);
        s.recv("only3", 4, spec(), T0).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
    }

    #[test]
    fn fairness_between_waiting_agents() {
        let mut s = Scheduler::new(cfg());
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.connect("b", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.recv("b", 2, spec(), T0).unwrap();
        s.take_effects();
        // Ten requests arrive in one go: both agents get half.
        for n in 0..10 {
            s.offer(rec(A, n, 1), T0, true);
        }
        s.pass(T0);
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 2);
        assert_eq!(e.deliveries[0].batch.items.len(), 5);
        assert_eq!(e.deliveries[1].batch.items.len(), 5);
        // Next round: the least recently served goes first.
        let first = e.deliveries[0].agent.clone();
        let second = e.deliveries[1].agent.clone();
        s.recv(&first, 3, spec(), T0).unwrap();
        s.recv(&second, 4, spec(), T0).unwrap();
        s.take_effects();
        s.offer(rec(A, 50, 1), T0, true);
        s.pass(T0);
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].agent, first);
    }

    #[test]
    fn one_batch_takes_at_most_max_batch_items() {
        let mut s = Scheduler::new(cfg());
        let n = MAX_BATCH_ITEMS as u32 + 100;
        for i in 0..n {
            s.offer(rec(A, i, 1), T0, true);
        }
        s.connect("a", None, vec![], &[], T0).unwrap();
        // Unlimited per action; the byte budget would allow everything.
        s.recv("a", 1, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].batch.items.len(), MAX_BATCH_ITEMS);
        s.recv("a", 2, spec(), T0).unwrap();
        let e = s.take_effects();
        assert_eq!(e.deliveries[0].batch.items.len(), 100);
    }

    #[test]
    fn every_request_held_by_one_agent_at_most() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1)]);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.connect("b", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.recv("b", 2, spec(), T0).unwrap();
        let e = s.take_effects();
        let all: Vec<u32> = e.deliveries.iter().flat_map(oids).collect();
        assert_eq!(all.len(), 2);
        let uniq: HashSet<u32> = all.iter().copied().collect();
        assert_eq!(uniq.len(), 2);
        // An id already connected is refused.
        let err = s.connect("a", None, vec![], &[], T0).unwrap_err();
        assert_eq!(err.errno(), 17);
        // One recv at a time.
        s.recv("a", 3, spec(), T0).unwrap();
        assert!(matches!(
            s.recv("a", 4, spec(), T0),
            Err(SchedError::RecvPending { .. })
        ));
    }

    #[test]
    fn grace_expiry_requeues() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1)]);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.take_effects();
        s.disconnect("a", T0 + 10);
        assert_eq!(s.next_deadline(), Some(T0 + 10 + 1000));
        s.tick(T0 + 500);
        assert_eq!(s.running_counts(), [2, 0, 0]);
        s.tick(T0 + 1010);
        assert_eq!(s.running_counts(), [0, 0, 0]);
        assert_eq!(s.waiting_counts(), [2, 0, 0]);
        let e = s.take_effects();
        assert_eq!(e.dirty.len(), 2);
        assert!(s.record(&ReqKey::of(&item(A, 1))).unwrap().agent.is_none());
        assert_eq!(s.next_deadline(), None);
        // Another agent now gets them, in the original order.
        s.connect("b", None, vec![], &[], T0).unwrap();
        s.recv("b", 2, spec(), T0).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]).len(), 2);
    }

    #[test]
    fn reconnect_bookkeeping_is_exact() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1), (R, 3, 1)]);
        s.connect("a", None, vec![1], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.take_effects();
        assert_eq!(s.running_counts(), [2, 1, 0]);
        s.disconnect("a", T0);
        // Reconnect within grace announcing 1 (held), 3 (held) and 7
        // (unknown, from a batch of archive 1 with flags 4).
        let running = vec![qi(A, 1, 1, 0), qi(R, 3, 1, 0), qi(X, 7, 1, 4)];
        let c = s.connect("a", None, vec![1], &running, T0 + 100).unwrap();
        assert_eq!(
            c,
            Connected {
                kept: 3,
                reserved: 1,
                requeued: 0
            }
        );
        // 2 went back to a's reserved queue; 7 was adopted.
        assert_eq!(s.running_counts(), [1, 1, 1]);
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
        let infos = s.agent_infos(T0);
        assert_eq!(infos[0].running, [1, 1, 1]);
        let adopted = s.record(&ReqKey::of(&item(X, 7))).unwrap();
        assert_eq!(adopted.agent.as_deref(), Some("a"));
        assert_eq!(adopted.archive_id, 1);
        assert_eq!(adopted.flags, 4);
        // 2 is handed back to a; then dones bring the counters to zero.
        s.recv("a", 2, spec(), T0 + 100).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![2]);
        assert!(s.done(ReqKey::of(&item(A, 2)), 0, T0));
        // A batch of dones (one unknown key among them) brings the counters
        // back to exactly zero.
        let batch = [item(A, 1), item(A, 99), item(R, 3), item(X, 7)];
        let known = s.done_many(batch.iter().map(|k| (ReqKey::of(k), 0)), T0);
        assert_eq!(known, 3);
        assert_eq!(s.running_counts(), [0, 0, 0]);
        assert_eq!(s.agent_infos(T0)[0].done, [2, 1, 1]);
        // A second done is a harmless double ack.
        assert!(!s.done(ReqKey::of(&item(A, 1)), 0, T0));
    }

    /// `a` holds 1 and 2, then restarts within grace with an empty running
    /// list while `b` waits: `b` never gets them, `a` gets them back first.
    fn restarted_a_with_b_waiting() -> Scheduler {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1)]);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.take_effects();
        s.disconnect("a", T0 + 10);
        s.connect("b", None, vec![], &[], T0 + 10).unwrap();
        s.recv("b", 2, spec(), T0 + 10).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
        let c = s.connect("a", None, vec![], &[], T0 + 20).unwrap();
        assert_eq!(
            c,
            Connected {
                kept: 0,
                reserved: 2,
                requeued: 0
            }
        );
        let e = s.take_effects();
        assert!(e.deliveries.is_empty(), "b got reserved work: {e:?}");
        // Stored as waiting (no agent), counted as waiting.
        assert_eq!(e.dirty.len(), 2);
        assert!(s.record(&ReqKey::of(&item(A, 1))).unwrap().agent.is_none());
        assert_eq!(s.waiting_counts(), [2, 0, 0]);
        assert_eq!(s.running_counts(), [0, 0, 0]);
        s
    }

    #[test]
    fn agent_restarted_within_grace_gets_its_work_back() {
        let mut s = restarted_a_with_b_waiting();
        // New global work goes to b as usual, never the reserved requests.
        s.offer(rec(A, 3, 1), T0 + 30, true);
        s.pass(T0 + 30);
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].agent, "b");
        assert_eq!(oids(&e.deliveries[0]), vec![3]);
        // a's recv: its reserved requests, in their order.
        s.offer(rec(R, 4, 1), T0 + 30, true);
        s.take_effects();
        s.recv("a", 3, spec(), T0 + 40).unwrap();
        let e = s.take_effects();
        let d = &e.deliveries[0];
        assert_eq!(d.agent, "a");
        // Reserved first, then global work of the same archive id and flags
        // (the restore, although restores come first in the global order).
        assert_eq!(oids(d), vec![1, 2, 4]);
        assert_eq!(s.agent_infos(T0 + 40)[0].running, [2, 1, 0]);
        assert_eq!(s.waiting_counts(), [0, 0, 0]);
        // Nothing reserved any more: no reservation deadline left.
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn reserved_work_respects_limits_budget_and_archive_ids() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1), (A, 3, 2), (R, 4, 1)]);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![4, 1, 2]);
        s.recv("a", 2, spec(), T0).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![3]);
        assert_eq!(s.running_counts(), [3, 1, 0]);
        s.disconnect("a", T0);
        // a comes back serving archive 1 only: 3 (archive 2) goes to everyone.
        let c = s.connect("a", None, vec![1], &[], T0 + 10).unwrap();
        assert_eq!(c.reserved, 3);
        assert_eq!(c.requeued, 1);
        s.connect("b", None, vec![], &[], T0 + 10).unwrap();
        s.recv("b", 3, spec(), T0 + 10).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![3]);
        // Limits: one archive at a time; restores first (configured order).
        let mut sp = spec();
        sp.limits = [Some(1), Some(1), None];
        s.recv("a", 4, sp, T0 + 20).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![4, 1]);
        s.recv("a", 5, sp, T0 + 20).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
        s.done(ReqKey::of(&item(A, 1)), 0, T0 + 30);
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![2]);
        // The byte budget holds for reserved work too.
        let mut s = restarted_a_with_b_waiting();
        let mut sp = spec();
        sp.max_bytes = u32::try_from(header_len("testfs") + item_hal_len(&item(A, 1))).unwrap();
        s.recv("a", 9, sp, T0 + 30).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![1]);
        s.recv("a", 10, sp, T0 + 30).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![2]);
    }

    #[test]
    fn reservation_ends_after_one_grace_period_untaken() {
        let mut s = restarted_a_with_b_waiting();
        // Reconnected at T0 + 20 with a grace of 1000 ms.
        assert_eq!(s.next_deadline(), Some(T0 + 1020));
        s.tick(T0 + 1019);
        assert!(s.take_effects().deliveries.is_empty());
        s.tick(T0 + 1020);
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].agent, "b");
        assert_eq!(oids(&e.deliveries[0]), vec![1, 2]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn reservation_ends_when_the_agent_is_gone_for_good() {
        let mut s = restarted_a_with_b_waiting();
        // a goes away again before taking anything.
        s.disconnect("a", T0 + 30);
        s.tick(T0 + 500);
        assert!(s.take_effects().deliveries.is_empty());
        // Reservation ends first (T0 + 1020), then its grace (T0 + 1030).
        s.tick(T0 + 1030);
        let e = s.take_effects();
        assert_eq!(oids(&e.deliveries[0]), vec![1, 2]);
        assert_eq!(e.deliveries[0].agent, "b");
        assert!(s.agent_infos(T0 + 1030).iter().all(|a| a.client_id != "a"));
        // A second reconnect within grace renews the reservation instead.
        let mut s = restarted_a_with_b_waiting();
        s.disconnect("a", T0 + 900);
        let c = s.connect("a", None, vec![], &[], T0 + 950).unwrap();
        assert_eq!((c.reserved, c.requeued), (0, 0));
        s.tick(T0 + 1100);
        assert!(s.take_effects().deliveries.is_empty());
        assert_eq!(s.next_deadline(), Some(T0 + 1950));
        s.recv("a", 7, spec(), T0 + 1200).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![1, 2]);
    }

    #[test]
    fn reserved_requests_can_be_canceled_taken_by_announcers_and_expire() {
        let mut s = restarted_a_with_b_waiting();
        // Cancel of a reserved (waiting) request: reported at once.
        assert_eq!(
            s.cancel(&cancel_item(&item(A, 1)), T0 + 30),
            CancelOutcome::Canceled
        );
        assert_eq!(s.take_effects().reports.len(), 1);
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
        // Another agent announcing it runs 2 takes it (it really runs it).
        s.connect("c", None, vec![], &[qi(A, 2, 1, 0)], T0 + 40)
            .unwrap();
        assert_eq!(s.waiting_counts(), [0, 0, 0]);
        s.recv("a", 8, spec(), T0 + 50).unwrap();
        let e = s.take_effects();
        assert!(e.deliveries.is_empty(), "{e:?}");
        // Expiry applies to reserved requests like any waiting one.
        let mut s = Scheduler::new(SchedConfig {
            waiting_expiry_ms: Some(5000),
            grace_ms: 100_000,
            ..cfg()
        });
        s.offer(rec(A, 1, 1), T0, true);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        s.disconnect("a", T0 + 1);
        s.connect("a", None, vec![], &[], T0 + 2).unwrap();
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
        s.take_effects();
        assert_eq!(s.tick(T0 + 5001).len(), 1);
        assert!(s.is_empty());
        assert_eq!(s.take_effects().reports.len(), 1);
        s.recv("a", 2, spec(), T0 + 5002).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
    }

    #[test]
    fn ehlo_adoption_uses_the_announced_archive_id_and_flags() {
        let mut s = Scheduler::new(SchedConfig {
            archive_ids: vec![1, 3],
            ..cfg()
        });
        let running = [
            qi(A, 1, 3, 8),
            qi(A, 2, 2, 0),
            qi(A, 3, 0, 0),
            qi(23, 4, 1, 0),
        ];
        let c = s.connect("a", None, vec![], &running, T0).unwrap();
        // Archive 2 is not registered, 0 is invalid, CANCEL is never queued.
        assert_eq!(c.kept, 1);
        let r = s.record(&ReqKey::of(&item(A, 1))).unwrap();
        assert_eq!((r.archive_id, r.flags), (3, 8));
        assert_eq!(r.agent.as_deref(), Some("a"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn replayed_assignments_wait_for_their_agent() {
        let mut s = Scheduler::new(cfg());
        let mut r = rec(A, 1, 1);
        r.agent = Some("gone".into());
        s.offer(r, T0, false);
        s.offer(rec(A, 2, 1), T0, false);
        assert!(s.take_effects().dirty.is_empty());
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
        assert_eq!(s.running_counts(), [1, 0, 0]);
        assert_eq!(s.next_deadline(), Some(T0 + 1000));
        s.tick(T0 + 1000);
        assert_eq!(s.waiting_counts(), [2, 0, 0]);
    }

    #[test]
    fn lock_stops_hand_out() {
        let mut s = sched_with(&[(A, 1, 1)]);
        s.set_locked(true, T0);
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
        s.set_locked(false, T0);
        assert_eq!(s.take_effects().deliveries.len(), 1);
    }

    #[test]
    fn cancel_of_waiting_request_is_reported() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1)]);
        let out = s.cancel(&cancel_item(&item(A, 1)), T0);
        assert_eq!(out, CancelOutcome::Canceled);
        let e = s.take_effects();
        assert_eq!(e.reports.len(), 1);
        assert_eq!(e.reports[0].errval, 125);
        assert_eq!(e.reports[0].item.action, 23);
        assert_eq!(e.dirty, vec![ReqKey::of(&item(A, 1))]);
        assert_eq!(s.waiting_counts(), [1, 0, 0]);
        // The stale queue entry is skipped.
        s.connect("a", None, vec![], &[], T0).unwrap();
        s.recv("a", 1, spec(), T0).unwrap();
        assert_eq!(oids(&s.take_effects().deliveries[0]), vec![2]);
        assert_eq!(
            s.cancel(&cancel_item(&item(A, 99)), T0),
            CancelOutcome::Unknown
        );
        assert_eq!(s.action_counts()[0].canceled, 1);
    }

    #[test]
    fn cancel_of_running_request_goes_to_its_agent() {
        let mut s = sched_with(&[(A, 1, 1), (A, 2, 1)]);
        s.connect("a", None, vec![], &[], T0).unwrap();
        let mut sp = spec();
        sp.limits[0] = Some(1);
        s.recv("a", 1, sp, T0).unwrap();
        s.take_effects();
        assert_eq!(
            s.cancel(&cancel_item(&item(A, 1)), T0),
            CancelOutcome::Forwarded
        );
        assert!(s.take_effects().reports.is_empty());
        assert_eq!(s.pending_cancels(), 1);
        s.recv("a", 2, sp, T0).unwrap();
        let e = s.take_effects();
        let b = &e.deliveries[0].batch;
        assert_eq!(b.items.len(), 1);
        assert_eq!(b.items[0].action, 23);
        assert_eq!(b.items[0].cookie, 101);
        assert_eq!(s.pending_cancels(), 0);
        // Still running until the agent reports.
        assert_eq!(s.running_counts(), [1, 0, 0]);
        assert!(s.done(ReqKey::of(&item(A, 1)), 125, T0));
        assert_eq!(s.action_counts()[0].canceled, 1);
    }

    #[test]
    fn recv_wait_runs_out_with_an_empty_batch() {
        let mut s = Scheduler::new(cfg());
        s.connect("a", None, vec![], &[], T0).unwrap();
        let mut sp = spec();
        sp.deadline = Some(T0 + 50);
        s.recv("a", 9, sp, T0).unwrap();
        assert_eq!(s.next_deadline(), Some(T0 + 50));
        s.tick(T0 + 50);
        let e = s.take_effects();
        assert_eq!(e.deliveries.len(), 1);
        assert!(e.deliveries[0].batch.items.is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn recv_with_many_waiting_is_cheap() {
        let mut s = Scheduler::new(cfg());
        for n in 0..100_000u32 {
            s.offer(rec(A, n, 1 + n % 4), T0, true);
        }
        s.take_effects();
        s.connect("a", None, vec![3], &[], T0).unwrap();
        let mut sp = spec();
        sp.limits = [Some(10), None, None];
        let start = std::time::Instant::now();
        for t in 0..100 {
            s.recv("a", t, sp, T0).unwrap();
            let e = s.take_effects();
            for d in &e.deliveries {
                for it in &d.batch.items {
                    s.done(ReqKey::of(it), 0, T0);
                }
            }
            s.take_effects();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(s.waiting_counts()[0], 100_000 - 1000);
    }

    #[test]
    fn validate_rejects_bad_items() {
        let s = Scheduler::new(cfg());
        assert!(
            s.validate(&item(A, 1), 0)
                .unwrap_err()
                .contains("archive id 0")
        );
        assert!(
            s.validate(&item(23, 1), 1)
                .unwrap_err()
                .contains("cannot be queued")
        );
        let mut big = item(A, 1);
        big.data = vec![0; HAL_MAXSIZE];
        assert!(s.validate(&big, 1).is_err());
        assert_eq!(s.validate(&item(R, 1), 1), Ok(Kind::Restore));
    }

    fn expiring(ms: u64) -> Scheduler {
        Scheduler::new(SchedConfig {
            waiting_expiry_ms: Some(ms),
            ..cfg()
        })
    }

    #[test]
    fn expiry_is_ninety_percent_of_the_mdt_timeout() {
        assert_eq!(SchedConfig::expiry_for_mdt_timeout(0), None);
        assert_eq!(SchedConfig::expiry_for_mdt_timeout(3600), Some(3_240_000));
        assert_eq!(SchedConfig::expiry_for_mdt_timeout(1), Some(900));
    }

    #[test]
    fn waiting_requests_expire_and_are_reported_timed_out() {
        let mut s = expiring(500);
        // rec(n) is received at T0 + n.
        for (a, n) in [(A, 1), (R, 2), (X, 3)] {
            s.offer(rec(a, n, 1), T0, true);
        }
        s.take_effects();
        assert_eq!(s.next_deadline(), Some(T0 + 501));
        // Just before: nothing.
        assert!(s.tick(T0 + 500).is_empty());
        assert!(s.take_effects().is_empty());
        let x = s.tick(T0 + 502);
        assert_eq!(
            x,
            vec![
                Expired {
                    key: ReqKey::of(&item(A, 1)),
                    fid: fid(1),
                    kind: Kind::Archive,
                    archive_id: 1,
                    age_ms: 501,
                },
                Expired {
                    key: ReqKey::of(&item(R, 2)),
                    fid: fid(2),
                    kind: Kind::Restore,
                    archive_id: 1,
                    age_ms: 500,
                },
            ]
        );
        let e = s.take_effects();
        // Deleted from the store, reported with the original item.
        assert_eq!(
            e.dirty,
            vec![ReqKey::of(&item(A, 1)), ReqKey::of(&item(R, 2))]
        );
        assert!(!e.wrote);
        assert_eq!(e.reports.len(), 2);
        assert_eq!(e.reports[0].item, item(A, 1));
        assert_eq!(e.reports[0].errval, libc_errno::ETIMEDOUT);
        assert_eq!(s.record(&ReqKey::of(&item(A, 1))), None);
        assert_eq!(s.waiting_counts(), [0, 0, 1]);
        assert_eq!(s.action_counts()[0].failed, 1);
        assert_eq!(s.action_counts()[1].failed, 1);
        assert_eq!(s.next_deadline(), Some(T0 + 503));
        s.tick(T0 + 503);
        assert_eq!(s.waiting_counts(), [0, 0, 0]);
        assert_eq!(s.next_deadline(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn running_requests_never_expire_and_requeued_ones_do_at_once() {
        let mut s = expiring(500);
        s.offer(rec(A, 1, 1), T0, true);
        s.offer(rec(A, 2, 1), T0, true);
        s.connect("a", None, vec![], &[], T0).unwrap();
        let mut sp = spec();
        sp.limits[0] = Some(1);
        s.recv("a", 1, sp, T0).unwrap();
        s.take_effects();
        // 1 runs, 2 waits. The stale heap entry of 1 is skipped.
        assert_eq!(s.next_deadline(), Some(T0 + 502));
        let x = s.tick(T0 + 600);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].key, ReqKey::of(&item(A, 2)));
        assert_eq!(s.running_counts(), [1, 0, 0]);
        assert_eq!(s.next_deadline(), None);
        // Its agent goes away; after the grace period (1000 ms) the request
        // is requeued, already past its expiry: dropped in the same tick,
        // never handed out to the agent waiting there.
        s.take_effects();
        s.disconnect("a", T0 + 600);
        s.connect("b", None, vec![], &[], T0 + 600).unwrap();
        s.recv("b", 2, spec(), T0 + 600).unwrap();
        assert!(s.take_effects().deliveries.is_empty());
        assert_eq!(s.next_deadline(), Some(T0 + 1600));
        let x = s.tick(T0 + 1600);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].key, ReqKey::of(&item(A, 1)));
        assert_eq!(x[0].age_ms, 1599);
        let e = s.take_effects();
        assert!(e.deliveries.is_empty());
        assert_eq!(e.reports.len(), 1);
        assert_eq!(e.reports[0].errval, libc_errno::ETIMEDOUT);
        assert!(s.is_empty());
    }

    #[test]
    fn replayed_requests_keep_their_receive_time_for_expiry() {
        let mut s = expiring(500);
        // Replayed long after receipt: expires at the first tick.
        s.offer(rec(A, 1, 1), T0 + 10_000, false);
        let mut r = rec(A, 2, 1);
        r.received_at_ms = T0 + 9_900;
        s.offer(r, T0 + 10_000, false);
        assert_eq!(s.next_deadline(), Some(T0 + 501));
        let x = s.tick(T0 + 10_000);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].age_ms, 9_999);
        assert_eq!(s.next_deadline(), Some(T0 + 10_400));
        // Without expiry nothing ever expires.
        let mut s = Scheduler::new(cfg());
        s.offer(rec(A, 1, 1), T0, true);
        assert!(s.tick(u64::MAX).is_empty());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn queue_rejects_archive_ids_not_registered() {
        let s = Scheduler::new(SchedConfig {
            archive_ids: vec![1, 3],
            ..cfg()
        });
        assert_eq!(s.validate(&item(A, 1), 3), Ok(Kind::Archive));
        let err = s.validate(&item(A, 1), 2).unwrap_err();
        assert!(
            err.contains("archive id 2") && err.contains("registered"),
            "{err}"
        );
        // Registered for all: any id but 0.
        let s = Scheduler::new(cfg());
        assert_eq!(s.validate(&item(A, 1), 2), Ok(Kind::Archive));
    }
}
