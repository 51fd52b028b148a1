//! An unmodified-style C copytool under `LD_PRELOAD`: non-blocking `recv`,
//! `poll` on `llapi_hsm_copytool_get_fd`, a HAL read by C, begin failure
//! reported as a done, unregister. The "real" liblustreapi is a small C stub
//! (`tests/c/stub_lustreapi.c`) that checks the handle's `mnt_fd` and
//! `open_by_fid_fd` at Lustre's offsets.

mod common;

use common::{Event, FakeDaemon, Lines, T, batch, finish_ok, item, shimmed_copytool};

#[test]
fn c_copytool_polls_get_fd_and_receives_a_hal() {
    let tmp = tempfile::tempdir().unwrap();
    let d = FakeDaemon::start();
    let conf = "# test\nverbose debug\n";
    let mut child = shimmed_copytool(tmp.path(), "poll_copytool", conf, d.port, "c-mover")
        .arg("2")
        .env("COORDINATOOL_HAL_SIZE", "8K")
        .env("COORDINATOOL_PRELOAD_LOG", "debug")
        .spawn()
        .unwrap();
    let ev = d.wait_for("ehlo and recv from the C copytool", T, |e| {
        e.iter().any(|x| matches!(x, Event::Recv(..)))
    });
    let Event::Ehlo(_, ehlo) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(ehlo.client_id, "c-mover");
    assert_eq!(ehlo.archive_ids, vec![2]);
    // Found with the real llapi_search_fsname (the stub's).
    assert_eq!(ehlo.fsname.as_deref(), Some("stubfs"));
    let Event::Recv(_, recv) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(recv.max_bytes, 8192);

    // The copytool's lines, as they come: the batch is pushed only once its
    // non-blocking recv has found nothing (on a loaded machine the recv can
    // come after the shim's first Recv reached the daemon).
    let mut lines = Lines::of(&mut child);
    lines.wait_for("get_fd_ok 1");

    let it = item(20, 4242, 5);
    d.push_batch(batch(2, vec![it.clone(), item(20, 4243, 6)]));
    d.wait_for("both dones", T, |e| {
        e.iter().filter(|x| matches!(x, Event::Done(..))).count() >= 2
    });
    let (stdout, stderr) = finish_ok(child, lines);
    let expect = [
        "register 0",
        "recv_before -11",
        "get_fd_ok 1",
        "poll 1 1",
        "recv 0",
        "hal_count 2",
        "hal_archive_id 2",
        "hal_fsname testfs",
        "aligned 1",
        "first_cookie 4242",
        "poll_after 0",
        "stub begin 4242 0",
        "begin1 0",
        "stub begin 4243 -2",
        "begin2 -2",
        "stub end 4242 0",
        "end1 0 1",
        "end_again -22",
        "unregister 0 1",
        "unregister_again -22",
    ];
    for line in expect {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    let done = d.dones().into_iter().find(|x| x.cookie == 4242).unwrap();
    assert_eq!((done.status, done.dfid), (0, it.dfid));
    // The failed begin is reported with its errno (ENOENT).
    let failed = d.dones().into_iter().find(|x| x.cookie == 4243).unwrap();
    assert_eq!(failed.status, 2);
    // Exactly two dones: ending an already-ended action is a no-op.
    assert_eq!(d.dones().len(), 2, "{:?}", d.dones());
    assert!(stderr.contains("coordinatool-preload["), "{stderr}");
}
