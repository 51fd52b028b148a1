//! Human-readable and JSON output.

use std::fmt::Write as _;

use coordinatool_protocol::{AgentInfo, RequestInfo, StatusReply, WireItem};
use lustre_bindings::HsmAction;
use serde::Serialize;

/// Fraction of the MDT's `active_request_timeout` at which `status` warns.
pub const WARN_FRACTION: f64 = 0.8;

/// Escapes request data for display: printable ASCII stays, `\` and `"` are
/// backslash-escaped, NUL, tab, CR and LF use their C escapes, anything else
/// is `\xNN`.
pub fn escape_data(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0 => s.push_str("\\0"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// A short duration: `45s`, `12m03s`, `3h04m`, `2d03h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// The warning `status` prints when the oldest request not yet done nears the
/// MDT's `active_request_timeout` (the MDT then gives up on it and the
/// mover's eventual completion is refused).
pub fn age_warning(oldest_ms: Option<u64>, timeout_s: u64) -> Option<String> {
    let oldest = oldest_ms?;
    let limit_ms = timeout_s.saturating_mul(1000);
    if limit_ms == 0 || (oldest as f64) < WARN_FRACTION * limit_ms as f64 {
        return None;
    }
    let pct = oldest.saturating_mul(100) / limit_ms;
    Some(if oldest >= limit_ms {
        format!(
            "the oldest request is {} old, past the MDT's active_request_timeout of {}s ({pct}%): \
             the MDT has probably given up on it",
            duration(oldest),
            timeout_s
        )
    } else {
        format!(
            "the oldest request is {} old, {pct}% of the MDT's active_request_timeout of {}s: \
             the MDT gives up on it in {}",
            duration(oldest),
            timeout_s,
            duration(limit_ms - oldest)
        )
    })
}

/// Left-aligned columns separated by two spaces (the last column unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn limit(l: Option<u32>) -> String {
    l.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn archives(ids: &[u32]) -> String {
    if ids.is_empty() {
        "any".into()
    } else {
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

/// One-word state of an agent.
pub fn agent_state(a: &AgentInfo) -> &'static str {
    match (a.connected, a.waiting) {
        (false, _) => "disconnected",
        (true, true) => "waiting",
        (true, false) => "connected",
    }
}

/// The agents table (shared by `status` and `agents`).
pub fn agents_text(agents: &[AgentInfo]) -> String {
    if agents.is_empty() {
        return "no agents\n".into();
    }
    let mut rows = vec![vec![
        "CLIENT_ID".to_string(),
        "STATE".into(),
        "ARCHIVES".into(),
        "ARCHIVE".into(),
        "RESTORE".into(),
        "REMOVE".into(),
        "DONE".into(),
        "PEER/GRACE".into(),
    ]];
    for a in agents {
        let where_ = if a.connected {
            a.peer.clone().unwrap_or_default()
        } else {
            match a.grace_remaining_ms {
                Some(ms) => format!("{} of grace left", duration(ms)),
                None => "grace expired".into(),
            }
        };
        rows.push(vec![
            a.client_id.clone(),
            agent_state(a).into(),
            archives(&a.archive_ids),
            format!("{}/{}", a.running[0], limit(a.limits[0])),
            format!("{}/{}", a.running[1], limit(a.limits[1])),
            format!("{}/{}", a.running[2], limit(a.limits[2])),
            a.done.iter().sum::<u64>().to_string(),
            where_,
        ]);
    }
    let mut s = table(&rows);
    s.push_str("(ARCHIVE/RESTORE/REMOVE: running/limit, - = unlimited, 0 = never)\n");
    s
}

/// The `status` text.
pub fn status_text(st: &StatusReply, addr: &str, timeout_s: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "coordinatoold {} at {addr}: filesystem {}{}, up {}",
        st.version,
        st.fsname,
        if st.mountpoint.is_empty() {
            String::new()
        } else {
            format!(" ({})", st.mountpoint)
        },
        duration(st.uptime_ms)
    );
    let _ = writeln!(
        s,
        "hand-out: {}",
        if st.locked {
            "LOCKED (no work is handed to agents; `coordinatool-ctl unlock` resumes)"
        } else {
            "running"
        }
    );
    let mut rows = vec![vec![
        "ACTION".to_string(),
        "WAITING".into(),
        "RUNNING".into(),
        "DONE".into(),
        "FAILED".into(),
        "CANCELED".into(),
    ]];
    let mut total = [0u64; 5];
    for a in &st.actions {
        let v = [a.waiting, a.running, a.done, a.failed, a.canceled];
        for (t, x) in total.iter_mut().zip(v) {
            *t += x;
        }
        let mut row = vec![a.action.clone()];
        row.extend(v.iter().map(u64::to_string));
        rows.push(row);
    }
    let mut row = vec!["total".to_string()];
    row.extend(total.iter().map(u64::to_string));
    rows.push(row);
    s.push_str(&table(&rows));
    let age = |v: Option<u64>| v.map_or_else(|| "none".to_string(), duration);
    let _ = writeln!(
        s,
        "oldest waiting request: {}; oldest request not done: {}; cancels pending delivery: {}",
        age(st.oldest_waiting_ms),
        age(st.oldest_request_ms),
        st.pending_cancels
    );
    let connected = st.agents.iter().filter(|a| a.connected).count();
    let _ = writeln!(
        s,
        "agents: {connected} connected, {} disconnected",
        st.agents.len() - connected
    );
    if !st.agents.is_empty() {
        s.push_str(&agents_text(&st.agents));
    }
    if let Some(w) = age_warning(st.oldest_request_ms, timeout_s) {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// `status --json`: the daemon's reply plus the address and warnings.
pub fn status_json(st: &StatusReply, addr: &str, timeout_s: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(st).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("address".into(), addr.into());
        m.insert("active_request_timeout_s".into(), timeout_s.into());
        let warnings: Vec<String> = age_warning(st.oldest_request_ms, timeout_s)
            .into_iter()
            .collect();
        m.insert("warnings".into(), warnings.into());
    }
    v
}

/// One request as `list --json` prints it, and as `queue` reads it back.
#[derive(Debug, Serialize)]
pub struct ListLine {
    /// `[seq:oid:ver]`.
    pub fid: String,
    /// `[seq:oid:ver]`.
    pub dfid: String,
    /// The MDT cookie.
    pub cookie: u64,
    /// Action name.
    pub action: &'static str,
    /// Archive id.
    pub archive_id: u32,
    /// `hal_flags`.
    pub flags: u64,
    /// Extent offset.
    pub extent_offset: u64,
    /// Extent length.
    pub extent_length: u64,
    /// `hai_gid`.
    pub gid: u64,
    /// The data, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The data as hex, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_hex: Option<String>,
    /// waiting, running or orphaned.
    pub state: &'static str,
    /// The agent holding it.
    pub agent: Option<String>,
    /// Milliseconds since the daemon received it.
    pub age_ms: u64,
    /// A cancel is pending.
    pub cancel_pending: bool,
}

/// Hex of bytes, lower case.
pub fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl ListLine {
    /// Builds the line for one request.
    pub fn new(r: &RequestInfo) -> ListLine {
        let it: &WireItem = &r.item;
        let (data, data_hex) = match std::str::from_utf8(&it.data) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(hex(&it.data))),
        };
        ListLine {
            fid: it.fid.to_string(),
            dfid: it.dfid.to_string(),
            cookie: it.cookie,
            action: HsmAction::from_u32(it.action).name(),
            archive_id: r.archive_id,
            flags: r.flags,
            extent_offset: it.extent_offset,
            extent_length: it.extent_length,
            gid: it.gid,
            data,
            data_hex,
            state: r.state.name(),
            agent: r.agent.clone(),
            age_ms: r.age_ms,
            cancel_pending: r.cancel_pending,
        }
    }
}

/// The `list` table.
pub fn list_text(reqs: &[RequestInfo], truncated: bool) -> String {
    let mut rows = vec![vec![
        "FID".to_string(),
        "COOKIE".into(),
        "ACTION".into(),
        "ARCHIVE".into(),
        "STATE".into(),
        "AGENT".into(),
        "AGE".into(),
        "DATA".into(),
    ]];
    for r in reqs {
        let mut state = r.state.name().to_string();
        if r.cancel_pending {
            state.push_str("+cancel");
        }
        let mut fid = r.item.fid.to_string();
        if r.item.dfid != r.item.fid {
            let _ = write!(fid, " (dfid {})", r.item.dfid);
        }
        rows.push(vec![
            fid,
            format!("{:#x}", r.item.cookie),
            HsmAction::from_u32(r.item.action).name().to_string(),
            r.archive_id.to_string(),
            state,
            r.agent.clone().unwrap_or_else(|| "-".into()),
            duration(r.age_ms),
            format!("\"{}\"", escape_data(&r.item.data)),
        ]);
    }
    let mut s = if reqs.is_empty() {
        "no matching requests\n".to_string()
    } else {
        table(&rows)
    };
    if truncated {
        s.push_str("(more requests match: raise --limit to see them)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinatool_protocol::{ActionCounts, RequestState, WireFid};

    fn fid(oid: u32) -> WireFid {
        WireFid {
            seq: 0x200000401,
            oid,
            ver: 0,
        }
    }

    fn req(data: &[u8]) -> RequestInfo {
        RequestInfo {
            item: WireItem::whole_file(21, fid(1), 0x617d23ef, data.to_vec()),
            archive_id: 2,
            flags: 0,
            state: RequestState::Running,
            agent: Some("mover1".into()),
            age_ms: 75_000,
            cancel_pending: true,
        }
    }

    #[test]
    fn escapes_every_kind_of_byte() {
        assert_eq!(escape_data(b"tag=f"), "tag=f");
        assert_eq!(
            escape_data(b"a\0b\n\t\r\\\"\x7f\xff"),
            "a\\0b\\n\\t\\r\\\\\\\"\\x7f\\xff"
        );
        assert_eq!(escape_data(b""), "");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(999), "0s");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(723_000), "12m03s");
        assert_eq!(duration(3 * 3_600_000 + 4 * 60_000), "3h04m");
        assert_eq!(duration(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
    }

    #[test]
    fn warning_at_eighty_percent() {
        assert_eq!(age_warning(None, 3600), None);
        assert_eq!(age_warning(Some(2_879_000), 3600), None);
        let w = age_warning(Some(2_880_000), 3600).unwrap();
        assert!(
            w.contains("80%") && w.contains("48m00s") && w.contains("12m00s"),
            "{w}"
        );
        let w = age_warning(Some(4_000_000), 3600).unwrap();
        assert!(w.contains("past") && w.contains("111%"), "{w}");
        // A custom timeout.
        assert!(age_warning(Some(50_000), 60).is_some());
    }

    #[test]
    fn status_text_shows_counts_agents_lock_and_warning() {
        let st = StatusReply {
            version: "0.1.0".into(),
            fsname: "testfs".into(),
            mountpoint: "/mnt/testfs".into(),
            uptime_ms: 3_700_000,
            locked: true,
            actions: vec![
                ActionCounts {
                    action: "ARCHIVE".into(),
                    waiting: 5,
                    running: 2,
                    done: 10,
                    failed: 1,
                    canceled: 0,
                },
                ActionCounts {
                    action: "RESTORE".into(),
                    waiting: 1,
                    running: 0,
                    done: 3,
                    failed: 0,
                    canceled: 2,
                },
            ],
            agents: vec![
                AgentInfo {
                    client_id: "mover1".into(),
                    connected: true,
                    waiting: true,
                    archive_ids: vec![1, 2],
                    peer: Some("10.0.0.2:40000".into()),
                    running: [2, 0, 0],
                    done: [10, 3, 0],
                    limits: [Some(4), None, Some(0)],
                    max_bytes: 1 << 20,
                    grace_remaining_ms: None,
                },
                AgentInfo {
                    client_id: "mover2".into(),
                    connected: false,
                    grace_remaining_ms: Some(299_000),
                    ..AgentInfo::default()
                },
            ],
            oldest_request_ms: Some(3_000_000),
            oldest_waiting_ms: Some(60_000),
            pending_cancels: 1,
            connections: 2,
        };
        let t = status_text(&st, "127.0.0.1:5123", 3600);
        for needle in [
            "at 127.0.0.1:5123",
            "filesystem testfs (/mnt/testfs), up 1h01m",
            "LOCKED",
            "ARCHIVE  5        2        10    1       0",
            "total    6        2        13    1       2",
            "oldest waiting request: 1m00s",
            "1 connected, 1 disconnected",
            "mover1     waiting       1,2       2/4      0/-      0/0     13    10.0.0.2:40000",
            "4m59s of grace left",
            "warning: the oldest request is 50m00s old, 83%",
        ] {
            assert!(t.contains(needle), "{needle:?} not in:\n{t}");
        }
        let j = status_json(&st, "127.0.0.1:5123", 3600);
        assert_eq!(j["address"], "127.0.0.1:5123");
        assert_eq!(j["locked"], true);
        assert_eq!(j["warnings"].as_array().map(Vec::len), Some(1));
        assert_eq!(j["agents"][1]["grace_remaining_ms"], 299_000);
        // No warning well below the timeout.
        let t = status_text(&st, "h:1", 36_000);
        assert!(!t.contains("warning"), "{t}");
    }

    #[test]
    fn list_table_and_json_line() {
        let r = req(b"da ta\0");
        let t = list_text(std::slice::from_ref(&r), true);
        assert!(t.starts_with("FID"), "{t}");
        for needle in [
            "[0x200000401:0x1:0x0]",
            "0x617d23ef",
            "RESTORE",
            "running+cancel",
            "mover1",
            "1m15s",
            "\"da ta\\0\"",
            "raise --limit",
        ] {
            assert!(t.contains(needle), "{needle:?} not in:\n{t}");
        }
        assert_eq!(list_text(&[], false), "no matching requests\n");
        let j = serde_json::to_value(ListLine::new(&r)).unwrap();
        assert_eq!(j["fid"], "[0x200000401:0x1:0x0]");
        assert_eq!(j["action"], "RESTORE");
        assert_eq!(j["data"], "da ta\u{0}");
        assert!(j.get("data_hex").is_none());
        let j = serde_json::to_value(ListLine::new(&req(b"\xff\x00"))).unwrap();
        assert_eq!(j["data_hex"], "ff00");
        assert!(j.get("data").is_none());
    }
}
