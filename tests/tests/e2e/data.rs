//! Scenario 7: request data (`--data`), NUL bytes included, reaches the
//! copytool bit-exact, also after a daemon restart.

use crate::common::*;

/// The data the copytool saw, from its log line `data=<hex>`.
fn seen_data(log: &str, fid: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains(fid))
        .find_map(|l| l.split("data=").nth(1))
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_string())
}

#[test]
fn data_with_nul_bytes_is_bit_exact_across_a_restart() {
    let mut s = stack();
    s.start_daemon().unwrap();
    let files = s.make_files("d", 2, 15).unwrap();
    // 0x00 bytes cannot travel in argv: lfs-sim takes the data as hex too.
    let hex = "7461673d00010203ff00";
    s.hsm("hsm_archive", &files[..1], &["--data-hex", hex])
        .unwrap();
    s.hsm("hsm_archive", &files[1..], &["--data", "tag=plain"])
        .unwrap();
    wait_waiting(&s, 2).unwrap();
    s.daemon.as_mut().unwrap().kill();
    s.start_daemon().unwrap();
    s.start_agent(agent("a")).unwrap();
    archived(&s, &files).unwrap();
    let log = s.agent("a").unwrap().log_text();
    let fid0 = path2fid(&s, &files[0]);
    let fid1 = path2fid(&s, &files[1]);
    assert_eq!(seen_data(&log, &fid0).as_deref(), Some(hex), "{log}");
    assert_eq!(
        seen_data(&log, &fid1).as_deref(),
        Some("7461673d706c61696e"),
        "{log}"
    );
}
