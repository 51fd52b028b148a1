use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use coordinatool_protocol::client::ClientError;
use coordinatool_protocol::frame::{encode_frame, read_frame};
use coordinatool_protocol::{
    Ehlo, Queue, QueueItem, Reply, Request, RequestFrame, Response, ResponseFrame, Role, WireItem,
};

use crate::harness::*;

fn ehlo(version: u32, fsname: &str, id: &str) -> Request {
    Request::Ehlo(Ehlo {
        protocol_version: version,
        client_id: id.into(),
        role: Role::Agent,
        fsname: Some(fsname.into()),
        archive_ids: vec![],
        running: vec![],
    })
}

fn raw_call(s: &mut TcpStream, body: Request) -> Reply {
    s.write_all(&encode_frame(&RequestFrame { id: 1, body }).unwrap())
        .unwrap();
    let r: ResponseFrame = read_frame(s).unwrap().unwrap();
    r.body
}

fn code(r: &Reply) -> i32 {
    match r {
        Reply::Err(e) => e.code,
        Reply::Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

#[test]
fn handshake_errors_garbage_and_queue() {
    let sim = Sim::start();
    let d = sim.daemon(&[]);
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Anything before ehlo: EPROTO.
    assert_eq!(code(&raw_call(&mut connect(), Request::Status)), 71);
    // Wrong protocol version: EPROTO; wrong fsname: EINVAL.
    assert_eq!(code(&raw_call(&mut connect(), ehlo(99, FSNAME, "x"))), 71);
    assert_eq!(code(&raw_call(&mut connect(), ehlo(1, "otherfs", "x"))), 22);
    // Same agent id twice: EEXIST.
    let mut first = connect();
    assert!(matches!(
        raw_call(&mut first, ehlo(1, FSNAME, "dup")),
        Reply::Ok(_)
    ));
    assert_eq!(code(&raw_call(&mut connect(), ehlo(1, FSNAME, "dup"))), 17);
    // Garbage and oversized frames drop that connection only.
    let mut g = connect();
    g.write_all(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(g.read(&mut buf).unwrap_or(0), 0);
    let mut big = connect();
    big.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(big.read(&mut buf).unwrap_or(0), 0);
    // The daemon still serves; queue validates and dedups.
    let mut admin = d.admin();
    let item = archive_item(999, 0xdead);
    let q = |items: Vec<QueueItem>| {
        Request::Queue(Queue {
            fsname: Some(FSNAME.into()),
            items,
        })
    };
    let r = admin
        .call(q(vec![
            QueueItem {
                item: item.clone(),
                archive_id: 1,
                flags: 0,
            },
            QueueItem {
                item: item.clone(),
                archive_id: 1,
                flags: 0,
            },
            QueueItem {
                item: item.clone(),
                archive_id: 0,
                flags: 0,
            },
            QueueItem {
                item: WireItem {
                    action: 23,
                    ..item.clone()
                },
                archive_id: 1,
                flags: 0,
            },
        ]))
        .unwrap();
    match r {
        Response::Queue(q) => {
            assert_eq!(q.enqueued, 1);
            assert_eq!(q.skipped, 1);
            assert_eq!(q.rejected.len(), 2);
            assert_eq!(q.rejected[0].index, 2);
        }
        other => panic!("{other:?}"),
    }
    // Admins cannot recv.
    let err = admin
        .call(Request::Recv(coordinatool_protocol::Recv {
            max_archive: None,
            max_restore: None,
            max_remove: None,
            max_bytes: 1 << 20,
            wait_ms: Some(10),
        }))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { ref reply, .. } if reply.code == 1),
        "{err}"
    );
    // Lock stops hand-out; unlock resumes.
    assert_eq!(
        admin.call(Request::Lock).unwrap(),
        Response::Locked { locked: true }
    );
    let mut a = Agent::connect(&sim, &d, "locked-agent", vec![]).unwrap();
    assert!(a.recv(None, 300).is_empty());
    assert_eq!(
        admin.call(Request::Unlock).unwrap(),
        Response::Locked { locked: false }
    );
    let got = a.recv(None, 2000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].cookie, 0xdead);
    assert!(d.status().connections >= 2);
}
