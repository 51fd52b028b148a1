//! Cancel and timeout of STARTED requests.

use crate::common::*;

#[test]
fn cancel_of_a_running_archive() {
    let mut env = Env::new("cfs", 1);
    let ct = env.copytool(&["--delay-ms", "60000"]);
    let f = env.file("slow");
    std::fs::write(&f, vec![7u8; 4096]).unwrap();
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap()]);
    let ok = poll_until(DEADLINE, || {
        let a = env.active(0);
        (a.len() == 1 && a[0].contains("canceled=0")).then_some(())
    });
    assert!(ok.is_some(), "request never became active\n{}", env.dump());
    env.lfs_ok(&["hsm_cancel", f.to_str().unwrap()]);
    // The copytool gets a CANCEL item with the same cookie, and its next
    // progress gets -ECANCELED; it ends the request with ECANCELED.
    env.wait_ct(ct, "CANCEL [0x200000400:0x1:0x0]", 1);
    env.wait_ct(ct, "errval=125", 1);
    let line = env
        .ct_lines(ct)
        .into_iter()
        .find(|l| l.contains("ARCHIVE"))
        .unwrap();
    assert!(line.ends_with("rc=0 errval=125 data="), "{line}");
    let cancel_line = env
        .ct_lines(ct)
        .into_iter()
        .find(|l| l.contains("CANCEL"))
        .unwrap();
    let cookie = line
        .split("cookie=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        cancel_line.ends_with(&format!("cookie={cookie}")),
        "{cancel_line}"
    );
    let ok = poll_until(DEADLINE, || env.active(0).is_empty().then_some(()));
    assert!(ok.is_some());
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert!(actions.contains("status=CANCELED"), "{actions}");
    assert!(!env.state(&f).contains("archived"));
}

#[test]
fn cancel_of_a_waiting_request() {
    let env = Env::new("cwfs", 1);
    // No copytool: the request stays WAITING.
    let f = env.file("w");
    std::fs::write(&f, b"w").unwrap();
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap()]);
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert!(actions.contains("status=WAITING"), "{actions}");
    env.lfs_ok(&["hsm_cancel", f.to_str().unwrap()]);
    let actions = env.param(&format!("{}.hsm.actions", env.mdt(0)));
    assert!(actions.contains("status=CANCELED"), "{actions}");
}

#[test]
fn started_request_times_out_and_end_gets_enoent() {
    let mut env = Env::new("tfs", 1);
    let m = env.mdt(0);
    env.set(&format!("{m}.hsm.active_request_timeout"), "1");
    env.set(&format!("{m}.hsm.loop_period"), "1");
    let wait = env._tmp.path().join("go");
    let ct = env.copytool(&["--wait-file", wait.to_str().unwrap()]);
    let f = env.file("t");
    std::fs::write(&f, b"t").unwrap();
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap()]);
    // Becomes active, then the coordinator cancels it silently.
    let ok = poll_until(DEADLINE, || (env.active(0).len() == 1).then_some(()));
    assert!(ok.is_some(), "never active\n{}", env.dump());
    let ok = poll_until(DEADLINE, || env.active(0).is_empty().then_some(()));
    assert!(ok.is_some(), "never timed out\n{}", env.dump());
    let actions = env.param(&format!("{m}.hsm.actions"));
    assert!(actions.contains("status=CANCELED"), "{actions}");
    // The copytool was not told; its begin now gets -ENOENT.
    std::fs::write(&wait, b"").unwrap();
    env.wait_ct(ct, "ARCHIVE", 1);
    let line = env
        .ct_lines(ct)
        .into_iter()
        .find(|l| l.contains("ARCHIVE"))
        .unwrap();
    assert!(line.contains("rc=-2"), "{line}");
}
