//! Text formats (active_requests, agents, hsm_state) and exported symbols.

use crate::common::*;
use std::process::Command;

#[test]
fn active_requests_match_golden_lines() {
    let mut env = Env::new("testfs0", 1);
    let wait = env._tmp.path().join("never");
    env.copytool(&["--wait-file", wait.to_str().unwrap()]);
    let f = env.file("g");
    std::fs::write(&f, b"golden").unwrap();
    env.lfs_ok(&[
        "hsm_archive",
        "--archive",
        "3",
        "--data",
        "tag=foobar",
        f.to_str().unwrap(),
    ]);
    let m = env.mdt(0);
    let ok = poll_until(DEADLINE, || (env.active(0).len() == 1).then_some(()));
    assert!(ok.is_some(), "{}", env.dump());
    let agents = env.param(&format!("{m}.hsm.agents"));
    let uuid = agents
        .split("uuid=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        agents.trim(),
        format!("uuid={uuid} archive_id=ANY requests=[current:1 ok:0 errors:0]")
    );
    let actions = env.param(&format!("{m}.hsm.actions"));
    let cookie = actions
        .split("compound/cookie=0x0/")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        actions.trim(),
        format!(
            "lrh=[type=10680000 len=152 idx=1/1] fid=[0x200000400:0x1:0x0] dfid=[0x200000400:0x1:0x0] compound/cookie=0x0/{cookie} action=ARCHIVE archive#=3 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 datalen=10 status=STARTED data=[7461673D66]"
        )
    );
    assert_eq!(
        env.active(0),
        vec![format!(
            "fid=[0x200000400:0x1:0x0] dfid=[0x200000400:0x1:0x0] compound/cookie=0x0/{cookie} action=ARCHIVE archive#=3 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 data=[7461673D66] canceled=0 uuid={uuid} done=0"
        )]
    );
    // lctl-style output with the header line.
    let named = env.lfs_ok(&["get_param", &format!("{m}.hsm.active_requests")]);
    assert!(
        named.starts_with(&format!("{m}.hsm.active_requests=\nfid=")),
        "{named}"
    );
    // A cancel is attached: canceled=1, still listed until the copytool ends it.
    env.lfs_ok(&["hsm_cancel", f.to_str().unwrap()]);
    assert_eq!(
        env.active(0),
        vec![format!(
            "fid=[0x200000400:0x1:0x0] dfid=[0x200000400:0x1:0x0] compound/cookie=0x0/{cookie} action=ARCHIVE archive#=3 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 data=[7461673D66] canceled=1 uuid={uuid} done=0"
        )]
    );
    // Parsed back by lustre-bindings' parser, line for line.
    for l in env.active(0) {
        let parsed = lustre_bindings::active_requests::parse_line(&l)
            .expect("parse active_requests line")
            .expect("a request line");
        assert_eq!(parsed.to_string(), l);
    }
}

#[test]
fn tunables_and_hsm_state_text() {
    let env = Env::new("tun", 1);
    let m = env.mdt(0);
    assert_eq!(
        env.lfs_ok(&["get_param", &format!("{m}.hsm.loop_period")]),
        format!("{m}.hsm.loop_period=10\n")
    );
    for (name, default) in [
        ("max_requests", "3"),
        ("active_request_timeout", "3600"),
        ("grace_delay", "60"),
        ("default_archive_id", "1"),
        ("policy", "NonBlockingRestore [NoRetryAction]"),
        ("archive_count", "0"),
    ] {
        assert_eq!(
            env.param(&format!("{m}.hsm.{name}")).trim(),
            default,
            "{name}"
        );
    }
    assert_eq!(env.param(&format!("{m}.hsm_control")).trim(), "enabled");
    env.set(&format!("{m}.hsm.policy"), "+NBR");
    assert_eq!(
        env.param(&format!("{m}.hsm.policy")).trim(),
        "[NonBlockingRestore] [NoRetryAction]"
    );
    env.set(&format!("{m}.hsm_control"), "disabled");
    assert_eq!(env.param(&format!("{m}.hsm_control")).trim(), "disabled");
    let bad = env.lfs(&["set_param", &format!("{m}.hsm_control=bogus")]);
    assert!(!bad.status.success());
    let missing = env.lfs(&["get_param", "mdt.*.hsm.nothing"]);
    assert!(!missing.status.success());

    let f = env.file("s");
    std::fs::write(&f, b"s").unwrap();
    assert_eq!(env.state(&f), format!("{}: (0x00000000)", f.display()));
    let out = env.lfs(&["hsm_state", env.file("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("No such file or directory"),
        "{err}"
    );
    let fid = env.lfs_ok(&["path2fid", f.to_str().unwrap()]);
    let back = env.lfs_ok(&[
        "fid2path",
        "--mount",
        env.root.to_str().unwrap(),
        fid.trim(),
    ]);
    assert_eq!(back.trim(), f.to_str().unwrap());
}

#[test]
fn lhsmtool_posix_symbols_resolve_in_the_fake() {
    let (profile, _) =
        lustre_sim::testing::fake_lib_dir_or_explain().unwrap_or_else(|e| panic!("{e}"));
    let lib = profile.join("liblustreapi.so");
    let out = Command::new("nm")
        .arg("-D")
        .arg("--defined-only")
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for sym in [
        // lhsmtool_posix 2.15-2.17 (facts §5.1)
        "llapi_error",
        "llapi_error_callback_set",
        "llapi_msg_set_level",
        "llapi_parse_size",
        "llapi_search_fsname",
        "llapi_fid2path_at",
        "llapi_fid2path",
        "llapi_fid_parse",
        "llapi_get_mdt_index_by_fid",
        "llapi_hsm_copytool_register",
        "llapi_hsm_copytool_unregister",
        "llapi_hsm_copytool_recv",
        "llapi_hsm_action_begin",
        "llapi_hsm_action_end",
        "llapi_hsm_action_progress",
        "llapi_hsm_action_get_dfid",
        "llapi_hsm_action_get_fd",
        "llapi_hsm_import",
        "llapi_hsm_log_error",
        "llapi_hsm_register_event_fifo",
        "llapi_hsm_unregister_event_fifo",
        // §8.6 extras
        "llapi_msg_get_level",
        "llapi_hsm_copytool_get_fd",
        "llapi_open_by_fid",
        "llapi_fd2fid",
        "liblustreapi_initialized",
    ] {
        assert!(
            defined.contains(&sym),
            "{sym} is not exported by {}",
            lib.display()
        );
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("run readelf");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Library soname: [liblustreapi.so.1]"));
}
