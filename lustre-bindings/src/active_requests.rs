//! The MDT's `hsm/active_requests` debugfs text (one line per dispatched,
//! not yet completed request), parsed and formatted exactly as the kernel
//! prints it:
//!
//! ```text
//! fid=[SEQ:OID:VER] dfid=[SEQ:OID:VER] compound/cookie=C/K action=NAME archive#=N flags=F extent=OFF-LEN gid=G data=[HEX] canceled=0|1 uuid=AGENT_UUID done=BYTES
//! ```
//!
//! Hex numbers use the kernel's `%#llx`, so zero prints as `0x0`; `archive#`
//! is `%d`; `extent` is offset-length; `data` shows at most the first
//! [`DATA_SHOWN`] bytes as uppercase hex; `done` is decimal.

use std::fmt;

use crate::action::HsmAction;
use crate::fid::{Fid, FidParseError, NumError, parse_c_u64};
use crate::hal::{ActionItem, Extent};

/// How many data bytes the kernel shows (its 12-byte buffer holds 5 bytes
/// of hex plus the terminator).
pub const DATA_SHOWN: usize = 5;

/// One parsed line of `hsm/active_requests`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ActiveRequest {
    /// `fid`.
    pub fid: Fid,
    /// `dfid` (the volatile FID once a RESTORE has reported progress).
    pub dfid: Fid,
    /// The compound id (always 0 since Lustre 2.12).
    pub compound_id: u64,
    /// The request cookie.
    pub cookie: u64,
    /// `action`. The text `UNKNOWN` parses as `HsmAction::Unknown(0)`.
    pub action: HsmAction,
    /// `archive#`.
    pub archive_id: u32,
    /// `flags` (request flags).
    pub flags: u64,
    /// `extent` (offset, length).
    pub extent: Extent,
    /// `gid`.
    pub gid: u64,
    /// The data bytes **as shown** (at most [`DATA_SHOWN`] bytes).
    pub data: Vec<u8>,
    /// `canceled`: a cancel is attached.
    pub canceled: bool,
    /// `uuid`: the agent's client UUID (empty when absent).
    pub uuid: String,
    /// `done`: bytes reported through progress.
    pub done: u64,
}

/// What is wrong with an `active_requests` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActiveRequestErrorKind {
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// The field appears twice.
    #[error("field appears more than once")]
    Duplicate,
    /// A token is not `key=value`.
    #[error("token is not of the form key=value")]
    NotKeyValue,
    /// Not a number in the expected syntax.
    #[error("not a valid number")]
    BadNumber,
    /// A number that does not fit its field.
    #[error("number out of range")]
    OutOfRange,
    /// A malformed FID.
    #[error("bad FID: {0}")]
    BadFid(Box<FidParseError>),
    /// Not a known action name.
    #[error("unknown action name (expected NOOP, ARCHIVE, RESTORE, REMOVE, CANCEL or UNKNOWN)")]
    BadAction,
    /// `compound/cookie` without the `/`.
    #[error("expected COMPOUND/COOKIE")]
    BadCompoundCookie,
    /// `extent` without the `-`.
    #[error("expected OFFSET-LENGTH")]
    BadExtent,
    /// `data` is not `[HEX]` with an even number of hex digits.
    #[error("expected [HEX] with an even number of hex digits")]
    BadData,
    /// `canceled` is not 0 or 1.
    #[error("expected 0 or 1")]
    BadBool,
}

/// An `active_requests` parse error: which line, which field, what value and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ActiveRequestError {
    /// 1-based line number, when known (set by [`parse_text`]).
    pub line: Option<usize>,
    /// The field name (`fid`, `archive#`, …; `token` for a token that is not
    /// `key=value`).
    pub field: &'static str,
    /// The offending value (empty for a missing field).
    pub value: String,
    /// What is wrong.
    pub reason: ActiveRequestErrorKind,
}

impl fmt::Display for ActiveRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "active_requests line {line}: ")?;
        } else {
            f.write_str("active_requests: ")?;
        }
        if self.reason == ActiveRequestErrorKind::Missing {
            write!(f, "field `{}`: {}", self.field, self.reason)
        } else {
            write!(
                f,
                "field `{}` = {:?}: {}",
                self.field, self.value, self.reason
            )
        }
    }
}

/// Formats data as the kernel does: `[` + the first [`DATA_SHOWN`] bytes as
/// uppercase hex + `]` (brackets included; empty data gives `[]`).
pub fn format_data(data: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * DATA_SHOWN);
    s.push('[');
    for b in data.iter().take(DATA_SHOWN) {
        s.push_str(&format!("{b:02X}"));
    }
    s.push(']');
    s
}

impl fmt::Display for ActiveRequest {
    /// The kernel's exact line (no trailing newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fid={} dfid={} compound/cookie={:#x}/{:#x} action={} archive#={} flags={:#x} extent={:#x}-{:#x} gid={:#x} data={} canceled={} uuid={} done={}",
            self.fid.display_kernel(),
            self.dfid.display_kernel(),
            self.compound_id,
            self.cookie,
            self.action.name(),
            // The kernel prints the u32 archive id with %d.
            self.archive_id as i32,
            self.flags,
            self.extent.offset,
            self.extent.length,
            self.gid,
            format_data(&self.data),
            u8::from(self.canceled),
            self.uuid,
            self.done
        )
    }
}

impl ActiveRequest {
    /// Builds the line the kernel would show for `item` (data truncated to
    /// [`DATA_SHOWN`] bytes, compound id 0).
    pub fn from_item(
        item: &ActionItem,
        archive_id: u32,
        flags: u64,
        canceled: bool,
        uuid: &str,
        done: u64,
    ) -> ActiveRequest {
        ActiveRequest {
            fid: item.fid,
            dfid: item.dfid,
            compound_id: 0,
            cookie: item.cookie,
            action: item.action,
            archive_id,
            flags,
            extent: item.extent,
            gid: item.gid,
            data: item.data.iter().take(DATA_SHOWN).copied().collect(),
            canceled,
            uuid: uuid.to_owned(),
            done,
        }
    }

    /// The action item this line describes; `data` holds only the bytes shown.
    pub fn to_item(&self) -> ActionItem {
        ActionItem {
            action: self.action,
            fid: self.fid,
            dfid: self.dfid,
            extent: self.extent,
            cookie: self.cookie,
            gid: self.gid,
            data: self.data.clone(),
        }
    }
}

fn err(field: &'static str, value: &str, reason: ActiveRequestErrorKind) -> ActiveRequestError {
    ActiveRequestError {
        line: None,
        field,
        value: value.to_owned(),
        reason,
    }
}

fn num(field: &'static str, value: &str) -> Result<u64, ActiveRequestError> {
    parse_c_u64(value).map_err(|e| {
        let reason = match e {
            NumError::Invalid => ActiveRequestErrorKind::BadNumber,
            NumError::Overflow => ActiveRequestErrorKind::OutOfRange,
        };
        err(field, value, reason)
    })
}

const FIELDS: [&str; 12] = [
    "fid",
    "dfid",
    "compound/cookie",
    "action",
    "archive#",
    "flags",
    "extent",
    "gid",
    "data",
    "canceled",
    "uuid",
    "done",
];
const REQUIRED: usize = 9;

/// Parses one line. Blank lines and the `mdt.<fs>-MDTxxxx.hsm.active_requests=`
/// header give `Ok(None)`. Unknown `key=value` fields are ignored; `canceled`,
/// `uuid` and `done` default to 0, "" and 0 when absent.
pub fn parse_line(line: &str) -> Result<Option<ActiveRequest>, ActiveRequestError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || (trimmed.starts_with("mdt.") && trimmed.ends_with('=')) {
        return Ok(None);
    }
    let mut values: [Option<&str>; 12] = [None; 12];
    for token in trimmed.split_ascii_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            return Err(err("token", token, ActiveRequestErrorKind::NotKeyValue));
        };
        if let Some(i) = FIELDS.iter().position(|f| *f == key) {
            if values[i].is_some() {
                return Err(err(FIELDS[i], value, ActiveRequestErrorKind::Duplicate));
            }
            values[i] = Some(value);
        }
    }
    for i in 0..REQUIRED {
        if values[i].is_none() {
            return Err(err(FIELDS[i], "", ActiveRequestErrorKind::Missing));
        }
    }
    let v = |i: usize| values[i].unwrap_or("");

    let fid_of = |field: &'static str, s: &str| -> Result<Fid, ActiveRequestError> {
        s.parse::<Fid>()
            .map_err(|e| err(field, s, ActiveRequestErrorKind::BadFid(Box::new(e))))
    };
    let fid = fid_of("fid", v(0))?;
    let dfid = fid_of("dfid", v(1))?;

    let (compound, cookie) = v(2).split_once('/').ok_or_else(|| {
        err(
            "compound/cookie",
            v(2),
            ActiveRequestErrorKind::BadCompoundCookie,
        )
    })?;
    let compound_id = num("compound/cookie", compound)?;
    let cookie = num("compound/cookie", cookie)?;

    let action = match v(3) {
        a if a.eq_ignore_ascii_case("UNKNOWN") => HsmAction::Unknown(0),
        a => a
            .parse::<HsmAction>()
            .map_err(|_| err("action", a, ActiveRequestErrorKind::BadAction))?,
    };

    let archive_id = parse_archive_id(v(4))?;
    let flags = num("flags", v(5))?;
    let (off, length) = v(6)
        .split_once('-')
        .ok_or_else(|| err("extent", v(6), ActiveRequestErrorKind::BadExtent))?;
    let extent = Extent::new(num("extent", off)?, num("extent", length)?);
    let gid = num("gid", v(7))?;
    let data = parse_data(v(8))?;

    let canceled = match values[9] {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(err("canceled", other, ActiveRequestErrorKind::BadBool)),
    };
    let uuid = values[10].unwrap_or("").to_owned();
    let done = match values[11] {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            let reason = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                ActiveRequestErrorKind::OutOfRange
            } else {
                ActiveRequestErrorKind::BadNumber
            };
            err("done", s, reason)
        })?,
    };
    Ok(Some(ActiveRequest {
        fid,
        dfid,
        compound_id,
        cookie,
        action,
        archive_id,
        flags,
        extent,
        gid,
        data,
        canceled,
        uuid,
        done,
    }))
}

/// `archive#` is printed with `%d` from a u32: accept `-2147483648..=4294967295`.
fn parse_archive_id(s: &str) -> Result<u32, ActiveRequestError> {
    let bad = |reason| err("archive#", s, reason);
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(ActiveRequestErrorKind::BadNumber));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| bad(ActiveRequestErrorKind::OutOfRange))?;
    let n = if neg { -n } else { n };
    if neg {
        i32::try_from(n)
            .map(|v| v as u32)
            .map_err(|_| bad(ActiveRequestErrorKind::OutOfRange))
    } else {
        u32::try_from(n).map_err(|_| bad(ActiveRequestErrorKind::OutOfRange))
    }
}

fn parse_data(s: &str) -> Result<Vec<u8>, ActiveRequestError> {
    let bad = || err("data", s, ActiveRequestErrorKind::BadData);
    let hex = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// Parses a whole `active_requests` dump, yielding `(1-based line number,
/// result)` for every line that is not blank or a header. Errors carry the
/// line number.
pub fn parse_text(
    text: &str,
) -> impl Iterator<Item = (usize, Result<ActiveRequest, ActiveRequestError>)> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let n = i + 1;
        match parse_line(line) {
            Ok(None) => None,
            Ok(Some(r)) => Some((n, Ok(r))),
            Err(mut e) => {
                e.line = Some(n);
                Some((n, Err(e)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EX1: &str = "fid=[0x200000401:0x1a:0x0] dfid=[0x200000401:0x1a:0x0] compound/cookie=0x0/0x66f1a2b3 action=ARCHIVE archive#=2 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 data=[7461673D66] canceled=0 uuid=9b1c0a52-0c8e-4b2b-8d5e-1f0e7b1f2a33 done=1048576";
    const EX2: &str = "fid=[0x200000401:0x1b:0x0] dfid=[0x200000402:0x7:0x0] compound/cookie=0x0/0x66f1a2b4 action=RESTORE archive#=1 flags=0x4 extent=0x0-0xffffffffffffffff gid=0x0 data=[] canceled=1 uuid=9b1c0a52-0c8e-4b2b-8d5e-1f0e7b1f2a33 done=0";

    #[test]
    fn reference_examples_round_trip() {
        for line in [EX1, EX2] {
            let r = parse_line(line).unwrap().unwrap();
            assert_eq!(r.to_string(), line);
        }
        let r = parse_line(EX1).unwrap().unwrap();
        assert_eq!(r.data, b"tag=f");
        assert_eq!(r.archive_id, 2);
        assert_eq!(r.done, 1048576);
        let r2 = parse_line(EX2).unwrap().unwrap();
        assert!(r2.canceled);
        assert_eq!(r2.flags, 4);
        assert_eq!(r2.dfid, Fid::new(0x200000402, 7, 0));
    }

    #[test]
    fn format_data_truncates_to_five_bytes() {
        assert_eq!(format_data(b""), "[]");
        assert_eq!(format_data(b"tag=foobar"), "[7461673D66]");
        assert_eq!(format_data(&[0, 0xab]), "[00AB]");
    }

    #[test]
    fn from_item_and_back() {
        let item = ActionItem {
            action: HsmAction::Archive,
            fid: Fid::new(0x200000401, 0x1a, 0),
            dfid: Fid::new(0x200000401, 0x1a, 0),
            extent: Extent::WHOLE,
            cookie: 0x66f1a2b3,
            gid: 0,
            data: b"tag=foobar".to_vec(),
        };
        let r = ActiveRequest::from_item(
            &item,
            2,
            0,
            false,
            "9b1c0a52-0c8e-4b2b-8d5e-1f0e7b1f2a33",
            1048576,
        );
        assert_eq!(r.to_string(), EX1);
        let back = r.to_item();
        assert_eq!(back.data, b"tag=f");
        assert_eq!(
            ActionItem {
                data: item.data[..5].to_vec(),
                ..item
            },
            back
        );
    }

    #[test]
    fn skips_headers_and_blanks_defaults_optional() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   \t"), Ok(None));
        assert_eq!(
            parse_line("mdt.testfs0-MDT0000.hsm.active_requests="),
            Ok(None)
        );
        let short = EX2.split(" canceled=").next().unwrap();
        let r = parse_line(short).unwrap().unwrap();
        assert!(!r.canceled);
        assert_eq!(r.uuid, "");
        assert_eq!(r.done, 0);
        let extra = format!("{EX1} future=thing");
        assert_eq!(parse_line(&extra).unwrap().unwrap().to_string(), EX1);
        let neg = EX2.replace("archive#=1", "archive#=-1");
        let r = parse_line(&neg).unwrap().unwrap();
        assert_eq!(r.archive_id, u32::MAX);
        assert_eq!(r.to_string(), neg);
        let unk = EX2.replace("RESTORE", "UNKNOWN");
        assert_eq!(parse_line(&unk).unwrap().unwrap().to_string(), unk);
    }
}
