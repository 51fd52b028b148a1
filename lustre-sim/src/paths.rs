//! Where things are: built artefacts, and the layout of a simulated mount.
//!
//! A simulated mount `DIR` contains:
//! - `DIR/.lustre/fid/`: exists so that copytools' "is this Lustre" checks pass;
//! - `DIR/.lustre-sim/`: the simulator's own state ([`STATE_DIR`]):
//!   `sim.sock` (control socket), `state.json` (persisted state), `fsname`,
//!   `volatile/` (restore targets), `agents/` (registration FIFOs).

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::SimError;

/// Path of the `lhsmtool-sim` C copytool executable, built by `build.rs`.
pub const LHSMTOOL_SIM: &str = env!("LUSTRE_SIM_LHSMTOOL");

/// Folder holding the link stub `liblustreapi.so` (SONAME `liblustreapi.so.1`)
/// to *link* C programs against; at run time use [`fake_lib_dir`] instead.
pub const LINK_STUB_DIR: &str = env!("LUSTRE_SIM_LINK_STUB_DIR");

/// Our C headers (`lustre/lustreapi.h`, `linux/lustre/lustre_user.h`).
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lustre-bindings/include");

/// Name of the simulator's private folder inside a mount.
pub const STATE_DIR: &str = ".lustre-sim";

/// The control socket of the simulator serving `root`.
pub fn sock_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("sim.sock")
}

/// The persisted state file of the simulator serving `root`.
pub fn state_file(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("state.json")
}

/// Where volatile (restore target) files are created.
pub fn volatile_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("volatile")
}

/// Where the fake library creates registration FIFOs.
pub fn agents_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("agents")
}

/// Create `<profile_dir>/fake-lustre/liblustreapi.so.1 -> ../liblustreapi.so`
/// and return `<profile_dir>/fake-lustre`, the folder to put on
/// `LD_LIBRARY_PATH` so programs linked against `liblustreapi.so.1` load the
/// fake. `liblustreapi.so` itself is built by `cargo build -p lustre-sim-fakelib`.
pub fn fake_lib_dir(profile_dir: &Path) -> io::Result<PathBuf> {
    let lib = profile_dir.join("liblustreapi.so");
    if !lib.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is missing: run `cargo build -p lustre-sim-fakelib` first",
                lib.display()
            ),
        ));
    }
    let dir = profile_dir.join("fake-lustre");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("liblustreapi.so.1");
    match std::fs::read_link(&link) {
        Ok(target) if target == Path::new("../liblustreapi.so") => {}
        _ => {
            // Replace whatever is there atomically (several tests may race).
            let tmp = dir.join(format!(".liblustreapi.so.1.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink("../liblustreapi.so", &tmp)?;
            std::fs::rename(&tmp, &link)?;
        }
    }
    Ok(dir)
}

/// The cargo profile folder (`target/debug`) of the running executable:
/// `target/debug/deps/it-xxxx` and `target/debug/lustre-simd` both give
/// `target/debug`.
pub fn profile_dir_from_exe() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| io::Error::other("current_exe has no parent"))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Make `path` absolute and lexically normal without requiring that it
/// exists: the longest existing prefix is canonicalized.
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    if let Ok(c) = abs.canonicalize() {
        return Ok(c);
    }
    let mut tail = Vec::new();
    let mut cur = abs.as_path();
    loop {
        match cur.parent() {
            Some(parent) => {
                if let Some(name) = cur.file_name() {
                    tail.push(name.to_owned());
                }
                if let Ok(c) = parent.canonicalize() {
                    let mut out = c;
                    for t in tail.iter().rev() {
                        out.push(t);
                    }
                    return Ok(out);
                }
                cur = parent;
            }
            None => return Ok(abs),
        }
    }
}

/// Find the simulated mount containing `path`: the nearest ancestor (or
/// `path` itself) that has a `.lustre-sim/` folder.
pub fn find_mount_root(path: &Path) -> Result<PathBuf, SimError> {
    let abs = absolute(path).map_err(|e| SimError::io(format!("{}", path.display()), e))?;
    for dir in abs.ancestors() {
        if dir.join(STATE_DIR).is_dir() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(SimError::NotASimMount {
        path: path.to_path_buf(),
    })
}

/// `abs` relative to `root` as a `/`-joined string ("" for the root itself),
/// or `None` when `abs` is not under `root` or goes through `..`.
pub fn relative(root: &Path, abs: &Path) -> Option<String> {
    let rest = abs.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let root = Path::new("/mnt/fs");
        assert_eq!(relative(root, Path::new("/mnt/fs")).as_deref(), Some(""));
        assert_eq!(
            relative(root, Path::new("/mnt/fs/a/b")).as_deref(),
            Some("a/b")
        );
        assert_eq!(relative(root, Path::new("/mnt/other")), None);
    }

    #[test]
    fn find_root_of_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(STATE_DIR)).unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let root = find_mount_root(&dir.path().join("sub/missing")).unwrap();
        assert_eq!(root, dir.path().canonicalize().unwrap());
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_mount_root(other.path()),
            Err(SimError::NotASimMount { .. })
        ));
    }
}
