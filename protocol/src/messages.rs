//! Every message of the protocol.
//!
//! A client sends [`RequestFrame`]s; the daemon answers each with exactly one
//! [`ResponseFrame`] carrying the same `id`. Requests from one connection are
//! handled in order, except `recv`, which is a long poll: the daemon answers it
//! when work is ready (or when its `wait_ms` runs out), and may answer later
//! requests of the same connection (such as `done`) before it. At most one
//! `recv` may be outstanding per connection.
//!
//! Enums are encoded externally tagged (`{"done": {...}}`), structs as maps with
//! named fields. Optional fields carry `#[serde(default)]` so peers of the same
//! protocol version can add fields without breaking each other.

use lustre_bindings::{ActionItem, Extent, Fid, HsmAction};
use serde::{Deserialize, Serialize};

/// Version of this protocol, sent in `ehlo`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default TCP port of coordinatoold (the C coordinatool's port).
pub const DEFAULT_PORT: u16 = 5123;

/// Smallest `max_bytes` a `recv` may announce: a HAL header with an 8-byte
/// fsname plus one item with 100 bytes of data (the C tool's margin).
pub const MIN_RECV_BYTES: u32 = 32 + 16 + 72 + 100;

/// A request with its correlation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// The request.
    pub body: Request,
}

/// A reply with the id of the request it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request.
    pub id: u64,
    /// The outcome.
    pub body: Reply,
}

/// Outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Success.
    Ok(Response),
    /// Failure, with an errno-style code.
    Err(ErrorReply),
}

/// An error answer: a positive errno value and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Positive errno (e.g. 22 for EINVAL, 71 for EPROTO).
    pub code: i32,
    /// What went wrong, for the log and the operator.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (errno {})", self.message, self.code)
    }
}

/// Every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Handshake; must be the first request of a connection.
    Ehlo(Ehlo),
    /// Long poll for work (agents only).
    Recv(Recv),
    /// Completion of one request (any connection may send it).
    Done(Done),
    /// Several completions at once.
    DoneBatch(Vec<Done>),
    /// Add requests (from `coordinatool-ctl queue` / `import`).
    Queue(Queue),
    /// Counters, agents and lock state.
    Status,
    /// Stop handing work to agents.
    Lock,
    /// Resume handing work to agents.
    Unlock,
    /// List requests, filtered.
    List(List),
    /// Cancel requests by file id.
    Cancel(Cancel),
    /// Stop the daemon (after `drain --quit`). Queued work stays in the store.
    Shutdown,
}

impl Request {
    /// Short name of the operation, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ehlo(_) => "ehlo",
            Request::Recv(_) => "recv",
            Request::Done(_) => "done",
            Request::DoneBatch(_) => "done_batch",
            Request::Queue(_) => "queue",
            Request::Status => "status",
            Request::Lock => "lock",
            Request::Unlock => "unlock",
            Request::List(_) => "list",
            Request::Cancel(_) => "cancel",
            Request::Shutdown => "shutdown",
        }
    }
}

/// Every successful reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to `ehlo`.
    Ehlo(EhloReply),
    /// Answer to `recv`: a batch ready to be encoded as one HAL.
    Batch(Batch),
    /// Answer to `done` and `done_batch`.
    Done,
    /// Answer to `queue`.
    Queue(QueueReply),
    /// Answer to `status`.
    Status(Box<StatusReply>),
    /// Answer to `lock` and `unlock`: the lock state now in force.
    Locked {
        /// Whether the daemon is locked.
        locked: bool,
    },
    /// Answer to `list`.
    List(ListReply),
    /// Answer to `cancel`.
    Cancel(CancelReply),
    /// Answer to `shutdown`.
    ShuttingDown,
}

/// What kind of peer is connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A mover (a copytool under the preload shim). Agents may `recv`.
    #[default]
    Agent,
    /// An administrative client (`coordinatool-ctl`). Never receives work.
    Admin,
}

/// Handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ehlo {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol_version: u32,
    /// Stable identity (default: the host name). Reconnects with the same id
    /// within the grace period keep their running requests.
    pub client_id: String,
    /// Agent or admin.
    #[serde(default)]
    pub role: Role,
    /// Filesystem name the client serves; checked against the daemon's.
    #[serde(default)]
    pub fsname: Option<String>,
    /// Archive ids this agent serves; empty means any.
    #[serde(default)]
    pub archive_ids: Vec<u32>,
    /// Requests the agent is still running (after a reconnect), each with the
    /// archive id and HAL flags of the batch it came in, so that a daemon
    /// that lost its state can re-create them exactly.
    #[serde(default)]
    pub running: Vec<QueueItem>,
}

/// Answer to `ehlo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhloReply {
    /// [`PROTOCOL_VERSION`] of the daemon.
    pub protocol_version: u32,
    /// The filesystem the daemon serves.
    pub fsname: String,
    /// Daemon version string.
    pub server_version: String,
    /// How many of the announced running requests the daemon kept assigned
    /// to this agent.
    #[serde(default)]
    pub running_kept: u32,
}

/// Long poll for work. `None` limits mean unlimited; `Some(0)` means this agent
/// never takes that action type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recv {
    /// Most archives this agent runs at once.
    #[serde(default)]
    pub max_archive: Option<u32>,
    /// Most restores this agent runs at once.
    #[serde(default)]
    pub max_restore: Option<u32>,
    /// Most removes this agent runs at once.
    #[serde(default)]
    pub max_remove: Option<u32>,
    /// Largest HAL (in encoded bytes) the agent can receive.
    pub max_bytes: u32,
    /// Answer with an empty batch after this long without work (`None`: wait
    /// until work comes).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// Work for an agent: everything a HAL needs. All items share the archive id
/// and the flags. An empty `items` means the `wait_ms` of the `recv` ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// `hal_archive_id`.
    pub archive_id: u32,
    /// `hal_flags`.
    pub flags: u64,
    /// `hal_fsname`.
    pub fsname: String,
    /// The items, CANCEL items included.
    pub items: Vec<WireItem>,
}

/// Completion of one request, as reported to Lustre by the mover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// `hai_cookie` as handed out.
    pub cookie: u64,
    /// `hai_dfid` as handed out (for a restore, the original, not the volatile fid).
    pub dfid: WireFid,
    /// 0 for success, else a positive errno.
    pub status: i32,
}

/// Add requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// If set, must equal the daemon's fsname or nothing is queued.
    #[serde(default)]
    pub fsname: Option<String>,
    /// The requests.
    pub items: Vec<QueueItem>,
}

/// One request to add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The item, with the cookie the MDT gave it.
    pub item: WireItem,
    /// Archive id (must not be 0).
    pub archive_id: u32,
    /// `hal_flags` of its request.
    #[serde(default)]
    pub flags: u64,
}

/// Answer to `queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QueueReply {
    /// New requests, persisted.
    pub enqueued: u64,
    /// Requests already known (same cookie and dfid).
    pub skipped: u64,
    /// Items refused, with their index in the request and why.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// A refused item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Index in `Queue::items`.
    pub index: u32,
    /// Why.
    pub reason: String,
}

/// Where a request stands in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an agent.
    Waiting,
    /// Handed to an agent, not yet done.
    Running,
    /// Held for a disconnected agent during its grace period.
    Orphaned,
}

impl RequestState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            RequestState::Waiting => "waiting",
            RequestState::Running => "running",
            RequestState::Orphaned => "orphaned",
        }
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "waiting" | "queued" | "pending" => Ok(RequestState::Waiting),
            "running" | "started" => Ok(RequestState::Running),
            "orphaned" => Ok(RequestState::Orphaned),
            other => Err(format!(
                "unknown state {other:?} (expected waiting, running or orphaned)"
            )),
        }
    }
}

/// Filtered listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct List {
    /// Only requests in this state.
    #[serde(default)]
    pub state: Option<RequestState>,
    /// Only this action (`hai_action` value).
    #[serde(default)]
    pub action: Option<u32>,
    /// Only requests held by this agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only this archive id.
    #[serde(default)]
    pub archive_id: Option<u32>,
    /// At most this many (default: all).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Answer to `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ListReply {
    /// The requests, oldest first.
    pub requests: Vec<RequestInfo>,
    /// More matched than `limit` allowed.
    #[serde(default)]
    pub truncated: bool,
}

/// One request as `list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// The item.
    pub item: WireItem,
    /// Its archive id.
    pub archive_id: u32,
    /// Its `hal_flags`.
    pub flags: u64,
    /// Where it stands.
    pub state: RequestState,
    /// The agent holding it, if any.
    #[serde(default)]
    pub agent: Option<String>,
    /// Milliseconds since the daemon first received it.
    pub age_ms: u64,
    /// Whether a cancel is pending for it.
    #[serde(default)]
    pub cancel_pending: bool,
}

/// Cancel requests by fid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// Files whose requests to cancel.
    pub fids: Vec<WireFid>,
}

/// Answer to `cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CancelReply {
    /// Queued requests removed and reported to Lustre as canceled.
    pub canceled: Vec<WireFid>,
    /// Running requests whose agent was sent a cancel.
    pub forwarded: Vec<WireFid>,
    /// Fids with no known request.
    pub not_found: Vec<WireFid>,
}

/// Per-action counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ActionCounts {
    /// Action name (`ARCHIVE`, `RESTORE`, `REMOVE`).
    pub action: String,
    /// Waiting for an agent.
    pub waiting: u64,
    /// Held by agents (connected or within grace).
    pub running: u64,
    /// Completed successfully since start.
    pub done: u64,
    /// Completed with an error since start.
    pub failed: u64,
    /// Canceled since start.
    #[serde(default)]
    pub canceled: u64,
}

/// One agent as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentInfo {
    /// Its client id.
    pub client_id: String,
    /// Connected now.
    pub connected: bool,
    /// Has a `recv` outstanding.
    #[serde(default)]
    pub waiting: bool,
    /// Archive ids it serves (empty: any).
    pub archive_ids: Vec<u32>,
    /// Peer address of its connection, when connected.
    #[serde(default)]
    pub peer: Option<String>,
    /// Running counts: archive, restore, remove.
    pub running: [u64; 3],
    /// Completed counts: archive, restore, remove.
    pub done: [u64; 3],
    /// Limits from its last `recv`: archive, restore, remove (`None`: unlimited).
    pub limits: [Option<u32>; 3],
    /// Byte budget from its last `recv`.
    #[serde(default)]
    pub max_bytes: u32,
    /// Milliseconds of grace left when disconnected.
    #[serde(default)]
    pub grace_remaining_ms: Option<u64>,
}

/// Answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusReply {
    /// Daemon version.
    pub version: String,
    /// The filesystem served.
    pub fsname: String,
    /// Mount point.
    #[serde(default)]
    pub mountpoint: String,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Whether work hand-out is stopped.
    pub locked: bool,
    /// Per action.
    pub actions: Vec<ActionCounts>,
    /// Agents, connected first.
    pub agents: Vec<AgentInfo>,
    /// Age of the oldest request not yet done (waiting or running), in ms.
    #[serde(default)]
    pub oldest_request_ms: Option<u64>,
    /// Age of the oldest waiting request, in ms.
    #[serde(default)]
    pub oldest_waiting_ms: Option<u64>,
    /// Cancels waiting to be delivered to agents.
    #[serde(default)]
    pub pending_cancels: u64,
    /// Open protocol connections of any kind.
    #[serde(default)]
    pub connections: u64,
}

/// A fid on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WireFid {
    /// `f_seq`.
    pub seq: u64,
    /// `f_oid`.
    pub oid: u32,
    /// `f_ver`.
    pub ver: u32,
}

impl From<Fid> for WireFid {
    fn from(f: Fid) -> Self {
        WireFid {
            seq: f.seq,
            oid: f.oid,
            ver: f.ver,
        }
    }
}

impl From<WireFid> for Fid {
    fn from(f: WireFid) -> Self {
        Fid {
            seq: f.seq,
            oid: f.oid,
            ver: f.ver,
        }
    }
}

impl std::fmt::Display for WireFid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Fid::from(*self).fmt(f)
    }
}

/// One `hsm_action_item` on the wire. `hai_len` is not sent: it is
/// recomputed from the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireItem {
    /// `hai_action` (20 archive, 21 restore, 22 remove, 23 cancel).
    pub action: u32,
    /// `hai_fid`.
    pub fid: WireFid,
    /// `hai_dfid`.
    pub dfid: WireFid,
    /// `hai_extent.offset`.
    pub extent_offset: u64,
    /// `hai_extent.length`.
    pub extent_length: u64,
    /// `hai_cookie`.
    pub cookie: u64,
    /// `hai_gid`.
    #[serde(default)]
    pub gid: u64,
    /// `hai_data`, raw bytes (may contain NULs).
    #[serde(default, with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl WireItem {
    /// A request for a whole file, as `lfs hsm_archive` and its siblings
    /// make them: extent 0 to the end, `dfid` = `fid`, gid 0.
    pub fn whole_file(action: u32, fid: WireFid, cookie: u64, data: Vec<u8>) -> WireItem {
        WireItem {
            action,
            fid,
            dfid: fid,
            extent_offset: 0,
            extent_length: u64::MAX,
            cookie,
            gid: 0,
            data,
        }
    }

    /// The action as a typed value.
    pub fn hsm_action(&self) -> HsmAction {
        HsmAction::from_u32(self.action)
    }
}

impl From<&ActionItem> for WireItem {
    fn from(a: &ActionItem) -> Self {
        WireItem {
            action: a.action.as_u32(),
            fid: a.fid.into(),
            dfid: a.dfid.into(),
            extent_offset: a.extent.offset,
            extent_length: a.extent.length,
            cookie: a.cookie,
            gid: a.gid,
            data: a.data.clone(),
        }
    }
}

impl From<ActionItem> for WireItem {
    fn from(a: ActionItem) -> Self {
        WireItem {
            action: a.action.as_u32(),
            fid: a.fid.into(),
            dfid: a.dfid.into(),
            extent_offset: a.extent.offset,
            extent_length: a.extent.length,
            cookie: a.cookie,
            gid: a.gid,
            data: a.data,
        }
    }
}

impl From<WireItem> for ActionItem {
    fn from(w: WireItem) -> Self {
        ActionItem {
            action: HsmAction::from_u32(w.action),
            fid: w.fid.into(),
            dfid: w.dfid.into(),
            extent: Extent {
                offset: w.extent_offset,
                length: w.extent_length,
            },
            cookie: w.cookie,
            gid: w.gid,
            data: w.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_body, encode_frame};
    use proptest::prelude::*;

    fn item(data: Vec<u8>) -> WireItem {
        let fid = WireFid {
            seq: 0x200000401,
            oid: 1,
            ver: 0,
        };
        WireItem::whole_file(20, fid, 0x617d23ef, data)
    }

    #[test]
    fn a_whole_file_item_spans_the_file_with_dfid_fid() {
        let it = item(b"x".to_vec());
        assert_eq!((it.action, it.cookie, it.gid), (20, 0x617d23ef, 0));
        assert_eq!(it.dfid, it.fid);
        assert_eq!((it.extent_offset, it.extent_length), (0, u64::MAX));
        assert_eq!(it.data, b"x");
        assert_eq!(it.hsm_action(), HsmAction::Archive);
    }

    fn round_trip<T>(v: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let bytes = encode_frame(v).unwrap();
        decode_body(&bytes[crate::frame::PREFIX_LEN..]).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let reqs = vec![
            Request::Ehlo(Ehlo {
                protocol_version: PROTOCOL_VERSION,
                client_id: "mover1".into(),
                role: Role::Agent,
                fsname: Some("testfs".into()),
                archive_ids: vec![1, 2],
                running: vec![QueueItem {
                    item: item(b"a\0b".to_vec()),
                    archive_id: 2,
                    flags: 4,
                }],
            }),
            Request::Recv(Recv {
                max_archive: Some(3),
                max_restore: None,
                max_remove: Some(0),
                max_bytes: 1 << 20,
                wait_ms: Some(1000),
            }),
            Request::Done(Done {
                cookie: 1,
                dfid: item(vec![]).dfid,
                status: 0,
            }),
            Request::DoneBatch(vec![]),
            Request::Queue(Queue {
                fsname: None,
                items: vec![QueueItem {
                    item: item(vec![0, 0, 0]),
                    archive_id: 1,
                    flags: 4,
                }],
            }),
            Request::Status,
            Request::Lock,
            Request::Unlock,
            Request::List(List::default()),
            Request::Cancel(Cancel { fids: vec![] }),
            Request::Shutdown,
        ];
        for (i, body) in reqs.into_iter().enumerate() {
            let f = RequestFrame { id: i as u64, body };
            assert_eq!(round_trip(&f), f);
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies = vec![
            Reply::Ok(Response::Batch(Batch {
                archive_id: 1,
                flags: 0,
                fsname: "fs".into(),
                items: vec![item(vec![1; 17])],
            })),
            Reply::Ok(Response::Status(Box::default())),
            Reply::Ok(Response::Locked { locked: true }),
            Reply::Err(ErrorReply::new(22, "bad")),
        ];
        for body in replies {
            let f = ResponseFrame { id: 9, body };
            assert_eq!(round_trip(&f), f);
        }
    }

    #[test]
    fn golden_bytes_of_a_lock_request() {
        // {"id": 1, "body": "lock"} as a MessagePack map with named fields.
        let bytes = encode_frame(&RequestFrame {
            id: 1,
            body: Request::Lock,
        })
        .unwrap();
        assert_eq!(
            bytes,
            b"\x00\x00\x00\x0f\x82\xa2id\x01\xa4body\xa4lock".to_vec()
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_optional_fields_default() {
        // An older/newer peer: a recv with an extra field and no optional ones.
        #[derive(Serialize)]
        struct Future {
            max_bytes: u32,
            shiny_new_field: u8,
        }
        #[derive(Serialize)]
        enum R {
            #[serde(rename = "recv")]
            Recv(Future),
        }
        #[derive(Serialize)]
        struct F {
            id: u64,
            body: R,
        }
        let bytes = encode_frame(&F {
            id: 3,
            body: R::Recv(Future {
                max_bytes: 4096,
                shiny_new_field: 1,
            }),
        })
        .unwrap();
        let f: RequestFrame = decode_body(&bytes[4..]).unwrap();
        match f.body {
            Request::Recv(r) => {
                assert_eq!(r.max_bytes, 4096);
                assert_eq!(r.max_archive, None);
                assert_eq!(r.wait_ms, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn items_round_trip(action in any::<u32>(), seq in any::<u64>(), oid in any::<u32>(),
                            cookie in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut it = item(data);
            it.action = action;
            it.fid.seq = seq;
            it.fid.oid = oid;
            it.cookie = cookie;
            let back = round_trip(&it);
            prop_assert_eq!(&back, &it);
            let ai: ActionItem = back.into();
            prop_assert_eq!(WireItem::from(&ai), it);
        }
    }
}
