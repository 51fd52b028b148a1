//! The background session against an in-test daemon: hand-off of batches,
//! completions, reconnects with resend, start with the daemon down, shutdown.

mod common;

use common::{Event, FakeDaemon, T, batch, item};
use coordinatool_preload::config::SessionConfig;
use coordinatool_preload::session::{Key, Session};
use coordinatool_preload::{ShimError, sys};
use lustre_bindings::ActionList;
use std::time::Duration;

fn cfg(port: u16) -> SessionConfig {
    SessionConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: "mover-test".into(),
        fsname: "testfs".into(),
        archive_ids: vec![2, 3],
        max_archive: Some(4),
        max_restore: None,
        max_remove: Some(0),
        hal_size: 64 * 1024,
        recv_wait_ms: 30_000,
        connect_timeout: Duration::from_secs(2),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

fn count_dones(d: &FakeDaemon, cookie: u64) -> usize {
    d.dones().iter().filter(|x| x.cookie == cookie).count()
}

fn key(i: &coordinatool_protocol::WireItem) -> Key {
    Key::of(i)
}

#[test]
fn batches_are_handed_over_and_dones_reported() {
    let d = FakeDaemon::start();
    let s = Session::start(cfg(d.port)).unwrap();
    assert_eq!(s.wait_first_attempt(T), Some(Ok(())));
    let ev = d.wait_for("ehlo and recv", T, |e| {
        e.iter().any(|x| matches!(x, Event::Recv(..)))
    });
    let Event::Ehlo(_, ehlo) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(ehlo.client_id, "mover-test");
    assert_eq!(ehlo.fsname.as_deref(), Some("testfs"));
    assert_eq!(ehlo.archive_ids, vec![2, 3]);
    assert!(ehlo.running.is_empty());
    let Event::Recv(_, recv) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(recv.max_bytes, 64 * 1024);
    assert_eq!(
        (recv.max_archive, recv.max_restore, recv.max_remove),
        (Some(4), None, Some(0))
    );

    let shared = s.shared().clone();
    assert!(matches!(shared.take(true), Err(ShimError::Again)));
    assert!(!common::wait_readable(
        &Fd(shared.ready_fd()),
        Duration::ZERO
    ));

    let a = item(20, 101, 1);
    let b = item(20, 102, 2);
    let cancel_a = item(23, 101, 1);
    d.push_batch(batch(2, vec![a.clone(), b.clone()]));
    assert!(
        common::wait_readable(&Fd(shared.ready_fd()), T),
        "ready fd never became readable"
    );
    let hal = shared.take(true).unwrap();
    assert!(!common::wait_readable(
        &Fd(shared.ready_fd()),
        Duration::ZERO
    ));
    let list = ActionList::decode(&hal.bytes).unwrap();
    assert_eq!(
        (list.archive_id, list.fsname.as_str(), list.items.len()),
        (2, "testfs", 2)
    );
    assert_eq!(list.items[0].cookie, 101);
    assert_eq!(list.items[1].data, b"data-102");

    // Taking the HAL triggers the next recv; a cancel comes as the kernel sends it.
    d.wait_for("second recv", T, |e| {
        e.iter().filter(|x| matches!(x, Event::Recv(..))).count() == 2
    });
    d.push_batch(batch(2, vec![cancel_a.clone()]));
    let hal = shared.take(false).unwrap();
    let list = ActionList::decode(&hal.bytes).unwrap();
    assert_eq!(list.items[0].action.as_u32(), 23);

    // The action and its cancel both end: one done for the key.
    assert!(shared.post_done(key(&a), 125));
    assert!(shared.post_done(key(&a), 0));
    assert!(shared.post_done(key(&b), 0));
    d.wait_for("done for b", T, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Done(_, dd) if dd.cookie == 102))
    });
    assert_eq!(count_dones(&d, 101), 1);
    let done_a = d.dones().into_iter().find(|x| x.cookie == 101).unwrap();
    assert_eq!((done_a.status, done_a.dfid), (125, a.dfid));
    // A completion for something never handed out is ignored.
    assert!(shared.post_done(key(&item(20, 999, 9)), 0));
    let c = item(22, 103, 3);
    d.push_batch(batch(2, vec![c.clone()]));
    shared.take(false).unwrap();
    shared.post_done(key(&c), 2);
    d.wait_for("done for c", T, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Done(_, dd) if dd.cookie == 103))
    });
    assert_eq!(count_dones(&d, 999), 0);
    assert_eq!(d.dones().len(), 3);
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + T;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Fd(std::os::fd::RawFd);
impl std::os::fd::AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

#[test]
fn reconnect_announces_running_and_resends_dones_exactly_once() {
    let d = FakeDaemon::start();
    let s = Session::start(cfg(d.port)).unwrap();
    let shared = s.shared().clone();
    let (a, b, c) = (item(20, 1, 1), item(21, 2, 2), item(22, 3, 3));
    d.push_batch(batch(3, vec![a.clone(), b.clone(), c.clone()]));
    shared.take(false).unwrap();
    shared.post_done(key(&a), 0);
    d.wait_for("done a", T, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Done(_, dd) if dd.cookie == 1))
    });
    // The shim has read the acknowledgement (b and c remain tracked).
    wait_until("done a acknowledged", || shared.tracked() == 2);

    // The daemon goes away mid-work; b ends while the connection is down.
    d.kill_connections();
    shared.post_done(key(&b), 5);
    let ev = d.wait_for("reconnect and done b", T, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Done(1, dd) if dd.cookie == 2))
    });
    let ehlo2 = ev
        .iter()
        .find_map(|x| match x {
            Event::Ehlo(1, e) => Some(e.clone()),
            _ => None,
        })
        .expect("second ehlo");
    let mut cookies: Vec<u64> = ehlo2.running.iter().map(|i| i.item.cookie).collect();
    cookies.sort();
    // a was acknowledged; b (done not yet acknowledged) and c (running) are
    // announced, with the archive id and flags of the batch they came in.
    assert_eq!(cookies, vec![2, 3]);
    let announced_c = ehlo2.running.iter().find(|i| i.item.cookie == 3).unwrap();
    assert_eq!(announced_c.item, c);
    assert_eq!((announced_c.archive_id, announced_c.flags), (3, 0));
    assert!(s.shared().is_connected() || s.shared().connects() >= 2);

    shared.post_done(key(&c), 0);
    d.wait_for("done c", T, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Done(_, dd) if dd.cookie == 3))
    });
    // Every completion arrived exactly once, b with its status.
    assert_eq!(
        (count_dones(&d, 1), count_dones(&d, 2), count_dones(&d, 3)),
        (1, 1, 1)
    );
    assert_eq!(d.dones().iter().find(|x| x.cookie == 2).unwrap().status, 5);
    // A third connection after everything was acknowledged announces nothing.
    wait_until("all acknowledged", || shared.tracked() == 0);
    d.kill_connections();
    let ev = d.wait_for("third ehlo", T, |e| {
        e.iter().any(|x| matches!(x, Event::Ehlo(2, _)))
    });
    let Some(Event::Ehlo(_, e3)) = ev.iter().find(|x| matches!(x, Event::Ehlo(2, _))) else {
        unreachable!()
    };
    assert!(e3.running.is_empty(), "{e3:?}");
    assert_eq!(d.dones().len(), 3);
}

#[test]
fn daemon_down_at_start_then_up() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let s = Session::start(cfg(port)).unwrap();
    match s.wait_first_attempt(T) {
        Some(Err(e)) => assert!(e.contains("connection refused"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Work ended meanwhile is not lost either (nothing tracked yet: ignored).
    let d = FakeDaemon::on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    d.wait_for("ehlo after the daemon came up", T, |e| {
        e.iter().any(|x| matches!(x, Event::Recv(..)))
    });
    assert!(s.shared().connects() >= 1);
}

#[test]
fn stop_wakes_a_blocked_recv_and_flushes_dones() {
    let d = FakeDaemon::start();
    let mut s = Session::start(cfg(d.port)).unwrap();
    let shared = s.shared().clone();
    let a = item(20, 7, 7);
    d.push_batch(batch(2, vec![a.clone()]));
    shared.take(false).unwrap();
    let waiter = {
        let shared = shared.clone();
        std::thread::spawn(move || shared.take(false))
    };
    shared.post_done(key(&a), 0);
    s.stop(T);
    assert!(matches!(waiter.join().unwrap(), Err(ShimError::Shutdown)));
    assert_eq!(
        count_dones(&d, 7),
        1,
        "pending done flushed before stopping"
    );
    assert!(matches!(shared.take(true), Err(ShimError::Shutdown)));
    let _ = sys::pid();
}

#[test]
fn completions_that_end_together_go_out_together() {
    let d = FakeDaemon::start();
    let s = Session::start(cfg(d.port)).unwrap();
    let shared = s.shared().clone();
    let items: Vec<_> = (0..64u32)
        .map(|i| item(20, 500 + u64::from(i), i + 1))
        .collect();
    d.push_batch(batch(2, items.clone()));
    shared.take(false).unwrap();
    for it in &items {
        assert!(shared.post_done(key(it), 0));
    }
    let ev = d.wait_for("64 dones", T, |e| {
        e.iter().filter(|x| matches!(x, Event::Done(..))).count() == 64
    });
    let sizes: Vec<usize> = ev
        .iter()
        .filter_map(|x| match x {
            Event::DoneMessage(_, n) => Some(*n),
            _ => None,
        })
        .collect();
    // Posting 64 completions takes microseconds; they wait for each other
    // (up to the linger) instead of going out one message each. A few
    // messages at most even on a loaded machine.
    assert!(sizes.len() <= 4, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 64);
    wait_until("all acknowledged", || shared.tracked() == 0);
}
