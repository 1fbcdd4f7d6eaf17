//! Target keys written in this run, in bounded memory: a Bloom filter.
//!
//! Two source records that map to one target key (a collision) overwrite
//! each other in the target, silently. `migrate` asks this filter, for every
//! put of the full phase, whether an earlier record already wrote the key;
//! a yes makes the write `overwritten`, not `written`. A Bloom filter never
//! misses a key it holds, but may say yes for a key it does not: the filter
//! tracks how full it is and sums, over every question, the chance of such
//! a false alarm, so the report can say how many of its yeses are expected
//! to be wrong. The exact list is `verify --full`'s job.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};

/// Bits of filter per expected key (about 3 in 10 million false alarms per
/// question at full load with [`HASHES`] hashes).
const BITS_PER_KEY: u64 = 32;
/// Hashes per key.
const HASHES: u32 = 16;
/// The filter never takes more than this many bits (256 MB).
const MAX_BITS: u64 = 1 << 31;
const MIN_BITS: u64 = 1 << 25;

/// The filter.
#[derive(Debug)]
pub struct SeenKeys {
    bits: Vec<u64>,
    mask: u64,
    set: u64,
    /// Expected false alarms among the yeses so far.
    false_alarms: f64,
}

impl SeenKeys {
    /// A filter sized for `expected` keys, within its memory bound.
    pub fn new(expected: u64) -> SeenKeys {
        let bits = expected
            .saturating_mul(BITS_PER_KEY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two()
            .min(MAX_BITS);
        SeenKeys::with_bits(bits)
    }

    /// A filter of `bits` bits (a power of two).
    fn with_bits(bits: u64) -> SeenKeys {
        SeenKeys {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
            set: 0,
            false_alarms: 0.0,
        }
    }

    /// Records `key`; true when it may have been recorded before.
    pub fn insert(&mut self, key: &str) -> bool {
        let (h1, h2) = hashes(key);
        let fill = self.set as f64 / (self.mask + 1) as f64;
        let chance = fill.powi(HASHES as i32);
        let mut present = true;
        for i in 0..HASHES {
            let bit = h1.wrapping_add((i as u64).wrapping_mul(h2)) & self.mask;
            let (word, b) = ((bit / 64) as usize, bit % 64);
            if self.bits[word] & (1 << b) == 0 {
                present = false;
                self.bits[word] |= 1 << b;
                self.set += 1;
            }
        }
        if present {
            self.false_alarms += chance;
        }
        present
    }

    /// How many of the yeses so far are expected to be false alarms.
    pub fn expected_false_alarms(&self) -> f64 {
        self.false_alarms
    }

    /// Bytes the filter holds.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// Two independent hashes of a key (double hashing: h1 + i*h2).
fn hashes(key: &str) -> (u64, u64) {
    let mut a = DefaultHasher::new();
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    (key, 0x9e37_79b9_7f4a_7c15u64).hash(&mut b);
    (a.finish(), b.finish() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_always_seen_and_new_keys_almost_never() {
        let mut s = SeenKeys::new(100_000);
        let mut yes = 0;
        for i in 0..100_000 {
            if s.insert(&format!("USER#{i}")) {
                yes += 1;
            }
        }
        assert_eq!(yes, 0, "no false alarm at this load");
        assert!(s.expected_false_alarms() < 0.01);
        for i in (0..100_000).step_by(997) {
            assert!(s.insert(&format!("USER#{i}")), "{i} was written before");
        }
        assert_eq!(s.bytes() as u64, MIN_BITS / 8, "the smallest filter");
    }

    #[test]
    fn the_filter_is_bounded_and_says_when_it_is_overfull() {
        assert_eq!(SeenKeys::new(u64::MAX).bytes() as u64, MAX_BITS / 8);
        assert_eq!(SeenKeys::new(0).bytes() as u64, MIN_BITS / 8);
        let mut tiny = SeenKeys::with_bits(1 << 16);
        let yes = (0..20_000)
            .filter(|i| tiny.insert(&format!("k{i}")))
            .count();
        assert!(yes > 0, "an overfull filter says yes to new keys");
        assert!(
            tiny.expected_false_alarms() > yes as f64 / 10.0,
            "and its estimate says so: {} of {yes}",
            tiny.expected_false_alarms()
        );
    }
}
