//! Helpers for integration tests that run the simulator and copytools as
//! child processes: children are killed on drop (even on panic), their
//! stderr is collected, and conditions are polled with deadlines.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Poll `cond` every 20 ms until it returns `Some`, or `None` after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) and reaped on drop, with its stderr
/// (and optionally stdout) captured line by line.
#[derive(Debug)]
pub struct ChildGuard {
    /// Short name used in dumps.
    pub name: String,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(r: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => sink.lock().unwrap_or_else(|p| p.into_inner()).push(l),
                Err(_) => break,
            }
        }
    });
}

impl ChildGuard {
    /// Spawn `cmd` with piped stdout and stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<ChildGuard> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        if let Some(e) = child.stderr.take() {
            collect(e, stderr.clone());
        }
        if let Some(o) = child.stdout.take() {
            collect(o, stdout.clone());
        }
        Ok(ChildGuard {
            name: name.to_owned(),
            child: Some(child),
            stderr,
            stdout,
        })
    }

    /// Lines of stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Lines of stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send a signal with `kill(1)` (tests have no unsafe).
    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        if let Some(pid) = self.pid() {
            let st = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status()?;
            if !st.success() {
                return Err(std::io::Error::other(format!("kill -{sig} {pid} failed")));
            }
        }
        Ok(())
    }

    /// Wait for exit at most `timeout`; `None` if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        poll_until(timeout, || child.try_wait().ok().flatten())
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything captured, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!("---- {} stderr ----\n", self.name);
        for l in self.stderr_lines() {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

/// The cargo profile dir and the fake library folder, or a clear error
/// telling to build the fake library first.
pub fn fake_lib_dir_or_explain() -> Result<(PathBuf, PathBuf), String> {
    let profile = crate::paths::profile_dir_from_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = crate::paths::fake_lib_dir(&profile)
        .map_err(|e| format!("{e} (run `cargo build -p lustre-sim-fakelib` first)"))?;
    Ok((profile, dir))
}

/// Start `lustre-simd` (at `exe`) on `root` and wait for its ready line.
pub fn start_simd(exe: &Path, root: &Path, fsname: &str, mdts: u32) -> Result<ChildGuard, String> {
    start_simd_with(exe, root, fsname, mdts, &[])
}

/// [`start_simd`] with extra arguments (e.g. `--trace FILE`).
pub fn start_simd_with(
    exe: &Path,
    root: &Path,
    fsname: &str,
    mdts: u32,
    extra: &[&std::ffi::OsStr],
) -> Result<ChildGuard, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("--fsname")
        .arg(fsname)
        .arg("--mdts")
        .arg(mdts.to_string())
        .args(extra);
    let mut g = ChildGuard::spawn("lustre-simd", cmd)
        .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
    let ready = poll_until(Duration::from_secs(20), || {
        g.stdout_lines()
            .iter()
            .any(|l| l.starts_with("lustre-simd: ready "))
            .then_some(())
    });
    if ready.is_none() || !g.is_running() {
        return Err(format!("lustre-simd did not get ready\n{}", g.dump()));
    }
    Ok(g)
}
