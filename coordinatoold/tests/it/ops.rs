use std::time::Duration;

use coordinatool_protocol::{Queue, QueueItem, Request, Response, WireItem};
use lustre_sim::testing::poll_until;

use crate::harness::*;

fn set_hsm_control(sim: &Sim, value: &str) {
    sim.lfs(
        &[
            "set_param",
            "--mount",
            sim.root.to_str().unwrap(),
            &format!("mdt.{FSNAME}-MDT0000.hsm_control={value}"),
        ],
        &[],
    );
}

#[test]
fn sighup_rereads_verbose_from_the_config_file() {
    let sim = Sim::start();
    std::fs::write(sim.conf_path(), "verbose normal\n").unwrap();
    // No COORDINATOOL_LOG: the level comes from the file.
    let d = sim.daemon_with(&[], |c| {
        c.env_remove("COORDINATOOL_LOG");
    });
    // "connection accepted" is a debug-level line, logged for every connection.
    d.status();
    d.wait_logged("coordinatoold: ready");
    assert!(!d.logged("connection accepted"), "{}", d.guard.dump());

    std::fs::write(sim.conf_path(), "verbose debug\n").unwrap();
    d.guard.signal("HUP").unwrap();
    d.wait_logged("SIGHUP: log level reloaded");
    let ok = poll_until(Duration::from_secs(20), || {
        d.status();
        d.logged("connection accepted").then_some(())
    });
    assert!(
        ok.is_some(),
        "no debug line after SIGHUP\n{}",
        d.guard.dump()
    );

    // A bad value is reported and the level kept; the daemon keeps running.
    std::fs::write(sim.conf_path(), "verbose shouty\n").unwrap();
    d.guard.signal("HUP").unwrap();
    d.wait_logged("SIGHUP: cannot reload the log level");
    d.status();
}

#[test]
fn kernel_shutdown_keeps_queued_work_and_reregisters() {
    let sim = Sim::start();
    let mut d = sim.daemon(&[]);
    let files = sim.files("s", 3);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("3 waiting", |s| waiting(s, "ARCHIVE") == 3);

    set_hsm_control(&sim, "shutdown");
    d.wait_logged("Lustre ended the copytool session");
    // The queued work is kept.
    let s = d.status();
    assert_eq!(waiting(&s, "ARCHIVE"), 3, "{s:#?}");
    // While the coordinator is stopped, registration is refused; the daemon
    // keeps trying.
    d.wait_logged("copytool registration failed; retrying every second");
    assert!(d.guard.is_running());

    set_hsm_control(&sim, "enabled");
    d.wait_logged("registered as copytool again");

    // New requests flow again, and the old ones complete.
    let more = sim.files("n", 2);
    sim.lfs(&["hsm_archive", "--archive", "1"], &more);
    d.wait_status("5 waiting", |s| waiting(s, "ARCHIVE") == 5);
    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    a.work(5);
    d.wait_status("5 done", |s| done(s, "ARCHIVE") == 5);
    sim.wait_active_requests_empty(&d);
    for f in files.iter().chain(&more) {
        let st = sim.lfs(&["hsm_state"], std::slice::from_ref(f));
        assert!(st.contains("archived"), "{st}");
    }
}

#[test]
fn eshutdown_when_the_simulator_stops_then_registration_again() {
    let mut sim = Sim::start();
    let d = sim.daemon(&[]);
    let files = sim.files("u", 2);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("2 waiting", |s| waiting(s, "ARCHIVE") == 2);

    // lustre-simd sends KUC_MSG_SHUTDOWN to every copytool when it stops.
    sim._simd.signal("TERM").unwrap();
    assert!(
        sim._simd.wait_timeout(Duration::from_secs(20)).is_some(),
        "lustre-simd did not stop"
    );
    d.wait_logged("os error 108");
    d.wait_logged("Lustre ended the copytool session");
    assert_eq!(waiting(&d.status(), "ARCHIVE"), 2);

    // The "MDT" comes back (its state was saved): the daemon registers again
    // and work flows.
    sim._simd = lustre_sim::testing::start_simd(&sim.bins.simd, &sim.root, FSNAME, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    d.wait_logged("registered as copytool again");
    let more = sim.files("v", 1);
    sim.lfs(&["hsm_archive", "--archive", "1"], &more);
    d.wait_status("3 waiting", |s| waiting(s, "ARCHIVE") == 3);
    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    a.work(3);
    sim.wait_active_requests_empty(&d);
}

#[test]
fn waiting_requests_are_reported_timed_out_before_the_mdt_timeout() {
    let sim = Sim::start();
    // The MDT's active_request_timeout is 1 s: requests still waiting after
    // 900 ms are failed with ETIMEDOUT.
    let d = sim.daemon(&["--mdt-request-timeout", "1"]);
    let files = sim.files("e", 2);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    let s = d.wait_status("2 failed", |s| {
        s.actions
            .iter()
            .any(|a| a.action == "ARCHIVE" && a.failed == 2)
    });
    assert_eq!(waiting(&s, "ARCHIVE"), 0);
    d.wait_logged("reported to Lustre as failed (ETIMEDOUT)");
    let warn = d
        .guard
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("ETIMEDOUT"))
        .unwrap();
    for field in [
        "cookie=",
        "fid=",
        "action=ARCHIVE",
        "archive_id=1",
        "age_ms=",
    ] {
        assert!(warn.contains(field), "{field} missing: {warn}");
    }
    // Lustre got the failure: nothing is active any more, files not archived.
    sim.wait_active_requests_empty(&d);
    for f in &files {
        let st = sim.lfs(&["hsm_state"], std::slice::from_ref(f));
        assert!(!st.contains("archived"), "{st}");
    }
    // Gone from the store too: after a clean stop, a restart holds nothing.
    let mut d = d;
    d.guard.signal("TERM").unwrap();
    let st = d
        .guard
        .wait_timeout(Duration::from_secs(20))
        .expect("exits");
    assert!(st.success(), "{}", d.guard.dump());
    let d = sim.daemon(&[]);
    assert!(d.status().actions.iter().all(|a| a.waiting == 0));
}

#[test]
fn queue_rejects_archive_ids_the_daemon_did_not_register_for() {
    let sim = Sim::start();
    // The harness registers for archive 1 only.
    let d = sim.daemon(&[]);
    let item = archive_item(4242, 0xbeef);
    let r = d
        .admin()
        .call(Request::Queue(Queue {
            fsname: Some(FSNAME.into()),
            items: vec![
                QueueItem {
                    item: item.clone(),
                    archive_id: 2,
                    flags: 0,
                },
                QueueItem {
                    item: WireItem {
                        cookie: 0xbef0,
                        ..item
                    },
                    archive_id: 1,
                    flags: 0,
                },
            ],
        }))
        .unwrap();
    match r {
        Response::Queue(q) => {
            assert_eq!(q.enqueued, 1);
            assert_eq!(q.rejected.len(), 1);
            assert_eq!(q.rejected[0].index, 0);
            assert!(
                q.rejected[0].reason.contains("archive id 2"),
                "{}",
                q.rejected[0].reason
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(waiting(&d.status(), "ARCHIVE"), 1);
}
