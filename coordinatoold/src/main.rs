//! `coordinatoold`: see `coordinatoold --help` and the crate documentation.
//! Exit codes are documented in `coordinatoold::error`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use coordinatoold::config::{self, Cli};
use coordinatoold::error::{DaemonError, EX_CONFIG};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

fn filter_for(v: coordinatool_protocol::conf::Verbosity) -> EnvFilter {
    match std::env::var("COORDINATOOL_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::new(s),
        _ => EnvFilter::new(v.as_filter()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |k: &str| std::env::var(k).ok();
    let cfg = match config::resolve(&cli, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coordinatoold: configuration error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let (filter, handle) = reload::Layer::new(filter_for(cfg.verbose));
    // Colours only on a terminal: never in the journal, files or pipes.
    let ansi = std::env::var_os("JOURNAL_STREAM").is_none()
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .init();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(config = ?cfg.config_path, host = %cfg.host, port = cfg.port, archives = ?cfg.archive_ids,
        grace_ms = cfg.client_grace_ms, mdt_request_timeout_s = cfg.mdt_request_timeout_s, state_dir = %cfg.state_dir.display(), order = ?cfg.action_order,
        "starting coordinatoold {}", env!("CARGO_PKG_VERSION"));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let res: Result<(), DaemonError> = rt.block_on(async {
        let (shutdown_tx, _) = tokio::sync::watch::channel(false);
        let signals = shutdown_tx.clone();
        let cli2 = cli.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM received"); let _ = signals.send(true); }
                    _ = int.recv() => { tracing::info!("SIGINT received"); let _ = signals.send(true); }
                    _ = hup.recv() => {
                        let env = |k: &str| std::env::var(k).ok();
                        match config::reload_verbosity(&cli2, &env) {
                            Ok(v) => {
                                let _ = handle.reload(filter_for(v));
                                tracing::info!(level = ?v, "SIGHUP: log level reloaded");
                            }
                            Err(e) => tracing::error!(error = %e, "SIGHUP: cannot reload the log level"),
                        }
                    }
                }
            }
        });
        coordinatoold::daemon::run(cfg, shutdown_tx).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("coordinatoold: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
