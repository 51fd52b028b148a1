//! The Lustre file identifier (`struct lu_fid`) and its text forms.
//!
//! Binary form: 16 packed little-endian bytes, `f_seq` (u64), `f_oid` (u32),
//! `f_ver` (u32).
//!
//! Text forms:
//! - userspace `DFID` (`"[%#llx:0x%x:0x%x]"` through glibc): a zero sequence
//!   prints as `0`, which is what [`Fid`]'s `Display` gives;
//! - kernel `DFID` (the kernel's `%#llx` prints zero as `0x0`), used by the MDT
//!   debugfs files: [`Fid::display_kernel`];
//! - `DFID_NOBRACE`, the form used in `<mnt>/.lustre/fid/<fid>`: [`Fid::no_brace`].

use std::fmt;
use std::str::FromStr;

/// Size of the packed `struct lu_fid`.
pub const LU_FID_LEN: usize = 16;
/// `FID_NOBRACE_LEN`: buffer size for a FID printed without brackets.
pub const FID_NOBRACE_LEN: usize = 40;
/// `FID_LEN`: buffer size for a FID printed with brackets.
pub const FID_LEN: usize = 42;

/// A Lustre FID (`struct lu_fid`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Fid {
    /// Sequence (`f_seq`).
    pub seq: u64,
    /// Object id within the sequence (`f_oid`).
    pub oid: u32,
    /// Version (`f_ver`), always 0 in practice.
    pub ver: u32,
}

impl Fid {
    /// Builds a FID from its three parts.
    pub const fn new(seq: u64, oid: u32, ver: u32) -> Self {
        Fid { seq, oid, ver }
    }

    /// The packed little-endian `struct lu_fid` bytes.
    pub fn to_bytes(&self) -> [u8; LU_FID_LEN] {
        let mut out = [0u8; LU_FID_LEN];
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..12].copy_from_slice(&self.oid.to_le_bytes());
        out[12..16].copy_from_slice(&self.ver.to_le_bytes());
        out
    }

    /// Reads a packed little-endian `struct lu_fid`.
    pub fn from_bytes(bytes: &[u8; LU_FID_LEN]) -> Self {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[0..8]);
        let mut oid = [0u8; 4];
        oid.copy_from_slice(&bytes[8..12]);
        let mut ver = [0u8; 4];
        ver.copy_from_slice(&bytes[12..16]);
        Fid {
            seq: u64::from_le_bytes(seq),
            oid: u32::from_le_bytes(oid),
            ver: u32::from_le_bytes(ver),
        }
    }

    /// Display adapter using the kernel's `%#llx` (a zero sequence prints as
    /// `0x0`), as in `hsm/active_requests`.
    pub fn display_kernel(&self) -> FidDisplay {
        FidDisplay {
            fid: *self,
            braces: true,
            kernel: true,
        }
    }

    /// Display adapter for `DFID_NOBRACE` (userspace printf, no brackets), as
    /// used in `.lustre/fid/` paths.
    pub fn no_brace(&self) -> FidDisplay {
        FidDisplay {
            fid: *self,
            braces: false,
            kernel: false,
        }
    }
}

/// A configurable display of a [`Fid`]; see [`Fid::display_kernel`] and
/// [`Fid::no_brace`].
#[derive(Clone, Copy, Debug)]
pub struct FidDisplay {
    fid: Fid,
    braces: bool,
    kernel: bool,
}

impl FidDisplay {
    /// The same display, with or without brackets.
    pub fn braces(mut self, braces: bool) -> Self {
        self.braces = braces;
        self
    }
}

impl fmt::Display for FidDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.braces {
            f.write_str("[")?;
        }
        fmt_alt_hex(f, self.fid.seq, self.kernel)?;
        write!(f, ":{:#x}:{:#x}", self.fid.oid, self.fid.ver)?;
        if self.braces {
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// Writes `value` like printf's `%#llx`: glibc prints zero as `0`, the Linux
/// kernel as `0x0`.
pub(crate) fn fmt_alt_hex(f: &mut fmt::Formatter<'_>, value: u64, kernel: bool) -> fmt::Result {
    if value == 0 && !kernel {
        f.write_str("0")
    } else {
        write!(f, "{value:#x}")
    }
}

impl fmt::Display for Fid {
    /// Userspace `DFID`: `[0x200000401:0x1:0x0]`; a zero sequence prints `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FidDisplay {
            fid: *self,
            braces: true,
            kernel: false,
        }
        .fmt(f)
    }
}

/// Why a FID string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FidParseError {
    /// The string is empty (or only whitespace).
    #[error("empty FID string")]
    Empty,
    /// Not three `:`-separated parts.
    #[error("FID {input:?} must have 3 ':'-separated parts (seq:oid:ver), found {parts}")]
    WrongPartCount {
        /// The input as given.
        input: String,
        /// How many parts were found.
        parts: usize,
    },
    /// An opening `[` without a closing `]`, or the reverse.
    #[error("FID {input:?} has unbalanced brackets")]
    UnbalancedBrackets {
        /// The input as given.
        input: String,
    },
    /// A part is not a number in C `strtoull` base-0 syntax.
    #[error("FID {input:?}: {part} {value:?} is not a number (0x hex, 0 octal or decimal)")]
    BadNumber {
        /// The input as given.
        input: String,
        /// Which part: `seq`, `oid` or `ver`.
        part: &'static str,
        /// The offending text.
        value: String,
    },
    /// A part does not fit its field (`seq` u64, `oid`/`ver` u32).
    #[error("FID {input:?}: {part} {value:?} is out of range (max {max:#x})")]
    OutOfRange {
        /// The input as given.
        input: String,
        /// Which part: `seq`, `oid` or `ver`.
        part: &'static str,
        /// The offending text.
        value: String,
        /// The largest allowed value.
        max: u64,
    },
}

/// Why [`parse_c_u64`] rejected a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    Invalid,
    Overflow,
}

/// Parses an unsigned number with C `strtoull` base-0 rules: `0x`/`0X`
/// prefix is hexadecimal, a leading `0` octal, anything else decimal. The whole
/// string must be consumed; signs and whitespace are rejected.
pub(crate) fn parse_c_u64(s: &str) -> Result<u64, NumError> {
    let (digits, radix) = if let Some(rest) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
    {
        (rest, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumError::Invalid);
    }
    u64::from_str_radix(digits, radix).map_err(|_| NumError::Overflow)
}

impl FromStr for Fid {
    type Err = FidParseError;

    /// Accepts `[seq:oid:ver]` and `seq:oid:ver`, with surrounding whitespace,
    /// each number in `strtoull` base-0 syntax.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(FidParseError::Empty);
        }
        let inner = match (s.strip_prefix('['), s.ends_with(']')) {
            (Some(rest), true) => &rest[..rest.len() - 1],
            (None, false) => s,
            _ => {
                return Err(FidParseError::UnbalancedBrackets {
                    input: input.to_owned(),
                });
            }
        };
        let parts: Vec<&str> = inner.split(':').collect();
        if parts.len() != 3 {
            return Err(FidParseError::WrongPartCount {
                input: input.to_owned(),
                parts: parts.len(),
            });
        }
        let num = |part: &'static str, value: &str, max: u64| -> Result<u64, FidParseError> {
            match parse_c_u64(value) {
                Ok(v) if v <= max => Ok(v),
                Ok(_) | Err(NumError::Overflow) => Err(FidParseError::OutOfRange {
                    input: input.to_owned(),
                    part,
                    value: value.to_owned(),
                    max,
                }),
                Err(NumError::Invalid) => Err(FidParseError::BadNumber {
                    input: input.to_owned(),
                    part,
                    value: value.to_owned(),
                }),
            }
        };
        let seq = num("seq", parts[0], u64::MAX)?;
        let oid = num("oid", parts[1], u64::from(u32::MAX))?;
        let ver = num("ver", parts[2], u64::from(u32::MAX))?;
        Ok(Fid {
            seq,
            oid: u32::try_from(oid).unwrap_or(u32::MAX), // range checked above
            ver: u32::try_from(ver).unwrap_or(u32::MAX), // range checked above
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_forms() {
        let f = Fid::new(0x200000401, 0x1, 0);
        assert_eq!(f.to_string(), "[0x200000401:0x1:0x0]");
        assert_eq!(f.display_kernel().to_string(), "[0x200000401:0x1:0x0]");
        assert_eq!(f.no_brace().to_string(), "0x200000401:0x1:0x0");
        let z = Fid::default();
        assert_eq!(z.to_string(), "[0:0x0:0x0]");
        assert_eq!(z.display_kernel().to_string(), "[0x0:0x0:0x0]");
        assert_eq!(z.no_brace().to_string(), "0:0x0:0x0");
        assert_eq!(z.display_kernel().braces(false).to_string(), "0x0:0x0:0x0");
    }

    #[test]
    fn bytes_round_trip_le() {
        let f = Fid::new(0x0102030405060708, 0x0a0b0c0d, 0x11223344);
        let b = f.to_bytes();
        assert_eq!(
            b,
            [
                8, 7, 6, 5, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a, 0x44, 0x33, 0x22, 0x11
            ]
        );
        assert_eq!(Fid::from_bytes(&b), f);
    }

    #[test]
    fn parse_accepted_forms() {
        let f = Fid::new(0x200000401, 0x1a, 0);
        for s in [
            "[0x200000401:0x1a:0x0]",
            "0x200000401:0x1a:0x0",
            "  [0x200000401:0x1a:0]\n",
            "8589935617:26:0",
            "0x200000401:032:00",
            "0X200000401:0X1A:0",
        ] {
            assert_eq!(s.parse::<Fid>(), Ok(f), "{s}");
        }
        assert_eq!("[0:0x0:0x0]".parse::<Fid>(), Ok(Fid::default()));
        assert_eq!(
            "0xffffffffffffffff:0xffffffff:0xffffffff".parse::<Fid>(),
            Ok(Fid::new(u64::MAX, u32::MAX, u32::MAX))
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!("  ".parse::<Fid>(), Err(FidParseError::Empty));
        assert!(matches!(
            "[0x1:0x2]".parse::<Fid>(),
            Err(FidParseError::WrongPartCount { parts: 2, .. })
        ));
        assert!(matches!(
            "[0x1:0x2:0x3".parse::<Fid>(),
            Err(FidParseError::UnbalancedBrackets { .. })
        ));
        assert!(matches!(
            "0x1:0x100000000:0".parse::<Fid>(),
            Err(FidParseError::OutOfRange { part: "oid", .. })
        ));
        assert!(matches!(
            "0x1:0:0x100000000".parse::<Fid>(),
            Err(FidParseError::OutOfRange { part: "ver", .. })
        ));
        assert!(matches!(
            "0x10000000000000000:0:0".parse::<Fid>(),
            Err(FidParseError::OutOfRange { part: "seq", .. })
        ));
        assert!(matches!(
            "0xzz:0:0".parse::<Fid>(),
            Err(FidParseError::BadNumber { part: "seq", .. })
        ));
        assert!(matches!(
            "1:09:0".parse::<Fid>(),
            Err(FidParseError::BadNumber { part: "oid", .. })
        ));
        assert!(matches!(
            "1:-1:0".parse::<Fid>(),
            Err(FidParseError::BadNumber { part: "oid", .. })
        ));
        let msg = "1:2:x".parse::<Fid>().unwrap_err().to_string();
        assert!(msg.contains("ver") && msg.contains("\"x\""), "{msg}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(seq: u64, oid: u32, ver: u32) {
            let f = Fid::new(seq, oid, ver);
            prop_assert_eq!(f.to_string().parse::<Fid>(), Ok(f));
            prop_assert_eq!(f.display_kernel().to_string().parse::<Fid>(), Ok(f));
            prop_assert_eq!(f.no_brace().to_string().parse::<Fid>(), Ok(f));
            prop_assert_eq!(Fid::from_bytes(&f.to_bytes()), f);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Fid>();
        }
    }
}
