//! A C copytool blocked in `llapi_hsm_copytool_recv` under `LD_PRELOAD` gets
//! a signal: as with the real library's blocking `read`, a handler installed
//! without `SA_RESTART` makes the recv return `-EINTR`, and one installed
//! with `SA_RESTART` leaves it waiting for work.

mod common;

use common::{Event, FakeDaemon, Lines, T, batch, finish_ok, item, shimmed_copytool};
use std::process::{Child, Command};
use std::time::Instant;

/// Starts `signal_copytool` under the shim, talking to `d`.
fn start(d: &FakeDaemon, tmp: &std::path::Path, restart: bool) -> Child {
    shimmed_copytool(tmp, "signal_copytool", "# test\n", d.port, "signal-mover")
        .arg("2")
        .arg(if restart { "restart" } else { "norestart" })
        .spawn()
        .unwrap()
}

/// Waits until the child's main thread is blocked waiting for work (in a
/// `read`, or a `poll`), from `/proc/PID/syscall`.
fn wait_blocked_in_recv(child: &Child) {
    let mut waits = vec![libc::SYS_read, libc::SYS_ppoll];
    #[cfg(target_arch = "x86_64")]
    waits.push(libc::SYS_poll);
    let waits: Vec<String> = waits.iter().map(|n| n.to_string()).collect();
    let path = format!("/proc/{}/syscall", child.id());
    let deadline = Instant::now() + T;
    loop {
        let s = std::fs::read_to_string(&path).unwrap_or_default();
        if s.split_whitespace()
            .next()
            .is_some_and(|n| waits.iter().any(|w| w == n))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never blocked waiting for work: {s:?}"
        );
        std::thread::yield_now();
    }
}

fn signal(child: &Child) {
    let st = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn finish(child: Child, lines: Lines) -> String {
    let (stdout, _) = finish_ok(child, lines);
    assert!(stdout.lines().any(|l| l == "unregister 0"), "{stdout}");
    stdout
}

#[test]
fn a_signal_without_sa_restart_interrupts_a_blocking_recv() {
    let tmp = tempfile::tempdir().unwrap();
    let d = FakeDaemon::start();
    let mut child = start(&d, tmp.path(), false);
    let mut lines = Lines::of(&mut child);
    lines.wait_for("waiting");
    wait_blocked_in_recv(&child);
    signal(&child);
    // -EINTR, after the handler ran once.
    lines.wait_for("recv -4 1");
    finish(child, lines);
}

#[test]
fn a_signal_with_sa_restart_leaves_a_blocking_recv_waiting_for_work() {
    let tmp = tempfile::tempdir().unwrap();
    let d = FakeDaemon::start();
    let mut child = start(&d, tmp.path(), true);
    let mut lines = Lines::of(&mut child);
    lines.wait_for("waiting");
    wait_blocked_in_recv(&child);
    signal(&child);
    lines.wait_for("signal");
    // The read goes on; work then ends it.
    wait_blocked_in_recv(&child);
    d.wait_for("the shim's recv", T, |e| {
        e.iter().any(|x| matches!(x, Event::Recv(..)))
    });
    d.push_batch(batch(2, vec![item(20, 77, 7)]));
    lines.wait_for("recv 0 1");
    let stdout = finish(child, lines);
    assert!(!stdout.contains("recv -4"), "{stdout}");
}
