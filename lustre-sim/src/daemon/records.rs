//! The per-MDT request table (the llog) with the indexes dispatch and the
//! copytool calls need, so that no hot path scans every record.
//!
//! Records are keyed by their llog index (`idx`, increasing), which is also
//! the dispatch order. `cookie` and `fid` never change after insertion; the
//! `status`/`active` pair (which decides the WAITING and active sets) is only
//! changed through [`Records::update`], which keeps the indexes right.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sim::{Record, Status};
use crate::wire::WireFid;

/// The request records of one MDT and their indexes.
#[derive(Clone, Debug, Default)]
pub struct Records {
    by_idx: BTreeMap<u32, Record>,
    by_cookie: HashMap<u64, u32>,
    by_fid: HashMap<WireFid, Vec<u32>>,
    waiting: BTreeSet<u32>,
    active: BTreeSet<u32>,
}

impl Records {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.by_idx.len()
    }

    /// No records at all.
    pub fn is_empty(&self) -> bool {
        self.by_idx.is_empty()
    }

    /// Every record, in llog order.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.by_idx.values()
    }

    /// The record with llog index `idx`.
    pub fn get(&self, idx: u32) -> Option<&Record> {
        self.by_idx.get(&idx)
    }

    /// Active (in-memory) requests count.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Active records in llog order.
    pub fn active(&self) -> impl Iterator<Item = &Record> {
        self.active.iter().filter_map(|i| self.by_idx.get(i))
    }

    /// llog indexes of the WAITING (not active) records, in order.
    pub fn waiting_idxs(&self) -> impl Iterator<Item = u32> + '_ {
        self.waiting.iter().copied()
    }

    /// llog indexes of the active records, in order.
    pub fn active_idxs(&self) -> Vec<u32> {
        self.active.iter().copied().collect()
    }

    /// llog index of the active record with this cookie.
    pub fn active_idx(&self, cookie: u64) -> Option<u32> {
        let idx = *self.by_cookie.get(&cookie)?;
        self.active.contains(&idx).then_some(idx)
    }

    /// Records of one FID, in llog order.
    pub fn of_fid(&self, fid: WireFid) -> impl Iterator<Item = &Record> {
        self.by_fid
            .get(&fid)
            .into_iter()
            .flatten()
            .filter_map(|i| self.by_idx.get(i))
    }

    /// llog indexes of the records of one FID.
    pub fn idxs_of_fid(&self, fid: WireFid) -> Vec<u32> {
        self.by_fid.get(&fid).cloned().unwrap_or_default()
    }

    fn reindex(&mut self, idx: u32) {
        let Some(r) = self.by_idx.get(&idx) else {
            self.waiting.remove(&idx);
            self.active.remove(&idx);
            return;
        };
        if r.status == Status::Waiting && !r.active {
            self.waiting.insert(idx);
        } else {
            self.waiting.remove(&idx);
        }
        if r.active {
            self.active.insert(idx);
        } else {
            self.active.remove(&idx);
        }
    }

    /// Append a record (its `idx` must be new).
    pub fn insert(&mut self, rec: Record) {
        let idx = rec.idx;
        self.by_cookie.insert(rec.cookie, idx);
        self.by_fid.entry(rec.fid).or_default().push(idx);
        self.by_idx.insert(idx, rec);
        self.reindex(idx);
    }

    /// Change a record; `cookie`, `fid` and `idx` must stay as they are.
    pub fn update<R>(&mut self, idx: u32, f: impl FnOnce(&mut Record) -> R) -> Option<R> {
        let r = self.by_idx.get_mut(&idx)?;
        let out = f(r);
        debug_assert_eq!(r.idx, idx);
        self.reindex(idx);
        Some(out)
    }

    fn remove(&mut self, idx: u32) {
        let Some(r) = self.by_idx.remove(&idx) else {
            return;
        };
        if self.by_cookie.get(&r.cookie) == Some(&idx) {
            self.by_cookie.remove(&r.cookie);
        }
        if let Some(v) = self.by_fid.get_mut(&r.fid) {
            v.retain(|&i| i != idx);
            if v.is_empty() {
                self.by_fid.remove(&r.fid);
            }
        }
        self.waiting.remove(&idx);
        self.active.remove(&idx);
    }

    /// Keep only the records for which `keep` is true; returns how many
    /// were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) -> usize {
        let gone: Vec<u32> = self
            .by_idx
            .values()
            .filter(|r| !keep(r))
            .map(|r| r.idx)
            .collect();
        for &idx in &gone {
            self.remove(idx);
        }
        gone.len()
    }
}

impl FromIterator<Record> for Records {
    fn from_iter<I: IntoIterator<Item = Record>>(iter: I) -> Self {
        let mut t = Records::new();
        for r in iter {
            t.insert(r);
        }
        t
    }
}

// Persisted as a plain list of records, as before the indexes existed.
impl Serialize for Records {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.by_idx.values())
    }
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<Record> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}
