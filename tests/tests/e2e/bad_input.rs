//! Scenario 11: garbage bytes, an oversized frame and a truncated frame sent
//! to the daemon's port: the daemon drops that connection and keeps serving.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn send_and_expect_close(addr: &str, bytes: &[u8], shutdown_write: bool) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = c.write_all(bytes);
    if shutdown_write {
        let _ = c.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = [0u8; 4096];
    // The daemon may answer with an error frame first; it must then close.
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection was not closed: {e}"),
        }
    }
}

#[test]
fn garbage_oversized_and_truncated_frames_do_not_hurt() {
    let mut s = stack();
    s.start_daemon().unwrap();
    let addr = s.daemon_addr.clone().unwrap();
    let files = s.make_files("bad", 5, 14).unwrap();
    s.hsm("hsm_archive", &files, &[]).unwrap();
    wait_waiting(&s, 5).unwrap();

    // Garbage that happens to announce a small frame.
    send_and_expect_close(&addr, b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n", false);
    // Pure garbage (announces an absurd length).
    send_and_expect_close(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    // An oversized frame: 1 GiB announced.
    send_and_expect_close(&addr, &(1u32 << 30).to_be_bytes(), false);
    // A truncated frame: 100 bytes announced, 10 sent, then EOF.
    let mut t = 100u32.to_be_bytes().to_vec();
    t.extend_from_slice(&[0x81; 10]);
    send_and_expect_close(&addr, &t, true);
    // A valid frame that is not an ehlo.
    let frame = coordinatool_protocol::frame::encode_frame(&coordinatool_protocol::RequestFrame {
        id: 1,
        body: coordinatool_protocol::Request::Recv(coordinatool_protocol::Recv {
            max_archive: None,
            max_restore: None,
            max_remove: None,
            max_bytes: 1 << 20,
            wait_ms: None,
        }),
    })
    .unwrap();
    // It is answered with an error naming the problem; the connection may stay.
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(&frame).unwrap();
    let reply: coordinatool_protocol::ResponseFrame =
        coordinatool_protocol::frame::read_frame(&mut c)
            .unwrap()
            .unwrap();
    match reply.body {
        coordinatool_protocol::Reply::Err(e) => {
            assert!(e.message.to_lowercase().contains("ehlo"), "{e}")
        }
        other => panic!("recv before ehlo was accepted: {other:?}"),
    }
    drop(c);

    // Still serving, nothing lost.
    let st = wait_waiting(&s, 5).unwrap();
    assert_eq!(outstanding(&st), 5);
    s.start_agent(agent("a")).unwrap();
    archived(&s, &files).unwrap();
    assert!(s.daemon.as_mut().unwrap().try_wait().unwrap().is_none());
    let log = s.daemon.as_ref().unwrap().log_text();
    assert!(
        log.contains("127.0.0.1"),
        "the daemon should log the peer of a bad connection"
    );
}
