//! The sled store: every request not yet done, as a journal at
//! `<state_dir>/store` (layout version 2, owned by
//! `coordinatool-state-migrations`, which [`Store::open`] runs first).
//!
//! Tree `journal`:
//! - a **checkpoint**: every request held when it was taken, as chunks of
//!   about [`CHUNK_BYTES`], each one MessagePack array of [`Record`]s;
//! - a **write-ahead log** (WAL): one entry per driver step since the
//!   checkpoint began, holding the records that step added or changed (whole
//!   records) and the keys it deleted;
//! - a meta value naming the checkpoint in force and the first WAL entry it
//!   does not cover.
//!
//! Replay is the checkpoint's records with the WAL applied on top, in order.
//! A driver step costs one sled batch (one WAL entry per [`CHUNK_BYTES`] of
//! records), not one sled write per request: sled's per-key cost (tree
//! descent, page rewrite, log record) was most of the daemon's CPU with one
//! key per request.
//!
//! When the WAL outgrows twice the checkpoint (and [`CHECKPOINT_MIN_WAL`]), a
//! new checkpoint is written in slices by [`Store::maintain`] between driver
//! steps (never a long stall): it notes the next WAL sequence S and the keys
//! held, then writes each key's current record. Since WAL entries are whole
//! states (a put of the entire record, or a deletion), replaying entries from
//! S over such a fuzzy checkpoint gives the right final state. Once every
//! chunk is on disk the meta value is switched to the new checkpoint and S in
//! one write; the old chunks and WAL entries below S are deleted afterwards
//! (and again at load if a crash came first).
//!
//! # Durability
//! Writes go through [`Store::apply`]: one atomic `sled::Batch` per driver
//! step, then one `flush()` when a record was written (new requests,
//! assignments), so everything a step changed is group-committed and an
//! assignment is on disk before the agent's reply is written. Deletions alone
//! (`done`) are not durable at once: they are written with the next write or
//! within [`DELETION_DELAY`], and flushed by the next flush or sled's
//! background flush (every 500 ms). After a crash a done request may thus be
//! handed out again; the mover's `action_begin` then fails with `-ENOENT`
//! from Lustre, it reports an error `done`, and the request is forgotten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coordinatool_protocol::WireFid;
use coordinatool_state_migrations::{
    CHECKPOINT_PREFIX, CHUNK_BYTES, JOURNAL_META_KEY, JOURNAL_TREE, JournalMeta, KEY_LEN,
    MigrationError, MigrationReport, WAL_PREFIX, checkpoint_key, checkpoint_prefix, parse_wal_key,
    push_array_header, wal_key,
};
use serde::Deserialize;

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
    /// A stored value could not be decoded.
    #[error("state store {path}: {what} {key} is corrupt: {reason}")]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// What it is (checkpoint chunk, WAL entry, meta value).
        what: &'static str,
        /// The sled key, in hex.
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

/// sled's page cache. The journal is written sequentially and read only at
/// start-up, so a small cache costs nothing, and every record is also held
/// decoded by the scheduler (a big cache would only double the memory).
pub const CACHE_BYTES: u64 = 4 << 20;

/// A new checkpoint is started once the WAL holds more than this many bytes
/// and more than twice the checkpoint's.
pub const CHECKPOINT_MIN_WAL: u64 = 64 << 20;

/// Records a [`Store::maintain`] call writes to a checkpoint, at most.
pub const CHECKPOINT_SLICE: usize = 4096;

/// While a checkpoint is being written and no command comes, the next slice
/// is written after this long.
const CHECKPOINT_IDLE_STEP: Duration = Duration::from_millis(1);

/// Deletions alone are written this long after the first of them at most.
pub const DELETION_DELAY: Duration = Duration::from_millis(100);

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

/// Encodes a record value (compact: a MessagePack array, fields in
/// declaration order).
pub fn encode_record(r: &Record) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    encode_record_into(r, &mut out)?;
    Ok(out)
}

fn encode_record_into(r: &Record, out: &mut Vec<u8>) -> Result<(), StoreError> {
    rmp_serde::encode::write(out, r).map_err(|e| StoreError::Encode {
        key: r.key().to_string(),
        reason: e.to_string(),
    })
}

/// Appends a MessagePack `bin` header.
fn push_bin_header(out: &mut Vec<u8>, len: usize) {
    if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// A WAL entry as stored: `[puts, dels]`, `puts` an array of records,
/// `dels` the concatenated 24-byte keys deleted.
#[derive(Deserialize)]
struct WalEntry<'a> {
    puts: Vec<Record>,
    #[serde(borrow)]
    dels: &'a [u8],
}

/// One WAL entry being built.
#[derive(Default)]
struct WalBuilder {
    puts: Vec<u8>,
    nputs: u32,
    dels: Vec<u8>,
}

impl WalBuilder {
    fn is_empty(&self) -> bool {
        self.nputs == 0 && self.dels.is_empty()
    }

    fn len(&self) -> usize {
        self.puts.len() + self.dels.len()
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 16);
        push_array_header(&mut out, 2);
        push_array_header(&mut out, self.nputs);
        out.extend_from_slice(&self.puts);
        push_bin_header(&mut out, self.dels.len());
        out.extend_from_slice(&self.dels);
        out
    }
}

/// A checkpoint being written.
#[derive(Debug)]
struct Checkpoint {
    id: u64,
    /// First WAL entry not covered.
    wal_start: u64,
    /// WAL bytes below `wal_start` (dropped once the checkpoint is in force).
    wal_bytes_before: u64,
    keys: Vec<ReqKey>,
    pos: usize,
    chunk: u32,
    buf: Vec<u8>,
    count: u32,
    /// Bytes of chunks written so far.
    written: u64,
}

/// The journal's bookkeeping.
#[derive(Debug)]
struct Journal {
    meta: JournalMeta,
    next_seq: u64,
    /// Bytes of WAL entries from `meta.wal_start`.
    wal_bytes: u64,
    /// Bytes of the checkpoint in force.
    checkpoint_bytes: u64,
    /// WAL size that starts a checkpoint, at least.
    min_wal: u64,
    running: Option<Checkpoint>,
    /// Deletions not written yet (24-byte keys).
    pending_dels: Vec<u8>,
    /// When the oldest of them was made.
    pending_since: Option<Instant>,
}

/// The open store.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    journal: sled::Tree,
    no_flush: bool,
    state: Arc<Mutex<Journal>>,
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
        let journal = db
            .open_tree(JOURNAL_TREE)
            .map_err(sled_err("open journal tree"))?;
        let meta = match journal
            .get(JOURNAL_META_KEY)
            .map_err(sled_err("read journal meta"))?
        {
            None => JournalMeta {
                checkpoint: 0,
                wal_start: 0,
            },
            Some(v) => JournalMeta::decode(&v).ok_or_else(|| StoreError::Corrupt {
                path: path.clone(),
                what: "journal meta value",
                key: hex(JOURNAL_META_KEY),
                reason: format!("{} bytes long, expected 16", v.len()),
            })?,
        };
        let last = journal
            .scan_prefix([WAL_PREFIX])
            .keys()
            .next_back()
            .transpose()
            .map_err(sled_err("scan the WAL"))?;
        let next_seq = last
            .and_then(|k| parse_wal_key(&k))
            .map_or(0, |s| s + 1)
            .max(meta.wal_start);
        let state = Journal {
            meta,
            next_seq,
            wal_bytes: 0,
            checkpoint_bytes: 0,
            min_wal: CHECKPOINT_MIN_WAL,
            running: None,
            pending_dels: Vec::new(),
            pending_since: None,
        };
        Ok((
            Store {
                path,
                db,
                journal,
                no_flush,
                state: Arc::new(Mutex::new(state)),
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

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the WAL size that starts a checkpoint (tests and benchmarks).
    pub fn set_checkpoint_min_wal(&self, bytes: u64) {
        self.journal().min_wal = bytes;
    }

    /// Every stored record, oldest first (by receive time, then cookie).
    ///
    /// Start-up cost matters (1M records must replay in seconds): the
    /// checkpoint's chunks and the WAL's entries are read in one pass each
    /// and decoded on up to 4 threads. Records land in one contiguous `Vec`
    /// (a large allocation is its own mapping, returned to the system when
    /// dropped; a million small boxes would stay resident after replay).
    /// Leftovers of an unfinished or superseded checkpoint are deleted.
    pub fn load_all(&self) -> Result<Vec<Record>, StoreError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.load_all_threads(threads.clamp(1, 4))
    }

    /// [`Store::load_all`] with `threads` decoding threads (benchmarks).
    pub fn load_all_threads(&self, threads: usize) -> Result<Vec<Record>, StoreError> {
        let meta = self.journal().meta;
        self.remove_leftovers(meta)?;
        let mut chunks = Vec::new();
        let mut checkpoint_bytes = 0u64;
        for kv in self.journal.scan_prefix(checkpoint_prefix(meta.checkpoint)) {
            let (k, v) = kv.map_err(self.err("read the checkpoint"))?;
            checkpoint_bytes += v.len() as u64;
            chunks.push((k, v));
        }
        let mut wal = Vec::new();
        let mut wal_bytes = 0u64;
        for kv in self
            .journal
            .range(wal_key(meta.wal_start)..=wal_key(u64::MAX))
        {
            let (k, v) = kv.map_err(self.err("read the WAL"))?;
            wal_bytes += v.len() as u64;
            wal.push((k, v));
        }
        let path = &self.path;
        let mut records: Vec<Record> = decode_parallel(&chunks, threads, |k, v, out| {
            let recs: Vec<Record> = rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                what: "checkpoint chunk",
                key: hex(k),
                reason: e.to_string(),
            })?;
            out.extend(recs);
            Ok(())
        })?;
        drop(chunks);
        let changes: Vec<(ReqKey, Option<Record>)> =
            decode_parallel(&wal, threads, |k, v, out| {
                let corrupt = |reason: String| StoreError::Corrupt {
                    path: path.clone(),
                    what: "WAL entry",
                    key: hex(k),
                    reason,
                };
                let e: WalEntry<'_> =
                    rmp_serde::from_slice(v).map_err(|e| corrupt(e.to_string()))?;
                if !e.dels.len().is_multiple_of(KEY_LEN) {
                    return Err(corrupt(format!(
                        "{} bytes of deleted keys, not a multiple of {KEY_LEN}",
                        e.dels.len()
                    )));
                }
                // Within one entry a key appears once (puts and deletions
                // are the final states of one driver step).
                out.extend(
                    e.dels
                        .chunks_exact(KEY_LEN)
                        .filter_map(|d| decode_key(d).map(|k| (k, None))),
                );
                out.extend(e.puts.into_iter().map(|r| (r.key(), Some(r))));
                Ok(())
            })?;
        drop(wal);
        if !changes.is_empty() {
            // The last change of each key wins.
            let mut last: HashMap<ReqKey, usize> = HashMap::with_capacity(changes.len());
            for (i, (k, _)) in changes.iter().enumerate() {
                last.insert(*k, i);
            }
            records.retain(|r| !last.contains_key(&r.key()));
            records.reserve(last.len());
            for (i, (k, r)) in changes.into_iter().enumerate() {
                if let Some(r) = r
                    && last.get(&k) == Some(&i)
                {
                    records.push(r);
                }
            }
        }
        {
            let mut j = self.journal();
            j.wal_bytes = wal_bytes;
            j.checkpoint_bytes = checkpoint_bytes;
        }
        // Usually already in order (cookies grow with time): then no sort
        // (and no scratch buffer) at all.
        let order = |r: &Record| (r.received_at_ms, r.item.cookie);
        if !records.is_sorted_by_key(order) {
            records.sort_by_key(order);
        }
        Ok(records)
    }

    /// Deletes checkpoint chunks other than `meta`'s and WAL entries below
    /// its start (left by a crash during or just after a checkpoint).
    fn remove_leftovers(&self, meta: JournalMeta) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        let ranges = [
            (
                [CHECKPOINT_PREFIX].to_vec(),
                checkpoint_prefix(meta.checkpoint).to_vec(),
            ),
            (
                checkpoint_prefix(meta.checkpoint + 1).to_vec(),
                [CHECKPOINT_PREFIX + 1].to_vec(),
            ),
            ([WAL_PREFIX].to_vec(), wal_key(meta.wal_start).to_vec()),
        ];
        for (lo, hi) in ranges {
            for k in self.journal.range(lo..hi).keys() {
                batch.remove(k.map_err(self.err("scan for leftovers"))?);
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(
                keys = n,
                "state store: removing leftovers of an earlier checkpoint"
            );
            self.journal
                .apply_batch(batch)
                .map_err(self.err("remove leftovers"))?;
        }
        Ok(())
    }

    /// Applies puts (`Some(record)`) and deletions (`None`) in one atomic
    /// batch (one WAL entry per [`CHUNK_BYTES`] of records); flushes if
    /// `flush` (and the store was not opened with `no_flush`). A key must
    /// appear at most once.
    ///
    /// Deletions alone are held in memory (they need not be durable at
    /// once, see "Durability") and written with the next write, or after
    /// [`DELETION_DELAY`], or once they fill a WAL entry.
    pub fn apply<R: std::borrow::Borrow<Record>>(
        &self,
        changes: impl IntoIterator<Item = (ReqKey, Option<R>)>,
        flush: bool,
    ) -> Result<(), StoreError> {
        self.write(changes, flush, false)
    }

    fn write<R: std::borrow::Borrow<Record>>(
        &self,
        changes: impl IntoIterator<Item = (ReqKey, Option<R>)>,
        flush: bool,
        force: bool,
    ) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let mut cur = WalBuilder::default();
        let mut dels = Vec::new();
        for (key, rec) in changes {
            match rec {
                Some(r) => {
                    encode_record_into(r.borrow(), &mut cur.puts)?;
                    cur.nputs += 1;
                    if cur.len() >= CHUNK_BYTES {
                        entries.push(std::mem::take(&mut cur));
                    }
                }
                None => dels.extend_from_slice(&encode_key(&key)),
            }
        }
        if !cur.is_empty() {
            entries.push(cur);
        }
        let mut j = self.journal();
        if !dels.is_empty() {
            j.pending_dels.extend_from_slice(&dels);
            j.pending_since.get_or_insert_with(Instant::now);
        }
        let hold = entries.is_empty() && !force && j.pending_dels.len() < CHUNK_BYTES;
        if !hold && !j.pending_dels.is_empty() {
            // They happened before this step's puts: first in the first
            // entry (replay applies an entry's deletions, then its puts).
            if entries.is_empty() {
                entries.push(WalBuilder::default());
            }
            entries[0].dels = std::mem::take(&mut j.pending_dels);
            j.pending_since = None;
        }
        if !hold && !entries.is_empty() {
            let mut batch = sled::Batch::default();
            let n = entries.len() as u64;
            let mut bytes = 0u64;
            for (seq, e) in (j.next_seq..).zip(entries) {
                let e = e.finish();
                bytes += e.len() as u64;
                batch.insert(&wal_key(seq)[..], e);
            }
            self.journal
                .apply_batch(batch)
                .map_err(self.err("write a WAL entry"))?;
            j.next_seq += n;
            j.wal_bytes += bytes;
        }
        drop(j);
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

    /// Writes the deletions still held, then flushes even with `no_flush`
    /// (shutdown).
    pub fn flush_final(&self) -> Result<(), StoreError> {
        self.write_pending_deletions()?;
        self.db.flush().map_err(self.err("flush"))?;
        Ok(())
    }

    /// How soon [`Store::maintain`] wants to run again although no command
    /// came: deletions are due, or a checkpoint is being written.
    pub fn idle_wait(&self) -> Option<Duration> {
        let j = self.journal();
        if j.running.is_some() {
            return Some(CHECKPOINT_IDLE_STEP);
        }
        j.pending_since
            .map(|t| DELETION_DELAY.saturating_sub(t.elapsed()))
    }

    /// Writes the deletions held back, if any, as one WAL entry.
    fn write_pending_deletions(&self) -> Result<(), StoreError> {
        self.write(std::iter::empty::<(ReqKey, Option<Record>)>(), false, true)
    }

    /// Upkeep, called by the driver after each step and when
    /// [`Store::idle_wait`] says: writes deletions held for
    /// [`DELETION_DELAY`]; starts a checkpoint when the WAL has outgrown the
    /// last one (`keys` gives the keys of every request held), or writes the
    /// next slice of at most `slice` records of the running one (`record`
    /// gives a request's current record, `None` once it is gone), and puts
    /// it in force once all are written.
    pub fn maintain(
        &self,
        keys: impl FnOnce() -> Vec<ReqKey>,
        record: impl Fn(&ReqKey) -> Option<Record>,
        slice: usize,
    ) -> Result<(), StoreError> {
        let due = self
            .journal()
            .pending_since
            .is_some_and(|t| t.elapsed() >= DELETION_DELAY);
        if due {
            self.write_pending_deletions()?;
        }
        let mut j = self.journal();
        if j.running.is_none() {
            if j.wal_bytes <= j.min_wal.max(2 * j.checkpoint_bytes) {
                return Ok(());
            }
            let id = j.meta.checkpoint + 1;
            // Chunks of an earlier attempt with this id, if any.
            self.remove_prefix(&checkpoint_prefix(id))?;
            let keys = keys();
            tracing::info!(
                checkpoint = id,
                requests = keys.len(),
                wal_bytes = j.wal_bytes,
                checkpoint_bytes = j.checkpoint_bytes,
                "state store: checkpoint started"
            );
            j.running = Some(Checkpoint {
                id,
                wal_start: j.next_seq,
                wal_bytes_before: j.wal_bytes,
                keys,
                pos: 0,
                chunk: 0,
                buf: Vec::new(),
                count: 0,
                written: 0,
            });
        }
        let Some(c) = j.running.as_mut() else {
            return Ok(());
        };
        let end = (c.pos + slice.max(1)).min(c.keys.len());
        let mut batch = sled::Batch::default();
        for i in c.pos..end {
            if let Some(r) = record(&c.keys[i]) {
                encode_record_into(&r, &mut c.buf)?;
                c.count += 1;
            }
            if c.buf.len() >= CHUNK_BYTES {
                c.written += seal_chunk(c, &mut batch);
            }
        }
        c.pos = end;
        let done = c.pos == c.keys.len();
        if done && c.count > 0 {
            c.written += seal_chunk(c, &mut batch);
        }
        self.journal
            .apply_batch(batch)
            .map_err(self.err("write a checkpoint chunk"))?;
        if !done {
            return Ok(());
        }
        // Every chunk is on disk before the meta value names them.
        self.flush()?;
        let Some(c) = j.running.take() else {
            return Ok(());
        };
        let new = JournalMeta {
            checkpoint: c.id,
            wal_start: c.wal_start,
        };
        self.journal
            .insert(JOURNAL_META_KEY, &new.encode()[..])
            .map_err(self.err("switch to the new checkpoint"))?;
        self.flush()?;
        j.meta = new;
        j.wal_bytes -= c.wal_bytes_before;
        j.checkpoint_bytes = c.written;
        drop(j);
        tracing::info!(
            checkpoint = c.id,
            bytes = c.written,
            wal_start = c.wal_start,
            "state store: checkpoint in force"
        );
        self.remove_leftovers(new)
    }

    fn remove_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for k in self.journal.scan_prefix(prefix).keys() {
            batch.remove(k.map_err(self.err("scan a checkpoint"))?);
        }
        self.journal
            .apply_batch(batch)
            .map_err(self.err("remove a checkpoint"))
    }

    /// Whether a checkpoint is being written.
    pub fn checkpoint_running(&self) -> bool {
        self.journal().running.is_some()
    }
}

/// Moves the records gathered in `c` into `batch` as chunk `c.chunk`;
/// returns its size.
fn seal_chunk(c: &mut Checkpoint, batch: &mut sled::Batch) -> u64 {
    let mut v = Vec::with_capacity(c.buf.len() + 5);
    push_array_header(&mut v, c.count);
    v.extend_from_slice(&c.buf);
    c.buf.clear();
    c.count = 0;
    let n = v.len() as u64;
    batch.insert(&checkpoint_key(c.id, c.chunk)[..], v);
    c.chunk += 1;
    n
}

/// Decodes `items` (sled key, value) on up to `threads` threads, each taking
/// a contiguous share; `f` appends what one value holds. The output keeps the
/// order of `items`.
fn decode_parallel<T: Send>(
    items: &[(sled::IVec, sled::IVec)],
    threads: usize,
    f: impl Fn(&[u8], &[u8], &mut Vec<T>) -> Result<(), StoreError> + Sync,
) -> Result<Vec<T>, StoreError> {
    let run = |part: &[(sled::IVec, sled::IVec)]| -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in part {
            f(k, v, &mut out)?;
        }
        Ok(out)
    };
    let per = items.len().div_ceil(threads.max(1)).max(1);
    if items.len() <= per {
        return run(items);
    }
    let parts: Vec<Result<Vec<T>, StoreError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| sc.spawn(|| run(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        out.extend(p);
    }
    Ok(out)
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
            item: WireItem::whole_file(20, fid, u64::from(n) * 3 + 7, vec![0, 1, 2, n as u8]),
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
            assert_eq!(report.to, coordinatool_state_migrations::LATEST_VERSION);
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
    fn corrupt_values_are_reported_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), false).unwrap();
        s.journal.insert(wal_key(7), &b"\xc1garbage"[..]).unwrap();
        let msg = s.load_all().unwrap_err().to_string();
        assert!(
            msg.contains("WAL entry 770000000000000007") && msg.contains("corrupt"),
            "{msg}"
        );
        s.journal.remove(wal_key(7)).unwrap();
        // A WAL entry whose deleted keys are not whole keys.
        let mut e = Vec::new();
        push_array_header(&mut e, 2);
        push_array_header(&mut e, 0);
        push_bin_header(&mut e, 5);
        e.extend_from_slice(&[1, 2, 3, 4, 5]);
        s.journal.insert(wal_key(8), e).unwrap();
        let msg = s.load_all().unwrap_err().to_string();
        assert!(msg.contains("not a multiple of 24"), "{msg}");
        s.journal.remove(wal_key(8)).unwrap();
        // A chunk of the checkpoint in force.
        s.journal
            .insert(
                JOURNAL_META_KEY,
                &JournalMeta {
                    checkpoint: 3,
                    wal_start: 0,
                }
                .encode()[..],
            )
            .unwrap();
        s.journal
            .insert(checkpoint_key(3, 0), &b"\x91\xc1"[..])
            .unwrap();
        let (s, _) = {
            drop(s);
            open_retry(dir.path(), false).unwrap()
        };
        let msg = s.load_all().unwrap_err().to_string();
        assert!(
            msg.contains("checkpoint chunk 63000000000000000300000000"),
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
        // A corrupt entry among several is found.
        s.journal.insert(wal_key(1_000), &b"\xc1"[..]).unwrap();
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

    /// A tiny deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    type Model = std::collections::BTreeMap<ReqKey, Record>;

    fn sorted(mut v: Vec<Record>) -> Vec<Record> {
        v.sort_by_key(|r| r.key());
        v
    }

    /// One random driver step against the store and the model: new
    /// records, reassignments and deletions, each key at most once.
    fn random_step(s: &Store, model: &mut Model, rng: &mut Rng, next: &mut u32) {
        let mut changes: std::collections::BTreeMap<ReqKey, Option<Record>> = Default::default();
        for _ in 0..rng.below(40) {
            let r = rec(*next, None);
            *next += 1;
            changes.insert(r.key(), Some(r));
        }
        let keys: Vec<ReqKey> = model.keys().copied().collect();
        for _ in 0..rng.below(30) {
            if keys.is_empty() {
                break;
            }
            let k = keys[rng.below(keys.len() as u64) as usize];
            let change = if rng.below(3) == 0 {
                let mut r = model[&k].clone();
                r.agent = Some(format!("mover-{}", rng.below(5)));
                Some(r)
            } else {
                None
            };
            changes.insert(k, change);
        }
        let wrote = changes.values().any(Option::is_some);
        s.apply(changes.iter().map(|(k, r)| (*k, r.as_ref())), wrote)
            .unwrap();
        for (k, r) in changes {
            match r {
                Some(r) => model.insert(k, r),
                None => model.remove(&k),
            };
        }
    }

    fn maintain(s: &Store, model: &Model, slice: usize) {
        s.maintain(
            || model.keys().copied().collect(),
            |k| model.get(k).cloned(),
            slice,
        )
        .unwrap();
    }

    #[test]
    fn checkpoints_under_random_steps_replay_to_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = 0;
        let mut checkpoints_seen = 0;
        for round in 0..6 {
            let (s, _) = open_retry(dir.path(), true).unwrap();
            assert_eq!(
                sorted(s.load_all().unwrap()),
                model.values().cloned().collect::<Vec<_>>(),
                "round {round}"
            );
            s.set_checkpoint_min_wal(20_000);
            for _ in 0..150 {
                random_step(&s, &mut model, &mut rng, &mut next);
                // Small slices: steps keep changing records while a
                // checkpoint is being written.
                maintain(&s, &model, 7);
                checkpoints_seen = checkpoints_seen.max(s.journal().meta.checkpoint);
            }
            // Rounds end wherever the steps left a checkpoint (usually half
            // written, as a crash would leave it); deletions held are
            // written first.
            s.flush_final().unwrap();
            if round == 5 {
                while s.checkpoint_running() {
                    maintain(&s, &model, 1000);
                }
                // Only the checkpoint in force and the WAL above it remain.
                let meta = s.journal().meta;
                for k in s.journal.iter().keys() {
                    let k = k.unwrap();
                    if let Some(seq) = parse_wal_key(&k) {
                        assert!(seq >= meta.wal_start);
                    } else if k[0] == CHECKPOINT_PREFIX {
                        assert!(k.starts_with(&checkpoint_prefix(meta.checkpoint)));
                    }
                }
                s.flush_final().unwrap();
            }
        }
        assert!(checkpoints_seen >= 3, "only {checkpoints_seen} checkpoints");
        let (s, _) = open_retry(dir.path(), true).unwrap();
        assert_eq!(
            sorted(s.load_all().unwrap()),
            model.values().cloned().collect::<Vec<_>>()
        );
    }

    #[test]
    fn deletions_are_held_then_written() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open_retry(dir.path(), false).unwrap();
        let recs: Vec<Record> = (1..=3).map(|n| rec(n, None)).collect();
        s.apply(recs.iter().map(|r| (r.key(), Some(r))), true)
            .unwrap();
        s.apply([(recs[0].key(), None::<&Record>)], false).unwrap();
        // Held: not in the WAL yet, and due within DELETION_DELAY.
        assert_eq!(s.load_all().unwrap().len(), 3);
        let wait = s.idle_wait().expect("deletions are pending");
        assert!(wait <= DELETION_DELAY);
        // The next write carries them, before its own puts.
        let again = rec(1, Some("m2"));
        s.apply([(recs[1].key(), None::<&Record>)], false).unwrap();
        s.apply([(again.key(), Some(&again))], true).unwrap();
        assert_eq!(s.idle_wait(), None);
        assert_eq!(s.load_all().unwrap(), vec![again.clone(), recs[2].clone()]);
        // Alone, they are written by `maintain` once due.
        s.apply([(recs[2].key(), None::<&Record>)], false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.idle_wait().is_some() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(s.idle_wait().unwrap_or_default());
            s.maintain(Vec::new, |_| None, 10).unwrap();
        }
        assert_eq!(s.load_all().unwrap(), vec![again]);
    }

    #[test]
    fn a_v1_store_is_migrated_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Record> = (1..=300)
            .map(|n| rec(n, (n % 7 == 0).then_some("m1")))
            .collect();
        {
            let db = sled::open(dir.path().join("store")).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &1u32.to_be_bytes()[..])
                .unwrap();
            let t = db
                .open_tree(coordinatool_state_migrations::REQUESTS_TREE)
                .unwrap();
            for r in &recs {
                t.insert(encode_key(&r.key()), rmp_serde::to_vec_named(r).unwrap())
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let (s, report) = open_retry(dir.path(), false).unwrap();
        assert_eq!((report.from, report.to), (1, 2));
        assert_eq!(s.load_all().unwrap(), recs);
    }
}
