//! `lfs-sim`: the `lfs hsm_*`, `lfs path2fid/fid2path` and `lctl
//! get_param/set_param` commands, for a `lustre-simd` mount.
//!
//! The simulator is found from each file's path (the nearest ancestor with
//! `.lustre-sim/`) or from `--mount DIR`.
//!
//! Exit codes: 0 success; 1 some operation failed (message on stderr naming
//! the file and the error, like `lfs`); 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use lustre_bindings::action::flags::*;
use lustre_sim::wire::{Client, Reply, Request, UserItem, WireFid};

#[derive(Debug, Parser)]
#[command(name = "lfs-sim", version, about = "lfs/lctl for lustre-sim mounts")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, ClapArgs)]
struct HsmArgs {
    /// Archive id (0: the file's, else default_archive_id).
    #[arg(short = 'a', long, default_value_t = 0)]
    archive: u32,
    /// Opaque data passed to the copytool (hai_data).
    #[arg(short = 'D', long, conflicts_with = "data_hex")]
    data: Option<String>,
    /// The same as hex digits, so any byte (NUL included) can be passed:
    /// `--data-hex 7461673d00`.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    data_hex: Option<HexData>,
    /// Read more files from FILE, one path per line (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    files_from: Option<PathBuf>,
    /// Files.
    #[arg(required_unless_present = "files_from")]
    files: Vec<PathBuf>,
}

/// Bytes given as hex (a newtype, so clap takes one value, not a list).
#[derive(Clone, Debug)]
struct HexData(Vec<u8>);

/// `--data-hex`: an even number of hex digits.
fn parse_hex(s: &str) -> Result<HexData, String> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return Err(format!(
            "odd number of hex digits ({}): bytes need two digits each",
            s.len()
        ));
    }
    let digit = |i: usize, c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!(
                "{:?} at position {} is not a hex digit",
                char::from(c),
                i + 1
            )),
        }
    };
    s.as_bytes()
        .chunks(2)
        .enumerate()
        .map(|(n, p)| Ok(digit(2 * n, p[0])? << 4 | digit(2 * n + 1, p[1])?))
        .collect::<Result<Vec<u8>, String>>()
        .map(HexData)
}

#[derive(Debug, ClapArgs)]
struct ParamArgs {
    /// The mount point (default: the one containing the current folder).
    #[arg(long)]
    mount: Option<PathBuf>,
    /// Print values only.
    #[arg(short = 'n')]
    no_name: bool,
    /// Parameter names (get) or NAME=VALUE (set).
    #[arg(required = true)]
    params: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Archive files.
    #[command(name = "hsm_archive")]
    HsmArchive(HsmArgs),
    /// Release archived files' data.
    #[command(name = "hsm_release")]
    HsmRelease(HsmArgs),
    /// Restore released files.
    #[command(name = "hsm_restore")]
    HsmRestore(HsmArgs),
    /// Remove files' archive copies.
    #[command(name = "hsm_remove")]
    HsmRemove(HsmArgs),
    /// Cancel the current request on files.
    #[command(name = "hsm_cancel")]
    HsmCancel(HsmArgs),
    /// Show files' HSM state.
    #[command(name = "hsm_state")]
    HsmState {
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print files' FIDs.
    #[command(name = "path2fid")]
    Path2fid {
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the paths of FIDs.
    #[command(name = "fid2path")]
    Fid2path {
        /// The mount point.
        #[arg(long)]
        mount: PathBuf,
        /// FIDs, with or without brackets.
        #[arg(required = true)]
        fids: Vec<String>,
    },
    /// Read MDT parameters (lctl get_param).
    #[command(name = "get_param")]
    GetParam(ParamArgs),
    /// Write MDT parameters (lctl set_param).
    #[command(name = "set_param")]
    SetParam(ParamArgs),
}

fn strerror(neg: i32) -> String {
    let s = std::io::Error::from_raw_os_error(neg.abs()).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

struct Failure;

fn fail(cmd: &str, what: &str, errno: i32) -> Failure {
    eprintln!("lfs-sim {cmd}: {what}: {}", strerror(errno));
    Failure
}

fn client_for(cmd: &str, path: &Path) -> Result<Client, Failure> {
    Client::for_path(path).map_err(|e| {
        eprintln!("lfs-sim {cmd}: '{}': {e}", path.display());
        Failure
    })
}

fn call(cmd: &str, what: &str, client: &mut Client, req: &Request) -> Result<Reply, Failure> {
    match client.call(req) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(errno)) => Err(fail(cmd, what, errno)),
        Err(e) => {
            eprintln!("lfs-sim {cmd}: {what}: {e}");
            Err(Failure)
        }
    }
}

fn fid_of(cmd: &str, client: &mut Client, path: &Path) -> Result<WireFid, Failure> {
    let what = format!("cannot get FID of '{}'", path.display());
    if let Err(e) = std::fs::symlink_metadata(path) {
        return Err(fail(cmd, &what, e.raw_os_error().unwrap_or(libc::EIO)));
    }
    match client.path2fid(path) {
        Ok(Ok(Reply::Fid(f))) => Ok(f),
        Ok(Ok(_)) => Err(fail(cmd, &what, libc::EPROTO)),
        Ok(Err(errno)) => Err(fail(cmd, &what, errno)),
        Err(e) => {
            eprintln!("lfs-sim {cmd}: {what}: {e}");
            Err(Failure)
        }
    }
}

/// Paths per `PathsToFids` call and items per HSM request.
const BATCH: usize = 8192;

/// The command-line files, then those of `--files-from`.
fn all_files(cmd: &str, a: &HsmArgs) -> Result<Vec<PathBuf>, Failure> {
    let mut files = a.files.clone();
    if let Some(from) = &a.files_from {
        let text = if from.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
        } else {
            std::fs::read_to_string(from)
        };
        match text {
            Ok(t) => files.extend(t.lines().filter(|l| !l.is_empty()).map(PathBuf::from)),
            Err(e) => {
                eprintln!("lfs-sim {cmd}: --files-from {}: {e}", from.display());
                return Err(Failure);
            }
        }
    }
    Ok(files)
}

/// Files of one mount, with their paths relative to its root.
struct MountBatch {
    root: PathBuf,
    files: Vec<(PathBuf, String)>,
}

/// Check that every file exists and group them by mount (with the
/// canonical parent folders and mount roots cached, so 100 000 files in one
/// folder cost one `lstat` each).
fn group_by_mount(cmd: &str, files: &[PathBuf]) -> (Vec<MountBatch>, bool) {
    use std::collections::HashMap;
    let mut ok = true;
    let mut parents: HashMap<PathBuf, Option<(PathBuf, PathBuf)>> = HashMap::new();
    let mut mounts: Vec<MountBatch> = Vec::new();
    for f in files {
        let what = format!("cannot get FID of '{}'", f.display());
        let md = match std::fs::symlink_metadata(f) {
            Ok(md) => md,
            Err(e) => {
                let _ = fail(cmd, &what, e.raw_os_error().unwrap_or(libc::EIO));
                ok = false;
                continue;
            }
        };
        let abs = match (md.file_type().is_symlink(), f.parent(), f.file_name()) {
            (false, Some(parent), Some(name)) => {
                let key = parent.to_path_buf();
                let entry = parents.entry(key).or_insert_with(|| {
                    let dir = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    let canon = lustre_sim::paths::absolute(dir).ok()?;
                    let root = lustre_sim::paths::find_mount_root(&canon).ok()?;
                    Some((canon, root))
                });
                entry
                    .as_ref()
                    .map(|(canon, root)| (canon.join(name), root.clone()))
            }
            _ => lustre_sim::paths::absolute(f).ok().and_then(|abs| {
                let root = lustre_sim::paths::find_mount_root(&abs).ok()?;
                Some((abs, root))
            }),
        };
        let Some((abs, root)) = abs else {
            eprintln!(
                "lfs-sim {cmd}: '{}': not inside a lustre-sim mount (no .lustre-sim/ found)",
                f.display()
            );
            ok = false;
            continue;
        };
        let Some(rel) = lustre_sim::paths::relative(&root, &abs) else {
            let _ = fail(cmd, &what, libc::EINVAL);
            ok = false;
            continue;
        };
        match mounts.iter_mut().find(|m| m.root == root) {
            Some(m) => m.files.push((f.clone(), rel)),
            None => mounts.push(MountBatch {
                root,
                files: vec![(f.clone(), rel)],
            }),
        }
    }
    (mounts, ok)
}

fn hsm(cmd: &str, action: u32, a: &HsmArgs) -> Result<(), Failure> {
    let files = all_files(cmd, a)?;
    let data = match (&a.data_hex, &a.data) {
        (Some(h), _) => h.0.clone(),
        (None, Some(d)) => d.clone().into_bytes(),
        (None, None) => Vec::new(),
    };
    let (mounts, mut ok) = group_by_mount(cmd, &files);
    for mount in mounts {
        let mut c = match Client::connect(&mount.root) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lfs-sim {cmd}: '{}': {e}", mount.root.display());
                ok = false;
                continue;
            }
        };
        for chunk in mount.files.chunks(BATCH) {
            let rels = chunk.iter().map(|(_, r)| r.clone()).collect();
            let fids = match call(
                cmd,
                "cannot get FIDs",
                &mut c,
                &Request::PathsToFids { rels },
            ) {
                Ok(Reply::Fids(f)) if f.len() == chunk.len() => f,
                Ok(_) => {
                    let _ = fail(cmd, "cannot get FIDs", libc::EPROTO);
                    return Err(Failure);
                }
                Err(_) => return Err(Failure),
            };
            let mut good: Vec<(&PathBuf, WireFid)> = Vec::with_capacity(chunk.len());
            for ((path, _), fid) in chunk.iter().zip(fids) {
                match fid {
                    Ok(fid) => good.push((path, fid)),
                    Err(errno) => {
                        let what = format!("cannot get FID of '{}'", path.display());
                        let _ = fail(cmd, &what, errno);
                        ok = false;
                    }
                }
            }
            if action == HUA_RELEASE {
                for (path, fid) in good {
                    let what = format!("'{}'", path.display());
                    ok &= call(cmd, &what, &mut c, &Request::Release { fid }).is_ok();
                }
                continue;
            }
            let request = |items: &[(&PathBuf, WireFid)]| Request::HsmRequest {
                action,
                archive_id: a.archive,
                flags: 0,
                items: items
                    .iter()
                    .map(|&(_, fid)| UserItem {
                        fid,
                        offset: 0,
                        length: u64::MAX,
                    })
                    .collect(),
                data: data.clone(),
            };
            if good.is_empty() {
                continue;
            }
            // One request for the whole chunk; the simulator checks every
            // item before acting, so on failure nothing was done and each
            // file is retried alone to name the culprits.
            match c.call(&request(&good)) {
                Ok(Ok(_)) => {}
                Ok(Err(_)) if good.len() > 1 => {
                    for one in good.chunks(1) {
                        let what = format!("'{}'", one[0].0.display());
                        ok &= call(cmd, &what, &mut c, &request(one)).is_ok();
                    }
                }
                Ok(Err(errno)) => {
                    let _ = fail(cmd, &format!("'{}'", good[0].0.display()), errno);
                    ok = false;
                }
                Err(e) => {
                    eprintln!("lfs-sim {cmd}: {e}");
                    return Err(Failure);
                }
            }
        }
    }
    if ok { Ok(()) } else { Err(Failure) }
}

fn state_text(path: &Path, st: &lustre_sim::wire::HsmState) -> String {
    let mut s = format!("{}: (0x{:08x})", path.display(), st.states);
    for (bit, name) in [
        (HS_RELEASED, "released"),
        (HS_EXISTS, "exists"),
        (HS_DIRTY, "dirty"),
        (HS_ARCHIVED, "archived"),
        (HS_NORELEASE, "never_release"),
        (HS_NOARCHIVE, "never_archive"),
        (HS_LOST, "lost_from_hsm"),
    ] {
        if st.states & bit != 0 {
            s.push(' ');
            s.push_str(name);
        }
    }
    if st.archive_id != 0 {
        s.push_str(&format!(", archive_id:{}", st.archive_id));
    }
    s
}

fn params(cmd: &str, a: &ParamArgs, set: bool) -> Result<(), Failure> {
    let start = a.mount.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut c = client_for(cmd, &start)?;
    let mut ok = true;
    for p in &a.params {
        if set {
            let Some((name, value)) = p.split_once('=') else {
                eprintln!("lfs-sim {cmd}: {p}: expected NAME=VALUE");
                ok = false;
                continue;
            };
            let req = Request::SetParam {
                name: name.to_owned(),
                value: value.to_owned(),
            };
            match call(
                cmd,
                &format!("error: setting '{name}'='{value}'"),
                &mut c,
                &req,
            ) {
                Ok(_) => {
                    if !a.no_name {
                        println!("{name}={value}");
                    }
                }
                Err(_) => ok = false,
            }
        } else {
            let req = Request::GetParam { pattern: p.clone() };
            match call(
                cmd,
                &format!("error: get_param: param_path '{p}'"),
                &mut c,
                &req,
            ) {
                Ok(Reply::Params(values)) => {
                    for (name, value) in values {
                        let multi = value.contains('\n')
                            || p.ends_with("active_requests")
                            || p.ends_with("actions")
                            || p.ends_with("agents");
                        match (a.no_name, multi) {
                            (true, _) => {
                                if !value.is_empty() {
                                    println!("{value}");
                                }
                            }
                            (false, false) => println!("{name}={value}"),
                            (false, true) => {
                                println!("{name}=");
                                if !value.is_empty() {
                                    println!("{value}");
                                }
                            }
                        }
                    }
                }
                Ok(_) => ok = false,
                Err(_) => ok = false,
            }
        }
    }
    if ok { Ok(()) } else { Err(Failure) }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::HsmArchive(a) => hsm("hsm_archive", HUA_ARCHIVE, &a),
        Cmd::HsmRelease(a) => hsm("hsm_release", HUA_RELEASE, &a),
        Cmd::HsmRestore(a) => hsm("hsm_restore", HUA_RESTORE, &a),
        Cmd::HsmRemove(a) => hsm("hsm_remove", HUA_REMOVE, &a),
        Cmd::HsmCancel(a) => hsm("hsm_cancel", HUA_CANCEL, &a),
        Cmd::HsmState { files } => {
            let mut ok = true;
            for f in &files {
                let r = (|| {
                    let mut c = client_for("hsm_state", f)?;
                    let fid = fid_of("hsm_state", &mut c, f)?;
                    let what = format!("cannot get hsm state for '{}'", f.display());
                    match call("hsm_state", &what, &mut c, &Request::StateGet { fid })? {
                        Reply::State(st) => println!("{}", state_text(f, &st)),
                        _ => return Err(fail("hsm_state", &what, libc::EPROTO)),
                    }
                    Ok(())
                })();
                ok &= r.is_ok();
            }
            if ok { Ok(()) } else { Err(Failure) }
        }
        Cmd::Path2fid { files } => {
            let mut ok = true;
            let many = files.len() > 1;
            for f in &files {
                let r = (|| {
                    let mut c = client_for("path2fid", f)?;
                    let fid = fid_of("path2fid", &mut c, f)?;
                    if many {
                        println!("{}: {fid}", f.display());
                    } else {
                        println!("{fid}");
                    }
                    Ok::<(), Failure>(())
                })();
                ok &= r.is_ok();
            }
            if ok { Ok(()) } else { Err(Failure) }
        }
        Cmd::Fid2path { mount, fids } => {
            let mut c = client_for("fid2path", &mount)?;
            let mut ok = true;
            for s in &fids {
                let fid: lustre_bindings::Fid = match s.trim().parse() {
                    Ok(f) => f,
                    Err(_) => {
                        ok = false;
                        let _ = fail("fid2path", &format!("invalid FID '{s}'"), libc::EINVAL);
                        continue;
                    }
                };
                let what = format!("cannot find {s}");
                match call(
                    "fid2path",
                    &what,
                    &mut c,
                    &Request::FidToPath { fid: fid.into() },
                ) {
                    Ok(Reply::Path(p)) => println!("{}", c.root().join(p).display()),
                    _ => ok = false,
                }
            }
            if ok { Ok(()) } else { Err(Failure) }
        }
        Cmd::GetParam(a) => params("get_param", &a, false),
        Cmd::SetParam(a) => params("set_param", &a, true),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure) => ExitCode::from(1),
    }
}
