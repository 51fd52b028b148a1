//! Errors of the simulator library.

use std::path::PathBuf;

/// Everything that can go wrong talking to, or running, the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not inside a simulated Lustre mount.
    #[error("{path}: not inside a lustre-sim mount (no .lustre-sim/ found)")]
    NotASimMount {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// A message could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// The message kind.
        what: &'static str,
        /// The encoder's complaint.
        message: String,
    },
    /// A message could not be decoded.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// The message kind.
        what: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// A frame announced a length above the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The persisted state could not be used.
    #[error("state file {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl SimError {
    /// Build an [`SimError::Io`] with a context string.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SimError::Io {
            context: context.into(),
            source,
        }
    }

    /// The negative errno a C caller should see for this error.
    pub fn to_neg_errno(&self) -> i32 {
        match self {
            SimError::Io { source, .. } => -source.raw_os_error().unwrap_or(libc::EIO),
            SimError::NotASimMount { .. } => -libc::ENOENT,
            SimError::FrameTooLarge { .. } => -libc::EMSGSIZE,
            SimError::Encode { .. } | SimError::Decode { .. } => -libc::EPROTO,
            SimError::State { .. } => -libc::EIO,
            SimError::Config(_) => -libc::EINVAL,
        }
    }
}
