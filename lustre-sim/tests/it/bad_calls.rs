//! Return codes of bad calls, through a small C program using the fake.

use crate::common::*;
use std::collections::HashMap;
use std::process::Command;

#[test]
fn bad_calls_get_the_kernel_codes() {
    let env = Env::new("badfs", 1);
    let exe = env._tmp.path().join("bad_calls");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/c/bad_calls.c");
    let out = Command::new("cc")
        .args(["-std=gnu99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(src)
        .arg("-I")
        .arg(lustre_sim::paths::INCLUDE_DIR)
        .arg("-L")
        .arg(lustre_sim::paths::LINK_STUB_DIR)
        .arg("-llustreapi")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = env.file("f");
    let other = env.file("o");
    std::fs::write(&file, b"data").unwrap();
    std::fs::write(&other, b"other").unwrap();
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", &env.lib_dir)
        .arg(&env.root)
        .arg(&file)
        .arg(&other)
        .output()
        .expect("run bad_calls");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "bad_calls failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.dump()
    );
    let got: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let e = |n: i32| (-n).to_string();
    let expect: Vec<(&str, String)> = vec![
        ("register_tmp", e(libc::ENOENT)),
        ("register_null", e(libc::EINVAL)),
        ("register_negative", e(libc::EINVAL)),
        ("recv_null", e(libc::EINVAL)),
        ("get_fd_null", e(libc::EINVAL)),
        ("unregister_null", e(libc::EINVAL)),
        ("unregister_nullp", e(libc::EINVAL)),
        ("end_null", e(libc::EINVAL)),
        ("progress_null", e(libc::EINVAL)),
        ("get_dfid_null", e(libc::EINVAL)),
        ("search_fsname_tmp", e(libc::ENODEV)),
        ("search_fsname", "0".into()),
        ("fsname", "badfs".into()),
        ("fid_parse_bad", e(libc::EINVAL)),
        ("register", "0".into()),
        ("recv_empty", e(libc::EAGAIN)),
        ("begin_unknown_cookie", e(libc::ENOENT)),
        ("request", "0".into()),
        ("recv", "0".into()),
        ("hal_count", "1".into()),
        ("msgsize_is_hal_size", "1".into()),
        ("begin_wrong_fid", e(libc::EINVAL)),
        ("begin_foreign_ct", "0".into()),
        ("get_fd_archive_ok", "1".into()),
        ("progress", "0".into()),
        ("mdt_index", "0".into()),
        ("mdt_index_value", "0".into()),
        ("end", "0".into()),
        ("end_cleared", "1".into()),
        ("end_again", e(libc::EINVAL)),
        ("begin_is_error", "0".into()),
        ("get_dfid_is_error_archive", "1".into()),
        ("end_unknown_cookie", e(libc::ENOENT)),
        ("end_unknown_cookie_cleared", "1".into()),
        ("begin_remove", "0".into()),
        ("get_fd_remove", e(libc::EINVAL)),
        ("get_dfid_remove", e(libc::EINVAL)),
        ("end_remove_unknown", e(libc::ENOENT)),
        ("request_other", "0".into()),
        ("begin_other", "0".into()),
        ("request_cancel", "0".into()),
        ("recv_cancel", "0".into()),
        ("cancel_action", "23".into()),
        ("cancel_same_cookie", "1".into()),
        ("progress_cancelled", e(libc::ECANCELED)),
        ("end_cancelled", "0".into()),
        ("unregister", "0".into()),
        ("unregister_cleared", "1".into()),
        ("printf_varargs", "42abcz".into()),
        (
            "error_varargs",
            format!("{}/{}/boom-1234567890123-7", 2, libc::EIO),
        ),
        ("state_get", "0".into()),
        // HS_EXISTS | HS_ARCHIVED
        ("state_flags", "9".into()),
        ("state_archive_id", "1".into()),
        ("state_get_null", e(libc::EINVAL)),
        ("current_action", "0".into()),
        // HPS_NONE: nothing in progress any more
        ("current_action_state", "0".into()),
        ("current_action_null", e(libc::EINVAL)),
    ];
    for (name, want) in expect {
        assert_eq!(
            got.get(name).copied(),
            Some(want.as_str()),
            "{name}\n{stdout}"
        );
    }
    assert!(
        env.state(&file).contains("exists archived"),
        "{}",
        env.state(&file)
    );
}
