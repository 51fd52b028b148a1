//! Startup and runtime errors of the daemon, and their exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | clean stop (SIGTERM/SIGINT or `shutdown`) |
//! | 1 | runtime failure (bind, store write during operation, ...) |
//! | 2 | usage error (from clap) |
//! | 65 | `EX_DATAERR`: the state store is newer than this daemon, or cannot be migrated or read |
//! | 69 | `EX_UNAVAILABLE`: liblustreapi cannot be loaded or copytool registration failed |
//! | 73 | `EX_CANTCREAT`: the state directory cannot be created |
//! | 74 | `EX_IOERR`: the state store cannot be opened |
//! | 75 | `EX_TEMPFAIL`: another instance holds the state directory lock |
//! | 78 | `EX_CONFIG`: bad configuration |

use std::path::PathBuf;

use crate::kernel::KernelError;
use crate::store::StoreError;

/// `EX_DATAERR`.
pub const EX_DATAERR: u8 = 65;
/// `EX_UNAVAILABLE`.
pub const EX_UNAVAILABLE: u8 = 69;
/// `EX_CANTCREAT`.
pub const EX_CANTCREAT: u8 = 73;
/// `EX_IOERR`.
pub const EX_IOERR: u8 = 74;
/// `EX_TEMPFAIL`.
pub const EX_TEMPFAIL: u8 = 75;
/// `EX_CONFIG`.
pub const EX_CONFIG: u8 = 78;

/// Why the daemon stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error("configuration error: {0}")]
    Config(#[from] coordinatool_protocol::conf::ConfError),
    /// The state directory cannot be created or its lock file opened.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another instance runs on this state directory.
    #[error(
        "another coordinatoold holds the lock {path}; only one daemon may use a state directory"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The Lustre side failed to start.
    #[error("{0}")]
    Kernel(#[from] KernelError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else at run time.
    #[error("{0}")]
    Runtime(String),
}

impl DaemonError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => EX_CONFIG,
            DaemonError::StateDir { .. } => EX_CANTCREAT,
            DaemonError::Locked { .. } => EX_TEMPFAIL,
            DaemonError::Store(StoreError::Migration { .. } | StoreError::Corrupt { .. }) => {
                EX_DATAERR
            }
            DaemonError::Store(_) => EX_IOERR,
            DaemonError::Kernel(_) => EX_UNAVAILABLE,
            DaemonError::Bind { .. } | DaemonError::Runtime(_) => 1,
        }
    }
}
