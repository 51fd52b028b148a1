//! Dispatch rules: max_requests, per-MDT cookies, failures.

use crate::common::*;

#[test]
fn max_requests_is_respected() {
    let mut env = Env::new("mfs", 1);
    let m = env.mdt(0);
    env.set(&format!("{m}.hsm.max_requests"), "2");
    let out = env.lfs(&["set_param", &format!("{m}.hsm.max_requests=0")]);
    assert!(!out.status.success(), "max_requests=0 must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"));
    let ct = env.copytool(&["--delay-ms", "150", "--fanout", "8"]);
    let files = make_files(&env.root, "m", 8);
    let mut args = vec!["hsm_archive"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    let mut max_seen = 0;
    let done = poll_until(DEADLINE, || {
        let n = env.active(0).len();
        max_seen = max_seen.max(n);
        assert!(n <= 2, "{n} active requests with max_requests=2");
        (env.ct_lines(ct)
            .iter()
            .filter(|l| l.contains("ARCHIVE"))
            .count()
            == 8)
            .then_some(())
    });
    assert!(done.is_some(), "archives did not finish\n{}", env.dump());
    assert_eq!(max_seen, 2, "the slots were used");
    env.wait_state(&files, "exists archived");
}

#[test]
fn two_mdts_hand_out_the_same_cookie() {
    let mut env = Env::new("dual", 2);
    let wait = env._tmp.path().join("never");
    env.copytool(&["--wait-file", wait.to_str().unwrap()]);
    let a = env.file("a");
    let b = env.file("b");
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&b, b"b").unwrap();
    assert_eq!(
        env.lfs_ok(&["path2fid", a.to_str().unwrap()]).trim(),
        "[0x200000400:0x1:0x0]"
    );
    assert_eq!(
        env.lfs_ok(&["path2fid", b.to_str().unwrap()]).trim(),
        "[0x200040400:0x1:0x0]"
    );
    env.lfs_ok(&["hsm_archive", a.to_str().unwrap(), b.to_str().unwrap()]);
    let ok = poll_until(DEADLINE, || {
        let all = env.param("mdt.*.hsm.active_requests");
        (all.lines().count() == 2).then_some(all)
    });
    let all = ok.unwrap_or_else(|| panic!("not both active\n{}", env.dump()));
    let cookies: Vec<&str> = all
        .lines()
        .map(|l| {
            l.split("compound/cookie=0x0/")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(cookies[0], cookies[1], "cookies are per MDT: {all}");
    assert_eq!(env.active(0).len(), 1);
    assert_eq!(env.active(1).len(), 1);
    // Named output shows each MDT.
    let named = env.lfs_ok(&["get_param", "mdt.*.hsm.active_requests"]);
    assert!(
        named.contains("mdt.dual-MDT0000.hsm.active_requests=\n"),
        "{named}"
    );
    assert!(
        named.contains("mdt.dual-MDT0001.hsm.active_requests=\n"),
        "{named}"
    );
}

#[test]
fn fail_every_and_agents_counters() {
    let mut env = Env::new("ffs", 1);
    let ct = env.copytool(&["--fail-every", "2", "--fanout", "1"]);
    let files = make_files(&env.root, "x", 4);
    let mut args = vec!["hsm_archive"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    env.wait_ct(ct, "ARCHIVE", 4);
    let failed = env
        .ct_lines(ct)
        .iter()
        .filter(|l| l.contains("errval=5"))
        .count();
    assert_eq!(failed, 2);
    let agents = env.param(&format!("{}.hsm.agents", env.mdt(0)));
    assert!(
        agents.contains("archive_id=ANY requests=[current:0 ok:2 errors:2]"),
        "{agents}"
    );
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert_eq!(actions.matches("status=FAILED").count(), 2, "{actions}");
}
