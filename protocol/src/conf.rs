//! The configuration file shared by coordinatoold, the preload shim and
//! coordinatool-ctl, in the C coordinatool's format.
//!
//! One `key value` pair per line: keys are case-insensitive, the value is the
//! rest of the line with surrounding white space removed, blank lines and lines
//! whose first word starts with `#` are ignored. Each program reads the keys it
//! knows, silently accepts the keys of the other side (the file is shared), and
//! warns about any other key by name.
//!
//! File lookup (as the C tool): an explicitly given path must exist; otherwise
//! `$COORDINATOOL_CONF` must exist if set; otherwise `/etc/coordinatool.conf`
//! is read if present and silently skipped if not.

use std::fmt;
use std::path::{Path, PathBuf};

/// Default configuration file.
pub const DEFAULT_CONF_PATH: &str = "/etc/coordinatool.conf";
/// Environment variable naming another configuration file.
pub const ENV_CONF: &str = "COORDINATOOL_CONF";
/// Prefix of the per-key environment overrides (`COORDINATOOL_HOST`, ...).
pub const ENV_PREFIX: &str = "COORDINATOOL_";

/// Keys read by clients (the preload shim and coordinatool-ctl).
pub const CLIENT_KEYS: &[&str] = &[
    "host",
    "port",
    "client_id",
    "max_archive",
    "max_restore",
    "max_remove",
    "hal_size",
    "archive_id",
    "verbose",
];

/// Keys read by the daemon (clients accept them silently).
pub const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "verbose",
    "archive_id",
    "client_grace_ms",
    "state_dir",
    "lustreapi",
    "action_order",
    "max_hal_bytes",
    "mdt_request_timeout",
    "redis_host",
    "redis_port",
    "archive_on_hosts",
    "archive_on_hosts_ch",
    "batch_archives_slices_sec",
    "batch_archives_slots_per_client",
    "reporting_dir",
    "reporting_hint",
    "reporting_schedule_interval_ms",
];

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A built-in default.
    Default,
    /// A line of a configuration file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line option.
    Cli(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "built-in default"),
            Origin::File { path, line } => write!(f, "{} line {}", path.display(), line),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Cli(flag) => write!(f, "command-line option {flag}"),
        }
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A value could not be parsed.
    #[error("invalid value {value:?} for {key} ({origin}): {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Lower-cased key.
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

impl Entry {
    /// A [`ConfError::BadValue`] for this entry.
    pub fn bad(&self, reason: impl Into<String>) -> ConfError {
        ConfError::BadValue {
            key: self.key.clone(),
            value: self.value.clone(),
            origin: self.origin.clone(),
            reason: reason.into(),
        }
    }
}

/// A parsed configuration file.
#[derive(Debug, Clone, Default)]
pub struct ConfFile {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// Its entries, in file order.
    pub entries: Vec<Entry>,
    /// Lines that were skipped, with why (a key without value).
    pub warnings: Vec<String>,
}

impl ConfFile {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str, path: &Path) -> ConfFile {
        let mut conf = ConfFile {
            path: Some(path.to_path_buf()),
            ..ConfFile::default()
        };
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.find(char::is_whitespace) {
                Some(pos) => (&line[..pos], line[pos..].trim()),
                None => (line, ""),
            };
            if value.is_empty() {
                conf.warnings.push(format!(
                    "{} line {}: key {key:?} has no value; line skipped",
                    path.display(),
                    idx + 1
                ));
                continue;
            }
            conf.entries.push(Entry {
                key: key.to_ascii_lowercase(),
                value: value.to_string(),
                origin: Origin::File {
                    path: path.to_path_buf(),
                    line: idx + 1,
                },
            });
        }
        conf
    }

    /// Finds and reads the configuration file (see the module docs for the
    /// lookup order). `env` reads an environment variable (injected so tests
    /// stay hermetic).
    pub fn load(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConfFile, ConfError> {
        let (path, must_exist) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match env(ENV_CONF).filter(|v| !v.is_empty()) {
                Some(p) => (PathBuf::from(p), true),
                None => (PathBuf::from(DEFAULT_CONF_PATH), false),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(ConfFile::parse(&text, &path)),
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(ConfFile::default())
            }
            Err(error) => Err(ConfError::Read { path, error }),
        }
    }

    /// Keys that neither `known` nor `other_side` lists, with their origin, for
    /// "unknown key" warnings.
    pub fn unknown_keys<'a>(&'a self, known: &[&str], other_side: &[&str]) -> Vec<&'a Entry> {
        self.entries
            .iter()
            .filter(|e| !known.contains(&e.key.as_str()) && !other_side.contains(&e.key.as_str()))
            .collect()
    }
}

/// The environment override for `key`, as an entry (`COORDINATOOL_<KEY>`).
pub fn env_entry(key: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Entry> {
    let var = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
    env(&var).map(|value| Entry {
        key: key.to_string(),
        value: value.trim().to_string(),
        origin: Origin::Env(var),
    })
}

/// Parses an unsigned integer: decimal, or hexadecimal with `0x`.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        t.parse::<u64>()
    };
    parsed.map_err(|_| format!("{t:?} is not a non-negative integer"))
}

/// Parses a size: an integer with an optional `K`, `M` or `G` suffix (powers of
/// 1024, either case), optionally followed by `B` or `iB` (`1M`, `1MiB`, `64k`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_hexdigit() || c == 'x' || c == 'X'))
        .unwrap_or(t.len());
    // Hex digits include b/B; only treat a leading 0x as hex.
    let (num, suffix) = if t.starts_with("0x") || t.starts_with("0X") {
        t.split_at(digits_end)
    } else {
        let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        t.split_at(end)
    };
    if num.is_empty() {
        return Err(format!(
            "{t:?} is not a size (expected e.g. 4096, 64K, 1M, 2G)"
        ));
    }
    let base = parse_u64(num)?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {t:?} (expected K, M or G)"
            ));
        }
    };
    base.checked_mul(mult)
        .ok_or_else(|| format!("{t:?} is too large"))
}

/// Parses a per-type limit: `-1` (or `unlimited`) means no limit, `0` means
/// never, otherwise a count (K/M/G suffixes allowed, as in the C tool).
pub fn parse_limit(s: &str) -> Result<Option<u32>, String> {
    let t = s.trim();
    if t == "-1" || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let v = parse_size(t)?;
    u32::try_from(v)
        .map(Some)
        .map_err(|_| format!("{t:?} is larger than {}", u32::MAX))
}

/// Log verbosity, in the C tool's words (`off` .. `debug`, or 0..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Nothing.
    Off = 0,
    /// Fatal errors only.
    Fatal = 1,
    /// Errors.
    Error = 2,
    /// Warnings.
    Warn = 3,
    /// Normal (the default).
    Normal = 4,
    /// Informational.
    Info = 5,
    /// Debug.
    Debug = 6,
}

impl Verbosity {
    /// Steps up (`-v`) or down (`-q`) by `delta`, clamped.
    pub fn step(self, delta: i32) -> Verbosity {
        Verbosity::from_level((self as i32 + delta).clamp(0, 6))
    }

    fn from_level(n: i32) -> Verbosity {
        match n {
            i32::MIN..=0 => Verbosity::Off,
            1 => Verbosity::Fatal,
            2 => Verbosity::Error,
            3 => Verbosity::Warn,
            4 => Verbosity::Normal,
            5 => Verbosity::Info,
            _ => Verbosity::Debug,
        }
    }

    /// The matching `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            Verbosity::Off => "off",
            Verbosity::Fatal | Verbosity::Error => "error",
            Verbosity::Warn => "warn",
            Verbosity::Normal | Verbosity::Info => "info",
            Verbosity::Debug => "debug",
        }
    }
}

impl std::str::FromStr for Verbosity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "off" => Verbosity::Off,
            "fatal" => Verbosity::Fatal,
            "error" => Verbosity::Error,
            "warn" | "warning" => Verbosity::Warn,
            "normal" => Verbosity::Normal,
            "info" => Verbosity::Info,
            "debug" | "trace" => Verbosity::Debug,
            n => match n.parse::<i32>() {
                Ok(v @ 0..=6) => Verbosity::from_level(v),
                _ => {
                    return Err(format!(
                        "{s:?} is not a log level (off, fatal, error, warn, normal, info, debug or 0-6)"
                    ));
                }
            },
        })
    }
}

/// Settings of a client (the preload shim or coordinatool-ctl), resolved from
/// defaults, the file and `COORDINATOOL_*` variables (command-line options are
/// applied by the caller on top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Daemon host (`host`, default `coordinatool`, as the C tool).
    pub host: String,
    /// Daemon port (`port`, default 5123).
    pub port: u16,
    /// Identity (`client_id`, default: the host name up to the first dot).
    pub client_id: String,
    /// `max_archive` (`None`: unlimited).
    pub max_archive: Option<u32>,
    /// `max_restore`.
    pub max_restore: Option<u32>,
    /// `max_remove`.
    pub max_remove: Option<u32>,
    /// `hal_size`: the largest HAL the client receives (default 1 MiB).
    pub hal_size: u32,
    /// `archive_id` lines: archive ids to announce when the copytool gives none.
    pub archive_ids: Vec<u32>,
    /// `verbose`.
    pub verbose: Verbosity,
    /// Warnings gathered while loading (unknown keys, skipped lines).
    pub warnings: Vec<String>,
}

/// Default daemon host name for clients, as the C tool.
pub const DEFAULT_HOST: &str = "coordinatool";
/// Default `hal_size`.
pub const DEFAULT_HAL_SIZE: u32 = 1 << 20;

impl ClientConfig {
    /// Resolves client settings. `hostname` is the default `client_id`.
    pub fn load(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        hostname: &str,
    ) -> Result<ClientConfig, ConfError> {
        let file = ConfFile::load(explicit, env)?;
        let mut cfg = ClientConfig {
            host: DEFAULT_HOST.to_string(),
            port: crate::messages::DEFAULT_PORT,
            client_id: hostname.split('.').next().unwrap_or(hostname).to_string(),
            max_archive: None,
            max_restore: None,
            max_remove: None,
            hal_size: DEFAULT_HAL_SIZE,
            archive_ids: Vec::new(),
            verbose: Verbosity::Normal,
            warnings: file.warnings.clone(),
        };
        for e in file.unknown_keys(CLIENT_KEYS, SERVER_KEYS) {
            cfg.warnings
                .push(format!("{}: unknown key {:?} ignored", e.origin, e.key));
        }
        let mut archive_ids_from_file = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        for e in &file.entries {
            if e.key == "archive_id" {
                archive_ids_from_file.push(e.clone());
            } else if CLIENT_KEYS.contains(&e.key.as_str()) {
                entries.push(e.clone());
            }
        }
        for key in CLIENT_KEYS {
            if let Some(e) = env_entry(key, env) {
                if *key == "archive_id" {
                    archive_ids_from_file = vec![e];
                } else {
                    entries.push(e);
                }
            }
        }
        for e in &entries {
            cfg.apply(e)?;
        }
        for e in &archive_ids_from_file {
            for part in e.value.split([',', ' ']).filter(|p| !p.is_empty()) {
                let id = parse_u64(part).map_err(|r| e.bad(r))?;
                let id = u32::try_from(id)
                    .ok()
                    .filter(|&i| i > 0 && i <= i32::MAX as u32)
                    .ok_or_else(|| e.bad("archive ids must be between 1 and 2147483647"))?;
                if !cfg.archive_ids.contains(&id) {
                    cfg.archive_ids.push(id);
                }
            }
        }
        Ok(cfg)
    }

    /// Applies one setting (later calls override earlier ones).
    pub fn apply(&mut self, e: &Entry) -> Result<(), ConfError> {
        match e.key.as_str() {
            "host" => self.host = e.value.clone(),
            "port" => {
                self.port = e
                    .value
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| e.bad("a port is a number from 1 to 65535"))?
            }
            "client_id" => self.client_id = e.value.clone(),
            "max_archive" => self.max_archive = parse_limit(&e.value).map_err(|r| e.bad(r))?,
            "max_restore" => self.max_restore = parse_limit(&e.value).map_err(|r| e.bad(r))?,
            "max_remove" => self.max_remove = parse_limit(&e.value).map_err(|r| e.bad(r))?,
            "hal_size" => {
                let v = parse_size(&e.value).map_err(|r| e.bad(r))?;
                let v = u32::try_from(v).map_err(|_| e.bad("hal_size must be below 4G"))?;
                if v < crate::messages::MIN_RECV_BYTES {
                    return Err(e.bad(format!(
                        "hal_size must be at least {} bytes",
                        crate::messages::MIN_RECV_BYTES
                    )));
                }
                self.hal_size = v;
            }
            "verbose" => self.verbose = e.value.parse().map_err(|r: String| e.bad(r))?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parses_lines_comments_and_case() {
        let c = ConfFile::parse(
            "# comment\n\n  HOST  10.0.0.1  \nport\t5124\nnovalue\n#x y\n",
            Path::new("/x.conf"),
        );
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[0].key, "host");
        assert_eq!(c.entries[0].value, "10.0.0.1");
        assert_eq!(
            c.entries[1].origin,
            Origin::File {
                path: "/x.conf".into(),
                line: 4
            }
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("line 5"), "{:?}", c.warnings);
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("0x10"), Ok(16));
        assert!(parse_size("1.5M").unwrap_err().contains("suffix"));
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_limit("-1"), Ok(None));
        assert_eq!(parse_limit("0"), Ok(Some(0)));
        assert!(parse_limit("8G").is_err());
    }

    #[test]
    fn verbosity_names_numbers_and_steps() {
        assert_eq!("DEBUG".parse::<Verbosity>(), Ok(Verbosity::Debug));
        assert_eq!("3".parse::<Verbosity>(), Ok(Verbosity::Warn));
        assert!("loud".parse::<Verbosity>().is_err());
        assert_eq!(Verbosity::Normal.step(2), Verbosity::Debug);
        assert_eq!(Verbosity::Fatal.step(-5), Verbosity::Off);
    }

    #[test]
    fn client_layers_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(
            &path,
            "host daemon.example\nport 6000\nmax_archive 4\nhal_size 64K\nclient_grace_ms 5\nbogus 1\narchive_id 2\n",
        )
        .unwrap();
        let env = env_of(&[
            ("COORDINATOOL_PORT", "7000"),
            ("COORDINATOOL_MAX_RESTORE", "0"),
        ]);
        let c = ClientConfig::load(Some(&path), &env, "node12.cluster").unwrap();
        assert_eq!(c.host, "daemon.example");
        assert_eq!(c.port, 7000);
        assert_eq!(c.client_id, "node12");
        assert_eq!(c.max_archive, Some(4));
        assert_eq!(c.max_restore, Some(0));
        assert_eq!(c.max_remove, None);
        assert_eq!(c.hal_size, 65536);
        assert_eq!(c.archive_ids, vec![2]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("bogus"));
    }

    #[test]
    fn bad_value_names_key_value_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, "\nhal_size 12Q\n").unwrap();
        let err = ClientConfig::load(Some(&path), &env_of(&[]), "h").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("hal_size") && msg.contains("12Q") && msg.contains("line 2"),
            "{msg}"
        );
        let err = ClientConfig::load(None, &env_of(&[("COORDINATOOL_PORT", "http")]), "h");
        // The default file may or may not exist on this machine; the env var is bad either way.
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("COORDINATOOL_PORT"), "{msg}");
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_not() {
        let err = ConfFile::load(Some(Path::new("/nonexistent/c.conf")), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.conf"));
        let err = ConfFile::load(None, &env_of(&[(ENV_CONF, "/nonexistent/d.conf")])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/d.conf"));
    }
}
