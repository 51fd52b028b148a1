//! lfs-sim `--data-hex` and `--files-from`, the lhsmtool-sim log format,
//! `--noop` and the latency traces of both sides.

use std::collections::HashMap;
use std::path::Path;

use crate::common::*;

fn ct_result(env: &Env, ct: usize, action: &str) -> Vec<String> {
    env.ct_lines(ct)
        .into_iter()
        .filter(|l| l.starts_with(&format!("lhsmtool-sim: {action} [")))
        .collect()
}

#[test]
fn data_hex_reaches_the_copytool_byte_for_byte() {
    let mut env = Env::new("hexfs", 1);
    let ct = env.copytool(&[]);
    let f = env.file("h");
    std::fs::write(&f, b"payload").unwrap();
    let p = f.to_str().unwrap();
    env.lfs_ok(&["hsm_archive", "--data-hex", "7461673D00ff01", p]);
    env.wait_ct(ct, "lhsmtool-sim: ARCHIVE [", 1);
    let line = &ct_result(&env, ct, "ARCHIVE")[0];
    assert!(
        line.ends_with(" rc=0 errval=0 data=7461673d00ff01"),
        "NUL and high bytes arrive unchanged, in lowercase hex: {line}"
    );
    assert!(
        env.ct_lines(ct)
            .iter()
            .any(|l| l == "lhsmtool-sim: HAL archive_id=1 flags=0x0 items=1"),
        "{}",
        env.dump()
    );
    // --data keeps working and shows up in hex too.
    env.lfs_ok(&["hsm_remove", "--data", "rm", p]);
    env.wait_ct(ct, "lhsmtool-sim: REMOVE [", 1);
    assert!(ct_result(&env, ct, "REMOVE")[0].ends_with(" rc=0 errval=0 data=726d"));
}

#[test]
fn bad_data_hex_is_a_usage_error() {
    let env = Env::new("badhex", 1);
    let f = env.file("b");
    std::fs::write(&f, b"b").unwrap();
    let p = f.to_str().unwrap();
    for (args, needle) in [
        (vec!["--data-hex", "abc"], "odd number of hex digits"),
        (
            vec!["--data-hex", "7g"],
            "'g' at position 2 is not a hex digit",
        ),
        (
            vec!["--data-hex", "00", "--data", "x"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["hsm_archive"];
        all.extend(args);
        all.push(p);
        let out = env.lfs(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    // Nothing was queued.
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert!(actions.trim().is_empty(), "{actions}");
}

/// `<cookie> <fid> <ns>` lines of a trace file, by cookie.
fn read_trace(path: &Path) -> HashMap<String, (String, u128)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            assert_eq!(w.len(), 3, "trace line {l:?}");
            assert!(w[0].starts_with("0x") && w[1].starts_with("[0x"), "{l:?}");
            (w[0].to_owned(), (w[1].to_owned(), w[2].parse().unwrap()))
        })
        .collect()
}

#[test]
fn noop_copytool_files_from_and_traces() {
    let mut env = Env::with_simd_args("noopfs", 1, &["--trace", "{tmp}/simd.trace"]);
    let sim_trace = env._tmp.path().join("simd.trace");
    let ct_trace = env._tmp.path().join("ct.trace");
    env.set(&format!("{}.hsm.max_requests", env.mdt(0)), "100");
    let ct = env.copytool(&[
        "--noop",
        "--fanout",
        "4",
        "--trace",
        ct_trace.to_str().unwrap(),
    ]);
    let files = make_files(&env.root, "n", 20);
    let list = env._tmp.path().join("list");
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(&list, text).unwrap();
    env.lfs_ok(&["hsm_archive", "--files-from", list.to_str().unwrap()]);
    env.wait_ct(ct, "lhsmtool-sim: ARCHIVE [", 20);
    env.wait_state(&files, "exists archived, archive_id:1");
    assert!(
        ct_result(&env, ct, "ARCHIVE")
            .iter()
            .all(|l| l.ends_with(" rc=0 errval=0 data=")),
        "{}",
        env.dump()
    );
    let hal_items: usize = env
        .ct_lines(ct)
        .iter()
        .filter_map(|l| l.strip_prefix("lhsmtool-sim: HAL archive_id=1 flags=0x0 items="))
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(hal_items, 20);
    // --noop did no data work: no archive copy at all.
    let copies = std::fs::read_dir(&env.hsm).map(|d| d.count()).unwrap_or(0);
    assert_eq!(copies, 0, "--noop must not write archive copies");

    // Both traces name the same 20 items (flushed within 100 ms), and the
    // copytool received each one after the MDT handed it out.
    let both = poll_until(DEADLINE, || {
        let s = read_trace(&sim_trace);
        let c = read_trace(&ct_trace);
        (s.len() == 20 && c.len() == 20).then_some((s, c))
    });
    let (s, c) = both.unwrap_or_else(|| panic!("traces incomplete\n{}", env.dump()));
    for (cookie, (fid, sent)) in &s {
        let (cfid, got) = c.get(cookie).expect("same cookies on both sides");
        assert_eq!(fid, cfid);
        assert!(got >= sent, "{cookie}: received {got} before sent {sent}");
    }
    let fid0 = env.lfs_ok(&["path2fid", files[0].to_str().unwrap()]);
    assert!(s.values().any(|(f, _)| f == fid0.trim()), "{fid0}");

    // RESTORE under --noop: the file keeps its size (sparse zeros, what a
    // released file reads as anyway).
    let f = files[5].to_str().unwrap();
    let size = std::fs::metadata(&files[5]).unwrap().len();
    env.lfs_ok(&["hsm_release", f]);
    env.lfs_ok(&["hsm_restore", f]);
    env.wait_ct(ct, "lhsmtool-sim: RESTORE [", 1);
    assert!(ct_result(&env, ct, "RESTORE")[0].contains(" rc=0 errval=0 "));
    env.wait_state(&files[5..6], "(0x00000009) exists archived");
    assert_eq!(std::fs::metadata(&files[5]).unwrap().len(), size);
    // REMOVE under --noop.
    env.lfs_ok(&["hsm_remove", f]);
    env.wait_ct(ct, "lhsmtool-sim: REMOVE [", 1);
    assert!(ct_result(&env, ct, "REMOVE")[0].contains(" rc=0 errval=0 "));
}

#[test]
fn files_from_stdin() {
    let mut env = Env::new("stdinfs", 1);
    env.set(&format!("{}.hsm.max_requests", env.mdt(0)), "10");
    let ct = env.copytool(&["--noop"]);
    let files = make_files(&env.root, "s", 3);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lfs-sim"))
        .args(["hsm_archive", "--files-from", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for f in &files {
            writeln!(stdin, "{}", f.display()).unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    env.wait_ct(ct, "lhsmtool-sim: ARCHIVE [", 3);
    env.wait_state(&files, "exists archived");
    // A missing file is named, the others still go through.
    let missing = env.file("missing");
    let extra = env.file("extra");
    std::fs::write(&extra, b"e").unwrap();
    let out = env.lfs(&[
        "hsm_archive",
        missing.to_str().unwrap(),
        extra.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot get FID of '") && err.contains("missing"),
        "{err}"
    );
    env.wait_state(&[extra], "exists archived");
}
