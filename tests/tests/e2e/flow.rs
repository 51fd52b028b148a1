//! Scenario 1 (normal flow) and scenario 6 (archive ids).

use crate::common::*;
use coordinatool_tests::{AgentOptions, StackOptions};

/// Archive, release, restore (content compared) and remove of a few hundred
/// files across two agents; the archive folder ends empty and both agents
/// took part.
#[test]
fn normal_flow_across_two_agents() {
    let mut s = stack();
    s.start_daemon().unwrap();
    s.start_agent(agent("a")).unwrap();
    s.start_agent(agent("b")).unwrap();
    wait_agents(&s, 2).unwrap();

    let files = s.make_files("flow", 300, 1).unwrap();
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    archived(&s, &files).unwrap();

    s.hsm("hsm_release", &files, &[]).unwrap();
    assert_eq!(s.count_flags(&files, HS_RELEASED, 0).unwrap(), files.len());
    s.hsm("hsm_restore", &files, &[]).unwrap();
    s.wait_flags(&files, HS_ARCHIVED, HS_RELEASED, T).unwrap();
    for (f, o) in files.iter().zip(&originals) {
        assert_eq!(
            &std::fs::read(f).unwrap(),
            o,
            "{} differs after restore",
            f.display()
        );
    }

    s.hsm("hsm_remove", &files, &[]).unwrap();
    s.wait_flags(&files, 0, HS_ARCHIVED, T).unwrap();
    s.wait_mdt_idle(T).unwrap();
    assert_eq!(
        std::fs::read_dir(&s.hsm_root).unwrap().count(),
        0,
        "archive folder not empty"
    );

    // The shim reports completions to coordinatoold a few milliseconds after
    // Lustre has them: wait for its counts to settle.
    let st = coordinatool_tests::wait_until("coordinatoold to count 900 done", T, || {
        let st = status(&s)?;
        let done: u64 = st.agents.iter().map(|a| a.done.iter().sum::<u64>()).sum();
        Ok((done == 900).then_some(st))
    })
    .unwrap();
    for a in &st.agents {
        assert!(
            a.done[0] > 0,
            "agent {} archived nothing: {st:?}",
            a.client_id
        );
    }
    let done: u64 = st.agents.iter().map(|a| a.done.iter().sum::<u64>()).sum();
    assert_eq!(done, 900, "{st:?}");
    assert_eq!(outstanding(&st), 0);
}

/// An agent registered for other archive ids never gets the work; requests
/// of different ids never share a HAL; the archive id survives a restart.
#[test]
fn archive_ids_route_and_survive_restart() {
    let mut s = stack_with(StackOptions::default());
    s.start_daemon().unwrap();
    let ones = s.make_files("one", 20, 2).unwrap();
    let twos = s.make_files("two", 20, 3).unwrap();
    s.hsm("hsm_archive", &ones, &["--archive", "1"]).unwrap();
    s.hsm("hsm_archive", &twos, &["--archive", "2"]).unwrap();
    wait_waiting(&s, 40).unwrap();

    // Restart with the work queued: the archive ids must come back from the store.
    s.daemon.as_mut().unwrap().stop(T).unwrap();
    s.start_daemon().unwrap();
    wait_waiting(&s, 40).unwrap();

    s.start_agent(AgentOptions {
        client_id: "only2".into(),
        archives: vec![2],
        ..AgentOptions::default()
    })
    .unwrap();
    archived(&s, &twos).unwrap();
    // Nothing of archive 1 went to the archive-2 agent.
    assert_eq!(s.count_flags(&ones, HS_ARCHIVED, 0).unwrap(), 0);
    let st = status(&s).unwrap();
    assert_eq!(
        st.actions.iter().map(|a| a.waiting).sum::<u64>(),
        20,
        "{st:?}"
    );

    s.start_agent(AgentOptions {
        client_id: "only1".into(),
        archives: vec![1],
        ..AgentOptions::default()
    })
    .unwrap();
    archived(&s, &ones).unwrap();
    s.wait_mdt_idle(T).unwrap();
    for (id, files) in [("only1", &ones), ("only2", &twos)] {
        let log = s.agent(id).unwrap().log_text();
        for f in files.iter() {
            let fid = path2fid(&s, f);
            assert!(log.contains(&fid), "{id} did not archive {fid}");
        }
        // Each HAL the copytool received carried a single archive id.
        for line in log.lines().filter(|l| l.contains("archive_id=")) {
            let want = if id == "only1" {
                "archive_id=1"
            } else {
                "archive_id=2"
            };
            assert!(line.contains(want), "{id} got {line}");
        }
    }
}

/// A copytool that registers with O_NONBLOCK and drives recv with poll() on
/// llapi_hsm_copytool_get_fd works under the shim.
#[test]
fn nonblocking_copytool_with_poll() {
    let mut s = stack();
    s.start_daemon().unwrap();
    s.start_agent(AgentOptions {
        client_id: "nb".into(),
        extra_args: vec!["--nonblock".into()],
        ..AgentOptions::default()
    })
    .unwrap();
    wait_agents(&s, 1).unwrap();
    let files = s.make_files("nb", 40, 16).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    archived(&s, &files).unwrap();
    s.hsm("hsm_remove", &files, &[]).unwrap();
    s.wait_flags(&files, 0, HS_ARCHIVED, T).unwrap();
    s.wait_mdt_idle(T).unwrap();
}
