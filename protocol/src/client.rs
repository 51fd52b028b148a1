//! A small blocking client: connect (with an error that names the address and
//! the reason), handshake, then one request at a time.

use crate::frame::{FrameError, read_frame, write_frame};
use crate::messages::{
    Ehlo, EhloReply, ErrorReply, PROTOCOL_VERSION, Reply, Request, RequestFrame, Response,
    ResponseFrame, Role,
};
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Client-side errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The name did not resolve.
    #[error("cannot resolve coordinatoold address {addr}: {}", io_reason(error))]
    Resolve {
        /// `host:port` as given.
        addr: String,
        /// The cause (shown in the message, so not chained as a source).
        error: io::Error,
    },
    /// No address accepted the connection.
    #[error("cannot connect to coordinatoold at {addr}: {reason}")]
    Connect {
        /// `host:port` tried.
        addr: String,
        /// Why (e.g. "connection refused").
        reason: String,
    },
    /// A framing or I/O error on an established connection.
    #[error("connection to coordinatoold at {addr} failed: {error}")]
    Frame {
        /// `host:port`.
        addr: String,
        /// The cause (shown in the message, so not chained as a source).
        error: FrameError,
    },
    /// The daemon closed the connection.
    #[error("coordinatoold at {addr} closed the connection")]
    Closed {
        /// `host:port`.
        addr: String,
    },
    /// The daemon answered with an error.
    #[error("coordinatoold refused {op}: {reply}")]
    Server {
        /// The operation.
        op: &'static str,
        /// Its error reply.
        reply: ErrorReply,
    },
    /// The daemon answered with a reply of the wrong kind.
    #[error("unexpected reply to {op}: {got}")]
    Unexpected {
        /// The operation.
        op: &'static str,
        /// What came back.
        got: String,
    },
}

/// Turns an I/O error into a short, operator-friendly reason.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::NotFound => "not found".into(),
        _ => {
            let s = e.to_string();
            // "Connection refused (os error 111)" -> "connection refused"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// Resolves `host:port` and connects to the first address that answers.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addr = format!("{host}:{port}");
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| ClientError::Resolve {
            addr: addr.clone(),
            error,
        })?
        .collect();
    let mut last = None;
    for sa in &addrs {
        match TcpStream::connect_timeout(sa, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::Connect {
        addr,
        reason: last
            .map(|e| io_reason(&e))
            .unwrap_or_else(|| "the name resolved to no address".into()),
    })
}

/// A connected, handshaken client.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    addr: String,
    next_id: u64,
    server: EhloReply,
}

impl Client {
    /// Connects and sends `ehlo` as an admin client.
    pub fn connect_admin(
        host: &str,
        port: u16,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let stream = connect(host, port, timeout)?;
        Client::handshake(
            stream,
            format!("{host}:{port}"),
            Ehlo {
                protocol_version: PROTOCOL_VERSION,
                client_id: client_id.to_string(),
                role: Role::Admin,
                fsname: None,
                archive_ids: Vec::new(),
                running: Vec::new(),
            },
        )
    }

    /// Sends `ehlo` on an established stream.
    pub fn handshake(stream: TcpStream, addr: String, ehlo: Ehlo) -> Result<Client, ClientError> {
        let mut c = Client {
            stream,
            addr,
            next_id: 1,
            server: EhloReply {
                protocol_version: 0,
                fsname: String::new(),
                server_version: String::new(),
                running_kept: 0,
            },
        };
        match c.call(Request::Ehlo(ehlo))? {
            Response::Ehlo(reply) => {
                c.server = reply;
                Ok(c)
            }
            other => Err(ClientError::Unexpected {
                op: "ehlo",
                got: format!("{other:?}"),
            }),
        }
    }

    /// What the daemon said in its handshake.
    pub fn server(&self) -> &EhloReply {
        &self.server
    }

    /// `host:port` of the daemon.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets a read timeout for replies (`None`: wait forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, body: Request) -> Result<Response, ClientError> {
        let op = body.name();
        let id = self.next_id;
        self.next_id += 1;
        let addr = self.addr.clone();
        let frame_err = |error| ClientError::Frame {
            addr: addr.clone(),
            error,
        };
        write_frame(&mut self.stream, &RequestFrame { id, body }).map_err(frame_err)?;
        loop {
            let reply: Option<ResponseFrame> = read_frame(&mut self.stream).map_err(frame_err)?;
            let Some(reply) = reply else {
                return Err(ClientError::Closed {
                    addr: self.addr.clone(),
                });
            };
            if reply.id != id {
                // A reply to an earlier request that timed out on our side.
                continue;
            }
            return match reply.body {
                Reply::Ok(r) => Ok(r),
                Reply::Err(reply) => Err(ClientError::Server { op, reply }),
            };
        }
    }
}
