//! Framing: every message is a 4-byte big-endian length followed by that many
//! bytes of MessagePack (a map with named fields).
//!
//! The length never counts the 4-byte prefix. A length of zero, or one above
//! [`MAX_FRAME_LEN`], is a protocol error: the receiver drops the connection
//! without trying to read the body, so a hostile or confused peer cannot make
//! it allocate more than the cap.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};

/// Hard cap on the body of one frame (16 MiB). A HAL is at most 1 MiB, and
/// `coordinatool-ctl` splits large imports into batches well below this.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// What can go wrong while reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame larger than the cap (or of length zero).
    #[error("frame length {len} is invalid (must be 1..={max} bytes)")]
    BadLength {
        /// The announced length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({got} of {want} bytes received)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The body is not a valid MessagePack message of the expected shape.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A message could not be encoded (a bug, or a value MessagePack cannot hold).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The encoded message is larger than the cap.
    #[error("message of {len} bytes exceeds the {max}-byte frame cap")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// An I/O error on the underlying stream.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether this error means the peer simply went away (not worth a warning).
    pub fn is_disconnect(&self) -> bool {
        match self {
            FrameError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// Encodes one message as a complete frame (prefix included).
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; PREFIX_LEN];
    rmp_serde::encode::write_named(&mut buf, msg)?;
    let len = buf.len() - PREFIX_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: MAX_FRAME_LEN,
    })?;
    buf[..PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(buf)
}

/// Decodes a frame body (without its prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(body)?)
}

fn check_len(prefix: [u8; PREFIX_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(FrameError::BadLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Writes one frame to a blocking stream.
pub fn write_frame<W: Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let buf = encode_frame(msg)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame from a blocking stream. `Ok(None)` means a clean end of
/// stream before the first byte of a frame.
pub fn read_frame<R: Read + ?Sized, T: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; PREFIX_LEN];
    let got = read_full(r, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    if got < PREFIX_LEN {
        return Err(FrameError::Truncated {
            got,
            want: PREFIX_LEN,
        });
    }
    let len = check_len(prefix)?;
    let mut body = vec![0u8; len];
    let got = read_full(r, &mut body)?;
    if got < len {
        return Err(FrameError::Truncated { got, want: len });
    }
    decode_body(&body).map(Some)
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < buf.len() {
        match r.read(&mut buf[off..]) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

/// An incremental decoder for non-blocking readers: push bytes as they come,
/// take complete messages out. Partial input is "not yet", never an error.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet consumed.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next complete message, if one is fully buffered. A bad length
    /// prefix or a malformed body is an error (the connection should be dropped).
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&self.buf[..PREFIX_LEN]);
        let len = check_len(prefix)?;
        if self.buf.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let msg = decode_body(&self.buf[PREFIX_LEN..PREFIX_LEN + len]);
        self.buf.drain(..PREFIX_LEN + len);
        msg.map(Some)
    }
}

/// Async (tokio) framing helpers, used by the daemon.
#[cfg(feature = "tokio")]
pub mod aio {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Reads one frame body. `Ok(None)` on a clean end of stream before a frame.
    pub async fn read_frame_bytes<R: AsyncRead + Unpin>(
        r: &mut R,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let mut got = 0;
        while got < PREFIX_LEN {
            let n = r.read(&mut prefix[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    got,
                    want: PREFIX_LEN,
                });
            }
            got += n;
        }
        let len = check_len(prefix)?;
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = r.read(&mut body[got..]).await?;
            if n == 0 {
                return Err(FrameError::Truncated { got, want: len });
            }
            got += n;
        }
        Ok(Some(body))
    }

    /// Reads and decodes one frame.
    pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
        r: &mut R,
    ) -> Result<Option<T>, FrameError> {
        match read_frame_bytes(r).await? {
            None => Ok(None),
            Some(body) => decode_body(&body).map(Some),
        }
    }

    /// Encodes and writes one frame.
    pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize + ?Sized>(
        w: &mut W,
        msg: &T,
    ) -> Result<(), FrameError> {
        let buf = encode_frame(msg)?;
        w.write_all(&buf).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Request, RequestFrame};

    #[test]
    fn round_trip_blocking() {
        let msg = RequestFrame {
            id: 7,
            body: Request::Lock,
        };
        let bytes = encode_frame(&msg).unwrap();
        let back: RequestFrame = read_frame(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn clean_eof_is_none_and_partial_is_truncated() {
        let none: Option<RequestFrame> = read_frame(&mut &[][..]).unwrap();
        assert!(none.is_none());
        let bytes = encode_frame(&RequestFrame {
            id: 1,
            body: Request::Unlock,
        })
        .unwrap();
        for cut in 1..bytes.len() {
            let err = read_frame::<_, RequestFrame>(&mut &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn oversized_and_zero_lengths_are_rejected_before_reading() {
        let mut big = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 16]);
        let err = read_frame::<_, RequestFrame>(&mut &big[..]).unwrap_err();
        assert!(matches!(err, FrameError::BadLength { .. }), "{err}");
        let zero = 0u32.to_be_bytes();
        let err = read_frame::<_, RequestFrame>(&mut &zero[..]).unwrap_err();
        assert!(err.to_string().contains("invalid"), "{err}");
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut bytes = 5u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"\xc1\xc1\xc1\xc1\xc1");
        let err = read_frame::<_, RequestFrame>(&mut &bytes[..]).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }

    #[test]
    fn frame_buffer_feeds_one_byte_at_a_time() {
        let a = RequestFrame {
            id: 1,
            body: Request::Lock,
        };
        let b = RequestFrame {
            id: 2,
            body: Request::Unlock,
        };
        let mut stream = encode_frame(&a).unwrap();
        stream.extend(encode_frame(&b).unwrap());
        let mut fb = FrameBuffer::new();
        let mut out = Vec::new();
        for byte in stream {
            fb.push(&[byte]);
            while let Some(m) = fb.next_message::<RequestFrame>().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![a, b]);
        assert!(fb.is_empty());
    }
}
