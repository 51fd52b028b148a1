//! Shared set-up: a simulated mount, a daemon, a test agent.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use coordinatool_protocol::client::{Client, ClientError};
use coordinatool_protocol::{
    Done, Ehlo, PROTOCOL_VERSION, QueueItem, Recv, Request, Response, Role, StatusReply, WireFid,
    WireItem,
};
use lustre_bindings::action::flags::HP_FLAG_COMPLETED;
use lustre_bindings::llapi::{Copytool, Llapi};
use lustre_bindings::{ActionItem, HsmAction};
use lustre_sim::testing::{ChildGuard, poll_until, start_simd};

pub const FSNAME: &str = "testfs";

/// Paths of the built artefacts.
pub struct Bins {
    pub simd: PathBuf,
    pub lfs: PathBuf,
    pub lib: PathBuf,
    pub daemon: PathBuf,
}

pub fn bins() -> Bins {
    let profile = lustre_sim::paths::profile_dir_from_exe().expect("current_exe");
    let b = Bins {
        simd: profile.join("lustre-simd"),
        lfs: profile.join("lfs-sim"),
        lib: profile.join("liblustreapi.so"),
        daemon: profile.join("coordinatoold"),
    };
    for (p, pkg) in [
        (&b.simd, "lustre-sim"),
        (&b.lfs, "lustre-sim"),
        (&b.lib, "lustre-sim-fakelib"),
        (&b.daemon, "coordinatoold"),
    ] {
        assert!(
            p.exists(),
            "{} is missing: run `cargo build -p {pkg}` first",
            p.display()
        );
    }
    b
}

/// A simulated mount with its simulator.
pub struct Sim {
    pub bins: Bins,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub _simd: ChildGuard,
}

impl Sim {
    pub fn start() -> Sim {
        let bins = bins();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt");
        std::fs::create_dir_all(&root).unwrap();
        let simd = start_simd(&bins.simd, &root, FSNAME, 1).unwrap_or_else(|e| panic!("{e}"));
        let sim = Sim {
            bins,
            dir,
            root,
            _simd: simd,
        };
        // Lustre's default of 3 active requests per MDT is too few for the tests.
        sim.lfs(
            &[
                "set_param",
                "--mount",
                sim.root.to_str().unwrap(),
                &format!("mdt.{FSNAME}-MDT0000.hsm.max_requests=100"),
            ],
            &[],
        );
        sim
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Creates `n` files `f0..` and returns their paths.
    pub fn files(&self, prefix: &str, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = self.root.join(format!("{prefix}{i}"));
                std::fs::write(&p, format!("content of {prefix}{i}\n")).unwrap();
                p
            })
            .collect()
    }

    pub fn lfs(&self, args: &[&str], files: &[PathBuf]) -> String {
        let out = Command::new(&self.bins.lfs)
            .args(args)
            .args(files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lfs-sim {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn active_requests(&self) -> String {
        self.lfs(
            &[
                "get_param",
                "--mount",
                self.root.to_str().unwrap(),
                "-n",
                &format!("mdt.{FSNAME}-MDT0000.hsm.active_requests"),
            ],
            &[],
        )
    }

    pub fn wait_active_requests_empty(&self, daemon: &Daemon) {
        let ok = poll_until(Duration::from_secs(30), || {
            self.active_requests().trim().is_empty().then_some(())
        });
        assert!(
            ok.is_some(),
            "active_requests never emptied:\n{}\n{}",
            self.active_requests(),
            daemon.guard.dump()
        );
    }

    fn daemon_cmd(&self, extra: &[&str]) -> Command {
        let conf = self.conf_path();
        if !conf.exists() {
            std::fs::write(&conf, "# test\n").unwrap();
        }
        let mut cmd = Command::new(&self.bins.daemon);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--archive", "1"])
            .arg("--config")
            .arg(&conf)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--lustreapi")
            .arg(&self.bins.lib)
            .args(extra)
            .arg(&self.root)
            .env_remove("NOTIFY_SOCKET")
            .env("COORDINATOOL_LOG", "debug,sled=info");
        cmd
    }

    /// Starts a daemon without waiting for it.
    pub fn daemon_raw(&self, extra: &[&str]) -> ChildGuard {
        ChildGuard::spawn("coordinatoold", self.daemon_cmd(extra)).unwrap()
    }

    /// The configuration file every daemon of this mount reads.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("coordinatool.conf")
    }

    /// Starts a daemon and waits until it listens.
    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        self.daemon_with(extra, |_| {})
    }

    /// Starts a daemon whose command `tweak` adjusts (environment, ...) and
    /// waits until it listens.
    pub fn daemon_with(&self, extra: &[&str], tweak: impl FnOnce(&mut Command)) -> Daemon {
        let mut cmd = self.daemon_cmd(extra);
        tweak(&mut cmd);
        let guard = ChildGuard::spawn("coordinatoold", cmd).unwrap();
        let mut d = Daemon { guard, port: 0 };
        let port = poll_until(Duration::from_secs(30), || {
            d.guard.stdout_lines().iter().find_map(|l| {
                l.strip_prefix("coordinatoold: listening on ")
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            })
        });
        match port {
            Some(p) => d.port = p,
            None => panic!("coordinatoold did not start\n{}", d.guard.dump()),
        }
        assert!(d.guard.is_running());
        d
    }
}

pub struct Daemon {
    pub guard: ChildGuard,
    pub port: u16,
}

impl Daemon {
    pub fn admin(&self) -> Client {
        Client::connect_admin("127.0.0.1", self.port, "test-admin", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.guard.dump()))
    }

    pub fn status(&self) -> StatusReply {
        match self.admin().call(Request::Status).unwrap() {
            Response::Status(s) => *s,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Waits until `cond` holds on the status.
    pub fn wait_status(&self, what: &str, cond: impl Fn(&StatusReply) -> bool) -> StatusReply {
        poll_until(Duration::from_secs(30), || {
            let s = self.status();
            cond(&s).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "status never got to: {what}: {:#?}\n{}",
                self.status(),
                self.guard.dump()
            )
        })
    }

    /// Whether some stderr line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.guard.stderr_lines().iter().any(|l| l.contains(needle))
    }

    /// Waits until some stderr line contains `needle`.
    pub fn wait_logged(&self, needle: &str) {
        let ok = poll_until(Duration::from_secs(30), || {
            self.logged(needle).then_some(())
        });
        assert!(
            ok.is_some(),
            "never logged {needle:?}\n{}",
            self.guard.dump()
        );
    }

    pub fn kill9(&mut self) {
        self.guard.signal("KILL").unwrap();
        assert!(self.guard.wait_timeout(Duration::from_secs(10)).is_some());
    }
}

/// A whole-file ARCHIVE item of a simulated fid (`dfid` = `fid`, no data),
/// for tests that queue requests by hand.
pub fn archive_item(oid: u32, cookie: u64) -> WireItem {
    let fid = WireFid {
        seq: 0x200000401,
        oid,
        ver: 0,
    };
    WireItem::whole_file(HsmAction::Archive.as_u32(), fid, cookie, Vec::new())
}

pub fn waiting(s: &StatusReply, action: &str) -> u64 {
    s.actions
        .iter()
        .find(|a| a.action == action)
        .map_or(0, |a| a.waiting)
}

pub fn running(s: &StatusReply, action: &str) -> u64 {
    s.actions
        .iter()
        .find(|a| a.action == action)
        .map_or(0, |a| a.running)
}

pub fn done(s: &StatusReply, action: &str) -> u64 {
    s.actions
        .iter()
        .find(|a| a.action == action)
        .map_or(0, |a| a.done)
}

/// A mover: a protocol client plus a copytool handle on the fake library
/// (registered for an archive id nobody uses, only to call begin/end).
pub struct Agent {
    pub client: Client,
    pub ct: Copytool,
    /// Every (cookie, dfid) ever handed to this agent id.
    pub seen: HashSet<(u64, u32)>,
}

pub fn llapi(sim: &Sim) -> Arc<Llapi> {
    Llapi::load(Some(&sim.bins.lib)).unwrap()
}

impl Agent {
    pub fn connect(
        sim: &Sim,
        d: &Daemon,
        id: &str,
        running: Vec<QueueItem>,
    ) -> Result<Agent, ClientError> {
        let stream = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        let client = Client::handshake(
            stream,
            format!("127.0.0.1:{}", d.port),
            Ehlo {
                protocol_version: PROTOCOL_VERSION,
                client_id: id.into(),
                role: Role::Agent,
                fsname: Some(FSNAME.into()),
                archive_ids: vec![1],
                running,
            },
        )?;
        let ct = llapi(sim)
            .copytool_register(&sim.root, &[77], true)
            .unwrap();
        Ok(Agent {
            client,
            ct,
            seen: HashSet::new(),
        })
    }

    pub fn recv(&mut self, max_archive: Option<u32>, wait_ms: u64) -> Vec<WireItem> {
        match self
            .client
            .call(Request::Recv(Recv {
                max_archive,
                max_restore: None,
                max_remove: None,
                max_bytes: 1 << 20,
                wait_ms: Some(wait_ms),
            }))
            .unwrap()
        {
            Response::Batch(b) => {
                if !b.items.is_empty() {
                    assert_eq!(b.fsname, FSNAME);
                    assert_eq!(b.archive_id, 1);
                }
                for it in &b.items {
                    if it.action != 23 {
                        assert!(
                            self.seen.insert((it.cookie, it.dfid.oid)),
                            "request {:#x} handed out twice",
                            it.cookie
                        );
                    }
                }
                b.items
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// begin + end through the fake library, then `done`.
    pub fn complete(&mut self, it: &WireItem) {
        let item: ActionItem = it.clone().into();
        assert_eq!(item.action, HsmAction::Archive);
        let ca = self.ct.action_begin(&item, -1, 0, false).unwrap();
        ca.end(item.extent, HP_FLAG_COMPLETED, 0).unwrap();
        self.client
            .call(Request::Done(Done {
                cookie: it.cookie,
                dfid: it.dfid,
                status: 0,
            }))
            .unwrap();
    }

    /// Receives and completes until `n` requests were completed.
    pub fn work(&mut self, n: usize) -> usize {
        let mut completed = 0;
        let ok = poll_until(Duration::from_secs(30), || {
            for it in self.recv(None, 100) {
                self.complete(&it);
                completed += 1;
            }
            (completed >= n).then_some(())
        });
        assert!(ok.is_some(), "only {completed} of {n} requests came");
        completed
    }
}
