//! `coordinatool-ctl` against a real `coordinatoold` on `lustre-sim`.
//!
//! Needs `lustre-simd`, `lfs-sim`, `liblustreapi.so` (lustre-sim-fakelib) and
//! `coordinatoold` in the same target folder as this test:
//! `cargo build -p lustre-sim -p lustre-sim-fakelib -p coordinatoold` first.
//! Agents are small protocol clients written here, so the tests need neither
//! the preload shim nor a C copytool.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coordinatool_protocol::client::Client;
use coordinatool_protocol::{
    Batch, Done, Ehlo, PROTOCOL_VERSION, Recv, Request, Response, Role, WireItem,
};

const CTL: &str = env!("CARGO_BIN_EXE_coordinatool-ctl");
const DEADLINE: Duration = Duration::from_secs(60);

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

fn artefact(name: &str, pkg: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p {pkg}` first",
        p.display()
    );
    p
}

/// Polls `cond` until it gives `Some`, failing after [`DEADLINE`].
fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        Proc {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn wait_log(&mut self, needle: &str) -> String {
        wait_for(&format!("{needle:?} in {}", self.log.display()), || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(pos) = text.find(needle) {
                let end = text[pos..].find('\n').map_or(text.len(), |e| pos + e);
                return Some(text[pos..end].to_string());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("process exited ({st}) before logging {needle:?}:\n{text}");
            }
            None
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== {} =====\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A simulated mount with its MDT, and coordinatoold registered on it.
struct Setup {
    _dir: tempfile::TempDir,
    mount: PathBuf,
    // Dropped in field order: the daemon before the simulator.
    daemon: Option<Proc>,
    _sim: Proc,
    host: String,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let conf = dir.path().join("coordinatool.conf");
        std::fs::write(&conf, "client_grace_ms 2000\n").unwrap();

        let mut cmd = Command::new(artefact("lustre-simd", "lustre-sim"));
        cmd.arg("--root")
            .arg(&mount)
            .args(["--fsname", "testfs", "--mdts", "1"]);
        let mut sim = Proc::spawn(cmd, dir.path().join("sim.log"));
        sim.wait_log("lustre-simd: ready");

        let mut cmd = Command::new(artefact("coordinatoold", "coordinatoold"));
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&conf)
            .arg("--state-dir")
            .arg(&state)
            .arg("--lustreapi")
            .arg(artefact("liblustreapi.so", "lustre-sim-fakelib"))
            .arg("-v")
            .arg(&mount)
            .env_remove("NOTIFY_SOCKET");
        let mut daemon = Proc::spawn(cmd, dir.path().join("daemon.log"));
        let line = daemon.wait_log("listening on ");
        let addr = line
            .trim_start_matches("listening on ")
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap()
            .to_string();
        let (host, port) = addr.rsplit_once(':').unwrap();
        let s = Setup {
            host: host.to_string(),
            port: port.parse().unwrap(),
            _dir: dir,
            mount,
            daemon: Some(daemon),
            _sim: sim,
        };
        s.lfs(&[
            "set_param",
            "--mount",
            s.mount.to_str().unwrap(),
            "mdt.testfs-MDT0000.hsm.max_requests=1000",
        ]);
        s
    }

    fn lfs(&self, args: &[&str]) -> String {
        let o = Command::new(artefact("lfs-sim", "lustre-sim"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "lfs-sim {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    }

    fn ctl(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(CTL)
            .args(["--host", &self.host, "--port", &self.port.to_string()])
            .args(args)
            .env("COORDINATOOL_CONF", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ctl_ok(&self, args: &[&str], stdin: &str, code: i32) -> String {
        let o = self.ctl(args, stdin);
        assert_eq!(
            o.status.code(),
            Some(code),
            "coordinatool-ctl {args:?}:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl_ok(&["status", "--json"], "", 0)).unwrap()
    }

    fn count(&self, field: &str) -> u64 {
        self.status()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a[field].as_u64().unwrap_or(0))
            .sum()
    }

    /// Creates `n` files and asks the MDT to archive them; waits until the
    /// daemon has them all waiting.
    fn archive_files(&self, n: usize) -> Vec<PathBuf> {
        let files: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = self.mount.join(format!("f{i:03}"));
                std::fs::write(&p, vec![b'x'; 100 + i]).unwrap();
                p
            })
            .collect();
        let mut args = vec!["hsm_archive".to_string()];
        args.extend(files.iter().map(|p| p.to_string_lossy().into_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lfs(&refs);
        wait_for("the daemon to queue the archives", || {
            (self.count("waiting") == n as u64).then_some(())
        });
        files
    }

    fn active_requests(&self) -> String {
        self.lfs(&[
            "get_param",
            "--mount",
            self.mount.to_str().unwrap(),
            "mdt.testfs-MDT0000.hsm.active_requests",
        ])
    }

    fn agent(&self, id: &str) -> Client {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).unwrap();
        Client::handshake(
            stream,
            format!("{}:{}", self.host, self.port),
            Ehlo {
                protocol_version: PROTOCOL_VERSION,
                client_id: id.into(),
                role: Role::Agent,
                fsname: Some("testfs".into()),
                archive_ids: Vec::new(),
                running: Vec::new(),
            },
        )
        .unwrap()
    }
}

fn recv(agent: &mut Client, max_archive: u32) -> Batch {
    match agent
        .call(Request::Recv(Recv {
            max_archive: Some(max_archive),
            max_restore: None,
            max_remove: None,
            max_bytes: 1 << 20,
            wait_ms: Some(30_000),
        }))
        .unwrap()
    {
        Response::Batch(b) => b,
        other => panic!("recv answered {other:?}"),
    }
}

fn done(agent: &mut Client, items: &[WireItem]) {
    for it in items {
        let r = agent
            .call(Request::Done(Done {
                cookie: it.cookie,
                dfid: it.dfid,
                status: 0,
            }))
            .unwrap();
        assert!(matches!(r, Response::Done), "{r:?}");
    }
}

#[test]
fn status_list_queue_import_cancel_lock_on_a_real_daemon() {
    let s = Setup::new();
    let files = s.archive_files(6);

    // status: 6 waiting archives, no agent.
    let out = s.ctl_ok(&["status"], "", 0);
    assert!(out.contains("filesystem testfs"), "{out}");
    assert!(out.contains("ARCHIVE  6"), "{out}");
    assert!(out.contains("agents: 0 connected, 0 disconnected"), "{out}");

    // list: table, filters, JSON lines and --limit.
    let out = s.ctl_ok(&["list"], "", 0);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("[0x")).count(),
        6,
        "{out}"
    );
    let out = s.ctl_ok(&["dump", "--action", "restore"], "", 0);
    assert_eq!(out, "no matching requests\n");
    let out = s.ctl_ok(&["list", "--json", "--limit", "2"], "", 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["state"], "waiting");
    let all = s.ctl_ok(&["list", "--json"], "", 0);

    // queue: the listing read back is all known already.
    let out = s.ctl_ok(&["queue"], &all, 0);
    assert!(
        out.contains("enqueued 0, skipped 6 (already known), rejected 0"),
        "{out}"
    );

    // import of the MDT's own active_requests, with a duplicate, a malformed
    // line and a new request added.
    let mut text = s.active_requests();
    let first = text
        .lines()
        .find(|l| l.starts_with("fid="))
        .unwrap()
        .to_string();
    let n_lines = text.lines().count();
    text.push_str(&first); // duplicate
    text.push('\n');
    text.push_str("fid=[0x1:0x2:0x0] this line is malformed\n");
    let cookie_field = first
        .split_whitespace()
        .find(|t| t.starts_with("compound/cookie="))
        .unwrap()
        .to_string();
    text.push_str(&first.replace(&cookie_field, "compound/cookie=0x0/0xfeedbeef"));
    text.push('\n');
    let out = s.ctl_ok(&["import"], &text, 1);
    assert!(
        out.contains(&format!("rejected line {}: field `", n_lines + 2)),
        "{out}"
    );
    assert!(
        out.contains("enqueued 1, skipped 7 (already known), rejected 1"),
        "{out}"
    );
    assert_eq!(s.count("waiting"), 7);

    // A file from another filesystem is refused as a whole.
    let other = text.replace("mdt.testfs-MDT0000", "mdt.otherfs-MDT0000");
    if other != text {
        let o = s.ctl(&["import"], &other);
        assert_eq!(o.status.code(), Some(1));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            said.contains("fsname") || said.contains("rejected"),
            "{said}"
        );
        assert_eq!(
            s.count("waiting"),
            7,
            "nothing from another filesystem is queued"
        );
    }

    // cancel: one queued request, one unknown fid.
    let fid = s
        .lfs(&["path2fid", files[0].to_str().unwrap()])
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let out = s.ctl_ok(&["cancel", &fid, "[0x2:0x3:0x0]"], "", 1);
    assert!(out.contains(": canceled"), "{out}");
    assert!(out.contains("[0x2:0x3:0x0]: no such request"), "{out}");

    // lock / unlock show in status.
    s.ctl_ok(&["lock"], "", 0);
    assert_eq!(s.status()["locked"], true);
    assert!(s.ctl_ok(&["status"], "", 0).contains("LOCKED"));
    s.ctl_ok(&["unlock"], "", 0);
    assert_eq!(s.status()["locked"], false);
}

#[test]
fn drain_while_agents_are_busy_then_quit() {
    let mut s = Setup::new();
    s.archive_files(4);
    let mut a = s.agent("agent-a");
    let batch = recv(&mut a, 2);
    assert_eq!(batch.items.len(), 2);
    let out = s.ctl_ok(&["agents"], "", 0);
    assert!(out.contains("agent-a") && out.contains("2/2"), "{out}");

    // Nothing finishes: drain gives up with code 3 and leaves the lock.
    let o = s.ctl(&["drain", "--timeout", "1", "--interval-ms", "50"], "");
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stays locked"));
    assert_eq!(s.status()["locked"], true);

    // A drain with --quit in the background; once it reports the two running
    // requests, the agent finishes its work.
    let mut child = Command::new(CTL)
        .args(["--host", &s.host, "--port", &s.port.to_string()])
        .args(["drain", "--quit", "--timeout", "60", "--interval-ms", "50"])
        .env("COORDINATOOL_CONF", "/dev/null")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.contains("request(s) running") {
            break;
        }
    }
    assert!(out.contains("2 request(s) running"), "{out}");
    done(&mut a, &batch.items);
    for line in lines {
        out.push_str(&line.unwrap());
        out.push('\n');
    }
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("0 request(s) running"), "{out}");
    assert!(
        out.contains("drained: nothing running (2 waiting request(s) stay queued)"),
        "{out}"
    );
    assert!(out.contains("shutting down"), "{out}");

    // The daemon exits; ctl then reports it unreachable.
    let d = s.daemon.as_mut().unwrap();
    let st = wait_for("coordinatoold to exit", || d.child.try_wait().unwrap());
    assert!(st.success(), "{st}");
    let o = s.ctl(&["status"], "");
    assert_eq!(o.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot connect to coordinatoold at"));
}
