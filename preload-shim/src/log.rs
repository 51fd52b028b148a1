//! A tiny logger writing whole lines to stderr.
//!
//! The shim lives inside someone else's process: it must not install a global
//! `tracing` subscriber (the host may have its own) nor read `RUST_LOG`. Its
//! level comes from `COORDINATOOL_PRELOAD_LOG` (`off`, `error`, `warn`,
//! `normal`, `info`, `debug` or 0-6), else from the `verbose` configuration
//! key, else `normal` (errors, warnings and notable events).
//!
//! Each message is formatted into one buffer and written with a single
//! `write`, so lines from several threads do not interleave.

use coordinatool_protocol::conf::Verbosity;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Environment variable with the shim's own log level.
pub const ENV_LOG: &str = "COORDINATOOL_PRELOAD_LOG";

static LEVEL: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Sets the level.
pub fn set_level(v: Verbosity) {
    LEVEL.store(v as u8, Ordering::Relaxed);
}

/// Whether messages at `v` are written.
pub fn enabled(v: Verbosity) -> bool {
    (v as u8) <= LEVEL.load(Ordering::Relaxed)
}

/// The level from [`ENV_LOG`] if set and valid, else `fallback`. An invalid
/// value is reported once and ignored.
pub fn level_from_env(env: &dyn Fn(&str) -> Option<String>, fallback: Verbosity) -> Verbosity {
    match env(ENV_LOG) {
        Some(v) if !v.trim().is_empty() => match v.parse::<Verbosity>() {
            Ok(level) => level,
            Err(reason) => {
                write_line(
                    Verbosity::Warn,
                    format_args!("{ENV_LOG}: {reason}; ignored"),
                );
                fallback
            }
        },
        _ => fallback,
    }
}

fn tag(v: Verbosity) -> &'static str {
    match v {
        Verbosity::Off | Verbosity::Fatal | Verbosity::Error => "ERROR",
        Verbosity::Warn => "WARN",
        Verbosity::Normal | Verbosity::Info => "INFO",
        Verbosity::Debug => "DEBUG",
    }
}

/// Writes one line (use the macros instead).
pub fn write_line(v: Verbosity, args: fmt::Arguments<'_>) {
    let line = format!(
        "coordinatool-preload[{}]: {}: {}\n",
        std::process::id(),
        tag(v),
        args
    );
    // A failed write to stderr cannot be reported anywhere.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => {
        if $crate::log::enabled(coordinatool_protocol::conf::Verbosity::Error) {
            $crate::log::write_line(coordinatool_protocol::conf::Verbosity::Error, format_args!($($arg)*))
        }
    };
}

/// Logs at warning level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => {
        if $crate::log::enabled(coordinatool_protocol::conf::Verbosity::Warn) {
            $crate::log::write_line(coordinatool_protocol::conf::Verbosity::Warn, format_args!($($arg)*))
        }
    };
}

/// Logs at normal (notable event) level.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => {
        if $crate::log::enabled(coordinatool_protocol::conf::Verbosity::Normal) {
            $crate::log::write_line(coordinatool_protocol::conf::Verbosity::Normal, format_args!($($arg)*))
        }
    };
}

/// Logs at debug level.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => {
        if $crate::log::enabled(coordinatool_protocol::conf::Verbosity::Debug) {
            $crate::log::write_line(coordinatool_protocol::conf::Verbosity::Debug, format_args!($($arg)*))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_level_overrides_and_bad_value_falls_back() {
        let env = |k: &str| (k == ENV_LOG).then(|| "debug".to_string());
        assert_eq!(level_from_env(&env, Verbosity::Normal), Verbosity::Debug);
        let env = |k: &str| (k == ENV_LOG).then(|| "loud".to_string());
        assert_eq!(level_from_env(&env, Verbosity::Warn), Verbosity::Warn);
        let env = |_: &str| None;
        assert_eq!(level_from_env(&env, Verbosity::Info), Verbosity::Info);
    }
}
