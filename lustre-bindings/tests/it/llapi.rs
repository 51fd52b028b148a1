//! The dlopen wrapper against `mock/mock_lustreapi.c` (compiled here with
//! `cc`), and against the simulator's fake library when it is built.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lustre_bindings::{ActionItem, ActionList, Extent, Fid, HsmAction, Llapi};

/// Builds the mock library once per test run.
fn mock_lib() -> &'static Path {
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = LIB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let so = dir.path().join("libmocklustreapi.so");
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(["-shared", "-fPIC", "-Wall", "-o"])
            .arg(&so)
            .arg(format!("-I{}", crate_dir.join("include").display()))
            .arg(crate_dir.join("tests/it/mock/mock_lustreapi.c"))
            .output()
            .unwrap_or_else(|e| panic!("running {cc}: {e}"));
        assert!(
            out.status.success(),
            "building the mock library failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, so)
    });
    path
}

fn item(cookie: u64, action: HsmAction, data: &[u8]) -> ActionItem {
    ActionItem {
        action,
        fid: Fid::new(0x200000401, 7, 0),
        dfid: Fid::new(0x200000402, 9, 0),
        extent: Extent::WHOLE,
        cookie,
        gid: 0,
        data: data.to_vec(),
    }
}

fn hal_bytes(cookie: u64) -> Vec<u8> {
    ActionList {
        flags: 0,
        archive_id: 3,
        fsname: "mockfs".into(),
        items: vec![item(cookie, HsmAction::Archive, b"tag=x")],
    }
    .encode()
    .unwrap()
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn copytool_lifecycle_against_mock() {
    let llapi = Llapi::load(Some(mock_lib())).unwrap();
    llapi.msg_set_level(6);
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path();
    assert_eq!(llapi.search_fsname(m).unwrap(), "mockfs");
    assert_eq!(
        llapi
            .search_fsname(Path::new("/nope"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENODEV)
    );

    // Negative errno on register (no such directory) maps to io::Error.
    let e = llapi
        .copytool_register(&m.join("missing"), &[], false)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    // Archive ids beyond i32 are refused before reaching C.
    let e = llapi.copytool_register(m, &[u32::MAX], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    let mut ct = llapi.copytool_register(m, &[1, 3], true).unwrap();
    assert_eq!(read_text(&m.join("registered.0")), "2 1");
    assert!(ct.fd().unwrap() >= 0);

    // Non-blocking and empty: EAGAIN.
    assert_eq!(ct.recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    // The mock's fd is the mount directory, which poll() always reports
    // readable; the pipe case is covered by coordinatoold's tests on the
    // simulator, whose kernel thread blocks in wait_readable.
    assert!(
        ct.wait_readable(std::time::Duration::from_millis(50))
            .unwrap()
    );
    let hal = hal_bytes(0x42);
    publish(&m.join("hal.0"), &hal);
    let got = ct.recv().unwrap();
    assert_eq!(got, hal);
    let list = ActionList::decode(&got).unwrap();

    // begin receives the full encoded item (hai_len = 72 + data).
    let mut action = ct.action_begin(&list.items[0], -1, 0o4000, false).unwrap();
    assert_eq!(action.cookie(), 0x42);
    let begun = std::fs::read(m.join("begun.42")).unwrap();
    let mut expected = Vec::new();
    list.items[0].encode_into(&mut expected);
    assert_eq!(begun, expected[..77]);
    assert_eq!(read_text(&m.join("begin-args.42")), " -1 2048 0");

    assert_eq!(action.dfid().unwrap(), Fid::new(0x200000402, 9, 0));
    let fd = action.fd().unwrap();
    drop(fd);
    action.progress(Extent::new(0, 4096), 8192, 0).unwrap();
    action.progress(Extent::new(4096, 4096), 8192, 0).unwrap();
    assert_eq!(
        read_text(&m.join("progress.42")),
        "0 4096 8192 0\n4096 4096 8192 0\n"
    );
    action.end(Extent::new(0, 8192), 0, 0).unwrap();
    assert_eq!(read_text(&m.join("end.42")), "0 8192 0 0");

    // Errors from begin/progress/end come back as errno.
    let e = ct
        .action_begin(&item(0xdead, HsmAction::Archive, b""), -1, 0, false)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    let mut cancelled = ct
        .action_begin(&item(0xcafe, HsmAction::Archive, b""), -1, 0, false)
        .unwrap();
    assert_eq!(
        cancelled
            .progress(Extent::new(0, 1), 1, 0)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ECANCELED)
    );
    assert_eq!(
        cancelled
            .end(Extent::new(0, 0), 0, 77)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EBUSY)
    );
    // REMOVE has no dfid or fd.
    let remove = ct
        .action_begin(&item(0x77, HsmAction::Remove, b""), -1, 0, false)
        .unwrap();
    assert_eq!(
        remove.dfid().unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    assert_eq!(remove.fd().unwrap_err().raw_os_error(), Some(libc::EINVAL));

    // Dropping an action without end ends it with ECANCELED.
    drop(remove);
    assert_eq!(
        read_text(&m.join("end.77")),
        format!("0 0 0 {}", libc::ECANCELED)
    );

    // Unregister with an action outstanding is deferred until it ends.
    let pending = ct
        .action_begin(&item(0x88, HsmAction::Archive, b""), -1, 0, false)
        .unwrap();
    let e = ct.unregister().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceBusy);
    assert!(!m.join("unregistered.0").exists());
    pending.end(Extent::new(0, 0), 0, 0).unwrap();
    assert_eq!(read_text(&m.join("unregistered.0")), "1");
}

/// Makes a file for the mock's `recv` appear whole: the mock opens `hal.N`
/// as soon as it exists, so a plain write could be read while still empty.
fn publish(path: &std::path::Path, bytes: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn begin_from_another_thread_while_blocked_in_recv() {
    let llapi = Llapi::load(Some(mock_lib())).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path().to_path_buf();
    let ct = Arc::new(llapi.copytool_register(&m, &[], false).unwrap());

    let receiver = {
        let ct = Arc::clone(&ct);
        std::thread::spawn(move || {
            let first = ct.recv_shared();
            let second = ct.recv_shared();
            (first, second)
        })
    };
    // While the receiver blocks (no hal.0 yet), begin and end an action here.
    let action = ct
        .action_begin(&item(0x99, HsmAction::Restore, b"abc"), 0, 0, false)
        .unwrap();
    action.end(Extent::new(0, 3), 0, 0).unwrap();
    assert_eq!(read_text(&m.join("end.99")), "0 3 0 0");

    publish(&m.join("hal.0"), &hal_bytes(1));
    std::fs::write(m.join("shutdown"), b"").unwrap();
    let (first, second) = receiver.join().unwrap();
    assert_eq!(first.unwrap(), hal_bytes(1));
    assert_eq!(second.unwrap_err().raw_os_error(), Some(libc::ESHUTDOWN));

    // Dropping the last reference unregisters.
    drop(ct);
    wait_for(&m.join("unregistered.0"));
}

/// The simulator's fake library, if it has been built in this target dir.
fn fakelib() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let lib = target.join("debug/liblustreapi.so");
    lib.is_file().then_some(lib)
}

#[test]
fn loads_the_fake_library_when_built() {
    let Some(lib) = fakelib() else {
        println!(
            "SKIPPED: target/debug/liblustreapi.so not built (cargo build -p lustre-sim-fakelib)"
        );
        return;
    };
    match Llapi::load(Some(&lib)) {
        Ok(llapi) => {
            assert_eq!(llapi.path(), lib.display().to_string());
            llapi.msg_set_level(0);
        }
        // The simulator may still be incomplete; a missing symbol must at
        // least be named.
        Err(e) => assert!(e.to_string().contains("llapi_"), "{e}"),
    }
}
