//! Scenario 5: agents restarted within grace, and agents gone for good.

use crate::common::*;
use coordinatool_tests::{AgentOptions, StackOptions};

fn opts(grace_ms: u32) -> StackOptions {
    StackOptions {
        daemon_conf: vec![format!("client_grace_ms {grace_ms}")],
        ..StackOptions::default()
    }
}

fn held(id: &str, delay_ms: u32) -> AgentOptions {
    AgentOptions {
        client_id: id.into(),
        extra_args: vec!["--delay-ms".into(), delay_ms.to_string()],
        env: vec![("COORDINATOOL_MAX_ARCHIVE".into(), "5".into())],
        ..AgentOptions::default()
    }
}

/// A mover killed and restarted under the same id within grace: the work it
/// held is not given to anyone else meanwhile, and everything completes.
#[test]
fn agent_restarted_within_grace_gets_its_work_back() {
    let mut s = stack_with(opts(60_000));
    s.start_daemon().unwrap();
    s.start_agent(held("a", 60_000)).unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("g", 5, 7).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    let st = coordinatool_tests::wait_until("agent a to hold 5 requests", T, || {
        let st = status(&s)?;
        Ok(st
            .agents
            .iter()
            .any(|a| a.client_id == "a" && a.running[0] == 5)
            .then_some(st))
    })
    .unwrap();
    assert_eq!(outstanding(&st), 5);
    s.agent("a").unwrap().kill();
    // A second mover connects meanwhile: it must not get a's work in grace.
    s.start_agent(held("b", 0)).unwrap();
    let st = coordinatool_tests::wait_until("a to show as disconnected", T, || {
        let st = status(&s)?;
        Ok(st
            .agents
            .iter()
            .any(|a| a.client_id == "a" && !a.connected && a.grace_remaining_ms.is_some())
            .then_some(st))
    })
    .unwrap();
    let b = st.agents.iter().find(|a| a.client_id == "b");
    assert!(b.is_none_or(|b| b.running == [0, 0, 0]), "{st:?}");
    s.start_agent(held("a", 0)).unwrap();
    archived(&s, &files).unwrap();
    s.wait_mdt_idle(T).unwrap();
    // The shim reports completions to coordinatoold a few milliseconds after
    // Lustre has them.
    done_by(&s, "a", 5);
}

/// Waits until agent `id` has `n` archives done, as coordinatoold counts.
fn done_by(s: &coordinatool_tests::Stack, id: &str, n: u64) {
    coordinatool_tests::wait_until(&format!("agent {id} to have {n} archives done"), T, || {
        let st = status(s)?;
        Ok(st
            .agents
            .iter()
            .any(|a| a.client_id == id && a.done[0] == n)
            .then_some(()))
    })
    .unwrap();
}

/// A mover gone for good: after grace its work moves to another mover.
#[test]
fn agent_gone_for_good_loses_its_work_after_grace() {
    let mut s = stack_with(opts(1_500));
    s.start_daemon().unwrap();
    s.start_agent(held("a", 60_000)).unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("gone", 5, 8).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    coordinatool_tests::wait_until("agent a to hold 5 requests", T, || {
        let st = status(&s)?;
        Ok(st
            .agents
            .iter()
            .any(|a| a.client_id == "a" && a.running[0] == 5)
            .then_some(()))
    })
    .unwrap();
    s.agent("a").unwrap().kill();
    s.start_agent(held("b", 0)).unwrap();
    archived(&s, &files).unwrap();
    s.wait_mdt_idle(T).unwrap();
    done_by(&s, "b", 5);
}
