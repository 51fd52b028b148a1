//! Startup, run and shutdown of the whole daemon (what `main` calls).
//!
//! Order: state directory and its lock, store (migrated) and replay,
//! liblustreapi and the filesystem name, TCP listener, copytool registration
//! and the kernel thread, then READY. On SIGTERM/SIGINT (or `shutdown`):
//! STOPPING, stop accepting, let in-flight replies finish, flush, unregister.

use std::fs::File;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::driver::{Driver, DriverDeps, now_ms};
use crate::error::DaemonError;
use crate::kernel::{self, Kernel};
use crate::notify::notify;
use crate::scheduler::{SchedConfig, Scheduler};
use crate::store::Store;

/// Takes the state directory's lock; the file stays locked while it lives.
pub fn lock_state_dir(cfg: &Config) -> Result<File, DaemonError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DaemonError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let path = cfg.state_dir.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| DaemonError::StateDir {
            path: path.clone(),
            source,
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(DaemonError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => Err(DaemonError::StateDir { path, source }),
    }
}

/// Resolves the bind address: a default host that does not resolve becomes
/// `0.0.0.0`, with a warning.
pub fn bind_host(cfg: &Config) -> String {
    if cfg.host_is_default && (cfg.host.as_str(), cfg.port).to_socket_addrs().is_err() {
        tracing::warn!(host = %cfg.host, "default host name does not resolve; binding 0.0.0.0");
        return "0.0.0.0".into();
    }
    cfg.host.clone()
}

/// Runs the daemon until it is told to stop. `stop` fires on SIGTERM/SIGINT
/// (main wires the signals).
pub async fn run(cfg: Config, shutdown_tx: watch::Sender<bool>) -> Result<(), DaemonError> {
    let _lock = lock_state_dir(&cfg)?;
    let started = std::time::Instant::now();
    let (store, report) = Store::open(&cfg.state_dir, cfg.no_flush)?;
    if !report.applied.is_empty() {
        tracing::info!(from = report.from, to = report.to, steps = ?report.applied, "state store migrated");
    }
    if cfg.no_flush {
        tracing::warn!(
            "--no-flush: the store is never flushed; a crash loses requests (benchmarks only)"
        );
    }
    let (llapi, fsname) = kernel::load(cfg.lustreapi.as_deref(), &cfg.mountpoint)?;
    let mut sched = Scheduler::new(SchedConfig {
        fsname: fsname.clone(),
        order: cfg.action_order,
        grace_ms: cfg.client_grace_ms,
        max_hal_bytes: cfg.max_hal_bytes,
    });
    let records = tokio::task::block_in_place(|| store.load_all())?;
    let now = now_ms();
    let n = records.len();
    for rec in records {
        sched.offer(rec, now, false);
    }
    sched.take_effects();
    let w = sched.waiting_counts();
    let r = sched.running_counts();
    tracing::info!(
        records = n,
        waiting = w.iter().sum::<u64>(),
        held_for_agents = r.iter().sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state store replayed"
    );

    let host = bind_host(&cfg);
    let addr = format!("{host}:{}", cfg.port);
    let listener = TcpListener::bind((host.as_str(), cfg.port))
        .await
        .map_err(|source| DaemonError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: addr.clone(),
        source,
    })?;

    let (driver_tx, driver_rx) = mpsc::channel(1024);
    let (ktx, krx) = std::sync::mpsc::channel();
    let kernel = Kernel::start(
        llapi,
        fsname.clone(),
        &cfg.mountpoint,
        &cfg.archive_ids,
        ktx.clone(),
        krx,
        driver_tx.clone(),
    )?;
    let connections = Arc::new(AtomicU64::new(0));
    let driver = Driver::new(DriverDeps {
        sched,
        store,
        kernel: Some(ktx),
        shutdown: shutdown_tx.clone(),
        connections: connections.clone(),
        mountpoint: cfg.mountpoint.display().to_string(),
        started_ms: now,
    });
    let driver = tokio::spawn(driver.run(driver_rx));
    let server = tokio::spawn(crate::server::run(
        listener,
        driver_tx,
        shutdown_tx.subscribe(),
        connections,
    ));
    println!("coordinatoold: listening on {local}");
    tracing::info!(addr = %local, "listening");
    tracing::info!(fsname = %fsname, mount = %cfg.mountpoint.display(), state_dir = %cfg.state_dir.display(),
        requests = n, "coordinatoold: ready");
    notify("READY=1");

    let mut stop = shutdown_tx.subscribe();
    let _ = stop.wait_for(|s| *s).await;
    notify("STOPPING=1");
    tracing::info!("stopping");
    let _ = server.await;
    let res = driver
        .await
        .map_err(|e| DaemonError::Runtime(format!("driver task failed: {e}")))?;
    tokio::task::block_in_place(|| kernel.stop());
    res.map_err(DaemonError::Store)?;
    tracing::info!("stopped");
    Ok(())
}
