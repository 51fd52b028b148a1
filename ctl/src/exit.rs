//! Exit codes and the error type that maps onto them.

use coordinatool_protocol::client::ClientError;

/// Success.
pub const OK: u8 = 0;
/// The daemon reported a failure, or some requests were rejected (queue,
/// import) or not found (cancel).
pub const FAILURE: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// `drain --timeout` ran out with requests still running.
pub const DRAIN_TIMEOUT: u8 = 3;
/// Bad input data: not one valid request was read (`EX_DATAERR`).
pub const DATAERR: u8 = 65;
/// An input file could not be read (`EX_NOINPUT`).
pub const NOINPUT: u8 = 66;
/// The daemon could not be reached, or the connection broke (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// The configuration file or a `COORDINATOOL_*` variable is invalid (`EX_CONFIG`).
pub const CONFIG: u8 = 78;

/// The exit code table, shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success
   1  the daemon reported a failure, or some requests were rejected or not found
   2  usage error
   3  drain timed out (the daemon stays locked)
  65  bad input data: no valid request was read
  66  the input file cannot be read
  69  the daemon is unreachable (EX_UNAVAILABLE)
  78  bad configuration file or COORDINATOOL_* variable";

/// Everything that ends a command early.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Could not connect, or the connection broke.
    #[error(transparent)]
    Unreachable(ClientError),
    /// The daemon answered with an error, or with a reply of the wrong kind.
    #[error("coordinatoold at {addr}: {source}")]
    Daemon {
        /// `host:port` of the daemon.
        addr: String,
        /// The error reply.
        #[source]
        source: ClientError,
    },
    /// A command-line value is wrong.
    #[error("{0}")]
    Usage(String),
    /// The input held no valid request.
    #[error("{0}")]
    BadInput(String),
    /// The input could not be read.
    #[error("cannot read {what}: {source}")]
    Read {
        /// What was read (`stdin` or the path).
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] coordinatool_protocol::conf::ConfError),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CtlError {
    /// Classifies a client error; `addr` is the daemon's `host:port`.
    pub fn from_client(addr: &str, e: ClientError) -> Self {
        match e {
            ClientError::Resolve { .. }
            | ClientError::Connect { .. }
            | ClientError::Frame { .. }
            | ClientError::Closed { .. } => CtlError::Unreachable(e),
            ClientError::Server { .. } | ClientError::Unexpected { .. } => CtlError::Daemon {
                addr: addr.to_string(),
                source: e,
            },
        }
    }

    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Unreachable(_) => UNAVAILABLE,
            CtlError::Daemon { .. } => FAILURE,
            CtlError::Usage(_) => USAGE,
            CtlError::BadInput(_) => DATAERR,
            CtlError::Read { .. } => NOINPUT,
            CtlError::Config(_) => CONFIG,
            CtlError::Output(_) => FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinatool_protocol::ErrorReply;

    #[test]
    fn client_errors_map_to_codes() {
        let e = CtlError::from_client(
            "10.0.0.1:5123",
            ClientError::Connect {
                addr: "10.0.0.1:5123".into(),
                reason: "connection refused".into(),
            },
        );
        assert_eq!(e.exit_code(), UNAVAILABLE);
        assert_eq!(
            e.to_string(),
            "cannot connect to coordinatoold at 10.0.0.1:5123: connection refused"
        );
        let e = CtlError::from_client(
            "h:1",
            ClientError::Server {
                op: "queue",
                reply: ErrorReply::new(22, "Bad fsname"),
            },
        );
        assert_eq!(e.exit_code(), FAILURE);
        let msg = e.to_string();
        assert!(msg.contains("Bad fsname") && msg.contains("h:1"), "{msg}");
        assert_eq!(CtlError::Usage("x".into()).exit_code(), USAGE);
        assert_eq!(CtlError::BadInput("x".into()).exit_code(), DATAERR);
    }
}
