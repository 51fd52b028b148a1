//! `sd_notify` over `$NOTIFY_SOCKET` (a Unix datagram socket, possibly in the
//! abstract namespace when its name starts with `@`). A no-op outside systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1`) to the service manager, if any. Failures
/// are logged, never fatal.
pub fn notify(state: &str) {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state);
}

/// Sends `state` to the socket named `path` (`None`: do nothing).
pub fn notify_to(path: Option<&std::ffi::OsStr>, state: &str) {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return;
    };
    let res = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        } else {
            SocketAddr::from_pathname(path)?
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = res {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        notify_to(Some(p.as_os_str()), "READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // No socket: nothing happens.
        notify_to(None, "READY=1");
    }
}
