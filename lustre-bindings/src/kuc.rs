//! The kernel-to-userspace (KUC) pipe framing: an 8-byte `struct kuc_hdr`
//! followed by the payload (a HAL for HSM messages).
//!
//! ```text
//! 0 kuc_magic u16 (0x191C)  2 kuc_transport u8  3 kuc_flags u8
//! 4 kuc_msgtype u16         6 kuc_msglen u16 (total, header included)
//! ```

/// `KUC_MAGIC`.
pub const KUC_MAGIC: u16 = 0x191C;
/// `KUC_TRANSPORT_GENERIC`.
pub const KUC_TRANSPORT_GENERIC: u8 = 1;
/// `KUC_TRANSPORT_HSM`.
pub const KUC_TRANSPORT_HSM: u8 = 2;
/// `HMT_ACTION_LIST`: HSM transport message carrying a HAL.
pub const HMT_ACTION_LIST: u16 = 100;
/// `KUC_MSG_SHUTDOWN`: generic transport message ending the session.
pub const KUC_MSG_SHUTDOWN: u16 = 1;
/// Size of `struct kuc_hdr`.
pub const KUC_HEADER_LEN: usize = 8;
/// `KUC_GRP_HSM`: the HSM broadcast group.
pub const KUC_GRP_HSM: u32 = 2;
/// Largest `kuc_msglen` (u16), header included.
pub const KUC_MAX_MSGLEN: usize = u16::MAX as usize;

/// `struct kuc_hdr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KucHeader {
    /// `kuc_magic`, [`KUC_MAGIC`].
    pub magic: u16,
    /// `kuc_transport`.
    pub transport: u8,
    /// `kuc_flags`, 0.
    pub flags: u8,
    /// `kuc_msgtype`.
    pub msgtype: u16,
    /// `kuc_msglen`: total length including this header.
    pub msglen: u16,
}

/// KUC framing errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KucError {
    /// Fewer than 8 bytes.
    #[error("KUC header truncated: {len} bytes, need {KUC_HEADER_LEN}")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Wrong `kuc_magic`.
    #[error("bad KUC magic {magic:#06x} (expected {KUC_MAGIC:#06x})")]
    BadMagic {
        /// The magic found.
        magic: u16,
    },
    /// `kuc_transport` is neither GENERIC (1) nor HSM (2).
    #[error("unknown KUC transport {transport} (expected 1 generic or 2 HSM)")]
    BadTransport {
        /// The transport found.
        transport: u8,
    },
    /// A message type that the transport does not define.
    #[error("unknown KUC message type {msgtype} for transport {transport}")]
    BadMsgType {
        /// The transport.
        transport: u8,
        /// The message type found.
        msgtype: u16,
    },
    /// `kuc_msglen` is smaller than the header.
    #[error("kuc_msglen {msglen} is smaller than the {KUC_HEADER_LEN}-byte header")]
    LengthTooSmall {
        /// The length found.
        msglen: u16,
    },
    /// The payload does not fit the u16 `kuc_msglen`.
    #[error(
        "payload of {payload_len} bytes does not fit kuc_msglen (max {KUC_MAX_MSGLEN} with the header)"
    )]
    PayloadTooLong {
        /// Payload length.
        payload_len: usize,
    },
    /// The buffer is shorter than `kuc_msglen`.
    #[error("KUC message truncated: kuc_msglen {msglen}, only {len} bytes")]
    MessageTruncated {
        /// `kuc_msglen`.
        msglen: u16,
        /// Bytes available.
        len: usize,
    },
}

impl KucHeader {
    /// Header for an HSM `HMT_ACTION_LIST` message carrying `hal_len` bytes.
    pub fn for_hal(hal_len: usize) -> Result<KucHeader, KucError> {
        let msglen =
            u16::try_from(hal_len + KUC_HEADER_LEN).map_err(|_| KucError::PayloadTooLong {
                payload_len: hal_len,
            })?;
        Ok(KucHeader {
            magic: KUC_MAGIC,
            transport: KUC_TRANSPORT_HSM,
            flags: 0,
            msgtype: HMT_ACTION_LIST,
            msglen,
        })
    }

    /// The generic `KUC_MSG_SHUTDOWN` header (no payload).
    pub fn shutdown() -> KucHeader {
        KucHeader {
            magic: KUC_MAGIC,
            transport: KUC_TRANSPORT_GENERIC,
            flags: 0,
            msgtype: KUC_MSG_SHUTDOWN,
            msglen: KUC_HEADER_LEN as u16,
        }
    }

    /// Whether this is the generic shutdown message.
    pub fn is_shutdown(&self) -> bool {
        self.transport == KUC_TRANSPORT_GENERIC && self.msgtype == KUC_MSG_SHUTDOWN
    }

    /// Payload length (`kuc_msglen - 8`, what llapi reports as `msgsize`).
    pub fn payload_len(&self) -> usize {
        usize::from(self.msglen).saturating_sub(KUC_HEADER_LEN)
    }

    /// The 8 header bytes, little-endian.
    pub fn encode(&self) -> [u8; KUC_HEADER_LEN] {
        let mut out = [0u8; KUC_HEADER_LEN];
        out[0..2].copy_from_slice(&self.magic.to_le_bytes());
        out[2] = self.transport;
        out[3] = self.flags;
        out[4..6].copy_from_slice(&self.msgtype.to_le_bytes());
        out[6..8].copy_from_slice(&self.msglen.to_le_bytes());
        out
    }

    /// Decodes and validates the first 8 bytes of `bytes`: magic, transport,
    /// message type for that transport, and `msglen >= 8`. Does not require
    /// the payload to be present (see [`unframe`]).
    pub fn decode(bytes: &[u8]) -> Result<KucHeader, KucError> {
        let Some(b) = bytes.get(..KUC_HEADER_LEN) else {
            return Err(KucError::Truncated { len: bytes.len() });
        };
        let h = KucHeader {
            magic: u16::from_le_bytes([b[0], b[1]]),
            transport: b[2],
            flags: b[3],
            msgtype: u16::from_le_bytes([b[4], b[5]]),
            msglen: u16::from_le_bytes([b[6], b[7]]),
        };
        if h.magic != KUC_MAGIC {
            return Err(KucError::BadMagic { magic: h.magic });
        }
        let type_ok = match h.transport {
            KUC_TRANSPORT_HSM => h.msgtype == HMT_ACTION_LIST,
            KUC_TRANSPORT_GENERIC => h.msgtype == KUC_MSG_SHUTDOWN,
            transport => return Err(KucError::BadTransport { transport }),
        };
        if !type_ok {
            return Err(KucError::BadMsgType {
                transport: h.transport,
                msgtype: h.msgtype,
            });
        }
        if usize::from(h.msglen) < KUC_HEADER_LEN {
            return Err(KucError::LengthTooSmall { msglen: h.msglen });
        }
        Ok(h)
    }
}

/// Header plus HAL: one complete KUC message as the kernel writes it.
pub fn frame_hal(hal: &[u8]) -> Result<Vec<u8>, KucError> {
    let h = KucHeader::for_hal(hal.len())?;
    let mut out = Vec::with_capacity(usize::from(h.msglen));
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(hal);
    Ok(out)
}

/// Splits one KUC message into its header and its `msglen - 8` payload bytes.
/// Bytes after `msglen` are ignored.
pub fn unframe(msg: &[u8]) -> Result<(KucHeader, &[u8]), KucError> {
    let h = KucHeader::decode(msg)?;
    let end = usize::from(h.msglen);
    let payload = msg
        .get(KUC_HEADER_LEN..end)
        .ok_or(KucError::MessageTruncated {
            msglen: h.msglen,
            len: msg.len(),
        })?;
    Ok((h, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_bytes() {
        let h = KucHeader::for_hal(120).unwrap();
        assert_eq!(h.encode(), [0x1c, 0x19, 2, 0, 100, 0, 128, 0]);
        assert_eq!(KucHeader::decode(&h.encode()), Ok(h));
        assert_eq!(h.payload_len(), 120);
        let s = KucHeader::shutdown();
        assert_eq!(s.encode(), [0x1c, 0x19, 1, 0, 1, 0, 8, 0]);
        assert!(KucHeader::decode(&s.encode()).unwrap().is_shutdown());
        assert!(!h.is_shutdown());
    }

    #[test]
    fn limits() {
        assert_eq!(KucHeader::for_hal(65527).unwrap().msglen, 65535);
        assert_eq!(
            KucHeader::for_hal(65528),
            Err(KucError::PayloadTooLong { payload_len: 65528 })
        );
        assert!(frame_hal(&vec![0; 70000]).is_err());
    }

    #[test]
    fn decode_errors_are_distinct() {
        let good = KucHeader::for_hal(0).unwrap().encode();
        assert_eq!(
            KucHeader::decode(&good[..7]),
            Err(KucError::Truncated { len: 7 })
        );
        let mut b = good;
        b[0] = 0;
        assert_eq!(
            KucHeader::decode(&b),
            Err(KucError::BadMagic { magic: 0x1900 })
        );
        let mut b = good;
        b[2] = 3;
        assert_eq!(
            KucHeader::decode(&b),
            Err(KucError::BadTransport { transport: 3 })
        );
        let mut b = good;
        b[4] = 1;
        assert_eq!(
            KucHeader::decode(&b),
            Err(KucError::BadMsgType {
                transport: 2,
                msgtype: 1
            })
        );
        let mut b = good;
        b[6] = 4;
        assert_eq!(
            KucHeader::decode(&b),
            Err(KucError::LengthTooSmall { msglen: 4 })
        );
        let msg = frame_hal(b"0123456789").unwrap();
        assert_eq!(unframe(&msg).unwrap().1, b"0123456789");
        assert_eq!(
            unframe(&msg[..12]),
            Err(KucError::MessageTruncated {
                msglen: 18,
                len: 12
            })
        );
    }
}
