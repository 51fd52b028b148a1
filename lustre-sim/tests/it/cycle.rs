//! Full HSM cycles: archive, release, restore, remove; restart; non-blocking recv.

use crate::common::*;

#[test]
fn archive_release_restore_remove_100_files() {
    let mut env = Env::new("testfs", 1);
    env.set(&format!("{}.hsm.max_requests", env.mdt(0)), "16");
    let ct = env.copytool(&["--fanout", "8"]);
    let files = make_files(&env.root, "f", 100);
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    let mut args = vec!["hsm_archive"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    env.wait_state(&files, "exists archived, archive_id:1");
    env.wait_ct(ct, "ARCHIVE", 100);
    assert!(
        env.ct_lines(ct)
            .iter()
            .filter(|l| l.contains("ARCHIVE"))
            .all(|l| l.ends_with("rc=0 errval=0 data="))
    );
    // The archive holds the same bytes.
    for (f, data) in files.iter().zip(&originals) {
        let fid = env.lfs_ok(&["path2fid", f.to_str().unwrap()]);
        let copy = env
            .hsm
            .join(fid.trim().trim_start_matches('[').trim_end_matches(']'));
        assert_eq!(
            &std::fs::read(&copy).unwrap(),
            data,
            "archive copy of {}",
            f.display()
        );
    }

    let mut args = vec!["hsm_release"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    for (f, data) in files.iter().zip(&originals) {
        assert!(
            env.state(f)
                .contains("(0x0000000d) released exists archived"),
            "{}",
            env.state(f)
        );
        let now = std::fs::read(f).unwrap();
        assert_eq!(now.len(), data.len(), "release keeps the size");
        assert!(now.iter().all(|&b| b == 0), "release drops the data");
    }
    // Releasing a dirty file is refused.
    let extra = env.file("dirty");
    std::fs::write(&extra, b"x").unwrap();
    let out = env.lfs(&["hsm_release", extra.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));

    let mut args = vec!["hsm_restore"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    env.wait_ct(ct, "RESTORE", 100);
    for (f, data) in files.iter().zip(&originals) {
        let ok = poll_until(DEADLINE, || {
            (!env.state(f).contains("released")).then_some(())
        });
        assert!(ok.is_some(), "{} still released", f.display());
        assert_eq!(
            &std::fs::read(f).unwrap(),
            data,
            "restored content of {}",
            f.display()
        );
        assert_eq!(
            env.state(f),
            format!(
                "{}: (0x00000009) exists archived, archive_id:1",
                f.display()
            )
        );
    }
    // FIDs are unchanged by the restore (the volatile file was swapped in).
    let fid0 = env.lfs_ok(&["path2fid", files[0].to_str().unwrap()]);
    assert_eq!(fid0.trim(), "[0x200000400:0x1:0x0]");

    // Modified after archive: dirty.
    std::fs::write(&files[1], b"changed").unwrap();
    assert!(
        env.state(&files[1]).contains("dirty"),
        "{}",
        env.state(&files[1])
    );

    let mut args = vec!["hsm_remove"];
    args.extend(strs(&files[..10]));
    env.lfs_ok(&args);
    env.wait_ct(ct, "REMOVE", 10);
    for f in &files[..10] {
        let ok = poll_until(DEADLINE, || {
            (!env.state(f).contains("archived")).then_some(())
        });
        assert!(ok.is_some(), "{} still archived", f.display());
        let fid = env.lfs_ok(&["path2fid", f.to_str().unwrap()]);
        assert!(
            !env.hsm
                .join(fid.trim().trim_start_matches('[').trim_end_matches(']'))
                .exists()
        );
    }
    assert!(env.active(0).is_empty());
}

#[test]
fn state_survives_restart_and_copytools_get_shutdown() {
    let mut env = Env::new("fs2", 1);
    let ct = env.copytool(&[]);
    let f = env.file("keep");
    std::fs::write(&f, b"persistent").unwrap();
    let fid = env.lfs_ok(&["path2fid", f.to_str().unwrap()]);
    env.lfs_ok(&["hsm_archive", f.to_str().unwrap()]);
    env.wait_state(std::slice::from_ref(&f), "exists archived");
    env.set(&format!("{}.hsm.max_requests", env.mdt(0)), "5");

    // SIGTERM: every agent gets the KUC shutdown message (-ESHUTDOWN).
    env.simd.as_ref().unwrap().signal("TERM").unwrap();
    let st = env
        .simd
        .as_mut()
        .unwrap()
        .wait_timeout(DEADLINE)
        .expect("simd exits");
    assert!(st.success(), "simd exit status {st:?}");
    env.wait_ct(ct, "shutdown message received", 1);
    let st = env.copytools[ct]
        .wait_timeout(DEADLINE)
        .expect("copytool exits");
    assert!(st.success());

    env.start_simd();
    assert_eq!(env.lfs_ok(&["path2fid", f.to_str().unwrap()]), fid);
    assert!(env.state(&f).contains("exists archived, archive_id:1"));
    assert_eq!(
        env.param(&format!("{}.hsm.max_requests", env.mdt(0)))
            .trim(),
        "5"
    );
    // A restarted copytool keeps working.
    let ct2 = env.copytool(&[]);
    env.lfs_ok(&["hsm_release", f.to_str().unwrap()]);
    env.lfs_ok(&["hsm_restore", f.to_str().unwrap()]);
    env.wait_ct(ct2, "RESTORE", 1);
    env.wait_state(std::slice::from_ref(&f), "(0x00000009)");
    assert_eq!(std::fs::read(&f).unwrap(), b"persistent");
}

#[test]
fn nonblocking_copytool() {
    let mut env = Env::new("nbfs", 1);
    let ct = env.copytool(&["--nonblock", "--fanout", "2"]);
    let files = make_files(&env.root, "nb", 12);
    let mut args = vec!["hsm_archive"];
    args.extend(strs(&files));
    env.lfs_ok(&args);
    env.wait_ct(ct, "ARCHIVE", 12);
    env.wait_state(&files, "exists archived");
    // Archive id filtering: a copytool for archive 2 only sees archive-2 work.
    let ct2 = env.copytool(&["--archive", "2", "--nonblock"]);
    let g = env.file("g");
    std::fs::write(&g, b"g").unwrap();
    env.lfs_ok(&["hsm_archive", "--archive", "2", g.to_str().unwrap()]);
    env.wait_state(std::slice::from_ref(&g), "exists archived, archive_id:2");
    let count = |i: usize| {
        env.ct_lines(i)
            .iter()
            .filter(|l| l.contains("ARCHIVE"))
            .count()
    };
    let both = poll_until(DEADLINE, || (count(ct) + count(ct2) == 13).then_some(()));
    assert!(both.is_some(), "13 archives expected\n{}", env.dump());
}
