//! The shim's settings: the shared client configuration (file, then
//! `COORDINATOOL_*` variables) plus what `llapi_hsm_copytool_register` was given.

use crate::error::ShimError;
use coordinatool_protocol::conf::ClientConfig;
use std::time::Duration;

/// Upper bound of the reconnect backoff (and of the "daemon unreachable" log interval).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First reconnect delay.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// `wait_ms` of each `recv` long poll: the daemon answers with an empty batch
/// after this long, which doubles as a liveness check of the connection.
pub const RECV_WAIT_MS: u64 = 30_000;
/// Extra time allowed for an answer beyond `wait_ms` before the connection
/// is declared dead.
pub const ANSWER_SLACK: Duration = Duration::from_secs(20);
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Daemon host.
    pub host: String,
    /// Daemon port.
    pub port: u16,
    /// Our identity.
    pub client_id: String,
    /// The filesystem name of the mount (sent in `ehlo`, and used for HALs
    /// whose batch names none).
    pub fsname: String,
    /// Archive ids served; empty means any.
    pub archive_ids: Vec<u32>,
    /// `max_archive`.
    pub max_archive: Option<u32>,
    /// `max_restore`.
    pub max_restore: Option<u32>,
    /// `max_remove`.
    pub max_remove: Option<u32>,
    /// Size of the HAL buffer, also sent as `max_bytes`.
    pub hal_size: u32,
    /// `wait_ms` of each `recv`.
    pub recv_wait_ms: u64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub first_backoff: Duration,
    /// Largest reconnect delay.
    pub max_backoff: Duration,
}

impl SessionConfig {
    /// Builds a session configuration from the client configuration.
    pub fn new(cfg: &ClientConfig, fsname: String, archive_ids: Vec<u32>) -> Self {
        SessionConfig {
            host: cfg.host.clone(),
            port: cfg.port,
            client_id: cfg.client_id.clone(),
            fsname,
            archive_ids,
            max_archive: cfg.max_archive,
            max_restore: cfg.max_restore,
            max_remove: cfg.max_remove,
            hal_size: cfg.hal_size,
            recv_wait_ms: RECV_WAIT_MS,
            connect_timeout: CONNECT_TIMEOUT,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Loads the client configuration (`$COORDINATOOL_CONF` or
/// `/etc/coordinatool.conf`, then `COORDINATOOL_*`) and logs its warnings.
pub fn load_client_config(
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &str,
) -> Result<ClientConfig, ShimError> {
    let cfg = ClientConfig::load(None, env, hostname)?;
    for w in &cfg.warnings {
        crate::log_warn!("configuration: {w}");
    }
    Ok(cfg)
}

/// The archive ids announced in `ehlo`: those given to register (an id of 0
/// means any, hence an empty list), or the configured `archive_id`s when the
/// copytool gave none. Negative ids are an error, as in liblustreapi.
pub fn archive_ids(from_call: &[i32], from_conf: &[u32]) -> Result<Vec<u32>, ShimError> {
    if from_call.is_empty() {
        return Ok(from_conf.to_vec());
    }
    let mut out = Vec::new();
    for (i, &id) in from_call.iter().enumerate() {
        let id = u32::try_from(id)
            .map_err(|_| ShimError::invalid(format!("archive id #{i} is negative ({id})")))?;
        if id == 0 {
            // 0 means "any archive": no filter at all.
            return Ok(Vec::new());
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The host name, up to the first dot (the default `client_id`).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL or the buffer end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
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

    #[test]
    fn archive_id_rules() {
        assert_eq!(archive_ids(&[], &[3]).unwrap(), vec![3]);
        assert_eq!(archive_ids(&[2, 1, 2], &[3]).unwrap(), vec![2, 1]);
        assert_eq!(archive_ids(&[2, 0], &[3]).unwrap(), Vec::<u32>::new());
        let err = archive_ids(&[1, -4], &[]).unwrap_err();
        assert_eq!(err.to_neg_errno(), -libc::EINVAL);
        assert!(err.to_string().contains("-4"), "{err}");
    }

    #[test]
    fn file_then_env_into_session_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(
            &path,
            "host daemon.example\nport 6000\nhal_size 64K\nmax_restore 2\narchive_id 5\nclient_grace_ms 10\n",
        )
        .unwrap();
        let conf = path.to_str().unwrap().to_string();
        let env = env_of(&[
            ("COORDINATOOL_CONF", &conf),
            ("COORDINATOOL_PORT", "7000"),
            ("COORDINATOOL_CLIENT_ID", "mover-a"),
        ]);
        let c = load_client_config(&env, "node1.cluster").unwrap();
        let ids = archive_ids(&[], &c.archive_ids).unwrap();
        let s = SessionConfig::new(&c, "testfs".into(), ids);
        assert_eq!(s.addr(), "daemon.example:7000");
        assert_eq!(s.client_id, "mover-a");
        assert_eq!(s.hal_size, 65536);
        assert_eq!(s.max_restore, Some(2));
        assert_eq!(s.max_archive, None);
        assert_eq!(s.archive_ids, vec![5]);
    }

    #[test]
    fn bad_config_is_einval_naming_the_key() {
        let env = env_of(&[("COORDINATOOL_CONF", "/nonexistent/x.conf")]);
        let err = load_client_config(&env, "h").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.conf"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, "hal_size 10\n").unwrap();
        let conf = path.to_str().unwrap().to_string();
        let env = env_of(&[("COORDINATOOL_CONF", &conf)]);
        let err = load_client_config(&env, "h").unwrap_err();
        assert_eq!(err.to_neg_errno(), -libc::EINVAL);
        assert!(err.to_string().contains("hal_size"), "{err}");
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
