//! Scenario 8: lock, unlock and drain (with --quit) while work is running.

use crate::common::*;
use coordinatool_tests::AgentOptions;

#[test]
fn lock_unlock_and_drain_quit() {
    let mut s = stack();
    s.start_daemon().unwrap();
    let (st, out, err) = s.ctl(&["lock"]).unwrap();
    assert!(st.success(), "{out}{err}");
    s.start_agent(AgentOptions {
        client_id: "a".into(),
        extra_args: vec!["--delay-ms".into(), "200".into()],
        ..AgentOptions::default()
    })
    .unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("l", 10, 9).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    // Locked: everything waits.
    let st = wait_waiting(&s, 10).unwrap();
    assert!(st.locked);
    let (st, out, err) = s.ctl(&["unlock"]).unwrap();
    assert!(st.success(), "{out}{err}");
    coordinatool_tests::wait_until("work to start", T, || {
        let st = status(&s)?;
        Ok((st.actions.iter().map(|a| a.running).sum::<u64>() > 0).then_some(()))
    })
    .unwrap();
    // Drain while work runs, then quit.
    let (st, out, err) = s.ctl(&["drain", "--timeout", "120", "--quit"]).unwrap();
    assert!(st.success(), "drain failed: {out}{err}");
    let exit = s.daemon.as_mut().unwrap().wait_exit(T).unwrap();
    assert!(exit.success(), "daemon exit after drain --quit: {exit}");
    // Nothing was running when it quit; what was never handed out is still queued.
    let archived_now = s.count_flags(&files, HS_ARCHIVED, 0).unwrap();
    s.start_daemon().unwrap();
    let st = status(&s).unwrap();
    assert_eq!(
        st.actions
            .iter()
            .map(|a| a.waiting + a.running)
            .sum::<u64>() as usize,
        files.len() - archived_now,
        "{st:?}"
    );
    let (st, out, err) = s.ctl(&["unlock"]).unwrap();
    assert!(st.success(), "{out}{err}");
    archived(&s, &files).unwrap();
}
