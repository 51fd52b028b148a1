//! The driver: the single task that owns the [`Scheduler`] and the store
//! handle. Sessions and the kernel thread send it [`DriverCmd`]s (with a
//! `oneshot` for the answer); it sleeps until the scheduler's next deadline.
//!
//! It handles the commands queued at once as a group, then applies the
//! scheduler's effects in this order: write the changed records in one store
//! batch (flushed when a record was written), then send batches to agents,
//! answer the commands, acknowledge HALs and queue reports to Lustre. Nothing
//! leaves the process before it is on disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coordinatool_protocol::{
    CancelReply, Ehlo, EhloReply, ErrorReply, ListReply, QueueReply, Recv, Rejected, Reply,
    Request, Response, Role, StatusReply,
};
use lustre_bindings::{ActionList, HsmAction};
use tokio::sync::{mpsc, oneshot, watch};

use crate::kernel::KernelCmd;
use crate::scheduler::{
    CancelOutcome, LustreReport, Offer, Record, RecvSpec, ReqKey, Scheduler, libc_errno,
};
use crate::store::{CHECKPOINT_SLICE, Store, StoreError};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Commands to the driver.
#[derive(Debug)]
pub enum DriverCmd {
    /// HALs from Lustre (those the kernel thread read in one go); `ack`
    /// once persisted.
    Hal {
        /// The decoded HALs, in the order received.
        hals: Vec<ActionList>,
        /// Answered once their items are on disk.
        ack: oneshot::Sender<()>,
    },
    /// A handshake (protocol version already checked by the session).
    Ehlo {
        /// Peer address.
        peer: String,
        /// The request.
        ehlo: Ehlo,
        /// The answer.
        reply: oneshot::Sender<Reply>,
    },
    /// A `recv` from an agent.
    Recv {
        /// Agent id.
        agent: String,
        /// The request.
        recv: Recv,
        /// The answer (a batch), maybe much later.
        reply: oneshot::Sender<Reply>,
    },
    /// Any other request.
    Request {
        /// The request.
        req: Request,
        /// The answer.
        reply: oneshot::Sender<Reply>,
    },
    /// An agent's connection closed.
    Disconnect {
        /// Agent id.
        agent: String,
    },
}

/// What the driver needs besides its command channel.
#[derive(Debug)]
pub struct DriverDeps {
    /// The scheduler, already replayed.
    pub sched: Scheduler,
    /// The store.
    pub store: Store,
    /// Reports to Lustre (the kernel thread), if running.
    pub kernel: Option<std::sync::mpsc::Sender<KernelCmd>>,
    /// Set to `true` to stop the daemon.
    pub shutdown: watch::Sender<bool>,
    /// Open connections (maintained by the server).
    pub connections: Arc<AtomicU64>,
    /// Mount point, for `status`.
    pub mountpoint: String,
    /// Daemon start time (ms since epoch).
    pub started_ms: u64,
}

/// Commands handled as one group (one store batch, at most one flush).
pub const MAX_GROUP: usize = 256;

/// What a group of commands owes once its changes are on disk.
#[derive(Default)]
struct Outbox {
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    acks: Vec<oneshot::Sender<()>>,
    reports: Vec<LustreReport>,
    shutdown: bool,
}

/// The driver.
#[derive(Debug)]
pub struct Driver {
    d: DriverDeps,
    pending: HashMap<u64, (String, oneshot::Sender<Reply>)>,
    next_token: u64,
}

fn err(code: i32, msg: impl Into<String>) -> Reply {
    Reply::Err(ErrorReply::new(code, msg))
}

impl Driver {
    /// A driver.
    pub fn new(d: DriverDeps) -> Driver {
        Driver {
            d,
            pending: HashMap::new(),
            next_token: 1,
        }
    }

    /// Runs until shutdown (or the command channel closes). Returns an error
    /// if the store fails.
    ///
    /// Group commit: after a command arrives, the commands already queued
    /// behind it (at most [`MAX_GROUP`]) are handled too, and the whole group
    /// costs one store batch and at most one flush. Nothing the group owes
    /// (batches, replies, HAL acknowledgements, reports) leaves before that.
    pub async fn run(mut self, mut rx: mpsc::Receiver<DriverCmd>) -> Result<(), StoreError> {
        let mut shutdown = self.d.shutdown.subscribe();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(60));
        heartbeat.tick().await;
        let res = loop {
            let now = now_ms();
            let mut sleep = self
                .d
                .sched
                .next_deadline()
                .map(|t| Duration::from_millis(t.saturating_sub(now)))
                .unwrap_or(Duration::from_secs(3600));
            if let Some(w) = self.d.store.idle_wait() {
                // Store upkeep is due (deletions held, a checkpoint).
                sleep = sleep.min(w);
            }
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        let mut out = Outbox::default();
                        self.handle(cmd, &mut out);
                        for _ in 1..MAX_GROUP {
                            match rx.try_recv() {
                                Ok(cmd) => self.handle(cmd, &mut out),
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = self.apply(out) {
                            break Err(e);
                        }
                    }
                    None => break Ok(()),
                },
                _ = tokio::time::sleep(sleep) => {
                    for x in self.d.sched.tick(now_ms()) {
                        tracing::warn!(cookie = x.key.cookie, fid = %x.fid, dfid = %x.key.dfid,
                            action = %x.kind.name(), archive_id = x.archive_id, age_ms = x.age_ms,
                            "request waited too long without an agent (90% of mdt_request_timeout): \
                             reported to Lustre as failed (ETIMEDOUT) before the MDT cancels it silently");
                    }
                    if let Err(e) = self.apply(Outbox::default()) {
                        break Err(e);
                    }
                }
                _ = heartbeat.tick() => self.heartbeat(),
                _ = shutdown.changed() => break Ok(()),
            }
        };
        // Stop: answer what is already queued (except new recvs), then flush.
        rx.close();
        self.d.sched.drop_waiting();
        self.pending.clear();
        if res.is_ok() {
            let mut out = Outbox::default();
            while let Ok(cmd) = rx.try_recv() {
                if let DriverCmd::Recv { .. } = cmd {
                    continue;
                }
                self.handle(cmd, &mut out);
            }
            if let Err(e) = self.apply(out) {
                tracing::error!(error = %e, "store failure during shutdown");
            }
        }
        let _ = self.d.shutdown.send(true);
        let flushed = crate::blocking(|| self.d.store.flush_final());
        res.and(flushed)
    }

    fn heartbeat(&self) {
        let w = self.d.sched.waiting_counts();
        let r = self.d.sched.running_counts();
        tracing::info!(
            waiting_archive = w[0],
            waiting_restore = w[1],
            waiting_remove = w[2],
            running_archive = r[0],
            running_restore = r[1],
            running_remove = r[2],
            agents = self.d.sched.connected_agents(),
            locked = self.d.sched.locked(),
            "heartbeat"
        );
    }

    /// Persists the scheduler's effects (one batch, flushed when a record
    /// was written), then sends batches, replies, HAL acknowledgements and
    /// reports.
    fn apply(&mut self, out: Outbox) -> Result<(), StoreError> {
        let eff = self.d.sched.take_effects();
        if !eff.dirty.is_empty() {
            let sched = &self.d.sched;
            let store = &self.d.store;
            crate::blocking(|| {
                store.apply(eff.dirty.iter().map(|k| (*k, sched.record(k))), eff.wrote)
            })?;
        }
        for d in eff.deliveries {
            if let Some((_, tx)) = self.pending.remove(&d.token) {
                tracing::debug!(agent = %d.agent, items = d.batch.items.len(),
                    archive_id = d.batch.archive_id, "batch sent");
                let _ = tx.send(Reply::Ok(Response::Batch(d.batch)));
            }
        }
        for (tx, r) in out.replies {
            let _ = tx.send(r);
        }
        for ack in out.acks {
            let _ = ack.send(());
        }
        self.report(eff.reports);
        self.report(out.reports);
        if out.shutdown {
            tracing::info!("shutdown requested by a client");
            let _ = self.d.shutdown.send(true);
        }
        let sched = &self.d.sched;
        let store = &self.d.store;
        crate::blocking(|| store.maintain(|| sched.keys(), |k| sched.record(k), CHECKPOINT_SLICE))?;
        Ok(())
    }

    fn report(&self, reports: Vec<LustreReport>) {
        for r in reports {
            match &self.d.kernel {
                Some(k) => {
                    let _ = k.send(KernelCmd::Report(r));
                }
                None => tracing::warn!(
                    cookie = r.item.cookie,
                    errval = r.errval,
                    "no Lustre registration: report dropped"
                ),
            }
        }
    }

    /// Handles one command; what it owes goes to `out`, sent by
    /// [`Driver::apply`] once the group's changes are on disk.
    fn handle(&mut self, cmd: DriverCmd, out: &mut Outbox) {
        let now = now_ms();
        match cmd {
            DriverCmd::Hal { hals, ack } => {
                for hal in hals {
                    for item in hal.items {
                        let wire: coordinatool_protocol::WireItem = item.into();
                        match HsmAction::from_u32(wire.action) {
                            HsmAction::Archive | HsmAction::Restore | HsmAction::Remove => {
                                let rec = Record {
                                    item: wire,
                                    archive_id: hal.archive_id,
                                    flags: hal.flags,
                                    received_at_ms: now,
                                    agent: None,
                                    cancel_pending: false,
                                };
                                if self.d.sched.offer(rec, now, true) == Offer::Duplicate {
                                    tracing::debug!("duplicate request from Lustre ignored");
                                }
                            }
                            HsmAction::Cancel => {
                                self.d.sched.cancel(&wire, now);
                            }
                            other => {
                                tracing::warn!(cookie = wire.cookie, fid = %wire.fid, action = %other,
                                    value = wire.action, "unknown action from Lustre; reported EINVAL");
                                out.reports.push(LustreReport {
                                    item: wire,
                                    errval: libc_errno::EINVAL,
                                });
                            }
                        }
                    }
                }
                self.d.sched.pass(now);
                out.acks.push(ack);
            }
            DriverCmd::Ehlo { peer, ehlo, reply } => {
                let r = self.ehlo(peer, ehlo, now);
                out.replies.push((reply, r));
            }
            DriverCmd::Recv { agent, recv, reply } => {
                let token = self.next_token;
                self.next_token += 1;
                let spec = RecvSpec {
                    limits: [recv.max_archive, recv.max_restore, recv.max_remove],
                    max_bytes: recv.max_bytes,
                    deadline: recv.wait_ms.map(|w| now.saturating_add(w)),
                };
                self.pending.insert(token, (agent.clone(), reply));
                if let Err(e) = self.d.sched.recv(&agent, token, spec, now)
                    && let Some((_, tx)) = self.pending.remove(&token)
                {
                    out.replies.push((tx, err(e.errno(), e.to_string())));
                }
            }
            DriverCmd::Disconnect { agent } => {
                self.pending.retain(|_, (a, _)| *a != agent);
                self.d.sched.disconnect(&agent, now);
            }
            DriverCmd::Request { req, reply } => {
                out.shutdown |= matches!(req, Request::Shutdown);
                let r = self.request(req, now);
                out.replies.push((reply, r));
            }
        }
    }

    fn ehlo(&mut self, peer: String, ehlo: Ehlo, now: u64) -> Reply {
        let fsname = self.d.sched.config().fsname.clone();
        if let Some(f) = &ehlo.fsname
            && *f != fsname
        {
            return err(
                libc_errno::EINVAL,
                format!("this coordinatoold serves filesystem {fsname:?}, not {f:?}"),
            );
        }
        let mut kept = 0;
        if ehlo.role == Role::Agent {
            if ehlo.client_id.is_empty() {
                return err(libc_errno::EINVAL, "an agent needs a non-empty client_id");
            }
            if let Some(bad) = ehlo
                .archive_ids
                .iter()
                .find(|&&a| a == 0 || a > i32::MAX as u32)
            {
                return err(libc_errno::EINVAL, format!("bad archive id {bad} in ehlo"));
            }
            match self.d.sched.connect(
                &ehlo.client_id,
                Some(peer),
                ehlo.archive_ids,
                &ehlo.running,
                now,
            ) {
                Ok(c) => kept = c.kept,
                Err(e) => return err(e.errno(), e.to_string()),
            }
        }
        Reply::Ok(Response::Ehlo(EhloReply {
            protocol_version: coordinatool_protocol::PROTOCOL_VERSION,
            fsname,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            running_kept: kept,
        }))
    }

    fn request(&mut self, req: Request, now: u64) -> Reply {
        let sched = &mut self.d.sched;
        match req {
            Request::Done(d) => {
                sched.done(
                    ReqKey {
                        cookie: d.cookie,
                        dfid: d.dfid,
                    },
                    d.status,
                    now,
                );
                Reply::Ok(Response::Done)
            }
            Request::DoneBatch(v) => {
                sched.done_many(
                    v.into_iter().map(|d| {
                        (
                            ReqKey {
                                cookie: d.cookie,
                                dfid: d.dfid,
                            },
                            d.status,
                        )
                    }),
                    now,
                );
                Reply::Ok(Response::Done)
            }
            Request::Queue(q) => {
                if let Some(f) = &q.fsname
                    && *f != sched.config().fsname
                {
                    return err(
                        libc_errno::EINVAL,
                        format!(
                            "bad fsname {f:?}: this coordinatoold serves {:?}",
                            sched.config().fsname
                        ),
                    );
                }
                let mut out = QueueReply::default();
                for (i, qi) in q.items.into_iter().enumerate() {
                    if let Err(reason) = sched.validate(&qi.item, qi.archive_id) {
                        out.rejected.push(Rejected {
                            index: i as u32,
                            reason,
                        });
                        continue;
                    }
                    let rec = Record {
                        item: qi.item,
                        archive_id: qi.archive_id,
                        flags: qi.flags,
                        received_at_ms: now,
                        agent: None,
                        cancel_pending: false,
                    };
                    match sched.offer(rec, now, true) {
                        Offer::Added => out.enqueued += 1,
                        Offer::Duplicate => out.skipped += 1,
                    }
                }
                sched.pass(now);
                Reply::Ok(Response::Queue(out))
            }
            Request::Status => {
                let (oldest, oldest_waiting) = sched.oldest(now);
                Reply::Ok(Response::Status(Box::new(StatusReply {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    fsname: sched.config().fsname.clone(),
                    mountpoint: self.d.mountpoint.clone(),
                    uptime_ms: now.saturating_sub(self.d.started_ms),
                    locked: sched.locked(),
                    actions: sched.action_counts(),
                    agents: sched.agent_infos(now),
                    oldest_request_ms: oldest,
                    oldest_waiting_ms: oldest_waiting,
                    pending_cancels: sched.pending_cancels(),
                    connections: self.d.connections.load(Ordering::Relaxed),
                })))
            }
            Request::Lock => {
                sched.set_locked(true, now);
                tracing::info!("hand-out locked");
                Reply::Ok(Response::Locked { locked: true })
            }
            Request::Unlock => {
                sched.set_locked(false, now);
                tracing::info!("hand-out unlocked");
                Reply::Ok(Response::Locked { locked: false })
            }
            Request::List(l) => {
                let (requests, truncated) = sched.list(&l, now);
                Reply::Ok(Response::List(ListReply {
                    requests,
                    truncated,
                }))
            }
            Request::Cancel(c) => {
                let mut out = CancelReply::default();
                for fid in c.fids {
                    let keys = sched.keys_for_fid(&fid);
                    if keys.is_empty() {
                        out.not_found.push(fid);
                    }
                    for k in keys {
                        let Some(item) = sched.cancel_item_for(&k) else {
                            continue;
                        };
                        match sched.cancel(&item, now) {
                            CancelOutcome::Canceled => out.canceled.push(fid),
                            CancelOutcome::Forwarded => out.forwarded.push(fid),
                            CancelOutcome::Unknown => out.not_found.push(fid),
                        }
                    }
                }
                Reply::Ok(Response::Cancel(out))
            }
            Request::Shutdown => Reply::Ok(Response::ShuttingDown),
            Request::Ehlo(_) => err(libc_errno::EINVAL, "ehlo was already sent"),
            Request::Recv(_) => err(libc_errno::EINVAL, "recv is handled by the session"),
        }
    }
}
