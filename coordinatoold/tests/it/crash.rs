use std::time::Duration;

use crate::harness::*;

#[test]
fn sigkill_with_queued_and_running_requests_then_everything_completes_once() {
    let sim = Sim::start();
    let mut d = sim.daemon(&["--client-grace", "60000"]);
    let files = sim.files("k", 6);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("6 waiting", |s| waiting(s, "ARCHIVE") == 6);

    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    let running_items = a.recv(Some(2), 2000);
    assert_eq!(running_items.len(), 2);
    // The reply came after the assignment was flushed: kill now.
    d.kill9();
    drop(a.client);

    let d = sim.daemon(&["--client-grace", "60000"]);
    let s = d.status();
    assert_eq!(waiting(&s, "ARCHIVE"), 4, "{s:#?}");
    assert_eq!(running(&s, "ARCHIVE"), 2, "{s:#?}");
    let agent = s
        .agents
        .iter()
        .find(|x| x.client_id == "mover1")
        .expect("held for mover1");
    assert!(!agent.connected);
    assert!(agent.grace_remaining_ms.is_some());

    // A second instance on the same state directory is refused.
    let mut second = sim.daemon_raw(&[]);
    let st = second
        .wait_timeout(Duration::from_secs(20))
        .expect("second instance exits");
    assert_eq!(st.code(), Some(75), "{}", second.dump());

    // The mover reconnects with what it still runs: it keeps both.
    let seen = a.seen.clone();
    let ct = a.ct;
    let announced = running_items
        .iter()
        .map(|it| coordinatool_protocol::QueueItem {
            item: it.clone(),
            archive_id: 1,
            flags: 0,
        })
        .collect();
    let mut a = Agent::connect(&sim, &d, "mover1", announced).unwrap();
    drop(ct);
    a.seen = seen;
    assert_eq!(a.client.server().running_kept, 2);
    for it in &running_items {
        a.complete(it);
    }
    a.work(4);
    assert_eq!(a.seen.len(), 6);
    let s = d.wait_status("6 done", |s| done(s, "ARCHIVE") == 6);
    assert_eq!(waiting(&s, "ARCHIVE") + running(&s, "ARCHIVE"), 0);
    sim.wait_active_requests_empty(&d);
}

#[test]
fn sigterm_stops_cleanly_and_the_store_survives() {
    let sim = Sim::start();
    let mut d = sim.daemon(&[]);
    let files = sim.files("t", 3);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("3 waiting", |s| waiting(s, "ARCHIVE") == 3);
    d.guard.signal("TERM").unwrap();
    let st = d
        .guard
        .wait_timeout(Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(st.success(), "{}", d.guard.dump());
    let d = sim.daemon(&[]);
    let s = d.status();
    assert_eq!(waiting(&s, "ARCHIVE"), 3, "{s:#?}");
    let mut a = Agent::connect(&sim, &d, "m", vec![]).unwrap();
    a.work(3);
    sim.wait_active_requests_empty(&d);
}

#[test]
fn store_checkpoints_while_working_and_a_sigkill_replays_the_queue() {
    let sim = Sim::start();
    // A tiny threshold: the store takes a new checkpoint every few steps.
    let args = ["--client-grace", "60000", "--checkpoint-min-wal", "2048"];
    let mut d = sim.daemon(&args);
    // Under the sim's default max_requests (100): the MDT hands all out.
    let files = sim.files("c", 90);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("90 waiting", |s| waiting(s, "ARCHIVE") == 90);
    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    let first = a.recv(Some(40), 2000);
    assert_eq!(first.len(), 40);
    for it in &first {
        a.complete(it);
    }
    // This assignment is flushed before the reply, with the deletions of
    // the 40 done before it.
    let held = a.recv(Some(5), 2000);
    assert_eq!(held.len(), 5);
    d.wait_logged("checkpoint in force");
    d.kill9();
    drop(a.client);

    let d = sim.daemon(&args);
    let s = d.status();
    assert_eq!(waiting(&s, "ARCHIVE"), 45, "{s:#?}");
    assert_eq!(running(&s, "ARCHIVE"), 5, "{s:#?}");
    assert!(!d.logged("corrupt"), "{}", d.guard.dump());
    // Another mover drains the rest; the 5 stay held for mover1.
    let mut b = Agent::connect(&sim, &d, "mover2", vec![]).unwrap();
    b.work(45);
    let s = d.wait_status("45 more done", |s| done(s, "ARCHIVE") == 45);
    assert_eq!(waiting(&s, "ARCHIVE"), 0, "{s:#?}");
    assert_eq!(running(&s, "ARCHIVE"), 5, "{s:#?}");
}
