use crate::harness::*;

#[test]
fn archives_flow_from_the_mdt_to_an_agent_and_back() {
    let sim = Sim::start();
    let d = sim.daemon(&[]);
    let files = sim.files("f", 5);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("5 archives waiting", |s| waiting(s, "ARCHIVE") == 5);
    assert!(!sim.active_requests().trim().is_empty());

    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    // Limits are honoured: at most 2 at a time.
    let first = a.recv(Some(2), 2000);
    assert_eq!(first.len(), 2);
    let s = d.status();
    assert_eq!(running(&s, "ARCHIVE"), 2);
    assert_eq!(waiting(&s, "ARCHIVE"), 3);
    for it in &first {
        a.complete(it);
    }
    a.work(3);
    let s = d.wait_status("5 done", |s| done(s, "ARCHIVE") == 5);
    assert_eq!(waiting(&s, "ARCHIVE") + running(&s, "ARCHIVE"), 0);
    sim.wait_active_requests_empty(&d);
    for f in &files {
        let st = sim.lfs(&["hsm_state"], std::slice::from_ref(f));
        assert!(st.contains("archived"), "{st}");
    }
}

#[test]
fn cancel_of_a_queued_request_is_reported_to_lustre() {
    let sim = Sim::start();
    let d = sim.daemon(&[]);
    let files = sim.files("c", 2);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("2 waiting", |s| waiting(s, "ARCHIVE") == 2);
    sim.lfs(&["hsm_cancel"], &files[..1]);
    let s = d.wait_status("1 canceled", |s| {
        s.actions
            .iter()
            .any(|a| a.action == "ARCHIVE" && a.canceled == 1)
    });
    assert_eq!(waiting(&s, "ARCHIVE"), 1);
    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    a.work(1);
    sim.wait_active_requests_empty(&d);
}

#[test]
fn cancel_of_a_running_request_is_forwarded_to_its_agent() {
    use lustre_bindings::action::flags::HP_FLAG_COMPLETED;
    let sim = Sim::start();
    let d = sim.daemon(&[]);
    let files = sim.files("r", 1);
    sim.lfs(&["hsm_archive", "--archive", "1"], &files);
    d.wait_status("1 waiting", |s| waiting(s, "ARCHIVE") == 1);
    let mut a = Agent::connect(&sim, &d, "mover1", vec![]).unwrap();
    let items = a.recv(None, 2000);
    assert_eq!(items.len(), 1);
    let item: lustre_bindings::ActionItem = items[0].clone().into();
    let ca = a.ct.action_begin(&item, -1, 0, false).unwrap();
    sim.lfs(&["hsm_cancel"], &files);
    let cancel = lustre_sim::testing::poll_until(std::time::Duration::from_secs(20), || {
        let got = a.recv(None, 100);
        got.into_iter().find(|i| i.action == 23)
    })
    .unwrap_or_else(|| panic!("no cancel delivered\n{}", d.guard.dump()));
    assert_eq!(cancel.cookie, items[0].cookie);
    assert_eq!(cancel.dfid, items[0].dfid);
    ca.end(item.extent, HP_FLAG_COMPLETED, 125).unwrap();
    a.client
        .call(coordinatool_protocol::Request::Done(
            coordinatool_protocol::Done {
                cookie: items[0].cookie,
                dfid: items[0].dfid,
                status: 125,
            },
        ))
        .unwrap();
    let s = d.wait_status("canceled", |s| {
        s.actions
            .iter()
            .any(|a| a.action == "ARCHIVE" && a.canceled == 1 && a.running == 0)
    });
    assert_eq!(s.pending_cancels, 0);
    sim.wait_active_requests_empty(&d);
}
