//! Daemon settings, resolved in layers: built-in defaults < the `key value`
//! file < `COORDINATOOL_<KEY>` environment variables < the command line.
//!
//! The file is the one shared with clients (their keys are accepted
//! silently). Unknown keys are warned about by name. Keys of the C tool whose
//! feature is not implemented yet (`archive_on_hosts*`, `batch_archives_*`,
//! `reporting_*`, `redis_*`) are parsed loosely and warned about as "not
//! implemented yet". A bad value is an error naming the key, the value and
//! where it came from (file and line, variable or option). The environment is
//! read through an injected closure so tests are hermetic.
//!
//! # Keys
//! | key | option | default | meaning |
//! |---|---|---|---|
//! | `host` | `--host` | `coordinatool` (`0.0.0.0` if it does not resolve) | bind address |
//! | `port` | `--port` | 5123 | bind port (0: ephemeral, printed at start) |
//! | `verbose` | `-v`/`-q` | `normal` | log level (re-read on SIGHUP) |
//! | `archive_id` | `--archive` | none (all) | archive ids to register for; repeatable or comma-separated |
//! | `client_grace_ms` | `--client-grace` | 600000 | how long a disconnected agent keeps its requests |
//! | `state_dir` | `--state-dir` | `/var/lib/coordinatool/<escaped mount>` | state directory |
//! | `lustreapi` | `--lustreapi` | `liblustreapi.so.1` | library to load |
//! | `action_order` | | `restore,remove,archive` | hand-out order of the action types |
//! | `max_hal_bytes` | | 1048576 | cap on one batch's encoded HAL size (K/M/G suffixes) |
//! | `mdt_request_timeout` | `--mdt-request-timeout` | 0 (off) | seconds; set it to the MDT's `hsm.active_request_timeout`. A request still waiting in the daemon (never handed out, or requeued) once 90% of it has passed since the daemon received it is reported to Lustre as failed (`ETIMEDOUT`) and forgotten, instead of being cancelled silently by the MDT |

use std::path::{Path, PathBuf};

use clap::Parser;
use coordinatool_protocol::conf::{
    CLIENT_KEYS, ConfError, ConfFile, Entry, Origin, SERVER_KEYS, Verbosity, env_entry, parse_size,
    parse_u64,
};

use crate::scheduler::Kind;

/// Default `client_grace_ms`.
pub const DEFAULT_GRACE_MS: u64 = 600_000;
/// Default bind host: the name clients connect to by default (the C tool's),
/// replaced by `0.0.0.0` if it does not resolve.
pub use coordinatool_protocol::conf::DEFAULT_HOST;
/// Where state directories go by default.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/coordinatool";
/// Keys accepted but whose feature is not implemented yet.
pub const NOT_IMPLEMENTED: &[&str] = &[
    "archive_on_hosts",
    "archive_on_hosts_ch",
    "batch_archives_slices_sec",
    "batch_archives_slots_per_client",
    "reporting_dir",
    "reporting_hint",
    "reporting_schedule_interval_ms",
    "redis_host",
    "redis_port",
];

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "coordinatoold",
    version,
    about = "Durable userspace Lustre HSM coordinator",
    after_help = crate::error::EXIT_CODES_HELP
)]
pub struct Cli {
    /// Address to bind (default: `coordinatool`, or 0.0.0.0 if that name does not resolve).
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// Port to bind (0: an ephemeral port, printed at start).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Archive id to register for (repeatable; replaces the file's `archive_id`s; none: all).
    #[arg(short = 'A', long = "archive", value_name = "N")]
    pub archive: Vec<u32>,
    /// Configuration file (default: $COORDINATOOL_CONF, then /etc/coordinatool.conf).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory (default: /var/lib/coordinatool/<escaped mount point>).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// liblustreapi to load (default: liblustreapi.so.1 from the library path).
    #[arg(long, value_name = "PATH")]
    pub lustreapi: Option<PathBuf>,
    /// How long a disconnected agent keeps its requests, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub client_grace: Option<u64>,
    /// The MDT's `hsm.active_request_timeout`, in seconds (key
    /// `mdt_request_timeout`; 0, the default, disables this). A request still
    /// waiting in the daemon when 90% of it has passed since the daemon
    /// received it is reported to Lustre as failed (ETIMEDOUT) and dropped.
    #[arg(long, value_name = "SECS")]
    pub mdt_request_timeout: Option<u64>,
    /// More verbose (repeatable).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less verbose (repeatable).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// UNSAFE, benchmarks only: never flush the store (a crash loses requests).
    #[arg(long, hide = true)]
    pub no_flush: bool,
    /// Tests only: WAL bytes that start a store checkpoint (default 64 MiB).
    #[arg(long, hide = true, value_name = "BYTES")]
    pub checkpoint_min_wal: Option<u64>,
    /// The Lustre mount point.
    pub mountpoint: PathBuf,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bind host.
    pub host: String,
    /// Whether `host` is the built-in default (may fall back to 0.0.0.0).
    pub host_is_default: bool,
    /// Bind port.
    pub port: u16,
    /// Log level.
    pub verbose: Verbosity,
    /// Archive ids to register for (empty: all).
    pub archive_ids: Vec<u32>,
    /// Grace period of disconnected agents.
    pub client_grace_ms: u64,
    /// State directory.
    pub state_dir: PathBuf,
    /// liblustreapi path.
    pub lustreapi: Option<PathBuf>,
    /// Hand-out order.
    pub action_order: [Kind; 3],
    /// Cap on one batch's encoded HAL size.
    pub max_hal_bytes: u32,
    /// The MDT's `active_request_timeout` in seconds (0: disabled).
    pub mdt_request_timeout_s: u64,
    /// Mount point.
    pub mountpoint: PathBuf,
    /// The configuration file read, if any.
    pub config_path: Option<PathBuf>,
    /// Benchmark-only: no flushes.
    pub no_flush: bool,
    /// Tests only: WAL bytes that start a store checkpoint.
    pub checkpoint_min_wal: Option<u64>,
    /// Warnings to log once logging is up.
    pub warnings: Vec<String>,
}

/// The systemd-escaped form of a path (`/mnt/lustre` → `mnt-lustre`).
pub fn systemd_escape_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    let trimmed: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
    if trimmed.is_empty() {
        return "-".into();
    }
    let joined = trimmed.join("/");
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn parse_archive_ids(e: &Entry, out: &mut Vec<u32>) -> Result<(), ConfError> {
    for part in e.value.split([',', ' ', '\t']).filter(|p| !p.is_empty()) {
        let id = parse_u64(part).map_err(|r| e.bad(r))?;
        let id = u32::try_from(id)
            .ok()
            .filter(|&i| i > 0 && i <= i32::MAX as u32)
            .ok_or_else(|| e.bad("archive ids must be between 1 and 2147483647"))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(())
}

fn parse_order(e: &Entry) -> Result<[Kind; 3], ConfError> {
    let mut kinds: Vec<Kind> = Vec::new();
    for part in e.value.split([',', ' ']).filter(|p| !p.is_empty()) {
        let k: Kind = part.parse().map_err(|r: String| e.bad(r))?;
        if kinds.contains(&k) {
            return Err(e.bad(format!("{} is listed twice", k.name().to_lowercase())));
        }
        kinds.push(k);
    }
    // Kinds not listed come last, in the default order.
    for k in Kind::DEFAULT_ORDER {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    Ok([kinds[0], kinds[1], kinds[2]])
}

/// Largest accepted `mdt_request_timeout`: the kernel's tunable is an `int`.
pub const MAX_MDT_REQUEST_TIMEOUT_S: u64 = i32::MAX as u64;

fn parse_timeout(v: &str) -> Result<u64, String> {
    let t = parse_u64(v)?;
    if t > MAX_MDT_REQUEST_TIMEOUT_S {
        return Err(format!(
            "mdt_request_timeout is in seconds and at most {MAX_MDT_REQUEST_TIMEOUT_S} \
             (the MDT's active_request_timeout)"
        ));
    }
    Ok(t)
}

/// The entries of the file and the environment, in application order, plus
/// warnings. Only server keys are returned.
fn layered_entries(
    file: &ConfFile,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<Entry> {
    warnings.extend(file.warnings.iter().cloned());
    for e in file.unknown_keys(SERVER_KEYS, CLIENT_KEYS) {
        warnings.push(format!("{}: unknown key {:?} ignored", e.origin, e.key));
    }
    let mut entries: Vec<Entry> = file
        .entries
        .iter()
        .filter(|e| SERVER_KEYS.contains(&e.key.as_str()))
        .cloned()
        .collect();
    // The C tool's name for the grace variable, then the regular one.
    if let Some(v) = env("COORDINATOOL_CLIENT_GRACE") {
        entries.push(Entry {
            key: "client_grace_ms".into(),
            value: v.trim().to_string(),
            origin: Origin::Env("COORDINATOOL_CLIENT_GRACE".into()),
        });
    }
    let mut env_archive = false;
    for key in SERVER_KEYS {
        if let Some(e) = env_entry(key, env) {
            if *key == "archive_id" {
                // The variable replaces the file's list.
                if !env_archive {
                    entries.retain(|x| x.key != "archive_id");
                    env_archive = true;
                }
            }
            entries.push(e);
        }
    }
    entries
}

/// Only the log level, for SIGHUP: file < env < CLI `-v`/`-q`.
pub fn reload_verbosity(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Verbosity, ConfError> {
    let file = ConfFile::load(cli.config.as_deref(), env)?;
    let mut v = Verbosity::Normal;
    for e in layered_entries(&file, env, &mut Vec::new()) {
        if e.key == "verbose" {
            v = e.value.parse().map_err(|r: String| e.bad(r))?;
        }
    }
    Ok(v.step(i32::from(cli.verbose) - i32::from(cli.quiet)))
}

/// Resolves the settings.
pub fn resolve(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfError> {
    let file = ConfFile::load(cli.config.as_deref(), env)?;
    let mut warnings = Vec::new();
    let entries = layered_entries(&file, env, &mut warnings);
    let mut cfg = Config {
        host: DEFAULT_HOST.into(),
        host_is_default: true,
        port: coordinatool_protocol::DEFAULT_PORT,
        verbose: Verbosity::Normal,
        archive_ids: Vec::new(),
        client_grace_ms: DEFAULT_GRACE_MS,
        state_dir: PathBuf::new(),
        lustreapi: None,
        action_order: Kind::DEFAULT_ORDER,
        max_hal_bytes: lustre_bindings::hal::HAL_MAXSIZE as u32,
        mdt_request_timeout_s: 0,
        mountpoint: cli.mountpoint.clone(),
        config_path: file.path.clone(),
        no_flush: cli.no_flush,
        checkpoint_min_wal: cli.checkpoint_min_wal,
        warnings: Vec::new(),
    };
    let mut state_dir = None;
    let mut not_impl_warned: Vec<String> = Vec::new();
    for e in &entries {
        match e.key.as_str() {
            "host" => {
                cfg.host = e.value.clone();
                cfg.host_is_default = false;
            }
            "port" => {
                cfg.port = e
                    .value
                    .parse::<u16>()
                    .map_err(|_| e.bad("a port is a number from 0 to 65535"))?
            }
            "verbose" => cfg.verbose = e.value.parse().map_err(|r: String| e.bad(r))?,
            "archive_id" => parse_archive_ids(e, &mut cfg.archive_ids)?,
            "client_grace_ms" => cfg.client_grace_ms = parse_u64(&e.value).map_err(|r| e.bad(r))?,
            "state_dir" => state_dir = Some(PathBuf::from(&e.value)),
            "lustreapi" => cfg.lustreapi = Some(PathBuf::from(&e.value)),
            "action_order" => cfg.action_order = parse_order(e)?,
            "max_hal_bytes" => {
                let v = parse_size(&e.value).map_err(|r| e.bad(r))?;
                let min = u64::from(coordinatool_protocol::MIN_RECV_BYTES);
                if v < min || v > lustre_bindings::hal::HAL_MAXSIZE as u64 {
                    return Err(e.bad(format!(
                        "max_hal_bytes must be between {min} and {}",
                        lustre_bindings::hal::HAL_MAXSIZE
                    )));
                }
                cfg.max_hal_bytes = v as u32;
            }
            "mdt_request_timeout" => {
                cfg.mdt_request_timeout_s = parse_timeout(&e.value).map_err(|r| e.bad(r))?;
            }
            "redis_port" | "reporting_schedule_interval_ms" => {
                parse_u64(&e.value).map_err(|r| e.bad(r))?;
            }
            "batch_archives_slots_per_client" => {
                parse_u64(&e.value).map_err(|r| e.bad(r))?;
            }
            _ => {}
        }
        if NOT_IMPLEMENTED.contains(&e.key.as_str()) && !not_impl_warned.contains(&e.key) {
            not_impl_warned.push(e.key.clone());
            warnings.push(format!(
                "{}: key {:?} is accepted but not implemented yet; ignored",
                e.origin, e.key
            ));
        }
    }
    // Command line.
    if let Some(h) = &cli.host {
        cfg.host = h.clone();
        cfg.host_is_default = false;
    }
    if let Some(p) = cli.port {
        cfg.port = p;
    }
    if !cli.archive.is_empty() {
        cfg.archive_ids.clear();
        for &id in &cli.archive {
            let e = Entry {
                key: "archive_id".into(),
                value: id.to_string(),
                origin: Origin::Cli("--archive".into()),
            };
            parse_archive_ids(&e, &mut cfg.archive_ids)?;
        }
    }
    if let Some(g) = cli.client_grace {
        cfg.client_grace_ms = g;
    }
    if let Some(t) = cli.mdt_request_timeout {
        cfg.mdt_request_timeout_s =
            parse_timeout(&t.to_string()).map_err(|reason| ConfError::BadValue {
                key: "mdt_request_timeout".into(),
                value: t.to_string(),
                origin: Origin::Cli("--mdt-request-timeout".into()),
                reason,
            })?;
    }
    if let Some(d) = &cli.state_dir {
        state_dir = Some(d.clone());
    }
    if let Some(l) = &cli.lustreapi {
        cfg.lustreapi = Some(l.clone());
    }
    cfg.verbose = cfg
        .verbose
        .step(i32::from(cli.verbose) - i32::from(cli.quiet));
    cfg.state_dir = state_dir.unwrap_or_else(|| {
        PathBuf::from(DEFAULT_STATE_ROOT).join(systemd_escape_path(&cli.mountpoint))
    });
    cfg.warnings = warnings;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["coordinatoold"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.conf");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn defaults() {
        let (_d, p) = write("");
        let c = resolve(
            &cli(&["-c", p.to_str().unwrap(), "/mnt/lustre"]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(c.host, "coordinatool");
        assert!(c.host_is_default);
        assert_eq!(c.port, 5123);
        assert_eq!(c.client_grace_ms, 600_000);
        assert_eq!(
            c.state_dir,
            PathBuf::from("/var/lib/coordinatool/mnt-lustre")
        );
        assert_eq!(c.action_order, Kind::DEFAULT_ORDER);
        assert_eq!(c.verbose, Verbosity::Normal);
        assert!(c.archive_ids.is_empty());
        assert_eq!(c.mdt_request_timeout_s, 0);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_key_of_the_file() {
        let (_d, p) = write(
            "HOST 10.1.2.3\nport 6000\nverbose debug\narchive_id 2\narchive_id 3,4\n\
             client_grace_ms 5000\nstate_dir /tmp/st\nlustreapi /opt/liblustreapi.so\n\
             action_order archive,restore\nmax_hal_bytes 64K\nmdt_request_timeout 100\n\
             redis_host localhost\nredis_port 6379\narchive_on_hosts tag h1 h2\n\
             archive_on_hosts_ch tag 2 h1\nbatch_archives_slices_sec 10 20\n\
             batch_archives_slots_per_client 2\nreporting_dir r\nreporting_hint h\n\
             reporting_schedule_interval_ms 100\n\
             client_id me\nhal_size 1M\nmax_archive 3\nbogus_key 1\n",
        );
        let c = resolve(&cli(&["-c", p.to_str().unwrap(), "/mnt/fs"]), &env_of(&[])).unwrap();
        assert_eq!(c.host, "10.1.2.3");
        assert!(!c.host_is_default);
        assert_eq!(c.port, 6000);
        assert_eq!(c.verbose, Verbosity::Debug);
        assert_eq!(c.archive_ids, vec![2, 3, 4]);
        assert_eq!(c.client_grace_ms, 5000);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(c.lustreapi, Some(PathBuf::from("/opt/liblustreapi.so")));
        assert_eq!(c.action_order, [Kind::Archive, Kind::Restore, Kind::Remove]);
        assert_eq!(c.max_hal_bytes, 65536);
        assert_eq!(c.mdt_request_timeout_s, 100);
        assert!(!c.warnings.iter().any(|w| w.contains("mdt_request_timeout")));
        // Every unimplemented key warned by name; client keys silent; unknown key warned.
        for k in NOT_IMPLEMENTED {
            assert!(
                c.warnings
                    .iter()
                    .any(|w| w.contains(&format!("{k:?}")) && w.contains("not implemented")),
                "{k}: {:?}",
                c.warnings
            );
        }
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("bogus_key") && w.contains("unknown"))
        );
        assert!(
            !c.warnings
                .iter()
                .any(|w| w.contains("client_id") || w.contains("hal_size"))
        );
        assert_eq!(
            c.warnings.len(),
            NOT_IMPLEMENTED.len() + 1,
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let (_d, p) = write("port 6000\nclient_grace_ms 5\narchive_id 7\nverbose warn\n");
        let env = env_of(&[
            ("COORDINATOOL_PORT", "6001"),
            ("COORDINATOOL_CLIENT_GRACE", "99"),
            ("COORDINATOOL_HOST", "127.0.0.1"),
            ("COORDINATOOL_ARCHIVE_ID", "8"),
            ("COORDINATOOL_VERBOSE", "info"),
        ]);
        let c = resolve(&cli(&["-c", p.to_str().unwrap(), "/m"]), &env).unwrap();
        assert_eq!(c.port, 6001);
        assert_eq!(c.client_grace_ms, 99);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.archive_ids, vec![8]);
        assert_eq!(c.verbose, Verbosity::Info);
        let c = resolve(
            &cli(&[
                "-c",
                p.to_str().unwrap(),
                "--port",
                "0",
                "--client-grace",
                "1",
                "-A",
                "3",
                "-A",
                "4",
                "-q",
                "--state-dir",
                "/s",
                "/m",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.client_grace_ms, 1);
        assert_eq!(c.archive_ids, vec![3, 4]);
        assert_eq!(c.verbose, Verbosity::Normal);
        assert_eq!(c.state_dir, PathBuf::from("/s"));
        // COORDINATOOL_CLIENT_GRACE_MS also works and wins (applied later).
        let env = env_of(&[
            ("COORDINATOOL_CLIENT_GRACE", "99"),
            ("COORDINATOOL_CLIENT_GRACE_MS", "42"),
        ]);
        assert_eq!(
            resolve(&cli(&["-c", p.to_str().unwrap(), "/m"]), &env)
                .unwrap()
                .client_grace_ms,
            42
        );
    }

    #[test]
    fn bad_values_name_key_value_and_line() {
        for (text, key, value, line) in [
            ("\n\nport http\n", "port", "http", 3),
            ("client_grace_ms -5\n", "client_grace_ms", "-5", 1),
            ("# c\narchive_id 0\n", "archive_id", "0", 2),
            ("action_order restore,fly\n", "action_order", "fly", 1),
            ("verbose shouty\n", "verbose", "shouty", 1),
            ("max_hal_bytes 12Q\n", "max_hal_bytes", "12Q", 1),
            ("max_hal_bytes 8\n", "max_hal_bytes", "8", 1),
            ("mdt_request_timeout 1h\n", "mdt_request_timeout", "1h", 1),
            (
                "\nmdt_request_timeout 99999999999\n",
                "mdt_request_timeout",
                "99999999999",
                2,
            ),
        ] {
            let (_d, p) = write(text);
            let err = resolve(&cli(&["-c", p.to_str().unwrap(), "/m"]), &env_of(&[])).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(key) && msg.contains(value) && msg.contains(&format!("line {line}")),
                "{msg}"
            );
        }
        let (_d, p) = write("");
        let err = resolve(
            &cli(&["-c", p.to_str().unwrap(), "/m"]),
            &env_of(&[("COORDINATOOL_CLIENT_GRACE", "soon")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("COORDINATOOL_CLIENT_GRACE"),
            "{err}"
        );
        let err = resolve(
            &cli(&["-c", p.to_str().unwrap(), "-A", "0", "/m"]),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--archive"), "{err}");
        let err = resolve(&cli(&["-c", "/nonexistent.conf", "/m"]), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent.conf"), "{err}");
    }

    #[test]
    fn mdt_request_timeout_layers() {
        let (_d, p) = write("mdt_request_timeout 3600\n");
        let path = p.to_str().unwrap();
        let c = resolve(&cli(&["-c", path, "/m"]), &env_of(&[])).unwrap();
        assert_eq!(c.mdt_request_timeout_s, 3600);
        let env = env_of(&[("COORDINATOOL_MDT_REQUEST_TIMEOUT", "7200")]);
        let c = resolve(&cli(&["-c", path, "/m"]), &env).unwrap();
        assert_eq!(c.mdt_request_timeout_s, 7200);
        let c = resolve(
            &cli(&["-c", path, "--mdt-request-timeout", "0", "/m"]),
            &env,
        )
        .unwrap();
        assert_eq!(c.mdt_request_timeout_s, 0);
        let err = resolve(
            &cli(&["-c", path, "--mdt-request-timeout", "3000000000", "/m"]),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--mdt-request-timeout"), "{err}");
    }

    #[test]
    fn escape_like_systemd() {
        assert_eq!(systemd_escape_path(Path::new("/mnt/lustre")), "mnt-lustre");
        assert_eq!(systemd_escape_path(Path::new("/")), "-");
        assert_eq!(
            systemd_escape_path(Path::new("/mnt/my-fs/")),
            "mnt-my\\x2dfs"
        );
        assert_eq!(systemd_escape_path(Path::new("/.hidden")), "\\x2ehidden");
    }

    #[test]
    fn reload_reads_the_level_again() {
        let (_d, p) = write("verbose error\n");
        let c = cli(&["-c", p.to_str().unwrap(), "-v", "/m"]);
        assert_eq!(reload_verbosity(&c, &env_of(&[])).unwrap(), Verbosity::Warn);
        std::fs::write(&p, "verbose info\n").unwrap();
        assert_eq!(
            reload_verbosity(&c, &env_of(&[])).unwrap(),
            Verbosity::Debug
        );
    }
}
