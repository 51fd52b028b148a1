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
    #[arg(short = 'D', long)]
    data: Option<String>,
    /// Files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
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

fn hsm(cmd: &str, action: u32, a: &HsmArgs) -> Result<(), Failure> {
    let mut ok = true;
    for f in &a.files {
        let r = (|| {
            let mut c = client_for(cmd, f)?;
            let fid = fid_of(cmd, &mut c, f)?;
            let what = format!("'{}'", f.display());
            if action == HUA_RELEASE {
                call(cmd, &what, &mut c, &Request::Release { fid })?;
            } else {
                let req = Request::HsmRequest {
                    action,
                    archive_id: a.archive,
                    flags: 0,
                    items: vec![UserItem {
                        fid,
                        offset: 0,
                        length: u64::MAX,
                    }],
                    data: a.data.clone().unwrap_or_default().into_bytes(),
                };
                call(cmd, &what, &mut c, &req)?;
            }
            Ok::<(), Failure>(())
        })();
        ok &= r.is_ok();
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
