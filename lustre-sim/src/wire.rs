//! The simulator's control protocol over `DIR/.lustre-sim/sim.sock`.
//!
//! Every frame is a little-endian `u32` length followed by that many bytes of
//! MessagePack ([`rmp_serde`]). A client sends a [`Request`] and reads one
//! [`Response`] (`Ok(Reply)` or `Err(negative errno)`, the code the kernel
//! would give). Connections are reusable for any number of calls.
//!
//! Registration is special: after a successful [`Request::Register`] the
//! connection *is* the registration. Closing it (or a crash of the copytool)
//! unregisters the agent, like closing the mount fd on real Lustre. The
//! action lists themselves travel over a FIFO, not over this socket: see
//! `lustre-sim/README.md`.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SimError;

/// Largest frame accepted (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;

/// A Lustre FID on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WireFid {
    /// Sequence.
    pub seq: u64,
    /// Object id.
    pub oid: u32,
    /// Version.
    pub ver: u32,
}

impl From<lustre_bindings::Fid> for WireFid {
    fn from(f: lustre_bindings::Fid) -> Self {
        WireFid {
            seq: f.seq,
            oid: f.oid,
            ver: f.ver,
        }
    }
}

impl From<WireFid> for lustre_bindings::Fid {
    fn from(f: WireFid) -> Self {
        lustre_bindings::Fid::new(f.seq, f.oid, f.ver)
    }
}

impl std::fmt::Display for WireFid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{:#x}:{:#x}:{:#x}]", self.seq, self.oid, self.ver)
    }
}

/// One item of a user HSM request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserItem {
    /// The file.
    pub fid: WireFid,
    /// Extent offset.
    pub offset: u64,
    /// Extent length.
    pub length: u64,
}

/// A request to the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Who are you? Answered by [`Reply::Hello`].
    Hello,
    /// Register a copytool. `fifo` is a FIFO the caller already opened for
    /// reading; the sim opens it for writing and sends KUC messages there.
    /// `archives` empty means "all archives". Answered by [`Reply::Registered`].
    Register {
        /// The FIFO to write KUC messages to.
        fifo: PathBuf,
        /// Archive ids served (empty: any).
        archives: Vec<u32>,
        /// Caller's pid (informational).
        pid: u32,
    },
    /// End the registration made on this connection.
    Unregister,
    /// FID of a path relative to the mount root ("" is the root). Assigns a
    /// FID on first sight. Answered by [`Reply::Fid`].
    PathToFid {
        /// Relative path.
        rel: String,
    },
    /// Path (relative to the root) of a FID. Answered by [`Reply::Path`].
    FidToPath {
        /// The FID.
        fid: WireFid,
    },
    /// MDT index holding a FID. Answered by [`Reply::Index`].
    FidToMdt {
        /// The FID.
        fid: WireFid,
    },
    /// HSM state of a file. Answered by [`Reply::State`].
    StateGet {
        /// The file.
        fid: WireFid,
    },
    /// Change user-settable HSM flags. Answered by [`Reply::Ok`].
    StateSet {
        /// The file.
        fid: WireFid,
        /// Flags to set.
        setmask: u64,
        /// Flags to clear.
        clearmask: u64,
        /// New archive id, 0 for no change.
        archive_id: u32,
    },
    /// A user HSM request (`lfs hsm_*`, `llapi_hsm_request`).
    HsmRequest {
        /// `enum hsm_user_action`.
        action: u32,
        /// Archive id, 0 for the file's or the default.
        archive_id: u32,
        /// Request flags.
        flags: u64,
        /// Items.
        items: Vec<UserItem>,
        /// Opaque data copied into every item.
        data: Vec<u8>,
    },
    /// Client-side release of an archived file's data.
    Release {
        /// The file.
        fid: WireFid,
    },
    /// `LL_IOC_HSM_COPY_START`. Answered by [`Reply::CopyStarted`].
    CopyStart {
        /// Request cookie.
        cookie: u64,
        /// `hai_fid`.
        fid: WireFid,
        /// `hai_action`.
        action: u32,
    },
    /// `LL_IOC_HSM_PROGRESS`.
    Progress(Progress),
    /// `LL_IOC_HSM_COPY_END`.
    CopyEnd(Progress),
    /// Read parameters (`lctl get_param`, glob patterns allowed). Answered
    /// by [`Reply::Params`].
    GetParam {
        /// Parameter name or pattern.
        pattern: String,
    },
    /// Write a parameter.
    SetParam {
        /// Exact parameter name.
        name: String,
        /// Value.
        value: String,
    },
    /// `llapi_hsm_import`: create a released, archived file.
    Import {
        /// Relative path of the new file.
        rel: String,
        /// Archive id.
        archive_id: u32,
        /// Size.
        size: u64,
        /// Mode bits.
        mode: u32,
        /// Modification time, seconds.
        mtime: i64,
    },
    /// FIDs of many paths relative to the mount root, in one call (FIDs
    /// assigned on first sight). Answered by [`Reply::Fids`].
    PathsToFids {
        /// Relative paths.
        rels: Vec<String>,
    },
}

/// Arguments of progress and copy end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Request cookie.
    pub cookie: u64,
    /// `hai_dfid` (progress) or `hai_fid` set to `hai_dfid` (end).
    pub fid: WireFid,
    /// Extent offset.
    pub offset: u64,
    /// Extent length.
    pub length: u64,
    /// `HP_FLAG_*`.
    pub flags: u32,
    /// Positive errno.
    pub errval: u32,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done, nothing to return.
    Ok,
    /// Answer to [`Request::Hello`].
    Hello {
        /// Filesystem name.
        fsname: String,
        /// Number of MDTs.
        mdts: u32,
    },
    /// Answer to [`Request::Register`].
    Registered {
        /// The agent UUID (as shown in `hsm/agents`).
        uuid: String,
    },
    /// A FID.
    Fid(WireFid),
    /// A path relative to the mount root.
    Path(String),
    /// An MDT index.
    Index(i32),
    /// A file's HSM state.
    State(HsmState),
    /// Answer to [`Request::CopyStart`].
    CopyStarted {
        /// ARCHIVE: the source path relative to the root.
        source: Option<String>,
        /// RESTORE: the absolute path and FID of the volatile file to write.
        volatile: Option<(PathBuf, WireFid)>,
    },
    /// Parameter values, `(name, value)`.
    Params(Vec<(String, String)>),
    /// Answer to [`Request::PathsToFids`]: per path, its FID or a negative
    /// errno.
    Fids(Vec<Result<WireFid, i32>>),
}

/// `struct hsm_user_state` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmState {
    /// `HS_*` flags.
    pub states: u32,
    /// Archive id.
    pub archive_id: u32,
    /// `HPS_*`.
    pub in_progress_state: u32,
    /// `HSMA_*` of the current action.
    pub in_progress_action: u32,
    /// Current action extent offset.
    pub offset: u64,
    /// Current action extent length.
    pub length: u64,
}

/// What the sim answers: a reply or a negative errno.
pub type Response = Result<Reply, i32>;

/// Write one frame holding `msg`.
pub fn write_frame<T: Serialize>(
    w: &mut impl Write,
    what: &'static str,
    msg: &T,
) -> Result<(), SimError> {
    let body = rmp_serde::to_vec(msg).map_err(|e| SimError::Encode {
        what,
        message: e.to_string(),
    })?;
    if body.len() > MAX_FRAME {
        return Err(SimError::FrameTooLarge {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)
        .map_err(|e| SimError::io(format!("write {what}"), e))
}

/// Read one frame. `Ok(None)` on a clean end of stream before any byte.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    what: &'static str,
) -> Result<Option<T>, SimError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(SimError::io(
                    format!("read {what}"),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SimError::io(format!("read {what}"), e)),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(SimError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| SimError::io(format!("read {what}"), e))?;
    rmp_serde::from_slice(&body)
        .map(Some)
        .map_err(|e| SimError::Decode {
            what,
            message: e.to_string(),
        })
}

/// A blocking connection to a simulator.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// Buffered reads on a clone of `stream`: one `recv` per answer.
    reader: BufReader<UnixStream>,
    root: PathBuf,
}

impl Client {
    /// Connect to the simulator serving the mount `root`.
    pub fn connect(root: &Path) -> Result<Client, SimError> {
        let sock = crate::paths::sock_path(root);
        let stream = UnixStream::connect(&sock)
            .map_err(|e| SimError::io(format!("connect to {}", sock.display()), e))?;
        let reader = stream
            .try_clone()
            .map(|s| BufReader::with_capacity(16 << 10, s))
            .map_err(|e| SimError::io(format!("connect to {}", sock.display()), e))?;
        Ok(Client {
            stream,
            reader,
            root: root.to_path_buf(),
        })
    }

    /// Connect to the simulator of the mount containing `path`.
    pub fn for_path(path: &Path) -> Result<Client, SimError> {
        let root = crate::paths::find_mount_root(path)?;
        Client::connect(&root)
    }

    /// The mount root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Send a request and wait for its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, SimError> {
        write_frame(&mut self.stream, "request", req)?;
        match read_frame(&mut self.reader, "response")? {
            Some(r) => Ok(r),
            None => Err(SimError::io(
                "read response",
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulator closed the connection",
                ),
            )),
        }
    }

    /// The underlying stream (e.g. to keep a registration open).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Take the underlying stream (nothing is buffered between calls: the
    /// simulator only ever answers).
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// The FID of `path` (any path under the mount).
    pub fn path2fid(&mut self, path: &Path) -> Result<Response, SimError> {
        let abs = crate::paths::absolute(path)
            .map_err(|e| SimError::io(format!("{}", path.display()), e))?;
        let Some(rel) = crate::paths::relative(&self.root, &abs) else {
            return Ok(Err(-libc::EINVAL));
        };
        self.call(&Request::PathToFid { rel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip() {
        let req = Request::CopyEnd(Progress {
            cookie: 0x617d23ef,
            fid: WireFid {
                seq: 0x200000401,
                oid: 1,
                ver: 0,
            },
            offset: 0,
            length: u64::MAX,
            flags: 1,
            errval: 0,
        });
        let mut buf = Vec::new();
        write_frame(&mut buf, "request", &req).unwrap();
        let back: Request = read_frame(&mut buf.as_slice(), "request").unwrap().unwrap();
        assert_eq!(back, req);
        let empty: Option<Request> = read_frame(&mut [].as_slice(), "request").unwrap();
        assert!(empty.is_none());
    }

    #[test]
    fn oversized_frame_is_rejected() {
        let bytes = (u32::MAX).to_le_bytes();
        let r: Result<Option<Request>, _> = read_frame(&mut bytes.as_slice(), "request");
        assert!(matches!(r, Err(SimError::FrameTooLarge { .. })));
    }
}
