//! Schema versions of coordinatoold's sled store, and the ordered steps that
//! bring an older store up to date.
//!
//! # Layout of a store (version 2, "v2-journal")
//! - tree [`META_TREE`]: key [`SCHEMA_VERSION_KEY`] → the schema version as a
//!   4-byte big-endian `u32`. A store without it is version 0 (pre-versioning).
//! - tree [`JOURNAL_TREE`]: a checkpoint plus a write-ahead log (WAL).
//!   - [`JOURNAL_META_KEY`] → a [`JournalMeta`] (16 bytes): the checkpoint in
//!     force and the first WAL sequence number not covered by it.
//!   - checkpoint chunks, [`checkpoint_key`]`(id, n)` (13 bytes: `c` ++ id u64
//!     BE ++ chunk number u32 BE) → one MessagePack array of request records.
//!     Each element is a MessagePack record owned by the daemon (this crate
//!     never decodes it); a chunk is about [`CHUNK_BYTES`] long (a chunk holds
//!     at least one record, so a single larger record makes a larger chunk).
//!     Only the chunks of the checkpoint named by the meta value count; chunks
//!     of any other id are leftovers of an unfinished or superseded checkpoint,
//!     which the daemon deletes.
//!   - WAL entries, [`wal_key`]`(seq)` (9 bytes: `w` ++ seq u64 BE) → a value
//!     owned by the daemon: changes made since the checkpoint started. Only
//!     entries with `seq >= wal_start` count.
//!
//!   Replaying a store means taking the checkpoint's records (chunks in
//!   order), then applying the WAL entries from `wal_start` on, in order.
//!   A version-2 store without a meta value is an empty store (checkpoint 0,
//!   `wal_start` 0); the daemon handles that case, but the migration always
//!   writes the meta value, even for an empty store.
//!
//! # Version 1 ("v1-binary-request-keys")
//! - tree [`META_TREE`]: as in version 2.
//! - tree [`REQUESTS_TREE`]: one record per request not yet done. Key: 24
//!   bytes ([`KEY_LEN`]), `cookie` (u64 BE) ++ `dfid` (`seq` u64 BE, `oid` u32
//!   BE, `ver` u32 BE). Value: a MessagePack record owned by the daemon (the
//!   same records that version 2 stores in checkpoint chunks). Migrating to
//!   version 2 copies the values, in key order, into checkpoint 1, then drops
//!   this tree.
//!
//! # Version 0
//! The pre-versioning layout keyed requests by the 48-character lower-case hex
//! string of the C coordinatool's redis hash (16 hex digits of cookie, 16 of
//! `f_seq`, 8 of `f_oid`, 8 of `f_ver`), with the same record values.
//!
//! # Rules
//! Steps are ordered and append-only ([`STEPS`]); each one is idempotent, and
//! its visible switch is atomic: the version bump, together with whatever
//! makes the new layout visible, is applied in one sled transaction, so a
//! crash leaves either the old or the new version, never a half-converted
//! store. A large step may first write keys that stay invisible until that
//! switch (for instance the chunks of a checkpoint no meta value names yet);
//! re-running it after a crash rewrites them from scratch. Cleaning up the old
//! layout after the switch (dropping a tree) is not part of the atomic switch;
//! [`migrate`] redoes it if a crash interrupted it. [`migrate`] refuses a store
//! whose version is newer than [`LATEST_VERSION`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The newest schema version this build knows.
pub const LATEST_VERSION: u32 = 2;
/// The tree holding store metadata.
pub const META_TREE: &str = "meta";
/// Key of the schema version in [`META_TREE`].
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// The version-1 tree holding one record per request (dropped by version 2).
pub const REQUESTS_TREE: &str = "requests";
/// Length of a version-1 request key.
pub const KEY_LEN: usize = 24;
/// The v2 tree: checkpoint chunks, WAL entries and the journal's meta value.
pub const JOURNAL_TREE: &str = "journal";
/// Key of the journal's meta value ([`JournalMeta`]) in [`JOURNAL_TREE`].
pub const JOURNAL_META_KEY: &[u8] = b"m";
/// First byte of checkpoint chunk keys ([`checkpoint_key`]).
pub const CHECKPOINT_PREFIX: u8 = b'c';
/// First byte of WAL entry keys ([`wal_key`]).
pub const WAL_PREFIX: u8 = b'w';
/// Target size of one checkpoint chunk or WAL value (sled turns values over
/// ~128 KiB into blob files).
pub const CHUNK_BYTES: usize = 48 * 1024;

/// Key of chunk `chunk` of checkpoint `id`: `c` ++ checkpoint id (u64 BE) ++
/// chunk number (u32 BE), 13 bytes. Keys sort by id, then chunk number.
pub fn checkpoint_key(id: u64, chunk: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&checkpoint_prefix(id));
    k[9..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// `c` ++ checkpoint id (u64 BE): the 9-byte prefix shared by every chunk of
/// checkpoint `id` (for `scan_prefix`).
pub fn checkpoint_prefix(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CHECKPOINT_PREFIX;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Key of WAL entry `seq`: `w` ++ seq (u64 BE), 9 bytes. Keys sort by seq.
pub fn wal_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = WAL_PREFIX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Parses a WAL key into its sequence number (`None` unless it is 9 bytes
/// starting with `w`).
pub fn parse_wal_key(k: &[u8]) -> Option<u64> {
    match k {
        [WAL_PREFIX, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Parses a checkpoint chunk key into `(id, chunk)` (`None` unless it is 13
/// bytes starting with `c`).
pub fn parse_checkpoint_key(k: &[u8]) -> Option<(u64, u32)> {
    if k.len() != 13 || k[0] != CHECKPOINT_PREFIX {
        return None;
    }
    let id = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let chunk = u32::from_be_bytes(k[9..13].try_into().ok()?);
    Some((id, chunk))
}

/// The journal's meta value, stored under [`JOURNAL_META_KEY`]: current
/// checkpoint id (u64 BE) ++ `wal_start` (u64 BE), 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalMeta {
    /// Id of the checkpoint in force; only its chunks count.
    pub checkpoint: u64,
    /// First WAL sequence number not covered by the checkpoint; only WAL
    /// entries with `seq >= wal_start` count.
    pub wal_start: u64,
}

impl JournalMeta {
    /// The 16-byte stored form.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.checkpoint.to_be_bytes());
        b[8..].copy_from_slice(&self.wal_start.to_be_bytes());
        b
    }

    /// Parses the stored form (`None` unless exactly 16 bytes long).
    pub fn decode(b: &[u8]) -> Option<JournalMeta> {
        if b.len() != 16 {
            return None;
        }
        Some(JournalMeta {
            checkpoint: u64::from_be_bytes(b[..8].try_into().ok()?),
            wal_start: u64::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// Appends a MessagePack array header for `n` elements: fixarray (`0x90 | n`)
/// when `n < 16`, array 16 (`0xdc` + u16 BE) when `n < 65536`, else array 32
/// (`0xdd` + u32 BE).
pub fn push_array_header(out: &mut Vec<u8>, n: u32) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xdc);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Length of the header [`push_array_header`] writes for `n` elements.
fn array_header_len(n: u32) -> usize {
    if n < 16 {
        1
    } else if n <= u32::from(u16::MAX) {
        3
    } else {
        5
    }
}

/// Migration errors.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A sled operation failed.
    #[error("state store: {op} failed: {source}")]
    Sled {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: sled::Error,
    },
    /// The store was written by a newer coordinatoold.
    #[error(
        "state store has schema version {found}, newer than the {supported} this coordinatoold knows; \
         run a newer coordinatoold (downgrades are not supported)"
    )]
    TooNew {
        /// Version found.
        found: u32,
        /// Newest version known.
        supported: u32,
    },
    /// The stored version is not a 4-byte integer.
    #[error("state store: schema_version is {len} bytes long, expected 4")]
    BadVersion {
        /// Its length.
        len: usize,
    },
    /// A record key of an older layout could not be converted.
    #[error("state store: migration step {step:?}: record key {key:?} is not valid: {reason}")]
    BadKey {
        /// The step.
        step: &'static str,
        /// The key, lossily printed.
        key: String,
        /// Why.
        reason: String,
    },
    /// A step's data does not fit the new layout's limits.
    #[error("state store: migration step {step:?}: {what}")]
    TooLarge {
        /// The step.
        step: &'static str,
        /// What overflowed.
        what: &'static str,
    },
    /// A step's transaction was aborted (cannot happen with the steps of this
    /// build, which never abort).
    #[error("state store: migration step {step:?}: transaction aborted")]
    Aborted {
        /// The step.
        step: &'static str,
    },
}

fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> MigrationError {
    move |source| MigrationError::Sled { op, source }
}

/// One migration step: brings a store from `to - 1` to `to`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Version after this step.
    pub to: u32,
    /// Short name, for logs and the report.
    pub name: &'static str,
    /// Applies the step; its version bump (the switch to the new layout) is
    /// atomic, see the crate's rules.
    pub run: fn(&sled::Db) -> Result<(), MigrationError>,
}

/// Every step, in order.
pub const STEPS: &[Step] = &[
    Step {
        to: 1,
        name: "v1-binary-request-keys",
        run: m0001_binary_keys,
    },
    Step {
        to: 2,
        name: "v2-journal",
        run: m0002_journal,
    },
];

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Version found.
    pub from: u32,
    /// Version now.
    pub to: u32,
    /// Names of the steps applied, in order.
    pub applied: Vec<&'static str>,
}

/// The schema version of a store (0 when none is recorded).
pub fn schema_version(db: &sled::Db) -> Result<u32, MigrationError> {
    let meta = db
        .open_tree(META_TREE)
        .map_err(sled_err("open meta tree"))?;
    match meta
        .get(SCHEMA_VERSION_KEY)
        .map_err(sled_err("read schema_version"))?
    {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 4] = v
                .as_ref()
                .try_into()
                .map_err(|_| MigrationError::BadVersion { len: v.len() })?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Brings `db` to [`LATEST_VERSION`], applying every pending step in order,
/// then flushes. Refuses a newer store. Also finishes the cleanup of a step
/// interrupted after its switch (drops a leftover version-1
/// [`REQUESTS_TREE`]).
pub fn migrate(db: &sled::Db) -> Result<MigrationReport, MigrationError> {
    let from = schema_version(db)?;
    if from > LATEST_VERSION {
        return Err(MigrationError::TooNew {
            found: from,
            supported: LATEST_VERSION,
        });
    }
    let mut applied = Vec::new();
    for step in STEPS.iter().filter(|s| s.to > from) {
        tracing::info!(
            step = step.name,
            to = step.to,
            "applying state store migration"
        );
        (step.run)(db)?;
        applied.push(step.name);
    }
    let mut dirty = !applied.is_empty();
    if applied.is_empty() && from >= 2 && has_tree(db, REQUESTS_TREE) {
        tracing::info!(
            tree = REQUESTS_TREE,
            "dropping leftover version-1 tree of an interrupted migration"
        );
        drop_requests_tree(db)?;
        dirty = true;
    }
    if dirty {
        db.flush().map_err(sled_err("flush after migration"))?;
    }
    Ok(MigrationReport {
        from,
        to: schema_version(db)?,
        applied,
    })
}

/// Parses a version-0 key (48 lower- or upper-case hex digits) into a
/// version-1 key.
pub fn v0_key_to_v1(key: &[u8]) -> Result<[u8; KEY_LEN], String> {
    if key.len() != 48 {
        return Err(format!("{} bytes long, expected 48 hex digits", key.len()));
    }
    let text = std::str::from_utf8(key).map_err(|_| "not ASCII".to_string())?;
    let field = |range: std::ops::Range<usize>| -> Result<u64, String> {
        u64::from_str_radix(&text[range.clone()], 16)
            .map_err(|_| format!("{:?} is not hexadecimal", &text[range]))
    };
    let cookie = field(0..16)?;
    let seq = field(16..32)?;
    let oid = field(32..40)? as u32;
    let ver = field(40..48)? as u32;
    let mut out = [0u8; KEY_LEN];
    out[0..8].copy_from_slice(&cookie.to_be_bytes());
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..20].copy_from_slice(&oid.to_be_bytes());
    out[20..24].copy_from_slice(&ver.to_be_bytes());
    Ok(out)
}

fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names()
        .iter()
        .any(|n| n.as_ref() == name.as_bytes())
}

fn drop_requests_tree(db: &sled::Db) -> Result<(), MigrationError> {
    // `Ok(false)` means it did not exist: nothing to do.
    db.drop_tree(REQUESTS_TREE)
        .map_err(sled_err("drop requests tree"))?;
    Ok(())
}

/// Maps the result of a step's switch transaction.
fn switch_result(
    step: &'static str,
    op: &'static str,
    res: Result<(), TransactionError<()>>,
) -> Result<(), MigrationError> {
    match res {
        Ok(()) => Ok(()),
        Err(TransactionError::Storage(source)) => Err(MigrationError::Sled { op, source }),
        Err(TransactionError::Abort(())) => Err(MigrationError::Aborted { step }),
    }
}

/// Step 1: rewrite hex string keys as 24-byte binary keys; record version 1.
/// Keys already 24 bytes long are left alone, so the step is idempotent.
fn m0001_binary_keys(db: &sled::Db) -> Result<(), MigrationError> {
    const STEP: &str = "v1-binary-request-keys";
    let requests = db
        .open_tree(REQUESTS_TREE)
        .map_err(sled_err("open requests tree"))?;
    let meta = db
        .open_tree(META_TREE)
        .map_err(sled_err("open meta tree"))?;
    // Plan outside the transaction (sled transactions cannot iterate).
    let mut rewrites = Vec::new();
    for kv in requests.iter() {
        let (k, v) = kv.map_err(sled_err("scan requests"))?;
        if k.len() == KEY_LEN {
            continue;
        }
        let new = v0_key_to_v1(&k).map_err(|reason| MigrationError::BadKey {
            step: STEP,
            key: String::from_utf8_lossy(&k).into_owned(),
            reason,
        })?;
        rewrites.push((k, new, v));
    }
    let res: Result<(), TransactionError<()>> = (&requests, &meta).transaction(|(r, m)| {
        for (old, new, value) in &rewrites {
            r.remove(old)?;
            r.insert(&new[..], value.clone())?;
        }
        m.insert(SCHEMA_VERSION_KEY, &1u32.to_be_bytes()[..])?;
        Ok::<(), ConflictableTransactionError<()>>(())
    });
    switch_result(STEP, "apply migration v1", res)
}

/// Number of chunks written per sled batch by step 2 (a few MiB per batch).
const CHUNKS_PER_BATCH: usize = 256;

/// Groups raw values into checkpoint chunks: each chunk is a MessagePack
/// array header followed by its values, concatenated. A new chunk starts
/// when the next value would make the current one exceed [`CHUNK_BYTES`]; a
/// chunk always holds at least one value.
#[derive(Debug, Default)]
struct Chunker {
    /// Values of the current chunk, concatenated.
    body: Vec<u8>,
    /// How many.
    count: u32,
}

impl Chunker {
    /// Adds `value`; returns the finished previous chunk if `value` did not
    /// fit in it.
    fn push(&mut self, value: &[u8]) -> Option<Vec<u8>> {
        let full = self.count > 0
            && (self.count == u32::MAX
                || array_header_len(self.count + 1) + self.body.len() + value.len() > CHUNK_BYTES);
        let done = if full { self.finish() } else { None };
        self.body.extend_from_slice(value);
        self.count += 1;
        done
    }

    /// The current chunk, if it holds any value; leaves the chunker empty.
    fn finish(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut chunk = Vec::with_capacity(array_header_len(self.count) + self.body.len());
        push_array_header(&mut chunk, self.count);
        chunk.append(&mut self.body);
        self.count = 0;
        Some(chunk)
    }
}

/// Step 2: copy the version-1 request records, in key order and without
/// decoding them, into the chunks of checkpoint 1 of the journal; then, in one
/// transaction, point the journal's meta value at checkpoint 1 (`wal_start`
/// 0) and record version 2; then drop the version-1 tree.
///
/// The journal tree is cleared first: before the switch nothing in it counts
/// (it can only hold chunks of an interrupted run of this step), so a re-run
/// after a crash starts afresh, and no stale chunk of a longer earlier attempt
/// survives into checkpoint 1.
fn m0002_journal(db: &sled::Db) -> Result<(), MigrationError> {
    const STEP: &str = "v2-journal";
    const CHECKPOINT: u64 = 1;
    let requests = db
        .open_tree(REQUESTS_TREE)
        .map_err(sled_err("open requests tree"))?;
    let journal = db
        .open_tree(JOURNAL_TREE)
        .map_err(sled_err("open journal tree"))?;
    let meta = db
        .open_tree(META_TREE)
        .map_err(sled_err("open meta tree"))?;
    journal
        .clear()
        .map_err(sled_err("clear leftovers of the journal tree"))?;

    let mut chunker = Chunker::default();
    let mut next_chunk: u32 = 0;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let mut add = |chunk: Vec<u8>, force: bool| -> Result<(), MigrationError> {
        if !chunk.is_empty() {
            batch.insert(&checkpoint_key(CHECKPOINT, next_chunk)[..], chunk);
            in_batch += 1;
            next_chunk = next_chunk.checked_add(1).ok_or(MigrationError::TooLarge {
                step: STEP,
                what: "more checkpoint chunks than a u32 can number",
            })?;
        }
        if in_batch > 0 && (force || in_batch >= CHUNKS_PER_BATCH) {
            journal
                .apply_batch(std::mem::take(&mut batch))
                .map_err(sled_err("write checkpoint chunks"))?;
            in_batch = 0;
        }
        Ok(())
    };
    for kv in requests.iter() {
        let (_, v) = kv.map_err(sled_err("scan requests"))?;
        if let Some(chunk) = chunker.push(&v) {
            add(chunk, false)?;
        }
    }
    add(chunker.finish().unwrap_or_default(), true)?;

    // The switch: from here on the store is version 2 and checkpoint 1 counts.
    let meta_value = JournalMeta {
        checkpoint: CHECKPOINT,
        wal_start: 0,
    }
    .encode();
    let res: Result<(), TransactionError<()>> = (&journal, &meta).transaction(|(j, m)| {
        j.insert(JOURNAL_META_KEY, &meta_value[..])?;
        m.insert(SCHEMA_VERSION_KEY, &2u32.to_be_bytes()[..])?;
        Ok::<(), ConflictableTransactionError<()>>(())
    });
    switch_result(STEP, "apply migration v2", res)?;

    drop(requests);
    drop_requests_tree(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the db, retrying while the lock is still held by the flusher
    /// thread of a db just dropped (it lets go within its flush period).
    fn open(dir: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match sled::Config::new().path(dir).open() {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r.unwrap(),
            }
        }
    }

    fn set_version(db: &sled::Db, v: u32) {
        db.open_tree(META_TREE)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, &v.to_be_bytes()[..])
            .unwrap();
    }

    fn journal_meta(db: &sled::Db) -> Option<JournalMeta> {
        let j = db.open_tree(JOURNAL_TREE).unwrap();
        j.get(JOURNAL_META_KEY)
            .unwrap()
            .map(|v| JournalMeta::decode(&v).unwrap())
    }

    fn chunks(db: &sled::Db, id: u64) -> Vec<Vec<u8>> {
        let j = db.open_tree(JOURNAL_TREE).unwrap();
        j.scan_prefix(checkpoint_prefix(id))
            .enumerate()
            .map(|(i, kv)| {
                let (k, v) = kv.unwrap();
                assert_eq!(parse_checkpoint_key(&k), Some((id, i as u32)));
                v.to_vec()
            })
            .collect()
    }

    /// Every key/value of the journal tree.
    fn journal_dump(db: &sled::Db) -> Vec<(Vec<u8>, Vec<u8>)> {
        let j = db.open_tree(JOURNAL_TREE).unwrap();
        j.iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    fn has_requests_tree(db: &sled::Db) -> bool {
        db.tree_names()
            .iter()
            .any(|n| n.as_ref() == REQUESTS_TREE.as_bytes())
    }

    /// Splits a chunk into its element count and body.
    fn split_header(chunk: &[u8]) -> (u32, &[u8]) {
        match chunk[0] {
            b @ 0x90..=0x9f => (u32::from(b & 0x0f), &chunk[1..]),
            0xdc => (
                u32::from(u16::from_be_bytes([chunk[1], chunk[2]])),
                &chunk[3..],
            ),
            0xdd => (
                u32::from_be_bytes(chunk[1..5].try_into().unwrap()),
                &chunk[5..],
            ),
            b => panic!("not an array header: {b:#x}"),
        }
    }

    /// A v1 store of `n` 40-byte values; returns the values in key order.
    /// Inserted in a scrambled order so that key order is what is tested.
    fn build_v1(db: &sled::Db, n: u64) -> Vec<Vec<u8>> {
        set_version(db, 1);
        let t = db.open_tree(REQUESTS_TREE).unwrap();
        let mut want = Vec::new();
        for i in 0..n {
            let mut v = format!("value-{i:08}-").into_bytes();
            v.resize(40, b'.');
            want.push(v);
        }
        for i in (0..n).map(|i| (i * 7919) % n) {
            let mut k = [0u8; KEY_LEN];
            k[..8].copy_from_slice(&i.to_be_bytes());
            k[8..16].copy_from_slice(&(n - i).to_be_bytes());
            t.insert(&k[..], &want[i as usize][..]).unwrap();
        }
        assert_eq!(t.len() as u64, n);
        want
    }

    #[test]
    fn fresh_store_becomes_latest() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        assert_eq!(schema_version(&db).unwrap(), 0);
        let r = migrate(&db).unwrap();
        assert_eq!(r.from, 0);
        assert_eq!(r.to, LATEST_VERSION);
        assert_eq!(LATEST_VERSION, 2);
        assert_eq!(r.applied, vec!["v1-binary-request-keys", "v2-journal"]);
        assert_eq!(
            journal_meta(&db),
            Some(JournalMeta {
                checkpoint: 1,
                wal_start: 0
            })
        );
        // An empty store has no chunk at all.
        assert!(chunks(&db, 1).is_empty());
        assert!(!has_requests_tree(&db));
        let before = journal_dump(&db);
        // Idempotent: a second run does nothing.
        let r = migrate(&db).unwrap();
        assert!(r.applied.is_empty());
        assert_eq!(r.from, LATEST_VERSION);
        assert_eq!(r.to, LATEST_VERSION);
        assert_eq!(journal_dump(&db), before);
    }

    #[test]
    fn v0_fixture_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Build a pre-versioning store: hex keys, no meta.
            let db = open(dir.path());
            let t = db.open_tree(REQUESTS_TREE).unwrap();
            t.insert(
                b"00000000692f08f50000000200000bd700000b5900000000",
                &b"record-a"[..],
            )
            .unwrap();
            t.insert(
                b"00000000000000010000000200000001000000020000000A",
                &b"record-b"[..],
            )
            .unwrap();
            db.flush().unwrap();
        }
        let db = open(dir.path());
        let r = migrate(&db).unwrap();
        assert_eq!((r.from, r.to), (0, 2));
        assert_eq!(r.applied, vec!["v1-binary-request-keys", "v2-journal"]);
        assert_eq!(schema_version(&db).unwrap(), 2);
        assert_eq!(
            journal_meta(&db),
            Some(JournalMeta {
                checkpoint: 1,
                wal_start: 0
            })
        );
        // v1 key order: cookie 1 (record-b) before cookie 0x692f08f5.
        assert_eq!(chunks(&db, 1), vec![b"\x92record-brecord-a".to_vec()]);
        assert!(!has_requests_tree(&db));
        // Nothing else in the journal: no WAL entry, no other checkpoint.
        assert_eq!(journal_dump(&db).len(), 2);
        drop(db);
        // Survives a reopen.
        let db = open(dir.path());
        assert_eq!(schema_version(&db).unwrap(), 2);
        assert_eq!(chunks(&db, 1), vec![b"\x92record-brecord-a".to_vec()]);
        assert!(!has_requests_tree(&db));
    }

    #[test]
    fn large_v1_store_spans_several_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let want = build_v1(&db, 3000);
        let r = migrate(&db).unwrap();
        assert_eq!((r.from, r.to), (1, 2));
        assert_eq!(r.applied, vec!["v2-journal"]);
        let chunks = chunks(&db, 1);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let mut all = Vec::new();
        let mut total = 0;
        for c in &chunks {
            assert!(c.len() <= CHUNK_BYTES, "chunk of {} bytes", c.len());
            let (n, body) = split_header(c);
            assert!(n >= 1);
            assert_eq!(body.len(), n as usize * 40);
            let mut hdr = Vec::new();
            push_array_header(&mut hdr, n);
            assert_eq!(&c[..hdr.len()], &hdr[..]);
            total += n;
            all.extend_from_slice(body);
        }
        // Every chunk but the last is full: one more value would not fit.
        for c in &chunks[..chunks.len() - 1] {
            let (n, _) = split_header(c);
            assert!(array_header_len(n + 1) + n as usize * 40 + 40 > CHUNK_BYTES);
        }
        assert_eq!(total, 3000);
        assert_eq!(all, want.concat());
        assert!(!has_requests_tree(&db));
    }

    #[test]
    fn oversized_value_gets_its_own_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        set_version(&db, 1);
        let t = db.open_tree(REQUESTS_TREE).unwrap();
        let big = vec![7u8; CHUNK_BYTES + 10];
        t.insert([1u8; KEY_LEN], &b"small-1"[..]).unwrap();
        t.insert([2u8; KEY_LEN], big.clone()).unwrap();
        t.insert([3u8; KEY_LEN], &b"small-3"[..]).unwrap();
        drop(t);
        migrate(&db).unwrap();
        let mut big_chunk = vec![0x91];
        big_chunk.extend_from_slice(&big);
        assert_eq!(
            chunks(&db, 1),
            vec![b"\x91small-1".to_vec(), big_chunk, b"\x91small-3".to_vec()]
        );
    }

    #[test]
    fn rerun_after_crash_before_switch_gives_same_result() {
        // Reference: a clean migration.
        let ref_dir = tempfile::tempdir().unwrap();
        let ref_db = open(ref_dir.path());
        build_v1(&ref_db, 3000);
        migrate(&ref_db).unwrap();
        let want = journal_dump(&ref_db);
        assert!(want.len() > 3);

        // Same store, with leftovers of an interrupted step 2: some chunks
        // written (one garbled, one beyond the real count), no switch.
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        build_v1(&db, 3000);
        let j = db.open_tree(JOURNAL_TREE).unwrap();
        j.insert(checkpoint_key(1, 0), &b"garbage"[..]).unwrap();
        j.insert(checkpoint_key(1, 1), want[1].1.clone()).unwrap();
        j.insert(checkpoint_key(1, 99), &b"stale"[..]).unwrap();
        drop(j);
        assert_eq!(schema_version(&db).unwrap(), 1);
        let r = migrate(&db).unwrap();
        assert_eq!((r.from, r.to), (1, 2));
        assert_eq!(r.applied, vec!["v2-journal"]);
        assert_eq!(journal_dump(&db), want);
        assert!(!has_requests_tree(&db));
    }

    #[test]
    fn leftover_requests_tree_after_switch_is_dropped() {
        // Crash after the switch, before the v1 tree was dropped.
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        build_v1(&db, 10);
        set_version(&db, 2);
        db.open_tree(JOURNAL_TREE)
            .unwrap()
            .insert(
                JOURNAL_META_KEY,
                &JournalMeta {
                    checkpoint: 1,
                    wal_start: 0,
                }
                .encode()[..],
            )
            .unwrap();
        assert!(has_requests_tree(&db));
        let r = migrate(&db).unwrap();
        assert!(r.applied.is_empty());
        assert_eq!((r.from, r.to), (2, 2));
        assert!(!has_requests_tree(&db));
    }

    #[test]
    fn bad_v0_key_is_reported_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let t = db.open_tree(REQUESTS_TREE).unwrap();
        t.insert(b"zz", &b"x"[..]).unwrap();
        let err = migrate(&db).unwrap_err();
        assert!(matches!(err, MigrationError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("zz"), "{err}");
        assert_eq!(schema_version(&db).unwrap(), 0);
        assert_eq!(t.len(), 1);
        assert!(journal_meta(&db).is_none());
        assert!(journal_dump(&db).is_empty());
    }

    #[test]
    fn newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        set_version(&db, 7);
        let err = migrate(&db).unwrap_err();
        assert!(matches!(
            err,
            MigrationError::TooNew {
                found: 7,
                supported: 2
            }
        ));
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn v0_key_parsing() {
        assert!(v0_key_to_v1(b"short").is_err());
        assert!(
            v0_key_to_v1(&[b'g'; 48])
                .unwrap_err()
                .contains("hexadecimal")
        );
    }

    #[test]
    fn key_helpers_round_trip() {
        for (id, chunk) in [(0, 0), (1, 0), (1, 7), (u64::MAX, u32::MAX)] {
            let k = checkpoint_key(id, chunk);
            assert_eq!(k[0], CHECKPOINT_PREFIX);
            assert_eq!(&k[..9], &checkpoint_prefix(id)[..]);
            assert_eq!(parse_checkpoint_key(&k), Some((id, chunk)));
            assert_eq!(parse_wal_key(&k), None);
        }
        // Sorted by id, then chunk number.
        assert!(checkpoint_key(1, u32::MAX) < checkpoint_key(2, 0));
        assert!(checkpoint_key(1, 255) < checkpoint_key(1, 256));
        for seq in [0, 1, 256, u64::MAX] {
            let k = wal_key(seq);
            assert_eq!(k[0], WAL_PREFIX);
            assert_eq!(parse_wal_key(&k), Some(seq));
            assert_eq!(parse_checkpoint_key(&k), None);
        }
        assert!(wal_key(255) < wal_key(256));
        assert_eq!(parse_wal_key(b"w"), None);
        assert_eq!(parse_wal_key(&[b'w'; 10]), None);
        assert_eq!(parse_wal_key(&[b'x'; 9]), None);
        assert_eq!(parse_checkpoint_key(&[b'c'; 12]), None);
        assert_eq!(parse_checkpoint_key(&[b'x'; 13]), None);
        assert_eq!(parse_checkpoint_key(JOURNAL_META_KEY), None);
        assert_eq!(parse_wal_key(JOURNAL_META_KEY), None);

        for m in [
            JournalMeta {
                checkpoint: 0,
                wal_start: 0,
            },
            JournalMeta {
                checkpoint: 1,
                wal_start: 0,
            },
            JournalMeta {
                checkpoint: 0x0102_0304_0506_0708,
                wal_start: u64::MAX,
            },
        ] {
            assert_eq!(JournalMeta::decode(&m.encode()), Some(m));
        }
        let e = JournalMeta {
            checkpoint: 1,
            wal_start: 2,
        }
        .encode();
        assert_eq!(e, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(JournalMeta::decode(&e[..15]), None);
        assert_eq!(JournalMeta::decode(&[0; 17]), None);
    }

    #[test]
    fn array_headers() {
        let hdr = |n: u32| {
            let mut v = Vec::new();
            push_array_header(&mut v, n);
            assert_eq!(v.len(), array_header_len(n));
            v
        };
        assert_eq!(hdr(0), [0x90]);
        assert_eq!(hdr(15), [0x9f]);
        assert_eq!(hdr(16), [0xdc, 0x00, 0x10]);
        assert_eq!(hdr(65535), [0xdc, 0xff, 0xff]);
        assert_eq!(hdr(65536), [0xdd, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(hdr(u32::MAX), [0xdd, 0xff, 0xff, 0xff, 0xff]);
        // Appends.
        let mut v = vec![1, 2];
        push_array_header(&mut v, 2);
        assert_eq!(v, [1, 2, 0x92]);
    }
}
