//! [`ShimError`] and its single mapping to a negative errno.

use coordinatool_protocol::ErrorReply;
use coordinatool_protocol::client::ClientError;
use coordinatool_protocol::conf::ConfError;
use coordinatool_protocol::frame::FrameError;
use lustre_bindings::HalError;
use std::io;
use std::os::raw::c_int;
use std::path::PathBuf;

/// Everything that can go wrong inside the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A caller passed a bad argument (NULL pointer, negative count or id...).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// The handle is NULL or its magic is not ours.
    #[error("not a coordinatool copytool handle ({what})")]
    BadHandle {
        /// What is wrong with it.
        what: &'static str,
    },
    /// The mount point (or its `.lustre/fid`) could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfError),
    /// Connecting to the daemon failed.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// A framing error on the daemon connection.
    #[error("connection to coordinatoold at {addr}: {source}")]
    Frame {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: FrameError,
    },
    /// The daemon closed the connection.
    #[error("coordinatoold at {addr} closed the connection")]
    Closed {
        /// `host:port`.
        addr: String,
    },
    /// The daemon refused a request.
    #[error("coordinatoold refused {op}: {reply}")]
    Refused {
        /// The request.
        op: &'static str,
        /// Its answer.
        reply: ErrorReply,
    },
    /// The daemon answered with something unexpected.
    #[error("unexpected answer to {op} from coordinatoold: {got}")]
    Unexpected {
        /// The request.
        op: &'static str,
        /// What came back.
        got: String,
    },
    /// Nothing came back in time.
    #[error("no answer from coordinatoold at {addr} for {secs} s")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// How long we waited.
        secs: u64,
    },
    /// Non-blocking receive with no work ready.
    #[error("no work ready")]
    Again,
    /// A signal handler ran while waiting for work.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The copytool handle is being unregistered.
    #[error("copytool is shutting down")]
    Shutdown,
    /// A batch could not be encoded as a HAL.
    #[error("cannot build the hsm_action_list: {0}")]
    Hal(#[from] HalError),
    /// A batch does not fit the receive buffer.
    #[error("hsm_action_list of {len} bytes does not fit the {max}-byte buffer (hal_size)")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Buffer size.
        max: usize,
    },
    /// A liblustreapi function could not be found with `dlsym`.
    #[error("{symbol} not found in the real liblustreapi (is liblustreapi.so.1 loaded?)")]
    MissingSymbol {
        /// The symbol.
        symbol: &'static str,
    },
    /// The call comes from a forked child, which does not own the connection.
    #[error(
        "{what} called from a forked child (pid {pid}); only the registering process (pid {owner}) can do this"
    )]
    Forked {
        /// The call.
        what: &'static str,
        /// Our pid.
        pid: u32,
        /// The registering pid.
        owner: u32,
    },
}

impl ShimError {
    /// Shorthand for [`ShimError::InvalidArgument`].
    pub fn invalid(what: impl Into<String>) -> Self {
        ShimError::InvalidArgument { what: what.into() }
    }

    /// Shorthand for [`ShimError::Sys`] with the last OS error.
    pub fn last_os(call: &'static str) -> Self {
        ShimError::Sys {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// The negative errno returned to C callers.
    pub fn to_neg_errno(&self) -> c_int {
        let pos = match self {
            ShimError::InvalidArgument { .. } | ShimError::BadHandle { .. } => libc::EINVAL,
            ShimError::Open { source, .. } | ShimError::Sys { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            ShimError::Config(_) => libc::EINVAL,
            ShimError::Connect(ClientError::Resolve { .. }) => libc::EHOSTUNREACH,
            ShimError::Connect(_) => libc::ECONNREFUSED,
            ShimError::Frame { .. } | ShimError::Unexpected { .. } => libc::EPROTO,
            ShimError::Closed { .. } => libc::ECONNRESET,
            ShimError::Refused { reply, .. } => {
                if reply.code > 0 {
                    reply.code
                } else {
                    libc::EIO
                }
            }
            ShimError::Timeout { .. } => libc::ETIMEDOUT,
            ShimError::Again => libc::EAGAIN,
            ShimError::Interrupted => libc::EINTR,
            ShimError::Shutdown => libc::ESHUTDOWN,
            ShimError::Hal(_) => libc::EPROTO,
            ShimError::TooLarge { .. } => libc::EMSGSIZE,
            ShimError::MissingSymbol { .. } => libc::ENOSYS,
            ShimError::Forked { .. } => libc::EIO,
        };
        -pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(ShimError::invalid("x").to_neg_errno(), -libc::EINVAL);
        assert_eq!(ShimError::Again.to_neg_errno(), -libc::EAGAIN);
        assert_eq!(ShimError::Shutdown.to_neg_errno(), -libc::ESHUTDOWN);
        let e = ShimError::Open {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(e.to_neg_errno(), -libc::ENOENT);
        assert!(e.to_string().contains("/x"));
        let r = ShimError::Refused {
            op: "ehlo",
            reply: ErrorReply::new(71, "bad version"),
        };
        assert_eq!(r.to_neg_errno(), -71);
    }
}
