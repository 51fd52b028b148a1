//! The Lustre side, on one dedicated OS thread.
//!
//! The thread registers as the copytool of the mount (non-blocking receive
//! pipe), then loops: receive the HALs Lustre has queued (up to
//! [`MAX_HALS_PER_HANDOFF`]), decode them, hand them to the driver and wait
//! until the driver has persisted them (back-pressure: Lustre is read again
//! only then; the store is flushed once per hand-off). While nothing is pending it blocks in `poll()` on the copytool's
//! fd for at most [`IDLE_WAIT`] and receives as soon as it is readable; between
//! polls it drains its command channel, so reports to Lustre
//! (`action_begin(is_error)` + `action_end(errval)`) are made promptly from
//! the same thread that owns the registration. `ESHUTDOWN` (the kernel tore the session down) or `EPIPE`
//! (its end of the pipe closed) ends the session: intake stops, the daemon
//! keeps everything it holds, and the thread tries to register again every
//! second (the MDT refuses while its coordinator is stopped). Reports made
//! while unregistered are kept and made once registered again. On
//! [`KernelCmd::Stop`] it unregisters and ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use lustre_bindings::action::flags::HP_FLAG_COMPLETED;
use lustre_bindings::llapi::{Copytool, Llapi};
use lustre_bindings::{ActionItem, ActionList};
use tokio::sync::{mpsc, oneshot};

use crate::driver::DriverCmd;
use crate::scheduler::LustreReport;

/// How long the thread blocks on the copytool fd when Lustre has nothing,
/// before looking at its command channel again (bounds the delay of a report
/// to Lustre; a HAL is received as soon as the fd is readable).
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// How often registration is retried after `ESHUTDOWN`.
const REREGISTER_EVERY: Duration = Duration::from_secs(1);
/// `ESHUTDOWN`.
const ESHUTDOWN: i32 = 108;
/// `EPIPE`.
const EPIPE: i32 = 32;
/// HALs read from Lustre and handed to the driver together, at most.
const MAX_HALS_PER_HANDOFF: usize = 256;
/// Bytes of HAL handed to the driver together, at most (a HAL is small:
/// the MDT's messages are at most a few KiB).
const MAX_HANDOFF_BYTES: usize = 1 << 20;
/// Reports kept while unregistered, at most.
const MAX_DEFERRED_REPORTS: usize = 1 << 20;

/// Commands to the kernel thread.
#[derive(Debug)]
pub enum KernelCmd {
    /// Report an item to Lustre as failed with this errno.
    Report(LustreReport),
    /// Unregister and end.
    Stop,
}

/// Errors starting the Lustre side.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The library could not be loaded.
    #[error("{0}")]
    Load(#[from] lustre_bindings::llapi::LlapiError),
    /// The mount point is not a Lustre filesystem.
    #[error("cannot find the Lustre filesystem of {mount}: {source}")]
    Fsname {
        /// The mount point.
        mount: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Registration failed.
    #[error("cannot register as copytool on {mount}: {source}")]
    Register {
        /// The mount point.
        mount: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the kernel thread: {0}")]
    Spawn(std::io::Error),
}

/// The running Lustre side.
#[derive(Debug)]
pub struct Kernel {
    /// The filesystem name of the mount.
    pub fsname: String,
    thread: std::thread::JoinHandle<()>,
    tx: Sender<KernelCmd>,
}

/// Loads the library and finds the filesystem name of `mount`.
pub fn load(lib: Option<&Path>, mount: &Path) -> Result<(Arc<Llapi>, String), KernelError> {
    let llapi = Llapi::load(lib)?;
    let fsname = llapi
        .search_fsname(mount)
        .map_err(|source| KernelError::Fsname {
            mount: mount.to_path_buf(),
            source,
        })?;
    Ok((llapi, fsname))
}

impl Kernel {
    /// Registers on `mount` and starts the thread. Commands arrive on `rx`
    /// (whose sender `tx` the driver also holds); HALs go to `driver`.
    pub fn start(
        llapi: Arc<Llapi>,
        fsname: String,
        mount: &Path,
        archives: &[u32],
        tx: Sender<KernelCmd>,
        rx: Receiver<KernelCmd>,
        driver: mpsc::Sender<DriverCmd>,
    ) -> Result<Kernel, KernelError> {
        let ct = llapi
            .copytool_register(mount, archives, true)
            .map_err(|source| KernelError::Register {
                mount: mount.to_path_buf(),
                source,
            })?;
        tracing::info!(mount = %mount.display(), fsname = %fsname, archives = ?archives,
            library = llapi.path(), "registered as copytool");
        let mut th = Thread {
            llapi,
            ct: Some(ct),
            mount: mount.to_path_buf(),
            archives: archives.to_vec(),
            fsname: fsname.clone(),
            rx,
            driver,
            deferred: Vec::new(),
            register_failures: 0,
            held_error: None,
        };
        let thread = std::thread::Builder::new()
            .name("lustre".into())
            .spawn(move || th.run())
            .map_err(KernelError::Spawn)?;
        Ok(Kernel { fsname, thread, tx })
    }

    /// Asks the thread to unregister and waits for it.
    pub fn stop(self) {
        let _ = self.tx.send(KernelCmd::Stop);
        if self.thread.join().is_err() {
            tracing::error!("the Lustre thread panicked");
        }
    }
}

struct Thread {
    llapi: Arc<Llapi>,
    ct: Option<Copytool>,
    mount: PathBuf,
    archives: Vec<u32>,
    fsname: String,
    rx: Receiver<KernelCmd>,
    driver: mpsc::Sender<DriverCmd>,
    /// Reports made while unregistered.
    deferred: Vec<LustreReport>,
    /// Failed registration attempts since the session ended.
    register_failures: u64,
    /// An error from a receive that followed successful ones, dealt with
    /// once those are handed off.
    held_error: Option<std::io::Error>,
}

enum Flow {
    Go,
    Stop,
}

impl Thread {
    fn run(&mut self) {
        loop {
            if let Flow::Stop = self.drain_commands() {
                break;
            }
            let Some(ct) = self.ct.as_ref() else {
                if let Flow::Stop = self.wait(REREGISTER_EVERY) {
                    break;
                }
                self.reregister();
                continue;
            };
            let first = match self.held_error.take() {
                Some(e) => Err(e),
                None => ct.recv_shared(),
            };
            match first {
                Ok(bytes) => {
                    // Read what else Lustre has queued: one hand-off (and
                    // one store flush) for all of it.
                    let mut total = bytes.len();
                    let mut batch = vec![bytes];
                    while batch.len() < MAX_HALS_PER_HANDOFF && total < MAX_HANDOFF_BYTES {
                        match ct.recv_shared() {
                            Ok(b) => {
                                total += b.len();
                                batch.push(b);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                // Dealt with once these HALs are persisted.
                                self.held_error = Some(e);
                                break;
                            }
                        }
                    }
                    if let Flow::Stop = self.handle_hals(&batch) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = ct.wait_readable(IDLE_WAIT) {
                        // Cannot poll the fd (should not happen): fall back
                        // to sleeping on the command channel.
                        tracing::debug!(error = %e, "poll on the copytool fd failed");
                        if let Flow::Stop = self.wait(IDLE_WAIT) {
                            break;
                        }
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(ESHUTDOWN | EPIPE)) => {
                    tracing::error!(error = %e, errno = e.raw_os_error(),
                        "Lustre ended the copytool session (coordinator shut down?); intake stopped, \
                         queued work kept, registering again every second");
                    if let Some(ct) = self.ct.take() {
                        let _ = ct.unregister();
                    }
                    self.register_failures = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "llapi_hsm_copytool_recv failed");
                    if let Flow::Stop = self.wait(Duration::from_millis(200)) {
                        break;
                    }
                }
            }
        }
        if let Some(ct) = self.ct.take() {
            match ct.unregister() {
                Ok(()) => tracing::info!("copytool unregistered"),
                Err(e) => tracing::warn!(error = %e, "copytool unregister failed"),
            }
        }
    }

    fn reregister(&mut self) {
        match self
            .llapi
            .copytool_register(&self.mount, &self.archives, true)
        {
            Ok(ct) => {
                tracing::info!(
                    attempts = self.register_failures + 1,
                    deferred_reports = self.deferred.len(),
                    "registered as copytool again"
                );
                self.ct = Some(ct);
                for r in std::mem::take(&mut self.deferred) {
                    self.report(r);
                }
            }
            Err(e) => {
                self.register_failures += 1;
                // Once at warn level, then quietly: the coordinator may stay
                // stopped for a long time.
                if self.register_failures == 1 {
                    tracing::warn!(error = %e, "copytool registration failed; retrying every second");
                } else {
                    tracing::debug!(error = %e, attempts = self.register_failures,
                        "copytool registration failed again");
                }
            }
        }
    }

    fn handle_cmd(&mut self, cmd: KernelCmd) -> Flow {
        match cmd {
            KernelCmd::Stop => Flow::Stop,
            KernelCmd::Report(r) => {
                self.report(r);
                Flow::Go
            }
        }
    }

    fn drain_commands(&mut self) -> Flow {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => {
                    if let Flow::Stop = self.handle_cmd(cmd) {
                        return Flow::Stop;
                    }
                }
                Err(TryRecvError::Empty) => return Flow::Go,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
    }

    fn wait(&mut self, d: Duration) -> Flow {
        match self.rx.recv_timeout(d) {
            Ok(cmd) => self.handle_cmd(cmd),
            Err(RecvTimeoutError::Timeout) => Flow::Go,
            Err(RecvTimeoutError::Disconnected) => Flow::Stop,
        }
    }

    fn report(&mut self, r: LustreReport) {
        let Some(ct) = self.ct.as_ref() else {
            if self.deferred.len() < MAX_DEFERRED_REPORTS {
                tracing::info!(cookie = r.item.cookie, fid = %r.item.fid, errval = r.errval,
                    "not registered: report to Lustre deferred until registered again");
                self.deferred.push(r);
            } else {
                tracing::warn!(cookie = r.item.cookie, fid = %r.item.fid, errval = r.errval,
                    "not registered and too many deferred reports: report dropped");
            }
            return;
        };
        let item: ActionItem = r.item.into();
        let res = ct
            .action_begin(&item, -1, 0, true)
            .and_then(|ca| ca.end(item.extent, HP_FLAG_COMPLETED, r.errval));
        match res {
            Ok(()) => tracing::debug!(cookie = item.cookie, fid = %item.fid, action = %item.action,
                errval = r.errval, "reported to Lustre"),
            Err(e) => tracing::warn!(cookie = item.cookie, fid = %item.fid, action = %item.action,
                errval = r.errval, error = %e, "reporting to Lustre failed"),
        }
    }

    /// Decodes HALs read in one go and hands them to the driver; returns
    /// once they are persisted.
    fn handle_hals(&mut self, batch: &[Vec<u8>]) -> Flow {
        let mut hals = Vec::with_capacity(batch.len());
        for bytes in batch {
            let hal = match ActionList::decode(bytes) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, len = bytes.len(), "undecodable HAL from Lustre dropped");
                    continue;
                }
            };
            if hal.fsname != self.fsname {
                tracing::error!(hal_fsname = %hal.fsname, fsname = %self.fsname,
                    "HAL for another filesystem; accepted anyway");
            }
            tracing::debug!(
                items = hal.items.len(),
                archive_id = hal.archive_id,
                flags = hal.flags,
                "HAL received"
            );
            hals.push(hal);
        }
        if hals.is_empty() {
            return Flow::Go;
        }
        let (ack, done) = oneshot::channel();
        if self
            .driver
            .blocking_send(DriverCmd::Hal { hals, ack })
            .is_err()
        {
            return Flow::Stop;
        }
        // Back-pressure: Lustre is read again once these are persisted.
        match done.blocking_recv() {
            Ok(()) => Flow::Go,
            Err(_) => Flow::Stop,
        }
    }
}
