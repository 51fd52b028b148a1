//! The sled store: one record per request not yet done, at
//! `<state_dir>/store`.
//!
//! Tree `requests`: key = cookie (u64 BE) ++ dfid (seq u64 BE, oid u32 BE,
//! ver u32 BE), value = the MessagePack [`Record`] (named fields). The schema
//! version lives in tree `meta` and belongs to `coordinatool-state-migrations`,
//! which [`Store::open`] runs first.
//!
//! # Durability
//! Writes go through [`Store::apply`]: one atomic `sled::Batch` per driver
//! step, then one `flush()` when a record was written (new requests,
//! assignments), so requests from one HAL are group-committed and an
//! assignment is on disk before the agent's reply is written. Deletions alone
//! (`done`) are not flushed at once: sled's background flush (every 500 ms) or
//! the next write makes them durable. After a crash a done request may thus be
//! handed out again; the mover's `action_begin` then fails with `-ENOENT`
//! from Lustre, it reports an error `done`, and the request is forgotten.

use std::path::{Path, PathBuf};

use coordinatool_protocol::WireFid;
use coordinatool_state_migrations::{KEY_LEN, MigrationError, MigrationReport, REQUESTS_TREE};

use crate::scheduler::{Record, ReqKey};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("state store {path}: {op} failed: {source}")]
    Sled {
        /// The store folder.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: sled::Error,
    },
    /// The schema could not be brought up to date.
    #[error("state store {path}: {source}")]
    Migration {
        /// The store folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: MigrationError,
    },
    /// A record could not be decoded.
    #[error("state store {path}: record {key} is corrupt: {reason}")]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// The key, in hex.
        key: String,
        /// Why.
        reason: String,
    },
    /// A record could not be encoded (a bug).
    #[error("cannot encode record {key}: {reason}")]
    Encode {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// sled's page cache (its default is 1 GiB, which a replay scan fills:
/// every record is also held decoded by the scheduler, so a big cache only
/// doubles the memory used). 4 MiB: at 16 MiB the daemon held ~25 MB more
/// after a 1M replay (sled overshoots its budget) for no faster scan.
pub const CACHE_BYTES: u64 = 4 << 20;

/// Encodes a key.
pub fn encode_key(k: &ReqKey) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out[0..8].copy_from_slice(&k.cookie.to_be_bytes());
    out[8..16].copy_from_slice(&k.dfid.seq.to_be_bytes());
    out[16..20].copy_from_slice(&k.dfid.oid.to_be_bytes());
    out[20..24].copy_from_slice(&k.dfid.ver.to_be_bytes());
    out
}

/// Decodes a key.
pub fn decode_key(b: &[u8]) -> Option<ReqKey> {
    if b.len() != KEY_LEN {
        return None;
    }
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_be_bytes(a)
    };
    let u32_at = |o: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[o..o + 4]);
        u32::from_be_bytes(a)
    };
    Some(ReqKey {
        cookie: u64_at(0),
        dfid: WireFid {
            seq: u64_at(8),
            oid: u32_at(16),
            ver: u32_at(20),
        },
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Encodes a record value.
pub fn encode_record(r: &Record) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(r).map_err(|e| StoreError::Encode {
        key: r.key().to_string(),
        reason: e.to_string(),
    })
}

/// The open store.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    requests: sled::Tree,
    no_flush: bool,
}

impl Store {
    /// Opens (creating it if needed) the store at `<state_dir>/store` and
    /// brings its schema up to date.
    pub fn open(state_dir: &Path, no_flush: bool) -> Result<(Store, MigrationReport), StoreError> {
        let path = state_dir.join("store");
        let sled_err = |op| {
            let path = path.clone();
            move |source| StoreError::Sled { path, op, source }
        };
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()
            .map_err(sled_err("open"))?;
        let report = coordinatool_state_migrations::migrate(&db).map_err(|source| {
            StoreError::Migration {
                path: path.clone(),
                source,
            }
        })?;
        let requests = db
            .open_tree(REQUESTS_TREE)
            .map_err(sled_err("open requests tree"))?;
        Ok((
            Store {
                path,
                db,
                requests,
                no_flush,
            },
            report,
        ))
    }

    fn err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Sled {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Every stored record, oldest first (by receive time, then key).
    ///
    /// Start-up cost matters (1M records must replay in seconds), so: one
    /// scan only (sled's `len()` is itself a full scan and is not used), and
    /// the key space is cut into cookie ranges scanned and decoded in
    /// parallel (cookies are handed out sequentially by the MDT, so the
    /// ranges are about even).
    ///
    /// Records are decoded into one contiguous `Vec` per range (not boxed
    /// one by one): a large `Vec` is its own mapping, returned to the system
    /// when dropped, whereas a million small freed boxes interleaved with
    /// sled's allocations would stay resident after replay.
    pub fn load_all(&self) -> Result<Vec<Record>, StoreError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.load_all_threads(threads.clamp(1, 4))
    }

    /// [`Store::load_all`] with `threads` scanning threads (benchmarks).
    pub fn load_all_threads(&self, threads: usize) -> Result<Vec<Record>, StoreError> {
        let (Some((first, _)), Some((last, _))) = (
            self.requests.first().map_err(self.err("scan requests"))?,
            self.requests.last().map_err(self.err("scan requests"))?,
        ) else {
            return Ok(Vec::new());
        };
        let cookie = |k: &[u8]| decode_key(k).map_or(0, |k| k.cookie);
        let (lo, hi) = (cookie(&first), cookie(&last));
        let threads = if hi - lo < 4096 {
            1
        } else {
            threads.max(1) as u64
        };
        // Range i is [bound i, bound i+1), with open ends at both sides. An
        // 8-byte cookie prefix sorts before every key with that cookie.
        let bounds: Vec<[u8; 8]> = (1..threads)
            .map(|i| (lo + (hi - lo) / threads * i).to_be_bytes())
            .collect();
        let parts: Vec<Result<Vec<Record>, StoreError>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..bounds.len() + 1)
                .map(|i| {
                    let start = i.checked_sub(1).map(|j| bounds[j]);
                    let end = bounds.get(i).copied();
                    sc.spawn(move || self.load_range(start, end))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            out.extend(part);
        }
        // Usually already in order (cookies grow with time): then no sort
        // (and no scratch buffer) at all.
        let order = |r: &Record| (r.received_at_ms, r.item.cookie);
        if !out.is_sorted_by_key(order) {
            out.sort_by_key(order);
        }
        Ok(out)
    }

    /// Scans and decodes the keys in `[start, end)` (open ends when `None`).
    fn load_range(
        &self,
        start: Option<[u8; 8]>,
        end: Option<[u8; 8]>,
    ) -> Result<Vec<Record>, StoreError> {
        use std::ops::Bound;
        let lower = start.map_or(Bound::Unbounded, |b| Bound::Included(b.to_vec()));
        let upper = end.map_or(Bound::Unbounded, |b| Bound::Excluded(b.to_vec()));
        let mut out = Vec::new();
        for kv in self.requests.range::<Vec<u8>, _>((lower, upper)) {
            let (k, v) = kv.map_err(self.err("scan requests"))?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Decodes one stored record and checks it matches its key.
    fn decode(&self, k: &[u8], v: &[u8]) -> Result<Record, StoreError> {
        let rec: Record = rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            key: hex(k),
            reason: e.to_string(),
        })?;
        if decode_key(k) != Some(rec.key()) {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                key: hex(k),
                reason: format!("the record is for {}", rec.key()),
            });
        }
        Ok(rec)
    }

    /// Number of stored records. A full scan of the tree (sled keeps no
    /// count): not for hot paths.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Applies puts (`Some(record)`) and deletions (`None`) in one atomic
    /// batch; flushes if `flush` (and the store was not opened with
    /// `no_flush`).
    pub fn apply<R: std::borrow::Borrow<Record>>(
        &self,
        changes: impl IntoIterator<Item = (ReqKey, Option<R>)>,
        flush: bool,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, rec) in changes {
            let k = encode_key(&key);
            match rec {
                Some(r) => batch.insert(&k[..], encode_record(r.borrow())?),
                None => batch.remove(&k[..]),
            }
        }
        self.requests
            .apply_batch(batch)
            .map_err(self.err("write batch"))?;
        if flush {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes to disk (unless opened with `no_flush`).
    pub fn flush(&self) -> Result<(), StoreError> {
        if !self.no_flush {
            self.db.flush().map_err(self.err("flush"))?;
        }
        Ok(())
    }

    /// Flushes even with `no_flush` (shutdown).
    pub fn flush_final(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(self.err("flush"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinatool_protocol::WireItem;

    /// [`Store::open`], retried while sled's lock is still held by the
    /// background flusher of a store just dropped (it lets go within its
    /// flush period; slower on a loaded machine).
    fn open_retry(dir: &Path, no_flush: bool) -> Result<(Store, MigrationReport), StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match Store::open(dir, no_flush) {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn rec(n: u32, agent: Option<&str>) -> Record {
        let fid = WireFid {
            seq: 0x200000401,
            oid: n,
            ver: 0,
        };
        Record {
            item: WireItem {
                action: 20,
                fid,
                dfid: fid,
                extent_offset: 0,
                extent_length: u64::MAX,
                cookie: u64::from(n) * 3 + 7,
                gid: 0,
                data: vec![0, 1, 2, n as u8],
            },
            archive_id: 3,
            flags: 0,
            received_at_ms: u64::from(n),
            agent: agent.map(str::to_string),
            cancel_pending: n.is_multiple_of(2),
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_cookie() {
        let r = rec(5, None);
        let k = r.key();
        assert_eq!(decode_key(&encode_key(&k)), Some(k));
        assert_eq!(decode_key(&[0; 3]), None);
        let a = encode_key(&ReqKey {
            cookie: 1,
            dfid: k.dfid,
        });
        let b = encode_key(&ReqKey {
            cookie: 256,
            dfid: k.dfid,
        });
        assert!(a < b);
    }

    #[test]
    fn write_then_replay_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Record> = (1..=5).map(|n| rec(n, (n == 2).then_some("m1"))).collect();
        {
            let (s, report) = open_retry(dir.path(), false).unwrap();
            assert_eq!(report.to, 1);
            s.apply(recs.iter().map(|r| (r.key(), Some(r))), true)
                .unwrap();
            s.apply([(recs[0].key(), None::<&Record>)], false).unwrap();
            s.flush_final().unwrap();
        }
        let (s, report) = open_retry(dir.path(), false).unwrap();
        assert!(report.applied.is_empty());
        let back = s.load_all().unwrap();
        assert_eq!(back, recs[1..].to_vec());
        assert_eq!(back[0].agent.as_deref(), Some("m1"));
    }

    #[test]
    fn a_batch_never_applied_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), false).unwrap();
        let mut half = sled::Batch::default();
        let r = rec(1, None);
        half.insert(&encode_key(&r.key())[..], encode_record(&r).unwrap());
        drop(half);
        assert!(s.load_all().unwrap().is_empty());
    }

    const CRASH_ENV: &str = "COORDINATOOLD_STORE_CRASH_CHILD";
    const PER_BATCH: u32 = 40;

    /// Child half of `sigkill_mid_write_leaves_no_half_batch`: writes
    /// batches forever until killed. Does nothing in a normal test run.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_ENV) else {
            return;
        };
        let (s, _) = open_retry(Path::new(&dir), true).unwrap();
        for b in 0u32.. {
            let recs: Vec<Record> = (0..PER_BATCH)
                .map(|i| rec(b * PER_BATCH + i, None))
                .collect();
            s.apply(recs.iter().map(|r| (r.key(), Some(r))), b.is_multiple_of(7))
                .unwrap();
            if b == 20 {
                std::fs::write(Path::new(&dir).join("started"), b"").unwrap();
            }
        }
    }

    #[test]
    fn sigkill_mid_write_leaves_no_half_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::crash_child", "--nocapture"])
            .env(CRASH_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !dir.path().join("started").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "child never started writing"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (s, _) = open_retry(dir.path(), false).unwrap();
        let back = s.load_all().unwrap();
        assert!(!back.is_empty());
        let mut per_batch = std::collections::BTreeMap::<u32, u32>::new();
        for r in &back {
            *per_batch.entry(r.item.fid.oid / PER_BATCH).or_default() += 1;
        }
        for (b, n) in per_batch {
            assert_eq!(n, PER_BATCH, "batch {b} is half written");
        }
    }

    #[test]
    fn corrupt_records_are_reported_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), false).unwrap();
        s.requests
            .insert([7u8; KEY_LEN], &b"\xc1garbage"[..])
            .unwrap();
        let err = s.load_all().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("0707070707") && msg.contains("corrupt"),
            "{msg}"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("store")).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &99u32.to_be_bytes()[..])
                .unwrap();
            db.flush().unwrap();
        }
        let err = open_retry(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn parallel_load_covers_every_key_once_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), true).unwrap();
        // Uneven cookies (n * n), received in reverse order of cookies.
        let recs: Vec<Record> = (0..5_000u32)
            .map(|n| {
                let mut r = rec(n, None);
                r.item.cookie = u64::from(n) * u64::from(n);
                r.received_at_ms = 10_000 - u64::from(n);
                r
            })
            .collect();
        s.apply(recs.iter().map(|r| (r.key(), Some(r))), false)
            .unwrap();
        let back = s.load_all().unwrap();
        let mut expect: Vec<Record> = recs.clone();
        expect.reverse();
        assert_eq!(back, expect);
        // A corrupt record in the middle of the key space is found.
        let mut bad = encode_key(&recs[2_500].key());
        bad[23] ^= 0xff;
        s.requests.insert(bad, &b"\xc1"[..]).unwrap();
        let err = s.load_all().unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn many_records_replay_fast() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), true).unwrap();
        let recs: Vec<Record> = (0..20_000).map(|n| rec(n, None)).collect();
        s.apply(recs.iter().map(|r| (r.key(), Some(r))), false)
            .unwrap();
        let start = std::time::Instant::now();
        let back = s.load_all().unwrap();
        assert_eq!(back.len(), 20_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
