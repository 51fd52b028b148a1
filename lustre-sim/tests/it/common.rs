//! Shared fixtures: a simulator in a tempdir, copytools, lfs-sim.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use lustre_sim::testing::{ChildGuard, poll_until};

/// Default deadline for polls.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running simulator and its folders.
pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub hsm: PathBuf,
    pub fsname: String,
    pub mdts: u32,
    pub lib_dir: PathBuf,
    pub simd: Option<ChildGuard>,
    pub copytools: Vec<ChildGuard>,
}

impl Env {
    pub fn new(fsname: &str, mdts: u32) -> Env {
        Self::with_simd_args(fsname, mdts, &[])
    }

    /// A simulator started with extra arguments; `{tmp}` in them is replaced
    /// by the test's temporary folder.
    pub fn with_simd_args(fsname: &str, mdts: u32, extra: &[&str]) -> Env {
        let (_, lib_dir) =
            lustre_sim::testing::fake_lib_dir_or_explain().unwrap_or_else(|e| panic!("{e}"));
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("mnt");
        let hsm = tmp.path().join("hsm");
        std::fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let mut env = Env {
            _tmp: tmp,
            root,
            hsm,
            fsname: fsname.to_owned(),
            mdts,
            lib_dir,
            simd: None,
            copytools: Vec::new(),
        };
        let tmp_dir = env._tmp.path().to_string_lossy().into_owned();
        let extra: Vec<std::ffi::OsString> = extra
            .iter()
            .map(|a| a.replace("{tmp}", &tmp_dir).into())
            .collect();
        let extra: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_os_str()).collect();
        env.start_simd_with(&extra);
        env
    }

    pub fn start_simd(&mut self) {
        self.start_simd_with(&[]);
    }

    pub fn start_simd_with(&mut self, extra: &[&std::ffi::OsStr]) {
        let g = lustre_sim::testing::start_simd_with(
            Path::new(env!("CARGO_BIN_EXE_lustre-simd")),
            &self.root,
            &self.fsname,
            self.mdts,
            extra,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.simd = Some(g);
    }

    /// Start `lhsmtool-sim` with extra arguments; waits until registered.
    pub fn copytool(&mut self, extra: &[&str]) -> usize {
        let mut cmd = Command::new(lustre_sim::paths::LHSMTOOL_SIM);
        cmd.env("LD_LIBRARY_PATH", &self.lib_dir)
            .arg("--hsm-root")
            .arg(&self.hsm)
            .args(extra)
            .arg(&self.root);
        let g = ChildGuard::spawn("lhsmtool-sim", cmd).expect("spawn lhsmtool-sim");
        let ok = poll_until(DEADLINE, || {
            g.stderr_lines()
                .iter()
                .any(|l| l.contains("registered on"))
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "copytool did not register\n{}\n{}",
            g.dump(),
            self.dump()
        );
        self.copytools.push(g);
        self.copytools.len() - 1
    }

    /// Start `lhsmtool-sim` without waiting for its registration.
    pub fn spawn_copytool(&self, extra: &[&str]) -> ChildGuard {
        let mut cmd = Command::new(lustre_sim::paths::LHSMTOOL_SIM);
        cmd.env("LD_LIBRARY_PATH", &self.lib_dir)
            .arg("--hsm-root")
            .arg(&self.hsm)
            .args(extra)
            .arg(&self.root);
        ChildGuard::spawn("lhsmtool-sim", cmd).expect("spawn lhsmtool-sim")
    }

    pub fn ct_lines(&self, i: usize) -> Vec<String> {
        self.copytools[i].stderr_lines()
    }

    /// Poll until the copytool logged `n` lines containing `pat`.
    pub fn wait_ct(&self, i: usize, pat: &str, n: usize) {
        let ok = poll_until(DEADLINE, || {
            (self.ct_lines(i).iter().filter(|l| l.contains(pat)).count() >= n).then_some(())
        });
        assert!(ok.is_some(), "waiting for {n} x {pat:?}\n{}", self.dump());
    }

    pub fn lfs(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lfs-sim"))
            .args(args)
            .current_dir(&self.root)
            .output()
            .expect("run lfs-sim")
    }

    /// Run lfs-sim and require success; returns stdout.
    pub fn lfs_ok(&self, args: &[&str]) -> String {
        let out = self.lfs(args);
        assert!(
            out.status.success(),
            "lfs-sim {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.dump()
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn param(&self, name: &str) -> String {
        self.lfs_ok(&["get_param", "-n", name])
    }

    pub fn set(&self, name: &str, value: &str) {
        self.lfs_ok(&["set_param", &format!("{name}={value}")]);
    }

    pub fn mdt(&self, i: u32) -> String {
        format!("mdt.{}-MDT{:04x}", self.fsname, i)
    }

    pub fn active(&self, mdt: u32) -> Vec<String> {
        self.param(&format!("{}.hsm.active_requests", self.mdt(mdt)))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn state(&self, path: &Path) -> String {
        self.lfs_ok(&["hsm_state", path.to_str().unwrap()])
            .trim()
            .to_owned()
    }

    /// Poll until `hsm_state` of every file contains `needle`.
    pub fn wait_state(&self, files: &[PathBuf], needle: &str) {
        for f in files {
            let ok = poll_until(DEADLINE, || self.state(f).contains(needle).then_some(()));
            assert!(
                ok.is_some(),
                "{} never became {needle:?}: {}\n{}",
                f.display(),
                self.state(f),
                self.dump()
            );
        }
    }

    pub fn dump(&self) -> String {
        let mut s = String::new();
        if let Some(g) = &self.simd {
            s.push_str(&g.dump());
        }
        for c in &self.copytools {
            s.push_str(&c.dump());
        }
        s
    }
}

/// Write `n` files with distinct pseudo-random content; returns their paths.
pub fn make_files(root: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = root.join(format!("{prefix}{i:03}"));
            let len = 1 + (i * 7919) % 70_000;
            let data: Vec<u8> = (0..len).map(|j| ((i * 31 + j * 17) % 251) as u8).collect();
            std::fs::write(&p, data).unwrap();
            p
        })
        .collect()
}

pub fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}
