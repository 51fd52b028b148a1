//! Schema versions of coordinatoold's sled store, and the ordered steps that
//! bring an older store up to date.
//!
//! # Layout of a store (version 1)
//! - tree [`META_TREE`]: key [`SCHEMA_VERSION_KEY`] → the schema version as a
//!   4-byte big-endian `u32`. A store without it is version 0 (pre-versioning).
//! - tree [`REQUESTS_TREE`]: one record per request not yet done. Key: 24
//!   bytes, `cookie` (u64 BE) ++ `dfid` (`seq` u64 BE, `oid` u32 BE, `ver` u32
//!   BE). Value: a MessagePack record owned by the daemon (this crate never
//!   decodes it).
//!
//! # Version 0
//! The pre-versioning layout keyed requests by the 48-character lower-case hex
//! string of the C coordinatool's redis hash (16 hex digits of cookie, 16 of
//! `f_seq`, 8 of `f_oid`, 8 of `f_ver`), with the same record values.
//!
//! # Rules
//! Steps are ordered and append-only ([`STEPS`]); each one is idempotent and
//! atomic: its writes and the version bump are applied in one sled
//! transaction, so a crash leaves either the old or the new version, never a
//! half-converted store. [`migrate`] refuses a store whose version is newer
//! than [`LATEST_VERSION`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The newest schema version this build knows.
pub const LATEST_VERSION: u32 = 1;
/// The tree holding store metadata.
pub const META_TREE: &str = "meta";
/// Key of the schema version in [`META_TREE`].
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// The tree holding one record per request.
pub const REQUESTS_TREE: &str = "requests";
/// Length of a version-1 request key.
pub const KEY_LEN: usize = 24;

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
    /// Applies the step, version bump included, atomically.
    pub run: fn(&sled::Db) -> Result<(), MigrationError>,
}

/// Every step, in order.
pub const STEPS: &[Step] = &[Step {
    to: 1,
    name: "v1-binary-request-keys",
    run: m0001_binary_keys,
}];

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
/// then flushes. Refuses a newer store.
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
    if !applied.is_empty() {
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
    match res {
        Ok(()) => Ok(()),
        Err(TransactionError::Storage(source)) => Err(MigrationError::Sled {
            op: "apply migration v1",
            source,
        }),
        Err(TransactionError::Abort(())) => Err(MigrationError::BadKey {
            step: STEP,
            key: String::new(),
            reason: "transaction aborted".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> sled::Db {
        sled::Config::new().path(dir).open().unwrap()
    }

    #[test]
    fn fresh_store_becomes_latest() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        assert_eq!(schema_version(&db).unwrap(), 0);
        let r = migrate(&db).unwrap();
        assert_eq!(r.from, 0);
        assert_eq!(r.to, LATEST_VERSION);
        assert_eq!(r.applied, vec!["v1-binary-request-keys"]);
        // Idempotent: a second run does nothing.
        let r = migrate(&db).unwrap();
        assert!(r.applied.is_empty());
        assert_eq!(r.from, LATEST_VERSION);
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
        assert_eq!((r.from, r.to), (0, 1));
        let t = db.open_tree(REQUESTS_TREE).unwrap();
        assert_eq!(t.len(), 2);
        let mut want = Vec::new();
        want.extend_from_slice(&0x692f08f5u64.to_be_bytes());
        want.extend_from_slice(&0x200000bd7u64.to_be_bytes());
        want.extend_from_slice(&0xb59u32.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(t.get(&want).unwrap().unwrap().as_ref(), b"record-a");
        let mut want = Vec::new();
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&0x200000001u64.to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(&10u32.to_be_bytes());
        assert_eq!(t.get(&want).unwrap().unwrap().as_ref(), b"record-b");
        assert!(t.iter().all(|kv| kv.unwrap().0.len() == KEY_LEN));
        assert_eq!(schema_version(&db).unwrap(), 1);
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
    }

    #[test]
    fn newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.open_tree(META_TREE)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, &7u32.to_be_bytes()[..])
            .unwrap();
        let err = migrate(&db).unwrap_err();
        assert!(matches!(
            err,
            MigrationError::TooNew {
                found: 7,
                supported: 1
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
}
