//! End-to-end harness for coordinatool on `lustre-sim`.
//!
//! A [`Stack`] starts real processes, each in its own temporary folders:
//! `lustre-simd` (the simulated mount and MDT), `coordinatoold` (on an
//! ephemeral port), and any number of `lhsmtool-sim` movers running under
//! `LD_PRELOAD=libcoordinatool_preload.so`. Every process's output goes to a
//! log file; when a test panics the logs are printed, and every process is
//! killed on drop, panicking or not. Waiting is always on a condition with a
//! deadline ([`wait_until`]), never a fixed sleep.
//!
//! The binaries come from the workspace's target folder (the one the running
//! test or demo lives in), so `cargo build --workspace` must have run first;
//! a missing one is reported with the command to build it.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, anyhow, bail};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Default deadline for readiness conditions.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The target profile folder (`target/debug`) of the running executable.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/<profile>/deps.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Paths of every artefact the stack needs.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `lustre-simd`.
    pub simd: PathBuf,
    /// `lfs-sim`.
    pub lfs: PathBuf,
    /// `coordinatoold`.
    pub daemon: PathBuf,
    /// `coordinatool-ctl`.
    pub ctl: PathBuf,
    /// The fake `liblustreapi.so`.
    pub fake_lib: PathBuf,
    /// A folder holding `liblustreapi.so.1` (for `LD_LIBRARY_PATH`).
    pub fake_lib_dir: PathBuf,
    /// `libcoordinatool_preload.so`.
    pub shim: PathBuf,
    /// The C copytool `lhsmtool-sim`.
    pub copytool: PathBuf,
}

impl Artifacts {
    /// Finds every artefact, or says which is missing and how to build it.
    pub fn locate() -> Result<Artifacts> {
        let dir = profile_dir()?;
        let need = |name: &str, pkg: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                bail!(
                    "{} is missing: run `cargo build --workspace` (or `cargo build -p {pkg}`) first",
                    p.display()
                )
            }
        };
        let fake_lib = need("liblustreapi.so", "lustre-sim-fakelib")?;
        let fake_lib_dir = lustre_sim::paths::fake_lib_dir(&dir).with_context(|| {
            format!(
                "cannot prepare the fake library folder in {}",
                dir.display()
            )
        })?;
        let copytool = PathBuf::from(lustre_sim::paths::LHSMTOOL_SIM);
        if !copytool.exists() {
            bail!(
                "{} is missing: run `cargo build -p lustre-sim` first",
                copytool.display()
            );
        }
        Ok(Artifacts {
            simd: need("lustre-simd", "lustre-sim")?,
            lfs: need("lfs-sim", "lustre-sim")?,
            daemon: need("coordinatoold", "coordinatoold")?,
            ctl: need("coordinatool-ctl", "coordinatool-ctl")?,
            fake_lib,
            fake_lib_dir,
            shim: need("libcoordinatool_preload.so", "coordinatool-preload")?,
            copytool,
        })
    }
}

/// Polls `cond` every few milliseconds until it returns `Some`, or fails
/// with `what` once `timeout` has passed.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A child process with its output in a log file; killed on drop.
#[derive(Debug)]
pub struct Proc {
    /// A short name for logs ("sim", "daemon", "agent-1").
    pub name: String,
    child: Option<Child>,
    /// The combined stdout/stderr log.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; fails early if the process exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let name = self.name.clone();
        wait_until(&format!("{name} to log {needle:?}"), timeout, || {
            let text = self.log_text();
            if let Some(pos) = text.find(needle) {
                let line_end = text[pos..].find('\n').map_or(text.len(), |e| pos + e);
                return Ok(Some(text[pos..line_end].to_string()));
            }
            if let Some(status) = self.try_wait()? {
                bail!("{name} exited ({status}) before logging {needle:?}");
            }
            Ok(None)
        })
    }

    /// Whether it has exited (without blocking).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// Sends a signal by name (`TERM`, `KILL`, `HUP`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()?;
        if !st.success() {
            bail!("kill -{sig} {pid} ({}) failed", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then waits for exit (SIGKILL after `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Ok(Some(st)) = self.try_wait() {
            return Ok(st);
        }
        let _ = self.signal("TERM");
        let name = self.name.clone();
        let res = wait_until(&format!("{name} to exit after SIGTERM"), timeout, || {
            self.try_wait()
        });
        match res {
            Ok(st) => Ok(st),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for exit (with a deadline) and returns the status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), timeout, || self.try_wait())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion, capturing stdout and stderr.
pub fn run_capture(mut cmd: Command) -> Result<(ExitStatus, String, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Options of a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Filesystem name of the simulated mount.
    pub fsname: String,
    /// MDT count.
    pub mdts: u32,
    /// `max_requests` set on every MDT once the sim is up.
    pub max_requests: Option<u32>,
    /// Extra `key value` lines for the daemon's configuration file.
    pub daemon_conf: Vec<String>,
    /// Archive ids the daemon registers for (`--archive`); empty: any.
    pub daemon_archives: Vec<u32>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            fsname: "testfs".into(),
            mdts: 1,
            max_requests: Some(1000),
            daemon_conf: vec!["client_grace_ms 5000".into()],
            daemon_archives: Vec::new(),
        }
    }
}

/// Options of one mover.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// `client_id` (must be unique per stack).
    pub client_id: String,
    /// `--archive` ids given to the copytool.
    pub archives: Vec<u32>,
    /// Extra copytool arguments (`--delay-ms 50`, `--nonblock`, ...).
    pub extra_args: Vec<String>,
    /// Extra environment (`COORDINATOOL_MAX_ARCHIVE=2`, ...).
    pub env: Vec<(String, String)>,
}

/// A whole local HSM stack on the simulator.
#[derive(Debug)]
pub struct Stack {
    /// Where the artefacts are.
    pub art: Artifacts,
    /// Root of everything (removed on drop unless the test failed).
    pub dir: tempfile::TempDir,
    /// The simulated mount point.
    pub mount: PathBuf,
    /// The movers' archive folder (`--hsm-root`).
    pub hsm_root: PathBuf,
    /// The daemon's state folder.
    pub state_dir: PathBuf,
    /// The daemon's configuration file.
    pub conf: PathBuf,
    /// Options in force.
    pub opts: StackOptions,
    /// The simulator.
    pub sim: Option<Proc>,
    /// The daemon.
    pub daemon: Option<Proc>,
    /// The daemon's `host:port`, once it listens.
    pub daemon_addr: Option<String>,
    /// The movers, by client id.
    pub agents: Vec<(String, Proc)>,
    restarts: u32,
    seq: u32,
}

impl Stack {
    /// Creates the folders and starts the simulator (no daemon yet).
    pub fn new(opts: StackOptions) -> Result<Stack> {
        let art = Artifacts::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("coordinatool-e2e-")
            .tempdir()?;
        let mount = dir.path().join("mnt");
        let hsm_root = dir.path().join("archive");
        let state_dir = dir.path().join("state");
        for d in [&mount, &hsm_root, &state_dir] {
            fs::create_dir_all(d)?;
        }
        let conf = dir.path().join("coordinatool.conf");
        fs::write(&conf, opts.daemon_conf.join("\n") + "\n")?;
        let mut stack = Stack {
            art,
            dir,
            mount,
            hsm_root,
            state_dir,
            conf,
            opts,
            sim: None,
            daemon: None,
            daemon_addr: None,
            agents: Vec::new(),
            restarts: 0,
            seq: 0,
        };
        stack.start_sim()?;
        if let Some(n) = stack.opts.max_requests {
            for mdt in 0..stack.opts.mdts {
                stack.set_param(
                    &format!("{}.max_requests", stack.mdt_hsm(mdt)),
                    &n.to_string(),
                )?;
            }
        }
        Ok(stack)
    }

    /// `mdt.<fs>-MDT000N.hsm`.
    pub fn mdt_hsm(&self, mdt: u32) -> String {
        format!("mdt.{}-MDT{:04x}.hsm", self.opts.fsname, mdt)
    }

    /// A fresh log file for one process run (`NN-name.log`), so that
    /// readiness lines are always read from the current run.
    fn log_path(&mut self, name: &str) -> PathBuf {
        self.seq += 1;
        self.dir.path().join(format!("{:02}-{name}.log", self.seq))
    }

    /// Starts (or restarts) `lustre-simd`.
    pub fn start_sim(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.art.simd);
        cmd.arg("--root")
            .arg(&self.mount)
            .arg("--fsname")
            .arg(&self.opts.fsname)
            .arg("--mdts")
            .arg(self.opts.mdts.to_string());
        let log = self.log_path("sim");
        let mut p = Proc::spawn("sim", cmd, &log)?;
        p.wait_for_log("lustre-simd: ready", READY_TIMEOUT)?;
        self.sim = Some(p);
        Ok(())
    }

    /// Starts (or restarts) the daemon and waits until it listens and is ready.
    pub fn start_daemon(&mut self) -> Result<String> {
        self.restarts += 1;
        let mut cmd = Command::new(&self.art.daemon);
        // The first run takes an ephemeral port; restarts reuse it, as a
        // production daemon keeps its configured port, so movers reconnect.
        let port = self
            .daemon_host_port()
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|_| "0".into());
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port)
            .arg("--config")
            .arg(&self.conf)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--lustreapi")
            .arg(&self.art.fake_lib)
            .arg("-v");
        for a in &self.opts.daemon_archives {
            cmd.arg("--archive").arg(a.to_string());
        }
        cmd.arg(&self.mount);
        cmd.env_remove("NOTIFY_SOCKET");
        // One log file per run, so readiness is read from this run only.
        let log = self.log_path("daemon");
        let mut p = Proc::spawn(&format!("daemon#{}", self.restarts), cmd, &log)?;
        let line = p.wait_for_log("listening on ", READY_TIMEOUT)?;
        let addr = line
            .trim_start_matches("listening on ")
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap_or_default()
            .to_string();
        p.wait_for_log("ready", READY_TIMEOUT)?;
        self.daemon = Some(p);
        self.daemon_addr = Some(addr.clone());
        Ok(addr)
    }

    /// `(host, port)` of the running daemon.
    pub fn daemon_host_port(&self) -> Result<(String, u16)> {
        let addr = self
            .daemon_addr
            .as_ref()
            .ok_or_else(|| anyhow!("the daemon is not started"))?;
        let (h, p) = addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("bad daemon address {addr:?}"))?;
        Ok((h.to_string(), p.parse()?))
    }

    /// Starts a mover (`lhsmtool-sim` under the preload shim).
    pub fn start_agent(&mut self, a: AgentOptions) -> Result<()> {
        let (host, port) = self.daemon_host_port()?;
        let mut cmd = Command::new(&self.art.copytool);
        for id in &a.archives {
            cmd.arg("--archive").arg(id.to_string());
        }
        cmd.arg("--hsm-root").arg(&self.hsm_root);
        cmd.args(&a.extra_args);
        cmd.arg(&self.mount);
        cmd.env("LD_LIBRARY_PATH", &self.art.fake_lib_dir)
            .env("LD_PRELOAD", &self.art.shim)
            .env("COORDINATOOL_CONF", &self.conf)
            .env("COORDINATOOL_HOST", host)
            .env("COORDINATOOL_PORT", port.to_string())
            .env("COORDINATOOL_CLIENT_ID", &a.client_id);
        for (k, v) in &a.env {
            cmd.env(k, v);
        }
        let log = self.log_path(&format!("agent-{}", a.client_id));
        let p = Proc::spawn(&format!("agent {}", a.client_id), cmd, &log)?;
        self.agents.push((a.client_id, p));
        Ok(())
    }

    /// The mover with that client id.
    pub fn agent(&mut self, id: &str) -> Result<&mut Proc> {
        self.agents
            .iter_mut()
            .find(|(n, _)| n == id)
            .map(|(_, p)| p)
            .ok_or_else(|| anyhow!("no agent {id:?}"))
    }

    /// Runs `lfs-sim` with arguments; fails unless it exits 0.
    pub fn lfs(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.art.lfs);
        cmd.args(args);
        let (st, out, err) = run_capture(cmd)?;
        if !st.success() {
            bail!("lfs-sim {args:?} failed ({st}): {err}{out}");
        }
        Ok(out)
    }

    /// `lfs-sim set_param NAME=VALUE`.
    pub fn set_param(&self, name: &str, value: &str) -> Result<()> {
        let mount = self.mount.to_string_lossy().into_owned();
        self.lfs(&["set_param", "--mount", &mount, &format!("{name}={value}")])?;
        Ok(())
    }

    /// `lfs-sim get_param -n NAME`.
    pub fn get_param(&self, name: &str) -> Result<String> {
        let mount = self.mount.to_string_lossy().into_owned();
        self.lfs(&["get_param", "--mount", &mount, "-n", name])
    }

    /// The MDTs' `active_requests` lines (all MDTs).
    pub fn active_requests(&self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for mdt in 0..self.opts.mdts {
            let text = self.get_param(&format!("{}.active_requests", self.mdt_hsm(mdt)))?;
            lines.extend(
                text.lines()
                    .filter(|l| l.starts_with("fid="))
                    .map(str::to_string),
            );
        }
        Ok(lines)
    }

    /// Runs `coordinatool-ctl` against the daemon.
    pub fn ctl(&self, args: &[&str]) -> Result<(ExitStatus, String, String)> {
        let (host, port) = self.daemon_host_port()?;
        let mut cmd = Command::new(&self.art.ctl);
        cmd.arg("--host")
            .arg(host)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .env("COORDINATOOL_CONF", &self.conf);
        run_capture(cmd)
    }

    /// Creates `n` files of varied sizes under the mount, returning their paths.
    pub fn make_files(&self, dir: &str, n: usize, seed: u64) -> Result<Vec<PathBuf>> {
        let base = self.mount.join(dir);
        fs::create_dir_all(&base)?;
        let mut out = Vec::with_capacity(n);
        let mut x = seed | 1;
        for i in 0..n {
            let len = (i * 997 + 13) % 70_000;
            let mut data = Vec::with_capacity(len);
            for _ in 0..len {
                // xorshift: cheap, deterministic content
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push((x & 0xff) as u8);
            }
            let p = base.join(format!("file{i:05}"));
            fs::write(&p, &data)?;
            out.push(p);
        }
        Ok(out)
    }

    /// Runs one `lfs-sim` HSM command over many files (in chunks).
    pub fn hsm(&self, cmd: &str, files: &[PathBuf], extra: &[&str]) -> Result<()> {
        for chunk in files.chunks(200) {
            let mut args: Vec<String> = vec![cmd.to_string()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(chunk.iter().map(|p| p.to_string_lossy().into_owned()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.lfs(&refs)?;
        }
        Ok(())
    }

    /// `hsm_state` flags of a file, from `lfs-sim hsm_state` (`(0x0000000b)`).
    pub fn hsm_flags(&self, file: &Path) -> Result<u32> {
        Ok(self.hsm_flags_many(std::slice::from_ref(&file.to_path_buf()))?[0])
    }

    /// `hsm_state` flags of many files (one `lfs-sim` run per 200 files).
    pub fn hsm_flags_many(&self, files: &[PathBuf]) -> Result<Vec<u32>> {
        let mut flags = Vec::with_capacity(files.len());
        for chunk in files.chunks(200) {
            let mut args = vec!["hsm_state".to_string()];
            args.extend(chunk.iter().map(|p| p.to_string_lossy().into_owned()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = self.lfs(&refs)?;
            for line in out.lines().filter(|l| l.contains("(0x")) {
                let hex = &line[line.find("(0x").unwrap_or_default() + 3..];
                let end = hex.find(')').unwrap_or(hex.len());
                flags.push(
                    u32::from_str_radix(&hex[..end], 16)
                        .with_context(|| format!("unexpected hsm_state line {line:?}"))?,
                );
            }
        }
        if flags.len() != files.len() {
            bail!(
                "lfs-sim hsm_state printed {} states for {} files",
                flags.len(),
                files.len()
            );
        }
        Ok(flags)
    }

    /// How many of `files` have all `flags` bits and none of `absent`.
    pub fn count_flags(&self, files: &[PathBuf], flags: u32, absent: u32) -> Result<usize> {
        Ok(self
            .hsm_flags_many(files)?
            .into_iter()
            .filter(|f| f & flags == flags && f & absent == 0)
            .count())
    }

    /// Waits until every file has all `flags` bits set (and none of `absent`).
    pub fn wait_flags(
        &self,
        files: &[PathBuf],
        flags: u32,
        absent: u32,
        timeout: Duration,
    ) -> Result<()> {
        wait_until(
            &format!(
                "{} files to reach flags {flags:#x} without {absent:#x}",
                files.len()
            ),
            timeout,
            || Ok((self.count_flags(files, flags, absent)? == files.len()).then_some(())),
        )
    }

    /// Waits until the MDTs have no active request.
    pub fn wait_mdt_idle(&self, timeout: Duration) -> Result<()> {
        wait_until("the MDT to have no active requests", timeout, || {
            Ok(self.active_requests()?.is_empty().then_some(()))
        })
    }

    /// Every log, for a failing test.
    pub fn dump_logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let mut text = String::new();
            if let Ok(mut f) = File::open(p) {
                let _ = f.read_to_string(&mut text);
            }
            // Keep the tail: the end of a log is where failures show.
            let tail: String = if text.len() > 20_000 {
                let cut = text.len() - 20_000;
                let cut = (cut..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(cut);
                format!("[... {} bytes cut ...]\n{}", cut, &text[cut..])
            } else {
                text
            };
            out.push_str(&format!("===== {} =====\n{}\n", p.display(), tail));
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump_logs());
        }
        for (_, a) in &mut self.agents {
            a.kill();
        }
        if let Some(d) = &mut self.daemon {
            d.kill();
        }
        if let Some(s) = &mut self.sim {
            s.kill();
        }
    }
}

/// Reads a file's lines lazily (used for large logs).
pub fn count_lines_containing(path: &Path, needle: &str) -> Result<usize> {
    let f = File::open(path)?;
    Ok(BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| l.contains(needle))
        .count())
}
