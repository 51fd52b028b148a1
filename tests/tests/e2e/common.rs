//! Helpers shared by the scenarios.

use anyhow::{Result, bail};
use coordinatool_protocol::client::Client;
use coordinatool_protocol::{Request, Response, StatusReply};
use coordinatool_tests::{AgentOptions, Stack, StackOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub use lustre_bindings::flags::{HS_ARCHIVED, HS_EXISTS, HS_RELEASED};

/// Long enough for a loaded 2-core CI machine; the tests never sleep it out.
pub const T: Duration = Duration::from_secs(120);

pub fn stack() -> Stack {
    Stack::new(StackOptions::default()).expect("start the simulator")
}

pub fn stack_with(opts: StackOptions) -> Stack {
    Stack::new(opts).expect("start the simulator")
}

pub fn agent(id: &str) -> AgentOptions {
    AgentOptions {
        client_id: id.into(),
        archives: vec![],
        ..AgentOptions::default()
    }
}

pub fn status(stack: &Stack) -> Result<StatusReply> {
    let (h, p) = stack.daemon_host_port()?;
    let mut c = Client::connect_admin(&h, p, "e2e", Duration::from_secs(5))?;
    match c.call(Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected {other:?}"),
    }
}

/// Total requests the daemon still holds (waiting + running).
pub fn outstanding(s: &StatusReply) -> u64 {
    s.actions.iter().map(|a| a.waiting + a.running).sum()
}

pub fn wait_agents(stack: &Stack, n: usize) -> Result<()> {
    coordinatool_tests::wait_until(&format!("{n} connected agents"), T, || {
        let s = status(stack)?;
        Ok((s.agents.iter().filter(|a| a.connected).count() >= n).then_some(()))
    })
}

pub fn wait_waiting(stack: &Stack, n: u64) -> Result<StatusReply> {
    coordinatool_tests::wait_until(&format!("{n} waiting requests in the daemon"), T, || {
        let s = status(stack)?;
        Ok((s.actions.iter().map(|a| a.waiting).sum::<u64>() == n).then_some(s))
    })
}

pub fn archived(stack: &Stack, files: &[PathBuf]) -> Result<()> {
    stack.wait_flags(files, HS_EXISTS | HS_ARCHIVED, 0, T)
}

/// Successful actions per fid, from every copytool log: `(action, fid) -> count`.
/// `lhsmtool-sim` logs one line per finished item:
/// `lhsmtool-sim: ARCHIVE [0x...] cookie=0x... rc=0`.
pub fn successes(stack: &Stack) -> HashMap<(String, String), usize> {
    let mut map = HashMap::new();
    for entry in std::fs::read_dir(stack.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.contains("agent-") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.split("lhsmtool-sim: ").nth(1) else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(action), Some(fid)) = (words.next(), words.next()) else {
                continue;
            };
            if !fid.starts_with('[') || !rest.contains("rc=0") {
                continue;
            }
            *map.entry((action.to_string(), fid.to_string()))
                .or_insert(0) += 1;
        }
    }
    map
}

pub fn path2fid(stack: &Stack, file: &std::path::Path) -> String {
    stack
        .lfs(&["path2fid", &file.to_string_lossy()])
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
}
