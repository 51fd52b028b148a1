//! `lustre-simd`: a simulated Lustre client mount and its MDT coordinators.
//!
//! Runs in the foreground until SIGTERM/SIGINT, then sends KUC SHUTDOWN to
//! every registered copytool, saves its state and exits 0.
//!
//! Exit codes: 0 clean stop; 1 start-up or run-time failure; 2 bad usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lustre_sim::daemon::{Config, Daemon};

/// A simulated Lustre MDT (HSM coordinator) serving a folder as a mount.
#[derive(Debug, Parser)]
#[command(name = "lustre-simd", version)]
struct Args {
    /// The folder acting as the client mount point.
    #[arg(long)]
    root: PathBuf,
    /// Filesystem name (at most 8 characters); default: the saved one, or "lustre".
    #[arg(long)]
    fsname: Option<String>,
    /// Number of MDTs; default: the saved count, or 1.
    #[arg(long)]
    mdts: Option<u32>,
    /// Latency trace: append `<cookie hex> <fid> <CLOCK_REALTIME ns>` to
    /// FILE for every item handed out to a copytool (buffered, flushed
    /// every 100 ms and at exit).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the signal runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        Ok(())
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    let daemon = Daemon::start(Config {
        root: args.root.clone(),
        fsname: args.fsname,
        mdts: args.mdts,
        trace: args.trace,
    })
    .with_context(|| format!("cannot start on {}", args.root.display()))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "lustre-simd: ready root={} fsname={} mdts={}",
            daemon.root().display(),
            daemon.fsname(),
            daemon.mdts()
        )?;
        out.flush()?;
    }
    wait_for_signal()?;
    daemon.shutdown().context("clean shutdown failed")?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUSTRE_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lustre-simd: {e:#}");
            ExitCode::from(1)
        }
    }
}
