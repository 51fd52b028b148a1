//! Startup and runtime errors of the daemon, and their exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | clean stop (SIGTERM/SIGINT or `shutdown`) |
//! | 1 | runtime failure: the listener cannot be bound, an internal task failed, the async runtime cannot start |
//! | 2 | usage error (from clap) |
//! | 65 | `EX_DATAERR`: the state store is newer than this daemon, cannot be migrated, or holds a corrupt record |
//! | 69 | `EX_UNAVAILABLE`: liblustreapi cannot be loaded, the mount is not Lustre, copytool registration failed, or the kernel thread cannot start |
//! | 73 | `EX_CANTCREAT`: the state directory or its lock file cannot be created |
//! | 74 | `EX_IOERR`: the state store failed: at start (open, scan) or while running (write, flush) |
//! | 75 | `EX_TEMPFAIL`: another instance holds the state directory lock |
//! | 78 | `EX_CONFIG`: bad configuration (bad value, unreadable file) |
//!
//! The same list is in `coordinatoold --help` ([`EXIT_CODES_HELP`]) and in
//! `docs/operations.md` section 6; a unit test keeps the help in step with
//! [`DaemonError::exit_code`].

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

/// The exit codes as `--help` prints them.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 ok, 1 runtime failure (bind, internal task, \
    runtime start), 2 usage, 65 state store newer than this daemon, not migratable or corrupt, \
    69 liblustreapi or Lustre registration failed, 73 state directory or its lock file cannot be \
    created, 74 state store I/O error (at start or while running), 75 another instance holds the \
    state directory lock, 78 configuration error.";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn sled_err() -> StoreError {
        StoreError::Sled {
            path: "/s".into(),
            op: "flush",
            source: sled::Error::Unsupported("x".into()),
        }
    }

    /// Every error maps to a code, and `--help` lists every code used.
    #[test]
    fn help_lists_every_exit_code() {
        let io = || std::io::Error::other("x");
        let errors = [
            DaemonError::Config(coordinatool_protocol::conf::ConfError::Read {
                path: "/c".into(),
                error: io(),
            }),
            DaemonError::StateDir {
                path: "/s".into(),
                source: io(),
            },
            DaemonError::Locked { path: "/s".into() },
            DaemonError::Store(sled_err()),
            DaemonError::Store(StoreError::Corrupt {
                path: "/s".into(),
                what: "WAL entry",
                key: "00".into(),
                reason: "x".into(),
            }),
            DaemonError::Kernel(KernelError::Spawn(io())),
            DaemonError::Bind {
                addr: "h:1".into(),
                source: io(),
            },
            DaemonError::Runtime("x".into()),
        ];
        let codes: Vec<u8> = errors.iter().map(DaemonError::exit_code).collect();
        assert_eq!(codes, [78, 73, 75, 74, 65, 69, 1, 1]);
        // A store failure while running (write or flush) is 74, like at start.
        assert_eq!(DaemonError::from(sled_err()).exit_code(), EX_IOERR);
        for code in [0u8, 1, 2, 65, 69, 73, 74, 75, 78] {
            assert!(
                EXIT_CODES_HELP.contains(&format!(" {code} ")),
                "--help misses exit code {code}: {EXIT_CODES_HELP}"
            );
        }
    }
}
