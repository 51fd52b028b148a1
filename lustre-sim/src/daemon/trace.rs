//! `lustre-simd --trace FILE`: one line per dispatched item,
//! `<cookie hex> <fid> <CLOCK_REALTIME ns>`, e.g.
//! `0x66f1a2b3 [0x200000400:0x1:0x0] 1727000000123456789`.
//!
//! Lines go to a buffered writer (appending to `FILE`); a flusher thread
//! flushes it every 100 ms and [`Tracer::flush`] at exit.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lustre_bindings::Fid;

use crate::SimError;

/// How often the trace is flushed.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(100);

/// A latency trace file.
#[derive(Debug)]
pub struct Tracer {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    failed: AtomicBool,
}

/// CLOCK_REALTIME in nanoseconds.
pub fn realtime_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Format one trace line (with its newline) into `out`.
pub fn format_line(out: &mut impl Write, cookie: u64, fid: Fid, ns: u128) -> std::io::Result<()> {
    writeln!(
        out,
        "{cookie:#x} [{:#x}:{:#x}:{:#x}] {ns}",
        fid.seq, fid.oid, fid.ver
    )
}

impl Tracer {
    /// Open `path` for appending and start the flusher thread (which ends
    /// when the last other reference is dropped).
    pub fn open(path: &Path) -> Result<Arc<Tracer>, SimError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SimError::io(format!("open trace file {}", path.display()), e))?;
        let t = Arc::new(Tracer {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::with_capacity(1 << 20, file)),
            failed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&t);
        std::thread::Builder::new()
            .name("trace-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_PERIOD);
                    match weak.upgrade() {
                        Some(t) => t.flush(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SimError::io("spawn the trace flusher", e))?;
        Ok(t)
    }

    fn report(&self, e: std::io::Error) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the trace");
        }
    }

    /// Record items handed out now (one clock read for all of them).
    pub fn handed_out(&self, items: impl Iterator<Item = (u64, Fid)>) {
        let ns = realtime_ns();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for (cookie, fid) in items {
            if let Err(e) = format_line(&mut *out, cookie, fid, ns) {
                self.report(e);
                return;
            }
        }
    }

    /// Flush buffered lines to the file.
    pub fn flush(&self) {
        let r = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        if let Err(e) = r {
            self.report(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let mut v = Vec::new();
        format_line(
            &mut v,
            0x66f1a2b3,
            Fid::new(0x200000401, 1, 0),
            1_727_000_000_123_456_789,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "0x66f1a2b3 [0x200000401:0x1:0x0] 1727000000123456789\n"
        );
    }

    #[test]
    fn lines_are_appended_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trace");
        std::fs::write(&p, "old\n").unwrap();
        let t = Tracer::open(&p).unwrap();
        t.handed_out([(1u64, Fid::new(0x200000400, 2, 0))].into_iter());
        t.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "old");
        assert!(lines[1].starts_with("0x1 [0x200000400:0x2:0x0] "), "{text}");
    }
}
