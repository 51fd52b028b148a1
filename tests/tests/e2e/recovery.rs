//! Scenario 10: disaster recovery. The state folder is lost;
//! `coordinatool-ctl import` fed from the MDT's `active_requests` re-queues
//! the work and it completes.

use crate::common::*;

#[test]
fn state_folder_lost_then_import_from_active_requests() {
    let mut s = stack();
    s.start_daemon().unwrap();
    let files = s.make_files("dr", 30, 13).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    wait_waiting(&s, 30).unwrap();
    s.daemon.as_mut().unwrap().kill();
    std::fs::remove_dir_all(&s.state_dir).unwrap();
    std::fs::create_dir_all(&s.state_dir).unwrap();
    s.start_daemon().unwrap();
    let st = status(&s).unwrap();
    assert_eq!(
        outstanding(&st),
        0,
        "the store was supposed to be gone: {st:?}"
    );

    let text = s
        .get_param(&format!("{}.active_requests", s.mdt_hsm(0)))
        .unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("fid=")).count(), 30);
    let input = s.dir.path().join("active_requests.txt");
    std::fs::write(&input, format!("{}.active_requests=\n{text}", s.mdt_hsm(0))).unwrap();
    let (st, out, err) = s
        .ctl(&["import", "--file", &input.to_string_lossy()])
        .unwrap();
    assert!(st.success(), "import failed: {out}{err}");
    assert!(
        out.contains("30"),
        "import summary should count 30 enqueued: {out}"
    );
    // Importing twice only skips.
    let (st, out, err) = s
        .ctl(&["import", "--file", &input.to_string_lossy()])
        .unwrap();
    assert!(st.success(), "{out}{err}");
    wait_waiting(&s, 30).unwrap();

    s.start_agent(agent("a")).unwrap();
    archived(&s, &files).unwrap();
    s.wait_mdt_idle(T).unwrap();
}
