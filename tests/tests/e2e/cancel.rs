//! Scenario 9: cancel of a queued request, a running one, and one held by a
//! disconnected agent. In every case the MDT ends with no active request.

use crate::common::*;
use coordinatool_tests::{AgentOptions, StackOptions};

fn slow(id: &str) -> AgentOptions {
    AgentOptions {
        client_id: id.into(),
        extra_args: vec!["--delay-ms".into(), "60000".into()],
        ..AgentOptions::default()
    }
}

/// Queued in the daemon (locked, so never handed out): the MDT's cancel
/// removes it and Lustre is told it is canceled.
#[test]
fn cancel_of_a_queued_request() {
    let mut s = stack();
    s.start_daemon().unwrap();
    assert!(s.ctl(&["lock"]).unwrap().0.success());
    let files = s.make_files("cq", 3, 10).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    wait_waiting(&s, 3).unwrap();
    s.hsm("hsm_cancel", &files[..1], &[]).unwrap();
    wait_waiting(&s, 2).unwrap();
    // The two others are still active on the MDT; the canceled one is not.
    coordinatool_tests::wait_until("the MDT to drop the canceled request", T, || {
        Ok((s.active_requests()?.len() == 2).then_some(()))
    })
    .unwrap();
    assert!(s.ctl(&["unlock"]).unwrap().0.success());
    s.start_agent(AgentOptions {
        client_id: "a".into(),
        ..AgentOptions::default()
    })
    .unwrap();
    archived(&s, &files[1..]).unwrap();
    s.wait_mdt_idle(T).unwrap();
    assert_eq!(s.count_flags(&files[..1], HS_ARCHIVED, 0).unwrap(), 0);
}

/// Running on a mover: the cancel reaches the mover, which stops.
#[test]
fn cancel_of_a_running_request() {
    let mut s = stack();
    s.start_daemon().unwrap();
    s.start_agent(slow("a")).unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("cr", 1, 11).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    coordinatool_tests::wait_until("the request to run", T, || {
        Ok((status(&s)?.actions.iter().map(|a| a.running).sum::<u64>() == 1).then_some(()))
    })
    .unwrap();
    s.hsm("hsm_cancel", &files, &[]).unwrap();
    s.wait_mdt_idle(T).unwrap();
    coordinatool_tests::wait_until("the daemon to forget it", T, || {
        Ok((outstanding(&status(&s)?) == 0).then_some(()))
    })
    .unwrap();
    assert_eq!(s.count_flags(&files, HS_ARCHIVED, 0).unwrap(), 0);
}

/// Held by a mover that went away (within grace): the MDT's cancel is not
/// lost, and the MDT ends with no active request.
#[test]
fn cancel_of_a_request_held_by_a_disconnected_agent() {
    let mut s = stack_with(StackOptions {
        daemon_conf: vec!["client_grace_ms 2000".into()],
        ..StackOptions::default()
    });
    s.start_daemon().unwrap();
    s.start_agent(slow("a")).unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("cd", 1, 12).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    coordinatool_tests::wait_until("the request to run", T, || {
        Ok((status(&s)?.actions.iter().map(|a| a.running).sum::<u64>() == 1).then_some(()))
    })
    .unwrap();
    s.agent("a").unwrap().kill();
    coordinatool_tests::wait_until("a to be disconnected", T, || {
        Ok(status(&s)?
            .agents
            .iter()
            .any(|a| a.client_id == "a" && !a.connected)
            .then_some(()))
    })
    .unwrap();
    s.hsm("hsm_cancel", &files, &[]).unwrap();
    s.wait_mdt_idle(T).unwrap();
    coordinatool_tests::wait_until("the daemon to forget it", T, || {
        Ok((outstanding(&status(&s)?) == 0).then_some(()))
    })
    .unwrap();
}
