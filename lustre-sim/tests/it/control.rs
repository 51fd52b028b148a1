//! Data version check on ARCHIVE and `hsm_control` purge/shutdown/enabled.

use std::path::Path;

use crate::common::*;

/// Whether process `pid` holds `file` open.
fn holds_open(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file))
        })
        .unwrap_or(false)
}

#[test]
fn archive_of_a_file_written_during_the_copy_is_ebusy() {
    let mut env = Env::new("busyfs", 1);
    let ct = env.copytool(&["--delay-ms", "1500"]);
    let pid = env.copytools[ct].pid().unwrap();
    // g is archived once, then changed (dirty).
    let g = env.file("g");
    std::fs::write(&g, vec![1u8; 3000]).unwrap();
    env.lfs_ok(&["hsm_archive", g.to_str().unwrap()]);
    env.wait_state(std::slice::from_ref(&g), "exists archived");
    std::fs::write(&g, vec![2u8; 5000]).unwrap();
    assert!(env.state(&g).contains("dirty"), "{}", env.state(&g));
    // f was never archived.
    let f = env.file("f");
    std::fs::write(&f, vec![3u8; 4000]).unwrap();
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap(), g.to_str().unwrap()]);
    // Once the copytool has begun (it holds the source open, then waits
    // 1.5 s before copying), both files are written to.
    let begun = poll_until(DEADLINE, || {
        (holds_open(pid, &f) && holds_open(pid, &g)).then_some(())
    });
    assert!(begun.is_some(), "copies never began\n{}", env.dump());
    for p in [&f, &g] {
        let mut data = std::fs::read(p).unwrap();
        data.extend_from_slice(b"more");
        std::fs::write(p, data).unwrap();
    }
    env.wait_ct(ct, "lhsmtool-sim: ARCHIVE [", 3);
    let busy: Vec<String> = env
        .ct_lines(ct)
        .into_iter()
        .filter(|l| l.starts_with("lhsmtool-sim: ARCHIVE [") && l.contains(" rc=-16 errval=0 "))
        .collect();
    assert_eq!(busy.len(), 2, "both ends get -EBUSY\n{}", env.dump());
    let sf = env.state(&f);
    assert!(!sf.contains("archived"), "{sf}");
    let sg = env.state(&g);
    assert!(sg.contains("dirty") && sg.contains("archived"), "{sg}");
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert_eq!(actions.matches("status=FAILED").count(), 2, "{actions}");
}

#[test]
fn purge_cancels_every_request() {
    let mut env = Env::new("purgefs", 1);
    let m = env.mdt(0);
    let ct = env.copytool(&["--delay-ms", "60000", "--fanout", "4"]);
    let files = make_files(&env.root, "p", 4);
    let mut args = vec!["hsm_archive"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    // max_requests is 3: three STARTED, one WAITING.
    let ok = poll_until(DEADLINE, || (env.active(0).len() == 3).then_some(()));
    assert!(ok.is_some(), "never 3 active\n{}", env.dump());
    env.set(&format!("{m}.hsm_control"), "purge");
    env.wait_ct(ct, "lhsmtool-sim: CANCEL [", 3);
    // The copytool's next progress gets -ECANCELED: it ends with ECANCELED.
    env.wait_ct(ct, "errval=125", 3);
    let ok = poll_until(DEADLINE, || env.active(0).is_empty().then_some(()));
    assert!(ok.is_some(), "{}", env.dump());
    let actions = env.param(&format!("{m}.hsm.actions"));
    assert_eq!(actions.matches("status=CANCELED").count(), 4, "{actions}");
    assert!(!actions.contains("WAITING") && !actions.contains("STARTED"));
    assert_eq!(env.param(&format!("{m}.hsm_control")).trim(), "enabled");
    assert!(!env.state(&files[0]).contains("archived"));
}

#[test]
fn shutdown_refuses_registration_until_enabled() {
    let mut env = Env::new("stopfs", 1);
    let m = env.mdt(0);
    env.set(&format!("{m}.hsm_control"), "shutdown");
    assert_eq!(env.param(&format!("{m}.hsm_control")).trim(), "stopped");
    let mut refused = env.spawn_copytool(&[]);
    let status = refused
        .wait_timeout(DEADLINE)
        .expect("the copytool must give up");
    assert_eq!(status.code(), Some(1));
    let err = refused.dump();
    assert!(
        err.contains("cannot register") && err.contains("No such device or address"),
        "registration must fail with ENXIO: {err}"
    );
    // Requests are refused too while stopped.
    let f = env.file("s");
    std::fs::write(&f, b"s").unwrap();
    let out = env.lfs(&["hsm_archive", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Resource temporarily unavailable"));

    env.set(&format!("{m}.hsm_control"), "enabled");
    let ct = env.copytool(&[]);
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap()]);
    env.wait_ct(ct, "lhsmtool-sim: ARCHIVE [", 1);
    env.wait_state(&[f], "exists archived");
}
