//! Pure encoder and decoder for `struct hsm_action_list` (HAL) buffers.
//!
//! Layout (all little-endian, packed):
//!
//! ```text
//! 0   hal_version u32 (=1)     4  hal_count u32
//! 8   hal_compound_id u64 (0)  16 hal_flags u64
//! 24  hal_archive_id u32       28 padding1 u32 (0)
//! 32  hal_fsname, NUL, zero padding to 32 + ALIGN8(strlen + 1)
//! ... items, each: 72-byte fixed part, hai_len - 72 data bytes,
//!     zero padding to ALIGN8(hai_len)
//! ```
//!
//! `hai_len` is **not** rounded; the next item starts `ALIGN8(hai_len)` later.
//! Decoders accept trailing bytes after the last item (the kernel may send a
//! message longer than `hal_size`), but require every item's padding (the
//! kernel always sends it).

use crate::action::HsmAction;
use crate::fid::Fid;

/// `HAL_VERSION`: the only version ever defined.
pub const HAL_VERSION: u32 = 1;
/// Size of the fixed part of `struct hsm_action_list`.
pub const HAL_HEADER_LEN: usize = 32;
/// Size of the fixed part of `struct hsm_action_item`.
pub const HAI_HEADER_LEN: usize = 72;
/// The MDT's cap on one HAL payload (`LDLM_MAXREQSIZE`, Lustre 2.12+).
pub const MDT_HAL_MAX: usize = 5120;
/// `HAL_MAXSIZE` (`LNET_MTU`): llapi's receive buffer size.
pub const HAL_MAXSIZE: usize = 1 << 20;
/// `LUSTRE_MAXFSNAME`: the longest Lustre filesystem name.
pub const LUSTRE_MAXFSNAME: usize = 8;
/// The longest fsname [`ActionList::encode`] accepts (the kernel copies it
/// from a larger buffer than [`LUSTRE_MAXFSNAME`]; we stay permissive).
pub const HAL_FSNAME_MAX: usize = 127;

/// `__ALIGN_KERNEL(x, 8)`.
pub const fn align8(x: usize) -> usize {
    (x + 7) & !7
}

/// Offset of the first item: `32 + ALIGN8(strlen(fsname) + 1)`.
pub fn header_len(fsname: &str) -> usize {
    HAL_HEADER_LEN + align8(fsname.len() + 1)
}

/// `struct hsm_extent`: a byte range, **offset and length** (not end).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes; `u64::MAX` means "to the end".
    pub length: u64,
}

impl Extent {
    /// The whole file: offset 0, length `u64::MAX` (what `lfs` always sends).
    pub const WHOLE: Extent = Extent {
        offset: 0,
        length: u64::MAX,
    };

    /// Builds an extent.
    pub const fn new(offset: u64, length: u64) -> Self {
        Extent { offset, length }
    }

    /// The packed little-endian `struct hsm_extent` bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..].copy_from_slice(&self.length.to_le_bytes());
        out
    }
}

/// One `struct hsm_action_item`, with its data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ActionItem {
    /// `hai_action`.
    pub action: HsmAction,
    /// `hai_fid`: the Lustre file.
    pub fid: Fid,
    /// `hai_dfid`: the data FID (the volatile file for a started RESTORE).
    pub dfid: Fid,
    /// `hai_extent`.
    pub extent: Extent,
    /// `hai_cookie`: the request id assigned by the coordinator.
    pub cookie: u64,
    /// `hai_gid`: grouplock id, always 0 in practice.
    pub gid: u64,
    /// `hai_data`: opaque user data (raw bytes, may contain NULs).
    pub data: Vec<u8>,
}

impl ActionItem {
    /// `hai_len`: 72 + data length, **not** rounded. Saturates at `u32::MAX`
    /// (such an item is rejected by [`ActionList::encode`]).
    pub fn hai_len(&self) -> u32 {
        u32::try_from(HAI_HEADER_LEN + self.data.len()).unwrap_or(u32::MAX)
    }

    /// Bytes this item takes in a HAL: `ALIGN8(hai_len)`.
    pub fn encoded_len(&self) -> usize {
        align8(HAI_HEADER_LEN + self.data.len())
    }

    /// The packed 72-byte fixed part, with `hai_len` = 72 + data length.
    pub fn encode_fixed(&self) -> [u8; HAI_HEADER_LEN] {
        let mut out = [0u8; HAI_HEADER_LEN];
        out[0..4].copy_from_slice(&self.hai_len().to_le_bytes());
        out[4..8].copy_from_slice(&self.action.as_u32().to_le_bytes());
        out[8..24].copy_from_slice(&self.fid.to_bytes());
        out[24..40].copy_from_slice(&self.dfid.to_bytes());
        out[40..56].copy_from_slice(&self.extent.to_bytes());
        out[56..64].copy_from_slice(&self.cookie.to_le_bytes());
        out[64..72].copy_from_slice(&self.gid.to_le_bytes());
        out
    }

    /// Appends the fixed part, the data and zero padding to a multiple of 8.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.encode_fixed());
        out.extend_from_slice(&self.data);
        out.resize(start + self.encoded_len(), 0);
    }

    /// Decodes the 72-byte fixed part; returns the item (without data) and
    /// `hai_len`. The caller supplies the data.
    fn decode_fixed(b: &[u8; HAI_HEADER_LEN]) -> (ActionItem, u32) {
        let item = ActionItem {
            action: HsmAction::from_u32(rd_u32(b, 4)),
            fid: rd_fid(b, 8),
            dfid: rd_fid(b, 24),
            extent: Extent::new(rd_u64(b, 40), rd_u64(b, 48)),
            cookie: rd_u64(b, 56),
            gid: rd_u64(b, 64),
            data: Vec::new(),
        };
        (item, rd_u32(b, 0))
    }
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn rd_fid(b: &[u8], off: usize) -> Fid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    Fid::from_bytes(&a)
}

/// Errors from encoding, decoding or splitting HAL buffers. Offsets are from
/// the start of the HAL; item indexes are 0-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HalError {
    /// The buffer is shorter than the 32-byte HAL header.
    #[error("HAL truncated: {len} bytes, the header alone needs {HAL_HEADER_LEN}")]
    HeaderTruncated {
        /// Buffer length.
        len: usize,
    },
    /// `hal_version` is not 1.
    #[error("unsupported hal_version {version} (only {HAL_VERSION} exists)")]
    BadVersion {
        /// The version found.
        version: u32,
    },
    /// No NUL terminates `hal_fsname` within the buffer.
    #[error(
        "hal_fsname at offset {HAL_HEADER_LEN} is not NUL-terminated within the {len}-byte buffer"
    )]
    FsnameUnterminated {
        /// Buffer length.
        len: usize,
    },
    /// `hal_fsname` is not valid UTF-8.
    #[error("hal_fsname {bytes:?} is not valid UTF-8")]
    FsnameNotUtf8 {
        /// The raw fsname bytes.
        bytes: Vec<u8>,
    },
    /// The fsname and its padding run past the end of the buffer.
    #[error("hal_fsname padding ends at offset {needed}, past the end of the {len}-byte buffer")]
    FsnameTruncated {
        /// Where the first item would start.
        needed: usize,
        /// Buffer length.
        len: usize,
    },
    /// The fsname is empty (encoding).
    #[error("fsname is empty")]
    FsnameEmpty,
    /// The fsname contains a NUL byte (encoding).
    #[error("fsname {fsname:?} contains a NUL byte at index {index}")]
    FsnameContainsNul {
        /// The fsname.
        fsname: String,
        /// Index of the NUL.
        index: usize,
    },
    /// The fsname is too long (encoding).
    #[error("fsname {fsname:?} is {len} bytes long, more than {max}")]
    FsnameTooLong {
        /// The fsname.
        fsname: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Item `index` needs its 72-byte fixed part at `offset`, but the buffer
    /// ends first (typically `hal_count` is larger than the items present).
    #[error(
        "item {index} of hal_count {count}: fixed part at offset {offset} needs {HAI_HEADER_LEN} bytes, only {available} left"
    )]
    ItemTruncated {
        /// Item index.
        index: usize,
        /// `hal_count`.
        count: u32,
        /// Item offset.
        offset: usize,
        /// Bytes left from `offset`.
        available: usize,
    },
    /// Item `index` has `hai_len < 72`.
    #[error("item {index} at offset {offset}: hai_len {hai_len} is smaller than {HAI_HEADER_LEN}")]
    ItemTooShort {
        /// Item index.
        index: usize,
        /// Item offset.
        offset: usize,
        /// The `hai_len` found.
        hai_len: u32,
    },
    /// Item `index`'s `hai_len` runs past the end of the buffer.
    #[error(
        "item {index} at offset {offset}: hai_len {hai_len} (padded to 8) runs past the end of the buffer ({available} bytes left)"
    )]
    ItemPastEnd {
        /// Item index.
        index: usize,
        /// Item offset.
        offset: usize,
        /// The `hai_len` found.
        hai_len: u32,
        /// Bytes left from `offset`.
        available: usize,
    },
    /// An item's data is too large for `hai_len` (encoding).
    #[error("item {index}: {data_len} data bytes do not fit a u32 hai_len")]
    ItemTooLarge {
        /// Item index.
        index: usize,
        /// Data length.
        data_len: usize,
    },
    /// More items than `hal_count` can hold (encoding).
    #[error("{count} items do not fit the u32 hal_count")]
    TooManyItems {
        /// Item count.
        count: usize,
    },
    /// Splitting: one item alone does not fit into `max_bytes`.
    #[error(
        "item {index} (archive {archive_id}) needs {needed} bytes with its HAL header, more than the {max_bytes}-byte limit"
    )]
    ItemDoesNotFit {
        /// Index in the input list.
        index: usize,
        /// Its archive id.
        archive_id: u32,
        /// Header plus item length.
        needed: usize,
        /// The limit.
        max_bytes: usize,
    },
}

/// A decoded or to-be-encoded `struct hsm_action_list`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ActionList {
    /// `hal_flags` (see [`crate::action::flags`]).
    pub flags: u64,
    /// `hal_archive_id`.
    pub archive_id: u32,
    /// `hal_fsname`.
    pub fsname: String,
    /// The items, in order.
    pub items: Vec<ActionItem>,
}

/// Extra facts found by [`ActionList::decode_with_info`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HalInfo {
    /// `hal_compound_id` (always 0 since Lustre 2.12; ignored on encode).
    pub compound_id: u64,
    /// `padding1` as found.
    pub padding1: u32,
    /// `hal_size`: header plus every item rounded to 8 (bytes consumed).
    pub hal_size: usize,
    /// Bytes after `hal_size` (the kernel may send trailing zeros; their
    /// content is not checked).
    pub trailing_slack: usize,
    /// Offset of each item from the start of the HAL.
    pub item_offsets: Vec<usize>,
}

/// Checks an fsname for encoding.
pub fn validate_fsname(fsname: &str) -> Result<(), HalError> {
    if fsname.is_empty() {
        return Err(HalError::FsnameEmpty);
    }
    if let Some(index) = fsname.bytes().position(|b| b == 0) {
        return Err(HalError::FsnameContainsNul {
            fsname: fsname.to_owned(),
            index,
        });
    }
    if fsname.len() > HAL_FSNAME_MAX {
        return Err(HalError::FsnameTooLong {
            fsname: fsname.to_owned(),
            len: fsname.len(),
            max: HAL_FSNAME_MAX,
        });
    }
    Ok(())
}

impl ActionList {
    /// Byte length of the encoded HAL (`hal_size`).
    pub fn encoded_len(&self) -> usize {
        header_len(&self.fsname)
            + self
                .items
                .iter()
                .map(ActionItem::encoded_len)
                .sum::<usize>()
    }

    /// Encodes the HAL bit-exactly as the kernel does: version 1, compound 0,
    /// padding 0, every padding byte zero.
    pub fn encode(&self) -> Result<Vec<u8>, HalError> {
        validate_fsname(&self.fsname)?;
        let count = u32::try_from(self.items.len()).map_err(|_| HalError::TooManyItems {
            count: self.items.len(),
        })?;
        for (index, item) in self.items.iter().enumerate() {
            if HAI_HEADER_LEN + item.data.len() > u32::MAX as usize {
                return Err(HalError::ItemTooLarge {
                    index,
                    data_len: item.data.len(),
                });
            }
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&HAL_VERSION.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.archive_id.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(self.fsname.as_bytes());
        out.resize(header_len(&self.fsname), 0);
        for item in &self.items {
            item.encode_into(&mut out);
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        Ok(out)
    }

    /// Decodes a HAL (as returned by `llapi_hsm_copytool_recv`, `msgsize`
    /// bytes). Checks `hal_version`, the fsname's NUL and padding, and that
    /// each of the `hal_count` items has `hai_len >= 72` and lies entirely
    /// (padding included) within the buffer. Trailing bytes after the last
    /// item are accepted. `hal_compound_id` and `padding1` are ignored (see
    /// [`ActionList::decode_with_info`]). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<ActionList, HalError> {
        Self::decode_with_info(bytes).map(|(hal, _)| hal)
    }

    /// Like [`ActionList::decode`], also returning [`HalInfo`].
    pub fn decode_with_info(bytes: &[u8]) -> Result<(ActionList, HalInfo), HalError> {
        let len = bytes.len();
        if len < HAL_HEADER_LEN {
            return Err(HalError::HeaderTruncated { len });
        }
        let version = rd_u32(bytes, 0);
        if version != HAL_VERSION {
            return Err(HalError::BadVersion { version });
        }
        let count = rd_u32(bytes, 4);
        let compound_id = rd_u64(bytes, 8);
        let flags = rd_u64(bytes, 16);
        let archive_id = rd_u32(bytes, 24);
        let padding1 = rd_u32(bytes, 28);
        let name_area = &bytes[HAL_HEADER_LEN..];
        let name_len = name_area
            .iter()
            .position(|&b| b == 0)
            .ok_or(HalError::FsnameUnterminated { len })?;
        let fsname = std::str::from_utf8(&name_area[..name_len])
            .map_err(|_| HalError::FsnameNotUtf8 {
                bytes: name_area[..name_len].to_vec(),
            })?
            .to_owned();
        let mut offset = HAL_HEADER_LEN + align8(name_len + 1);
        if offset > len {
            return Err(HalError::FsnameTruncated {
                needed: offset,
                len,
            });
        }
        // Never trust hal_count for preallocation.
        let cap = (count as usize).min((len - offset) / HAI_HEADER_LEN);
        let mut items = Vec::with_capacity(cap);
        let mut item_offsets = Vec::with_capacity(cap);
        for index in 0..count as usize {
            let available = len.saturating_sub(offset);
            let Some(fixed) = bytes
                .get(offset..offset + HAI_HEADER_LEN)
                .and_then(|s| <&[u8; HAI_HEADER_LEN]>::try_from(s).ok())
            else {
                return Err(HalError::ItemTruncated {
                    index,
                    count,
                    offset,
                    available,
                });
            };
            let (mut item, hai_len) = ActionItem::decode_fixed(fixed);
            if (hai_len as usize) < HAI_HEADER_LEN {
                return Err(HalError::ItemTooShort {
                    index,
                    offset,
                    hai_len,
                });
            }
            // The kernel always sends the item's zero padding too.
            if align8(hai_len as usize) > available {
                return Err(HalError::ItemPastEnd {
                    index,
                    offset,
                    hai_len,
                    available,
                });
            }
            item.data = bytes[offset + HAI_HEADER_LEN..offset + hai_len as usize].to_vec();
            items.push(item);
            item_offsets.push(offset);
            offset += align8(hai_len as usize);
        }
        let info = HalInfo {
            compound_id,
            padding1,
            hal_size: offset,
            trailing_slack: len - offset,
            item_offsets,
        };
        Ok((
            ActionList {
                flags,
                archive_id,
                fsname,
                items,
            },
            info,
        ))
    }
}

/// Whether `item` can be appended to a HAL whose encoded length is
/// `current_len` without exceeding `max_bytes`.
pub fn fits(current_len: usize, item: &ActionItem, max_bytes: usize) -> bool {
    current_len + item.encoded_len() <= max_bytes
}

/// Packs `items` (each with its archive id) into HALs of at most `max_bytes`
/// encoded bytes. Items of different archive ids never share a HAL; archive
/// ids come out in first-seen order, and items keep their relative order
/// within an archive id. Fails if one item cannot fit alone.
pub fn split_into_hals(
    fsname: &str,
    flags: u64,
    items: Vec<(u32, ActionItem)>,
    max_bytes: usize,
) -> Result<Vec<ActionList>, HalError> {
    validate_fsname(fsname)?;
    let head = header_len(fsname);
    // Group by archive id, first-seen order.
    let mut groups: Vec<(u32, Vec<ActionItem>)> = Vec::new();
    for (index, (archive_id, item)) in items.into_iter().enumerate() {
        let needed = head + item.encoded_len();
        if needed > max_bytes {
            return Err(HalError::ItemDoesNotFit {
                index,
                archive_id,
                needed,
                max_bytes,
            });
        }
        match groups.iter_mut().find(|(a, _)| *a == archive_id) {
            Some((_, v)) => v.push(item),
            None => groups.push((archive_id, vec![item])),
        }
    }
    let mut out = Vec::new();
    for (archive_id, group) in groups {
        let mut current = ActionList {
            flags,
            archive_id,
            fsname: fsname.to_owned(),
            items: Vec::new(),
        };
        let mut current_len = head;
        for item in group {
            if !fits(current_len, &item, max_bytes) {
                out.push(std::mem::replace(
                    &mut current,
                    ActionList {
                        flags,
                        archive_id,
                        fsname: fsname.to_owned(),
                        items: Vec::new(),
                    },
                ));
                current_len = head;
            }
            current_len += item.encoded_len();
            current.items.push(item);
        }
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(oid: u32, data: &[u8]) -> ActionItem {
        ActionItem {
            action: HsmAction::Archive,
            fid: Fid::new(0x200000401, oid, 0),
            dfid: Fid::new(0x200000401, oid, 0),
            extent: Extent::WHOLE,
            cookie: 0x1000 + u64::from(oid),
            gid: 0,
            data: data.to_vec(),
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(align8(0), 0);
        assert_eq!(align8(1), 8);
        assert_eq!(align8(8), 8);
        assert_eq!(align8(75), 80);
        assert_eq!(header_len("fs"), 40);
        assert_eq!(header_len("lustre"), 40);
        assert_eq!(header_len("testfs0"), 40);
        assert_eq!(header_len("testfs01"), 48);
        let i = item(1, b"abc");
        assert_eq!(i.hai_len(), 75);
        assert_eq!(i.encoded_len(), 80);
        let mut v = Vec::new();
        i.encode_into(&mut v);
        assert_eq!(v.len(), 80);
        assert_eq!(&v[72..80], b"abc\0\0\0\0\0");
        assert_eq!(Extent::default(), Extent::new(0, 0));
    }

    #[test]
    fn encode_rejects_bad_fsnames() {
        let mut hal = ActionList {
            flags: 0,
            archive_id: 1,
            fsname: String::new(),
            items: vec![],
        };
        assert_eq!(hal.encode(), Err(HalError::FsnameEmpty));
        hal.fsname = "a\0b".into();
        assert!(matches!(
            hal.encode(),
            Err(HalError::FsnameContainsNul { index: 1, .. })
        ));
        hal.fsname = "x".repeat(128);
        assert!(matches!(
            hal.encode(),
            Err(HalError::FsnameTooLong { len: 128, .. })
        ));
        hal.fsname = "x".repeat(127);
        assert_eq!(hal.encode().map(|v| v.len()), Ok(32 + 128));
    }

    #[test]
    fn split_packs_in_order_and_by_archive() {
        // header 40; item with 0 data = 72.
        let items: Vec<(u32, ActionItem)> = vec![
            (1, item(1, b"")),
            (2, item(2, b"")),
            (1, item(3, b"")),
            (1, item(4, b"")),
            (2, item(5, b"")),
            (3, item(6, b"")),
        ];
        let hals = split_into_hals("lustre", 4, items, 40 + 2 * 72).unwrap();
        let shape: Vec<(u32, Vec<u32>)> = hals
            .iter()
            .map(|h| (h.archive_id, h.items.iter().map(|i| i.fid.oid).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![(1, vec![1, 3]), (1, vec![4]), (2, vec![2, 5]), (3, vec![6])]
        );
        for h in &hals {
            assert_eq!(h.flags, 4);
            assert!(h.encoded_len() <= 40 + 2 * 72);
            assert_eq!(h.encode().unwrap().len(), h.encoded_len());
        }
    }

    #[test]
    fn split_mdt_cap_holds_70_dataless_items() {
        let items: Vec<(u32, ActionItem)> = (0..141).map(|i| (1, item(i, b""))).collect();
        let hals = split_into_hals("lustre", 0, items, MDT_HAL_MAX).unwrap();
        let counts: Vec<usize> = hals.iter().map(|h| h.items.len()).collect();
        assert_eq!(counts, vec![70, 70, 1]);
        assert!(
            split_into_hals("lustre", 0, vec![], MDT_HAL_MAX)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn split_rejects_an_item_that_cannot_fit() {
        let items = vec![(1, item(1, b"")), (7, item(2, &[0u8; 100]))];
        let err = split_into_hals("lustre", 0, items, 40 + 100).unwrap_err();
        assert_eq!(
            err,
            HalError::ItemDoesNotFit {
                index: 1,
                archive_id: 7,
                needed: 40 + 176,
                max_bytes: 140
            }
        );
        assert!(err.to_string().contains("archive 7"));
        assert!(split_into_hals("", 0, vec![], 100).is_err());
    }
}
