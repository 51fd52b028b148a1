//! The `coordinatool-ctl` binary against a scripted protocol server: exit
//! codes, configuration layering, error messages and output.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

use coordinatool_protocol::frame::{read_frame, write_frame};
use coordinatool_protocol::{
    ActionCounts, EhloReply, QueueReply, Reply, Request, RequestFrame, Response, ResponseFrame,
    StatusReply,
};

const BIN: &str = env!("CARGO_BIN_EXE_coordinatool-ctl");

/// Serves connections one after the other until `requests` non-ehlo requests
/// were answered; returns them.
fn scripted(
    requests: usize,
    mut respond: impl FnMut(&Request) -> Response + Send + 'static,
) -> (u16, JoinHandle<Vec<Request>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < requests {
            let (mut s, _) = l.accept().unwrap();
            loop {
                let f: Option<RequestFrame> = read_frame(&mut s).unwrap_or_default();
                let Some(f) = f else { break };
                let body = match &f.body {
                    Request::Ehlo(e) => {
                        assert_eq!(e.role, coordinatool_protocol::Role::Admin);
                        Response::Ehlo(EhloReply {
                            protocol_version: 1,
                            fsname: "testfs".into(),
                            server_version: "test".into(),
                            running_kept: 0,
                        })
                    }
                    other => {
                        let r = respond(other);
                        seen.push(other.clone());
                        r
                    }
                };
                write_frame(
                    &mut s,
                    &ResponseFrame {
                        id: f.id,
                        body: Reply::Ok(body),
                    },
                )
                .unwrap();
            }
        }
        seen
    });
    (port, h)
}

fn ctl(args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("COORDINATOOL_HOST")
        .env_remove("COORDINATOOL_PORT")
        .env("COORDINATOOL_CONF", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_subcommands_and_exit_codes() {
    let o = ctl(&["--help"], "", &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for needle in [
        "status",
        "list",
        "agents",
        "queue",
        "import",
        "lock",
        "unlock",
        "drain",
        "cancel",
        "Exit codes",
        "69",
        "--host",
        "--config",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    let o = ctl(&["import", "--help"], "", &[]);
    assert!(text(&o.stdout).contains("5 bytes"));
}

#[test]
fn usage_errors_exit_2() {
    let o = ctl(&["frobnicate"], "", &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = ctl(&["cancel", "not-a-fid", "--port", "1"], "", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not-a-fid"), "{}", text(&o.stderr));
}

#[test]
fn unreachable_daemon_exits_69_and_names_the_address() {
    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = ctl(
        &["status", "-H", "127.0.0.1", "-p", &port.to_string()],
        "",
        &[],
    );
    assert_eq!(o.status.code(), Some(69));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "cannot connect to coordinatoold at 127.0.0.1:{port}: connection refused"
        )),
        "{err}"
    );
}

#[test]
fn bad_configuration_exits_78() {
    let o = ctl(&["status"], "", &[("COORDINATOOL_PORT", "http")]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o.stderr).contains("COORDINATOOL_PORT"));
    let o = ctl(&["status", "--config", "/nonexistent/ctl.conf"], "", &[]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o.stderr).contains("/nonexistent/ctl.conf"));
}

#[test]
fn status_through_config_file_and_env() {
    let (port, h) = scripted(2, |_| {
        Response::Status(Box::new(StatusReply {
            version: "0.1.0".into(),
            fsname: "testfs".into(),
            actions: vec![ActionCounts {
                action: "ARCHIVE".into(),
                waiting: 3,
                running: 1,
                ..ActionCounts::default()
            }],
            oldest_request_ms: Some(100_000),
            ..StatusReply::default()
        }))
    });
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, format!("host 127.0.0.1\nport {port}\n")).unwrap();
    let o = ctl(
        &[
            "status",
            "--config",
            conf.to_str().unwrap(),
            "--timeout",
            "120",
        ],
        "",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(&format!("at 127.0.0.1:{port}")), "{out}");
    assert!(out.contains("ARCHIVE  3        1"), "{out}");
    assert!(
        out.contains("warning: the oldest request is 1m40s old, 83%"),
        "{out}"
    );
    // The same through the environment, as JSON.
    let o = ctl(
        &["status", "--json"],
        "",
        &[
            ("COORDINATOOL_HOST", "127.0.0.1"),
            ("COORDINATOOL_PORT", &port.to_string()),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fsname"], "testfs");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(h.join().unwrap().len(), 2);
}

#[test]
fn queue_json_lines_from_stdin() {
    let (port, h) = scripted(1, |req| {
        let Request::Queue(q) = req else {
            panic!("{req:?}")
        };
        Response::Queue(QueueReply {
            enqueued: q.items.len() as u64,
            ..QueueReply::default()
        })
    });
    let input = "{\"fid\":\"[0x200000401:0x1:0x0]\",\"action\":\"archive\",\"archive_id\":1,\"cookie\":\"0x10\",\"data\":\"tag=x\"}\n\
                 {\"fid\":\"[0x200000401:0x2:0x0]\",\"action\":\"archive\",\"archive_id\":1}\n";
    let o = ctl(
        &["queue", "-H", "127.0.0.1", "-p", &port.to_string()],
        input,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("rejected line 2: field \"cookie\" is missing"),
        "{out}"
    );
    assert!(
        out.contains("enqueued 1, skipped 0 (already known), rejected 1"),
        "{out}"
    );
    let reqs = h.join().unwrap();
    let Request::Queue(q) = &reqs[0] else {
        panic!()
    };
    assert_eq!(q.items[0].item.data, b"tag=x");
    assert_eq!(q.items[0].item.cookie, 0x10);
}
