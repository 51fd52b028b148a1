//! Turning input into [`QueueItem`]s: JSON lines (`queue`), the MDT's
//! `hsm/active_requests` text (`import`) and command-line FIDs (`queue FID...`).
//!
//! A bad line never stops the others: every parser returns the good items with
//! their line numbers and the bad lines with a reason.

use std::collections::HashMap;

use coordinatool_protocol::{QueueItem, WireFid, WireItem};
use lustre_bindings::{Fid, HsmAction};
use serde_json::{Map, Value};

/// Requests read from some input.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedInput {
    /// Valid requests with their 1-based line number (or argument position).
    pub items: Vec<(usize, QueueItem)>,
    /// Lines that could not be used.
    pub rejected: Vec<LineError>,
    /// Valid lines that repeat an earlier line's request (same cookie and dfid);
    /// they are not sent and are counted as skipped.
    pub duplicates: Vec<usize>,
    /// Filesystem named by an `mdt.FSNAME-MDTxxxx.hsm.active_requests=` header.
    pub fsname: Option<String>,
}

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl ParsedInput {
    fn push(&mut self, seen: &mut HashMap<(u64, WireFid), usize>, line: usize, item: QueueItem) {
        match seen.entry((item.item.cookie, item.item.dfid)) {
            std::collections::hash_map::Entry::Occupied(_) => self.duplicates.push(line),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(line);
                self.items.push((line, item));
            }
        }
    }

    fn reject(&mut self, line: usize, reason: impl Into<String>) {
        self.rejected.push(LineError {
            line,
            reason: reason.into(),
        });
    }
}

/// Checks what coordinatoold can queue: ARCHIVE, RESTORE or REMOVE, with a
/// non-zero archive id.
pub fn check_queueable(action: HsmAction, archive_id: u32) -> Result<(), String> {
    match action {
        HsmAction::Archive | HsmAction::Restore | HsmAction::Remove => {}
        HsmAction::Cancel => {
            return Err(
                "CANCEL requests cannot be queued (use `coordinatool-ctl cancel FID`)".into(),
            );
        }
        other => {
            return Err(format!(
                "action {} cannot be queued (only ARCHIVE, RESTORE and REMOVE)",
                other.name()
            ));
        }
    }
    if archive_id == 0 {
        return Err("archive id 0 cannot be queued (coordinatoold needs a non-zero id)".into());
    }
    Ok(())
}

/// Parses the MDT's `hsm/active_requests` text. Header lines give the
/// filesystem name; blank lines are ignored. `canceled=1` lines are queued
/// like the others (the MDT still considers them active). Only the first 5
/// bytes of each request's data are in the file, so only they are queued.
pub fn parse_active_requests(text: &str) -> ParsedInput {
    let mut out = ParsedInput::default();
    let mut seen = HashMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.starts_with("mdt.") && t.ends_with('=') && out.fsname.is_none() {
            out.fsname = header_fsname(t);
        }
        if t.starts_with('#') {
            continue;
        }
        match lustre_bindings::active_requests::parse_line(raw) {
            Ok(None) => {}
            Ok(Some(r)) => match check_queueable(r.action, r.archive_id) {
                Ok(()) => {
                    let item = QueueItem {
                        item: WireItem::from(r.to_item()),
                        archive_id: r.archive_id,
                        flags: r.flags,
                    };
                    out.push(&mut seen, idx + 1, item);
                }
                Err(reason) => out.reject(idx + 1, reason),
            },
            Err(e) => {
                // The error's Display starts with "active_requests: "; the line
                // number is printed by the caller.
                let msg = e.to_string();
                let msg = msg.strip_prefix("active_requests: ").unwrap_or(&msg);
                out.reject(idx + 1, msg);
            }
        }
    }
    out
}

/// `mdt.testfs0-MDT0000.hsm.active_requests=` gives `testfs0`.
pub fn header_fsname(line: &str) -> Option<String> {
    let rest = line.strip_prefix("mdt.")?;
    let target = rest.split(".hsm.").next()?;
    let (fs, _) = target.rsplit_once("-MDT")?;
    (!fs.is_empty() && !fs.contains('*')).then(|| fs.to_string())
}

/// Parses JSON lines for `queue` (blank lines and lines starting with `#`
/// are skipped).
pub fn parse_json_lines(text: &str) -> ParsedInput {
    let mut out = ParsedInput::default();
    let mut seen = HashMap::new();
    for (idx, raw) in text.lines().enumerate() {
        match parse_json_line(raw) {
            Ok(None) => {}
            Ok(Some(item)) => out.push(&mut seen, idx + 1, item),
            Err(reason) => out.reject(idx + 1, reason),
        }
    }
    out
}

/// Fields a JSON line may carry. The `list --json` fields that describe the
/// daemon's view (state, agent, age, cancel) are accepted and ignored, so
/// `list --json | queue` works.
const JSON_FIELDS: &[&str] = &[
    "fid",
    "dfid",
    "cookie",
    "action",
    "archive_id",
    "flags",
    "extent_offset",
    "extent_length",
    "gid",
    "data",
    "data_hex",
    "state",
    "agent",
    "age_ms",
    "cancel_pending",
];

/// Parses one JSON line:
/// `{"fid":"[0x200000401:0x1:0x0]","action":"archive","archive_id":1,"cookie":"0x617d23ef"}`
/// with optional `dfid` (default: `fid`), `flags` (0), `data` (text) or
/// `data_hex`, `extent_offset` (0), `extent_length` (whole file), `gid` (0).
/// Numbers may be JSON integers or strings in decimal or `0x` hex.
pub fn parse_json_line(line: &str) -> Result<Option<QueueItem>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(t).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("expected a JSON object".into());
    };
    if let Some(k) = m.keys().find(|k| !JSON_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?} (known: {})",
            JSON_FIELDS[..11].join(", ")
        ));
    }
    let fid = fid_field(&m, "fid")?.ok_or("field \"fid\" is missing")?;
    let dfid = fid_field(&m, "dfid")?.unwrap_or(fid);
    let cookie = num_field(&m, "cookie")?.ok_or(
        "field \"cookie\" is missing (queue re-queues requests the MDT handed out: \
         each needs its MDT cookie)",
    )?;
    let action = match m.get("action") {
        None => return Err("field \"action\" is missing".into()),
        Some(Value::String(s)) => s
            .parse::<HsmAction>()
            .map_err(|_| format!("field \"action\": unknown action {s:?}"))?,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(HsmAction::from_u32)
            .ok_or_else(|| format!("field \"action\": {n} is not an action value"))?,
        Some(other) => return Err(format!("field \"action\": expected a name, got {other}")),
    };
    let archive_id = num_field(&m, "archive_id")?.ok_or("field \"archive_id\" is missing")?;
    let archive_id = u32::try_from(archive_id)
        .map_err(|_| format!("field \"archive_id\": {archive_id} is too large"))?;
    check_queueable(action, archive_id)?;
    let flags = num_field(&m, "flags")?.unwrap_or(0);
    let extent_offset = num_field(&m, "extent_offset")?.unwrap_or(0);
    let extent_length = num_field(&m, "extent_length")?.unwrap_or(u64::MAX);
    let gid = num_field(&m, "gid")?.unwrap_or(0);
    let data = match (m.get("data"), m.get("data_hex")) {
        (Some(_), Some(_)) => return Err("give \"data\" or \"data_hex\", not both".into()),
        (Some(Value::String(s)), None) => s.as_bytes().to_vec(),
        (Some(other), None) => {
            return Err(format!("field \"data\": expected a string, got {other}"));
        }
        (None, Some(Value::String(h))) => {
            unhex(h).ok_or_else(|| format!("field \"data_hex\": {h:?} is not hex"))?
        }
        (None, Some(other)) => {
            return Err(format!(
                "field \"data_hex\": expected a string, got {other}"
            ));
        }
        (None, None) => Vec::new(),
    };
    Ok(Some(QueueItem {
        item: WireItem {
            action: action.as_u32(),
            fid: fid.into(),
            dfid: dfid.into(),
            extent_offset,
            extent_length,
            cookie,
            gid,
            data,
        },
        archive_id,
        flags,
    }))
}

fn fid_field(m: &Map<String, Value>, key: &str) -> Result<Option<Fid>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<Fid>()
            .map(Some)
            .map_err(|e| format!("field {key:?}: {e}")),
        Some(other) => Err(format!(
            "field {key:?}: expected a FID string such as \"[0x200000401:0x1:0x0]\", got {other}"
        )),
    }
}

fn num_field(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("field {key:?}: {n} is not a non-negative integer")),
        Some(Value::String(s)) => coordinatool_protocol::conf::parse_u64(s)
            .map(Some)
            .map_err(|e| format!("field {key:?}: {e}")),
        Some(other) => Err(format!(
            "field {key:?}: expected an integer or a \"0x..\" string, got {other}"
        )),
    }
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
        .collect()
}

/// Builds the items of `queue --action A --archive N --cookie C... FID...`.
/// Positions are 1-based argument positions among the FIDs.
pub fn items_from_args(
    fids: &[String],
    action: Option<HsmAction>,
    archive_id: Option<u32>,
    cookies: &[u64],
    flags: u64,
    data: Option<&str>,
) -> Result<Vec<(usize, QueueItem)>, String> {
    let action = action.ok_or("--action is required with FIDs")?;
    let archive_id = archive_id.ok_or("--archive is required with FIDs")?;
    if cookies.len() != fids.len() {
        return Err(format!(
            "{} FID(s) but {} cookie(s): give one --cookie per FID, in the same order \
             (the MDT's cookie of each request, see `lctl get_param mdt.*.hsm.active_requests`)",
            fids.len(),
            cookies.len()
        ));
    }
    check_queueable(action, archive_id)?;
    let mut out = Vec::with_capacity(fids.len());
    for (i, (f, &cookie)) in fids.iter().zip(cookies).enumerate() {
        let fid: Fid = f.parse().map_err(|e| format!("argument {f:?}: {e}"))?;
        out.push((
            i + 1,
            QueueItem {
                item: WireItem::whole_file(
                    action.as_u32(),
                    fid.into(),
                    cookie,
                    data.map(|d| d.as_bytes().to_vec()).unwrap_or_default(),
                ),
                archive_id,
                flags,
            },
        ));
    }
    Ok(out)
}

/// Parses FID arguments (for `cancel`).
pub fn parse_fids(fids: &[String]) -> Result<Vec<WireFid>, String> {
    fids.iter()
        .map(|f| {
            f.parse::<Fid>()
                .map(WireFid::from)
                .map_err(|e| format!("argument {f:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/active_requests/testfs0-MDT0000-100-archives.txt"
    );

    #[test]
    fn real_capture_gives_100_archives_and_the_fsname() {
        let text = std::fs::read_to_string(SAMPLE).unwrap();
        let p = parse_active_requests(&text);
        assert_eq!(p.items.len(), 100, "{:?}", p.rejected);
        assert!(p.rejected.is_empty());
        assert!(p.duplicates.is_empty());
        assert_eq!(p.fsname.as_deref(), Some("testfs0"));
        let (line, first) = &p.items[0];
        assert_eq!(*line, 2, "line 1 is the header");
        assert_eq!(first.item.cookie, 0x617d23ef);
        assert_eq!(first.item.action, 20);
        assert_eq!(first.archive_id, 1);
        assert_eq!(first.item.extent_length, u64::MAX);
        assert_eq!(
            first.item.fid,
            WireFid {
                seq: 0x200005223,
                oid: 0x1cce,
                ver: 0
            }
        );
    }

    #[test]
    fn import_accounts_for_good_duplicate_and_bad_lines() {
        let text = std::fs::read_to_string(SAMPLE).unwrap();
        let mut lines: Vec<String> = text.lines().take(4).map(str::to_string).collect();
        let good = lines[1].clone();
        lines.push(good.clone()); // line 5: duplicate of line 2
        lines.push(good.replace("compound/cookie=0x0/0x617d23ef", "compound/cookie=0x0/zz")); // 6
        lines.push(String::new()); // 7: blank, ignored
        lines.push(
            good.replace("action=ARCHIVE", "action=CANCEL")
                .replace("0x617d23ef", "0x1"),
        ); // 8
        lines.push(
            good.replace("archive#=1", "archive#=0")
                .replace("0x617d23ef", "0x2"),
        ); // 9
        lines.push("garbage".into()); // 10
        lines.push(
            good.replace("data=[]", "data=[6461207461]")
                .replace("0x617d23ef", "0x3"),
        ); // 11
        lines.push(good.replace("fid=[0x200005223:0x1cce:0x0] ", "")); // 12: no fid
        let p = parse_active_requests(&lines.join("\n"));
        let ok: Vec<usize> = p.items.iter().map(|(l, _)| *l).collect();
        assert_eq!(ok, vec![2, 3, 4, 11]);
        assert_eq!(p.duplicates, vec![5]);
        let bad: Vec<usize> = p.rejected.iter().map(|e| e.line).collect();
        assert_eq!(bad, vec![6, 8, 9, 10, 12], "{:?}", p.rejected);
        assert!(
            p.rejected[0].reason.contains("compound/cookie"),
            "{:?}",
            p.rejected[0]
        );
        assert!(p.rejected[1].reason.contains("CANCEL"));
        assert!(p.rejected[2].reason.contains("archive id 0"));
        assert!(
            p.rejected[3].reason.contains("key=value"),
            "{:?}",
            p.rejected[3]
        );
        assert!(
            p.rejected[4].reason.contains("`fid`"),
            "{:?}",
            p.rejected[4]
        );
        // Only the 5 shown bytes survive.
        assert_eq!(p.items[3].1.item.data, b"da ta");
    }

    #[test]
    fn header_names() {
        assert_eq!(
            header_fsname("mdt.testfs0-MDT0000.hsm.active_requests=").as_deref(),
            Some("testfs0")
        );
        assert_eq!(
            header_fsname("mdt.my-fs-MDT0001.hsm.active_requests=").as_deref(),
            Some("my-fs")
        );
        assert_eq!(header_fsname("mdt.*.hsm.active_requests="), None);
    }

    #[test]
    fn json_line_full_and_minimal() {
        let q = parse_json_line(
            r#"{"fid":"[0x200000401:0x1:0x0]","action":"archive","archive_id":1,"flags":0,"data":"tag=x","cookie":"0x617d23ef"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.item.action, 20);
        assert_eq!(q.item.cookie, 0x617d23ef);
        assert_eq!(q.item.dfid, q.item.fid);
        assert_eq!(q.item.data, b"tag=x");
        assert_eq!(q.item.extent_length, u64::MAX);
        assert_eq!(q.archive_id, 1);
        let q = parse_json_line(
            r#"{"fid":"0x200000401:0x2:0x0","dfid":"[0x200000402:0x7:0x0]","action":"RESTORE","archive_id":"2","cookie":12,"data_hex":"00ff","flags":"0x4"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.item.action, 21);
        assert_eq!(q.item.dfid.seq, 0x200000402);
        assert_eq!(q.item.data, vec![0, 0xff]);
        assert_eq!(q.flags, 4);
        assert_eq!(parse_json_line("  ").unwrap(), None);
        assert_eq!(parse_json_line("# comment").unwrap(), None);
    }

    #[test]
    fn json_line_errors_name_the_field() {
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "JSON object"),
            (
                r#"{"action":"archive","archive_id":1,"cookie":1}"#,
                "\"fid\" is missing",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":1}"#,
                "cookie",
            ),
            (
                r#"{"fid":"[0x1:0x1]","action":"archive","archive_id":1,"cookie":1}"#,
                "\"fid\"",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"copy","archive_id":1,"cookie":1}"#,
                "copy",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"cancel","archive_id":1,"cookie":1}"#,
                "CANCEL",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":0,"cookie":1}"#,
                "archive id 0",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","cookie":1}"#,
                "archive_id",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":-1,"cookie":1}"#,
                "archive_id",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":1,"cookie":true}"#,
                "cookie",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":1,"cookie":1,"archiveid":2}"#,
                "unknown field \"archiveid\"",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":1,"cookie":1,"data":"a","data_hex":"61"}"#,
                "not both",
            ),
            (
                r#"{"fid":"[0x1:0x1:0x0]","action":"archive","archive_id":1,"cookie":1,"data_hex":"6"}"#,
                "data_hex",
            ),
        ];
        for (line, want) in cases {
            let e = parse_json_line(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn json_lines_keep_going_after_bad_lines() {
        let text = "\
{\"fid\":\"[0x1:0x1:0x0]\",\"action\":\"archive\",\"archive_id\":1,\"cookie\":1}
not json

{\"fid\":\"[0x1:0x2:0x0]\",\"action\":\"remove\",\"archive_id\":1,\"cookie\":2}
{\"fid\":\"[0x1:0x1:0x0]\",\"action\":\"archive\",\"archive_id\":1,\"cookie\":1}
";
        let p = parse_json_lines(text);
        assert_eq!(
            p.items.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].line, 2);
        assert_eq!(p.duplicates, vec![5]);
    }

    #[test]
    fn list_json_output_reads_back() {
        use coordinatool_protocol::{RequestInfo, RequestState};
        let item = WireItem {
            action: 22,
            fid: WireFid {
                seq: 0x200000401,
                oid: 9,
                ver: 0,
            },
            dfid: WireFid {
                seq: 0x200000401,
                oid: 9,
                ver: 0,
            },
            extent_offset: 0,
            extent_length: u64::MAX,
            cookie: 77,
            gid: 0,
            data: b"x\0y".to_vec(),
        };
        let info = RequestInfo {
            item: item.clone(),
            archive_id: 3,
            flags: 1,
            state: RequestState::Orphaned,
            agent: Some("m".into()),
            age_ms: 5,
            cancel_pending: false,
        };
        let line = serde_json::to_string(&crate::format::ListLine::new(&info)).unwrap();
        let q = parse_json_line(&line).unwrap().unwrap();
        assert_eq!(q.item, item);
        assert_eq!(q.archive_id, 3);
        assert_eq!(q.flags, 1);
    }

    #[test]
    fn argument_form() {
        let fids = vec![
            "[0x200000401:0x1:0x0]".to_string(),
            "0x200000401:0x2:0x0".into(),
        ];
        let items = items_from_args(
            &fids,
            Some(HsmAction::Archive),
            Some(1),
            &[5, 6],
            0,
            Some("d"),
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].1.item.cookie, 6);
        assert_eq!(items[1].1.item.fid.oid, 2);
        assert_eq!(items[0].1.item.data, b"d");
        let e =
            items_from_args(&fids, Some(HsmAction::Archive), Some(1), &[5], 0, None).unwrap_err();
        assert!(e.contains("2 FID(s) but 1 cookie(s)"), "{e}");
        let e = items_from_args(&fids, None, Some(1), &[5, 6], 0, None).unwrap_err();
        assert!(e.contains("--action"), "{e}");
        let bad = vec!["nope".to_string()];
        let e =
            items_from_args(&bad, Some(HsmAction::Archive), Some(1), &[5], 0, None).unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
        assert!(parse_fids(&fids).is_ok());
        assert!(parse_fids(&bad).unwrap_err().contains("nope"));
    }
}
