//! One blocking connection to coordinatoold: framed requests with ids, sent
//! with `MSG_NOSIGNAL`; replies read incrementally after `poll`.

use crate::error::ShimError;
use crate::sys;
use coordinatool_protocol::frame::{FrameBuffer, encode_frame};
use coordinatool_protocol::{
    Ehlo, EhloReply, Reply, Request, RequestFrame, Response, ResponseFrame,
};
use std::io::Read;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Timeout of one send (a daemon that does not read for this long is dead).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the `ehlo` answer may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected socket with its decoder state.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    fb: FrameBuffer,
    /// Read buffer, allocated (and zeroed) once rather than per read.
    rbuf: Box<[u8]>,
    next_id: u64,
    addr: String,
}

/// Bytes read from the socket at most per [`Conn::fill`].
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// Connects (no handshake yet).
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<Conn, ShimError> {
        let stream = coordinatool_protocol::client::connect(host, port, timeout)?;
        let addr = format!("{host}:{port}");
        stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|source| ShimError::Sys {
                call: "setsockopt(SO_SNDTIMEO)",
                source,
            })?;
        Ok(Conn {
            stream,
            fb: FrameBuffer::new(),
            rbuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            next_id: 1,
            addr,
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The socket, for `poll`.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The id the next [`Conn::send`] will use.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Sends one request; returns its id.
    pub fn send(&mut self, body: Request) -> Result<u64, ShimError> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes =
            encode_frame(&RequestFrame { id, body }).map_err(|source| ShimError::Frame {
                addr: self.addr.clone(),
                source,
            })?;
        sys::send_all(self.fd(), &bytes).map_err(|source| ShimError::Frame {
            addr: self.addr.clone(),
            source: source.into(),
        })?;
        Ok(id)
    }

    /// Reads what is available (call after `poll` said readable). A closed
    /// connection is an error.
    pub fn fill(&mut self) -> Result<(), ShimError> {
        match self.stream.read(&mut self.rbuf) {
            Ok(0) => Err(ShimError::Closed {
                addr: self.addr.clone(),
            }),
            Ok(n) => {
                self.fb.push(&self.rbuf[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(source) => Err(ShimError::Frame {
                addr: self.addr.clone(),
                source: source.into(),
            }),
        }
    }

    /// The next complete reply, if one is buffered.
    pub fn next_reply(&mut self) -> Result<Option<ResponseFrame>, ShimError> {
        self.fb
            .next_message::<ResponseFrame>()
            .map_err(|source| ShimError::Frame {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Sends `ehlo` and waits for its answer.
    pub fn hello(&mut self, ehlo: Ehlo) -> Result<EhloReply, ShimError> {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|source| ShimError::Sys {
                call: "setsockopt(SO_RCVTIMEO)",
                source,
            })?;
        let id = self.send(Request::Ehlo(ehlo))?;
        let deadline = Instant::now() + HELLO_TIMEOUT;
        loop {
            while let Some(reply) = self.next_reply()? {
                if reply.id != id {
                    continue;
                }
                return match reply.body {
                    Reply::Ok(Response::Ehlo(r)) => Ok(r),
                    Reply::Ok(other) => Err(ShimError::Unexpected {
                        op: "ehlo",
                        got: format!("{other:?}"),
                    }),
                    Reply::Err(reply) => Err(ShimError::Refused { op: "ehlo", reply }),
                };
            }
            if Instant::now() >= deadline {
                return Err(ShimError::Timeout {
                    addr: self.addr.clone(),
                    secs: HELLO_TIMEOUT.as_secs(),
                });
            }
            self.fill()?;
        }
    }
}
