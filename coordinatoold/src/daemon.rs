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
use crate::store::{Store, StoreError};

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

/// Loads every stored record into `sched` (oldest first); returns how many.
/// Assigned records wait one grace period for their agent.
pub fn replay(store: &Store, sched: &mut Scheduler, now: u64) -> Result<usize, StoreError> {
    let records = store.load_all()?;
    let n = records.len();
    sched.reserve(n);
    for rec in records {
        sched.offer(rec, now, false);
    }
    sched.take_effects();
    Ok(n)
}

/// Runs the daemon until it is told to stop. `stop` fires on SIGTERM/SIGINT
/// (main wires the signals).
pub async fn run(cfg: Config, shutdown_tx: watch::Sender<bool>) -> Result<(), DaemonError> {
    let _lock = lock_state_dir(&cfg)?;
    let started = std::time::Instant::now();
    let (store, report) = Store::open(&cfg.state_dir, cfg.no_flush)?;
    if let Some(b) = cfg.checkpoint_min_wal {
        store.set_checkpoint_min_wal(b);
    }
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
        archive_ids: cfg.archive_ids.clone(),
        waiting_expiry_ms: SchedConfig::expiry_for_mdt_timeout(cfg.mdt_request_timeout_s),
    });
    let n = crate::blocking(|| replay(&store, &mut sched, now_ms()))?;
    let now = now_ms();
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
    crate::blocking(|| kernel.stop());
    res.map_err(DaemonError::Store)?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Replay measurement (not a timed test): run with
    //! `cargo test -p coordinatoold --lib -- --ignored --nocapture replay_measure`
    //! (`COORDINATOOLD_REPLAY_N` sets the record count, default 1M;
    //! `COORDINATOOLD_REPLAY_THREADS` the scanning threads).
    use std::path::Path;
    use std::time::Instant;

    use coordinatool_protocol::{WireFid, WireItem};

    use super::*;
    use crate::scheduler::{Kind, Record};

    const PHASE_ENV: &str = "COORDINATOOLD_REPLAY_PHASE";
    const DIR_ENV: &str = "COORDINATOOLD_REPLAY_DIR";

    fn count() -> u32 {
        std::env::var("COORDINATOOLD_REPLAY_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000)
    }

    fn rss_kb(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    fn record(n: u32) -> Record {
        let fid = WireFid {
            seq: 0x200000401 + u64::from(n >> 20),
            oid: n,
            ver: 0,
        };
        Record {
            item: WireItem::whole_file(
                [20, 21, 22][n as usize % 3],
                fid,
                0x6000_0000 + u64::from(n),
                if n.is_multiple_of(4) {
                    b"tag=x".to_vec()
                } else {
                    Vec::new()
                },
            ),
            archive_id: 1 + n % 2,
            flags: 0,
            received_at_ms: 1_700_000_000_000 + u64::from(n / 100),
            // A few percent were running when the daemon stopped.
            agent: n.is_multiple_of(32).then(|| format!("mover{}", n % 8)),
            cancel_pending: false,
        }
    }

    fn write_phase(dir: &Path, n: u32) {
        let (store, _) = Store::open(dir, true).unwrap();
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + 10_000).min(n);
            let recs: Vec<Record> = (i..end).map(record).collect();
            store
                .apply(recs.iter().map(|r| (r.key(), Some(r))), false)
                .unwrap();
            i = end;
        }
        store.flush_final().unwrap();
        println!("write: {n} records in {:?}", t.elapsed());
    }

    fn replay_phase(dir: &Path, n: u32) {
        let rss0 = rss_kb("VmRSS:");
        let t = Instant::now();
        let (store, _) = Store::open(dir, true).unwrap();
        let open = t.elapsed();
        let t = Instant::now();
        let records = match std::env::var("COORDINATOOLD_REPLAY_THREADS") {
            Ok(t) => store.load_all_threads(t.parse().unwrap()).unwrap(),
            Err(_) => store.load_all().unwrap(),
        };
        let load = t.elapsed();
        let rss_loaded = rss_kb("VmRSS:");
        assert_eq!(records.len(), n as usize);
        let mut sched = Scheduler::new(SchedConfig {
            fsname: "testfs".into(),
            order: Kind::DEFAULT_ORDER,
            grace_ms: 600_000,
            max_hal_bytes: 1 << 20,
            archive_ids: Vec::new(),
            waiting_expiry_ms: Some(3_240_000),
        });
        let t = Instant::now();
        sched.reserve(records.len());
        for rec in records {
            sched.offer(rec, 1_800_000_000_000, false);
        }
        sched.take_effects();
        let offer = t.elapsed();
        assert_eq!(sched.len(), n as usize);
        println!(
            "replay of {n}: open {open:?}, load_all (scan+decode+sort) {load:?}, \
             scheduler {offer:?}, total {:?}",
            open + load + offer
        );
        println!(
            "memory: RSS before {} MiB, after load_all {} MiB, after scheduler {} MiB, peak {} MiB",
            rss0 / 1024,
            rss_loaded / 1024,
            rss_kb("VmRSS:") / 1024,
            rss_kb("VmHWM:") / 1024
        );
        drop(store);
        let t = Instant::now();
        drop(sched);
        println!("drop: {:?}", t.elapsed());
    }

    #[test]
    #[ignore = "measurement, slow in debug builds: run by hand"]
    fn replay_measure() {
        match std::env::var(PHASE_ENV).as_deref() {
            Ok("write") => {
                return write_phase(Path::new(&std::env::var(DIR_ENV).unwrap()), count());
            }
            Ok("replay") => {
                return replay_phase(Path::new(&std::env::var(DIR_ENV).unwrap()), count());
            }
            _ => {}
        }
        let dir = tempfile::tempdir().unwrap();
        for phase in ["write", "replay"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "daemon::tests::replay_measure",
                    "--ignored",
                    "--nocapture",
                ])
                .env(PHASE_ENV, phase)
                .env(DIR_ENV, dir.path())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            for l in text.lines().filter(|l| {
                l.starts_with("write")
                    || l.starts_with("replay")
                    || l.starts_with("memory")
                    || l.starts_with("drop")
            }) {
                println!("{l}");
            }
            assert!(
                out.status.success(),
                "{phase} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
