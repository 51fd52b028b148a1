//! Thin safe wrappers over the few system calls the shim needs.

use crate::error::ShimError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `getpid()`.
pub fn pid() -> u32 {
    std::process::id()
}

/// A non-blocking, close-on-exec eventfd starting at 0.
pub fn eventfd() -> Result<OwnedFd, ShimError> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(ShimError::last_os("eventfd"));
    }
    // SAFETY: fd was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A blocking, close-on-exec eventfd in semaphore mode, starting at 0: each
/// [`eventfd_wait`] takes one from the counter, blocking while it is 0.
pub fn eventfd_semaphore() -> Result<OwnedFd, ShimError> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_SEMAPHORE) };
    if fd < 0 {
        return Err(ShimError::last_os("eventfd"));
    }
    // SAFETY: fd was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes one from a blocking semaphore eventfd, waiting in one `read` as the
/// real library waits for a HAL: a signal handler installed without
/// `SA_RESTART` interrupts it (an `Interrupted` error); with `SA_RESTART`
/// the kernel restarts the `read` by itself.
pub fn eventfd_wait(fd: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 8];
    // SAFETY: buf is valid for writes of 8 bytes, the size an eventfd read needs.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe, both ends non-blocking and close-on-exec: (read, write).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: fds points to two writable c_ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(ShimError::last_os("pipe2"));
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    // Room for many completions while the worker reads them in batches; best
    // effort (the default 64 KiB still works, and the system may cap it).
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own, with an int argument.
    let _ = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    Ok((r, w))
}

/// Size asked for the completion pipe (at most the unprivileged default
/// limit, `/proc/sys/fs/pipe-max-size` = 1 MiB).
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Adds `n` to an eventfd counter.
pub fn eventfd_add(fd: &OwnedFd, n: u64) -> io::Result<()> {
    let buf = n.to_ne_bytes();
    write_some(fd.as_raw_fd(), &buf).map(|_| ())
}

/// Resets an eventfd counter to 0 (no-op when already 0).
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    // EAGAIN (already zero) is the expected "nothing to clear".
    let _ = read_some(fd.as_raw_fd(), &mut buf);
}

/// One `write` (EINTR retried).
pub fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for reads of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `read` (EINTR retried).
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends all of `buf` on a socket with `MSG_NOSIGNAL` (a closed peer gives
/// `EPIPE`, never `SIGPIPE`). The socket's send timeout bounds each call.
pub fn send_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for reads of buf.len() bytes.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// A `poll` timeout in milliseconds, rounded up: a wait of 0.4 ms must not
/// become a busy `poll(0)`.
fn poll_ms(timeout: Duration) -> libc::c_int {
    timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
}

/// Polls `fds` for readability; returns which are readable (or hung up /
/// in error, which a following read reports). EINTR counts as a timeout.
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout: Duration) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = poll_ms(timeout);
    // SAFETY: pfds is a valid array of N pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(e);
    }
    Ok(pfds.map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0))
}

/// Opens a directory read-only, close-on-exec, relative to `dirfd` when given.
pub fn open_dir(at: Option<RawFd>, path: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: path is a valid NUL-terminated string; at is a caller-provided
    // directory fd (or AT_FDCWD).
    let fd = unsafe { libc::openat(at.unwrap_or(libc::AT_FDCWD), path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_readable_only_while_set() {
        let fd = eventfd().unwrap();
        let raw = fd.as_raw_fd();
        assert_eq!(poll_readable([raw], Duration::ZERO).unwrap(), [false]);
        eventfd_add(&fd, 1).unwrap();
        assert_eq!(poll_readable([raw], Duration::ZERO).unwrap(), [true]);
        eventfd_clear(&fd);
        assert_eq!(poll_readable([raw], Duration::ZERO).unwrap(), [false]);
        eventfd_clear(&fd);
    }

    #[test]
    fn poll_timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(poll_ms(Duration::ZERO), 0);
        assert_eq!(poll_ms(Duration::from_micros(1)), 1);
        assert_eq!(poll_ms(Duration::from_micros(1999)), 2);
        assert_eq!(poll_ms(Duration::from_millis(3)), 3);
        assert_eq!(poll_ms(Duration::from_secs(u64::MAX)), i32::MAX);
    }

    #[test]
    fn semaphore_eventfd_counts_wake_ups() {
        let fd = eventfd_semaphore().unwrap();
        eventfd_add(&fd, 2).unwrap();
        eventfd_wait(&fd).unwrap();
        eventfd_wait(&fd).unwrap();
        assert_eq!(
            poll_readable([fd.as_raw_fd()], Duration::ZERO).unwrap(),
            [false]
        );
    }

    #[test]
    fn pipe_round_trip() {
        let (r, w) = pipe().unwrap();
        assert_eq!(write_some(w.as_raw_fd(), b"abc").unwrap(), 3);
        let mut buf = [0u8; 8];
        assert_eq!(read_some(r.as_raw_fd(), &mut buf).unwrap(), 3);
        let e = read_some(r.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn send_to_closed_peer_is_epipe_not_sigpipe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(s);
        let big = vec![0u8; 1 << 20];
        // The first send may succeed (buffered); a later one must fail cleanly.
        let mut failed = None;
        for _ in 0..50 {
            if let Err(e) = send_all(c.as_raw_fd(), &big) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("sending to a closed peer must fail");
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            "{e}"
        );
    }
}
