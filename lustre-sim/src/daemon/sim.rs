//! The simulator's state machine: files and their HSM flags, per-MDT request
//! tables, agents, dispatch, and the checks the kernel makes.
//!
//! Everything here runs under one mutex held by the server (see
//! [`super::Daemon`]); nothing blocks except small local file operations.
//! Times are passed in as Unix milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use lustre_bindings::action::flags::*;
use lustre_bindings::{ActionItem, ActiveRequest, Extent, HsmAction};
use serde::{Deserialize, Serialize};

use super::records::Records;
use crate::paths::{self, STATE_DIR};
use crate::wire::{HsmState, Progress, UserItem, WireFid};

/// FID of the mount root, as on real Lustre.
pub const ROOT_FID: WireFid = WireFid {
    seq: 0x200000007,
    oid: 1,
    ver: 0,
};
/// First FID sequence of MDT0.
pub const FID_SEQ_BASE: u64 = 0x200000400;
/// Distance between the FID sequences of consecutive MDTs.
pub const FID_SEQ_STRIDE: u64 = 0x40000;

const EPERM: i32 = libc::EPERM;
const ENOENT: i32 = libc::ENOENT;
const EINVAL: i32 = libc::EINVAL;

/// Negative errno result.
pub type Errno<T> = Result<T, i32>;

/// What COPY_START gives back: the ARCHIVE source (relative path) or the
/// RESTORE volatile file (absolute path, FID).
pub type CopyStarted = (Option<String>, Option<(PathBuf, WireFid)>);

/// `(size, mtime in ns)`: our stand-in for Lustre's data version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataVersion {
    /// File size.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

impl DataVersion {
    fn of(md: &fs::Metadata) -> Self {
        DataVersion {
            size: md.len(),
            mtime_ns: md.mtime().saturating_mul(1_000_000_000) + md.mtime_nsec(),
        }
    }
}

/// One file known to the simulator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileRec {
    /// Its FID.
    pub fid: WireFid,
    /// Path relative to the root.
    pub rel: String,
    /// Inode number when the FID was assigned (detects replaced files).
    pub ino: u64,
    /// `HS_*` flags.
    pub states: u32,
    /// Archive id (0: none yet).
    pub archive_id: u32,
    /// Data version of the archived copy.
    pub archived_dv: Option<DataVersion>,
    /// A restore target under `.lustre-sim/volatile/`.
    pub volatile: bool,
}

/// Status of a request record (`enum agent_req_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not dispatched yet.
    Waiting,
    /// Sent to an agent.
    Started,
    /// Done.
    Succeed,
    /// Failed.
    Failed,
    /// Cancelled (by a user, a purge or a timeout).
    Canceled,
}

impl Status {
    /// The kernel's name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Started => "STARTED",
            Status::Succeed => "SUCCEED",
            Status::Failed => "FAILED",
            Status::Canceled => "CANCELED",
        }
    }

    fn finished(self) -> bool {
        matches!(self, Status::Succeed | Status::Failed | Status::Canceled)
    }
}

/// One request record (an `llog_agent_req_rec` plus the in-memory part).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// llog index.
    pub idx: u32,
    /// Cookie, unique per MDT.
    pub cookie: u64,
    /// `HSMA_*`.
    pub action: u32,
    /// The file.
    pub fid: WireFid,
    /// Data FID (volatile FID for a restore once started).
    pub dfid: WireFid,
    /// Extent offset.
    pub offset: u64,
    /// Extent length.
    pub length: u64,
    /// Archive id.
    pub archive_id: u32,
    /// Request flags.
    pub flags: u64,
    /// User data.
    pub data: Vec<u8>,
    /// Status.
    pub status: Status,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Last status change (ms).
    pub changed_ms: u64,
    /// Last progress/update (ms), for the timeout.
    pub updated_ms: u64,
    /// In the in-memory active list (counts against `max_requests`).
    pub active: bool,
    /// A cancel is attached.
    pub canceled: bool,
    /// UUID of the agent it was sent to.
    pub uuid: String,
    /// Bytes reported done.
    pub done: u64,
    /// Data version sampled at COPY_START (archive).
    pub dv_start: Option<DataVersion>,
    /// Agent holding it (runtime only).
    #[serde(skip)]
    pub agent: Option<u64>,
}

impl Record {
    fn item(&self) -> ActionItem {
        ActionItem {
            action: HsmAction::from_u32(self.action),
            fid: self.fid.into(),
            dfid: self.dfid.into(),
            extent: Extent {
                offset: self.offset,
                length: self.length,
            },
            cookie: self.cookie,
            gid: 0,
            data: self.data.clone(),
        }
    }

    /// The `active_requests` line for this record.
    pub fn active_line(&self) -> String {
        ActiveRequest {
            fid: self.fid.into(),
            dfid: self.dfid.into(),
            compound_id: 0,
            cookie: self.cookie,
            action: HsmAction::from_u32(self.action),
            archive_id: self.archive_id,
            flags: self.flags,
            extent: Extent {
                offset: self.offset,
                length: self.length,
            },
            gid: 0,
            data: self.data.clone(),
            canceled: self.canceled,
            uuid: self.uuid.clone(),
            done: self.done,
        }
        .to_string()
    }

    /// The `hsm/actions` (llog dump) line for this record.
    pub fn actions_line(&self, catalog: u32) -> String {
        let len = (136 + self.data.len()).div_ceil(8) * 8;
        format!(
            "lrh=[type=10680000 len={len} idx={catalog}/{}] fid={} dfid={} compound/cookie={:#x}/{:#x} action={} archive#={} flags={:#x} extent={:#x}-{:#x} gid={:#x} datalen={} status={} data=[{}]",
            self.idx,
            self.fid,
            self.dfid,
            0,
            self.cookie,
            HsmAction::from_u32(self.action).name(),
            self.archive_id,
            self.flags,
            self.offset,
            self.length,
            0,
            self.data.len(),
            self.status.name(),
            hex5(&self.data)
        )
    }
}

/// The kernel's 5-byte uppercase hex dump of `hai_data`.
pub fn hex5(data: &[u8]) -> String {
    data.iter().take(5).map(|b| format!("{b:02X}")).collect()
}

/// `hsm_control` state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Running and dispatching.
    Enabled,
    /// Running, recording, not dispatching.
    Disabled,
    /// Stopped (after `shutdown`).
    Stopped,
}

/// Policy bits.
pub const POLICY_NBR: u32 = 0x1;
/// NoRetryAction.
pub const POLICY_NRA: u32 = 0x2;

/// Run-time tunables of one MDT coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tunables {
    /// Max active requests.
    pub max_requests: u64,
    /// Housekeeping period (s).
    pub loop_period: u32,
    /// STARTED timeout (s).
    pub active_request_timeout: u32,
    /// Finished record lifetime (s).
    pub grace_delay: u32,
    /// Archive id for requests with 0.
    pub default_archive_id: u32,
    /// Add a REMOVE on last unlink (recorded, not simulated).
    pub remove_archive_on_last_unlink: u32,
    /// `POLICY_*` bits.
    pub policy: u32,
    /// Coordinator state.
    pub hsm_control: Control,
    /// Request masks (recorded only).
    pub user_request_mask: String,
    /// Group request mask.
    pub group_request_mask: String,
    /// Other request mask.
    pub other_request_mask: String,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            max_requests: 3,
            loop_period: 10,
            active_request_timeout: 3600,
            grace_delay: 60,
            default_archive_id: 1,
            remove_archive_on_last_unlink: 0,
            policy: POLICY_NRA,
            hsm_control: Control::Enabled,
            user_request_mask: "RESTORE".into(),
            group_request_mask: "RESTORE".into(),
            other_request_mask: "RESTORE".into(),
        }
    }
}

/// A CANCEL to send to the agent holding a request.
#[derive(Clone, Debug)]
pub struct PendingCancel {
    /// The agent.
    pub agent: u64,
    /// Archive id of the cancelled request.
    pub archive_id: u32,
    /// The CANCEL item.
    pub item: ActionItem,
}

/// One MDT coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mdt {
    /// Index.
    pub index: u32,
    /// Last cookie handed out.
    pub last_cookie: u64,
    /// Next llog index.
    pub next_idx: u32,
    /// Tunables.
    pub tun: Tunables,
    /// Request records (the llog), indexed.
    pub records: Records,
    /// Cancels to send.
    #[serde(skip)]
    pub pending_cancels: Vec<PendingCancel>,
    /// Last housekeeping pass (ms).
    #[serde(skip)]
    pub last_housekeeping_ms: u64,
}

impl Mdt {
    fn new(index: u32, now_ms: u64) -> Self {
        Mdt {
            index,
            // Seeded from the clock in seconds, like an empty llog.
            last_cookie: now_ms / 1000,
            next_idx: 1,
            tun: Tunables::default(),
            records: Records::new(),
            pending_cancels: Vec::new(),
            last_housekeeping_ms: now_ms,
        }
    }

    /// Active (in-memory) requests.
    pub fn active_count(&self) -> usize {
        self.records.active_count()
    }
}

/// A message for an agent's writer thread.
#[derive(Debug)]
pub struct Outgoing {
    /// The KUC-framed bytes.
    pub frame: Vec<u8>,
    /// `(mdt, cookie)` of the requests it carries (empty for cancels and
    /// shutdown), put back to WAITING if delivery fails.
    pub items: Vec<(u32, u64)>,
}

/// A registered copytool.
#[derive(Debug)]
pub struct Agent {
    /// Internal id.
    pub id: u64,
    /// UUID shown in `hsm/agents` and `active_requests`.
    pub uuid: String,
    /// Archive ids, empty for any.
    pub archives: Vec<u32>,
    /// Queue of its writer thread.
    pub tx: Sender<Outgoing>,
    /// Active requests it holds.
    pub current: u32,
    /// Successful completions.
    pub ok: u32,
    /// Failed completions.
    pub errors: u32,
}

impl Agent {
    fn serves(&self, archive_id: u32) -> bool {
        self.archives.is_empty() || self.archives.contains(&archive_id)
    }
}

#[derive(Deserialize)]
struct Persisted {
    fsname: String,
    files: Vec<FileRec>,
    next_oid: Vec<u32>,
    rr: u64,
    mdts: Vec<Mdt>,
}

/// A copy of the persistent part of a [`Sim`], taken under the lock and
/// written out without it (same JSON layout as the loader reads).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    fsname: String,
    files: Vec<FileRec>,
    next_oid: Vec<u32>,
    rr: u64,
    mdts: Vec<MdtSnapshot>,
}

#[derive(Debug, Serialize)]
struct MdtSnapshot {
    index: u32,
    last_cookie: u64,
    next_idx: u32,
    tun: Tunables,
    records: Vec<Record>,
}

impl Snapshot {
    /// Write as compact JSON.
    pub fn write_json(&self, w: impl std::io::Write) -> Result<(), serde_json::Error> {
        serde_json::to_writer(w, self)
    }
}

/// The whole simulated filesystem and its coordinators.
#[derive(Debug)]
pub struct Sim {
    /// Mount root.
    pub root: PathBuf,
    /// Filesystem name.
    pub fsname: String,
    /// Files by FID.
    pub files: BTreeMap<WireFid, FileRec>,
    /// FID by relative path.
    pub by_path: HashMap<String, WireFid>,
    /// Next object id per MDT.
    pub next_oid: Vec<u32>,
    /// Round-robin counter spreading files over MDTs.
    pub rr: u64,
    /// The coordinators.
    pub mdts: Vec<Mdt>,
    /// Registered agents.
    pub agents: BTreeMap<u64, Agent>,
    /// Next agent id.
    pub next_agent: u64,
    /// Something worth saving changed.
    pub dirty: bool,
    /// `lustre-simd --trace`: one line per item handed out.
    pub tracer: Option<std::sync::Arc<super::trace::Tracer>>,
}

fn errno_of(e: &std::io::Error) -> i32 {
    -e.raw_os_error().unwrap_or(libc::EIO)
}

impl Sim {
    /// A fresh simulator.
    pub fn new(root: &Path, fsname: &str, mdts: u32, now_ms: u64) -> Sim {
        Sim {
            root: root.to_path_buf(),
            fsname: fsname.to_owned(),
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            next_oid: vec![1; mdts as usize],
            rr: 0,
            mdts: (0..mdts).map(|i| Mdt::new(i, now_ms)).collect(),
            agents: BTreeMap::new(),
            next_agent: 1,
            dirty: true,
            tracer: None,
        }
    }

    /// Serialize the persistent part.
    pub fn save_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::new();
        self.snapshot().write_json(&mut out)?;
        Ok(out)
    }

    /// Copy the persistent part (cheaper than serializing it).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            fsname: self.fsname.clone(),
            files: self.files.values().cloned().collect(),
            next_oid: self.next_oid.clone(),
            rr: self.rr,
            mdts: self
                .mdts
                .iter()
                .map(|m| MdtSnapshot {
                    index: m.index,
                    last_cookie: m.last_cookie,
                    next_idx: m.next_idx,
                    tun: m.tun.clone(),
                    records: m.records.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// Rebuild from a saved state. Requests that were STARTED stay STARTED
    /// (and active) until completed or timed out; their agents are gone.
    pub fn load_json(root: &Path, bytes: &[u8], now_ms: u64) -> Result<Sim, String> {
        let p: Persisted = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if p.mdts.is_empty() || p.next_oid.len() != p.mdts.len() {
            return Err("inconsistent MDT count".into());
        }
        let mut sim = Sim::new(root, &p.fsname, p.mdts.len() as u32, now_ms);
        sim.next_oid = p.next_oid;
        sim.rr = p.rr;
        sim.mdts = p.mdts;
        for m in &mut sim.mdts {
            m.last_housekeeping_ms = now_ms;
        }
        for f in p.files {
            sim.by_path.insert(f.rel.clone(), f.fid);
            sim.files.insert(f.fid, f);
        }
        sim.dirty = false;
        Ok(sim)
    }

    // ---- files -----------------------------------------------------------

    /// MDT index of a FID.
    pub fn mdt_of(&self, fid: WireFid) -> Option<usize> {
        if fid == ROOT_FID {
            return Some(0);
        }
        if fid.seq < FID_SEQ_BASE {
            return None;
        }
        let idx = ((fid.seq - FID_SEQ_BASE) / FID_SEQ_STRIDE) as usize;
        (idx < self.mdts.len()).then_some(idx)
    }

    fn alloc_fid(&mut self, mdt: usize) -> WireFid {
        let oid = self.next_oid[mdt];
        self.next_oid[mdt] += 1;
        WireFid {
            seq: FID_SEQ_BASE + mdt as u64 * FID_SEQ_STRIDE,
            oid,
            ver: 0,
        }
    }

    /// FID of a path relative to the root, assigned on first sight.
    pub fn path_to_fid(&mut self, rel: &str) -> Errno<WireFid> {
        if rel.is_empty() {
            return Ok(ROOT_FID);
        }
        let first = rel.split('/').next().unwrap_or_default();
        if first == STATE_DIR {
            // Volatile files are known by FID only.
            return match self.by_path.get(rel) {
                Some(f) => Ok(*f),
                None => Err(-ENOENT),
            };
        }
        if first == ".lustre" {
            return Err(-ENOENT);
        }
        let md = fs::symlink_metadata(self.root.join(rel)).map_err(|e| errno_of(&e))?;
        if let Some(fid) = self.by_path.get(rel) {
            if self.files.get(fid).is_some_and(|f| f.ino == md.ino()) {
                return Ok(*fid);
            }
        }
        let mdt = (self.rr % self.mdts.len() as u64) as usize;
        self.rr += 1;
        let fid = self.alloc_fid(mdt);
        self.files.insert(
            fid,
            FileRec {
                fid,
                rel: rel.to_owned(),
                ino: md.ino(),
                states: 0,
                archive_id: 0,
                archived_dv: None,
                volatile: false,
            },
        );
        self.by_path.insert(rel.to_owned(), fid);
        self.dirty = true;
        Ok(fid)
    }

    /// Path (relative) of a live FID.
    pub fn fid_to_path(&self, fid: WireFid) -> Errno<String> {
        if fid == ROOT_FID {
            return Ok(String::new());
        }
        let f = self.files.get(&fid).ok_or(-ENOENT)?;
        let md = fs::symlink_metadata(self.root.join(&f.rel)).map_err(|_| -ENOENT)?;
        if md.ino() != f.ino || self.by_path.get(&f.rel) != Some(&fid) {
            return Err(-ENOENT);
        }
        Ok(f.rel.clone())
    }

    /// Path and metadata of a live FID, with a single `lstat`.
    fn live(&self, fid: WireFid) -> Errno<(String, fs::Metadata)> {
        let f = self.files.get(&fid).ok_or(-ENOENT)?;
        let md = fs::symlink_metadata(self.root.join(&f.rel)).map_err(|_| -ENOENT)?;
        if md.ino() != f.ino || self.by_path.get(&f.rel) != Some(&fid) {
            return Err(-ENOENT);
        }
        Ok((f.rel.clone(), md))
    }

    fn live_dv(&self, fid: WireFid) -> Option<DataVersion> {
        if fid == ROOT_FID {
            return fs::metadata(&self.root).ok().map(|m| DataVersion::of(&m));
        }
        self.live(fid).ok().map(|(_, md)| DataVersion::of(&md))
    }

    /// Mark a file dirty when its data changed since it was archived.
    fn refresh_dirty(&mut self, fid: WireFid) {
        let candidate = self.files.get(&fid).is_some_and(|f| {
            f.states & HS_ARCHIVED != 0
                && f.states & (HS_RELEASED | HS_DIRTY) == 0
                && f.archived_dv.is_some()
        });
        if !candidate {
            return;
        }
        let dv = self.live_dv(fid);
        if let Some(f) = self.files.get_mut(&fid) {
            if f.states & HS_ARCHIVED != 0
                && f.states & (HS_RELEASED | HS_DIRTY) == 0
                && f.archived_dv.is_some()
                && dv.is_some()
                && dv != f.archived_dv
            {
                f.states |= HS_DIRTY;
                self.dirty = true;
            }
        }
    }

    /// `llapi_hsm_state_get`.
    pub fn state_get(&mut self, fid: WireFid) -> Errno<HsmState> {
        if fid != ROOT_FID && !self.files.contains_key(&fid) {
            return Err(-ENOENT);
        }
        self.refresh_dirty(fid);
        let (states, archive_id) = self
            .files
            .get(&fid)
            .map(|f| (f.states, f.archive_id))
            .unwrap_or((0, 0));
        let mut st = HsmState {
            states,
            archive_id,
            in_progress_state: HPS_NONE,
            in_progress_action: lustre_bindings::action::HSMA_NONE,
            offset: 0,
            length: 0,
        };
        if let Some(m) = self.mdt_of(fid) {
            if let Some(r) = self.mdts[m]
                .records
                .of_fid(fid)
                .find(|r| r.active || r.status == Status::Waiting)
            {
                st.in_progress_state = if r.active { HPS_RUNNING } else { HPS_WAITING };
                st.in_progress_action = r.action;
                st.offset = r.offset;
                st.length = if r.active { r.done } else { 0 };
            }
        }
        Ok(st)
    }

    /// `llapi_hsm_state_set`.
    pub fn state_set(&mut self, fid: WireFid, set: u64, clear: u64, archive_id: u32) -> Errno<()> {
        const ALL: u64 = 0x1ff;
        if (set | clear) & !ALL != 0 || set & clear != 0 {
            return Err(-EINVAL);
        }
        let f = self.files.get_mut(&fid).ok_or(-ENOENT)?;
        f.states = (f.states | set as u32) & !(clear as u32);
        if archive_id != 0 {
            f.archive_id = archive_id;
        }
        self.dirty = true;
        Ok(())
    }

    /// Client-side release: needs ARCHIVED, not DIRTY, not NORELEASE. Drops
    /// the data, keeping size and mtime (a sparse file).
    pub fn release(&mut self, fid: WireFid) -> Errno<()> {
        self.refresh_dirty(fid);
        let rel = self.fid_to_path(fid)?;
        let f = self.files.get(&fid).ok_or(-ENOENT)?;
        if f.states & HS_RELEASED != 0 {
            return Ok(());
        }
        if f.states & HS_ARCHIVED == 0 || f.states & (HS_DIRTY | HS_NORELEASE | HS_LOST) != 0 {
            return Err(-EPERM);
        }
        let path = self.root.join(rel);
        let md = fs::metadata(&path).map_err(|e| errno_of(&e))?;
        if !md.is_file() {
            return Err(-EINVAL);
        }
        let file = File::options()
            .write(true)
            .open(&path)
            .map_err(|e| errno_of(&e))?;
        file.set_len(0).map_err(|e| errno_of(&e))?;
        file.set_len(md.len()).map_err(|e| errno_of(&e))?;
        let mtime = md.modified().map_err(|e| errno_of(&e))?;
        file.set_times(FileTimes::new().set_modified(mtime))
            .map_err(|e| errno_of(&e))?;
        let dv = fs::metadata(&path).map(|m| DataVersion::of(&m)).ok();
        let f = self.files.get_mut(&fid).ok_or(-ENOENT)?;
        f.states |= HS_RELEASED;
        f.archived_dv = dv;
        self.dirty = true;
        Ok(())
    }

    /// `llapi_hsm_import`: a new released, archived file.
    pub fn import(
        &mut self,
        rel: &str,
        archive_id: u32,
        size: u64,
        mode: u32,
        mtime: i64,
    ) -> Errno<WireFid> {
        let path = self.root.join(rel);
        if rel.is_empty() || rel.starts_with(STATE_DIR) || path.exists() {
            return Err(-libc::EEXIST);
        }
        let file = File::create_new(&path).map_err(|e| errno_of(&e))?;
        file.set_len(size).map_err(|e| errno_of(&e))?;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
        file.set_times(FileTimes::new().set_modified(t))
            .map_err(|e| errno_of(&e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(fs::Permissions::from_mode(mode & 0o7777));
        drop(file);
        let fid = self.path_to_fid(rel)?;
        let dv = self.live_dv(fid);
        let f = self.files.get_mut(&fid).ok_or(-ENOENT)?;
        f.states = HS_EXISTS | HS_ARCHIVED | HS_RELEASED;
        f.archive_id = archive_id;
        f.archived_dv = dv;
        Ok(fid)
    }

    // ---- requests --------------------------------------------------------

    fn needed(action: u32, states: u32) -> bool {
        match HsmAction::from_u32(action) {
            HsmAction::Archive => states & HS_DIRTY != 0 || states & HS_ARCHIVED == 0,
            HsmAction::Restore => states & (HS_RELEASED | HS_DIRTY) != 0,
            HsmAction::Remove => states & (HS_ARCHIVED | HS_EXISTS) != 0,
            _ => true,
        }
    }

    fn compat(action: u32, states: u32, file_archive: u32, archive_id: u32) -> bool {
        match HsmAction::from_u32(action) {
            HsmAction::Archive => {
                states & HS_NOARCHIVE == 0
                    && (states & HS_DIRTY != 0 || states & HS_ARCHIVED == 0)
                    && (states & HS_EXISTS == 0 || file_archive == 0 || file_archive == archive_id)
            }
            HsmAction::Restore => {
                states & HS_RELEASED != 0
                    && states & HS_ARCHIVED != 0
                    && states & (HS_DIRTY | HS_LOST) == 0
            }
            HsmAction::Remove => {
                states & HS_RELEASED == 0 && states & (HS_ARCHIVED | HS_EXISTS) != 0
            }
            _ => true,
        }
    }

    /// A user request (`LL_IOC_HSM_REQUEST`). Returns the cookies created.
    pub fn hsm_request(
        &mut self,
        action: u32,
        archive_id: u32,
        flags: u64,
        items: &[UserItem],
        data: &[u8],
        now_ms: u64,
    ) -> Errno<Vec<u64>> {
        let hsma = match action {
            HUA_ARCHIVE => lustre_bindings::action::HSMA_ARCHIVE,
            HUA_RESTORE => lustre_bindings::action::HSMA_RESTORE,
            HUA_REMOVE => lustre_bindings::action::HSMA_REMOVE,
            HUA_CANCEL => lustre_bindings::action::HSMA_CANCEL,
            _ => return Err(-EINVAL),
        };
        if items.is_empty() || data.len() > 4096 {
            return Err(-EINVAL);
        }
        if flags & !(HSM_FORCE_ACTION | HSM_GHOST_COPY | HSM_REQ_BLOCKING) != 0 {
            return Err(-EINVAL);
        }
        // Validate everything first so a bad item fails the whole request.
        let mut plan = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        for it in items {
            if !seen.insert(it.fid) {
                continue; // duplicate FIDs are dropped
            }
            let m = self.mdt_of(it.fid).ok_or(-ENOENT)?;
            if self.mdts[m].tun.hsm_control == Control::Stopped {
                return Err(-libc::EAGAIN);
            }
            if !self.files.contains_key(&it.fid) {
                return Err(-ENOENT);
            }
            if hsma == lustre_bindings::action::HSMA_RESTORE && it.offset != 0 {
                return Err(-libc::EPROTO);
            }
            self.refresh_dirty(it.fid);
            let f = &self.files[&it.fid];
            let arch = if archive_id != 0 {
                archive_id
            } else if f.archive_id != 0 {
                f.archive_id
            } else {
                self.mdts[m].tun.default_archive_id
            };
            if hsma == lustre_bindings::action::HSMA_CANCEL {
                plan.push((m, *it, arch));
                continue;
            }
            if flags & HSM_FORCE_ACTION == 0 && !Self::needed(hsma, f.states) {
                continue;
            }
            if !Self::compat(hsma, f.states, f.archive_id, arch) {
                return Err(-EPERM);
            }
            // A second RESTORE of a FID being restored is absorbed.
            if hsma == lustre_bindings::action::HSMA_RESTORE
                && self.mdts[m].records.of_fid(it.fid).any(|r| {
                    r.action == hsma && (r.status == Status::Waiting || r.active) && !r.canceled
                })
            {
                continue;
            }
            plan.push((m, *it, arch));
        }
        let mut cookies = Vec::new();
        for (m, it, arch) in plan {
            if hsma == lustre_bindings::action::HSMA_CANCEL {
                self.cancel_fid(m, it.fid, now_ms);
                continue;
            }
            let mdt = &mut self.mdts[m];
            mdt.last_cookie += 1;
            let cookie = mdt.last_cookie;
            let idx = mdt.next_idx;
            mdt.next_idx += 1;
            mdt.records.insert(Record {
                idx,
                cookie,
                action: hsma,
                fid: it.fid,
                dfid: it.fid,
                offset: it.offset,
                length: it.length,
                archive_id: arch,
                flags,
                data: data.to_vec(),
                status: Status::Waiting,
                created_ms: now_ms,
                changed_ms: now_ms,
                updated_ms: now_ms,
                active: false,
                canceled: false,
                uuid: String::new(),
                done: 0,
                dv_start: None,
                agent: None,
            });
            cookies.push(cookie);
        }
        self.dirty = true;
        Ok(cookies)
    }

    /// HUA_CANCEL of one FID: a WAITING request just becomes CANCELED; an
    /// active one gets the cancel attached and a CANCEL item queued for
    /// the agent holding it.
    fn cancel_fid(&mut self, m: usize, fid: WireFid, now_ms: u64) {
        let mdt = &mut self.mdts[m];
        for idx in mdt.records.idxs_of_fid(fid) {
            let cancel = mdt.records.update(idx, |r| {
                if r.canceled {
                    return None;
                }
                if r.status == Status::Waiting && !r.active {
                    r.status = Status::Canceled;
                    r.changed_ms = now_ms;
                } else if r.active {
                    r.canceled = true;
                    r.status = Status::Canceled;
                    r.changed_ms = now_ms;
                    if let Some(agent) = r.agent {
                        let mut item = r.item();
                        item.action = HsmAction::Cancel;
                        return Some(PendingCancel {
                            agent,
                            archive_id: r.archive_id,
                            item,
                        });
                    }
                }
                None
            });
            if let Some(Some(c)) = cancel {
                mdt.pending_cancels.push(c);
            }
        }
    }

    fn leave_active(&mut self, m: usize, cookie: u64, ok: bool) {
        let mdt = &mut self.mdts[m];
        let Some(idx) = mdt.records.active_idx(cookie) else {
            return;
        };
        let agent = mdt.records.update(idx, |r| {
            r.active = false;
            r.agent.take()
        });
        {
            if let Some(a) = agent.flatten().and_then(|a| self.agents.get_mut(&a)) {
                a.current = a.current.saturating_sub(1);
                if ok {
                    a.ok += 1;
                } else {
                    a.errors += 1;
                }
            }
        }
    }

    fn check_running(&self, m: usize) -> Errno<()> {
        if self.mdts[m].tun.hsm_control == Control::Stopped {
            return Err(-libc::EAGAIN);
        }
        Ok(())
    }

    /// `LL_IOC_HSM_COPY_START`.
    pub fn copy_start(
        &mut self,
        cookie: u64,
        fid: WireFid,
        action: u32,
        now_ms: u64,
    ) -> Errno<CopyStarted> {
        let m = self.mdt_of(fid).ok_or(-EINVAL)?;
        self.check_running(m)?;
        let idx = self.mdts[m].records.active_idx(cookie).ok_or(-ENOENT)?;
        {
            let rec = self.mdts[m].records.get(idx).ok_or(-ENOENT)?;
            if rec.fid != fid && rec.dfid != fid {
                return Err(-EINVAL);
            }
            if rec.action != action {
                return Err(-EINVAL);
            }
        }
        self.mdts[m].records.update(idx, |r| r.updated_ms = now_ms);
        match HsmAction::from_u32(action) {
            HsmAction::Archive => {
                let (rel, md) = self.live(fid)?;
                let dv = Some(DataVersion::of(&md));
                self.mdts[m].records.update(idx, |r| r.dv_start = dv);
                Ok((Some(rel), None))
            }
            HsmAction::Restore => {
                self.fid_to_path(fid)?;
                let vfid = self.alloc_fid(m);
                let name = format!("{:x}-{:x}", cookie, vfid.oid);
                let dir = paths::volatile_dir(&self.root);
                fs::create_dir_all(&dir).map_err(|e| errno_of(&e))?;
                let path = dir.join(&name);
                File::create(&path).map_err(|e| errno_of(&e))?;
                let ino = fs::metadata(&path).map_err(|e| errno_of(&e))?.ino();
                let rel = format!("{STATE_DIR}/volatile/{name}");
                self.files.insert(
                    vfid,
                    FileRec {
                        fid: vfid,
                        rel: rel.clone(),
                        ino,
                        states: 0,
                        archive_id: 0,
                        archived_dv: None,
                        volatile: true,
                    },
                );
                self.by_path.insert(rel, vfid);
                self.mdts[m].records.update(idx, |r| r.dfid = vfid);
                self.dirty = true;
                Ok((None, Some((path, vfid))))
            }
            _ => Ok((None, None)),
        }
    }

    /// `LL_IOC_HSM_PROGRESS` (`end` false) or `LL_IOC_HSM_COPY_END`.
    pub fn progress(&mut self, p: Progress, end: bool, now_ms: u64) -> Errno<()> {
        let m = self.mdt_of(p.fid).ok_or(-EINVAL)?;
        self.check_running(m)?;
        let policy = self.mdts[m].tun.policy;
        let idx = self.mdts[m].records.active_idx(p.cookie).ok_or(-ENOENT)?;
        let rec = self.mdts[m].records.get(idx).ok_or(-ENOENT)?;
        let is_data = matches!(
            HsmAction::from_u32(rec.action),
            HsmAction::Archive | HsmAction::Restore
        );
        if is_data && rec.fid != p.fid && rec.dfid != p.fid {
            return Err(-EINVAL);
        }
        let flags = if end {
            p.flags | HP_FLAG_COMPLETED as u32
        } else {
            p.flags
        };
        if p.errval != 0 && flags & HP_FLAG_COMPLETED as u32 == 0 {
            return Err(-EINVAL);
        }
        if flags & HP_FLAG_COMPLETED as u32 == 0 {
            return self.mdts[m]
                .records
                .update(idx, |rec| {
                    rec.updated_ms = now_ms;
                    if rec.canceled {
                        return Err(-libc::ECANCELED);
                    }
                    if p.length != u64::MAX {
                        rec.done = rec.done.saturating_add(p.length);
                    }
                    Ok(())
                })
                .unwrap_or(Err(-ENOENT));
        }
        // Completion.
        let rec = rec.clone();
        let action = HsmAction::from_u32(rec.action);
        let mut status;
        let mut rc = Ok(());
        let errval = p.errval as i32;
        if errval == 0 {
            status = Status::Succeed;
            match action {
                HsmAction::Archive => {
                    let now_dv = self.live_dv(rec.fid);
                    if rec.dv_start.is_some() && now_dv != rec.dv_start {
                        status = Status::Failed;
                        rc = Err(-libc::EBUSY);
                        if let Some(f) = self.files.get_mut(&rec.fid) {
                            if f.states & HS_ARCHIVED != 0 {
                                f.states |= HS_DIRTY;
                            }
                        }
                    } else if let Some(f) = self.files.get_mut(&rec.fid) {
                        f.states |= HS_ARCHIVED | HS_EXISTS;
                        f.states &= !(HS_DIRTY | HS_LOST);
                        f.archive_id = rec.archive_id;
                        f.archived_dv = rec.dv_start.or(now_dv);
                    }
                }
                HsmAction::Restore => {
                    if let Err(e) = self.swap_in(&rec) {
                        status = Status::Failed;
                        rc = Err(e);
                    }
                }
                HsmAction::Remove => {
                    if let Some(f) = self.files.get_mut(&rec.fid) {
                        f.states &= !(HS_ARCHIVED | HS_EXISTS | HS_LOST);
                        f.archived_dv = None;
                    }
                }
                _ => {}
            }
        } else if errval == libc::ECANCELED {
            status = Status::Canceled;
        } else if errval == libc::ENOSYS {
            status = Status::Failed;
        } else if p.flags & HP_FLAG_RETRY as u32 != 0
            && policy & POLICY_NRA == 0
            && self.files.contains_key(&rec.fid)
        {
            status = Status::Waiting;
        } else {
            status = Status::Failed;
            if action == HsmAction::Archive && errval != libc::EALREADY {
                if let Some(f) = self.files.get_mut(&rec.fid) {
                    if f.states & HS_ARCHIVED != 0 {
                        f.states |= HS_DIRTY;
                    }
                }
            }
        }
        if action == HsmAction::Restore && status != Status::Succeed {
            self.drop_volatile(rec.dfid);
        }
        if rec.canceled {
            // A cancelled request stays CANCELED.
            status = Status::Canceled;
        }
        self.leave_active(m, p.cookie, status == Status::Succeed);
        self.mdts[m].records.update(rec.idx, |r| {
            r.updated_ms = now_ms;
            r.status = status;
            r.changed_ms = now_ms;
            if status == Status::Waiting {
                r.uuid.clear();
                r.dfid = r.fid;
            }
        });
        self.dirty = true;
        rc
    }

    fn drop_volatile(&mut self, vfid: WireFid) {
        if let Some(v) = self.files.get(&vfid) {
            if v.volatile {
                let _ = fs::remove_file(self.root.join(&v.rel));
                self.by_path.remove(&v.rel);
                self.files.remove(&vfid);
            }
        }
    }

    /// Successful restore: the volatile file replaces the original (same
    /// FID, new data), with the original's times.
    fn swap_in(&mut self, rec: &Record) -> Errno<()> {
        let rel = self.fid_to_path(rec.fid)?;
        let v = self
            .files
            .get(&rec.dfid)
            .filter(|v| v.volatile)
            .ok_or(-EINVAL)?
            .clone();
        let orig = self.root.join(&rel);
        let vpath = self.root.join(&v.rel);
        let md = fs::metadata(&orig).map_err(|e| errno_of(&e))?;
        let vf = File::options()
            .write(true)
            .open(&vpath)
            .map_err(|e| errno_of(&e))?;
        let mut times = FileTimes::new();
        if let Ok(t) = md.modified() {
            times = times.set_modified(t);
        }
        if let Ok(t) = md.accessed() {
            times = times.set_accessed(t);
        }
        vf.set_times(times).map_err(|e| errno_of(&e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = vf.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777));
        drop(vf);
        fs::rename(&vpath, &orig).map_err(|e| errno_of(&e))?;
        let nmd = fs::metadata(&orig).map_err(|e| errno_of(&e))?;
        self.by_path.remove(&v.rel);
        self.files.remove(&rec.dfid);
        let f = self.files.get_mut(&rec.fid).ok_or(-ENOENT)?;
        f.ino = nmd.ino();
        f.states &= !(HS_RELEASED | HS_DIRTY);
        f.archived_dv = Some(DataVersion::of(&nmd));
        Ok(())
    }

    // ---- agents and dispatch ----------------------------------------------

    /// Add an agent; returns its id.
    pub fn add_agent(&mut self, uuid: String, archives: Vec<u32>, tx: Sender<Outgoing>) -> u64 {
        let id = self.next_agent;
        self.next_agent += 1;
        self.agents.insert(
            id,
            Agent {
                id,
                uuid,
                archives,
                tx,
                current: 0,
                ok: 0,
                errors: 0,
            },
        );
        id
    }

    /// Remove an agent. Its active requests stay active (until completed by
    /// anyone, or timed out).
    pub fn remove_agent(&mut self, id: u64) -> bool {
        self.agents.remove(&id).is_some()
    }

    /// A delivery to an agent failed: unregister it and put what it carried
    /// back to WAITING.
    pub fn delivery_failed(&mut self, agent: u64, items: &[(u32, u64)]) {
        self.remove_agent(agent);
        for &(m, cookie) in items {
            if let Some(mdt) = self.mdts.get_mut(m as usize) {
                if let Some(idx) = mdt.records.active_idx(cookie) {
                    mdt.records.update(idx, |r| {
                        r.active = false;
                        r.agent = None;
                        r.uuid.clear();
                        if r.status == Status::Started {
                            r.status = Status::Waiting;
                        }
                    });
                }
            }
        }
        self.dirty = true;
    }

    /// Whether a dispatch pass could do anything: WAITING records or
    /// cancels to send (so that completions do not wake the dispatcher
    /// for nothing).
    pub fn dispatch_pending(&self) -> bool {
        self.mdts
            .iter()
            .any(|m| !m.pending_cancels.is_empty() || m.records.waiting_idxs().next().is_some())
    }

    /// One dispatch pass over every MDT.
    pub fn dispatch(&mut self, now_ms: u64) {
        for m in 0..self.mdts.len() {
            self.dispatch_mdt(m, now_ms);
        }
    }

    fn send(
        &mut self,
        agent: u64,
        hal: &lustre_bindings::ActionList,
        items: Vec<(u32, u64)>,
    ) -> bool {
        let Some(a) = self.agents.get(&agent) else {
            return false;
        };
        let frame = match hal
            .encode()
            .map_err(|e| e.to_string())
            .and_then(|b| lustre_bindings::kuc::frame_hal(&b).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an action list");
                return false;
            }
        };
        a.tx.send(Outgoing { frame, items }).is_ok()
    }

    fn dispatch_mdt(&mut self, m: usize, now_ms: u64) {
        if self.mdts[m].tun.hsm_control != Control::Enabled {
            return;
        }
        let cancels = std::mem::take(&mut self.mdts[m].pending_cancels);
        for c in cancels {
            let hal = lustre_bindings::ActionList {
                flags: 0,
                archive_id: c.archive_id,
                fsname: self.fsname.clone(),
                items: vec![c.item],
            };
            self.send(c.agent, &hal, Vec::new());
        }
        let max = self.mdts[m].tun.max_requests as usize;
        let active = self.mdts[m].active_count();
        if active >= max || self.agents.is_empty() {
            return;
        }
        let mut slots = max - active;
        // WAITING records in llog order; each (archive id, flags) group
        // goes to the agent serving its archive id with the fewest active
        // requests. Groups without an agent stay WAITING.
        struct Group {
            key: (u32, u64),
            agent: Option<u64>,
            idxs: Vec<u32>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut failed = Vec::new();
        for idx in self.mdts[m].records.waiting_idxs() {
            if slots == 0 {
                break;
            }
            let Some(r) = self.mdts[m].records.get(idx) else {
                continue;
            };
            let key = (r.archive_id, r.flags);
            let g = match groups.iter().position(|g| g.key == key) {
                Some(g) => g,
                None => {
                    let agent = self
                        .agents
                        .values()
                        .filter(|a| a.serves(key.0))
                        .min_by_key(|a| a.current)
                        .map(|a| a.id);
                    groups.push(Group {
                        key,
                        agent,
                        idxs: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            if groups[g].agent.is_none() {
                continue;
            }
            // Revalidate against the file's current flags.
            let ok = match self.files.get(&r.fid) {
                Some(f) => Self::compat(r.action, f.states, f.archive_id, key.0),
                None => r.action == lustre_bindings::action::HSMA_REMOVE,
            };
            if !ok {
                failed.push(idx);
                continue;
            }
            groups[g].idxs.push(idx);
            slots -= 1;
        }
        for idx in failed {
            self.mdts[m].records.update(idx, |r| {
                r.status = Status::Failed;
                r.changed_ms = now_ms;
            });
            self.dirty = true;
        }
        for g in groups {
            let (Some(agent), false) = (g.agent, g.idxs.is_empty()) else {
                continue;
            };
            let (archive_id, flags) = g.key;
            let uuid = self.agents[&agent].uuid.clone();
            let mut items: Vec<(u32, ActionItem)> = Vec::with_capacity(g.idxs.len());
            for &idx in &g.idxs {
                let Some((fid, action)) = self.mdts[m].records.get(idx).map(|r| (r.fid, r.action))
                else {
                    continue;
                };
                if action == lustre_bindings::action::HSMA_ARCHIVE {
                    if let Some(f) = self.files.get_mut(&fid) {
                        f.states |= HS_EXISTS;
                        f.archive_id = archive_id;
                    }
                }
                let item = self.mdts[m].records.update(idx, |r| {
                    r.status = Status::Started;
                    r.active = true;
                    r.agent = Some(agent);
                    r.uuid.clone_from(&uuid);
                    r.changed_ms = now_ms;
                    r.updated_ms = now_ms;
                    r.done = 0;
                    r.item()
                });
                if let Some(item) = item {
                    items.push((archive_id, item));
                }
            }
            let count = items.len();
            let hals = match lustre_bindings::split_into_hals(
                &self.fsname,
                flags,
                items,
                lustre_bindings::hal::MDT_HAL_MAX,
            ) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build action lists");
                    for &idx in &g.idxs {
                        self.mdts[m].records.update(idx, |r| {
                            r.status = Status::Failed;
                            r.active = false;
                            r.agent = None;
                        });
                    }
                    continue;
                }
            };
            if let Some(a) = self.agents.get_mut(&agent) {
                a.current += count as u32;
            }
            for hal in hals {
                let carried: Vec<(u32, u64)> =
                    hal.items.iter().map(|it| (m as u32, it.cookie)).collect();
                tracing::debug!(
                    mdt = m,
                    agent,
                    items = hal.items.len(),
                    archive_id,
                    "dispatching an action list"
                );
                if let Some(t) = &self.tracer {
                    t.handed_out(hal.items.iter().map(|it| (it.cookie, it.fid)));
                }
                if !self.send(agent, &hal, carried.clone()) {
                    self.delivery_failed(agent, &carried);
                }
            }
            self.dirty = true;
        }
    }

    /// Timeouts and purge of finished records, for MDTs whose
    /// `loop_period` elapsed (or all with `force`).
    pub fn housekeeping(&mut self, now_ms: u64, force: bool) {
        for m in 0..self.mdts.len() {
            let tun = self.mdts[m].tun.clone();
            if tun.hsm_control == Control::Stopped {
                continue;
            }
            if !force && now_ms < self.mdts[m].last_housekeeping_ms + tun.loop_period as u64 * 1000
            {
                continue;
            }
            self.mdts[m].last_housekeeping_ms = now_ms;
            let timeout = tun.active_request_timeout as u64 * 1000;
            let expired: Vec<(u32, u64, u32, WireFid)> = self.mdts[m]
                .records
                .active()
                .filter(|r| now_ms.saturating_sub(r.updated_ms) >= timeout)
                .map(|r| (r.idx, r.cookie, r.action, r.dfid))
                .collect();
            for (idx, cookie, action, dfid) in expired {
                tracing::info!(
                    mdt = m,
                    cookie = format_args!("{cookie:#x}"),
                    "request timed out"
                );
                self.leave_active(m, cookie, false);
                self.mdts[m].records.update(idx, |r| {
                    r.status = Status::Canceled;
                    r.changed_ms = now_ms;
                });
                if action == lustre_bindings::action::HSMA_RESTORE {
                    self.drop_volatile(dfid);
                }
                self.dirty = true;
            }
            let grace = tun.grace_delay as u64 * 1000;
            let removed = self.mdts[m].records.retain(|r| {
                r.active || !r.status.finished() || now_ms.saturating_sub(r.changed_ms) < grace
            });
            if removed != 0 {
                self.dirty = true;
            }
        }
    }

    /// `hsm_control=purge`: cancel everything.
    fn purge(&mut self, m: usize, now_ms: u64) {
        let recs = &self.mdts[m].records;
        let mut fids: Vec<WireFid> = recs
            .active()
            .map(|r| r.fid)
            .chain(
                recs.waiting_idxs()
                    .filter_map(|i| recs.get(i))
                    .map(|r| r.fid),
            )
            .collect();
        fids.sort_unstable();
        fids.dedup();
        for fid in fids {
            self.cancel_fid(m, fid, now_ms);
        }
    }

    // ---- parameters --------------------------------------------------------

    fn mdt_name(&self, m: usize) -> String {
        format!("{}-MDT{:04x}", self.fsname, m)
    }

    fn param_names(&self) -> Vec<(String, usize, &'static str)> {
        const HSM: [&str; 17] = [
            "active_request_timeout",
            "active_requests",
            "actions",
            "agents",
            "archive_count",
            "default_archive_id",
            "grace_delay",
            "group_request_mask",
            "loop_period",
            "max_requests",
            "other_request_mask",
            "policy",
            "remove_archive_on_last_unlink",
            "remove_count",
            "restore_count",
            "user_request_mask",
            "hsm_control",
        ];
        let mut out = Vec::new();
        for m in 0..self.mdts.len() {
            for name in HSM {
                let full = if name == "hsm_control" {
                    format!("mdt.{}.hsm_control", self.mdt_name(m))
                } else {
                    format!("mdt.{}.hsm.{name}", self.mdt_name(m))
                };
                out.push((full, m, name));
            }
        }
        out
    }

    fn policy_text(bits: u32) -> String {
        let nbr = if bits & POLICY_NBR != 0 {
            "[NonBlockingRestore]"
        } else {
            "NonBlockingRestore"
        };
        let nra = if bits & POLICY_NRA != 0 {
            "[NoRetryAction]"
        } else {
            "NoRetryAction"
        };
        format!("{nbr} {nra}")
    }

    fn param_value(&mut self, m: usize, name: &str) -> String {
        let count = |mdt: &Mdt, a: u32| mdt.records.active().filter(|r| r.action == a).count();
        let mdt = &self.mdts[m];
        let t = &mdt.tun;
        match name {
            "active_request_timeout" => t.active_request_timeout.to_string(),
            "default_archive_id" => t.default_archive_id.to_string(),
            "grace_delay" => t.grace_delay.to_string(),
            "loop_period" => t.loop_period.to_string(),
            "max_requests" => t.max_requests.to_string(),
            "remove_archive_on_last_unlink" => t.remove_archive_on_last_unlink.to_string(),
            "user_request_mask" => t.user_request_mask.clone(),
            "group_request_mask" => t.group_request_mask.clone(),
            "other_request_mask" => t.other_request_mask.clone(),
            "policy" => Self::policy_text(t.policy),
            "archive_count" => count(mdt, lustre_bindings::action::HSMA_ARCHIVE).to_string(),
            "restore_count" => count(mdt, lustre_bindings::action::HSMA_RESTORE).to_string(),
            "remove_count" => count(mdt, lustre_bindings::action::HSMA_REMOVE).to_string(),
            "hsm_control" => match t.hsm_control {
                Control::Enabled => "enabled",
                Control::Disabled => "disabled",
                Control::Stopped => "stopped",
            }
            .to_owned(),
            "active_requests" => {
                let lines: Vec<String> = mdt.records.active().map(|r| r.active_line()).collect();
                lines.join("\n")
            }
            "actions" => {
                let lines: Vec<String> = mdt.records.iter().map(|r| r.actions_line(1)).collect();
                lines.join("\n")
            }
            "agents" => {
                let lines: Vec<String> = self
                    .agents
                    .values()
                    .map(|a| {
                        let ids = if a.archives.is_empty() {
                            "ANY".to_owned()
                        } else {
                            a.archives
                                .iter()
                                .map(u32::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        };
                        format!(
                            "uuid={} archive_id={} requests=[current:{} ok:{} errors:{}]",
                            a.uuid, ids, a.current, a.ok, a.errors
                        )
                    })
                    .collect();
                lines.join("\n")
            }
            _ => String::new(),
        }
    }

    /// `lctl get_param PATTERN` (`*` and `?` wildcards per dot component).
    pub fn get_params(&mut self, pattern: &str) -> Errno<Vec<(String, String)>> {
        let names = self.param_names();
        let mut out = Vec::new();
        for (full, m, name) in names {
            if glob(pattern, &full) {
                let v = self.param_value(m, name);
                out.push((full, v));
            }
        }
        if out.is_empty() {
            return Err(-ENOENT);
        }
        Ok(out)
    }

    /// `lctl set_param NAME=VALUE` (wildcards allowed).
    pub fn set_param(&mut self, pattern: &str, value: &str, now_ms: u64) -> Errno<()> {
        let targets: Vec<(usize, &'static str)> = self
            .param_names()
            .into_iter()
            .filter(|(full, _, _)| glob(pattern, full))
            .map(|(_, m, n)| (m, n))
            .collect();
        if targets.is_empty() {
            return Err(-ENOENT);
        }
        for (m, name) in targets {
            self.set_one(m, name, value.trim(), now_ms)?;
        }
        self.dirty = true;
        Ok(())
    }

    fn set_one(&mut self, m: usize, name: &str, value: &str, now_ms: u64) -> Errno<()> {
        let nonzero = |v: &str| -> Errno<u32> {
            match v.parse::<u32>() {
                Ok(0) | Err(_) => Err(-EINVAL),
                Ok(n) => Ok(n),
            }
        };
        let t = &mut self.mdts[m].tun;
        match name {
            "active_request_timeout" => t.active_request_timeout = nonzero(value)?,
            "default_archive_id" => t.default_archive_id = nonzero(value)?,
            "grace_delay" => t.grace_delay = nonzero(value)?,
            "loop_period" => t.loop_period = nonzero(value)?,
            "max_requests" => t.max_requests = nonzero(value)? as u64,
            "remove_archive_on_last_unlink" => {
                t.remove_archive_on_last_unlink = value.parse::<u32>().map_err(|_| -EINVAL)?.min(1)
            }
            "user_request_mask" => t.user_request_mask = value.to_owned(),
            "group_request_mask" => t.group_request_mask = value.to_owned(),
            "other_request_mask" => t.other_request_mask = value.to_owned(),
            "policy" => t.policy = parse_policy(t.policy, value)?,
            "hsm_control" => match value {
                "enabled" => t.hsm_control = Control::Enabled,
                "disabled" => t.hsm_control = Control::Disabled,
                "shutdown" => {
                    t.hsm_control = Control::Stopped;
                    // The agent list is dropped; in-memory requests freed.
                    self.agents.clear();
                    let recs = &mut self.mdts[m].records;
                    for idx in recs.active_idxs() {
                        recs.update(idx, |r| r.agent = None);
                    }
                }
                "purge" => self.purge(m, now_ms),
                "help" => {}
                _ => return Err(-EINVAL),
            },
            _ => return Err(-EPERM), // read-only
        }
        Ok(())
    }
}

fn parse_policy(current: u32, value: &str) -> Errno<u32> {
    let bit = |name: &str| -> Errno<u32> {
        match name {
            "NBR" | "NonBlockingRestore" => Ok(POLICY_NBR),
            "NRA" | "NoRetryAction" => Ok(POLICY_NRA),
            _ => Err(-EINVAL),
        }
    };
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() {
        return Ok(0);
    }
    if words
        .iter()
        .all(|w| w.starts_with('+') || w.starts_with('-'))
    {
        let mut bits = current;
        for w in words {
            let b = bit(&w[1..])?;
            if w.starts_with('+') {
                bits |= b;
            } else {
                bits &= !b;
            }
        }
        return Ok(bits);
    }
    let mut bits = 0;
    for w in words {
        bits |= bit(w)?;
    }
    Ok(bits)
}

/// Shell-like glob with `*` and `?`.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob(
            "mdt.*.hsm.active_requests",
            "mdt.fs-MDT0000.hsm.active_requests"
        ));
        assert!(!glob(
            "mdt.*.hsm.agents",
            "mdt.fs-MDT0000.hsm.active_requests"
        ));
        assert!(glob(
            "mdt.fs-MDT000?.hsm_control",
            "mdt.fs-MDT0001.hsm_control"
        ));
    }

    #[test]
    fn policy_parsing() {
        assert_eq!(
            parse_policy(POLICY_NRA, "+NBR"),
            Ok(POLICY_NRA | POLICY_NBR)
        );
        assert_eq!(parse_policy(POLICY_NRA, "-NRA"), Ok(0));
        assert_eq!(parse_policy(0, "NBR NRA"), Ok(3));
        assert_eq!(parse_policy(0, "bogus"), Err(-EINVAL));
        assert_eq!(
            Sim::policy_text(POLICY_NRA),
            "NonBlockingRestore [NoRetryAction]"
        );
    }

    #[test]
    fn actions_line_format() {
        let r = Record {
            idx: 3,
            cookie: 0x66f1a2b3,
            action: 20,
            fid: WireFid {
                seq: 0x200000401,
                oid: 0x1a,
                ver: 0,
            },
            dfid: WireFid {
                seq: 0x200000401,
                oid: 0x1a,
                ver: 0,
            },
            offset: 0,
            length: u64::MAX,
            archive_id: 2,
            flags: 0,
            data: Vec::new(),
            status: Status::Started,
            created_ms: 0,
            changed_ms: 0,
            updated_ms: 0,
            active: true,
            canceled: false,
            uuid: String::new(),
            done: 0,
            dv_start: None,
            agent: None,
        };
        assert_eq!(
            r.actions_line(1),
            "lrh=[type=10680000 len=136 idx=1/3] fid=[0x200000401:0x1a:0x0] dfid=[0x200000401:0x1a:0x0] compound/cookie=0x0/0x66f1a2b3 action=ARCHIVE archive#=2 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 datalen=0 status=STARTED data=[]"
        );
    }

    #[test]
    fn zero_max_requests_is_einval() {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Sim::new(dir.path(), "testfs", 1, 0);
        assert_eq!(
            sim.set_param("mdt.testfs-MDT0000.hsm.max_requests", "0", 0),
            Err(-EINVAL)
        );
        assert_eq!(
            sim.set_param("mdt.testfs-MDT0000.hsm.archive_count", "1", 0),
            Err(-EPERM)
        );
        assert_eq!(
            sim.set_param("mdt.testfs-MDT0000.hsm_control", "bogus", 0),
            Err(-EINVAL)
        );
        sim.set_param("mdt.*.hsm.max_requests", "7", 0).unwrap();
        let v = sim
            .get_params("mdt.testfs-MDT0000.hsm.max_requests")
            .unwrap();
        assert_eq!(
            v,
            vec![(
                "mdt.testfs-MDT0000.hsm.max_requests".to_owned(),
                "7".to_owned()
            )]
        );
    }

    #[test]
    fn fids_spread_over_mdts_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("b"), b"b").unwrap();
        let mut sim = Sim::new(dir.path(), "testfs", 2, 0);
        let a = sim.path_to_fid("a").unwrap();
        let b = sim.path_to_fid("b").unwrap();
        assert_eq!(sim.mdt_of(a), Some(0));
        assert_eq!(sim.mdt_of(b), Some(1));
        assert_eq!(a, sim.path_to_fid("a").unwrap());
        assert_eq!(sim.fid_to_path(b).unwrap(), "b");
        let json = sim.save_json().unwrap();
        let mut back = Sim::load_json(dir.path(), &json, 0).unwrap();
        assert_eq!(back.path_to_fid("a").unwrap(), a);
        // A file replaced by another inode gets a new FID.
        std::fs::remove_file(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("c"), b"c").unwrap();
        std::fs::write(dir.path().join("a"), b"new").unwrap();
        let _ = back.path_to_fid("c").unwrap();
        assert_ne!(back.path_to_fid("a").unwrap(), a);
    }

    #[test]
    fn request_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"data").unwrap();
        let mut sim = Sim::new(dir.path(), "testfs", 1, 0);
        let fid = sim.path_to_fid("f").unwrap();
        let item = UserItem {
            fid,
            offset: 0,
            length: u64::MAX,
        };
        // Restore of a file that is not released: not needed, dropped.
        assert_eq!(
            sim.hsm_request(HUA_RESTORE, 0, 0, &[item], b"", 0),
            Ok(vec![])
        );
        // Release is not a copytool action.
        assert_eq!(
            sim.hsm_request(HUA_RELEASE, 0, 0, &[item], b"", 0),
            Err(-EINVAL)
        );
        // Forced restore of a non-released file fails the compat check.
        assert_eq!(
            sim.hsm_request(HUA_RESTORE, 0, HSM_FORCE_ACTION, &[item], b"", 0),
            Err(-EPERM)
        );
        let c = sim
            .hsm_request(HUA_ARCHIVE, 0, 0, &[item, item], b"x", 0)
            .unwrap();
        assert_eq!(c.len(), 1, "duplicate fids are dropped");
        let first = |sim: &Sim| sim.mdts[0].records.iter().next().unwrap().clone();
        assert_eq!(first(&sim).archive_id, 1, "default archive id");
        // Release before archive is refused.
        assert_eq!(sim.release(fid), Err(-EPERM));
        // Cancel of a waiting request just cancels it.
        sim.hsm_request(HUA_CANCEL, 0, 0, &[item], b"", 0).unwrap();
        assert_eq!(first(&sim).status, Status::Canceled);
    }
}
