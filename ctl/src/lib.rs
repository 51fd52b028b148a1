//! coordinatool-ctl, the administrator's tool for coordinatoold.
//!
//! # Layout
//! - [`cli`]: the clap command line (every doc comment is `--help`).
//! - [`exit`]: documented exit codes and [`exit::CtlError`], which maps onto them.
//! - [`input`]: JSON lines, the MDT's `hsm/active_requests` text and FID
//!   arguments turned into queue items, with per-line errors.
//! - [`format`]: text tables and JSON output.
//! - [`commands`]: the subcommands, written against the [`commands::Daemon`]
//!   trait (implemented by the protocol's blocking client).
//!
//! The binary is a thin `main` over [`run_cli`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod exit;
pub mod format;
pub mod input;

use std::io::IsTerminal;
use std::time::Duration;

use coordinatool_protocol::client::{Client, ClientError, io_reason};
use coordinatool_protocol::conf::ClientConfig;

use crate::commands::{Daemon, Env};
use crate::exit::CtlError;

/// The host name (for the admin client id), without the domain.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Resolves the daemon address from the configuration file, the
/// `COORDINATOOL_*` variables and the command line (in increasing priority).
pub fn resolve_address(
    cli: &cli::Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, u16, Vec<String>), CtlError> {
    let cfg = ClientConfig::load(cli.config.as_deref(), env, &hostname())?;
    let host = cli.host.clone().unwrap_or(cfg.host);
    let port = cli.port.unwrap_or(cfg.port);
    Ok((host, port, cfg.warnings))
}

/// Runs the parsed command line with the process's stdin, stdout and stderr.
pub fn run_cli(cli: &cli::Cli) -> Result<u8, CtlError> {
    let getenv = |k: &str| std::env::var(k).ok();
    let (host, port, warnings) = resolve_address(cli, &getenv)?;
    for w in &warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    let timeout = Duration::from_secs(cli.io_timeout);
    let client_id = format!("coordinatool-ctl-{}-{}", hostname(), std::process::id());
    let mut connect = move || -> Result<Box<dyn Daemon>, CtlError> {
        let addr = format!("{host}:{port}");
        tracing::debug!(%addr, "connecting");
        let c = Client::connect_admin(&host, port, &client_id, timeout)
            .map_err(|e| CtlError::from_client(&addr, e))?;
        c.set_read_timeout(Some(timeout)).map_err(|e| {
            CtlError::Unreachable(ClientError::Connect {
                addr: addr.clone(),
                reason: io_reason(&e),
            })
        })?;
        Ok(Box::new(c))
    };
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    let stdin_tty = std::io::stdin().is_terminal();
    let mut stdin = std::io::stdin().lock();
    let mut env = Env {
        stdout: &mut out,
        stderr: &mut err,
        stdin: &mut stdin,
        tty,
        stdin_tty,
        connect: &mut connect,
    };
    commands::run(&cli.command, &mut env)
}
