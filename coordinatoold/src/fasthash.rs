//! A fast hasher for the scheduler's hot maps, keyed by cookies and request
//! keys (a `done` looks up and removes several of them per request).
//!
//! std's SipHash costs more than the rest of a lookup for these small keys.
//! This one mixes each word in with a multiply and ends with splitmix64's
//! finalizer, so every input bit reaches the low bits (the table index) and
//! the high bits (hashbrown's tags), also for cookies that differ only in
//! their high bits. The seed is random per process, so a peer cannot choose
//! colliding keys without knowing it; keys come from Lustre (cookies) and the
//! MDT's FIDs, and from `coordinatool-ctl` clients, which are trusted anyway.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A [`HashMap`](std::collections::HashMap) with the fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;
/// A [`HashSet`](std::collections::HashSet) with the fast hasher.
pub type FastSet<K> = std::collections::HashSet<K, FastState>;

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(0x636f_6f72_6469_6e61_u64))
}

/// Builds [`FastHasher`]s with the process's seed.
#[derive(Debug, Clone, Copy)]
pub struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> FastState {
        FastState {
            seed: process_seed(),
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher { h: self.seed }
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher {
    h: u64,
}

impl FastHasher {
    #[inline]
    fn word(&mut self, w: u64) {
        self.h = (self.h.rotate_left(26) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.word(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.word(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.word(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // splitmix64's finalizer.
        let mut x = self.h;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash<T: std::hash::Hash>(s: &FastState, v: T) -> u64 {
        s.hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_neighbours_differ() {
        let s = FastState::default();
        assert_eq!(hash(&s, 42u64), hash(&s, 42u64));
        assert_eq!(hash(&s, (1u64, 2u32)), hash(&s, (1u64, 2u32)));
        assert_ne!(hash(&s, 42u64), hash(&s, 43u64));
        assert_ne!(hash(&s, (1u64, 2u32)), hash(&s, (2u64, 1u32)));
        assert_ne!(hash(&s, "ab"), hash(&s, "ba"));
    }

    /// Cookies that differ only in their high bits (or only in their low
    /// ones) still spread over the low bits (the bucket) and the top seven
    /// (the tag).
    #[test]
    fn high_and_low_bit_patterns_spread_over_buckets_and_tags() {
        let s = FastState::default();
        for shift in [0u32, 20, 32, 48] {
            let keys: Vec<u64> = (0..4096u64).map(|i| i << shift).collect();
            let buckets: FastSet<u64> = keys.iter().map(|&k| hash(&s, k) & 4095).collect();
            let tags: FastSet<u64> = keys.iter().map(|&k| hash(&s, k) >> 57).collect();
            // A random function fills about 63 % of 4096 buckets.
            assert!(
                buckets.len() > 2400,
                "shift {shift}: {} buckets",
                buckets.len()
            );
            assert_eq!(tags.len(), 128, "shift {shift}");
        }
    }

    #[test]
    fn maps_work_as_maps() {
        let mut m: FastMap<u64, u32> = FastMap::default();
        for i in 0..10_000u64 {
            m.insert(i * 7919, i as u32);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000u64).all(|i| m.get(&(i * 7919)) == Some(&(i as u32))));
        assert_eq!(m.remove(&7919), Some(1));
        assert_eq!(m.get(&7919), None);
    }
}
