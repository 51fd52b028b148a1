//! The TCP side: the accept loop and one task per connection.
//!
//! A session never touches scheduler state: it sends [`DriverCmd`]s and
//! writes the answers. Replies go through a per-connection writer task, so a
//! `recv` answered late and the replies to later requests (`done`, ...) can
//! interleave. A malformed, oversized or undecodable frame is logged with the
//! peer address and ends that connection only; the frame cap is checked on the
//! length prefix, before anything is allocated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use coordinatool_protocol::frame::{aio, decode_body};
use coordinatool_protocol::{
    ErrorReply, MIN_RECV_BYTES, PROTOCOL_VERSION, Reply, Request, RequestFrame, ResponseFrame, Role,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::DriverCmd;
use crate::scheduler::libc_errno;

/// Accepts connections until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    driver: mpsc::Sender<DriverCmd>,
    mut shutdown: watch::Receiver<bool>,
    connections: Arc<AtomicU64>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let driver = driver.clone();
                    let shutdown = shutdown.clone();
                    let conns = connections.clone();
                    conns.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(async move {
                        session(stream, peer.to_string(), driver, shutdown).await;
                        conns.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    // Let sessions finish writing what they have (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

enum State {
    Init,
    Agent(String),
    Admin,
}

fn err(code: i32, msg: impl Into<String>) -> Reply {
    Reply::Err(ErrorReply::new(code, msg))
}

async fn call(
    driver: &mpsc::Sender<DriverCmd>,
    make: impl FnOnce(oneshot::Sender<Reply>) -> DriverCmd,
) -> Reply {
    let (tx, rx) = oneshot::channel();
    if driver.send(make(tx)).await.is_err() {
        return err(libc_errno::ESHUTDOWN, "coordinatoold is shutting down");
    }
    rx.await
        .unwrap_or_else(|_| err(libc_errno::ESHUTDOWN, "coordinatoold is shutting down"))
}

async fn session(
    stream: TcpStream,
    peer: String,
    driver: mpsc::Sender<DriverCmd>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(peer = %peer, "connection accepted");
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ResponseFrame>();
    let writer_peer = peer.clone();
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if let Err(e) = aio::write_frame(&mut wr, &frame).await {
                if !e.is_disconnect() {
                    tracing::warn!(peer = %writer_peer, error = %e, "cannot write reply");
                }
                break;
            }
        }
    });
    let recv_outstanding = Arc::new(AtomicBool::new(false));
    let mut state = State::Init;
    loop {
        let body = tokio::select! {
            r = aio::read_frame_bytes(&mut rd) => r,
            _ = shutdown.changed() => break,
        };
        let body = match body {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                if e.is_disconnect() {
                    tracing::debug!(peer = %peer, "connection reset");
                } else {
                    tracing::warn!(peer = %peer, error = %e, "bad frame; dropping the connection");
                }
                break;
            }
        };
        let frame: RequestFrame = match decode_body(&body) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "undecodable request; dropping the connection");
                break;
            }
        };
        let id = frame.id;
        tracing::trace!(peer = %peer, id, op = frame.body.name(), "request");
        let reply = match (&state, frame.body) {
            (State::Init, Request::Ehlo(ehlo)) => {
                if ehlo.protocol_version != PROTOCOL_VERSION {
                    err(
                        libc_errno::EPROTO,
                        format!(
                            "protocol version {} is not supported (this coordinatoold speaks {PROTOCOL_VERSION})",
                            ehlo.protocol_version
                        ),
                    )
                } else {
                    let role = ehlo.role;
                    let client_id = ehlo.client_id.clone();
                    let r = call(&driver, |reply| DriverCmd::Ehlo {
                        peer: peer.clone(),
                        ehlo,
                        reply,
                    })
                    .await;
                    if matches!(r, Reply::Ok(_)) {
                        state = match role {
                            Role::Agent => State::Agent(client_id.clone()),
                            Role::Admin => State::Admin,
                        };
                        tracing::info!(peer = %peer, client_id = %client_id, role = ?role, "client connected");
                    }
                    r
                }
            }
            (State::Init, other) => err(
                libc_errno::EPROTO,
                format!("send ehlo before {}", other.name()),
            ),
            (_, Request::Ehlo(_)) => err(libc_errno::EINVAL, "ehlo was already sent"),
            (State::Admin, Request::Recv(_)) => err(
                libc_errno::EPERM,
                "recv is only for agents (ehlo role agent)",
            ),
            (State::Agent(agent), Request::Recv(recv)) => {
                if recv.max_bytes < MIN_RECV_BYTES {
                    err(
                        libc_errno::EINVAL,
                        format!(
                            "max_bytes {} is below the minimum {MIN_RECV_BYTES}",
                            recv.max_bytes
                        ),
                    )
                } else if recv_outstanding.swap(true, Ordering::SeqCst) {
                    err(
                        libc_errno::EINVAL,
                        "a recv is already outstanding on this connection",
                    )
                } else {
                    let (tx, rx) = oneshot::channel();
                    if driver
                        .send(DriverCmd::Recv {
                            agent: agent.clone(),
                            recv,
                            reply: tx,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let out = out_tx.clone();
                    let flag = recv_outstanding.clone();
                    tokio::spawn(async move {
                        if let Ok(body) = rx.await {
                            flag.store(false, Ordering::SeqCst);
                            let _ = out.send(ResponseFrame { id, body });
                        }
                    });
                    continue;
                }
            }
            (_, req) => call(&driver, |reply| DriverCmd::Request { req, reply }).await,
        };
        if out_tx.send(ResponseFrame { id, body: reply }).is_err() {
            break;
        }
    }
    if let State::Agent(agent) = &state {
        tracing::info!(peer = %peer, agent = %agent, "agent connection closed");
        let _ = driver
            .send(DriverCmd::Disconnect {
                agent: agent.clone(),
            })
            .await;
    }
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}
